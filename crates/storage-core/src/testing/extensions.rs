//! Cases for timed and async waits, interrupts, and the `Read + Seek`
//! cursor, run against every driver.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::{
    io::{self, Read, Seek, SeekFrom},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread,
    time::{Duration, Instant},
};

use crate::{
    CancellationToken, Interrupts, ResourceCursor, ResourceExt, ResourceStatus, StorageError,
    WaitOutcome,
};

use super::{Harness, LIMIT, PendingWait, pattern, shuffled, wait_for_count, within};

pub fn timeout_never_returns_early<H: Harness>(h: &H) {
    let r = h.fresh();
    for millis in [0, 20, 60] {
        let timeout = Duration::from_millis(millis);
        let started = Instant::now();
        let result = r.wait_range_timeout(0..1, timeout);
        let elapsed = started.elapsed();
        assert!(matches!(result, Err(StorageError::TimedOut)), "{result:?}");
        assert!(
            elapsed >= timeout,
            "returned after {elapsed:?}, before {timeout:?}"
        );
        assert!(elapsed < timeout + LIMIT / 2, "returned after {elapsed:?}");
    }
    assert_eq!(h.waiters(&r), 0, "a timed-out waiter stays registered");
}

pub fn timeout_gives_the_outcome_when_it_comes_first<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abc").unwrap();
    assert_eq!(
        r.wait_range_timeout(0..3, Duration::ZERO).unwrap(),
        WaitOutcome::Ready
    );
    let waiter = {
        let r = r.clone();
        thread::spawn(move || r.wait_range_timeout(3..6, LIMIT * 3))
    };
    wait_for_count("timed waiter parked", 1, || h.waiters(&r));
    r.write_at(3, b"def").unwrap();
    assert_eq!(
        within("timed waiter", move || waiter.join().unwrap()).unwrap(),
        WaitOutcome::Ready
    );
    let failing = {
        let r = r.clone();
        thread::spawn(move || r.wait_range_timeout(10..20, LIMIT * 3))
    };
    wait_for_count("timed waiter parked", 1, || h.waiters(&r));
    r.fail("gone".into());
    let result = within("timed waiter", move || failing.join().unwrap());
    assert!(matches!(result, Err(StorageError::Failed(_))), "{result:?}");
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn interrupt_wakes_exactly_the_waiters_present<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"kept").unwrap();
    let first = PendingWait::start(&r, 100..200);
    let second = PendingWait::start(&r, 300..400);
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    let mut pending = r.wait_range_async(500..600);
    assert!(
        pending
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    wait_for_count("three waiters", 3, || h.waiters(&r));

    r.interrupt();
    assert_eq!(first.outcome().unwrap(), WaitOutcome::Interrupted);
    assert_eq!(second.outcome().unwrap(), WaitOutcome::Interrupted);
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "the async waiter was not woken once"
    );
    let polled = pending.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(
        matches!(polled, Poll::Ready(Ok(WaitOutcome::Interrupted))),
        "{polled:?}"
    );
    drop(pending);

    // A wait begun afterwards blocks as usual; status and data are unchanged.
    let later = PendingWait::start(&r, 100..104);
    wait_for_count("later waiter parked", 1, || h.waiters(&r));
    assert!(!later.has_returned());
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(r.contains_range(0..4));
    r.write_at(100, b"more").unwrap();
    assert_eq!(later.outcome().unwrap(), WaitOutcome::Ready);
}

