//! Hostile keys, odd budgets and unusable directories: each a clear
//! `StorageError` or a documented behaviour, never a panic.

mod support;

use std::{fs, io};
#[cfg(unix)] // Only the Unix-gated read-only helpers below use them.
use std::{path::Path, process::Command};

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError};
use support::{files, get, open, open_with, read_all};

fn kind(error: &StorageError) -> Option<io::ErrorKind> {
    match error {
        StorageError::Io(inner) => Some(inner.kind()),
        _ => None,
    }
}

#[test]
fn hostile_keys_are_ordinary_keys_and_stay_inside_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let cache = open(&dir, 1 << 20);
    let long = "x".repeat(10 * 1024);
    let keys = [
        "",
        "../..",
        "../../etc/passwd",
        "/",
        "/etc/passwd",
        "a/b/c",
        "a\0b",
        "\0",
        "CON",
        "NUL",
        "COM1",
        "LPT1.txt",
        "aux",
        "con.",
        " ",
        ".",
        "..",
        "cache.lock",
        "cache.index",
        "é\u{202e}🎵",
        &long,
    ];
    for (i, key) in keys.iter().enumerate() {
        get(&cache, key)
            .write_all(format!("value {i}").as_bytes())
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert!(cache.contains(key), "{key:?}");
        assert_eq!(
            read_all(&get(&cache, key)),
            format!("value {i}").as_bytes(),
            "{key:?}"
        );
    }
    // Nothing outside the directory, no subdirectory inside.
    assert_eq!(files(parent.path()), vec!["cache"]);
    assert!(
        fs::read_dir(&dir)
            .unwrap()
            .all(|e| e.unwrap().file_type().unwrap().is_file())
    );
    drop(cache);
    // And all of them come back after a restart.
    let cache = open(&dir, 1 << 20);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            read_all(&get(&cache, key)),
            format!("value {i}").as_bytes(),
            "{key:?}"
        );
    }
}

#[test]
fn a_cancelled_token_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert!(matches!(
        cache.resource("k", cancel),
        Err(StorageError::Cancelled)
    ));
    assert!(!cache.contains("k"));
}

#[test]
fn a_file_in_place_of_the_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let error = Cache::open(&file, CacheOptions::default()).unwrap_err();
    assert_eq!(kind(&error), Some(io::ErrorKind::NotADirectory), "{error}");
    assert!(error.to_string().contains("not-a-dir"), "{error}");
    let under = Cache::open(file.join("below"), CacheOptions::default()).unwrap_err();
    assert!(matches!(under, StorageError::Io(_)), "{under}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_directory_that_was_never_a_cache_is_not_emptied() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("thesis.tex"), b"years of work").unwrap();
    let error = Cache::open(dir.path(), CacheOptions::default()).unwrap_err();
    assert_eq!(kind(&error), Some(io::ErrorKind::InvalidInput), "{error}");
    assert_eq!(files(dir.path()), vec!["thesis.tex"]);
}

#[test]
fn a_second_cache_on_one_directory_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 1 << 20);
    let second = Cache::open(dir.path(), CacheOptions::default()).unwrap_err();
    assert!(
        matches!(&second, StorageError::Locked { path } if path.ends_with("cache.lock")),
        "{second}"
    );
    drop(first);
    open(dir.path(), 1 << 20);
}

/// Makes `dir` read-only for this process, even as root (`chattr +i`);
/// returns whether `chattr` was used.
#[cfg(unix)] // Unix permission bits and chattr; Windows has neither.
fn make_read_only(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if fs::write(&probe, b"").is_err() {
        return false;
    }
    fs::remove_file(&probe).unwrap();
    let status = Command::new("chattr").arg("+i").arg(dir).status().unwrap();
    assert!(status.success(), "cannot make {} read-only", dir.display());
    assert!(fs::write(&probe, b"").is_err());
    true
}

#[cfg(unix)] // Unix permission bits and chattr; Windows has neither.
fn undo_read_only(dir: &Path, chattr: bool) {
    use std::os::unix::fs::PermissionsExt;
    if chattr {
        assert!(
            Command::new("chattr")
                .arg("-i")
                .arg(dir)
                .status()
                .unwrap()
                .success()
        );
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)] // A read-only directory is made with Unix permission bits and chattr.
#[test]
fn a_read_only_directory_is_an_error_naming_it() {
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    let used = parent.path().join("used");
    {
        let cache = open(&used, 1 << 20);
        get(&cache, "kept").write_all(b"kept").unwrap();
    }
    let chattr_fresh = make_read_only(&fresh);
    let chattr_used = make_read_only(&used);
    let error = Cache::open(&fresh, CacheOptions::default()).unwrap_err();
    assert!(error.to_string().contains("fresh"), "{error}");
    // A cache that exists but cannot be written now: opening it (which takes
    // its lock file for writing) fails, and nothing of it is lost.
    let started = std::time::Instant::now();
    let error = loop {
        match Cache::open(&used, CacheOptions::default()) {
            // A child forked by another test may hold the closed lock a moment.
            Err(StorageError::Locked { .. }) if started.elapsed() < support::LIMIT => {}
            other => break other,
        }
    };
    undo_read_only(&fresh, chattr_fresh);
    undo_read_only(&used, chattr_used);
    let error = error.unwrap_err();
    assert!(matches!(error, StorageError::Io(_)), "{error}");
    let cache = open(&used, 1 << 20);
    assert_eq!(read_all(&get(&cache, "kept")), b"kept");
}

// Deletes a directory whose files are open, which Windows refuses: the case
// cannot arise there.
#[cfg(unix)]
#[test]
fn a_directory_deleted_while_open_gives_errors_not_panics() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let cache = open(&dir, 1 << 20);
    get(&cache, "old").write_all(b"old bytes").unwrap();
    let held = get(&cache, "held");
    held.write_all(b"held bytes").unwrap();
    fs::remove_dir_all(&dir).unwrap();

    // The handle that was open keeps its (now nameless) file.
    assert_eq!(read_all(&held), b"held bytes");
    // New keys, and entries whose files are gone: clear errors, and the
    // directory is not recreated behind the user's back.
    let error = cache.resource("new", CancellationToken::new()).unwrap_err();
    assert!(matches!(error, StorageError::Io(_)), "{error}");
    assert!(!cache.contains("new"));
    let error = cache.resource("old", CancellationToken::new()).unwrap_err();
    assert!(matches!(error, StorageError::Io(_)), "{error}");
    assert!(!dir.exists());
    assert!(cache.save_index().is_err());
    cache.pin("old").unwrap_err();
    cache.remove("old").unwrap();
    drop(held);
    drop(cache);
    assert!(!dir.exists());
}

#[test]
fn a_zero_budget_and_a_huge_one_are_both_fine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_with(
        dir.path(),
        &CacheOptions {
            max_bytes: 0,
            initial_len: Some(0),
            ..CacheOptions::default()
        },
    );
    let r = get(&cache, "a");
    r.write_all(b"abc").unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(3) });
    assert_eq!(cache.stats().overshoot, 3);
    drop(r);
    assert_eq!(cache.stats().bytes, 0);
    drop(cache);
    let cache = open_with(
        dir.path(),
        &CacheOptions {
            max_bytes: u64::MAX,
            initial_len: None,
            ..CacheOptions::default()
        },
    );
    get(&cache, "b").write_all(b"abc").unwrap();
    assert_eq!(cache.stats().overshoot, 0);
}
