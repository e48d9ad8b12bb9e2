//! Shared support for the driver's behaviour tests: opening a file, reading
//! back what a resource reports available, and protecting a file from this
//! process; with storage-core's test helpers (bounded waits, patterns, kill
//! children) re-exported.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

pub use storage_core::testing::*;

use std::{
    ops::Range,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use storage_core::{CancellationToken, ResourceExt, StorageResult, WaitOutcome};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

/// Sleeps until `delay` has passed since now, in 1 ms steps.
pub fn sleep_for(delay: Duration) {
    let started = Instant::now();
    while started.elapsed() < delay {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Opens `path` as an mmap resource with a fresh token.
pub fn open_mmap(
    path: &Path,
    initial_len: Option<u64>,
    mode: OpenMode,
) -> StorageResult<MmapResource> {
    MmapResource::open(
        CancellationToken::new(),
        MmapOptions {
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
    pub fn new(file: &Path, forbid: Forbid) -> Self {
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
