//! The error type every storage operation returns.

use std::{
    fmt, io,
    path::{Path, PathBuf},
};

/// Why a storage operation did not succeed.
///
/// The enum is `#[non_exhaustive]`: drivers and later versions add variants, so
/// match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused an I/O operation (open, grow, truncate,
    /// map, sync), or memory for the data could not be reserved.
    ///
    /// The `io::Error` keeps the operating system's [`io::ErrorKind`]
    /// (match on `e.kind()`: `StorageFull`, `PermissionDenied`,
    /// `FileTooLarge`, ...). When a driver built it with
    /// [`StorageError::io`], it also carries an [`IoFailure`] naming the
    /// operation and the path ([`StorageError::io_failure`]), and its
    /// `source()` is the original error.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),

    /// A driver's own error that is not an `io::Error` (a remote store's
    /// protocol error, say), kept whole as the source.
    #[error("storage driver error: {0}")]
    Driver(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

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

    /// Another download of the same file holds its temporary file (the
    /// path carried here, `<canonical>.tmp`): returned by the facade's
    /// `AtomicChunked::open`, and by its `reactivate` and `write_all` of a
    /// published file, while another `AtomicChunked` of that canonical path —
    /// in this process or another — is alive and not yet published. It is
    /// released when that download is published, dropped, or its process
    /// dies; a download left by a killed process does not hold it (the next
    /// open resumes it).
    #[error("{} is claimed by another download of the same file (in this process or another)", .0.display())]
    TmpClaimed(PathBuf),
}

/// The result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// What an I/O error was doing: the operation, the path, and the operating
/// system's error (its `source()`), carried inside [`StorageError::Io`].
///
/// # Examples
///
/// ```
/// use std::io;
/// use storage_core::StorageError;
///
/// let error = StorageError::io(
///     "cannot open",
///     "/music/track.flac",
///     io::Error::from(io::ErrorKind::PermissionDenied),
/// );
/// let StorageError::Io(inner) = &error else { unreachable!() };
/// assert_eq!(inner.kind(), io::ErrorKind::PermissionDenied);
/// let failure = error.io_failure().unwrap();
/// assert_eq!(failure.path(), std::path::Path::new("/music/track.flac"));
/// assert_eq!(failure.op(), "cannot open");
/// # Ok::<(), StorageError>(())
/// ```
#[derive(Debug)]
pub struct IoFailure {
    op: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl IoFailure {
    /// What was being done, as a message fragment ("cannot open").
    #[must_use]
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The file or directory it was done to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The operating system's error.
    #[must_use]
    pub fn os_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for IoFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl StorageError {
    /// The error for an I/O operation `op` on `path` that failed with
    /// `source`: an [`Io`](Self::Io) whose `io::Error` has `source`'s kind and
    /// carries an [`IoFailure`], so the kind, the path and the original
    /// error all reach the caller.
    #[must_use]
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let kind = source.kind();
        let failure = IoFailure {
            op,
            path: path.into(),
            source,
        };
        Self::Io(io::Error::new(kind, failure))
    }

    /// The operation and path of an I/O error built by [`io`](Self::io).
    #[must_use]
    pub fn io_failure(&self) -> Option<&IoFailure> {
        match self {
            Self::Io(error) => error.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    /// The kind of an [`Io`](Self::Io) error, `None` for the other variants.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io(error) => Some(error.kind()),
            _ => None,
        }
    }

    /// The error for `offset..offset + len` when that sum overflows `u64`.
    #[must_use]
    pub fn overflow(offset: u64) -> Self {
        Self::InvalidRange {
            start: offset,
            end: u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_io_failure_keeps_its_kind_path_and_source() {
        let original = io::Error::from_raw_os_error(28); // ENOSPC on Linux
        let kind = original.kind();
        let error = StorageError::io("cannot grow", "/tmp/x", original);
        assert_eq!(error.io_kind(), Some(kind));
        let failure = error.io_failure().unwrap();
        assert_eq!(failure.op(), "cannot grow");
        assert_eq!(failure.os_error().raw_os_error(), Some(28));
        // StorageError -> io::Error -> the original.
        let inner = error.source().unwrap();
        let original = inner.source().unwrap();
        assert_eq!(
            original.downcast_ref::<io::Error>().unwrap().raw_os_error(),
            Some(28)
        );
        assert!(error.to_string().contains("cannot grow /tmp/x"), "{error}");
    }

    #[test]
    fn a_driver_error_keeps_its_source() {
        let error = StorageError::Driver("the remote said no".into());
        assert_eq!(error.source().unwrap().to_string(), "the remote said no");
        assert_eq!(error.io_kind(), None);
    }
}
