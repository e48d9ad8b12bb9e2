//! Shared test support: harnesses that open a fresh resource of each driver,
//! bounded waits, a recording observer, and the behaviour suite.

#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

pub use storage_core::testing::*;

use std::{
    ops::Range,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use storage::{AvailabilityObserver, CancellationToken, ResourceExt, StorageResult, WaitOutcome};

/// The mmap driver's journal beside `path`.
#[cfg(feature = "mmap")]
pub fn journal_of(path: &std::path::Path) -> std::path::PathBuf {
    storage_mmap::fs::journal_path(path)
}

/// Whether a file may be renamed over one that another handle maps, in
/// `dir` (always on Unix; on Windows only with POSIX-semantics renames,
/// not under Wine): where not, such a replacement is refused with
/// `ResourceBusy` and changes nothing.
#[cfg(feature = "mmap")]
#[allow(dead_code, reason = "not every test binary replaces a held file")]
pub fn renames_over_open_files(dir: &std::path::Path) -> bool {
    storage_mmap::fs::renames_over_open_files(dir).unwrap()
}

/// Whether `result` is the refusal of a replacement of a file that
/// another handle holds, where the platform cannot rename over one.
#[allow(dead_code, reason = "not every test binary replaces a held file")]
pub fn refused_as_in_use<T>(result: &StorageResult<T>) -> bool {
    matches!(result, Err(storage::StorageError::Io(e)) if e.kind() == std::io::ErrorKind::ResourceBusy)
}

/// Sleeps until `delay` has passed since now, in 1 ms steps.
pub fn sleep_for(delay: Duration) {
    let started = Instant::now();
    while started.elapsed() < delay {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Opens `path` as an mmap resource with a fresh token.
#[cfg(feature = "mmap")]
pub fn open_mmap(
    path: &std::path::Path,
    initial_len: Option<u64>,
    mode: storage::OpenMode,
) -> StorageResult<storage::MmapResource> {
    storage::MmapResource::open(
        CancellationToken::new(),
        storage::MmapOptions {
            path: path.to_path_buf(),
            initial_len,
            mode,
        },
    )
}

/// What [`Protected`] forbids on a file until it is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbid {
    /// Removing it (it stays appendable): as root `chattr +a`, otherwise
    /// its directory made read-only.
    Unlink,
    /// Writing it: as root `chattr +i`, otherwise mode 0444.
    Write,
}

/// A file protected from this process (root included) until dropped,
/// even when an assertion fails in between.
#[cfg(unix)] // Unix mode bits and chattr.
pub struct Protected {
    file: std::path::PathBuf,
    forbid: Forbid,
    root: bool,
}

#[cfg(unix)] // Unix mode bits and chattr.
impl Protected {
    pub fn new(file: &std::path::Path, forbid: Forbid) -> Self {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};

        let root = std::fs::metadata(file).unwrap().uid() == 0;
        match (root, forbid) {
            (true, _) => {
                let flag = if forbid == Forbid::Unlink { "+a" } else { "+i" };
                let status = std::process::Command::new("chattr")
                    .arg(flag)
                    .arg(file)
                    .status()
                    .unwrap();
                assert!(status.success(), "chattr {flag} failed");
            }
            (false, Forbid::Unlink) => {
                let dir = file.parent().unwrap();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            }
            (false, Forbid::Write) => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
            }
        }
        Self {
            file: file.to_path_buf(),
            forbid,
            root,
        }
    }
}

#[cfg(unix)] // Unix mode bits and chattr.
impl Drop for Protected {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;

        if self.root {
            let flag = if self.forbid == Forbid::Unlink {
                "-a"
            } else {
                "-i"
            };
            let _ = std::process::Command::new("chattr")
                .arg(flag)
                .arg(&self.file)
                .status();
        } else if self.forbid == Forbid::Unlink {
            if let Some(dir) = self.file.parent() {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
        } else {
            let _ = std::fs::set_permissions(&self.file, std::fs::Permissions::from_mode(0o644));
        }
    }
}

