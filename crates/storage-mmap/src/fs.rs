//! The files of a download and the directory syncs, for the crates built
//! on this driver (the cache): so that none of them spells a file name of
//! this driver or makes a platform call of its own.

use std::{
    io,
    path::{Path, PathBuf},
};

/// The journal an active file keeps beside `path` while it downloads
/// (`NAME.storage-journal`; see the crate README, "Crash-safe resume").
#[must_use]
pub fn journal_path(path: &Path) -> PathBuf {
    crate::journal::path_for(path)
}

/// Makes the names in the directory that holds `path` durable (a file
/// created, renamed or removed there survives a power loss); a no-op
/// where directories cannot be synced (Windows).
///
/// # Errors
///
/// What the platform's sync of the directory returns.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    crate::sys::sync_dir(path)
}

/// Makes the contents of the file at `path` durable.
///
/// # Errors
///
/// When the file cannot be opened or synced.
pub fn sync_file(path: &Path) -> io::Result<()> {
    crate::sys::sync_all(&std::fs::File::open(path)?)
}

/// Power-loss simulation for the tests of crates built on this driver
/// (feature `testing`): while a [`Recording`](testing::Recording) lives,
/// every sync this crate makes (the data of a file, the names of a
/// directory) feeds a [`DurableImage`](testing::DurableImage) of one
/// directory, and a callback runs at each one — the moment to "lose
/// power", rebuild the directory and check what reopens.
#[cfg(all(unix, feature = "testing"))]
pub mod testing {
    use std::{cell::Cell, path::Path, sync::Arc};

    use parking_lot::Mutex;

    pub use crate::durable::DurableImage;
    use crate::sys::Synced;

    type Hook = Arc<dyn Fn(&Synced<'_>) + Send + Sync>;

    static HOOK: Mutex<Option<Hook>> = Mutex::new(None);
    /// Held by the live recording: one at a time in a process.
    static ONE: Mutex<()> = Mutex::new(());

    thread_local! {
        /// Set while this thread runs the callback: its own syncs (the
        /// check's reopen) are not the session's.
        static CHECKING: Cell<bool> = const { Cell::new(false) };
    }

    /// Called by the sync seam.
    pub(crate) fn synced(event: &Synced<'_>) {
        let hook = HOOK.lock().clone();
        if let Some(hook) = hook {
            hook(event);
        }
    }

    /// A recording of syncs; stops when dropped.
    pub struct Recording {
        _one: parking_lot::MutexGuard<'static, ()>,
    }

    impl Drop for Recording {
        fn drop(&mut self) {
            *HOOK.lock() = None;
        }
    }

    /// Records every sync into a durable image of `dir`, calling
    /// `at_each` after each sync of a file or of `dir` (not for the syncs
    /// `at_each` makes itself). Waits for another recording to end first.
    pub fn record_syncs(
        dir: &Path,
        at_each: impl Fn(&DurableImage) + Send + Sync + 'static,
    ) -> Recording {
        let one = ONE.lock();
        let image = DurableImage::new(dir);
        *HOOK.lock() = Some(Arc::new(move |event: &Synced<'_>| {
            if CHECKING.get() || !image.record(event) {
                return;
            }
            CHECKING.set(true);
            at_each(&image);
            CHECKING.set(false);
        }));
        Recording { _one: one }
    }
}
