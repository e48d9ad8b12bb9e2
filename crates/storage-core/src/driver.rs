//! The driver traits: what a backing store (memory, a mapped file) provides to `Resource`.

use std::{ops::Range, path::Path};

use rangemap::RangeSet;

use crate::StorageResult;

/// Byte-level I/O of a backing store.
///
/// [`Resource`](crate::Resource) owns all the bookkeeping: which ranges are
/// available, the lifecycle, waking waiters, cancellation. A driver only moves
/// bytes and finalises storage. `Resource` guarantees that:
///
/// - `write_at`, `write_fresh`, `commit`, `reactivate` and `replace_all`
///   are never called concurrently with each other on one driver;
/// - `sync` may be called concurrently with anything (so that a slow disk
///   sync does not stop writers): a driver serialises it with whatever it
///   must not overlap;
/// - `read_at` may run concurrently with anything, from any number of
///   threads, but is only ever asked for bytes that are *available* (written,
///   or committed): holes are zero-filled by `Resource` without asking the
///   driver. So a write of bytes that are not available yet (`write_fresh`)
///   never overlaps a read, and a driver may let it run beside readers.
///
/// An implementation must never panic on caller input (any `offset`, any
/// length) and must turn every failure into a `StorageError`.
pub trait DriverIo: Send + Sync + 'static {
    /// Finalises storage: with `Some(n)` the stored data becomes exactly `n`
    /// bytes long (cut or zero-extended); with `None` it ends at the written
    /// extent. After it returns, `read_at` must not serve bytes past that end.
    ///
    /// # Errors
    ///
    /// `Io` when the backing store cannot be truncated or remapped.
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()>;

    /// Makes `range`, where no byte is available, read as zeros. A write
    /// that failed partway may have left bytes there, and so may one that a
    /// crash cut off before a journal recorded it; `Resource` calls this at
    /// commit for every hole below the committed end (before
    /// [`commit`](Self::commit), which makes holes readable), so a
    /// committed hole never shows bytes that no write stored. `range` may
    /// reach past the stored data, which needs nothing. The default, for a
    /// store whose holes are zeros by construction, does nothing.
    ///
    /// # Errors
    ///
    /// `Io` when the bytes cannot be zeroed; the commit is then refused.
    fn zero_hole(&self, _range: Range<u64>) -> StorageResult<()> {
        Ok(())
    }

    /// Keeps the expected length and the validator of an unfinished
    /// download with the store, so a store reopened after a restart or a
    /// crash has them before any network (`DriverState::expected_len`,
    /// `DriverState::validator`). Called by `set_expected_len` and
    /// `set_validator` of an active resource, under its writer lock; it
    /// must be durable before data of the new identity is journaled (the
    /// file driver appends a synced record to its journal). A store that
    /// keeps nothing across opens does nothing (the default).
    ///
    /// # Errors
    ///
    /// `Io` when it cannot be kept; the call that asked then fails and
    /// changes nothing.
    fn persist_identity(
        &self,
        _expected_len: Option<u64>,
        _validator: Option<&str>,
    ) -> StorageResult<()> {
        Ok(())
    }

    /// Forgets every range the store keeps for an unfinished download
    /// (`restart`: the remote file changed): a store reopened afterwards has
    /// none, and no identity. The bytes themselves may stay (the resource
    /// zeroes holes before a commit). The default, for a store that keeps
    /// nothing across opens, does nothing.
    ///
    /// # Errors
    ///
    /// `Io` when the store cannot forget; `restart` then fails and changes
    /// nothing.
    fn forget_ranges(&self) -> StorageResult<()> {
        Ok(())
    }

    /// Called after `range` was recorded as available, before the writer
    /// returns (a driver may keep its own index). The default does nothing.
    fn notify_write(&self, _range: &Range<u64>) {}

    /// The backing file, if any.
    fn path(&self) -> Option<&Path>;

    /// Blocks until everything written or committed before the call is
    /// durable, and reports an error of an earlier step that was to make it
    /// so (a commit's sync). Runs concurrently with writes and lifecycle
    /// calls (see the trait's guarantees). The default, for stores with
    /// nothing to make durable, returns `Ok` at once.
    ///
    /// # Errors
    ///
    /// `Io` when the store cannot be made durable.
    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }

    /// Reopens the store for writing after a commit. Must keep every byte.
    ///
    /// # Errors
    ///
    /// `ReadOnly` when the store can never be written; `Io` on failure.
    fn reactivate(&self) -> StorageResult<()>;

    /// As [`reactivate`](Self::reactivate), told which ranges hold data
    /// (`available`, as `Resource` tracks them). A driver that records which
    /// ranges are stored (a resume journal) must record exactly these, never
    /// the holes between them. On error the driver must be as it was: still
    /// committed, readable, holding nothing it did not hold before. The
    /// default calls `reactivate`.
    ///
    /// # Errors
    ///
    /// As `reactivate`.
    fn reactivate_with(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        let _ = available;
        self.reactivate()
    }

    /// Replaces the whole store with `data` and finalises it at
    /// `data.len()`, as one step for readers and for a crash: a crash at
    /// any instant leaves the old store or the new one, whole, and with
    /// `durable` the new store survives a power loss once this returns.
    /// `Resource` calls it under its writer lock, in any phase but failed.
    ///
    /// `publish` tells `Resource` that the new contents are in place (it
    /// updates the ranges, the length and the phase, and makes readers
    /// that raced the swap read again). The driver must call it exactly
    /// once, at the instant `read_at` starts serving the new bytes, while
    /// no `read_at` can run (under the lock that keeps readers out of the
    /// swap); and once it has, the call must return `Ok` (a later
    /// durability error is `sync`'s to report). On an error before it, the
    /// old contents must be kept.
    ///
    /// The default (for stores that have nothing to crash) is
    /// `reactivate`, `write_at(0, data)`, `commit(Some(len))`, then
    /// `publish`: readers may see a mix while it runs, so a driver whose
    /// readers must not overrides it.
    ///
    /// # Errors
    ///
    /// `ReadOnly` when the store can never be written; `Io` when the new
    /// contents cannot be stored, and then the old ones must be kept.
    fn replace_all(
        &self,
        data: &[u8],
        durable: bool,
        publish: &mut dyn FnMut(),
    ) -> StorageResult<()> {
        let _ = durable;
        self.reactivate()?;
        self.write_at(0, data, false)?;
        self.commit(Some(data.len() as u64))?;
        publish();
        Ok(())
    }

    /// Copies bytes at `offset` into `buf`, never past `effective_len` (the
    /// resource's readable end, computed by `Resource`), and returns the count;
    /// `0` at or past the end.
    ///
    /// # Errors
    ///
    /// `Io` when the store cannot be read.
    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize>;

    /// Bytes currently reserved by the store (file or buffer size), which may
    /// exceed the data written.
    fn storage_len(&self) -> u64;

    /// A lock-free "is this range certainly available" check consulted before
    /// `Resource` takes its lock. Must never answer `true` for a range that is
    /// not available. The default answers `false`.
    fn try_fast_check(&self, _range: &Range<u64>) -> bool {
        false
    }

    /// The window of offsets the store still holds, for stores that evict old
    /// data; `None` (the default) means everything written is kept.
    fn valid_window(&self) -> Option<Range<u64>> {
        None
    }

    /// Stores `data` at `offset`, where no byte is available yet, in an active
    /// resource: no `read_at` asks for these bytes until this returns, so a
    /// driver may run it concurrently with readers of other bytes. The
    /// default calls [`write_at`](Self::write_at) with `committed = false`.
    ///
    /// `Resource` calls it only for a driver whose
    /// [`wants_write_fresh`](Self::wants_write_fresh) is `true`.
    ///
    /// # Errors
    ///
    /// As `write_at`.
    fn write_fresh(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        self.write_at(offset, data, false)
    }

    /// Whether `Resource` should tell fresh writes apart and hand them to
    /// [`write_fresh`](Self::write_fresh). Telling costs a look-up in the
    /// range tracker, under the resource's state lock, on every write, so a
    /// driver that does nothing different for fresh bytes keeps the
    /// default, `false`, and gets every write through `write_at`. Asked on
    /// every write: answer a constant.
    fn wants_write_fresh(&self) -> bool {
        false
    }

    /// Stores `data` at `offset`. `committed` says whether the resource is
    /// committed; a driver that does not write after commit returns
    /// `Err(StorageError::Committed)`. `offset + data.len()` is known not to
    /// overflow. `data` may be empty: then the driver only says whether it
    /// would accept a write, and stores (and grows) nothing.
    ///
    /// # Errors
    ///
    /// `Committed` / `ReadOnly` when writes are refused; `Io` when the store
    /// cannot hold the bytes.
    fn write_at(&self, offset: u64, data: &[u8], committed: bool) -> StorageResult<()>;
}