/// `AtomicChunked` over mmap files: the factory the tests use, and the
/// names of the files beside a canonical path.
#[cfg(feature = "mmap")]
pub mod chunked {
    use std::{
        ffi::OsStr,
        path::{Path, PathBuf},
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        thread,
        time::{Duration, Instant},
    };

    use storage::{
        AtomicChunked, AvailabilityObserver, CancellationToken, MmapOptions, MmapResource,
        OpenIntent, OpenMode, StorageError, StorageResult,
    };

    /// `path` with `suffix` appended to its file name.
    pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
        name.push(suffix);
        path.with_file_name(name)
    }

    /// `<canonical>.tmp`, where the download is written.
    pub fn temp_of(canonical: &Path) -> PathBuf {
        suffixed(canonical, ".tmp")
    }

    /// `<canonical>.tmp.claim`, the claim file.
    pub fn claim_of(canonical: &Path) -> PathBuf {
        suffixed(&temp_of(canonical), ".claim")
    }

    pub use super::journal_of;

    /// The name of the journal beside the file named `name`.
    pub fn journal_name(name: &str) -> String {
        journal_of(Path::new(name)).to_string_lossy().into_owned()
    }

    /// How many times the factory was called, by intent.
    #[derive(Debug, Default)]
    pub struct Opens {
        pub fresh: AtomicUsize,
        pub reopen: AtomicUsize,
    }

    impl Opens {
        pub fn fresh(&self) -> usize {
            self.fresh.load(Ordering::SeqCst)
        }

        pub fn reopen(&self) -> usize {
            self.reopen.load(Ordering::SeqCst)
        }
    }

    /// A factory as the docs suggest (`Auto` for the download, `reopen`
    /// for the published file) that counts its calls and hands `observer`
    /// to every resource it opens.
    pub fn factory(
        cancel: CancellationToken,
        reopen: OpenMode,
        opens: Arc<Opens>,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> impl Fn(&Path, OpenIntent) -> StorageResult<MmapResource> + Send + Sync + 'static {
        move |path, intent| {
            let mode = match intent {
                OpenIntent::Fresh => {
                    opens.fresh.fetch_add(1, Ordering::SeqCst);
                    OpenMode::Auto
                }
                OpenIntent::Reopen => {
                    opens.reopen.fetch_add(1, Ordering::SeqCst);
                    reopen
                }
            };
            let options = MmapOptions {
                path: path.to_path_buf(),
                initial_len: None,
                mode,
            };
            MmapResource::open_with_observer(cancel.clone(), options, observer.clone())
        }
    }

    /// Opens the download of `canonical` (reopened `ReadOnly`).
    pub fn open(canonical: &Path) -> StorageResult<AtomicChunked<MmapResource>> {
        open_counted(canonical).map(|(chunked, _)| chunked)
    }

    /// As [`open`], with the factory's counts.
    pub fn open_counted(
        canonical: &Path,
    ) -> StorageResult<(AtomicChunked<MmapResource>, Arc<Opens>)> {
        let opens = Arc::new(Opens::default());
        let factory = factory(
            CancellationToken::new(),
            OpenMode::ReadOnly,
            Arc::clone(&opens),
            None,
        );
        AtomicChunked::open(canonical.to_path_buf(), factory).map(|chunked| (chunked, opens))
    }

    /// As [`open`], retried while refused with `TmpClaimed` for at most
    /// [`LIMIT`](super::LIMIT): for an open right after another download's
    /// holder went (a process killed, or a child that a test beside this
    /// one forked in that instant still holding a copy of the claim until
    /// it execs).
    pub fn open_when_free(canonical: &Path) -> StorageResult<AtomicChunked<MmapResource>> {
        let deadline = Instant::now() + super::LIMIT;
        loop {
            match open(canonical) {
                Err(StorageError::TmpClaimed(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    /// The names in `dir`, sorted.
    pub fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
