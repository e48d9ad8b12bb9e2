//! The driver traits: what a backing store (memory, a mapped file) provides to `Resource`.

use std::{ops::Range, path::PathBuf};

use rangemap::RangeSet;

use crate::StorageResult;

/// Byte-level I/O of a backing store: eight methods, each required.
///
/// [`Resource`](crate::Resource) owns all the bookkeeping: which ranges are
/// available, the lifecycle, waking waiters, cancellation, and keeping
/// readers consistent across a rewrite. A driver only moves bytes and
/// finalises storage. `Resource` guarantees that:
///
/// - `write`, `commit`, `reactivate`, `stage` with `publish`, and `record`
///   are never called concurrently with each other on one driver (the *lifecycle
///   calls*);
/// - `sync` may be called concurrently with anything (so that a slow disk
///   sync does not stop writers): a driver serialises it with whatever it
///   must not overlap;
/// - `read_at` may run concurrently with anything, from any number of
///   threads, but is only ever asked for bytes that are *available*
///   (written, or committed): holes are zero-filled by `Resource` without
///   asking the driver. So a [`WriteKind::Fresh`] write never overlaps a
///   read of its bytes, and a driver may let it run beside readers;
/// - a read that overlaps a `publish`, or a `commit` that cuts readable
///   bytes, is discarded and made again, so the driver may change its
///   bytes and its length in any order, as long as `read_at` stays memory
///   safe meanwhile.
///
/// An implementation must never panic on caller input (any `offset`, any
/// length) and must turn every failure into a `StorageError`. There are no
/// default methods on purpose: each one states a promise a driver makes,
/// and a default that quietly makes it would be wrong for some store.
pub trait DriverIo: Send + Sync + 'static {
    /// Whether `Resource` should tell [`WriteKind::Fresh`] writes apart
    /// from [`WriteKind::Active`] ones. Telling costs a look-up in the range
    /// tracker, under the resource's state lock, on every write, so a
    /// driver that does nothing different for fresh bytes says `false` and
    /// gets every write of an active resource as `Active`.
    const FRESH_WRITES: bool;

    /// Copies bytes at `offset` into `buf`, never past `effective_len` (the
    /// resource's readable end, computed by `Resource`), and returns the
    /// count; `0` at or past the end (or past the store's own end, after a
    /// cut that `Resource` has not published yet). Runs concurrently with
    /// everything (see the trait's guarantees).
    ///
    /// # Errors
    ///
    /// `Io` when the store cannot be read.
    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize>;

    /// Stores `data` at `offset`; `kind` says what readers and the
    /// lifecycle allow (see [`WriteKind`]). `offset + data.len()` is known
    /// not to overflow. `data` may be empty: the driver stores (and grows)
    /// nothing, and answers as it would for bytes (a committed store that
    /// refuses writes refuses an empty one too).
    ///
    /// # Errors
    ///
    /// `Committed` / `ReadOnly` when writes are refused; `Io` when the store
    /// cannot hold the bytes. A failed write may have stored part of its
    /// bytes: in an active resource they stay unavailable (and the next
    /// commit names them as holes); in a committed one the driver zeroes
    /// the write's [`WriteKind::Committed`] holes itself.
    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()>;

    /// Finalises storage: with `Some(n)` the stored data becomes exactly `n`
    /// bytes long (cut or zero-extended); with `None` it ends at the written
    /// extent. After it returns, `read_at` must not serve bytes past that end.
    ///
    /// `holes` are ranges below the end where no byte is available but a
    /// byte may have been stored (a write that failed partway, a crash
    /// before a journal recorded it, a restarted download): the driver makes
    /// them read as zeros before they become readable, so a committed hole
    /// never shows bytes that no write stored. They may reach past the
    /// stored data, which needs nothing. `Resource` passes none when every
    /// hole is known to be clean.
    ///
    /// # Errors
    ///
    /// `Io` when the backing store cannot be zeroed, truncated or remapped;
    /// the store must then be as it was, still active.
    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()>;

    /// Makes the store writable again after a commit, keeping every byte.
    /// `available` holds the ranges that hold data (as `Resource` tracks
    /// them): a driver that records which ranges are stored (a resume
    /// journal) records exactly these, never the holes between them. Called
    /// on an active store too, where it only says whether the store can be
    /// written.
    ///
    /// # Errors
    ///
    /// `ReadOnly` when the store can never be written; `Io` on failure, and
    /// then the driver must be as it was: still committed, readable,
    /// holding nothing it did not hold before.
    fn reactivate(&self, available: &RangeSet<u64>) -> StorageResult<()>;

    /// A replacement prepared by [`stage`](Self::stage), for
    /// [`publish`](Self::publish) to put in place (it may hold the driver's
    /// own locks between the two).
    type Staged<'a>
    where
        Self: 'a;

    /// Prepares the replacement of the whole store with `data`, finalised
    /// at `data.len()`: everything that can fail happens here, and on an
    /// error the old contents are kept. Readers go on reading the old
    /// contents meanwhile. With `durable` the new store must survive a
    /// power loss once [`publish`](Self::publish) returns; in any case a
    /// crash at any instant leaves the old store or the new one, whole.
    /// `Resource` calls it in any phase but failed, and `publish` right
    /// after it returns `Ok`.
    ///
    /// # Errors
    ///
    /// `ReadOnly` when the store can never be written; `Io` when the new
    /// contents cannot be stored.
    fn stage(&self, data: &[u8], durable: bool) -> StorageResult<Self::Staged<'_>>;

    /// Puts a staged replacement in place: from its return, `read_at`
    /// serves the new bytes. It cannot fail (a later durability error is
    /// `sync`'s to report). Reads that overlap it are made again, so the
    /// driver may swap bytes and length in any order.
    fn publish(&self, staged: Self::Staged<'_>);

    /// Blocks until everything written or committed before the call is
    /// durable, and reports an error of an earlier step that was to make it
    /// so (a commit's background sync). Runs concurrently with everything.
    /// A store with nothing to make durable returns `Ok` at once.
    ///
    /// # Errors
    ///
    /// `Io` when the store cannot be made durable.
    fn sync(&self) -> StorageResult<()>;

    /// Keeps a change of an unfinished download's record with the store,
    /// so a store reopened after a restart or a crash has it before any
    /// network (see [`DownloadRecord`]). Called on an active store only.
    /// A store that keeps nothing across opens returns `Ok`.
    ///
    /// # Errors
    ///
    /// `Io` when it cannot be kept; the call that asked then fails and
    /// changes nothing.
    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()>;
}

