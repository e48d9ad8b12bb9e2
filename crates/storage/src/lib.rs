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
//!   locks it works with); its tuning in `storage::mmap`. Not on wasm32.
//! - `mem` (default): the in-memory driver, `MemResource` and
//!   `StorageResource::Mem`; its limits in `storage::mem`.
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
//! At least one driver feature must be enabled. (`_driver` is internal: every
//! driver feature turns it on.)
//!
//! # Where names live
//!
//! The root holds what an application names: the resources and their
//! options, [`ResourceExt`], [`StorageResource`], the decorators, the
//! cursors, the errors, [`Cache`] and its companions, and every name
//! `kithara_storage` has (a port from it is a rename). The rest lives in a
//! room of its own:
//!
//! - [`driver`]: what a driver author implements and builds on (the driver
//!   traits, `DriverState`, `DefaultOpen`, `RangeTracker`, `RangeSet`).
//! - [`mmap`]: the file-backed driver's tuning (`CheckpointPolicy`, the
//!   `CHECKPOINT_*` defaults, `DEFAULT_INITIAL_LEN`) and `MmapDriver`.
//! - [`mem`]: the in-memory driver's limits (`MEM_MAX_LEN`,
//!   `MEM_CHUNK_BYTES`) and `MemDriver`.
//! - [`fetch`]: the downloader (feature `fetch`).
//!
//! The driver names `kithara_storage` has (`Driver`, `DriverIo`,
//! `DriverState`, `MmapDriver`, `MemDriver`) are at the root and in their
//! room.
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

#[cfg(not(feature = "_driver"))]
compile_error!(
    "the `storage` crate needs a driver: enable feature `mmap` (file-backed) and/or `mem` (in-memory)"
);

#[cfg(all(feature = "mmap", target_arch = "wasm32"))]
compile_error!(
    "feature `mmap` is not available on wasm32 (no memory-mapped files): use `default-features = false, features = [\"mem\"]`"
);

// Without a driver only the `compile_error!` above should be reported.
#[cfg(feature = "_driver")]
mod atomic;
#[cfg(all(feature = "stream-download", feature = "_driver"))]
mod stream_storage;
#[cfg(feature = "_driver")]
mod unified;

/// For driver authors: what a driver implements and the parts of
/// `storage-core` it builds on. [`Driver`], [`DriverIo`] and
/// [`DriverState`] are at the crate root too.
///
/// A driver is a crate of its own that depends on `storage-core` alone;
/// `storage-core`'s README ("Adding a driver") says how the facade takes one
/// in.
pub mod driver {
    pub use storage_core::{
        DefaultOpen, DownloadRecord, Driver, DriverIo, DriverState, RangeSet, RangeTracker,
        WriteKind,
    };
}

/// The file-backed driver's tuning (feature `mmap`): how often an active
/// file's journal records what is durable, a new file's size, and how many
/// threads the process's background work runs on. The resource, its
/// options and [`MmapDriver`] are at the crate root.
#[cfg(feature = "mmap")]
pub mod mmap {
    pub use storage_mmap::{
        CHECKPOINT_BYTES, CHECKPOINT_INTERVAL, CHECKPOINT_MAX_DELAY, CheckpointPolicy,
        DEFAULT_BACKGROUND_THREADS, DEFAULT_INITIAL_LEN, MAX_BACKGROUND_THREADS, MmapDriver,
        MmapStaged, background_threads, set_background_threads, set_unsynced_small_commits,
        unsynced_small_commits,
    };
}

/// The in-memory driver's limits (feature `mem`): the largest resource and
/// the size of the chunks it is stored in. The resource, its options and
/// [`MemDriver`] are at the crate root.
#[cfg(feature = "mem")]
pub mod mem {
    pub use storage_mem::{MEM_CHUNK_BYTES, MEM_MAX_LEN, MemDriver, MemStaged};
}

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

#[cfg(feature = "_driver")]
pub use atomic::Atomic;
#[cfg(feature = "cache")]
pub use storage_cache::{Cache, CacheEntry, CacheOptions, CacheStats, CachedResource};
#[cfg(feature = "tokio")]
pub use storage_core::AsyncResourceCursor;
pub use storage_core::{
    AvailabilityObserver, CancellationToken, Demand, Driver, DriverIo, DriverState, Interrupts,
    IoFailure, Resource, ResourceCursor, ResourceExt, ResourceStatus, StorageError, StorageResult,
    WaitOutcome,
};
#[cfg(feature = "mem")]
pub use storage_mem::{MemDriver, MemOptions, MemResource};
#[cfg(feature = "mmap")]
pub use storage_mmap::{
    AtomicChunked, MmapDriver, MmapOpenOptions, MmapOptions, MmapResource, OpenIntent, OpenMode,
};
#[cfg(all(feature = "stream-download", feature = "_driver"))]
pub use stream_storage::{ResourceStorageProvider, ResourceStorageReader, ResourceStorageWriter};

// Each driver is wired here and nowhere else in the facade: its room and
// root names above, its variant, its arm of `dispatch!` and its `From` below
// (`unified.rs` forwards every method through `dispatch!`).

/// A resource of any enabled driver, so code can hold either without
/// generics. Cloning is cheap (another handle to the same resource).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StorageResource {
    /// A file-backed resource (feature `mmap`).
    #[cfg(feature = "mmap")]
    Mmap(MmapResource),
    /// An in-memory resource (feature `mem`).
    #[cfg(feature = "mem")]
    Mem(MemResource),
}

/// Runs `$body` with `$inner` bound to the resource inside any variant of
/// `StorageResource`: the one place the variants' `cfg` gates are spelled
/// out for its methods.
#[cfg(feature = "_driver")]
macro_rules! dispatch {
    ($resource:expr, $inner:ident => $body:expr) => {
        match $resource {
            #[cfg(feature = "mmap")]
            $crate::StorageResource::Mmap($inner) => $body,
            #[cfg(feature = "mem")]
            $crate::StorageResource::Mem($inner) => $body,
        }
    };
}
#[cfg(feature = "_driver")]
use dispatch;

#[cfg(feature = "mmap")]
impl From<MmapResource> for StorageResource {
    fn from(resource: MmapResource) -> Self {
        Self::Mmap(resource)
    }
}

#[cfg(feature = "mem")]
impl From<MemResource> for StorageResource {
    fn from(resource: MemResource) -> Self {
        Self::Mem(resource)
    }
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
