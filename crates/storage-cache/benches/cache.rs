//! The cache's rows of the performance table, each beside its baseline in
//! the same run: a hit `resource(key)` against `MmapResource::open` of the
//! same file, and `Cache::open` of 10,000 and 25,000 entries each way it
//! can go (time per entry, to see it is linear, and the bytes it keeps per
//! entry), medians of 3 rounds.
//!
//! `cargo bench -p storage-cache --bench cache` (`-- --quick`: fewer hit
//! rounds; `-- --sizes=10000,100000,1000000`: other sizes; `--open-only`:
//! no hit rows; `--sealed-only`: only the sealed opens and the close, the
//! full scans shown as 0). Directories of many entries are made in the directory
//! `CACHE_BENCH_DIR` names (a million entries are two million files: give
//! it a disk with room and inodes), else in the system's temp dir.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "timings and counts shown as floating-point figures"
)]

use std::{
    alloc::System,
    fs,
    path::Path,
    time::{Duration, Instant},
};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds per call of `op`, over `n` calls.
fn per_op(n: u32, mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        op();
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn options(max_bytes: u64) -> CacheOptions {
    CacheOptions {
        max_bytes,
        ..CacheOptions::default()
    }
}

/// Hit `resource(key)` (no lease out: the file is opened each time) and a
/// hit on a live lease, against `MmapResource::open` + drop of the same file.
fn hits(rounds: usize, calls: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::open(dir.path(), options(1 << 30)).expect("open cache");
    let resource = cache
        .resource("track", CancellationToken::new())
        .expect("resource");
    resource.write_all(&vec![7; 256 * 1024]).expect("write");
    resource.sync().expect("sync");
    let path = resource.path().expect("a file").to_path_buf();
    drop(resource);
    let (mut raw, mut hit, mut shared) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(per_op(calls, || {
            let opened = MmapResource::open(
                CancellationToken::new(),
                MmapOptions {
                    path: path.clone(),
                    initial_len: None,
                    mode: OpenMode::Auto,
                },
            )
            .expect("raw open");
            drop(opened);
        }));
        hit.push(per_op(calls, || {
            drop(
                cache
                    .resource("track", CancellationToken::new())
                    .expect("hit"),
            );
        }));
        let held = cache
            .resource("track", CancellationToken::new())
            .expect("hit");
        shared.push(per_op(calls, || {
            drop(
                cache
                    .resource("track", CancellationToken::new())
                    .expect("hit"),
            );
        }));
        drop(held);
    }
    let (raw, hit, shared) = (median(raw), median(hit), median(shared));
    println!(
        "| hit `resource(key)`, no lease out (opens the file) | {:.1} µs | `MmapResource::open` + drop: {:.1} µs | {:.2} × (target ≤ 2 ×) |",
        hit / 1e3,
        raw / 1e3,
        hit / raw
    );
    println!(
        "| hit `resource(key)` while a lease is out (shares it) | {:.2} µs | same | {:.3} × |",
        shared / 1e3,
        shared / raw
    );
}

