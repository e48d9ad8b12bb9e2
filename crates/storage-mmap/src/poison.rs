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

use std::{io, sync::Arc};

use parking_lot::Mutex;

/// Shared by the driver, its checkpoints and its commit's background work.
#[derive(Clone, Debug, Default)]
pub(crate) struct Poison {
    /// The kind and message of the first failed data sync.
    failure: Arc<Mutex<Option<(io::ErrorKind, String)>>>,
}

impl Poison {
    /// Records `error` (the first one is kept) and returns it.
    pub(crate) fn set(&self, error: io::Error) -> io::Error {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some((error.kind(), error.to_string()));
        }
        error
    }

    /// `Err` once a data sync has failed: nothing may be called durable.
    pub(crate) fn check(&self) -> io::Result<()> {
        match &*self.failure.lock() {
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
        self.check()?;
        sync().map_err(|error| self.set(error))
    }

    /// A new file replaced this one (a whole replacement): its syncs start clean.
    pub(crate) fn clear(&self) {
        *self.failure.lock() = None;
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
}
