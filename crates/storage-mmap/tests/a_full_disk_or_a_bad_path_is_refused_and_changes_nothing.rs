//! A full disk or a bad path is refused and changes nothing: an open too
//! big for the disk leaves the directory as it was, a path that is not a
//! regular file is left alone, a reactivate with no room for its journal
//! leaves the committed file whole; and growth near the limit falls back to
//! the exact size before refusing a write that fits.

#![cfg_attr(
    not(unix),
    allow(
        dead_code,
        unused_imports,
        reason = "the tests that use them run bash or make FIFOs: Unix only"
    )
)]

mod support;

use std::{fs, path::Path, process::Command};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{MmapResource, OpenMode};
use support::{assert_available_bytes_are, pattern};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const CHILD_ENV: &str = "STORAGE_FULL_DISK_CHILD";

/// In the child, where no file may grow (`ulimit -f 0`, SIGXFSZ ignored):
/// reactivating a committed file cannot write its journal.
// The child of a test run under bash `ulimit -f`, which is Unix only.
#[cfg(unix)]
#[test]
fn child_reactivating_without_space() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    let err = r.reactivate().unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert_eq!(
        r.status(),
        ResourceStatus::Committed {
            final_len: Some(4096)
        }
    );
    // Still a reader of the whole file, and no longer holding a writer's lock.
    let mut buf = vec![0; 4096];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 4096);
    let second = open(Path::new(&path), OpenMode::ReadOnly).unwrap();
    assert_eq!(second.len(), Some(4096));
    println!("reactivate refused: ready");
}

#[cfg(unix)] // Runs bash with `ulimit -f`.
fn run_child_under_ulimit(test: &str, kib: u64, arg: &str) -> String {
    let output = Command::new("bash")
        .args([
            "-c",
            &format!(
                "ulimit -f {kib} && trap '' XFSZ && exec \"$0\" --exact {test} --nocapture --test-threads=1"
            ),
        ])
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_ENV, arg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

// Runs bash with `ulimit -f` (a file size limit standing in for a full disk): Unix only.
#[cfg(unix)]
#[test]
fn a_failed_reactivate_leaves_the_committed_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("complete.bin");
    let data = pattern(4, 4096);
    fs::write(&path, &data).unwrap();
    let stdout = run_child_under_ulimit(
        "child_reactivating_without_space",
        0,
        path.to_str().unwrap(),
    );
    assert!(stdout.contains("reactivate refused"), "{stdout}");
    assert_eq!(names_in(dir.path()), vec!["complete.bin".to_owned()]);
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(4096)
        }
    );
    assert_available_bytes_are(&reopened, &data, "after a failed reactivate");
}

const GROWTH_LEN: usize = 2_600_000;

/// In the child, under a 3000 KiB file size limit: an in-order download of
/// 2.6 MB, which fits, though doubling the file past 2 MiB does not.
// The child of a test run under bash `ulimit -f`, which is Unix only.
#[cfg(unix)]
#[test]
fn child_downloading_near_the_limit() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let data = pattern(41, GROWTH_LEN);
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        r.write_at((i * 64 * 1024) as u64, chunk).unwrap();
    }
    r.commit(Some(GROWTH_LEN as u64)).unwrap();
    let mut back = Vec::new();
    r.read_into(&mut back).unwrap();
    assert!(back == data);
    println!("downloaded: ready");
}

// Runs bash with `ulimit -f` (a file size limit standing in for a full disk): Unix only.
#[cfg(unix)]
#[test]
fn growth_falls_back_to_the_exact_size_before_refusing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("near-limit.bin");
    let stdout = run_child_under_ulimit(
        "child_downloading_near_the_limit",
        3000,
        path.to_str().unwrap(),
    );
    assert!(stdout.contains("downloaded"), "{stdout}");
    assert!(fs::read(&path).unwrap() == pattern(41, GROWTH_LEN));
}

#[test]
fn a_failed_open_leaves_the_directory_as_it_found_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("too-big.bin");
    let err = support::open_mmap(&path, Some(1 << 60), OpenMode::Auto).unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
    // An existing empty file stays, empty, with no journal beside it.
    fs::write(&path, b"").unwrap();
    support::open_mmap(&path, Some(1 << 60), OpenMode::Auto).unwrap_err();
    assert_eq!(names_in(dir.path()), vec!["too-big.bin".to_owned()]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[cfg(unix)] // FIFOs and symlinks are made with Unix calls.
#[test]
fn a_path_that_is_not_a_regular_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    for mode in [OpenMode::Auto, OpenMode::ReadWrite, OpenMode::ReadOnly] {
        let err = open(&path, mode).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file"),
            "{mode:?}: {err}"
        );
    }
    assert_eq!(names_in(dir.path()), vec!["socket".to_owned()]);
}

/// A path named as another file's journal (or its temporary) is refused:
/// opening that other file would write its journal over it.
#[test]
fn a_path_named_as_a_journal_is_refused_and_nothing_is_made() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.storage-journal", "x.storage-journal.tmp"] {
        let path = dir.path().join(name);
        let error = open(&path, OpenMode::Auto).expect_err(name);
        assert!(error.to_string().contains(name), "{error}");
        assert!(
            names_in(dir.path()).is_empty(),
            "{name}: something was made"
        );
    }
    // Names that only look alike are ordinary files.
    for name in [
        "x.storage-journalx",
        "storage-journal",
        ".storage-journal.tmp.bin",
    ] {
        let path = dir.path().join(name);
        open(&path, OpenMode::Auto)
            .unwrap()
            .write_all(b"data")
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"data", "{name}");
    }
}

/// Another program holding a lock on the directory (`flock DIR command`)
/// delays a new file's open and its commit's sync by a bounded time, never
/// for as long as it holds the lock.
#[cfg(unix)] // `flock` on a directory
#[test]
fn a_directory_locked_by_another_program_never_stops_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let held = fs::File::open(dir.path()).unwrap();
    held.lock().unwrap();
    let path = dir.path().join("under-a-foreign-lock.bin");
    let done = support::within(
        "an open and a sync under a foreign directory lock",
        move || {
            let r = open(&path, OpenMode::Auto).unwrap();
            r.write_all(b"data").unwrap();
            r.sync().unwrap();
            fs::read(&path).unwrap()
        },
    );
    assert_eq!(done, b"data");
    drop(held);
}