/// A driver that can be opened from options.
pub trait Driver: DriverIo {
    /// What opening needs (a path and mode, initial data).
    type Options: Send;

    /// Opens the store and reports what it already holds.
    ///
    /// # Errors
    ///
    /// Whatever prevents opening (`Io` for a file that cannot be created).
    fn open(opts: Self::Options) -> StorageResult<(Self, DriverState)>
    where
        Self: Sized;
}

/// A driver whose default options always open: gives `Resource::new(cancel)`.
pub trait DefaultOpen: Driver {
    /// Opens with default options.
    fn open_default() -> (Self, DriverState)
    where
        Self: Sized;
}

/// What a freshly opened store already holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverState {
    /// The committed length, when the store opens committed with one.
    pub final_len: Option<u64>,
    /// The byte ranges that hold data.
    pub available: RangeSet<u64>,
    /// Whether the store opens committed (complete) rather than active.
    pub is_committed: bool,
    /// Whether bytes outside `available` may hold data no write recorded:
    /// a store reopened after a crash keeps what was written after its last
    /// checkpoint. The first commit then zeroes every hole
    /// ([`DriverIo::zero_hole`]); a store opened clean skips that until a
    /// write fails.
    pub unclean_holes: bool,
    /// The expected length a store kept for an unfinished download (see
    /// [`DriverIo::persist_identity`]), restored as `expected_len()`.
    pub expected_len: Option<u64>,
    /// The validator a store kept for an unfinished download (see
    /// [`DriverIo::persist_identity`]), restored as `validator()`.
    pub validator: Option<String>,
}
