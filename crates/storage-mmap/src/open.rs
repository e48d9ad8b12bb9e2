//! Opening a file: fresh, committed, or unfinished (resumed from its journal).

use std::{fs, io};

use parking_lot::Mutex;
use storage_core::{Driver, DriverState, RangeSet, StorageResult};

use crate::{
    MmapDriver, MmapOptions, OpenMode,
    checkpoint::Checkpoints,
    driver::second_handle,
    journal::{self, Journal},
    space::DEFAULT_INITIAL_LEN,
    store::{Access, Held, Store, io_error},
};

fn committed(len: u64) -> DriverState {
    let mut available = RangeSet::new();
    if len > 0 {
        available.insert(0..len);
    }
    DriverState {
        final_len: Some(len),
        available,
        is_committed: true,
    }
}

/// Whether the file at `path` holds exactly the contents a replacement
/// mark describes (the replacement landed before a crash).
fn matches_replacement(path: &std::path::Path, len: u64, mark: journal::Replacement) -> bool {
    len == mark.len && fs::read(path).is_ok_and(|bytes| crc32fast::hash(&bytes) == mark.crc)
}

fn not_a_regular_file(path: &std::path::Path) -> storage_core::StorageError {
    let error = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    io_error(path, "cannot open", error)
}

/// The length of the regular file at `path`, `None` when there is none.
fn length_of(path: &std::path::Path) -> StorageResult<Option<u64>> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let error = io::Error::new(io::ErrorKind::IsADirectory, "is a directory");
            Err(io_error(path, "cannot open", error))
        }
        Ok(meta) if !meta.is_file() => Err(not_a_regular_file(path)),
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, "cannot inspect", e)),
    }
}

/// The journal beside `path`, unless there is none or it is stale: a
/// replacement landed, then the process died before the journal went (the
/// file is whole and committed; a writer removes the journal).
fn read_journal(
    path: &std::path::Path,
    journal_path: &std::path::Path,
    existing: Option<u64>,
    writer: bool,
) -> StorageResult<Option<journal::Contents>> {
    let journal =
        journal::read(journal_path).map_err(|e| io_error(journal_path, "cannot read", e))?;
    if let (Some(len), Some(contents)) = (existing, &journal)
        && let Some(mark) = contents.replacement
        && matches_replacement(path, len, mark)
    {
        if writer {
            journal::remove_if_present(journal_path)
                .map_err(|e| io_error(journal_path, "cannot remove", e))?;
        }
        return Ok(None);
    }
    Ok(journal)
}

impl Driver for MmapDriver {
    type Options = MmapOptions;

    fn open(opts: MmapOptions) -> StorageResult<(Self, DriverState)> {
        let MmapOptions {
            path,
            initial_len,
            mode,
        } = opts;
        let existing = length_of(&path)?;
        let journal_path = journal::path_for(&path);
        let writer = mode != OpenMode::ReadOnly;
        let journal = read_journal(&path, &journal_path, existing, writer)?;
        let journal_error = |e: io::Error| io_error(&journal_path, "cannot write", e);
        let mut checkpoints = None;
        let (store, state) = match (existing, journal) {
            (None, _) if !writer => (Store::missing(), committed(0)),
            (Some(len), Some(_)) if len > 0 => {
                // An unfinished file: exactly the journaled ranges are there
                // (cut to the file, should someone have shortened it).
                let (access, held) = if writer {
                    (Access::Write, Held::Exclusive)
                } else {
                    (Access::Read, Held::Shared)
                };
                let mut store = Store::open_existing(&path, access, held)?;
                // Read again under the lock: the writer that held the file
                // may have committed (and removed it) in between.
                let Some(contents) = read_journal(&path, &journal_path, Some(store.len), writer)?
                else {
                    store.release_to_shared(&path);
                    let len = store.len;
                    return Ok(Self::assemble(
                        path,
                        journal_path,
                        mode,
                        store,
                        committed(len),
                        None,
                    ));
                };
                let mut available = contents.ranges.clone();
                available.remove(store.len..u64::MAX);
                if writer {
                    let _ = journal::remove_if_present(&journal::temp_path_for(&journal_path));
                    let journal =
                        Journal::resume(&journal_path, &contents).map_err(journal_error)?;
                    let data = second_handle(store.file(&path)?, &path)?;
                    checkpoints = Some(Checkpoints::new(data, journal));
                }
                let state = DriverState {
                    final_len: None,
                    available,
                    is_committed: false,
                };
                (store, state)
            }
            (Some(len), _) if len > 0 || !writer => {
                let access = if mode == OpenMode::ReadOnly {
                    Access::Read
                } else {
                    Access::PreferWrite
                };
                let store = Store::open_existing(&path, access, Held::Shared)?;
                if writer {
                    // A journal's leftover temporary: only a writer holding
                    // the exclusive lock writes one, and none does now.
                    let _ = journal::remove_if_present(&journal::temp_path_for(&journal_path));
                }
                let len = store.len;
                (store, committed(len))
            }
            _ => {
                let len = initial_len.unwrap_or(DEFAULT_INITIAL_LEN);
                let mut journal = None;
                let store = Store::create(
                    &path,
                    len,
                    || {
                        let _ = journal::remove_if_present(&journal::temp_path_for(&journal_path));
                        journal = Some(
                            Journal::create(&journal_path, std::iter::empty())
                                .map_err(journal_error)?,
                        );
                        Ok(())
                    },
                    || {
                        let _ = journal::remove_if_present(&journal_path);
                    },
                )?;
                if let Some(journal) = journal {
                    let data = second_handle(store.file(&path)?, &path)?;
                    checkpoints = Some(Checkpoints::new(data, journal));
                }
                (store, DriverState::default())
            }
        };
        Ok(Self::assemble(
            path,
            journal_path,
            mode,
            store,
            state,
            checkpoints,
        ))
    }
}

impl MmapDriver {
    fn assemble(
        path: std::path::PathBuf,
        journal_path: std::path::PathBuf,
        mode: OpenMode,
        store: Store,
        state: DriverState,
        checkpoints: Option<Checkpoints>,
    ) -> (Self, DriverState) {
        let extent = if state.is_committed {
            state.final_len.unwrap_or(0)
        } else {
            state.available.last().map_or(0, |last| last.end)
        };
        let driver = Self {
            path,
            journal_path,
            mode,
            store: store.into(),
            extent: extent.into(),
            checkpoints: Mutex::new(checkpoints),
            unsynced_commit: Mutex::new(false),
        };
        (driver, state)
    }
}