pub fn async_wait_works_under_tokio<H: Harness>(h: &H) {
    let cancel = CancellationToken::new();
    let r = h.open(cancel.clone(), None);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let spawn = |range: std::ops::Range<u64>| {
        let r = r.clone();
        runtime.spawn(async move { r.wait_range_async(range).await })
    };
    let ready = spawn(0..4);
    let eof = spawn(100..200);
    wait_for_count("two async waiters", 2, || h.waiters(&r));
    r.write_at(0, b"abcd").unwrap();
    r.commit(Some(4)).unwrap();
    let outcomes = runtime.block_on(async {
        tokio::time::timeout(LIMIT, async { (ready.await.unwrap(), eof.await.unwrap()) }).await
    });
    let (ready, eof) = outcomes.expect("async waits did not finish in time");
    assert_eq!(ready.unwrap(), WaitOutcome::Ready);
    assert_eq!(eof.unwrap(), WaitOutcome::Eof);

    r.reactivate().unwrap();
    let cancelled = spawn(10..20);
    wait_for_count("async waiter", 1, || h.waiters(&r));
    cancel.cancel();
    let result = runtime.block_on(async { tokio::time::timeout(LIMIT, cancelled).await });
    let result = result
        .expect("cancelled async wait did not finish")
        .unwrap();
    assert!(matches!(result, Err(StorageError::Cancelled)), "{result:?}");
}

pub fn async_wait_works_under_block_on<H: Harness>(h: &H) {
    let r = h.fresh();
    let waiter = {
        let r = r.clone();
        thread::spawn(move || futures_executor::block_on(r.wait_range_async(0..3)))
    };
    let failed = {
        let r = r.clone();
        thread::spawn(move || futures_executor::block_on(r.wait_range_async(50..60)))
    };
    wait_for_count("two async waiters", 2, || h.waiters(&r));
    r.write_at(0, b"xyz").unwrap();
    assert_eq!(
        within("block_on waiter", move || waiter.join().unwrap()).unwrap(),
        WaitOutcome::Ready
    );
    r.fail("stop".into());
    let result = within("block_on waiter", move || failed.join().unwrap());
    assert!(matches!(result, Err(StorageError::Failed(_))), "{result:?}");
}

pub fn async_and_blocking_waiters_share_a_resource<H: Harness>(h: &H) {
    let r = h.fresh();
    let blocking = PendingWait::start(&r, 0..8);
    let asynchronous = {
        let r = r.clone();
        thread::spawn(move || futures_executor::block_on(r.wait_range_async(0..8)))
    };
    wait_for_count("both parked", 2, || h.waiters(&r));
    r.write_at(0, &pattern(3, 8)).unwrap();
    assert_eq!(blocking.outcome().unwrap(), WaitOutcome::Ready);
    assert_eq!(
        within("async waiter", move || asynchronous.join().unwrap()).unwrap(),
        WaitOutcome::Ready
    );
}

pub fn dropping_a_pending_async_wait_deregisters_it<H: Harness>(h: &H) {
    let r = h.fresh();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    let mut pending = r.wait_range_async(0..4);
    assert!(
        pending
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(h.waiters(&r), 1);
    drop(pending);
    assert_eq!(h.waiters(&r), 0);
    r.write_at(0, b"data").unwrap();
    r.commit(Some(4)).unwrap();
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "a dropped task was woken"
    );
    // Invalid ranges answer at once, without registering.
    #[allow(clippy::reversed_empty_ranges, reason = "the case under test")]
    let inverted = 9..3;
    let polled = r
        .wait_range_async(inverted)
        .as_mut()
        .poll(&mut Context::from_waker(&waker));
    assert!(matches!(
        polled,
        Poll::Ready(Err(StorageError::InvalidRange { .. }))
    ));
}

pub fn cursor_copies_a_resource_being_written<H: Harness>(h: &H) {
    const CHUNK: usize = 3000;
    let r = h.fresh();
    let source = Arc::new(pattern(17, CHUNK * 97 + 123));
    let writer = {
        let (r, source) = (r.clone(), Arc::clone(&source));
        thread::spawn(move || {
            let chunks = source.len().div_ceil(CHUNK);
            for i in shuffled(chunks, 5) {
                let end = ((i + 1) * CHUNK).min(source.len());
                r.write_at((i * CHUNK) as u64, &source[i * CHUNK..end])
                    .unwrap();
            }
            r.commit(Some(source.len() as u64)).unwrap();
        })
    };
    let reader = r.clone();
    let copied = within("cursor copy", move || {
        let mut out = Vec::new();
        io::copy(&mut ResourceCursor::new(reader), &mut out).unwrap();
        out
    });
    writer.join().unwrap();
    assert!(
        copied == *source,
        "the cursor's copy differs from the source"
    );
}

