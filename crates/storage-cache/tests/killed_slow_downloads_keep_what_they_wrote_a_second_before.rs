//! A slow download (a music track at 200 KB/s: far below the 8 MiB byte
//! bound of checkpoints) killed with SIGKILL at random instants: every byte
//! written at least 1.2 s before the kill is there after a reopen — through
//! a bare mmap resource and through a cache entry (`CacheOptions`' policy)
//! — and every byte reported there is the byte that was written.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few MiB: they fit in usize everywhere"
)]

mod support;

use std::{
    io::{BufRead, BufReader},
    ops::Range,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, testing::retry_locked};
use storage_mmap::{MmapOptions, MmapResource};
use support::{LIMIT, content};

const CHILD_ENV: &str = "STORAGE_SLOW_DOWNLOAD_CHILD";
const LEN: u64 = 2_000_000;
const CHUNK: u64 = 8 * 1024;
/// 8 KiB every 40 ms: 200 KB/s.
const PACE: Duration = Duration::from_millis(40);
const KEY: &str = "https://cdn.example/track.mp3";
/// What a kill may cost: about one second of writing (the default
/// `max_delay`), plus the checkpoint's own time.
const BOUND: Duration = Duration::from_millis(1200);

/// The chunks in the order the child writes them: a seek at a third.
fn order() -> Vec<u64> {
    let chunks = LEN.div_ceil(CHUNK);
    let seek = chunks / 3;
    (seek..chunks).chain(0..seek).collect()
}

fn chunk_range(c: u64) -> Range<u64> {
    c * CHUNK..((c + 1) * CHUNK).min(LEN)
}

/// The child: downloads slowly into `where` (`mmap:PATH` or `cache:DIR`),
/// printing `w START END` once each write returned.
#[test]
fn child_downloading_slowly() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let data = content(7, LEN as usize);
    let resource: Box<dyn ResourceExt> = match arg.split_once(':') {
        Some(("mmap", path)) => {
            Box::new(MmapResource::open(CancellationToken::new(), MmapOptions::new(path)).unwrap())
        }
        Some(("cache", dir)) => {
            let cache = Cache::open(dir, CacheOptions::default()).unwrap();
            let entry = cache.resource(KEY, CancellationToken::new()).unwrap();
            // The cache handle may go: the lease keeps the entry.
            drop(cache);
            Box::new(entry)
        }
        _ => panic!("unknown child argument {arg}"),
    };
    println!("ready");
    let started = Instant::now();
    for (i, c) in order().into_iter().enumerate() {
        let range = chunk_range(c);
        resource
            .write_at(range.start, &data[range.start as usize..range.end as usize])
            .unwrap();
        println!("w {} {}", range.start, range.end);
        // Paced from the start, so a slow write does not slow the rate.
        let next = started + PACE * (u32::try_from(i).unwrap() + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    println!("done");
    thread::sleep(LIMIT);
}

/// Runs the child on `target`, kills it `after` its first write, and
/// returns the ranges written at least [`BOUND`] before the kill.
fn download_and_kill(target: &str, after: Duration) -> Vec<Range<u64>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_downloading_slowly",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut written = Vec::new();
    let mut first = None;
    let kill_at = loop {
        let wait = first.map_or(LIMIT, |at: Instant| {
            (at + after).saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait.min(deadline.saturating_duration_since(Instant::now()))) {
            Ok((at, line)) => {
                if let Some(range) = line.strip_prefix("w ") {
                    let (start, end) = range.split_once(' ').unwrap();
                    first.get_or_insert(at);
                    written.push((at, start.parse().unwrap()..end.parse().unwrap()));
                }
                assert_ne!(line, "done", "the download finished before the kill");
            }
            Err(mpsc::RecvTimeoutError::Timeout) if first.is_some() => break Instant::now(),
            Err(error) => panic!("the child stopped talking: {error}"),
        }
        assert!(Instant::now() < deadline, "no kill within {LIMIT:?}");
    };
    child.kill().unwrap();
    child.wait().unwrap();
    written
        .into_iter()
        .filter(|(at, _)| *at + BOUND <= kill_at)
        .map(|(_, range)| range)
        .collect()
}

/// Checks what the reopened `resource` holds against the ranges that must
/// be there and the bytes that were written; returns the bytes it holds.
fn check(resource: &impl ResourceExt, must: &[Range<u64>], label: &str) -> u64 {
    assert_eq!(resource.status(), ResourceStatus::Active, "{label}");
    for range in must {
        assert!(
            resource.contains_range(range.clone()),
            "{label}: {range:?}, written {BOUND:?} before the kill, is not there"
        );
    }
    let data = content(7, LEN as usize);
    let mut held = 0;
    let mut from = 0;
    while let Some(gap) = resource.next_gap(from, LEN) {
        held += gap.start - from;
        from = gap.end;
    }
    held += LEN - from;
    for c in order() {
        let range = chunk_range(c);
        if resource.contains_range(range.clone()) {
            let mut buf = vec![0; (range.end - range.start) as usize];
            resource.read_at(range.start, &mut buf).unwrap();
            assert!(
                buf == data[range.start as usize..range.end as usize],
                "{label}: wrong bytes in {range:?}"
            );
        }
    }
    held
}

fn kill_instants(seed: u64) -> [Duration; 3] {
    // Random instants between 0.3 s and 4 s into a 10 s download.
    let mut x = seed | 1;
    [0; 3].map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_millis(300 + x % 3700)
    })
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::from(d.subsec_nanos()))
}

#[test]
fn a_killed_slow_download_keeps_what_it_wrote_a_second_before() {
    let seed = seed();
    for (round, after) in kill_instants(seed).into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("track.mp3");
        let must = download_and_kill(&format!("mmap:{}", path.display()), after);
        let resource =
            retry_locked(|| MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)))
                .unwrap();
        let label = format!("seed {seed}, round {round}, killed after {after:?}");
        let held = check(&resource, &must, &label);
        println!(
            "{label}: {} B required, {held} B resumed",
            must.len() as u64 * CHUNK
        );
    }
}

#[test]
fn a_killed_slow_download_into_the_cache_keeps_what_it_wrote_a_second_before() {
    let seed = seed();
    for (round, after) in kill_instants(seed ^ 0x5555).into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let must = download_and_kill(&format!("cache:{}", cache_dir.display()), after);
        let cache = retry_locked(|| Cache::open(&cache_dir, CacheOptions::default())).unwrap();
        let entry = cache.resource(KEY, CancellationToken::new()).unwrap();
        let label = format!("cache, seed {seed}, round {round}, killed after {after:?}");
        let held = check(&entry, &must, &label);
        println!(
            "{label}: {} B required, {held} B resumed",
            must.len() as u64 * CHUNK
        );
    }
}
