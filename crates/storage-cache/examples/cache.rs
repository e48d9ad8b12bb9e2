//! A simulated listening session through a bounded cache: a few hundred
//! tracks of random sizes, replays, seeks, skips and one pinned playlist,
//! streamed through a cache a fraction of their total size. Prints hits,
//! misses, evictions and the peak size against the budget; checks every
//! byte it reads; exits non-zero on a mismatch or a budget breach beyond
//! the documented bound (`bytes ≤ max(max_bytes, leased + pinned bytes)`).
//!
//! `cargo run --release --example cache`
//!
//! Its time is mostly the mmap driver's durable commits: every downloaded
//! track is synced to disk once (`fsync`), and closing it waits for that.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "track numbers and sizes are small; MiB are printed as floats"
)]

use std::{process::ExitCode, time::Instant};

use storage_cache::{Cache, CacheOptions, CacheStats, CachedResource};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError};

const TRACKS: u64 = 240;
const PLAYS: usize = 720;
const PLAYLIST: u64 = 12;
const CHUNK: u64 = 64 * 1024;
const MIN_TRACK: u64 = 32 * 1024;
const MAX_TRACK: u64 = 640 * 1024;

/// splitmix64: a reproducible source of sizes, choices and contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(track: u64) -> String {
    format!(
        "https://cdn.example/album/{}/track-{track}.flac",
        track / 10
    )
}

/// The bytes of `track` in `start..end` (8-aligned `start`): a function of
/// the track and the offset.
fn bytes_of(track: u64, start: u64, end: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(usize::try_from(end - start + 8).unwrap_or(0));
    for word in start / 8..end.div_ceil(8) {
        let x = word.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ track.wrapping_mul(0x9e37_79b9);
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(usize::try_from(end - start).unwrap_or(0));
    bytes
}

#[derive(Default)]
struct Tally {
    plays: u64,
    replays: u64,
    seeks: u64,
    skips: u64,
    bytes_checked: u64,
    mismatches: u64,
    breaches: u64,
    worst_overshoot: u64,
}

/// Checks the budget rule now: over `max_bytes` only by leased and pinned bytes.
fn check_budget(cache: &Cache, tally: &mut Tally) {
    let stats = cache.stats();
    let evictable: u64 = cache
        .entries()
        .iter()
        .filter(|e| !e.leased && !e.pinned)
        .map(|e| e.bytes)
        .sum();
    if stats.bytes > stats.max_bytes && evictable > 0 {
        eprintln!(
            "budget breach: {} bytes > {} with {evictable} evictable bytes",
            stats.bytes, stats.max_bytes
        );
        tally.breaches += 1;
    }
    tally.worst_overshoot = tally.worst_overshoot.max(stats.overshoot);
}

/// Reads `start..end` of `resource` and compares it with the track.
fn read_and_check(
    resource: &CachedResource,
    track: u64,
    start: u64,
    end: u64,
    tally: &mut Tally,
) -> Result<(), StorageError> {
    let mut buf = vec![0; usize::try_from(end - start).unwrap_or(0)];
    let mut done = 0;
    while done < buf.len() {
        let n = resource.read_at(start + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    tally.bytes_checked += done as u64;
    if done != buf.len() || buf != bytes_of(track, start, end) {
        eprintln!("mismatch: track {track} bytes {start}..{end}");
        tally.mismatches += 1;
    }
    Ok(())
}

/// One play: from the cache if whole, else a download that starts at a
/// seek position (out of order), sometimes skipped halfway (left partial,
/// resumed by a later play).
fn play(
    cache: &Cache,
    track: u64,
    len: u64,
    rng: &mut Rng,
    tally: &mut Tally,
) -> Result<(), StorageError> {
    let resource = cache.resource(&key(track), CancellationToken::new())?;
    let seek = if rng.below(3) == 0 {
        rng.below(len) / CHUNK * CHUNK
    } else {
        0
    };
    tally.seeks += u64::from(seek > 0);
    if let ResourceStatus::Committed { final_len } = resource.status() {
        if final_len != Some(len) {
            eprintln!("track {track}: committed at {final_len:?}, expected {len}");
            tally.mismatches += 1;
        }
        read_and_check(&resource, track, seek, len, tally)?;
        if seek > 0 {
            read_and_check(&resource, track, 0, seek, tally)?;
        }
        return Ok(());
    }
    let skip_after = if rng.below(8) == 0 {
        Some(rng.below(len / CHUNK + 1))
    } else {
        None
    };
    let order = (seek / CHUNK..len.div_ceil(CHUNK)).chain(0..seek / CHUNK);
    for (n, chunk) in order.enumerate() {
        if skip_after == Some(n as u64) {
            tally.skips += 1;
            return Ok(());
        }
        let (start, end) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(len));
        if !resource.contains_range(start..end) {
            resource.write_at(start, &bytes_of(track, start, end))?;
            check_budget(cache, tally);
        }
        read_and_check(&resource, track, start, end, tally)?;
    }
    resource.commit(Some(len))?;
    Ok(())
}

/// Prints what the session did.
fn report(
    stats: &CacheStats,
    tally: &Tally,
    total: u64,
    pinned_bytes: u64,
    bound: u64,
    playlist_whole: bool,
    started: Instant,
) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "tracks            {TRACKS} ({:.1} MiB in all), playlist of {PLAYLIST} pinned ({:.1} MiB)",
        mib(total),
        mib(pinned_bytes)
    );
    println!(
        "budget            {:.1} MiB (1/6 of the tracks)",
        mib(stats.max_bytes)
    );
    println!(
        "plays             {} ({} replays, {} seeks, {} skipped halfway)",
        tally.plays, tally.replays, tally.seeks, tally.skips
    );
    println!("hits / misses     {} / {}", stats.hits, stats.misses);
    println!("evictions         {}", stats.evictions);
    println!(
        "peak size         {:.2} MiB (budget {:.2} MiB; bound with leases and pins {:.2} MiB)",
        mib(stats.peak_bytes),
        mib(stats.max_bytes),
        mib(bound)
    );
    println!(
        "size at the end   {:.2} MiB in {} entries, worst overshoot {:.2} MiB",
        mib(stats.bytes),
        stats.entries,
        mib(tally.worst_overshoot)
    );
    println!(
        "bytes checked     {:.1} MiB, mismatches {}",
        mib(tally.bytes_checked),
        tally.mismatches
    );
    println!(
        "playlist after a restart: {}",
        if playlist_whole { "whole" } else { "NOT WHOLE" }
    );
    println!("budget breaches   {}", tally.breaches);
    println!("time              {:.2} s", started.elapsed().as_secs_f64());
}

