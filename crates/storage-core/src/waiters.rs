//! `Waiters`: the threads blocked in `wait_range`, each parked on its own condvar.

use std::{ops::Range, sync::Arc};

use parking_lot::Condvar;

use crate::tracker::RangeTracker;

/// One blocked wait: the range it needs and the condvar it sleeps on.
#[derive(Debug)]
struct Waiter {
    id: u64,
    range: Range<u64>,
    wake: Arc<Condvar>,
}

/// The registry of blocked waits of one resource.
///
/// Lives inside the resource's state mutex, and every waiter sleeps on that
/// mutex through its own condvar. That lets a write wake exactly the waiters
/// whose range it completes (no thundering herd), while lifecycle events
/// (commit, fail, reactivate, cancel) wake them all.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    next_id: u64,
    entries: Vec<Waiter>,
}

/// The handle a blocked wait keeps to sleep and to deregister.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) id: u64,
    pub(crate) wake: Arc<Condvar>,
}

impl Waiters {
    /// Adds a waiter for `range`.
    pub(crate) fn register(&mut self, range: Range<u64>) -> Registration {
        let id = self.next_id;
        self.next_id += 1;
        let wake = Arc::new(Condvar::new());
        self.entries.push(Waiter {
            id,
            range,
            wake: Arc::clone(&wake),
        });
        Registration { id, wake }
    }

    /// Removes the waiter `id` (no-op when it is gone).
    pub(crate) fn deregister(&mut self, id: u64) {
        if let Some(index) = self.entries.iter().position(|w| w.id == id) {
            self.entries.swap_remove(index);
        }
    }

    /// Wakes the waiters whose range overlaps `written` and is now covered.
    /// A waiter whose range does not touch `written` cannot have been
    /// completed by it and is not even checked against the tracker.
    /// Returns how many were woken.
    pub(crate) fn wake_covered(&self, written: &Range<u64>, tracker: &RangeTracker) -> usize {
        let mut woken = 0;
        for waiter in &self.entries {
            let touches = waiter.range.start < written.end && written.start < waiter.range.end;
            if touches && tracker.covers(&waiter.range) {
                waiter.wake.notify_one();
                woken += 1;
            }
        }
        woken
    }

    /// Wakes every waiter (a lifecycle change concerns them all).
    pub(crate) fn wake_all(&self) {
        for waiter in &self.entries {
            waiter.wake.notify_one();
        }
    }

    /// Number of blocked waits.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_wakes_only_the_waiters_it_completes() {
        let mut waiters = Waiters::default();
        let _a = waiters.register(0..10);
        let _b = waiters.register(10..20);
        let _c = waiters.register(5..15);
        let mut tracker = RangeTracker::new();
        tracker.insert(0..10);
        assert_eq!(waiters.wake_covered(&(0..10), &tracker), 1);
        tracker.insert(10..15);
        // c (5..15) is complete now; b (10..20) is not.
        assert_eq!(waiters.wake_covered(&(10..15), &tracker), 1);
    }

    #[test]
    fn deregister_forgets_the_waiter() {
        let mut waiters = Waiters::default();
        let a = waiters.register(0..10);
        let b = waiters.register(0..10);
        waiters.deregister(a.id);
        assert_eq!(waiters.len(), 1);
        waiters.deregister(a.id);
        assert_eq!(waiters.len(), 1);
        waiters.deregister(b.id);
        assert_eq!(waiters.len(), 0);
    }
}
