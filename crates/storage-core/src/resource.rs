//! `Resource<D>`: the shared state machine every driver plugs into.

use std::{
    fmt,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence},
    },
};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    AvailabilityObserver, DefaultOpen, Driver, DriverIo, DriverState, StorageError, StorageResult,
    cancel::{CancelWatch, OnCancel},
    tracker::RangeTracker,
    waiters::Waiters,
};

/// The lifecycle phase, one value at a time (cancellation lives in the token).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Active,
    Committed { final_len: Option<u64> },
    Failed(String),
}

/// `Phase` in one byte, mirrored for the lock-free read path.
const PHASE_ACTIVE: u8 = 0;
const PHASE_COMMITTED: u8 = 1;
const PHASE_FAILED: u8 = 2;

/// Everything the state mutex guards.
#[derive(Debug)]
struct State {
    phase: Phase,
    tracker: RangeTracker,
    waiters: Waiters,
    /// The length declared with `set_expected_len` while not committed
    /// (cleared by `reactivate` and `replace_all`).
    expected_len: Option<u64>,
    /// Whether a hole may hold bytes no write recorded (a write failed, or
    /// the driver opened such a store): the next commit zeroes the holes.
    holes_unclean: bool,
    /// The remote file's validator (`set_validator`, or kept by the store).
    validator: Option<String>,
}

impl State {
    /// The end no byte will ever pass: the final length once committed with
    /// one, else the expected length, if any.
    fn known_end(&self) -> Option<u64> {
        match self.phase {
            Phase::Committed { final_len } => final_len,
            Phase::Active | Phase::Failed(_) => self.expected_len,
        }
    }
}

struct Shared<D: DriverIo> {
    driver: D,
    /// The backing file, if any (from `DriverState::path`).
    path: Option<std::path::PathBuf>,
    cancel: CancellationToken,
    observer: Option<Arc<dyn AvailabilityObserver>>,
    /// Serialises the calls that change the driver (`write_at`, `commit`,
    /// `reactivate`), so the phase a writer saw cannot change under its driver
    /// call. Readers never take it.
    writer: Mutex<()>,
    /// Guards the phase, the range tracker and the waiter registry.
    state: Mutex<State>,
    /// Mirrors of `state`, written under its lock, read without it.
    phase_code: AtomicU8,
    /// The expected length, `u64::MAX` for none (it changes only under
    /// both locks, so a writer holding `writer` reads a settled value).
    expected_end: AtomicU64,
    readable_len: AtomicU64,
    prefix_end: AtomicU64,
    /// Sequence lock over `readable_len` and `prefix_end`: odd while
    /// `publish` changes them, so a reader can take both as one snapshot.
    snapshot_seq: AtomicU64,
    /// Sequence lock over the changes that rewrite or cut bytes already
    /// readable (a replacement, a shrinking commit): odd from before the
    /// driver changes its bytes until the state shows the change, so a read
    /// that saw it odd, or saw it move while it ran, reads again.
    rewrites: AtomicU64,
    /// The highest readable end before a rewrite (a restart, a cut, a
    /// replacement): a reader that took its snapshot before it may still be
    /// copying bytes below, so a write there is never `WriteKind::Fresh`.
    once_readable: AtomicU64,
    /// Set by the cancellation waker before it wakes the waiters.
    cancelled: AtomicBool,
    /// Keeps the cancellation waker registered while the resource lives.
    cancel_watch: Mutex<Option<CancelWatch>>,
    /// The subscribers of the demand signal (`ResourceExt::demand`).
    demand: Arc<crate::demand::DemandBoard>,
}

