//! `Waiters`: the waits blocked on a resource — threads parked on their own
//! condvar, and async tasks' wakers.

use std::{ops::Range, sync::Arc, task::Waker};

use parking_lot::Condvar;

use crate::tracker::RangeTracker;

/// How a waiter is woken.
#[derive(Debug)]
pub(crate) enum Wakeup {
    /// A thread asleep in `wait_range` on its own condvar.
    Thread(Arc<Condvar>),
    /// An async task, through its waker (called after the lock is released).
    Task(Waker),
}

/// One blocked wait: the range it needs, how to wake it, and whether it was
/// interrupted since it registered.
#[derive(Debug)]
struct Waiter {
    id: u64,
    range: Range<u64>,
    wakeup: Wakeup,
    interrupted: bool,
}

/// The registry of blocked waits of one resource.
///
/// Lives inside the resource's state mutex. Threads sleep on that mutex
/// through a condvar of their own, so a write wakes exactly the waiters whose
/// range it completes (no thundering herd); lifecycle events (commit, fail,
/// reactivate, cancel, interrupt) wake them all.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    next_id: u64,
    entries: Vec<Waiter>,
}

/// Task wakers to call once the state lock is released (calling out under a
/// lock could run arbitrary executor code while we hold it).
#[must_use = "call `wake` after releasing the state lock"]
#[derive(Debug, Default)]
pub(crate) struct Wakeups(Vec<Waker>);

impl Wakeups {
    /// Wakes the collected tasks.
    pub(crate) fn wake(self) {
        for waker in self.0 {
            waker.wake();
        }
    }
}

impl Waiters {
    /// Adds a waiter for `range`; returns its id.
    pub(crate) fn register(&mut self, range: Range<u64>, wakeup: Wakeup) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Waiter {
            id,
            range,
            wakeup,
            interrupted: false,
        });
        id
    }

    /// The ranges every registered waiter waits for.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = &Range<u64>> {
        self.entries.iter().map(|w| &w.range)
    }

    /// Replaces the waker of task waiter `id` when the task's changed.
    pub(crate) fn update_waker(&mut self, id: u64, waker: &Waker) {
        if let Some(waiter) = self.entries.iter_mut().find(|w| w.id == id)
            && let Wakeup::Task(current) = &mut waiter.wakeup
            && !current.will_wake(waker)
        {
            current.clone_from(waker);
        }
    }

    /// Removes the waiter `id` (no-op when it is gone).
    pub(crate) fn deregister(&mut self, id: u64) {
        if let Some(index) = self.entries.iter().position(|w| w.id == id) {
            self.entries.swap_remove(index);
        }
    }

    /// Whether waiter `id` was interrupted since it registered.
    pub(crate) fn is_interrupted(&self, id: u64) -> bool {
        self.entries.iter().any(|w| w.id == id && w.interrupted)
    }

    fn wake_one(waiter: &Waiter, tasks: &mut Wakeups) {
        match &waiter.wakeup {
            Wakeup::Thread(condvar) => {
                condvar.notify_one();
            }
            Wakeup::Task(waker) => tasks.0.push(waker.clone()),
        }
    }

    /// Wakes the waiters whose range overlaps `written` and is now covered
    /// up to `end` (the known end of the resource, if any: nothing past it
    /// is awaited). A waiter whose range does not touch `written` cannot
    /// have been completed by it and is not even checked against the
    /// tracker.
    pub(crate) fn wake_covered(
        &self,
        written: &Range<u64>,
        tracker: &RangeTracker,
        end: Option<u64>,
    ) -> Wakeups {
        let mut tasks = Wakeups::default();
        for waiter in &self.entries {
            if Self::completed(waiter, written, tracker, end) {
                Self::wake_one(waiter, &mut tasks);
            }
        }
        tasks
    }

    fn completed(
        waiter: &Waiter,
        written: &Range<u64>,
        tracker: &RangeTracker,
        end: Option<u64>,
    ) -> bool {
        let touches = waiter.range.start < written.end && written.start < waiter.range.end;
        let needed = waiter.range.start..end.map_or(waiter.range.end, |n| waiter.range.end.min(n));
        touches && tracker.covers(&needed)
    }

    /// Wakes every waiter (a lifecycle change concerns them all).
    pub(crate) fn wake_all(&self) -> Wakeups {
        let mut tasks = Wakeups::default();
        for waiter in &self.entries {
            Self::wake_one(waiter, &mut tasks);
        }
        tasks
    }

    /// Marks every present waiter interrupted and wakes it.
    pub(crate) fn interrupt_all(&mut self) -> Wakeups {
        for waiter in &mut self.entries {
            waiter.interrupted = true;
        }
        self.wake_all()
    }

    /// Number of blocked waits.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many waiters `wake_covered` would wake (for tests).
    #[cfg(test)]
    fn covered_count(&self, written: &Range<u64>, tracker: &RangeTracker) -> usize {
        self.entries
            .iter()
            .filter(|w| Self::completed(w, written, tracker, None))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> Wakeup {
        Wakeup::Thread(Arc::new(Condvar::new()))
    }

    #[test]
    fn a_write_wakes_only_the_waiters_it_completes() {
        let mut waiters = Waiters::default();
        waiters.register(0..10, thread());
        waiters.register(10..20, thread());
        waiters.register(5..15, thread());
        let mut tracker = RangeTracker::new();
        tracker.insert(0..10);
        assert_eq!(waiters.covered_count(&(0..10), &tracker), 1);
        tracker.insert(10..15);
        // 5..15 is complete now; 10..20 is not, and 0..10 was not touched.
        assert_eq!(waiters.covered_count(&(10..15), &tracker), 1);
    }

    #[test]
    fn task_waiters_are_woken_after_the_lock() {
        let mut waiters = Waiters::default();
        waiters.register(0..10, Wakeup::Task(Waker::noop().clone()));
        waiters.register(0..10, thread());
        let mut tracker = RangeTracker::new();
        tracker.insert(0..10);
        let tasks = waiters.wake_covered(&(0..10), &tracker, None);
        assert_eq!(tasks.0.len(), 1);
        tasks.wake();
    }

    #[test]
    fn a_known_end_limits_what_a_waiter_needs() {
        let mut waiters = Waiters::default();
        waiters.register(2..50, Wakeup::Task(Waker::noop().clone()));
        let mut tracker = RangeTracker::new();
        tracker.insert(0..10);
        assert_eq!(waiters.wake_covered(&(4..10), &tracker, None).0.len(), 0);
        assert_eq!(
            waiters.wake_covered(&(4..10), &tracker, Some(10)).0.len(),
            1
        );
    }

    #[test]
    fn interrupt_marks_only_present_waiters() {
        let mut waiters = Waiters::default();
        let before = waiters.register(0..10, thread());
        waiters.interrupt_all().wake();
        let after = waiters.register(0..10, thread());
        assert!(waiters.is_interrupted(before));
        assert!(!waiters.is_interrupted(after));
    }

    #[test]
    fn deregister_forgets_the_waiter() {
        let mut waiters = Waiters::default();
        let a = waiters.register(0..10, thread());
        let b = waiters.register(0..10, thread());
        waiters.deregister(a);
        assert_eq!(waiters.len(), 1);
        waiters.deregister(a);
        assert_eq!(waiters.len(), 1);
        waiters.deregister(b);
        assert_eq!(waiters.len(), 0);
    }
}
