//! Opening a file: fresh, committed, or unfinished (resumed from its journal).

use std::{fs, io};

use parking_lot::Mutex;
use storage_core::{Driver, DriverState, RangeSet, StorageResult};

use crate::{
    MmapDriver, MmapOptions, OpenMode,
    checkpoint::Checkpoints,
    driver::{DEFAULT_INITIAL_LEN, second_handle},
    journal::{self, Journal},
    store::{Store, io_error},
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

impl Driver for MmapDriver {
    type Options = MmapOptions;

    fn open(opts: MmapOptions) -> StorageResult<(Self, DriverState)> {
        let MmapOptions {
            path,
            initial_len,
            mode,
        } = opts;
        let existing = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let error = io::Error::new(io::ErrorKind::IsADirectory, "is a directory");
                return Err(io_error(&path, "cannot open", &error));
            }
            Ok(meta) => Some(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&path, "cannot inspect", &e)),
        };
        let journal_path = journal::path_for(&path);
        let journal =
            journal::read(&journal_path).map_err(|e| io_error(&journal_path, "cannot read", &e))?;
        let writer = mode != OpenMode::ReadOnly;
        let journal_error = |e: io::Error| io_error(&journal_path, "cannot write", &e);
        let mut checkpoints = None;
        let (store, state, extent) = match (existing, journal) {
            (None, _) if !writer => (Store::missing(), committed(0), 0),
            (Some(len), Some(contents)) if len > 0 => {
                // An unfinished file: exactly the journaled ranges are there
                // (cut to the file, should someone have shortened it).
                let mut available = contents.ranges.clone();
                available.remove(len..u64::MAX);
                let store = Store::open_existing(&path, len, writer, writer)?;
                if writer {
                    let journal =
                        Journal::resume(&journal_path, &contents).map_err(journal_error)?;
                    let data = second_handle(store.file(&path)?, &path)?;
                    checkpoints = Some(Checkpoints::new(data, journal));
                }
                let extent = available.last().map_or(0, |last| last.end);
                let state = DriverState {
                    final_len: None,
                    available,
                    is_committed: false,
                };
                (store, state, extent)
            }
            (Some(len), _) if len > 0 || !writer => {
                let writable = mode == OpenMode::ReadWrite;
                (
                    Store::open_existing(&path, len, writable, false)?,
                    committed(len),
                    len,
                )
            }
            _ => {
                let len = initial_len.unwrap_or(DEFAULT_INITIAL_LEN);
                let mut journal = None;
                let store = Store::create(&path, len, || {
                    journal = Some(Journal::create(&journal_path).map_err(journal_error)?);
                    Ok(())
                })?;
                if let Some(journal) = journal {
                    let data = second_handle(store.file(&path)?, &path)?;
                    checkpoints = Some(Checkpoints::new(data, journal));
                }
                (store, DriverState::default(), 0)
            }
        };
        let driver = Self {
            path,
            journal_path,
            mode,
            store: store.into(),
            extent: extent.into(),
            checkpoints: Mutex::new(checkpoints),
        };
        Ok((driver, state))
    }
}