pub fn cursor_read_returns_what_is_there_without_waiting_for_more<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"0123456789").unwrap();
    r.write_at(20, b"later").unwrap();
    let cursor_resource = r.clone();
    let (first, second) = within("cursor read", move || {
        let mut cursor = ResourceCursor::new(cursor_resource);
        let mut buf = [0; 100];
        let first = cursor.read(&mut buf).unwrap();
        cursor.seek(SeekFrom::Start(22)).unwrap();
        let second = cursor.read(&mut buf).unwrap();
        (first, (second, buf[..second].to_vec()))
    });
    assert_eq!(first, 10);
    assert_eq!(second, (3, b"ter".to_vec()));
}

pub fn cursor_ends_at_the_committed_end_and_refuses_seeks_past_it<H: Harness>(h: &H) {
    let r = h.fresh();
    let mut cursor = ResourceCursor::new(r.clone());
    // Unknown length: SeekFrom::End fails at once, never waits.
    let err = cursor.seek(SeekFrom::End(0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    r.write_all(b"0123456789").unwrap();
    assert_eq!(cursor.seek(SeekFrom::End(-4)).unwrap(), 6);
    let mut rest = Vec::new();
    cursor.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"6789");
    assert_eq!(cursor.read(&mut [0; 8]).unwrap(), 0);
    // Past the end: refused, and the position stays.
    for past in [
        SeekFrom::Current(990),
        SeekFrom::End(1),
        SeekFrom::Start(11),
    ] {
        let err = cursor.seek(past).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{past:?}");
        assert_eq!(cursor.position(), 10);
    }
    assert_eq!(cursor.seek(SeekFrom::Current(-5)).unwrap(), 5);
    assert_eq!(
        cursor.seek(SeekFrom::Current(-6)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let none = h.fresh();
    none.commit(None).unwrap();
    let mut cursor = ResourceCursor::new(none);
    let err = cursor.seek(SeekFrom::End(0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    // No known end: any position, and a read there is the end at once.
    assert_eq!(cursor.seek(SeekFrom::Start(1 << 40)).unwrap(), 1 << 40);
    assert_eq!(cursor.read(&mut [0; 8]).unwrap(), 0);
    assert_eq!(cursor.seek(SeekFrom::Start(u64::MAX)).unwrap(), u64::MAX);
    assert_eq!(cursor.read(&mut [0; 8]).unwrap(), 0);
    assert_eq!(
        cursor.seek(SeekFrom::Current(1)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput,
        "past u64::MAX"
    );
}

fn inner(error: &io::Error) -> &StorageError {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<StorageError>())
        .unwrap_or_else(|| panic!("no StorageError inside {error:?}"))
}

pub fn cursor_errors_carry_the_storage_error<H: Harness>(h: &H) {
    let r = h.fresh();
    let timed = ResourceCursor::with_timeout(r.clone(), Duration::from_millis(10));
    let err = within("timed cursor", move || {
        timed.clone().read(&mut [0; 4]).unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(matches!(inner(&err), StorageError::TimedOut));

    let blocked = {
        let r = r.clone();
        thread::spawn(move || {
            ResourceCursor::new(r)
                .interrupts(Interrupts::Report)
                .read(&mut [0; 4])
        })
    };
    wait_for_count("cursor parked", 1, || h.waiters(&r));
    r.interrupt();
    let err = within("interrupted cursor", move || blocked.join().unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);

    r.fail("decoder gave up".into());
    let err = ResourceCursor::new(r).read(&mut [0; 4]).unwrap_err();
    assert!(matches!(inner(&err), StorageError::Failed(why) if why == "decoder gave up"));

    let cancel = CancellationToken::new();
    let cancelled = h.open(cancel.clone(), None);
    cancel.cancel();
    let err = ResourceCursor::new(cancelled)
        .read(&mut [0; 4])
        .unwrap_err();
    assert!(matches!(inner(&err), StorageError::Cancelled));
}
