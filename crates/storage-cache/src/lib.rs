//! A bounded cache directory of storage resources, keyed by strings.
//!
//! A player streams thousands of tracks and segments into one directory
//! that must stay under a size the user chose, keep what is playing and
//! what was pinned for offline use, resume what was half downloaded, and
//! survive being killed. [`Cache`] is that directory:
//!
//! - [`Cache::resource`] gives a [`CachedResource`] for a key: a committed
//!   entry opens committed, a partial one resumes from its journal, a
//!   missing one is created. The handle is a **lease**: its entry is never
//!   evicted while any handle lives, and the same key opened again in this
//!   process shares the same resource.
//! - When writes or commits take the cache over [`CacheOptions::max_bytes`],
//!   the least recently used entries that are neither leased nor pinned are
//!   evicted (O(log n) each). Leased and pinned entries alone may exceed the
//!   budget: writes still succeed and [`CacheStats::overshoot`] shows it.
//! - [`Cache::pin`] keeps an entry across restarts and evictions.
//! - The directory is the truth: each entry's key, pin and committed length
//!   live in a small marker beside its file, and the index is only a hint
//!   — trusted whole at open only when a clean close sealed it, each
//!   entry's marker then read before the entry is used.
//! - One process owns a directory at a time (an advisory lock).
//!
//! Entries are [`storage_mmap`] resources; see the crate README for the
//! files on disk, every decision about bad input, and the overshoot bound.
//!
//! # Examples
//!
//! ```
//! use storage_cache::{Cache, CacheOptions};
//! use storage_core::{CancellationToken, ResourceExt};
//!
//! let dir = tempfile::tempdir()?;
//! // Files are created at 40 bytes (the default reserves 64 KiB up front,
//! // which counts against the budget).
//! let cache = Cache::open(dir.path(), CacheOptions { max_bytes: 100, initial_len: Some(40), ..CacheOptions::default() })?;
//! for track in ["a", "b", "c"] {
//!     cache.resource(track, CancellationToken::new())?.write_all(&[7; 40])?;
//! }
//! // 120 bytes do not fit in 100: the least recently used entry went.
//! assert!(!cache.contains("a") && cache.contains("b") && cache.contains("c"));
//! assert_eq!(cache.stats().bytes, 80);
//! # Ok::<(), storage_core::StorageError>(())
//! ```

#![forbid(unsafe_code)]

mod cache;
mod index;
mod lease;
mod marker;
mod names;
mod policy;
mod scan;
mod seal;
mod shared;
mod state;

pub use cache::Cache;
pub use lease::CachedResource;
use storage_mmap::CheckpointPolicy;

/// How a [`Cache`] is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// The budget: the sum of the entries' file lengths the cache keeps
    /// itself under by eviction. `0` is allowed: entries then live only
    /// while leased or pinned. Default: 1 GiB.
    pub max_bytes: u64,
    /// The size a new entry's file is created with (`None`: the mmap
    /// driver's 64 KiB). Counts against the budget from the start.
    pub initial_len: Option<u64>,
    /// When an entry's written bytes are made durable and journaled: what
    /// a kill or a power loss can make a partial entry fetch again, against
    /// how often it syncs. Default: the mmap driver's (8 MiB, or 1 s after
    /// a write, whichever comes first).
    pub checkpoints: CheckpointPolicy,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            initial_len: None,
            checkpoints: CheckpointPolicy::default(),
        }
    }
}

/// The counters and sizes of a [`Cache`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// The sum of the entries' file lengths (entries removed while leased
    /// included, until their last lease drops).
    pub bytes: u64,
    /// Entries reachable by key.
    pub entries: u64,
    /// `resource()` calls that returned a whole committed entry.
    pub hits: u64,
    /// `resource()` calls that created an entry or resumed a partial one.
    pub misses: u64,
    /// Entries evicted for the budget since open.
    pub evictions: u64,
    /// How far `bytes` is over `max_bytes` now (leased and pinned entries
    /// that do not fit), or `0`.
    pub overshoot: u64,
    /// The highest `bytes` since open (after the open's own eviction).
    pub peak_bytes: u64,
    /// The budget.
    pub max_bytes: u64,
}

/// One entry, as [`Cache::entries`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// Its key.
    pub key: String,
    /// Its file's length.
    pub bytes: u64,
    /// Pinned: never evicted.
    pub pinned: bool,
    /// A lease is out (or being opened or closed): never evicted now.
    pub leased: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        const _: () = assert_send_sync::<Cache>();
        const _: () = assert_send_sync::<CachedResource>();
        const _: () = assert_send_sync::<CacheStats>();
    }
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
