//! An entry's marker records what its resource actually became (a commit
//! that was refused, or a second commit that changed nothing, leaves it as
//! it was), and a pin lands on its own key only, whatever races it.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Instant,
};

use storage_core::{ResourceExt, ResourceStatus};
use support::{LIMIT, get, open, read_all};

#[test]
fn a_second_commit_with_another_length_leaves_a_pinned_entry_whole() {
    for second in [4, 16] {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), 1 << 20);
        let entry = get(&cache, "k");
        entry.write_at(0, b"12345678").unwrap();
        entry.commit(Some(8)).unwrap();
        cache.pin("k").unwrap();
        // A no-op by the core's contract: Ok, and nothing changes.
        entry.commit(Some(second)).unwrap();
        assert_eq!(
            entry.status(),
            ResourceStatus::Committed { final_len: Some(8) }
        );
        drop((entry, cache));

        let cache = open(dir.path(), 1 << 20);
        let entry = get(&cache, "k");
        assert_eq!(
            entry.status(),
            ResourceStatus::Committed { final_len: Some(8) },
            "after a second commit({second})"
        );
        assert_eq!(read_all(&entry), b"12345678");
        assert_eq!(cache.stats().hits, 1);
        assert!(cache.entries()[0].pinned);
    }
}

#[test]
fn a_refused_commit_leaves_the_marker_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 20);
    let entry = get(&cache, "k");
    entry.write_at(0, b"12345678").unwrap();
    entry.set_expected_len(8).unwrap();
    // Another length than the declared one: refused.
    assert!(entry.commit(Some(5)).is_err());
    entry.commit(Some(8)).unwrap();
    drop((entry, cache));
    let cache = open(dir.path(), 1 << 20);
    let entry = get(&cache, "k");
    assert_eq!(
        entry.status(),
        ResourceStatus::Committed { final_len: Some(8) }
    );
    assert_eq!(read_all(&entry), b"12345678");
}

#[test]
fn a_pin_racing_removals_never_pins_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30);
    support::put(&cache, "hog", 1, 100);
    let stop = Arc::new(AtomicBool::new(false));
    let pinner = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = cache.pin("a");
            }
        })
    };
    let hog = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                cache.pin("hog").unwrap();
                cache.unpin("hog").unwrap();
            }
        })
    };
    let started = Instant::now();
    let mut wrong = Vec::new();
    for round in 0..400 {
        if started.elapsed() > LIMIT / 4 {
            break;
        }
        get(&cache, "a").write_all(b"a's bytes").unwrap();
        cache.remove("a").unwrap();
        let other = format!("b{round}");
        drop(get(&cache, &other));
        wrong.extend(
            cache
                .entries()
                .into_iter()
                .filter(|e| e.key.starts_with('b') && e.pinned)
                .map(|e| e.key),
        );
        if !wrong.is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    pinner.join().unwrap();
    hog.join().unwrap();
    assert!(wrong.is_empty(), "never pinned, yet pinned: {wrong:?}");
    // The markers agree: after a restart, no `b` key is pinned either.
    drop(cache);
    let cache = open(dir.path(), 1 << 30);
    let pinned_on_disk: Vec<String> = cache
        .entries()
        .into_iter()
        .filter(|e| e.pinned && e.key.starts_with('b'))
        .map(|e| e.key)
        .collect();
    assert!(
        pinned_on_disk.is_empty(),
        "pinned on disk: {pinned_on_disk:?}"
    );
}
