//! Behaviours of a known end and of the demand signal, run against every
//! driver: the expected length, the cursor at that end, `on_wait`.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::{
    io::{self, Read, Seek, SeekFrom},
    ops::Range,
    pin::pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, Waker},
    thread,
};

use crate::{
    AvailabilityObserver, ResourceCursor, ResourceExt, ResourceStatus, StorageError, WaitOutcome,
};

use super::{Harness, Heard, PendingWait, RecordingObserver, wait_for_count, within};

fn observed<H: Harness>(h: &H) -> (H::R, Arc<RecordingObserver>) {
    let observer = Arc::new(RecordingObserver::default());
    let r = h.open(
        crate::CancellationToken::new(),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    );
    (r, observer)
}

pub fn expected_len_is_known_before_commit_while_len_stays_none<H: Harness>(h: &H) {
    let (r, observer) = observed(h);
    assert_eq!(r.expected_len(), None);
    r.set_expected_len(10).unwrap();
    assert_eq!(r.len(), None, "len() keeps the seed's meaning");
    assert_eq!(r.expected_len(), Some(10));
    assert_eq!(r.status(), ResourceStatus::Active);
    r.write_at(0, b"0123").unwrap();
    assert_eq!(r.next_gap(0, 100), Some(4..10), "next_gap stops at the end");
    assert_eq!(r.next_gap(20, 100), None);
    assert_eq!(r.wait_range(10..20).unwrap(), WaitOutcome::Eof);
    // A range crossing the end needs only its part before it.
    let crossing = PendingWait::start(&r, 2..50);
    wait_for_count("crossing waiter parked", 1, || h.waiters(&r));
    r.write_at(4, b"456789").unwrap();
    assert_eq!(crossing.outcome().unwrap(), WaitOutcome::Ready);
    // Everything there: commit(None) commits with the expected length.
    r.commit(None).unwrap();
    assert_eq!(r.len(), Some(10));
    assert_eq!(r.expected_len(), Some(10));
    assert_eq!(
        r.status(),
        ResourceStatus::Committed {
            final_len: Some(10)
        }
    );
    assert!(observer.heard().contains(&Heard::Commit(10)));
}

pub fn expected_len_refuses_every_contradiction<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"01234567").unwrap();
    assert!(matches!(
        r.set_expected_len(5),
        Err(StorageError::PastExpectedLen {
            expected: 5,
            end: 8
        })
    ));
    assert_eq!(r.expected_len(), None, "a refused length is not kept");
    r.set_expected_len(10).unwrap();
    r.set_expected_len(10).unwrap();
    assert!(matches!(
        r.set_expected_len(11),
        Err(StorageError::LengthMismatch {
            expected: 10,
            given: 11
        })
    ));
    assert!(matches!(
        r.write_at(8, b"abc"),
        Err(StorageError::PastExpectedLen {
            expected: 10,
            end: 11
        })
    ));
    assert!(matches!(
        r.write_at(11, b""),
        Err(StorageError::PastExpectedLen { .. })
    ));
    r.write_at(10, b"").unwrap();
    assert!(matches!(
        r.commit(Some(9)),
        Err(StorageError::LengthMismatch {
            expected: 10,
            given: 9
        })
    ));
    assert!(matches!(
        r.commit(None),
        Err(StorageError::Incomplete {
            expected: 10,
            missing: Range { start: 8, end: 10 }
        })
    ));
    assert_eq!(
        r.status(),
        ResourceStatus::Active,
        "refused commits commit nothing"
    );
    assert_eq!(r.len(), None);
    r.write_at(8, b"89").unwrap();
    r.commit(Some(10)).unwrap();
    // Committed: the same length is a no-op, another is refused.
    r.set_expected_len(10).unwrap();
    assert!(matches!(
        r.set_expected_len(12),
        Err(StorageError::LengthMismatch {
            expected: 10,
            given: 12
        })
    ));
    let unknown = h.fresh();
    unknown.commit(None).unwrap();
    assert!(matches!(
        unknown.set_expected_len(3),
        Err(StorageError::Committed)
    ));
    let failed = h.fresh();
    failed.fail("gone".into());
    assert!(matches!(
        failed.set_expected_len(3),
        Err(StorageError::Failed(_))
    ));
    let cancel = crate::CancellationToken::new();
    let cancelled = h.open(cancel.clone(), None);
    cancel.cancel();
    assert!(matches!(
        cancelled.set_expected_len(3),
        Err(StorageError::Cancelled)
    ));
    // The largest length is a length like any other.
    let huge = h.fresh();
    huge.set_expected_len(u64::MAX).unwrap();
    assert_eq!(
        huge.wait_range(u64::MAX..u64::MAX).unwrap(),
        WaitOutcome::Ready
    );
    assert_eq!(huge.next_gap(0, u64::MAX), Some(0..u64::MAX));
}