/// A storage resource: a driver plus range tracking, blocking waits and the
/// lifecycle. Cloning is cheap and gives another handle to the same resource.
///
/// Driver authors implement [`Driver`]; applications use the aliases
/// (`MemResource`, `MmapResource`) through [`ResourceExt`](crate::ResourceExt).
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, Resource, ResourceExt, WaitOutcome};
/// use storage_core::testing::ReferenceDriver; // the smallest driver there is
///
/// let resource = Resource::<ReferenceDriver>::new(CancellationToken::new());
/// let reader = resource.clone();
/// let waiter = std::thread::spawn(move || reader.wait_range(0..5));
/// resource.write_at(0, b"hello")?;
/// assert_eq!(waiter.join().unwrap()?, WaitOutcome::Ready);
/// # Ok::<(), storage_core::StorageError>(())
/// ```
pub struct Resource<D: DriverIo> {
    shared: Arc<Shared<D>>,
}

impl<D: DriverIo> Clone for Resource<D> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D: DriverIo> fmt::Debug for Resource<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("Resource")
            .field("driver", &std::any::type_name::<D>())
            .field("path", &self.shared.path)
            .field("phase", &state.phase)
            .field("cancelled", &self.shared.cancelled.load(Ordering::Acquire))
            .field("fragments", &state.tracker.fragments())
            .field(
                "readable_len",
                &self.shared.readable_len.load(Ordering::Acquire),
            )
            .field("waiters", &state.waiters.len())
            .finish_non_exhaustive()
    }
}

impl<D: Driver> Resource<D> {
    /// Opens the driver with `opts` and wraps it.
    ///
    /// # Errors
    ///
    /// Whatever the driver's `open` returns.
    pub fn open(cancel: CancellationToken, opts: impl Into<D::Options>) -> StorageResult<Self> {
        Self::open_with_observer(cancel, opts, None)
    }

    /// As [`open`](Self::open), with an observer told of every write and of
    /// `commit(Some(n))`.
    ///
    /// # Errors
    ///
    /// Whatever the driver's `open` returns.
    pub fn open_with_observer(
        cancel: CancellationToken,
        opts: impl Into<D::Options>,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> StorageResult<Self> {
        let (driver, initial) = D::open(opts.into())?;
        Ok(Self::from_driver(cancel, driver, initial, observer))
    }
}

impl<D: DefaultOpen> Resource<D> {
    /// A resource on the driver's default options, which always open
    /// (`MemResource::new(cancel)`).
    #[must_use]
    pub fn new(cancel: CancellationToken) -> Self {
        let (driver, initial) = D::open_default();
        Self::from_driver(cancel, driver, initial, None)
    }
}

impl<D: DriverIo> Resource<D> {
    /// Wraps an already opened driver that holds what `initial` describes.
    pub fn from_driver(
        cancel: CancellationToken,
        driver: D,
        initial: DriverState,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> Self {
        let phase = if initial.is_committed {
            Phase::Committed {
                final_len: initial.final_len,
            }
        } else {
            Phase::Active
        };
        let active = matches!(phase, Phase::Active);
        let state = State {
            phase,
            tracker: RangeTracker::from(initial.available),
            waiters: Waiters::default(),
            expected_len: initial.expected_len.filter(|_| active),
            holes_unclean: initial.unclean_holes,
            validator: initial.validator,
        };
        let shared = Arc::new(Shared {
            driver,
            path: initial.path,
            cancel,
            observer,
            writer: Mutex::new(()),
            state: Mutex::new(state),
            phase_code: AtomicU8::new(PHASE_ACTIVE),
            expected_end: AtomicU64::new(u64::MAX),
            readable_len: AtomicU64::new(0),
            prefix_end: AtomicU64::new(0),
            snapshot_seq: AtomicU64::new(0),
            rewrites: AtomicU64::new(0),
            once_readable: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            cancel_watch: Mutex::new(None),
            demand: Arc::default(),
        });
        shared.publish(&shared.state.lock());
        let watch = CancelWatch::arm(&shared.cancel, &shared);
        *shared.cancel_watch.lock() = Some(watch);
        Self { shared }
    }

    /// The driver, for driver-specific queries.
    #[must_use]
    pub fn driver(&self) -> &D {
        &self.shared.driver
    }

    /// The cancellation token the resource was opened with.
    #[must_use]
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.shared.cancel
    }

    /// How many threads are blocked in `wait_range` right now (diagnostics,
    /// and tests that must know a waiter is parked before they act).
    #[must_use]
    pub fn waiter_count(&self) -> usize {
        self.shared.state.lock().waiters.len()
    }