fn run() -> Result<bool, StorageError> {
    let started = Instant::now();
    let mut rng = Rng(2026);
    let sizes: Vec<u64> = (0..TRACKS)
        .map(|_| MIN_TRACK + rng.below(MAX_TRACK - MIN_TRACK))
        .collect();
    let total: u64 = sizes.iter().sum();
    let max_bytes = total / 6;
    let dir = tempfile::tempdir()?;
    let options = CacheOptions {
        max_bytes,
        ..CacheOptions::default()
    };
    let cache = Cache::open(dir.path(), options.clone())?;
    let mut tally = Tally::default();

    // The offline playlist: downloaded and pinned first.
    for track in 0..PLAYLIST {
        play(
            &cache,
            track,
            sizes[track as usize],
            &mut Rng(track),
            &mut tally,
        )?;
        let resource = cache.resource(&key(track), CancellationToken::new())?;
        if resource.status()
            != (ResourceStatus::Committed {
                final_len: Some(sizes[track as usize]),
            })
        {
            play(
                &cache,
                track,
                sizes[track as usize],
                &mut Rng(0),
                &mut tally,
            )?;
        }
        cache.pin(&key(track))?;
    }
    let pinned_bytes: u64 = sizes[..PLAYLIST as usize].iter().sum();

    let mut history: Vec<u64> = Vec::new();
    for _ in 0..PLAYS {
        let track = match rng.below(10) {
            0..=2 if !history.is_empty() => {
                tally.replays += 1;
                history[history.len() - 1 - rng.below(history.len().min(15) as u64) as usize]
            }
            3 => rng.below(PLAYLIST),
            _ => rng.below(TRACKS),
        };
        play(&cache, track, sizes[track as usize], &mut rng, &mut tally)?;
        tally.plays += 1;
        history.push(track);
        check_budget(&cache, &mut tally);
    }
    let stats = cache.stats();
    drop(cache);

    // After a restart the playlist is all there, whole.
    let cache = Cache::open(dir.path(), options)?;
    let mut playlist_whole = true;
    for track in 0..PLAYLIST {
        let resource = cache.resource(&key(track), CancellationToken::new())?;
        playlist_whole &= resource.status()
            == ResourceStatus::Committed {
                final_len: Some(sizes[track as usize]),
            };
        read_and_check(&resource, track, 0, sizes[track as usize], &mut tally)?;
    }

    // The documented bound: over the budget only by what is leased (one
    // track at a time here, its file up to twice its size while it grows)
    // and pinned.
    let bound = max_bytes + pinned_bytes + 2 * MAX_TRACK;
    report(
        &stats,
        &tally,
        total,
        pinned_bytes,
        bound,
        playlist_whole,
        started,
    );
    Ok(tally.mismatches == 0 && tally.breaches == 0 && playlist_whole && stats.peak_bytes <= bound)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("FAILED: a mismatch or a budget breach (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