pub fn expected_len_wakes_waiters_past_it_with_eof<H: Harness>(h: &H) {
    let r = h.fresh();
    let past = PendingWait::start(&r, 20..30);
    let before = PendingWait::start(&r, 0..5);
    wait_for_count("waiters parked", 2, || h.waiters(&r));
    r.set_expected_len(10).unwrap();
    assert_eq!(past.outcome().unwrap(), WaitOutcome::Eof);
    assert!(!before.has_returned(), "a waiter before the end woke");
    r.write_at(0, b"01234").unwrap();
    assert_eq!(before.outcome().unwrap(), WaitOutcome::Ready);
}

pub fn expected_len_lasts_until_reactivate_or_replace<H: Harness>(h: &H) {
    let r = h.fresh();
    r.set_expected_len(4).unwrap();
    r.reactivate().unwrap();
    assert_eq!(
        r.expected_len(),
        Some(4),
        "reactivate of an active one is a no-op"
    );
    r.write_at(0, b"abcd").unwrap();
    r.commit(None).unwrap();
    r.reactivate().unwrap();
    assert_eq!(r.expected_len(), None, "reactivate clears it");
    r.write_at(4, b"ef").unwrap();
    r.commit(Some(6)).unwrap();
    assert_eq!(r.len(), Some(6));

    let replaced = h.fresh();
    replaced.set_expected_len(100).unwrap();
    replaced.replace_all(b"short", false).unwrap();
    assert_eq!(replaced.expected_len(), Some(5));
    replaced.reactivate().unwrap();
    assert_eq!(replaced.expected_len(), None);
    replaced.commit(Some(5)).unwrap();

    let failed = h.fresh();
    failed.set_expected_len(8).unwrap();
    failed.fail("reset".into());
    failed.reactivate().unwrap();
    assert_eq!(failed.expected_len(), None, "fail + reactivate resets it");
    failed.set_expected_len(9).unwrap();
}

/// A failure after a commit keeps the committed length as `expected_len`,
/// also where the commit reopens the published file (as `AtomicChunked`'s
/// does); `reactivate` clears it.
pub fn a_failure_after_a_commit_keeps_its_length<H: Harness>(h: &H) {
    let expected = h.fresh();
    expected.set_expected_len(42).unwrap();
    expected.commit(Some(42)).unwrap();
    expected.fail("after the commit".into());
    assert_eq!(expected.expected_len(), Some(42));
    let plain = h.fresh();
    plain.write_at(0, b"0123456789").unwrap();
    plain.commit(Some(10)).unwrap();
    plain.fail("after the commit".into());
    assert_eq!(plain.expected_len(), Some(10));
    plain.reactivate().unwrap();
    assert_eq!(plain.expected_len(), None, "reactivate clears it");
}

pub fn cursor_ends_at_the_expected_length_before_commit<H: Harness>(h: &H) {
    let r = h.fresh();
    r.set_expected_len(10).unwrap();
    r.write_at(0, b"0123456789").unwrap();
    let reader = r.clone();
    let (tail, at_end, refused, position) = within("cursor at the expected end", move || {
        let mut cursor = ResourceCursor::new(reader);
        cursor.seek(SeekFrom::End(-4)).unwrap();
        let mut tail = Vec::new();
        // Ends without a commit: the expected length is the end.
        cursor.read_to_end(&mut tail).unwrap();
        let at_end = cursor.read(&mut [0; 4]).unwrap();
        let refused = cursor.seek(SeekFrom::Start(11)).unwrap_err().kind();
        (tail, at_end, refused, cursor.position())
    });
    assert_eq!(tail, b"6789");
    assert_eq!(at_end, 0);
    assert_eq!(refused, io::ErrorKind::InvalidInput);
    assert_eq!(position, 10);
    assert_eq!(r.len(), None);
}

