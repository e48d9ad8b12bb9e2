//! The `ResourceExt` operations of `Resource<D>`: writes, waits and the lifecycle (reads are in `read.rs`).

use std::{
    future::Future,
    ops::Range,
    path::Path,
    pin::Pin,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use parking_lot::MutexGuard;

use super::{Phase, Resource, Shared, wait::WaitFuture};
use crate::{
    DownloadRecord, DriverIo, RangeTracker, ResourceExt, ResourceStatus, StorageError,
    StorageResult, WaitOutcome, WriteKind,
};

fn checked_range(offset: u64, len: usize) -> StorageResult<Range<u64>> {
    u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .map(|end| offset..end)
        .ok_or(StorageError::overflow(offset))
}

impl<D: DriverIo> ResourceExt for Resource<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        self.shared.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        let range = checked_range(offset, data.len())?;
        let shared = &*self.shared;
        let writer = shared.writer.lock();
        // The phase leaves or enters `Committed`, and the expected length
        // changes, only under the writer lock, held here: their mirrors are
        // settled. Only `fail` can land meanwhile (Committed or Active →
        // Failed), so the phase is read once and both answers come from
        // that one read: read twice, a `fail` between the reads let a write
        // into a committed resource through as if it were active.
        let code = shared.phase_code.load(Ordering::Acquire);
        if code == super::PHASE_FAILED || shared.is_cancelled() {
            // The reason, and failure before cancellation, from the state.
            shared.check_usable(&shared.state.lock())?;
        }
        let committed = code == super::PHASE_COMMITTED;
        let expected = shared.expected_end.load(Ordering::Acquire);
        if !committed && range.end > expected {
            return Err(StorageError::PastExpectedLen {
                expected,
                end: range.end,
            });
        }
        // One look-up under the state lock, for drivers that copy fresh
        // bytes differently only; the holes of a rewrite of a committed
        // resource (rare) for the driver to zero if it fails.
        let holes;
        let kind = if committed {
            holes = if range.is_empty() {
                Vec::new()
            } else {
                shared.holes(&range)
            };
            WriteKind::Committed { holes: &holes }
        } else if D::FRESH_WRITES
            && !range.is_empty()
            && range.start >= shared.once_readable.load(Ordering::Acquire)
            && !shared.state.lock().tracker.overlaps(&range)
        {
            WriteKind::Fresh
        } else {
            WriteKind::Active
        };
        // No reader reads unavailable bytes (see `read_available`), and the
        // writer lock keeps them unavailable until this write is recorded.
        if let Err(e) = shared.driver.write(offset, data, kind) {
            shared.state.lock().holes_unclean = true;
            return Err(e);
        }
        if range.is_empty() {
            return Ok(());
        }
        let tasks = {
            let mut state = shared.state.lock();
            state.tracker.insert(range.clone());
            shared.publish(&state);
            state
                .waiters
                .wake_covered(&range, &state.tracker, state.known_end())
        };
        tasks.wake();
        drop(writer);
        if let Some(observer) = &shared.observer {
            observer.on_write(range);
        }
        Ok(())
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        self.wait_blocking(range, None, None)
    }

    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        if range.start >= range.end {
            return self.wait_blocking(range, None, None);
        }
        let first = range.start..range.start + 1;
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        self.wait_blocking(first, deadline, Some(&range))
    }

    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome> {
        // A timeout too large for the clock waits without a deadline.
        self.wait_blocking(range, Instant::now().checked_add(timeout), None)
    }

    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>> {
        Box::pin(WaitFuture::new(self, range))
    }

    fn interrupt(&self) {
        let tasks = self.shared.state.lock().waiters.interrupt_all();
        tasks.wake();
    }

    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        let shared = &*self.shared;
        let writer = shared.writer.lock();
        let final_len = {
            let state = shared.state.lock();
            shared.check_usable(&state)?;
            if matches!(state.phase, Phase::Committed { .. }) {
                return Ok(());
            }
            // The writer lock keeps writes out until the commit is done, so
            // what is checked here still holds at the driver's commit.
            match (state.expected_len, final_len) {
                (Some(expected), Some(given)) if given != expected => {
                    return Err(StorageError::LengthMismatch { expected, given });
                }
                (Some(expected), None) => {
                    if let Some(missing) = state.tracker.first_gap(&(0..expected)) {
                        return Err(StorageError::Incomplete { expected, missing });
                    }
                    Some(expected)
                }
                _ => final_len,
            }
        };
        // Every hole this commit makes readable reads as zeros (see
        // `DriverIo::commit`): named when one may hold bytes no write
        // recorded. On an error the resource stays active, its holes as
        // unavailable as they were.
        let (unclean, extent, readable, cuts) = {
            let state = shared.state.lock();
            let readable = super::readable_in(&state);
            let cuts = final_len.is_some_and(|n| n < readable);
            (state.holes_unclean, state.tracker.extent(), readable, cuts)
        };
        let holes = if unclean {
            shared.holes(&(0..final_len.unwrap_or(extent)))
        } else {
            Vec::new()
        };
        // Readers that overlap the cut read again (see `read_at`); the
        // sequence closes once the state shows the cut, below.
        let rewriting = cuts.then(|| shared.rewriting(readable));
        shared.driver.commit(final_len, &holes)?;
        let (failed, tasks) = {
            let mut state = shared.state.lock();
            state.holes_unclean = false;
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
            // The state shows the cut: readers may trust what they read.
            drop(rewriting);
            (failed, state.waiters.wake_all())
        };
        tasks.wake();
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
            // The length a commit fixed stays known (a reopened committed
            // file has no expected length of its own to fall back on).
            if let Phase::Committed { final_len: Some(n) } = state.phase {
                state.expected_len.get_or_insert(n);
            }
            state.phase = Phase::Failed(reason);
            shared.publish(&state);
        }
        let tasks = state.waiters.wake_all();
        drop(state);
        tasks.wake();
    }

    fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    fn len(&self) -> Option<u64> {
        match self.shared.state.lock().phase {
            Phase::Committed { final_len } => final_len,
            Phase::Active | Phase::Failed(_) => None,
        }
    }

    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        let shared = &*self.shared;
        // Serialised with writes and commits, which check against it.
        let _writer = shared.writer.lock();
        let tasks = {
            let mut state = shared.state.lock();
            shared.check_usable(&state)?;
            let current = match state.phase {
                Phase::Committed { final_len: None } => return Err(StorageError::Committed),
                Phase::Committed { final_len: Some(n) } => Some(n),
                Phase::Active | Phase::Failed(_) => state.expected_len,
            };
            if let Some(expected) = current {
                return if expected == len {
                    Ok(())
                } else {
                    Err(StorageError::LengthMismatch {
                        expected,
                        given: len,
                    })
                };
            }
            let end = state.tracker.extent();
            if end > len {
                return Err(StorageError::PastExpectedLen { expected: len, end });
            }
            if state.phase == Phase::Active {
                // Kept with the store before anyone relies on it.
                let validator = state.validator.clone();
                MutexGuard::unlocked(&mut state, || {
                    shared.driver.record(DownloadRecord::Identity {
                        expected_len: Some(len),
                        validator: validator.as_deref(),
                    })
                })?;
            }
            state.expected_len = Some(len);
            shared.publish(&state);
            // Waiters at or past the new end have their outcome: Eof.
            state.waiters.wake_all()
        };
        tasks.wake();
        Ok(())
    }

    fn expected_len(&self) -> Option<u64> {
        self.shared.state.lock().known_end()
    }

    fn demand(&self) -> crate::Demand {
        let shared = &*self.shared;
        // Under the state lock: a waiter registered before is seeded here,
        // one registered after announces to this subscriber (perhaps both:
        // a duplicate, never a loss).
        let state = shared.state.lock();
        let now: Vec<Range<u64>> = state
            .waiters
            .ranges()
            .map(|range| Shared::<D>::missing(&state, range))
            .collect();
        shared.demand.subscribe(now)
    }

    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        let shared = &*self.shared;
        let _writer = shared.writer.lock();
        let (active, expected) = {
            let state = shared.state.lock();
            shared.check_usable(&state)?;
            (state.phase == Phase::Active, state.expected_len)
        };
        if active {
            shared.driver.record(DownloadRecord::Identity {
                expected_len: expected,
                validator: Some(validator),
            })?;
        }
        shared.state.lock().validator = Some(validator.to_owned());
        Ok(())
    }

    fn validator(&self) -> Option<String> {
        self.shared.state.lock().validator.clone()
    }

    fn restart(&self) -> StorageResult<()> {
        let shared = &*self.shared;
        let _writer = shared.writer.lock();
        {
            let state = shared.state.lock();
            shared.check_usable(&state)?;
            if let Phase::Committed { .. } = state.phase {
                return Err(StorageError::Committed);
            }
        }
        // Readers that took their snapshot before read again.
        let readable = super::readable_in(&shared.state.lock());
        let rewriting = shared.rewriting(readable);
        shared.driver.record(DownloadRecord::Restarted)?;
        let mut state = shared.state.lock();
        state.tracker = RangeTracker::new();
        state.expected_len = None;
        state.validator = None;
        // The old bytes are still in the store: zeroed before a commit.
        state.holes_unclean = true;
        shared.publish(&state);
        drop(rewriting);
        let tasks = state.waiters.wake_all();
        drop(state);
        tasks.wake();
        Ok(())
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
        let (active, available) = {
            let state = shared.state.lock();
            if shared.is_cancelled() {
                return Err(StorageError::Cancelled);
            }
            (state.phase == Phase::Active, state.tracker.to_set())
        };
        // Asked even when active: a store that can never be written (a
        // read-only file resumed from its journal) says so.
        shared.driver.reactivate(&available)?;
        if active {
            return Ok(());
        }
        let mut state = shared.state.lock();
        state.phase = Phase::Active;
        state.expected_len = None;
        shared.publish(&state);
        let tasks = state.waiters.wake_all();
        drop(state);
        tasks.wake();
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
        let upper = state.known_end().map_or(limit, |end| limit.min(end));
        state.tracker.first_gap(&(from..upper))
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        self.shared.read_into(buf)
    }

    fn sync(&self) -> StorageResult<()> {
        // Without the writer lock: writes go on while the disk syncs (the
        // driver serialises a sync with its own lifecycle changes).
        self.shared.driver.sync()
    }

    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        let len = data.len() as u64;
        let shared = &*self.shared;
        let writer = shared.writer.lock();
        shared.check_usable(&shared.state.lock())?;
        let staged = shared.driver.stage(data, durable)?;
        // Readers that overlap the swap read again (see `read_at`): the
        // driver may change its bytes and length in any order.
        let readable = super::readable_in(&shared.state.lock());
        let (failed, tasks) = {
            let rewriting = shared.rewriting(readable);
            shared.driver.publish(staged);
            let mut state = shared.state.lock();
            state.tracker = RangeTracker::new();
            state.tracker.insert(0..len);
            state.expected_len = None;
            // A `fail` that landed meanwhile wins, as in `commit`.
            let failed = match &state.phase {
                Phase::Failed(reason) => Some(reason.clone()),
                _ => None,
            };
            if failed.is_none() {
                state.phase = Phase::Committed {
                    final_len: Some(len),
                };
            }
            shared.publish(&state);
            drop(rewriting);
            (failed, state.waiters.wake_all())
        };
        tasks.wake();
        drop(writer);
        if let Some(reason) = failed {
            return Err(StorageError::Failed(reason));
        }
        if let Some(observer) = &shared.observer {
            if len > 0 {
                observer.on_write(0..len);
            }
            observer.on_commit(len);
        }
        Ok(())
    }
}
