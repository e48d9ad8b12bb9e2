//! The files of a download and the platform calls, for the crates built
//! on this driver (the cache, `AtomicChunked`'s users): so that none of
//! them spells a file name of this driver or makes a platform call of its
//! own.
//!
//! # Examples
//!
//! ```
//! use std::path::Path;
//!
//! use storage_mmap::fs;
//!
//! let track = Path::new("music/01.flac");
//! let [journal, _] = fs::side_files(track);
//! assert_eq!(fs::journal_path(track), journal);
//! assert_eq!(fs::journal_owner(&journal).as_deref(), Some(track));
//! assert_eq!(fs::journal_owner(track), None);
//! ```

use std::{
    fs::Metadata,
    io,
    path::{Path, PathBuf},
};

use storage_core::{StorageError, StorageResult};

/// The journal an active file keeps beside `path` while it downloads
/// (`NAME.storage-journal`; see the crate README, "Crash-safe resume").
#[must_use]
pub fn journal_path(path: &Path) -> PathBuf {
    crate::journal::path_for(path)
}

/// Every file this driver may keep beside the file at `path`: its journal
/// ([`journal_path`]), and the journal's temporary file, which a crash
/// while the journal is created can leave behind
/// (`NAME.storage-journal.tmp`).
#[must_use]
pub fn side_files(path: &Path) -> [PathBuf; 2] {
    let journal = crate::journal::path_for(path);
    let temp = crate::journal::temp_path_for(&journal);
    [journal, temp]
}

/// The file whose journal `journal` is named as (`NAME` for
/// `NAME.storage-journal`, in the same directory); `None` for any other
/// name, the journal's temporary file and a name that is not UTF-8
/// included.
#[must_use]
pub fn journal_owner(journal: &Path) -> Option<PathBuf> {
    let name = journal.file_name()?.to_str()?;
    // A journal's name is its file's with a suffix (`journal::path_for`):
    // the bytes it adds are cut, and the result is kept if it names this
    // journal.
    let added = crate::journal::path_for(Path::new("a")).as_os_str().len() - 1;
    let stem = name.get(..name.len().checked_sub(added)?)?;
    if stem.is_empty() {
        return None;
    }
    let owner = journal.with_file_name(stem);
    (crate::journal::path_for(&owner) == journal).then_some(owner)
}

/// Whether `path` is named as one of this driver's side files (a journal,
/// or a journal's temporary file) of some other file: such a path is not
/// opened as a resource (the other file's journal would be written over
/// it).
#[must_use]
pub fn is_side_file(path: &Path) -> bool {
    if journal_owner(path).is_some() {
        return true;
    }
    // A journal's temporary file: its name is a journal's plus a suffix.
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    let added = crate::journal::temp_path_for(Path::new("a"))
        .as_os_str()
        .len()
        - 1;
    name.get(..name.len().saturating_sub(added))
        .filter(|stem| !stem.is_empty())
        .map(|stem| path.with_file_name(stem))
        .is_some_and(|journal| {
            journal_owner(&journal).is_some() && crate::journal::temp_path_for(&journal) == path
        })
}

/// Whether the file at `path` is an unfinished download of this driver
/// told by its *mark* rather than its journal: a new file not checkpointed
/// yet carries a mark (an extended attribute) instead of a journal (see
/// [`set_unsynced_small_commits`](crate::set_unsynced_small_commits)); so
/// does a committed one whose bytes do not match its mark (lost to a power
/// loss). `false` when there is no file or no mark. A tool that tells an
/// unfinished download by its journal asks this too.
///
/// # Errors
///
/// The file or its mark could not be read.
pub fn unfinished_by_mark(path: &Path) -> io::Result<bool> {
    crate::mark::unfinished_at(path)
}

/// Removes a download: the file at `path` and its [`side_files`]. Each is
/// tried, and one already gone is no error.
///
/// # Errors
///
/// The first removal that failed, as `Io` with its path.
pub fn remove_download(path: &Path) -> StorageResult<()> {
    let [journal, journal_temp] = side_files(path);
    let removed = [
        remove_if_present(path),
        remove_if_present(&journal),
        remove_if_present(&journal_temp),
    ];
    removed.into_iter().collect()
}

/// Removes the file at `path`; one already gone is no error.
pub(crate) fn remove_if_present(path: &Path) -> StorageResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("cannot remove", path, e)),
    }
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

