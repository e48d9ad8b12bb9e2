//! The waits of `Resource<D>`: blocking (with an optional deadline) and async.

use std::{
    future::Future,
    ops::Range,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Instant,
};

use parking_lot::{Condvar, MutexGuard};

use super::{PHASE_FAILED, Phase, Resource, Shared, State};
use crate::{DriverIo, StorageError, StorageResult, WaitOutcome, waiters::Wakeup};

pub(super) fn validate(range: &Range<u64>) -> StorageResult<()> {
    if range.start > range.end {
        return Err(StorageError::InvalidRange {
            start: range.start,
            end: range.end,
        });
    }
    Ok(())
}

impl<D: DriverIo> Shared<D> {
    /// `Ready` without a lock when the range is certainly available and the
    /// resource healthy.
    fn ready_without_lock(&self, range: &Range<u64>) -> bool {
        self.phase_code.load(Ordering::Acquire) != PHASE_FAILED
            && !self.is_cancelled()
            && self.fast_covered(range)
    }

    /// The outcome of a wait for `range` in `state` by the waiter `waiter`
    /// (registered, or not yet), or `None` to keep waiting.
    pub(super) fn wait_outcome(
        &self,
        state: &State,
        range: &Range<u64>,
        waiter: Option<u64>,
    ) -> Option<StorageResult<WaitOutcome>> {
        if let Err(error) = self.check_usable(state) {
            return Some(Err(error));
        }
        if waiter.is_some_and(|id| state.waiters.is_interrupted(id)) {
            return Some(Ok(WaitOutcome::Interrupted));
        }
        if range.is_empty() || state.tracker.covers(range) {
            return Some(Ok(WaitOutcome::Ready));
        }
        match (&state.phase, state.known_end()) {
            // The end is known (committed, or expected): nothing will come
            // past it, and a range crossing it needs only its part before.
            (_, Some(n)) => {
                let clipped = range.start..range.end.min(n);
                if range.start >= n {
                    Some(Ok(WaitOutcome::Eof))
                } else if state.tracker.covers(&clipped) {
                    Some(Ok(WaitOutcome::Ready))
                } else if matches!(state.phase, Phase::Committed { .. }) {
                    Some(Ok(WaitOutcome::Eof))
                } else {
                    None
                }
            }
            (Phase::Committed { .. }, None) => Some(Ok(WaitOutcome::Eof)),
            (Phase::Active | Phase::Failed(_), None) => None,
        }
    }
}

impl<D: DriverIo> Shared<D> {
    /// What a waiter for `range` that has no outcome yet is missing: from
    /// the first missing byte to the range's end, clipped to the known end.
    pub(super) fn missing(state: &State, range: &Range<u64>) -> Range<u64> {
        let end = state.known_end().map_or(range.end, |n| range.end.min(n));
        let clipped = range.start..end;
        state
            .tracker
            .first_gap(&clipped)
            .map_or(clipped, |gap| gap.start..end)
    }
}

impl<D: DriverIo> Resource<D> {
    /// Blocks until `range` has an outcome, or `deadline` passes
    /// (`Err(TimedOut)`). Sleeps on a condvar of its own: no polling.
    /// `announce`, when given, is what the demand signal is told is wanted
    /// (a cursor waits for one byte of its read, and wants all of it).
    pub(super) fn wait_blocking(
        &self,
        range: Range<u64>,
        deadline: Option<Instant>,
        announce: Option<&Range<u64>>,
    ) -> StorageResult<WaitOutcome> {
        validate(&range)?;
        let shared = &*self.shared;
        if shared.ready_without_lock(&range) {
            return Ok(WaitOutcome::Ready);
        }
        let mut state = shared.state.lock();
        let mut registration: Option<(u64, Arc<Condvar>)> = None;
        loop {
            let id = registration.as_ref().map(|(id, _)| *id);
            let outcome = shared.wait_outcome(&state, &range, id).or_else(|| {
                deadline
                    .is_some_and(|deadline| Instant::now() >= deadline)
                    .then_some(Err(StorageError::TimedOut))
            });
            if let Some(outcome) = outcome {
                if let Some(id) = id {
                    state.waiters.deregister(id);
                }
                return outcome;
            }
            let condvar = if let Some((_, condvar)) = &registration {
                Arc::clone(condvar)
            } else {
                let condvar = Arc::new(Condvar::new());
                let wakeup = Wakeup::Thread(Arc::clone(&condvar));
                let id = state.waiters.register(range.clone(), wakeup);
                registration = Some((id, Arc::clone(&condvar)));
                if shared.observer.is_some() || shared.demand.listened() {
                    // The demand signal, outside the lock; then look again
                    // before sleeping (registered, so no wake-up from now
                    // on is lost).
                    let missing = Shared::<D>::missing(&state, announce.unwrap_or(&range));
                    let heard = MutexGuard::unlocked(&mut state, || {
                        shared.demand.announce(&missing);
                        let Some(observer) = &shared.observer else {
                            return Ok(());
                        };
                        panic::catch_unwind(AssertUnwindSafe(|| observer.on_wait(missing)))
                    });
                    if let Err(payload) = heard {
                        // A panicking observer leaves no waiter behind.
                        state.waiters.deregister(id);
                        drop(state);
                        panic::resume_unwind(payload);
                    }
                    continue;
                }
                condvar
            };
            match deadline {
                Some(deadline) => {
                    condvar.wait_until(&mut state, deadline);
                }
                None => condvar.wait(&mut state),
            }
        }
    }
}

/// The future of `wait_range_async`: registers the task's waker with the
/// resource, is woken by the events that wake a blocking wait, and
/// deregisters when dropped.
pub(super) struct WaitFuture<'a, D: DriverIo> {
    resource: &'a Resource<D>,
    range: Range<u64>,
    /// The waiter id once registered.
    registered: Option<u64>,
}

impl<'a, D: DriverIo> WaitFuture<'a, D> {
    pub(super) fn new(resource: &'a Resource<D>, range: Range<u64>) -> Self {
        Self {
            resource,
            range,
            registered: None,
        }
    }
}

impl<D: DriverIo> Future for WaitFuture<'_, D> {
    type Output = StorageResult<WaitOutcome>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.registered.is_none() {
            if let Err(error) = validate(&this.range) {
                return Poll::Ready(Err(error));
            }
            if this.resource.shared.ready_without_lock(&this.range) {
                return Poll::Ready(Ok(WaitOutcome::Ready));
            }
        }
        let shared = &*this.resource.shared;
        let mut state = shared.state.lock();
        if let Some(outcome) = shared.wait_outcome(&state, &this.range, this.registered) {
            if let Some(id) = this.registered.take() {
                state.waiters.deregister(id);
            }
            return Poll::Ready(outcome);
        }
        if let Some(id) = this.registered {
            state.waiters.update_waker(id, cx.waker());
        } else {
            let wakeup = Wakeup::Task(cx.waker().clone());
            this.registered = Some(state.waiters.register(this.range.clone(), wakeup));
            if shared.observer.is_some() || shared.demand.listened() {
                // The demand signal, outside the lock. Registered first, so
                // a write meanwhile wakes this task.
                let missing = Shared::<D>::missing(&state, &this.range);
                drop(state);
                shared.demand.announce(&missing);
                if let Some(observer) = &shared.observer {
                    observer.on_wait(missing);
                }
            }
        }
        Poll::Pending
    }
}

impl<D: DriverIo> Drop for WaitFuture<'_, D> {
    fn drop(&mut self) {
        if let Some(id) = self.registered.take() {
            self.resource.shared.state.lock().waiters.deregister(id);
        }
    }
}
