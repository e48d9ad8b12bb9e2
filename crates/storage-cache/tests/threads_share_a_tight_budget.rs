//! Eight threads opening, writing, reading and dropping overlapping keys
//! under a tight budget: bounded, no deadlock, every byte right, the budget
//! held but for what is leased.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few KiB: they fit in usize everywhere"
)]

mod support;

use std::{
    sync::{Arc, Barrier},
    thread,
};

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError};
use support::{bounded, content, data_bytes};

const THREADS: usize = 8;
const KEYS: u64 = 12;
const ROUNDS: usize = 150;
const ENTRY: usize = 8 * 1024;
const MAX_BYTES: u64 = 5 * ENTRY as u64;

/// Every key has one content, so any thread can check any entry.
fn value(key: u64) -> Vec<u8> {
    content(key, ENTRY)
}

#[test]
fn eight_threads_on_overlapping_keys_keep_the_budget_and_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(
        dir.path(),
        CacheOptions {
            max_bytes: MAX_BYTES,
            initial_len: Some(ENTRY as u64),
            ..CacheOptions::default()
        },
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut held = Vec::new();
                for round in 0..ROUNDS {
                    let key = ((t * 7 + round * 5) as u64) % KEYS;
                    let resource = cache
                        .resource(&format!("track-{key}"), CancellationToken::new())
                        .unwrap();
                    let expected = value(key);
                    if let ResourceStatus::Committed { final_len } = resource.status() {
                        assert_eq!(final_len, Some(ENTRY as u64));
                        let mut buf = vec![0; ENTRY];
                        assert_eq!(resource.read_at(0, &mut buf).unwrap(), ENTRY);
                        assert_eq!(buf, expected);
                    } else {
                        // Another thread may be writing the same key: halves
                        // in either order, then one commit wins.
                        let half = ENTRY / 2;
                        let (first, second) = if t % 2 == 0 { (0, half) } else { (half, 0) };
                        for start in [first, second] {
                            match resource.write_at(start as u64, &expected[start..start + half]) {
                                Ok(()) | Err(StorageError::Committed) => {}
                                Err(other) => panic!("write: {other}"),
                            }
                        }
                        if let Err(error) = resource.commit(Some(ENTRY as u64)) {
                            panic!("commit: {error}");
                        }
                        let mut buf = vec![0; ENTRY];
                        assert_eq!(resource.read_at(0, &mut buf).unwrap(), ENTRY);
                        assert_eq!(buf, expected);
                    }
                    // Hold a few leases across rounds, as players do.
                    held.push(resource);
                    if held.len() > 2 {
                        held.remove(0);
                    }
                    let stats = cache.stats();
                    // At most 8 threads × 3 leases are held: the rest fits.
                    assert!(
                        stats.bytes <= MAX_BYTES + (THREADS * 3 * ENTRY) as u64,
                        "{stats:?}"
                    );
                }
            })
        })
        .collect();
    bounded("eight threads", move || {
        for worker in workers {
            worker.join().unwrap();
        }
    });
    let stats = cache.stats();
    assert!(stats.bytes <= MAX_BYTES, "{stats:?}");
    assert_eq!(stats.bytes, data_bytes(dir.path()));
    assert!(stats.evictions > 0 && stats.hits > 0, "{stats:?}");
    assert!(
        stats.peak_bytes <= MAX_BYTES + (THREADS * 3 * ENTRY) as u64,
        "{stats:?}"
    );
    // Every entry left is whole.
    for entry in cache.entries() {
        let key: u64 = entry.key.trim_start_matches("track-").parse().unwrap();
        let resource = cache
            .resource(&entry.key, CancellationToken::new())
            .unwrap();
        let mut buf = vec![0; ENTRY];
        resource.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, value(key));
    }
}
