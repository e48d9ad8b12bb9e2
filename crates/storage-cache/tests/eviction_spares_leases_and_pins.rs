//! The budget, least-recently-used eviction, leases, pins and removal.

mod support;

use storage_core::{ResourceExt, ResourceStatus};
use support::{content, data_bytes, get, open, open_sized, put, read_all};

#[test]
fn the_least_recently_used_entry_goes_first_and_a_use_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    // New files are created at their final size: no reservation counts.
    let cache = open_sized(dir.path(), 300, 100);
    put(&cache, "a", 1, 100);
    put(&cache, "b", 2, 100);
    put(&cache, "c", 3, 100);
    // A use of "a" makes "b" the least recently used.
    drop(get(&cache, "a"));
    put(&cache, "d", 4, 100);
    assert!(cache.contains("a") && !cache.contains("b"));
    assert!(cache.contains("c") && cache.contains("d"));
    let stats = cache.stats();
    assert_eq!((stats.bytes, stats.entries, stats.evictions), (300, 3, 1));
    // "b" was evicted as "d" was created: the budget was never passed.
    assert_eq!(stats.peak_bytes, 300);
    assert_eq!(data_bytes(dir.path()), 300);
}

#[test]
fn hits_and_misses_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let data = put(&cache, "a", 1, 1000);
    let again = get(&cache, "a");
    assert_eq!(
        again.status(),
        ResourceStatus::Committed {
            final_len: Some(1000)
        }
    );
    assert_eq!(read_all(&again), data);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

#[test]
fn a_leased_entry_is_never_evicted_and_the_overshoot_shows() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1000);
    let playing = get(&cache, "playing");
    let data = content(9, 3000);
    playing.write_at(0, &data).unwrap();
    playing.commit(Some(3000)).unwrap();
    put(&cache, "other", 1, 500);
    // "other" could not stay; "playing" alone is over the budget.
    assert!(cache.contains("playing") && !cache.contains("other"));
    assert_eq!(cache.stats().overshoot, 2000);
    assert_eq!(read_all(&playing), data);
    drop(playing);
    // Released: now it is evicted too.
    assert!(!cache.contains("playing"));
    assert_eq!(cache.stats().bytes, 0);
    assert_eq!(cache.stats().overshoot, 0);
}

#[test]
fn the_same_key_twice_shares_one_resource_and_never_locks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let writer = get(&cache, "k");
    let reader = get(&cache, "k");
    writer.write_at(0, b"shared").unwrap();
    assert!(reader.contains_range(0..6));
    reader.commit(Some(6)).unwrap();
    assert_eq!(
        writer.status(),
        ResourceStatus::Committed { final_len: Some(6) }
    );
    drop(writer);
    assert_eq!(read_all(&reader), b"shared");
    drop(reader);
    // After every handle is gone, it opens again at once.
    assert_eq!(read_all(&get(&cache, "k")), b"shared");
}

#[test]
fn pinned_entries_survive_the_budget_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 250);
    let data = put(&cache, "offline", 5, 200);
    cache.pin("offline").unwrap();
    for i in 0..10 {
        put(&cache, &format!("t{i}"), i, 100);
    }
    assert!(cache.contains("offline"));
    drop(cache);
    // Even without the index, the pin is in the marker.
    std::fs::remove_file(dir.path().join("cache.index")).unwrap();
    let cache = open(dir.path(), 50);
    assert!(cache.contains("offline"));
    assert!(
        cache
            .entries()
            .iter()
            .any(|e| e.key == "offline" && e.pinned)
    );
    assert_eq!(read_all(&get(&cache, "offline")), data);
    cache.unpin("offline").unwrap();
    // Unpinned and over the budget: evicted at once.
    assert!(!cache.contains("offline"));
    assert!(
        cache.pin("offline").is_err(),
        "pinning a missing key is an error"
    );
    cache.unpin("offline").unwrap();
}

#[test]
fn removing_a_leased_entry_waits_for_its_last_lease() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let old = content(1, 100);
    let held = get(&cache, "k");
    held.write_all(&old).unwrap();
    cache.remove("k").unwrap();
    assert!(!cache.contains("k"));
    // The holder still reads its bytes; the key starts afresh meanwhile.
    assert_eq!(read_all(&held), old);
    let fresh = get(&cache, "k");
    assert_eq!(fresh.status(), ResourceStatus::Active);
    fresh.write_all(b"new").unwrap();
    assert_eq!(cache.stats().bytes, 103);
    drop(held);
    assert_eq!(cache.stats().bytes, 3);
    assert_eq!(data_bytes(dir.path()), 3);
    drop(fresh);
    cache.remove("k").unwrap();
    cache.remove("k").unwrap();
    assert_eq!(cache.stats().bytes, 0);
    assert_eq!(support::files(dir.path()), vec!["cache.lock"]);
}

#[test]
fn a_zero_budget_keeps_entries_only_while_leased() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 0);
    let r = get(&cache, "a");
    r.write_all(b"abc").unwrap();
    assert!(cache.contains("a"));
    assert_eq!(read_all(&r), b"abc");
    drop(r);
    assert!(!cache.contains("a"));
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn partial_entries_resume_after_a_restart_and_count_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let r = get(&cache, "half");
    r.write_at(10, b"middle").unwrap();
    drop(r);
    let bytes = cache.stats().bytes;
    assert_eq!(bytes, data_bytes(dir.path()));
    drop(cache);
    let cache = open(dir.path(), 1 << 20);
    assert_eq!(cache.stats().bytes, bytes);
    let r = get(&cache, "half");
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(r.contains_range(10..16) && !r.contains_range(0..10));
    assert_eq!(cache.stats().misses, 1);
}