/// What a write may assume about readers and the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind<'a> {
    /// An active resource, and no byte of the range is available: no
    /// `read_at` asks for these bytes until the write returns, so it may
    /// run beside readers of other bytes. Only given to a driver whose
    /// [`DriverIo::FRESH_WRITES`] is `true`.
    Fresh,
    /// An active resource; bytes of the range may be available, and read
    /// right now.
    Active,
    /// A committed resource (a driver that does not write after commit
    /// returns `Err(StorageError::Committed)`, as the behaviour suite
    /// expects; one that rewrites in place, as the file driver's `ReadWrite`
    /// mode does, is tested on its own). `holes` are the parts of the
    /// range where no byte is available: if the write fails partway, the
    /// driver makes them read as zeros again.
    Committed {
        /// The unavailable parts of the write's range.
        holes: &'a [Range<u64>],
    },
}

/// A change of what a store keeps about an unfinished download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadRecord<'a> {
    /// The download's expected length and the remote file's validator
    /// (`set_expected_len`, `set_validator`). Durable before any data of
    /// this identity is recorded as stored (the file driver appends a
    /// synced record to its journal).
    Identity {
        /// The declared length, if any.
        expected_len: Option<u64>,
        /// The remote file's validator (an `ETag`, else `Last-Modified`), if any.
        validator: Option<&'a str>,
    },
    /// The download starts over (`restart`: the remote file changed): a
    /// store reopened afterwards has no range and no identity, and nothing
    /// counts as written (a `commit(None)` ends at what is written after
    /// it). Nothing is available, so no reader reads the store: it may drop
    /// the old bytes; bytes it keeps below a later write's end the next
    /// commit names as holes.
    Restarted,
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
    /// checkpoint. The first commit then names every hole
    /// ([`DriverIo::commit`]); a store opened clean names none until a
    /// write fails.
    pub unclean_holes: bool,
    /// The expected length a store kept for an unfinished download (see
    /// [`DownloadRecord::Identity`]), restored as `expected_len()`.
    pub expected_len: Option<u64>,
    /// The validator a store kept for an unfinished download (see
    /// [`DownloadRecord::Identity`]), restored as `validator()`.
    pub validator: Option<String>,
    /// The backing file, if any (`ResourceExt::path`).
    pub path: Option<PathBuf>,
}
