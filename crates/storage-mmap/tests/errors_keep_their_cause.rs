//! I/O errors reach the caller with their `ErrorKind`, the operation, the
//! path, and the operating system's error as their source.

mod support;

use std::{error::Error as _, fs, io::ErrorKind, path::Path};

use storage_core::{ResourceExt, StorageError};
use storage_mmap::{MmapResource, OpenMode};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

/// Checks that `err` is an `Io` error of `kind` about `path`, whose source
/// chain ends in the operating system's error.
fn assert_cause(err: &StorageError, kind: ErrorKind, path: &Path) {
    assert_eq!(err.io_kind(), Some(kind), "{err}");
    let failure = err
        .io_failure()
        .unwrap_or_else(|| panic!("no IoFailure in {err}"));
    assert_eq!(failure.path(), path, "{err}");
    assert_eq!(failure.os_error().kind(), kind);
    let inner = err.source().expect("StorageError::Io has a source");
    let os = inner.source().expect("the io::Error keeps the original");
    assert!(os.downcast_ref::<std::io::Error>().is_some(), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_full_disk_reaches_the_caller_as_storage_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    // Growth to 1 TiB: refused at once by the free-space check.
    let err = r.write_at(1 << 40, b"x").unwrap_err();
    assert_cause(&err, ErrorKind::StorageFull, &path);
    assert_eq!(err.io_failure().unwrap().op(), "cannot grow");
}

#[test]
fn a_missing_directory_reaches_the_caller_as_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let path = file.join("track.bin");
    let err = open(&path, OpenMode::Auto).unwrap_err();
    // Windows says a file is in the way (ERROR_ALREADY_EXISTS), Unix that
    // a path component is not a directory (ENOTDIR).
    let kind = if cfg!(windows) {
        ErrorKind::AlreadyExists
    } else {
        ErrorKind::NotADirectory
    };
    assert_eq!(err.io_kind(), Some(kind), "{err}");
    assert!(err.io_failure().is_some(), "{err}");
    assert!(err.source().and_then(|e| e.source()).is_some(), "{err}");
}

#[cfg(unix)] // A file made unwritable with Unix mode bits and chattr.
#[test]
fn a_permission_error_reaches_the_caller_as_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frozen.bin");
    fs::write(&path, b"committed").unwrap();
    // Not writable for this process: immutable as root, read-only otherwise.
    let _frozen = support::Protected::new(&path, support::Forbid::Write);
    // A committed file opens for reading when it cannot be written...
    let r = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(r.len(), Some(9));
    // ...and saying it cannot be written comes when writing is asked for.
    let err = r.reactivate().unwrap_err();
    assert_cause(&err, ErrorKind::PermissionDenied, &path);
}
