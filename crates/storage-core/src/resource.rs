//! `Resource<D>`: the shared state machine every driver plugs into.

use std::{
    fmt,
    ops::Range,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    AvailabilityObserver, DefaultOpen, Driver, DriverIo, DriverState, ResourceExt, ResourceStatus,
    StorageError, StorageResult, WaitOutcome,
    cancel::{CancelWatch, OnCancel},
    tracker::RangeTracker,
    waiters::{Registration, Waiters},
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
}

struct Shared<D: DriverIo> {
    driver: D,
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
    readable_len: AtomicU64,
    prefix_end: AtomicU64,
    /// Set by the cancellation waker before it wakes the waiters.
    cancelled: AtomicBool,
    /// Keeps the cancellation waker registered while the resource lives.
    cancel_watch: Mutex<Option<CancelWatch>>,
}

/// A storage resource: a driver plus range tracking, blocking waits and the
/// lifecycle. Cloning is cheap and gives another handle to the same resource.
///
/// Driver authors implement [`Driver`]; applications use the aliases
/// (`MemResource`, `MmapResource`) through [`ResourceExt`].
///
/// # Examples
///
/// ```
/// # use storage_core::{DefaultOpen, Driver, DriverIo, DriverState, Resource, ResourceExt,
/// #     StorageResult, WaitOutcome};
/// # use std::{path::Path, sync::Mutex};
/// # #[derive(Default)] struct VecDriver(Mutex<Vec<u8>>);
/// # impl DriverIo for VecDriver {
/// #   fn commit(&self, n: Option<u64>) -> StorageResult<()> {
/// #     if let Some(n) = n { self.0.lock().unwrap().resize(n as usize, 0) } Ok(()) }
/// #   fn path(&self) -> Option<&Path> { None }
/// #   fn reactivate(&self) -> StorageResult<()> { Ok(()) }
/// #   fn read_at(&self, off: u64, buf: &mut [u8], end: u64) -> StorageResult<usize> {
/// #     let v = self.0.lock().unwrap(); let end = (end as usize).min(v.len());
/// #     let off = (off as usize).min(end); let n = buf.len().min(end - off);
/// #     buf[..n].copy_from_slice(&v[off..off + n]); Ok(n) }
/// #   fn storage_len(&self) -> u64 { self.0.lock().unwrap().len() as u64 }
/// #   fn write_at(&self, off: u64, data: &[u8], _: bool) -> StorageResult<()> {
/// #     let mut v = self.0.lock().unwrap(); let end = off as usize + data.len();
/// #     if v.len() < end { v.resize(end, 0) } v[off as usize..end].copy_from_slice(data); Ok(()) }
/// # }
/// # impl Driver for VecDriver { type Options = ();
/// #   fn open(_: ()) -> StorageResult<(Self, DriverState)> { Ok(Self::open_default()) } }
/// # impl DefaultOpen for VecDriver {
/// #   fn open_default() -> (Self, DriverState) { (Self::default(), DriverState::default()) } }
/// use tokio_util::sync::CancellationToken;
///
/// let resource = Resource::<VecDriver>::new(CancellationToken::new());
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
            .field("path", &self.shared.driver.path())
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
    pub fn open(cancel: CancellationToken, opts: D::Options) -> StorageResult<Self> {
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
        opts: D::Options,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> StorageResult<Self> {
        let (driver, initial) = D::open(opts)?;
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
        let state = State {
            phase,
            tracker: RangeTracker::from(initial.available),
            waiters: Waiters::default(),
        };
        let shared = Arc::new(Shared {
            driver,
            cancel,
            observer,
            writer: Mutex::new(()),
            state: Mutex::new(state),
            phase_code: AtomicU8::new(PHASE_ACTIVE),
            readable_len: AtomicU64::new(0),
            prefix_end: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            cancel_watch: Mutex::new(None),
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
        self.state.lock().waiters.wake_all();
    }
}

impl<D: DriverIo> Shared<D> {
    /// Refreshes the lock-free mirrors from `state` (called under its lock).
    fn publish(&self, state: &State) {
        let (code, readable) = match state.phase {
            Phase::Active => (PHASE_ACTIVE, state.tracker.extent()),
            Phase::Committed { final_len: Some(n) } => (PHASE_COMMITTED, n),
            Phase::Committed { final_len: None } => (PHASE_COMMITTED, state.tracker.extent()),
            Phase::Failed(_) => (PHASE_FAILED, state.tracker.extent()),
        };
        self.readable_len.store(readable, Ordering::Release);
        self.prefix_end
            .store(state.tracker.prefix_end(), Ordering::Release);
        self.phase_code.store(code, Ordering::Release);
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
        range.end <= self.prefix_end.load(Ordering::Acquire) || self.driver.try_fast_check(range)
    }

    /// The outcome of a wait for `range` in `state`, or `None` to keep waiting.
    fn wait_outcome(
        &self,
        state: &State,
        range: &Range<u64>,
    ) -> Option<StorageResult<WaitOutcome>> {
        if let Err(error) = self.check_usable(state) {
            return Some(Err(error));
        }
        if range.is_empty() || state.tracker.covers(range) {
            return Some(Ok(WaitOutcome::Ready));
        }
        match state.phase {
            Phase::Committed { final_len: Some(n) } => {
                let clipped = range.start..range.end.min(n);
                if range.start < n && state.tracker.covers(&clipped) {
                    Some(Ok(WaitOutcome::Ready))
                } else {
                    Some(Ok(WaitOutcome::Eof))
                }
            }
            Phase::Committed { final_len: None } => Some(Ok(WaitOutcome::Eof)),
            Phase::Active | Phase::Failed(_) => None,
        }
    }
}

fn checked_range(offset: u64, len: usize) -> StorageResult<Range<u64>> {
    u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .map(|end| offset..end)
        .ok_or(StorageError::overflow(offset))
}

fn validate(range: &Range<u64>) -> StorageResult<()> {
    if range.start > range.end {
        return Err(StorageError::InvalidRange {
            start: range.start,
            end: range.end,
        });
    }
    Ok(())
}

impl<D: DriverIo> ResourceExt for Resource<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        let shared = &*self.shared;
        shared.check_usable_fast()?;
        let readable = shared.readable_len.load(Ordering::Acquire);
        if offset >= readable || buf.is_empty() {
            return Ok(0);
        }
        shared.driver.read_at(offset, buf, readable)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        let range = checked_range(offset, data.len())?;
        let shared = &*self.shared;
        let writer = shared.writer.lock();
        let committed = {
            let state = shared.state.lock();
            shared.check_usable(&state)?;
            matches!(state.phase, Phase::Committed { .. })
        };
        shared.driver.write_at(offset, data, committed)?;
        if range.is_empty() {
            return Ok(());
        }
        {
            let mut state = shared.state.lock();
            state.tracker.insert(range.clone());
            shared.publish(&state);
            state.waiters.wake_covered(&range, &state.tracker);
        }
        shared.driver.notify_write(&range);
        drop(writer);
        if let Some(observer) = &shared.observer {
            observer.on_write(range);
        }
        Ok(())
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        validate(&range)?;
        let shared = &*self.shared;
        if shared.phase_code.load(Ordering::Acquire) != PHASE_FAILED
            && !shared.is_cancelled()
            && shared.fast_covered(&range)
        {
            return Ok(WaitOutcome::Ready);
        }
        let mut state = shared.state.lock();
        let mut registration: Option<Registration> = None;
        loop {
            if let Some(outcome) = shared.wait_outcome(&state, &range) {
                if let Some(registration) = registration.take() {
                    state.waiters.deregister(registration.id);
                }
                return outcome;
            }
            let registration =
                registration.get_or_insert_with(|| state.waiters.register(range.clone()));
            registration.wake.wait(&mut state);
        }
    }

    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        let shared = &*self.shared;
        let writer = shared.writer.lock();
        {
            let state = shared.state.lock();
            shared.check_usable(&state)?;
            if matches!(state.phase, Phase::Committed { .. }) {
                return Ok(());
            }
        }
        shared.driver.commit(final_len)?;
        let failed = {
            let mut state = shared.state.lock();
            if let Some(n) = final_len {
                state.tracker.remove(n..u64::MAX);
                state.tracker.insert(0..n);
            }
            let failed = match &state.phase {
                Phase::Failed(reason) => Some(reason.clone()),
                _ => None,
            };
            if failed.is_none() {
                state.phase = Phase::Committed { final_len };
            }
            shared.publish(&state);
            state.waiters.wake_all();
            failed
        };
        drop(writer);
        if let Some(reason) = failed {
            return Err(StorageError::Failed(reason));
        }
        if let (Some(n), Some(observer)) = (final_len, &shared.observer) {
            observer.on_commit(n);
        }
        Ok(())
    }

    fn fail(&self, reason: String) {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        if !matches!(state.phase, Phase::Failed(_)) {
            state.phase = Phase::Failed(reason);
            shared.publish(&state);
        }
        state.waiters.wake_all();
    }

    fn path(&self) -> Option<&Path> {
        self.shared.driver.path()
    }

    fn len(&self) -> Option<u64> {
        match self.shared.state.lock().phase {
            Phase::Committed { final_len } => final_len,
            Phase::Active | Phase::Failed(_) => None,
        }
    }

    fn status(&self) -> ResourceStatus {
        let state = self.shared.state.lock();
        match &state.phase {
            Phase::Failed(reason) => ResourceStatus::Failed(reason.clone()),
            Phase::Committed { final_len } => ResourceStatus::Committed {
                final_len: *final_len,
            },
            Phase::Active if self.shared.is_cancelled() => ResourceStatus::Cancelled,
            Phase::Active => ResourceStatus::Active,
        }
    }

    fn reactivate(&self) -> StorageResult<()> {
        let shared = &*self.shared;
        let _writer = shared.writer.lock();
        {
            let state = shared.state.lock();
            if shared.is_cancelled() {
                return Err(StorageError::Cancelled);
            }
            if state.phase == Phase::Active {
                return Ok(());
            }
        }
        shared.driver.reactivate()?;
        let mut state = shared.state.lock();
        state.phase = Phase::Active;
        shared.publish(&state);
        state.waiters.wake_all();
        Ok(())
    }

    fn contains_range(&self, range: Range<u64>) -> bool {
        if range.start > range.end {
            return false;
        }
        self.shared.fast_covered(&range) || self.shared.state.lock().tracker.covers(&range)
    }

    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>> {
        let state = self.shared.state.lock();
        let upper = match state.phase {
            Phase::Committed { final_len: Some(n) } => limit.min(n),
            _ => limit,
        };
        state.tracker.first_gap(&(from..upper))
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        let shared = &*self.shared;
        shared.check_usable_fast()?;
        let readable = shared.readable_len.load(Ordering::Acquire);
        let out_of_memory = || {
            StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("read_into: {readable} bytes do not fit in memory"),
            ))
        };
        let len = usize::try_from(readable).map_err(|_| out_of_memory())?;
        buf.clear();
        buf.try_reserve_exact(len).map_err(|_| out_of_memory())?;
        buf.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            let n = shared
                .driver
                .read_at(filled as u64, &mut buf[filled..], readable)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(filled)
    }
}
