//! `Poison`: a failed data sync, remembered for the file's lifetime in
//! this handle.
//!
//! After `fsync` fails, the kernel may have dropped the dirty pages it
//! could not write (and marked them clean), and it reports the error once:
//! a later sync of the same file can succeed without those bytes ever
//! reaching the disk. So the first failed data sync — a checkpoint's on
//! its thread, `sync()`'s, a commit's in the background, a reactivate's —
//! poisons the handle: from then on it journals no range and never calls
//! the file durable (no commit removes the journal). `sync()` reports the
//! error every time; reopening the path resumes from the journal, whose
//! ranges were all synced before the failure.
//!
//! A whole replacement installs a new file and clears the poison. A sync
//! of the old file still under way (`sync()` of a committed file runs on a
//! handle of its own, outside the driver's locks) that fails afterwards
//! concerns a file that is gone: it is reported to its caller, but it does
//! not poison the new one (`file`, `sync_of`).

use std::{io, sync::Arc};

use parking_lot::Mutex;

/// Shared by the driver, its checkpoints and its commit's background work.
#[derive(Clone, Debug, Default)]
pub(crate) struct Poison {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The kind and message of the first failed data sync of this file.
    failure: Option<(io::ErrorKind, String)>,
    /// Which file: counts the replacements (`clear`).
    file: u64,
}

impl Poison {
    /// Records `error` as `file`'s failure (the first one is kept), when
    /// `file` is still the current one, and returns it.
    fn set_for(&self, file: u64, error: io::Error) -> io::Error {
        let mut state = self.state.lock();
        if state.file == file && state.failure.is_none() {
            state.failure = Some((error.kind(), error.to_string()));
        }
        error
    }

    /// The current file, for `sync_of`.
    pub(crate) fn file(&self) -> u64 {
        self.state.lock().file
    }

    /// `Err` once a data sync has failed: nothing may be called durable.
    pub(crate) fn check(&self) -> io::Result<()> {
        match &self.state.lock().failure {
            None => Ok(()),
            Some((kind, message)) => Err(io::Error::new(
                *kind,
                format!(
                    "an earlier sync of this file failed ({message}); bytes written since \
                     the last checkpoint may not be on disk, so nothing is called durable \
                     any more (reopen the path to resume from its journal)"
                ),
            )),
        }
    }

    /// Syncs with `sync`, unless poisoned; a failure poisons.
    pub(crate) fn sync(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let file = self.file();
        self.sync_of(file, sync)
    }

    /// As `sync`, for a sync of `file` (from `file()`, taken with the
    /// handle synced): a failure poisons only while that file is current.
    pub(crate) fn sync_of(
        &self,
        file: u64,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        self.check()?;
        sync().map_err(|error| self.set_for(file, error))
    }

    /// A new file replaced this one (a whole replacement): its syncs start clean.
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        state.failure = None;
        state.file += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_sticks_and_every_later_sync_is_refused() {
        let poison = Poison::default();
        poison.sync(|| Ok(())).unwrap();
        let failed = poison.sync(|| Err(io::Error::new(io::ErrorKind::StorageFull, "disk full")));
        assert_eq!(failed.unwrap_err().kind(), io::ErrorKind::StorageFull);
        let mut ran = false;
        let refused = poison
            .sync(|| {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!ran, "a poisoned file is not synced into a claim");
        assert_eq!(refused.kind(), io::ErrorKind::StorageFull);
        assert!(refused.to_string().contains("disk full"), "{refused}");
        poison.clear();
        poison.sync(|| Ok(())).unwrap();
    }

    #[test]
    fn a_failed_sync_of_a_replaced_file_does_not_poison_the_new_one() {
        let poison = Poison::default();
        let old = poison.file();
        poison.clear(); // replaced while the old file's sync ran
        let failed = poison.sync_of(old, || Err(io::Error::other("old disk")));
        assert!(failed.is_err(), "its caller hears of it");
        poison.check().unwrap();
        let current = poison.file();
        assert!(
            poison
                .sync_of(current, || Err(io::Error::other("new disk")))
                .is_err()
        );
        assert!(
            poison.check().is_err(),
            "a failure of the current file poisons"
        );
    }
}
