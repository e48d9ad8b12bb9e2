//! Files deleted, cut or added from outside, a lost or corrupt index,
//! leftovers of a crash: the directory is the truth, and nothing is ever
//! served whole that is not.

mod support;

use std::{fs, path::Path};

use storage_core::{ResourceExt, ResourceStatus};
use storage_mmap::fs::journal_path;
use support::{data_bytes, files, get, open, put, put_durable, read_all};

/// Cuts or extends `file` to `len` bytes, as another program would.
fn set_len_from_outside(file: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The data file of the only entry in `dir` with that content length.
fn data_file(dir: &Path, len: u64) -> std::path::PathBuf {
    files(dir)
        .into_iter()
        .filter(|n| !n.contains('.'))
        .map(|n| dir.join(n))
        .find(|p| fs::metadata(p).unwrap().len() == len)
        .unwrap()
}

#[test]
fn a_data_file_deleted_from_outside_is_a_miss_never_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    put(&cache, "a", 1, 1000);
    fs::remove_file(data_file(dir.path(), 1000)).unwrap();
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(!r.contains_range(0..1));
    assert_eq!(cache.stats().misses, 2);
    let data = support::content(2, 300);
    r.write_all(&data).unwrap();
    drop(r);
    assert_eq!(read_all(&get(&cache, "a")), data);
}

#[test]
fn a_committed_file_cut_from_outside_resumes_as_partial() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let data = put_durable(&cache, "a", 1, 1000);
    let file = data_file(dir.path(), 1000);
    set_len_from_outside(&file, 400);
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active, "never served as whole");
    assert!(r.contains_range(0..400) && !r.contains_range(400..401));
    let mut head = vec![0; 400];
    assert_eq!(r.read_at(0, &mut head).unwrap(), 400);
    assert_eq!(head, data[..400]);
    // The rest is downloaded again, and it is whole once more.
    r.write_at(400, &data[400..]).unwrap();
    r.commit(Some(1000)).unwrap();
    drop(r);
    assert_eq!(read_all(&get(&cache, "a")), data);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
}

/// An entry committed but not synced yet is vouched for by its mark
/// (length and CRC-32), which a cut file no longer matches: it is fetched
/// again whole (no prefix is vouched for), never served as it is.
#[test]
fn an_unsynced_committed_file_cut_from_outside_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let data = put(&cache, "a", 1, 1000);
    let file = data_file(dir.path(), 1000);
    set_len_from_outside(&file, 400);
    if !storage_mmap::fs::unfinished_by_mark(&file).unwrap() {
        // A file system without extended attributes: the entry was made
        // durable at its drop, as the test above.
        return;
    }
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active, "never served as whole");
    assert_eq!(r.next_gap(0, 1000), Some(0..1000));
    r.write_all(&data).unwrap();
    drop(r);
    assert_eq!(read_all(&get(&cache, "a")), data);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
}

#[test]
fn a_committed_file_cut_while_the_cache_was_closed_is_partial_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = put_durable(&open(dir.path(), 1 << 20), "a", 1, 1000);
    set_len_from_outside(&data_file(dir.path(), 1000), 10);
    // Without a seal (a kill, say), the open stats the file: its length
    // counts at once.
    support::break_seal(dir.path());
    let cache = open(dir.path(), 1 << 20);
    assert_eq!(cache.stats().bytes, 10);
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active);
    let mut head = vec![0; 10];
    r.read_at(0, &mut head).unwrap();
    assert_eq!(head, data[..10]);
}

#[test]
fn a_committed_file_cut_behind_a_sealed_index_is_partial_at_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = put_durable(&open(dir.path(), 1 << 20), "a", 1, 1000);
    // Cut in place: no name changes, so the sealed index is trusted at
    // open (its length stands until the entry's first use).
    set_len_from_outside(&data_file(dir.path(), 1000), 10);
    let cache = open(dir.path(), 1 << 20);
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active, "never served whole");
    let mut head = vec![0; 10];
    r.read_at(0, &mut head).unwrap();
    assert_eq!(head, data[..10]);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
}

#[test]
fn a_file_grown_from_outside_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    put(&cache, "a", 1, 100);
    let file = data_file(dir.path(), 100);
    set_len_from_outside(&file, 5000);
    let r = get(&cache, "a");
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(!r.contains_range(0..1));
}

#[test]
fn a_deleted_marker_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let data = put(&cache, "a", 1, 100);
    for name in files(dir.path())
        .iter()
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "key"))
    {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    assert_eq!(read_all(&get(&cache, "a")), data);
    drop(cache);
    let cache = open(dir.path(), 1 << 20);
    assert_eq!(read_all(&get(&cache, "a")), data);
}

