//! `ResourceExt`, the trait applications program against, and the values it returns.

use std::{future::Future, ops::Range, path::Path, pin::Pin, time::Duration};

use crate::StorageResult;

/// How a [`ResourceExt::wait_range`] ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// Every byte of the range (clipped to the final length once committed) is
    /// available: `read_at` returns it.
    Ready,
    /// The resource is committed and the range starts at or after its end, or
    /// lies in a part that will never be written: no more bytes will come.
    Eof,
    /// The waiters were interrupted (a seek or flush upstream); the range may
    /// still be missing.
    Interrupted,
}

/// The lifecycle phase of a resource, as [`ResourceExt::status`] reports it.
///
/// When several apply, the first of `Failed`, `Committed`, `Cancelled`,
/// `Active` wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceStatus {
    /// Open for writing: bytes are still arriving.
    Active,
    /// All data is written; `final_len` is the length given to `commit`.
    ///
    /// Committed says what readers see, not what the disk holds: a file
    /// driver makes the commit durable in the background, and an error of
    /// that work does not change the status — it is reported by
    /// [`ResourceExt::sync`], which is the call that waits for the disk.
    Committed {
        /// The committed length, `None` after `commit(None)`.
        final_len: Option<u64>,
    },
    /// Marked failed with [`ResourceExt::fail`]; the reason given there.
    Failed(String),
    /// The cancellation token was cancelled while the resource was active.
    Cancelled,
}

/// A hook for layers above storage that track coverage (an index of cached
/// ranges, a progress display) or that fetch what readers need (a
/// downloader).
///
/// Every call runs after every lock of the resource is released, so an
/// observer may call back into the resource. `on_write` and `on_commit` run
/// on the writer's thread, `on_wait` on the reader's (or in the waiting
/// task's `poll`). None may block for long: the caller waits for them.
pub trait AvailabilityObserver: Send + Sync {
    /// The resource was committed with a known length (`commit(Some(n))`,
    /// or `commit(None)` on a resource whose expected length is covered).
    /// A plain `commit(None)` does not call it. The default does nothing.
    fn on_commit(&self, final_len: u64) {
        let _ = final_len;
    }
    /// `range` was written and is now available. The default does nothing.
    fn on_write(&self, range: Range<u64>) {
        let _ = range;
    }
    /// The demand signal: a reader is about to block because `range` is
    /// missing. `range` runs from the first missing byte of the range the
    /// reader waits for to its end (clipped to the expected or final
    /// length), so a downloader that fetches it first ends the wait
    /// soonest (after a seek, say).
    ///
    /// Called once per blocking wait (`wait_range`, `wait_range_timeout`,
    /// the first `Pending` poll of `wait_range_async`, and so every cursor
    /// read that has to wait), when the wait registers, before it sleeps;
    /// never for a wait answered at once. The default does nothing.
    fn on_wait(&self, range: Range<u64>) {
        let _ = range;
    }
}