pub fn on_wait_names_the_missing_range_of_a_blocked_reader<H: Harness>(h: &H) {
    let (r, observer) = observed(h);
    r.write_at(0, b"0123").unwrap();
    // Answered at once: no demand.
    assert_eq!(r.wait_range(0..4).unwrap(), WaitOutcome::Ready);
    r.set_expected_len(20).unwrap();
    assert_eq!(r.wait_range(30..40).unwrap(), WaitOutcome::Eof);
    assert_eq!(observer.heard(), vec![Heard::Write(0..4)]);
    // Blocked: from the first missing byte, clipped to the expected end.
    let blocked = PendingWait::start(&r, 2..50);
    wait_for_count("waiter parked", 1, || h.waiters(&r));
    wait_for_count("demand heard", 2, || observer.heard().len());
    assert_eq!(observer.heard()[1], Heard::Wait(4..20));
    // Async waits signal on their first pending poll, once.
    {
        let mut future = pin!(r.wait_range_async(6..8));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(observer.heard()[2..], [Heard::Wait(6..8)]);
    r.write_at(4, &[0; 16]).unwrap();
    assert_eq!(blocked.outcome().unwrap(), WaitOutcome::Ready);
    // A timed wait signals too, once, however long it sleeps.
    let (timed, timed_observer) = observed(h);
    let result = timed.wait_range_timeout(5..9, std::time::Duration::from_millis(5));
    assert!(matches!(result, Err(StorageError::TimedOut)));
    assert_eq!(timed_observer.heard(), vec![Heard::Wait(5..9)]);
}

/// An observer that serves every demand itself, from a source it holds:
/// the downloader that fetches what the reader waits for.
struct ServesDemand<R> {
    resource: OnceLock<R>,
    source: Vec<u8>,
}

impl<R: ResourceExt> AvailabilityObserver for ServesDemand<R> {
    fn on_commit(&self, _final_len: u64) {}

    fn on_write(&self, _range: Range<u64>) {}

    fn on_wait(&self, range: Range<u64>) {
        let resource = self.resource.get().expect("set before any wait");
        let index = |at: u64| usize::try_from(at).expect("within the source");
        let (start, end) = (index(range.start), index(range.end));
        // Inside the hook, into the resource: no lock of it is held.
        resource
            .write_at(range.start, &self.source[start..end])
            .unwrap();
    }
}

pub fn on_wait_runs_outside_the_locks_so_it_can_fetch_the_range_itself<H: Harness>(h: &H) {
    let source = super::pattern(3, 4096);
    let observer = Arc::new(ServesDemand {
        resource: OnceLock::new(),
        source: source.clone(),
    });
    let r = h.open(
        crate::CancellationToken::new(),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    );
    assert!(observer.resource.set(r.clone()).is_ok());
    r.set_expected_len(4096).unwrap();
    // Each wait is served by its own demand, written before the waiter
    // sleeps: a lost wake-up would hang here (and fail after the limit).
    let reader = r.clone();
    let copied = within("reads served on demand", move || {
        let mut cursor = ResourceCursor::new(reader);
        cursor.seek(SeekFrom::Start(3000)).unwrap();
        let mut tail = Vec::new();
        cursor.read_to_end(&mut tail).unwrap();
        cursor.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        cursor.read_to_end(&mut all).unwrap();
        (tail, all)
    });
    assert_eq!(copied.0, source[3000..]);
    assert_eq!(copied.1, source);
    assert_eq!(h.waiters(&r), 0);
    let mut future = pin!(r.wait_range_async(4096..4100));
    assert!(matches!(
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(WaitOutcome::Eof))
    ));
}

/// An observer whose demand hook panics.
struct PanicsOnWait;

impl AvailabilityObserver for PanicsOnWait {
    fn on_commit(&self, _final_len: u64) {}

    fn on_write(&self, _range: Range<u64>) {}

    fn on_wait(&self, _range: Range<u64>) {
        panic!("observer bug");
    }
}

pub fn a_panicking_on_wait_leaves_no_waiter_behind<H: Harness>(h: &H) {
    let r = h.open(
        crate::CancellationToken::new(),
        Some(Arc::new(PanicsOnWait)),
    );
    let waiter = {
        let r = r.clone();
        thread::spawn(move || r.wait_range(0..4))
    };
    let joined = within("a waiter whose observer panics", move || waiter.join());
    assert!(joined.is_err(), "the observer's panic reaches the waiter");
    assert_eq!(h.waiters(&r), 0);
    {
        let future = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut future = pin!(r.wait_range_async(0..4));
            let _ = future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
        }));
        assert!(future.is_err());
    }
    assert_eq!(h.waiters(&r), 0);
    // The resource still works.
    r.write_at(0, b"data").unwrap();
    assert_eq!(r.wait_range(0..4).unwrap(), WaitOutcome::Ready);
}
