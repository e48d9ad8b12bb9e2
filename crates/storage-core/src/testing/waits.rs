//! The suite's cases about blocked waiters: who wakes on what.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::ops::Range;

use super::{Harness, PendingWait, pattern, shuffled, wait_for_count};
use crate::{CancellationToken, ResourceExt, StorageError, WaitOutcome};

pub fn blocked_waiter_wakes_on_the_write_that_covers_it<H: Harness>(h: &H) {
    let r = h.fresh();
    let waiter = PendingWait::start(&r, 0..8);
    wait_for_count("waiter parked", 1, || h.waiters(&r));
    r.write_at(0, b"abcd").unwrap();
    assert!(!waiter.has_returned(), "woke before its range was covered");
    r.write_at(4, b"efgh").unwrap();
    assert_eq!(waiter.outcome().unwrap(), WaitOutcome::Ready);
    wait_for_count("waiter deregistered", 0, || h.waiters(&r));
}

pub fn a_write_elsewhere_leaves_a_waiter_blocked<H: Harness>(h: &H) {
    let r = h.fresh();
    let near = PendingWait::start(&r, 0..10);
    let far = PendingWait::start(&r, 100..110);
    wait_for_count("both parked", 2, || h.waiters(&r));
    r.write_at(0, &[7; 10]).unwrap();
    assert_eq!(near.outcome().unwrap(), WaitOutcome::Ready);
    wait_for_count("only the far waiter left", 1, || h.waiters(&r));
    assert!(!far.has_returned());
    r.write_at(100, &[8; 10]).unwrap();
    assert_eq!(far.outcome().unwrap(), WaitOutcome::Ready);
}

pub fn blocked_waiter_wakes_on_commit<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abc").unwrap();
    let past_end = PendingWait::start(&r, 10..20);
    let straddling = PendingWait::start(&r, 2..20);
    wait_for_count("both parked", 2, || h.waiters(&r));
    r.commit(Some(3)).unwrap();
    assert_eq!(past_end.outcome().unwrap(), WaitOutcome::Eof);
    assert_eq!(straddling.outcome().unwrap(), WaitOutcome::Ready);
}

pub fn blocked_waiter_wakes_on_fail<H: Harness>(h: &H) {
    let r = h.fresh();
    let waiter = PendingWait::start(&r, 0..100);
    wait_for_count("waiter parked", 1, || h.waiters(&r));
    r.fail("upstream error".into());
    assert!(matches!(waiter.outcome(), Err(StorageError::Failed(why)) if why == "upstream error"));
}

pub fn blocked_waiter_wakes_on_cancel<H: Harness>(h: &H) {
    let cancel = CancellationToken::new();
    let r = h.open(cancel.clone(), None);
    let waiters: Vec<_> = (0..4)
        .map(|i| PendingWait::start(&r, i * 10..i * 10 + 5))
        .collect();
    wait_for_count("all parked", 4, || h.waiters(&r));
    cancel.cancel();
    for waiter in waiters {
        assert!(matches!(waiter.outcome(), Err(StorageError::Cancelled)));
    }
}

pub fn many_waiters_and_a_writer_in_random_order<H: Harness>(h: &H) {
    const CHUNK: usize = 4096;
    const CHUNKS: usize = 64;
    let r = h.fresh();
    let source = pattern(42, CHUNK * CHUNKS);
    // Waiters on ranges of various sizes and alignments, some spanning chunks.
    let ranges: Vec<Range<u64>> = (0..12u64)
        .map(|i| {
            let start = i * 20_000 + i * 7;
            start..(start + 1 + i * 3000).min((CHUNK * CHUNKS) as u64)
        })
        .collect();
    let readers: Vec<_> = ranges
        .iter()
        .map(|range| {
            let resource = r.clone();
            let range = range.clone();
            std::thread::spawn(move || {
                let outcome = resource.wait_range(range.clone());
                let mut buf = vec![0; usize::try_from(range.end - range.start).unwrap()];
                let n = resource.read_at(range.start, &mut buf).unwrap();
                (outcome, n, buf)
            })
        })
        .collect();
    wait_for_count("all parked", ranges.len(), || h.waiters(&r));
    for chunk in shuffled(CHUNKS, 7) {
        let at = chunk * CHUNK;
        r.write_at(at as u64, &source[at..at + CHUNK]).unwrap();
    }
    for (reader, range) in readers.into_iter().zip(ranges) {
        let (outcome, n, buf) = super::within("reader", move || reader.join().unwrap());
        assert_eq!(outcome.unwrap(), WaitOutcome::Ready);
        let (start, end) = (
            usize::try_from(range.start).unwrap(),
            usize::try_from(range.end).unwrap(),
        );
        assert_eq!(n, end - start);
        assert_eq!(buf, &source[start..end]);
    }
}