/// The 64-bit FNV-1a hash of the key: the entry names of `src/names.rs`.
fn key_hash(key: &str) -> u64 {
    key.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A marker as `src/marker.rs` documents it (committed at `len`).
fn marker(key: &str, len: u64) -> Vec<u8> {
    let mut bytes = b"SCKEY001".to_vec();
    bytes.push(0);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bytes.extend_from_slice(key.as_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn key(i: usize) -> String {
    format!("https://cdn.example/album/{}/track-{i}.flac", i / 12)
}

/// Writes `n` committed entries of 64 bytes straight into a new cache
/// directory (the way the cache lays them out).
fn populate(dir: &Path, n: usize) {
    Cache::open(dir, options(u64::MAX)).expect("create cache");
    let data = [5_u8; 64];
    for i in 0..n {
        let key = key(i);
        let name = format!("{:016x}-0", key_hash(&key));
        fs::write(dir.join(&name), data).expect("data");
        fs::write(dir.join(format!("{name}.key")), marker(&key, 64)).expect("marker");
    }
}

/// Breaks the seal of `dir` (as a kill would): the next open scans.
fn break_seal(dir: &Path) {
    fs::write(dir.join("cache.lock"), b"").expect("break the seal");
}

/// Changes a name in `dir` (a file created and removed): the directory's
/// stamp moves, so a sealed open lists the directory by name.
fn touch_names(dir: &Path) {
    let probe = dir.join("bench-probe");
    fs::write(&probe, b"").expect("probe");
    fs::remove_file(&probe).expect("probe");
}

/// Opens `dir`; the time it took, and the bytes the open cache keeps
/// allocated (all of them, keys included).
fn timed_open(dir: &Path, n: usize) -> (Cache, Duration, f64) {
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    let cache = Cache::open(dir, options(u64::MAX)).expect("open");
    let took = started.elapsed();
    let change = region.change();
    assert_eq!(cache.stats().entries, n as u64, "every entry found");
    // stats_alloc counts a realloc's growth in `bytes_allocated` (and its
    // shrinking in `bytes_deallocated`) already.
    let kept = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    (cache, took, kept)
}

/// `Cache::open` of `n` entries, each way it can go: no index (every
/// marker read), an index without a seal (a kill: every file `stat`ed,
/// the markers it vouches for not read), a sealed index with the directory
/// unchanged (nothing listed), a sealed index after a name changed (the
/// directory listed by name); the clean close that writes and seals the
/// index; the bytes the open cache keeps per entry beyond its key.
fn open_many(n: usize, rounds: usize, sealed_only: bool) {
    let parent = std::env::var_os("CACHE_BENCH_DIR")
        .and_then(|scratch| tempfile::tempdir_in(scratch).ok())
        .unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
    let dir = parent.path();
    populate(dir, n);
    let mut rows: [Vec<f64>; 5] = Default::default();
    let mut kept = Vec::new();
    if sealed_only {
        // One untimed open writes the index and seals it.
        drop(timed_open(dir, n));
    }
    for _ in 0..rounds {
        let (mut cold, mut hinted) = (Duration::ZERO, Duration::ZERO);
        if !sealed_only {
            let _ = fs::remove_file(dir.join("cache.index"));
            break_seal(dir);
            let cache;
            (cache, cold, _) = timed_open(dir, n);
            drop(cache);
            break_seal(dir);
            let cache;
            (cache, hinted, _) = timed_open(dir, n);
            drop(cache);
        }
        let (cache, sealed, bytes) = timed_open(dir, n);
        kept.push(bytes);
        let started = Instant::now();
        drop(cache);
        let close = started.elapsed();
        touch_names(dir);
        let (cache, listed, _) = timed_open(dir, n);
        drop(cache);
        for (row, d) in rows.iter_mut().zip([cold, hinted, sealed, listed, close]) {
            row.push(d.as_secs_f64());
        }
    }
    let [cold, hinted, sealed, listed, close] = rows.map(median);
    let keys: usize = (0..n).map(|i| key(i).len()).sum();
    let per = |s: f64| s * 1e6 / n as f64;
    println!(
        "| `Cache::open`, {n} entries, sealed index, nothing changed | {sealed:.3} s ({:.2} µs/entry) | no index: {cold:.3} s ({:.2} µs/entry) | kept: {:.0} B/entry beyond the key (target < 1 s at 1M, < 200 B) |",
        per(sealed),
        per(cold),
        (median(kept) - keys as f64) / n as f64,
    );
    println!(
        "| `Cache::open`, {n} entries, sealed index, a name changed (listed by name) | {listed:.3} s ({:.2} µs/entry) | index without a seal (a kill; every file stat'ed): {hinted:.3} s ({:.2} µs/entry) | |",
        per(listed),
        per(hinted),
    );
    println!(
        "| clean close of {n} entries (index written and synced, seal) | {close:.3} s ({:.2} µs/entry) | — | |",
        per(close),
    );
}

/// The sizes of `--sizes=10000,100000,1000000`, or the default ones.
fn sizes() -> Vec<usize> {
    std::env::args()
        .find_map(|a| a.strip_prefix("--sizes=").map(str::to_owned))
        .map_or_else(
            || vec![10_000, 25_000],
            |list| {
                list.split(',')
                    .map(|n| n.trim().parse().expect("--sizes=N,N,..."))
                    .collect()
            },
        )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let open_only = std::env::args().any(|a| a == "--open-only");
    let sealed_only = std::env::args().any(|a| a == "--sealed-only");
    let (rounds, calls) = if quick { (3, 500) } else { (9, 2000) };
    println!("| workload | cache | baseline (same run) | ratio / figure |");
    println!("| --- | --- | --- | --- |");
    if !open_only {
        hits(rounds, calls);
    }
    for n in sizes() {
        open_many(n, 3, sealed_only);
    }
}