    /// Number of disjoint available fragments.
    #[must_use]
    pub fn fragments(&self) -> usize {
        self.shared.state.lock().tracker.fragments()
    }
}

impl<D: DriverIo> OnCancel for Shared<D> {
    fn on_cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        // Taking the lock orders this wake-up after any waiter that checked
        // the flag and is about to sleep: it is asleep by the time we notify.
        let tasks = self.state.lock().waiters.wake_all();
        tasks.wake();
    }
}

impl<D: DriverIo> Shared<D> {
    /// Refreshes the lock-free mirrors from `state` (called under its lock,
    /// so one `publish` runs at a time).
    fn publish(&self, state: &State) {
        let code = match state.phase {
            Phase::Active => PHASE_ACTIVE,
            Phase::Committed { .. } => PHASE_COMMITTED,
            Phase::Failed(_) => PHASE_FAILED,
        };
        let seq = self.snapshot_seq.load(Ordering::Relaxed);
        self.snapshot_seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.readable_len
            .store(readable_in(state), Ordering::Release);
        self.prefix_end
            .store(state.tracker.prefix_end(), Ordering::Release);
        self.snapshot_seq.store(seq + 2, Ordering::Release);
        self.phase_code.store(code, Ordering::Release);
        self.expected_end
            .store(state.expected_len.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// The holes of `range`: where no byte is available (under the writer
    /// lock, so no hole fills meanwhile).
    fn holes(&self, range: &Range<u64>) -> Vec<Range<u64>> {
        let state = self.state.lock();
        let mut holes = Vec::new();
        let mut from = range.start;
        while let Some(hole) = state.tracker.first_gap(&(from..range.end)) {
            from = hole.end;
            holes.push(hole);
        }
        holes
    }

    /// Opens the `rewrites` sequence lock (see `read_at`) for a change that
    /// rewrites or cuts readable bytes, until the guard drops — also when
    /// the driver panics, so readers never wait for a sequence left open.
    /// Bytes readable before it may still be read by a reader that took
    /// its snapshot before: no write into them is fresh from now on.
    /// Called under the writer lock.
    fn rewriting(&self, readable_before: u64) -> Rewriting<'_> {
        self.once_readable
            .fetch_max(readable_before, Ordering::AcqRel);
        self.rewrites.fetch_add(1, Ordering::AcqRel);
        Rewriting {
            rewrites: &self.rewrites,
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// `Err` when the resource is failed or cancelled (failure first).
    fn check_usable(&self, state: &State) -> StorageResult<()> {
        if let Phase::Failed(reason) = &state.phase {
            return Err(StorageError::Failed(reason.clone()));
        }
        if self.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        Ok(())
    }

    /// As `check_usable`, locking only when something is wrong.
    fn check_usable_fast(&self) -> StorageResult<()> {
        if self.phase_code.load(Ordering::Acquire) != PHASE_FAILED && !self.is_cancelled() {
            return Ok(());
        }
        self.check_usable(&self.state.lock())
    }

    /// Lock-free answer to "is `range` available", `true` only when certain.
    fn fast_covered(&self, range: &Range<u64>) -> bool {
        range.end <= self.prefix_end.load(Ordering::Acquire)
    }
}

/// An open `rewrites` sequence, closed when dropped (see `Shared::rewriting`).
struct Rewriting<'a> {
    rewrites: &'a AtomicU64,
}

impl Drop for Rewriting<'_> {
    fn drop(&mut self) {
        self.rewrites.fetch_add(1, Ordering::AcqRel);
    }
}

/// The readable length `state` gives: the final length once committed with
/// one, else the end of the highest available byte.
fn readable_in(state: &State) -> u64 {
    match state.phase {
        Phase::Committed { final_len: Some(n) } => n,
        Phase::Active | Phase::Committed { final_len: None } | Phase::Failed(_) => {
            state.tracker.extent()
        }
    }
}

mod operations;
mod read;
mod wait;