/// Whether the file system at `dir` lets a file be renamed over one that
/// another handle holds open and mapped: always on Unix; on Windows where
/// renames have POSIX semantics (NTFS on Windows 10 1709 and later), not
/// under Wine, on FAT or on older systems. Where it does not, replacing a
/// file (`Atomic`, `AtomicChunked`, a cache entry) while another handle —
/// another resource on the path, another process — maps it is refused
/// with an `Io` error of kind `ResourceBusy` that leaves the file as it
/// was (see the crate README). Found out by trying, on two files made in
/// `dir` and removed again.
///
/// # Errors
///
/// When the probe files cannot be made, mapped or renamed for another
/// reason.
pub fn renames_over_open_files(dir: &Path) -> io::Result<bool> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = |side: &str| dir.join(format!(".rename-probe-{}-{n}.{side}", std::process::id()));
    let (from, to) = (name("new"), name("old"));
    let probed = (|| {
        std::fs::write(&from, b"new")?;
        std::fs::write(&to, b"old")?;
        let held = std::fs::File::open(&to)?;
        let map = crate::map::Mapping::read_only(&held, 3)?;
        let renamed = crate::sys::rename_over(&from, &to);
        drop((map, held));
        match renamed {
            Ok(()) => Ok(true),
            Err(e) if crate::sys::in_use(&e) => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&from);
    let _ = std::fs::remove_file(&to);
    probed
}

/// Whether a directory's [`version_stamp`] moves whenever a name in it is
/// added, removed or renamed over (Unix: its inode and its modification
/// time, which every such change sets). Elsewhere (Windows) the stamp is
/// a length and a time, which a rename inside the directory was seen to
/// leave as it was: a cache must list the names there rather than trust
/// an unchanged stamp.
#[must_use]
pub fn directory_stamps_are_exact() -> bool {
    crate::sys::DIRECTORY_STAMPS_ARE_EXACT
}

/// What tells one version of a file from another, from its metadata: on
/// Unix its inode and modification time (a rename over the file or a write
/// into it changes the stamp), elsewhere its length and modification time.
/// Compared, never ordered.
#[must_use]
pub fn version_stamp(meta: &Metadata) -> (u64, u64) {
    crate::sys::stamp(meta)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the crates built on this driver rely on, pinned.
    #[test]
    fn side_files_are_named_beside_the_download() {
        let download = Path::new("music/album/01.flac.tmp");
        let [journal, journal_temp] = side_files(download);
        assert_eq!(
            journal,
            Path::new("music/album/01.flac.tmp.storage-journal")
        );
        assert_eq!(
            journal_temp,
            Path::new("music/album/01.flac.tmp.storage-journal.tmp")
        );
        assert_eq!(journal_owner(&journal).as_deref(), Some(download));
        for other in [
            journal_temp.as_path(),
            download,
            Path::new(".storage-journal"),
            Path::new("a.storage-journa"),
        ] {
            assert_eq!(journal_owner(other), None, "{}", other.display());
        }
    }

    #[test]
    fn remove_download_takes_the_file_and_its_journal_and_nothing_else() {
        use storage_core::{CancellationToken, ResourceExt};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active.bin");
        let beside = dir.path().join("active.bin.key");
        std::fs::write(&beside, b"not the driver's").unwrap();
        let resource =
            crate::MmapResource::open(CancellationToken::new(), crate::MmapOptions::new(&path))
                .unwrap();
        resource.write_at(0, b"bytes").unwrap();
        // Checkpointed: a journal is made (a new file has none before).
        resource.sync().unwrap();
        assert!(journal_path(&path).exists(), "no journal where it is named");
        drop(resource);
        std::fs::write(&side_files(&path)[1], b"a torn journal").unwrap();
        remove_download(&path).unwrap();
        remove_download(&path).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(left, [beside]);
    }

    #[test]
    fn a_stamp_changes_with_a_rename_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, other) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&path, b"one").unwrap();
        std::fs::write(&other, b"two!").unwrap();
        let before = version_stamp(&std::fs::metadata(&path).unwrap());
        assert_eq!(before, version_stamp(&std::fs::metadata(&path).unwrap()));
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(before, version_stamp(&std::fs::metadata(&path).unwrap()));
    }
}
