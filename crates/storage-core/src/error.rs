//! The error type every storage operation returns.

use std::io;

/// Why a storage operation did not succeed.
///
/// The enum is `#[non_exhaustive]`: drivers and later versions add variants, so
/// match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused an I/O operation (open, grow, truncate,
    /// map, sync), or memory for the data could not be reserved.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),

    /// A byte range with `start > end`, or an `offset + len` that does not
    /// fit in a `u64` (then `end` is `u64::MAX`).
    #[error("invalid byte range {start}..{end}: start after end, or past u64::MAX")]
    InvalidRange {
        /// First byte of the range the caller asked for.
        start: u64,
        /// One past the last byte the caller asked for.
        end: u64,
    },

    /// The resource was marked failed with [`fail`](crate::ResourceExt::fail);
    /// the reason given there.
    #[error("resource failed: {0}")]
    Failed(String),

    /// The resource's cancellation token was cancelled.
    #[error("resource cancelled")]
    Cancelled,

    /// A write reached a committed resource whose driver does not write after
    /// commit (the memory driver; the mmap driver outside `ReadWrite` mode).
    /// Call [`reactivate`](crate::ResourceExt::reactivate) first.
    #[error("write refused: the resource is committed (reactivate it to write again)")]
    Committed,

    /// A wait with a deadline (`wait_range_timeout`) ran out of time before
    /// the range had an outcome.
    #[error("timed out waiting for the range")]
    TimedOut,

    /// Another resource — in this process or another — has the file open for
    /// writing (it holds the file's exclusive lock).
    #[error("{} is open for writing elsewhere (another resource or process holds its lock)", path.display())]
    Locked {
        /// The file.
        path: std::path::PathBuf,
    },

    /// The resource was opened read-only; it never accepts writes.
    #[error("write refused: the resource is read-only")]
    ReadOnly,
}

/// The result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    /// The error for `offset..offset + len` when that sum overflows `u64`.
    #[must_use]
    pub fn overflow(offset: u64) -> Self {
        Self::InvalidRange {
            start: offset,
            end: u64::MAX,
        }
    }
}