#[test]
fn a_missing_or_corrupt_or_stale_index_loses_no_entry_and_no_pin() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let a = put(&cache, "a", 1, 100);
    let b = put(&cache, "b", 2, 200);
    cache.pin("b").unwrap();
    cache.save_index().unwrap();
    // After the save: a new entry, a new pin, a removal — the index is stale.
    let c = put(&cache, "c", 3, 300);
    cache.pin("a").unwrap();
    cache.unpin("b").unwrap();
    put(&cache, "gone", 4, 10);
    cache.remove("gone").unwrap();
    let stale = fs::read(dir.path().join("cache.index")).unwrap();
    drop(cache);

    let check = |label: &str| {
        let cache = open(dir.path(), 1 << 20);
        let mut entries: Vec<(String, bool)> = cache
            .entries()
            .into_iter()
            .map(|e| (e.key, e.pinned))
            .collect();
        entries.sort();
        assert_eq!(
            entries,
            vec![("a".into(), true), ("b".into(), false), ("c".into(), false)],
            "{label}"
        );
        assert_eq!(read_all(&get(&cache, "a")), a, "{label}");
        assert_eq!(read_all(&get(&cache, "b")), b, "{label}");
        assert_eq!(read_all(&get(&cache, "c")), c, "{label}");
        assert_eq!(cache.stats().bytes, 600, "{label}");
    };
    fs::write(dir.path().join("cache.index"), &stale).unwrap();
    check("stale index");
    fs::write(dir.path().join("cache.index"), b"garbage").unwrap();
    check("corrupt index");
    let mut flipped = fs::read(dir.path().join("cache.index")).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    fs::write(dir.path().join("cache.index"), &flipped).unwrap();
    check("index with one bit flipped");
    fs::remove_file(dir.path().join("cache.index")).unwrap();
    check("no index");
}

#[test]
fn orphans_are_removed_at_open_and_subdirectories_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = put(&open(dir.path(), 1 << 20), "a", 1, 100);
    let p = dir.path();
    fs::write(p.join("0123456789abcdef-0"), b"data without marker").unwrap();
    fs::write(p.join("0123456789abcdef-1.key"), b"marker without data").unwrap();
    fs::write(
        journal_path(&p.join("0123456789abcdef-2")),
        b"journal without data",
    )
    .unwrap();
    fs::write(p.join("0123456789abcdef-3"), b"data with a torn marker").unwrap();
    fs::write(p.join("0123456789abcdef-3.key"), b"SCKEY001torn").unwrap();
    fs::write(p.join("0123456789abcdef-4.key.tmp"), b"").unwrap();
    fs::write(p.join(".cache.index.a1b2c3.tmp"), b"").unwrap();
    fs::write(journal_path(&p.join("cache.index")), b"").unwrap();
    fs::write(p.join("unknown.mp3"), b"").unwrap();
    fs::create_dir(p.join("somebody's folder")).unwrap();
    let cache = open(p, 1 << 20);
    let names = files(p);
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.contains(&"somebody's folder".to_string()));
    assert!(
        names.contains(&"cache.lock".to_string()) && names.contains(&"cache.index".to_string())
    );
    assert_eq!(cache.stats().entries, 1);
    assert_eq!(read_all(&get(&cache, "a")), data);
}

#[test]
fn a_smaller_budget_at_open_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), 1 << 20);
        for key in ["a", "b", "c", "d"] {
            put(&cache, key, 1, 100);
        }
        drop(get(&cache, "a"));
    }
    let cache = open(dir.path(), 250);
    let mut kept: Vec<String> = cache.entries().into_iter().map(|e| e.key).collect();
    kept.sort();
    assert_eq!(kept, vec!["a", "d"]);
    assert_eq!(cache.stats().peak_bytes, 200);
    assert_eq!(data_bytes(dir.path()), 200);
}

/// `chattr +i` on `path` until dropped (this test suite runs as root, as
/// CI does; it says so if it cannot).
#[cfg(unix)]
struct Immutable(std::path::PathBuf);

#[cfg(unix)]
impl Immutable {
    fn new(path: &Path) -> Self {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chattr +i needs root");
        Self(path.to_path_buf())
    }
}

#[cfg(unix)]
impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

// Makes a data file undeletable with chattr +i: Linux only.
#[cfg(unix)]
#[test]
fn a_remove_that_cannot_delete_the_data_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let data = put(&cache, "a", 1, 1000);
    cache.pin("a").unwrap();
    let stuck = Immutable::new(&data_file(dir.path(), 1000));
    assert!(cache.remove("a").is_err());
    assert!(cache.contains("a"));
    assert!(cache.entries()[0].pinned);
    assert_eq!(cache.stats().bytes, 1000);
    assert_eq!(read_all(&get(&cache, "a")), data);
    drop(stuck);
    drop(cache);
    let cache = open(dir.path(), 1 << 20);
    assert!(cache.entries()[0].pinned, "still pinned after a restart");
    cache.remove("a").unwrap();
    assert!(!cache.contains("a"));
    assert_eq!(data_bytes(dir.path()), 0);
    assert!(files(dir.path()).iter().all(|f| f.starts_with("cache.")));
}

// Makes a data file undeletable with chattr +i: Linux only.
#[cfg(unix)]
#[test]
fn files_that_cannot_be_deleted_still_count_and_never_stop_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 2500);
    put(&cache, "a", 1, 1000);
    let stuck = Immutable::new(&data_file(dir.path(), 1000));
    // "b" and "c" push "a" out, whose file cannot go: it still counts
    // (and so pushes "b" out too).
    put(&cache, "b", 2, 1000);
    put(&cache, "c", 3, 1000);
    assert!(!cache.contains("a") && !cache.contains("b") && cache.contains("c"));
    assert_eq!(cache.stats().bytes, 2000);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
    drop(cache);
    // Its leftover cannot be removed at open: skipped, counted.
    let cache = open(dir.path(), 1 << 20);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
    assert!(!cache.contains("a"));
    let again = put(&cache, "a", 4, 500);
    assert_eq!(read_all(&get(&cache, "a")), again);
    drop(stuck);
    drop(cache);
    let cache = open(dir.path(), 1 << 20);
    assert_eq!(cache.stats().bytes, 1500);
    assert_eq!(cache.stats().bytes, data_bytes(dir.path()));
}
