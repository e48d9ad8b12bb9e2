//! Shared test support: opening caches, deterministic contents, what the
//! directory holds, and bounded waits.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few KiB: they fit in usize everywhere"
)]
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

use std::{fs, path::Path, sync::mpsc, thread, time::Duration};

use storage_cache::{Cache, CacheOptions, CachedResource};
use storage_core::{CancellationToken, ResourceExt};

/// The longest any test waits for anything.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Opens the cache at `dir` with `options`, retrying while `Locked` (for at
/// most [`LIMIT`]): a child process that another test forks (`chattr`, a
/// kill-test child) holds a copy of every open file until it execs, so a
/// cache closed in that instant is still locked for a moment.
pub fn open_with(dir: &Path, options: &CacheOptions) -> Cache {
    storage_core::testing::retry_locked(|| Cache::open(dir, options.clone())).unwrap()
}

/// Opens the cache at `dir` with a budget of `max_bytes`.
pub fn open(dir: &Path, max_bytes: u64) -> Cache {
    open_with(
        dir,
        &CacheOptions {
            max_bytes,
            ..CacheOptions::default()
        },
    )
}

/// Opens the cache at `dir` with a budget of `max_bytes` and new files
/// created `initial_len` long (so small entries reserve no more than that).
pub fn open_sized(dir: &Path, max_bytes: u64, initial_len: u64) -> Cache {
    open_with(
        dir,
        &CacheOptions {
            max_bytes,
            initial_len: Some(initial_len),
            ..CacheOptions::default()
        },
    )
}

/// Opens `key` with a fresh token.
pub fn get(cache: &Cache, key: &str) -> CachedResource {
    cache.resource(key, CancellationToken::new()).unwrap()
}

/// `len` bytes that depend on `seed` and on the offset.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(131)) % 251) as u8)
        .collect()
}

/// Writes `content(seed, len)` into `key` and commits it; returns it.
pub fn put(cache: &Cache, key: &str, seed: u64, len: usize) -> Vec<u8> {
    let data = content(seed, len);
    get(cache, key).write_all(&data).unwrap();
    data
}

/// `put`, then made durable (`sync`): a small entry is committed without
/// a sync, vouched for by its mark, until then.
#[allow(dead_code, reason = "not every test binary makes entries durable")]
pub fn put_durable(cache: &Cache, key: &str, seed: u64, len: usize) -> Vec<u8> {
    let data = content(seed, len);
    let entry = get(cache, key);
    entry.write_all(&data).unwrap();
    entry.sync().unwrap();
    data
}

/// Everything `resource` holds, read back.
pub fn read_all(resource: &impl ResourceExt) -> Vec<u8> {
    let mut buf = Vec::new();
    resource.read_into(&mut buf).unwrap();
    buf
}

/// The names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The sum of the lengths of the entries' data files in `dir`.
pub fn data_bytes(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .filter(|n| n.len() > 17 && !n.contains('.') && n.as_bytes()[16] == b'-')
        .map(|n| fs::metadata(dir.join(n)).unwrap().len())
        .sum()
}

/// Runs `f` on another thread and fails if it takes longer than [`LIMIT`].
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} took longer than {LIMIT:?}"))
}

/// Breaks the seal a clean close left in `dir/cache.lock`, as a kill or a
/// power loss would have: the next open scans the directory in full.
pub fn break_seal(dir: &Path) {
    fs::write(dir.join("cache.lock"), b"").unwrap();
}

/// Whether `dir/cache.lock` holds a seal (the last close was clean).
pub fn sealed(dir: &Path) -> bool {
    fs::metadata(dir.join("cache.lock")).is_ok_and(|m| m.len() > 0)
}
