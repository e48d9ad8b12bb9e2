//! The demand signal for downloaders: what the readers of a resource are
//! blocked on, delivered to any number of subscribers ([`Demand`]) without
//! an observer installed at open.

use std::{
    collections::VecDeque,
    future::Future,
    ops::Range,
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use parking_lot::Mutex;

/// How many demanded ranges a subscriber keeps before the oldest go (a
/// downloader that does not listen loses old demand, never memory).
const QUEUE: usize = 64;

/// One subscriber's queue.
#[derive(Debug, Default)]
struct Queue {
    ranges: VecDeque<Range<u64>>,
    waker: Option<Waker>,
}

/// The subscribers of one resource. Cheap when there are none: a waiting
/// reader looks at one atomic counter.
#[derive(Debug, Default)]
pub(crate) struct DemandBoard {
    subscribers: AtomicUsize,
    /// Guards the queues; held for a push or a pop, never across a call out.
    queues: Mutex<Vec<(u64, Queue)>>,
    next_id: Mutex<u64>,
}

impl DemandBoard {
    /// Whether anyone listens (a waiter then computes its missing range).
    pub(crate) fn listened(&self) -> bool {
        self.subscribers.load(Ordering::Acquire) > 0
    }

    /// A reader blocks on `range` (its missing part): every subscriber
    /// hears of it. Wakes them after the lock is released.
    pub(crate) fn announce(&self, range: &Range<u64>) {
        if !self.listened() || range.is_empty() {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut queues = self.queues.lock();
            queues
                .iter_mut()
                .filter_map(|(_, queue)| {
                    if queue.ranges.len() == QUEUE {
                        queue.ranges.pop_front();
                    }
                    queue.ranges.push_back(range.clone());
                    queue.waker.take()
                })
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// A new subscriber, its queue seeded with `now` (the ranges readers
    /// are blocked on at this instant).
    pub(crate) fn subscribe(self: &Arc<Self>, now: impl IntoIterator<Item = Range<u64>>) -> Demand {
        let id = {
            let mut next = self.next_id.lock();
            *next += 1;
            *next
        };
        let mut queue = Queue::default();
        queue
            .ranges
            .extend(now.into_iter().filter(|r| !r.is_empty()).take(QUEUE));
        self.queues.lock().push((id, queue));
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        Demand {
            board: Arc::downgrade(self),
            id,
        }
    }

    fn unsubscribe(&self, id: u64) {
        let mut queues = self.queues.lock();
        if let Some(at) = queues.iter().position(|(each, _)| *each == id) {
            queues.swap_remove(at);
            self.subscribers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn poll_next(&self, id: u64, cx: &mut Context<'_>) -> Poll<Range<u64>> {
        let mut queues = self.queues.lock();
        let Some((_, queue)) = queues.iter_mut().find(|(each, _)| *each == id) else {
            return Poll::Pending;
        };
        if let Some(range) = queue.ranges.pop_front() {
            return Poll::Ready(range);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn try_next(&self, id: u64) -> Option<Range<u64>> {
        let mut queues = self.queues.lock();
        let (_, queue) = queues.iter_mut().find(|(each, _)| *each == id)?;
        queue.ranges.pop_front()
    }
}

/// A subscription to what a resource's readers wait for: each time a
/// reader blocks (`wait_range`, `wait_range_timeout`, `wait_range_async`,
/// a cursor's read), the missing part of the range it waits for — from its
/// first missing byte to its end, clipped to the known length — is queued
/// here. A downloader fetches that first. Obtained with
/// [`ResourceExt::demand`](crate::ResourceExt::demand), seeded with what
/// readers already wait for; unsubscribes when dropped. Keeps the newest
/// 64 ranges if nobody takes them.
///
/// Runtime-agnostic: [`wanted`](Self::wanted) is a plain future.
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, ResourceExt, testing::ReferenceResource};
///
/// let resource = ReferenceResource::new(CancellationToken::new());
/// let mut demand = resource.demand();
/// let reader = resource.clone();
/// let waiting = std::thread::spawn(move || reader.wait_range(1000..2000));
/// let wanted = futures_executor::block_on(demand.wanted());
/// assert_eq!(wanted, 1000..2000);
/// resource.write_at(1000, &[7; 1000])?;
/// waiting.join().unwrap()?;
/// # Ok::<(), storage_core::StorageError>(())
/// ```
#[derive(Debug)]
#[must_use = "a demand that is not listened to tells nothing"]
pub struct Demand {
    board: Weak<DemandBoard>,
    id: u64,
}

impl Demand {
    /// A subscription that never yields: for resources without readers to
    /// speak of (the default of `ResourceExt::demand`).
    pub fn none() -> Self {
        Self {
            board: Weak::new(),
            id: 0,
        }
    }

    /// The next demanded range, waiting for one (forever for
    /// [`none`](Self::none), or once the resource is gone).
    pub fn wanted(&mut self) -> impl Future<Output = Range<u64>> + Send + '_ {
        NextDemand { demand: self }
    }

    /// The next demanded range, if one is queued.
    pub fn try_next(&mut self) -> Option<Range<u64>> {
        self.board.upgrade()?.try_next(self.id)
    }

    /// Polls for the next demanded range (what [`wanted`](Self::wanted) does).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Range<u64>> {
        match self.board.upgrade() {
            Some(board) => board.poll_next(self.id, cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Demand {
    fn drop(&mut self) {
        if let Some(board) = self.board.upgrade() {
            board.unsubscribe(self.id);
        }
    }
}

struct NextDemand<'a> {
    demand: &'a mut Demand,
}

impl Future for NextDemand<'_> {
    type Output = Range<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Range<u64>> {
        self.get_mut().demand.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_hears_every_demand_and_a_dropped_one_is_gone() {
        let board = Arc::new(DemandBoard::default());
        assert!(!board.listened());
        let mut first = board.subscribe(std::iter::once(5..9));
        let mut second = board.subscribe(Vec::new());
        board.announce(&(100..200));
        assert_eq!(first.try_next(), Some(5..9));
        assert_eq!(first.try_next(), Some(100..200));
        assert_eq!(second.try_next(), Some(100..200));
        assert_eq!(second.try_next(), None);
        drop(first);
        assert!(board.listened());
        drop(second);
        assert!(!board.listened());
        // Nobody listens: nothing kept.
        board.announce(&(1..2));
        let mut third = board.subscribe(Vec::new());
        assert_eq!(third.try_next(), None);
    }

    #[test]
    fn a_subscriber_that_does_not_listen_keeps_only_the_newest() {
        let board = Arc::new(DemandBoard::default());
        let mut demand = board.subscribe(Vec::new());
        for i in 0..(QUEUE as u64 + 10) {
            board.announce(&(i..i + 1));
        }
        assert_eq!(demand.try_next(), Some(10..11));
        assert_eq!(Demand::none().try_next(), None);
    }
}