/// The operations on a storage resource: random-access writes, blocking waits
/// for ranges, reads, and the lifecycle (`commit`, `fail`, `reactivate`).
///
/// Implemented by every resource type (`Resource<D>` for each driver, and the
/// facade's `StorageResource` and `Atomic`); it is dyn-compatible, so
/// `Box<dyn ResourceExt>` works.
pub trait ResourceExt: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset` without waiting.
    ///
    /// Reads stop at the effective length: the final length once committed,
    /// else the written extent (one past the highest byte written). Returns the
    /// number of bytes copied, `0` at or after that end. Bytes inside holes that
    /// were never written read as zeros; use [`wait_range`](Self::wait_range)
    /// first to know they are there.
    ///
    /// # Errors
    ///
    /// [`StorageError::Failed`](crate::StorageError::Failed) after `fail`,
    /// [`StorageError::Cancelled`](crate::StorageError::Cancelled) after
    /// cancellation, [`StorageError::Io`](crate::StorageError::Io) if the
    /// driver cannot read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize>;

    /// Writes `data` at `offset`, marks `offset..offset + len` available and
    /// wakes the waiters whose range that completes.
    ///
    /// An empty `data` stores nothing, but is refused like any write when the
    /// resource does not accept writes.
    ///
    /// # Errors
    ///
    /// `InvalidRange` when `offset + len` overflows `u64`; `Failed` / `Cancelled`
    /// as for reads; `Committed` or `ReadOnly` when the driver refuses writes in
    /// the resource's state; `Io` when the driver cannot store the bytes (full
    /// disk, no memory).
    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()>;

    /// Blocks until `range` can be read, or will never be.
    ///
    /// Returns `Ready` when the range is covered (once committed, the range
    /// clipped to the final length), `Eof` when the resource is committed and
    /// the range starts at or past the end (or, after `commit(None)`, is not
    /// covered), `Interrupted` when the waiters are interrupted. An empty
    /// range is `Ready` at once. The wait is event-driven: it sleeps until a
    /// write, commit, fail, reactivate or cancellation concerns it.
    ///
    /// # Errors
    ///
    /// `InvalidRange` when `range.start > range.end`; `Failed` when the
    /// resource is or becomes failed; `Cancelled` when its token is or becomes
    /// cancelled.
    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome>;

    /// As [`wait_range`](Self::wait_range), giving up after `timeout`.
    ///
    /// The deadline is the sleep's own deadline (no polling): the call never
    /// returns `TimedOut` before `timeout` has passed. A zero timeout answers
    /// at once.
    ///
    /// # Errors
    ///
    /// As `wait_range`, plus
    /// [`StorageError::TimedOut`](crate::StorageError::TimedOut) when the
    /// time runs out first.
    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome>;

    /// Waits for the first byte of `range` (as
    /// [`wait_range`](Self::wait_range) of `range.start..range.start + 1`,
    /// with `timeout` as [`wait_range_timeout`](Self::wait_range_timeout)'s
    /// when given), while telling the demand signal
    /// ([`demand`](Self::demand), `AvailabilityObserver::on_wait`) that the
    /// whole of `range` is wanted: what a reader calls that takes whatever
    /// arrives first but will read all of `range` (a cursor's read), so a
    /// downloader knows how much to fetch.
    ///
    /// # Errors
    ///
    /// As `wait_range_timeout`. The default (for implementations outside
    /// this crate family) waits for the first byte and tells nothing more.
    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        if range.start >= range.end {
            return self.wait_range(range);
        }
        let first = range.start..range.start + 1;
        match timeout {
            Some(timeout) => self.wait_range_timeout(first, timeout),
            None => self.wait_range(first),
        }
    }

    /// Wakes every waiter blocked at this instant (blocking or async) with
    /// `Ok(WaitOutcome::Interrupted)`, once: a wait begun afterwards blocks
    /// as usual. Status and data are unchanged. For a seek or flush upstream
    /// that makes the awaited bytes moot.
    fn interrupt(&self);

    /// As [`wait_range`](Self::wait_range), as a future: the same outcomes,
    /// woken by the same events. It needs no particular runtime (tokio,
    /// `futures::executor::block_on`, …), is `Send`, and dropping it before
    /// it completes deregisters its waker.
    ///
    /// # Errors
    ///
    /// As `wait_range`.
    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>>;

    /// Marks the resource complete.
    ///
    /// `Some(n)`: bytes `0..n` become available (unwritten ones read as zeros,
    /// bytes past `n` are cut off), `len()` becomes `Some(n)`, and the observer
    /// hears `on_commit(n)`. `None`: the length stays unknown and the data ends
    /// at the written extent; the observer is not called. Every waiter wakes.
    /// Committing a committed resource is a no-op returning `Ok`. Readers
    /// see the commit when this returns; making it durable may go on in the
    /// background — [`sync`](Self::sync) waits for it and reports its errors.
    ///
    /// # Errors
    ///
    /// `Failed` / `Cancelled`; `Io` when the driver cannot finalise (truncate,
    /// remap).
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()>;

    /// Marks the resource failed: every waiter wakes with `Err(Failed)`, and
    /// later reads, writes, waits and commits return it. The first reason is
    /// kept if it is called twice.
    fn fail(&self, reason: String);

    /// The backing file, `None` for memory resources.
    fn path(&self) -> Option<&Path>;

    /// The committed length: `Some(n)` after `commit(Some(n))`, else `None`.
    /// An expected length ([`set_expected_len`](Self::set_expected_len))
    /// does not change it; see [`expected_len`](Self::expected_len).
    fn len(&self) -> Option<u64>;

    /// Declares the length the resource will have once complete (an HTTP
    /// `Content-Length`), long before the last byte lands.
    ///
    /// While the resource is active it then behaves as if it ended there:
    /// a wait for a range starting at or past `len` is `Eof` at once (and
    /// waiters already blocked there wake with it), a range crossing `len`
    /// is `Ready` once its part before `len` is covered, `next_gap` stops
    /// at `len`, and a write ending past `len` is refused. [`len`](Self::len)
    /// stays `None` until `commit`;
    /// [`expected_len`](Self::expected_len) answers at once. `commit(Some(n))`
    /// must give `n == len`; `commit(None)` commits with `Some(len)` when
    /// `0..len` is covered and is refused while bytes are missing. The
    /// expectation lasts until `reactivate` or `replace_all`; setting the
    /// same length again is a no-op.
    ///
    /// # Errors
    ///
    /// `PastExpectedLen` when bytes are already written past `len`;
    /// `LengthMismatch` when another length is expected already, or the
    /// resource is committed with another length (the same one is `Ok`);
    /// `Committed` when it is committed without a length; `Failed` /
    /// `Cancelled`. The default (for implementations outside this crate
    /// family) is `Io` with kind `Unsupported`.
    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        let _ = len;
        Err(crate::StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this resource does not take an expected length",
        )))
    }

    /// The length the resource has or will have: the final length once
    /// committed with one, else the length given to
    /// [`set_expected_len`](Self::set_expected_len), else `None`. A
    /// failure keeps it: a resource failed after a commit with a length
    /// still answers that length (until `reactivate`). This is what a
    /// decoder's `byte_len` and `SeekFrom::End` use. The default returns
    /// [`len`](Self::len).
    fn expected_len(&self) -> Option<u64> {
        self.len()
    }

    /// Whether the resource is committed with length 0 (`len() == Some(0)`).
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The lifecycle phase.
    fn status(&self) -> ResourceStatus;

    /// Turns a committed or failed resource back into an active one: the
    /// failure and the final length are cleared, the bytes and their ranges
    /// are kept, and the backing store is reopened for writing. A no-op on an
    /// active resource.
    ///
    /// # Errors
    ///
    /// `Cancelled` after cancellation; `ReadOnly` for a read-only resource;
    /// `Io` when the backing store cannot be reopened.
    fn reactivate(&self) -> StorageResult<()>;

    /// Whether every byte of `range` is available now. Empty ranges are;
    /// inverted ones are not.
    fn contains_range(&self, range: Range<u64>) -> bool;

    /// The first missing range inside `from..limit` (clipped to the final
    /// length once committed), or `None` when all of it is available.
    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>>;

    /// Replaces the contents of `buf` with the whole resource, up to its
    /// effective length, and returns the byte count.
    ///
    /// # Errors
    ///
    /// As [`read_at`](Self::read_at), plus `Io` with kind `OutOfMemory` when
    /// the length does not fit in memory.
    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize>;

    /// Writes `data` at offset 0 and commits with `Some(data.len())`.
    ///
    /// # Errors
    ///
    /// As [`write_at`](Self::write_at) and [`commit`](Self::commit).
    fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        self.write_at(0, data)?;
        self.commit(Some(data.len() as u64))
    }

    /// Blocks until everything written or committed before the call is
    /// durable: after `commit` + `sync`, a power loss keeps the whole file;
    /// on an active file, what was written so far is resumable. `commit`
    /// itself does not wait for the disk (a file driver makes the commit
    /// durable in the background): this is the call that does, and that
    /// reports an error of that background work — it is never lost
    /// silently, and the status stays `Committed` (the commit happened;
    /// only its durability failed, and a crash then reopens the file as a
    /// resumable download). `Ok` at once in memory.
    ///
    /// The default returns `Ok` (for implementations with nothing to sync).
    ///
    /// # Errors
    ///
    /// `Io` when the data cannot be made durable.
    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }

    /// Replaces the whole contents with `data` and commits with
    /// `Some(data.len())`, as one step: readers and a crash see the old
    /// contents or the new, never a mix. A committed or active resource may
    /// be replaced; replacements of one resource are serialised (the last
    /// one wins, whole). With `durable`, the new contents survive a power
    /// loss once this returns. This is what `Atomic::write_all` calls.
    ///
    /// The default, for implementations outside this crate family, checks
    /// that the resource is not failed, then calls `reactivate` and
    /// `write_all`: it is *not* atomic. `Resource<D>` overrides it with the
    /// driver's own replacement.
    ///
    /// # Errors
    ///
    /// `Failed` on a failed resource (the failure is kept: `reactivate`
    /// first to clear it), `Cancelled`, `ReadOnly`; `Io` when the new
    /// contents cannot be stored, and then the old ones are kept.
    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        let _ = durable;
        if let ResourceStatus::Failed(reason) = self.status() {
            return Err(crate::StorageError::Failed(reason));
        }
        self.reactivate()?;
        self.write_all(data)
    }

    /// What this resource's readers wait for: a subscription that yields
    /// the missing part of every range a reader blocks on, from now on
    /// (seeded with the waits under way), for a downloader to fetch first —
    /// with no observer installed at open, so it works on any resource,
    /// a cache entry's too. See [`Demand`](crate::Demand).
    ///
    /// The default (for implementations outside this crate family) never
    /// yields.
    fn demand(&self) -> crate::Demand {
        crate::Demand::none()
    }

    /// Records the validator of the remote file this resource downloads
    /// (an `ETag`, else a `Last-Modified` date), kept with the resource
    /// like [`set_expected_len`](Self::set_expected_len) (the file driver:
    /// in its journal), so a download resumed after a restart can ask the
    /// server for the same version only (`If-Range`) and never mixes two.
    /// Replaces a validator set before.
    ///
    /// # Errors
    ///
    /// `Cancelled`, `Failed`; `Io` when it cannot be kept (then nothing
    /// changed). The default (for implementations outside this crate
    /// family) is `Io` with kind `Unsupported`.
    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        let _ = validator;
        Err(crate::StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this resource does not keep a validator",
        )))
    }

    /// The validator given to [`set_validator`](Self::set_validator), or
    /// kept from an earlier run of an unfinished download; `None` for none
    /// (the default).
    fn validator(&self) -> Option<String> {
        None
    }

    /// Forgets every byte, the expected length and the validator of an
    /// active resource, to download it afresh (the remote file changed
    /// since the bytes were written): nothing it held is read again, and
    /// a reopen after a crash finds none of it. Its waiters keep waiting
    /// for the new bytes.
    ///
    /// # Errors
    ///
    /// `Committed` on a committed resource (`reactivate` first), `Failed`,
    /// `Cancelled`, `ReadOnly`; `Io` when the store cannot forget (then
    /// nothing changed). The default (for implementations outside this
    /// crate family) is `Io` with kind `Unsupported`.
    fn restart(&self) -> StorageResult<()> {
        Err(crate::StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this resource cannot restart a download",
        )))
    }
}
