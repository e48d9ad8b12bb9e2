//! Opening a file: fresh, committed, or unfinished (resumed from its journal).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use storage_core::{Driver, DriverState, RangeSet, StorageResult};

use super::{MmapDriver, journaling::Journaling, mapped::MappedStore};
use crate::{
    MmapOpenOptions, MmapOptions, OpenMode,
    checkpoint::{CheckpointPolicy, Checkpoints},
    journal::{self, Journal},
    mark::{self, Mark},
    poison::Poison,
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
        unclean_holes: false,
        ..DriverState::default()
    }
}

/// Whether the file at `path` holds exactly the contents a replacement
/// mark describes (the replacement landed before a crash).
/// Whether `contents` (the locked, mapped file) are exactly what a
/// replacement mark describes (the replacement landed before a crash).
fn matches_replacement(contents: &[u8], mark: journal::Replacement) -> bool {
    contents.len() as u64 == mark.len && crc32fast::hash(contents) == mark.crc
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
    journal_path: &std::path::Path,
    file: &[u8],
    writer: bool,
) -> StorageResult<Option<journal::Contents>> {
    let journal =
        journal::read(journal_path).map_err(|e| io_error(journal_path, "cannot read", e))?;
    if let Some(contents) = &journal
        && contents
            .replacements
            .iter()
            .any(|&mark| matches_replacement(file, mark))
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
    type Options = MmapOpenOptions;

    fn open(opts: MmapOpenOptions) -> StorageResult<(Self, DriverState)> {
        let MmapOpenOptions {
            options:
                MmapOptions {
                    path,
                    initial_len,
                    mode,
                },
            checkpoints: policy,
        } = opts;
        if crate::fs::is_side_file(&path) {
            let error = io::Error::new(
                io::ErrorKind::InvalidInput,
                "the name of a journal this driver keeps beside another file: choose another name",
            );
            return Err(io_error(&path, "cannot open", error));
        }
        let journal_path = journal::path_for(&path);
        let writer = mode != OpenMode::ReadOnly;
        let existing = length_of(&path)?;
        let opened = match existing {
            None if !writer => Ready {
                store: Store::missing(),
                state: committed(0),
                checkpoints: None,
                unsynced_mark: false,
            },
            Some(len) if len > 0 || !writer => {
                match open_existing(&path, &journal_path, mode, policy)? {
                    // Emptied meanwhile: taken up as a new file below.
                    Opened::Empty => create(&path, &journal_path, initial_len, policy)?,
                    Opened::Ready(ready) => ready,
                }
            }
            _ => create(&path, &journal_path, initial_len, policy)?,
        };
        Ok(assemble(path, journal_path, mode, policy, opened))
    }
}

/// An opened file, before its driver is assembled.
struct Ready {
    store: Store,
    state: DriverState,
    checkpoints: Option<Checkpoints>,
    /// A committed file whose mark waits for its first sync (`mark.rs`).
    unsynced_mark: bool,
}

/// What opening an existing file gave.
enum Opened {
    Ready(Ready),
    /// A writer found the file empty: it is a new file.
    Empty,
}

/// Opens an existing file. The journal that decides its state is read
/// under the lock, on the file that is at the path (see
/// `store::open_locked`); a look before the lock only chooses which lock
/// to ask for.
fn open_existing(
    path: &Path,
    journal_path: &Path,
    mode: OpenMode,
    policy: CheckpointPolicy,
) -> StorageResult<Opened> {
    let writer = mode != OpenMode::ReadOnly;
    let unfinished = journal_path.exists();
    let (access, held) = match (writer, unfinished) {
        (false, _) => (Access::Read, Held::Shared),
        (true, true) => (Access::Write, Held::Exclusive),
        (true, false) => (Access::PreferWrite, Held::Shared),
    };
    let mut store = Store::open_existing(path, access, held)?;
    if writer && store.len() == 0 {
        return Ok(Opened::Empty);
    }
    let found_mark = |store: &Store| {
        mark::read(store.file(path)?).map_err(|e| io_error(path, "cannot inspect", e))
    };
    let mut journal = read_journal(journal_path, store.bytes(), writer)?;
    let mark = found_mark(&store)?;
    if journal.is_some() && !Mark::owns_a_journal(mark) {
        // An earlier file's journal (this one never made its own): ignored,
        // and removed by a writer.
        journal = None;
        if writer {
            store.acquire_exclusive(path)?;
            journal::remove_if_present(journal_path)
                .map_err(|e| io_error(journal_path, "cannot remove", e))?;
        }
    }
    let contents = match (journal, mark) {
        (Some(contents), _) => Found::Journal(contents),
        // No journal: the file's mark decides (`mark.rs`).
        (None, None) => Found::Committed { marked: false },
        (None, Some(mark)) if mark.vouches_for(store.bytes()) => Found::Committed { marked: true },
        (None, Some(_)) => Found::Marked,
    };
    let contents = match contents {
        Found::Committed { marked } => {
            // Committed (or committed since the look): a reader's lock.
            store.release_to_shared(path);
            if writer {
                // A journal's leftover temporary: only a writer holding the
                // exclusive lock writes one, and none does now.
                let _ = journal::remove_if_present(&journal::temp_path_for(journal_path));
            }
            let len = store.len();
            return Ok(Opened::Ready(Ready {
                store,
                state: committed(len),
                checkpoints: None,
                // Its bytes may not be durable yet: a `sync` (a reader's
                // too) or a rewrite makes them so before the mark goes.
                unsynced_mark: marked,
            }));
        }
        Found::Journal(contents) => Some(contents),
        Found::Marked => None,
    };
    // An unfinished file: exactly the journaled ranges are there (cut to
    // the file, should someone have shortened it); none when only its mark
    // says it is unfinished.
    let mut available = contents
        .as_ref()
        .map(|contents| contents.ranges.clone())
        .unwrap_or_default();
    available.remove(store.len()..u64::MAX);
    let mut checkpoints = None;
    if writer {
        // A journal (or mark) appeared after the look: the writer's lock
        // is needed.
        store.acquire_exclusive(path)?;
        let _ = journal::remove_if_present(&journal::temp_path_for(journal_path));
        let journal = match &contents {
            Some(contents) => Journal::resume(journal_path, contents),
            // A committed mark that no longer matches is made unfinished,
            // so the bytes written from now on never match it by chance.
            None => match mark::set(store.file(path)?, Mark::Unfinished) {
                Ok(()) => Ok(Journal::unborn(journal_path)),
                Err(_) => Journal::create(journal_path, std::iter::empty()),
            },
        }
        .map_err(|e| io_error(journal_path, "cannot write", e))?;
        let data = store.shared_file(path)?;
        checkpoints = Some(Checkpoints::new(data, journal, Poison::default(), policy));
    }
    let (expected_len, validator) = contents
        .map(|contents| (contents.expected_len, contents.validator))
        .unwrap_or_default();
    let state = DriverState {
        final_len: None,
        available,
        is_committed: false,
        // What was written after the last checkpoint is still in the file.
        unclean_holes: true,
        expected_len,
        validator,
        ..DriverState::default()
    };
    Ok(Opened::Ready(Ready {
        store,
        state,
        checkpoints,
        unsynced_mark: false,
    }))
}

