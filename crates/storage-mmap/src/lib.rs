//! The file-backed driver: a memory-mapped file that survives the process.
//!
//! [`MmapResource`] stores a resource in a file through a `memmap2` mapping.
//! New files are created (with their parent directories), sized to
//! [`MmapOptions::initial_len`] or 64 KiB, and grow at least twofold when a
//! write passes the end, with the disk blocks reserved first so a full disk is
//! an error rather than a crash. `commit` truncates the file to its final
//! length and remaps it read-only.
//!
//! [`AtomicChunked`] publishes a download at its final path only once it is
//! whole (written at `<canonical>.tmp`, renamed at commit), resumable after a
//! crash: it knows this driver's journal and locks, so it lives here. The
//! names of the files this driver keeps beside a download, their removal
//! and the platform calls that crates built on it need are in [`fs`].
//!
//! This is the only crate of the workspace with `unsafe` code: the call that
//! maps the file (`map.rs`) and the `fcntl` that takes an open-file lock
//! (`sys/unix.rs`, Linux), each with a `// SAFETY:` comment. Why mapping is
//! unsafe is written once, on [`MmapDriver`].
//!
//! # Examples
//!
//! ```
//! use storage_core::{CancellationToken, ResourceExt, WaitOutcome};
//! use storage_mmap::{MmapOptions, MmapResource, OpenMode};
//!
//! let dir = tempfile::tempdir()?;
//! let resource = MmapResource::open(CancellationToken::new(), MmapOptions {
//!     path: dir.path().join("track.flac"),
//!     initial_len: None,
//!     mode: OpenMode::Auto,
//! })?;
//! resource.write_at(0, b"fLaC")?;
//! assert_eq!(resource.wait_range(0..4)?, WaitOutcome::Ready);
//! resource.commit(Some(4))?;
//! assert_eq!(std::fs::metadata(dir.path().join("track.flac"))?.len(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(target_arch = "wasm32")]
compile_error!(
    "storage-mmap needs memory-mapped files, which wasm32 does not have: use the `mem` driver"
);

mod checkpoint;
mod chunked;
mod driver;
#[cfg(all(unix, any(test, feature = "testing")))]
mod durable;
pub mod fs;
mod journal;
mod map;
mod mark;
mod poison;
mod pool;
#[cfg(all(test, target_os = "linux"))]
mod power_loss;
mod space;
mod store;
mod sys;

use std::path::PathBuf;

pub use checkpoint::{
    CHECKPOINT_BYTES, CHECKPOINT_INTERVAL, CHECKPOINT_MAX_DELAY, CheckpointPolicy,
};
pub use chunked::{AtomicChunked, OpenIntent};
pub use driver::{MmapDriver, MmapStaged};
pub use mark::{set_unsynced_small_commits, unsynced_small_commits};
pub use pool::{
    DEFAULT_BACKGROUND_THREADS, MAX_BACKGROUND_THREADS, background_threads, set_background_threads,
};
pub use space::DEFAULT_INITIAL_LEN;
use storage_core::Resource;

/// How [`MmapDriver`] opens its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// A missing or empty file opens active (created, sized, writable); an
    /// existing non-empty file opens committed with its length, and refuses
    /// writes until `reactivate`.
    #[default]
    Auto,
    /// As `Auto`, but an existing file opened committed also accepts writes in
    /// place (within its length), remapping it read-write: for files rewritten
    /// in place, such as indexes.
    ReadWrite,
    /// An existing file opens committed; a missing one is an empty committed
    /// resource (`final_len = Some(0)`) and nothing is created. Writes and
    /// `reactivate` return `StorageError::ReadOnly`.
    ReadOnly,
}

/// Options for opening an [`MmapResource`]; a plain struct literal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MmapOptions {
    /// The backing file.
    pub path: PathBuf,
    /// Size of a newly created file; `None` means 64 KiB. Growth past it is
    /// automatic.
    pub initial_len: Option<u64>,
    /// How an existing or missing file is treated.
    pub mode: OpenMode,
}

impl MmapOptions {
    /// Options for `path` with the default size and mode.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// These options with a checkpoint policy other than the default (what
    /// a kill or a power loss can make a download fetch again, against how
    /// often it syncs: see [`CheckpointPolicy`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use storage_core::CancellationToken;
    /// use storage_mmap::{CheckpointPolicy, MmapOptions, MmapResource};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let policy = CheckpointPolicy { max_delay: Some(Duration::from_millis(200)), ..CheckpointPolicy::default() };
    /// let resource = MmapResource::open(
    ///     CancellationToken::new(),
    ///     MmapOptions::new(dir.path().join("track.flac")).checkpoints(policy),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn checkpoints(self, checkpoints: CheckpointPolicy) -> MmapOpenOptions {
        MmapOpenOptions {
            options: self,
            checkpoints,
        }
    }
}

/// Everything [`MmapDriver`] opens with: the [`MmapOptions`] (a
/// `MmapOptions` converts into this, with the default policy, wherever
/// `MmapResource::open` takes options) and the checkpoint policy.
///
/// The policy is not a field of `MmapOptions` itself: that struct is built
/// with a plain literal of its three fields by code ported from
/// `kithara-storage`, and a fourth field would break every such literal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MmapOpenOptions {
    /// The file, its initial size and the open mode.
    pub options: MmapOptions,
    /// When written bytes are made durable and journaled.
    pub checkpoints: CheckpointPolicy,
}

impl From<MmapOptions> for MmapOpenOptions {
    fn from(options: MmapOptions) -> Self {
        Self {
            options,
            checkpoints: CheckpointPolicy::default(),
        }
    }
}

/// A resource backed by a memory-mapped file.
pub type MmapResource = Resource<MmapDriver>;

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
