//! The error type every storage operation returns.

use std::{
    fmt, io,
    ops::Range,
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

    /// Bytes would lie past the expected length
    /// ([`set_expected_len`](crate::ResourceExt::set_expected_len)): a write
    /// ending past it, or an expected length below bytes already written.
    #[error("bytes up to {end} lie past the expected length {expected}")]
    PastExpectedLen {
        /// The expected length.
        expected: u64,
        /// One past the last byte written or to be written.
        end: u64,
    },

    /// A length that differs from the one the resource expects or has: a
    /// `commit(Some(given))` or a second `set_expected_len(given)` after
    /// `set_expected_len(expected)`, or a `set_expected_len(given)` on a
    /// resource committed with length `expected`.
    #[error("length {given} differs from the resource's length {expected}")]
    LengthMismatch {
        /// The length the resource expects (or was committed with).
        expected: u64,
        /// The length the caller gave.
        given: u64,
    },

    /// `commit(None)` on a resource that expects `expected` bytes while some
    /// of them are missing: committing would end the data early.
    #[error(
        "commit refused: bytes {}..{} of the expected {expected} are missing",
        missing.start,
        missing.end
    )]
    Incomplete {
        /// The expected length.
        expected: u64,
        /// The first missing range before it.
        missing: Range<u64>,
    },
}

/// The `io::Error` that carries `error` (`get_ref()` and downcast to
/// [`StorageError`], or [`into_inner`](io::Error::into_inner)), with the
/// kind a reader expects:
///
/// | `StorageError` | `io::ErrorKind` |
/// | --- | --- |
/// | `Io(e)` | `e.kind()` |
/// | `TimedOut` | `TimedOut` |
/// | `InvalidRange`, `PastExpectedLen`, `LengthMismatch` | `InvalidInput` |
/// | `Incomplete` | `UnexpectedEof` |
/// | `ReadOnly` | `ReadOnlyFilesystem` |
/// | `Locked`, `TmpClaimed` | `ResourceBusy` |
/// | `Failed`, `Cancelled`, `Committed`, `Driver`, others | `Other` |
///
/// # Examples
///
/// ```
/// use std::io;
/// use storage_core::StorageError;
///
/// let error = io::Error::from(StorageError::TimedOut);
/// assert_eq!(error.kind(), io::ErrorKind::TimedOut);
/// let inner = error.get_ref().and_then(|e| e.downcast_ref::<StorageError>());
/// assert!(matches!(inner, Some(StorageError::TimedOut)));
/// ```
impl From<StorageError> for io::Error {
    fn from(error: StorageError) -> Self {
        let kind = match &error {
            StorageError::Io(inner) => inner.kind(),
            StorageError::TimedOut => io::ErrorKind::TimedOut,
            StorageError::InvalidRange { .. }
            | StorageError::PastExpectedLen { .. }
            | StorageError::LengthMismatch { .. } => io::ErrorKind::InvalidInput,
            StorageError::Incomplete { .. } => io::ErrorKind::UnexpectedEof,
            StorageError::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            StorageError::Locked { .. } | StorageError::TmpClaimed(_) => {
                io::ErrorKind::ResourceBusy
            }
            StorageError::Failed(_)
            | StorageError::Cancelled
            | StorageError::Committed
            | StorageError::Driver(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
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

    fn carried(error: &io::Error) -> &StorageError {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<StorageError>())
            .unwrap_or_else(|| panic!("no StorageError inside {error:?}"))
    }

    #[test]
    fn an_io_error_from_a_storage_error_has_the_reader_s_kind_and_carries_it() {
        let cases = [
            (StorageError::TimedOut, io::ErrorKind::TimedOut),
            (
                StorageError::InvalidRange { start: 9, end: 3 },
                io::ErrorKind::InvalidInput,
            ),
            (
                StorageError::PastExpectedLen {
                    expected: 10,
                    end: 12,
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                StorageError::LengthMismatch {
                    expected: 10,
                    given: 12,
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                StorageError::Incomplete {
                    expected: 10,
                    missing: 4..6,
                },
                io::ErrorKind::UnexpectedEof,
            ),
            (StorageError::ReadOnly, io::ErrorKind::ReadOnlyFilesystem),
            (
                StorageError::Locked {
                    path: "/tmp/x".into(),
                },
                io::ErrorKind::ResourceBusy,
            ),
            (StorageError::Failed("gone".into()), io::ErrorKind::Other),
            (StorageError::Cancelled, io::ErrorKind::Other),
            (StorageError::Committed, io::ErrorKind::Other),
            (StorageError::Driver("remote".into()), io::ErrorKind::Other),
        ];
        for (error, kind) in cases {
            let message = error.to_string();
            let converted = io::Error::from(error);
            assert_eq!(converted.kind(), kind, "{message}");
            assert_eq!(carried(&converted).to_string(), message);
            assert_eq!(converted.to_string(), message);
        }
    }

    #[test]
    fn an_io_storage_error_keeps_the_os_kind_and_the_cause() {
        let error = StorageError::io("cannot grow", "/tmp/x", io::Error::from_raw_os_error(28));
        let kind = error.io_kind().unwrap();
        let converted = io::Error::from(error);
        assert_eq!(converted.kind(), kind);
        let failure = carried(&converted).io_failure().unwrap();
        assert_eq!(failure.os_error().raw_os_error(), Some(28));
    }

    #[test]
    fn a_driver_error_keeps_its_source() {
        let error = StorageError::Driver("the remote said no".into());
        assert_eq!(error.source().unwrap().to_string(), "the remote said no");
        assert_eq!(error.io_kind(), None);
    }
}