/// What decides an existing file's state.
enum Found {
    /// Its journal: an unfinished download.
    Journal(journal::Contents),
    /// No journal, and no mark or a mark that vouches for its bytes.
    Committed { marked: bool },
    /// No journal, and a mark that vouches for nothing (`mark.rs`).
    Marked,
}

/// Creates a new file (or takes up an empty one), marked unfinished or
/// with a provisional journal.
fn create(
    path: &Path,
    journal_path: &Path,
    initial_len: Option<u64>,
    policy: CheckpointPolicy,
) -> StorageResult<Ready> {
    let len = initial_len.unwrap_or(DEFAULT_INITIAL_LEN);
    let mut journal = None;
    let store = Store::create(
        path,
        len,
        |file| {
            // The file is empty and locked, and is given its length only
            // after this: marked unfinished (no journal, no sync) where
            // the file system keeps marks; else a provisional journal (no
            // sync either).
            let marked = if mark::new_files_marked() {
                mark::set(file, Mark::Unfinished)
            } else {
                Err(io::ErrorKind::Unsupported.into())
            };
            journal = Some(if marked.is_ok() {
                // A journal left at the path by an earlier file is not
                // this one's: its mark says so (`Mark::owns_a_journal`).
                Journal::unborn(journal_path)
            } else {
                let _ = journal::remove_if_present(&journal::temp_path_for(journal_path));
                Journal::create_provisional(journal_path)
                    .map_err(|e| io_error(journal_path, "cannot write", e))?
            });
            Ok(())
        },
        || {
            let _ = journal::remove_if_present(journal_path);
        },
    )?;
    let checkpoints = match journal {
        Some(journal) => {
            let data = store.shared_file(path)?;
            Some(Checkpoints::new(data, journal, Poison::default(), policy))
        }
        None => None,
    };
    Ok(Ready {
        store,
        state: DriverState::default(),
        checkpoints,
        unsynced_mark: false,
    })
}

/// The driver of an opened file, its extent taken from its state.
fn assemble(
    path: PathBuf,
    journal_path: PathBuf,
    mode: OpenMode,
    policy: CheckpointPolicy,
    opened: Ready,
) -> (MmapDriver, DriverState) {
    let Ready {
        store,
        mut state,
        checkpoints,
        unsynced_mark,
    } = opened;
    state.path = Some(path.clone());
    let extent = if state.is_committed {
        state.final_len.unwrap_or(0)
    } else {
        state.available.last().map_or(0, |last| last.end)
    };
    let driver = MmapDriver::new(
        mode,
        MappedStore::new(path, store, extent),
        Journaling::new(journal_path, policy, checkpoints),
        unsynced_mark,
    );
    (driver, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Replacement, encode, encode_mark};

    #[test]
    fn a_file_matching_any_replacement_mark_makes_the_journal_stale() {
        // Two replacements raced on one path, each marked the journal,
        // and the first one's rename landed last.
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path().join("f.bin.storage-journal");
        let landed = b"the first replacement".to_vec();
        let other = b"the second".to_vec();
        let mark = |bytes: &[u8]| Replacement {
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        };
        let mut journal = b"STJRNL01".to_vec();
        journal.extend(encode(std::iter::once(&(0..4u64))));
        journal.extend(encode_mark(mark(&landed)));
        journal.extend(encode_mark(mark(&other)));
        fs::write(&journal_path, &journal).unwrap();
        assert!(
            read_journal(&journal_path, &landed, false)
                .unwrap()
                .is_none()
        );
        assert!(
            read_journal(&journal_path, &other, false)
                .unwrap()
                .is_none()
        );
        assert!(
            read_journal(&journal_path, b"partial", false)
                .unwrap()
                .is_some()
        );
    }
}
