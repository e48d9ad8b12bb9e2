//! Random-access storage resources for streaming media.
//!
//! An async downloader writes byte ranges of a file into a resource in any
//! order; synchronous readers (a decoder) block in
//! [`wait_range`](ResourceExt::wait_range) until the bytes they need have
//! landed, then [`read_at`](ResourceExt::read_at) them. This crate is the one
//! applications depend on: it re-exports the core types and the drivers, and
//! adds [`StorageResource`], one type over every driver, and the [`Atomic`]
//! decorator, which replaces small whole files. The mmap driver's
//! `AtomicChunked` (feature `mmap`) publishes a download at its final path
//! only once it is whole.
//!
//! # Feature flags
//!
//! - `mmap` (default): the file-backed driver, `MmapResource` and
//!   `StorageResource::Mmap`, the file path of [`Atomic`] (temp file +
//!   rename), and `AtomicChunked` (crate `storage-mmap`, whose journal and
//!   locks it works with). Not on wasm32.
//! - `mem` (default): the in-memory driver, `MemResource` and
//!   `StorageResource::Mem`.
//! - `symphonia`: [`ResourceCursor`] is a symphonia (0.5) `MediaSource`;
//!   declare the download's length with
//!   [`set_expected_len`](ResourceExt::set_expected_len) so symphonia can
//!   seek before the last byte lands.
//! - `tokio`: `AsyncResourceCursor`, tokio's `AsyncRead + AsyncSeek` over a
//!   resource.
//! - `stream-download`: `ResourceStorageProvider`, a storage provider for
//!   the stream-download crate (0.24) backed by a resource; that crate is
//!   re-exported as `storage::stream_download` (no version to match).
//! - `fetch`: [`fetch::Fetcher`] fills a resource from a URL — HTTP range
//!   requests, what blocked readers wait for first, resumable, one version
//!   of the remote file (crate `storage-fetch`: reqwest with rustls, tokio).
//! - `cache` (default; enables `mmap`): [`Cache`], a bounded directory of
//!   file-backed resources keyed by strings, with leases, pins and
//!   least-recently-used eviction (crate `storage-cache`).
//!
//! At least one driver feature must be enabled.
//!
//! # Examples
//!
//! ```
//! use storage::{CancellationToken, MemResource, ResourceExt, StorageResource, WaitOutcome};
//!
//! let resource = StorageResource::from(MemResource::new(CancellationToken::new()));
//! resource.write_at(0, b"ID3 tag and frames")?;
//! assert_eq!(resource.wait_range(0..3)?, WaitOutcome::Ready);
//! let mut head = [0; 3];
//! resource.read_at(0, &mut head)?;
//! assert_eq!(&head, b"ID3");
//! # Ok::<(), storage::StorageError>(())
//! ```

#![forbid(unsafe_code)]

#[cfg(not(any(feature = "mmap", feature = "mem")))]
compile_error!(
    "the `storage` crate needs a driver: enable feature `mmap` (file-backed) and/or `mem` (in-memory)"
);

#[cfg(all(feature = "mmap", target_arch = "wasm32"))]
compile_error!(
    "feature `mmap` is not available on wasm32 (no memory-mapped files): use `default-features = false, features = [\"mem\"]`"
);

// Without a driver only the `compile_error!` above should be reported.
#[cfg(any(feature = "mmap", feature = "mem"))]
mod atomic;
#[cfg(all(feature = "stream-download", any(feature = "mmap", feature = "mem")))]
mod stream_storage;
#[cfg(any(feature = "mmap", feature = "mem"))]
mod unified;

/// The downloader (feature `fetch`): fills a resource from a URL, serving
/// first what blocked readers wait for, resuming what is there, never
/// mixing two versions of a remote file (crate `storage-fetch`).
#[cfg(feature = "fetch")]
pub mod fetch {
    pub use storage_fetch::{FetchError, FetchOptions, FetchReport, Fetcher, sync};
}
/// The stream-download crate (feature `stream-download`), at the version
/// `ResourceStorageProvider` implements: `storage::stream_download::…`
/// needs no dependency of its own (and no version to match).
#[cfg(feature = "stream-download")]
pub use ::stream_download;

#[cfg(any(feature = "mmap", feature = "mem"))]
pub use atomic::Atomic;
#[cfg(feature = "cache")]
pub use storage_cache::{Cache, CacheEntry, CacheOptions, CacheStats, CachedResource};
#[cfg(feature = "tokio")]
pub use storage_core::AsyncResourceCursor;
pub use storage_core::{
    AvailabilityObserver, CancellationToken, DefaultOpen, Demand, DownloadRecord, Driver, DriverIo,
    DriverState, Interrupts, IoFailure, RangeSet, RangeTracker, Resource, ResourceCursor,
    ResourceExt, ResourceStatus, StorageError, StorageResult, WaitOutcome, WriteKind,
};
#[cfg(feature = "mem")]
pub use storage_mem::{
    MEM_CHUNK_BYTES, MEM_MAX_LEN, MemDriver, MemOptions, MemResource, MemStaged,
};
#[cfg(feature = "mmap")]
pub use storage_mmap::{
    AtomicChunked, CHECKPOINT_BYTES, CHECKPOINT_INTERVAL, CHECKPOINT_MAX_DELAY, CheckpointPolicy,
    DEFAULT_INITIAL_LEN, MmapDriver, MmapOpenOptions, MmapOptions, MmapResource, MmapStaged,
    OpenIntent, OpenMode,
};
#[cfg(all(feature = "stream-download", any(feature = "mmap", feature = "mem")))]
pub use stream_storage::{ResourceStorageProvider, ResourceStorageReader, ResourceStorageWriter};
#[cfg(any(feature = "mmap", feature = "mem"))]
pub use unified::StorageResource;

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
