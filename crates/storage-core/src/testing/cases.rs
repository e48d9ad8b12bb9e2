//! The behaviour suite's cases: one function per line of the contract's
//! "Semantics", run against every driver through a [`Harness`]. Called by
//! [`behaviour_suite!`](crate::behaviour_suite); not a stable API.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::sync::Arc;

use crate::{
    AvailabilityObserver, CancellationToken, ResourceExt, ResourceStatus, StorageError, WaitOutcome,
};

use super::{Harness, Heard, PendingWait, RecordingObserver, pattern, wait_for_count};

pub use super::{downloads::*, ends::*, extensions::*, retries::*};

fn status_is<H: Harness>(resource: &H::R, expected: &ResourceStatus) {
    assert_eq!(&resource.status(), expected);
}

pub fn wait_rejects_an_inverted_range<H: Harness>(h: &H) {
    let r = h.fresh();
    #[allow(clippy::reversed_empty_ranges, reason = "the case under test")]
    let inverted = 10..5;
    assert!(matches!(
        r.wait_range(inverted),
        Err(StorageError::InvalidRange { start: 10, end: 5 })
    ));
}

pub fn empty_range_is_ready_at_once<H: Harness>(h: &H) {
    let r = h.fresh();
    assert_eq!(r.wait_range(7..7).unwrap(), WaitOutcome::Ready);
    assert_eq!(
        r.wait_range(u64::MAX..u64::MAX).unwrap(),
        WaitOutcome::Ready
    );
}

pub fn overflowing_offsets_are_invalid_ranges_not_panics<H: Harness>(h: &H) {
    let r = h.fresh();
    let err = r.write_at(u64::MAX - 1, b"abc").unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidRange { start, end } if start == u64::MAX - 1 && end == u64::MAX),
        "{err}"
    );
    assert!(!r.contains_range(u64::MAX - 1..u64::MAX));
    let mut buf = [0; 4];
    assert_eq!(r.read_at(u64::MAX, &mut buf).unwrap(), 0);
    assert_eq!(r.next_gap(u64::MAX, u64::MAX), None);
    status_is::<H>(&r, &ResourceStatus::Active);
}

pub fn write_makes_the_range_available_and_readable<H: Harness>(h: &H) {
    let r = h.fresh();
    let data = pattern(1, 300);
    r.write_at(100, &data).unwrap();
    assert!(r.contains_range(100..400));
    assert!(!r.contains_range(99..400));
    let mut buf = vec![0; 300];
    assert_eq!(r.read_at(100, &mut buf).unwrap(), 300);
    assert_eq!(buf, data);
}

pub fn observer_hears_writes_after_locks_are_released<H: Harness>(h: &H) {
    let observer = Arc::new(RecordingObserver::default());
    let r = h.open(
        CancellationToken::new(),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    );
    // Calling back into the resource from the hook deadlocks if a lock is held.
    let inner = r.clone();
    *observer.call_back.lock() = Some(Box::new(move || {
        let _ = inner.status();
        let _ = inner.contains_range(0..1);
        let _ = inner.next_gap(0, 10);
        let _ = inner.len();
    }));
    let writer = r.clone();
    super::within("write with a re-entrant observer", move || {
        writer.write_at(0, b"abcd").unwrap();
        writer.write_at(10, b"ef").unwrap();
        writer.commit(Some(12)).unwrap();
    });
    assert_eq!(
        observer.heard(),
        vec![Heard::Write(0..4), Heard::Write(10..12), Heard::Commit(12)]
    );
}

pub fn writing_a_committed_resource_is_refused<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"data").unwrap();
    r.commit(Some(4)).unwrap();
    let err = r.write_at(0, b"nope").unwrap_err();
    assert!(matches!(err, StorageError::Committed), "{err}");
    let mut buf = [0; 4];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"data");
}

pub fn read_stops_at_the_written_extent_while_active<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abcd").unwrap();
    let mut buf = [0xAA; 100];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 4);
    assert_eq!(r.read_at(4, &mut buf).unwrap(), 0);
    assert_eq!(r.read_at(1000, &mut buf).unwrap(), 0);
    // A hole below the extent reads as zeros without waiting.
    r.write_at(8, b"xy").unwrap();
    assert_eq!(r.read_at(2, &mut buf).unwrap(), 8);
    assert_eq!(&buf[..8], b"cd\0\0\0\0xy");
}

pub fn read_stops_at_the_final_length_once_committed<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"0123456789").unwrap();
    r.commit(Some(6)).unwrap();
    let mut buf = [0; 10];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"012345");
    assert_eq!(r.read_at(6, &mut buf).unwrap(), 0);
}

pub fn read_does_not_wait<H: Harness>(h: &H) {
    let r = h.fresh();
    let reader = r.clone();
    let n = super::within("read_at on an empty active resource", move || {
        reader.read_at(0, &mut [0; 16])
    });
    assert_eq!(n.unwrap(), 0);
}

pub fn wait_is_ready_when_covered<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, &[1; 64]).unwrap();
    r.write_at(64, &[2; 64]).unwrap();
    assert_eq!(r.wait_range(0..128).unwrap(), WaitOutcome::Ready);
    assert_eq!(r.wait_range(10..20).unwrap(), WaitOutcome::Ready);
}

pub fn wait_is_eof_at_or_past_the_committed_end<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"short").unwrap();
    r.commit(Some(5)).unwrap();
    assert_eq!(r.wait_range(5..10).unwrap(), WaitOutcome::Eof);
    assert_eq!(r.wait_range(500..501).unwrap(), WaitOutcome::Eof);
}

pub fn wait_is_ready_when_the_clipped_range_is_covered<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"0123456789").unwrap();
    r.commit(Some(10)).unwrap();
    assert_eq!(r.wait_range(5..20).unwrap(), WaitOutcome::Ready);
    assert_eq!(r.wait_range(0..u64::MAX).unwrap(), WaitOutcome::Ready);
}

pub fn committed_without_length_answers_eof_for_holes<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abcd").unwrap();
    r.write_at(8, b"efgh").unwrap();
    r.commit(None).unwrap();
    assert_eq!(r.wait_range(0..4).unwrap(), WaitOutcome::Ready);
    assert_eq!(r.wait_range(4..8).unwrap(), WaitOutcome::Eof);
    assert_eq!(r.wait_range(8..12).unwrap(), WaitOutcome::Ready);
    assert_eq!(r.wait_range(10..20).unwrap(), WaitOutcome::Eof);
    let mut buf = [0; 20];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 12);
}

pub fn commit_with_length_marks_everything_available<H: Harness>(h: &H) {
    let observer = Arc::new(RecordingObserver::default());
    let r = h.open(
        CancellationToken::new(),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    );
    r.write_at(0, b"ab").unwrap();
    r.commit(Some(8)).unwrap();
    assert!(r.contains_range(0..8));
    assert!(!r.contains_range(0..9));
    assert_eq!(r.len(), Some(8));
    status_is::<H>(&r, &ResourceStatus::Committed { final_len: Some(8) });
    let mut buf = [0xFF; 8];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 8);
    assert_eq!(&buf, b"ab\0\0\0\0\0\0");
    assert_eq!(observer.heard(), vec![Heard::Write(0..2), Heard::Commit(8)]);
}

pub fn commit_with_length_cuts_later_bytes<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"0123456789").unwrap();
    r.commit(Some(4)).unwrap();
    assert!(r.contains_range(0..4));
    assert!(!r.contains_range(4..10));
    r.reactivate().unwrap();
    // The cut bytes are gone, not resurrected by reactivate.
    assert!(!r.contains_range(4..5));
    let mut buf = [0; 10];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 4);
}

pub fn commit_without_length_is_silent_and_keeps_len_unknown<H: Harness>(h: &H) {
    let observer = Arc::new(RecordingObserver::default());
    let r = h.open(
        CancellationToken::new(),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    );
    r.write_at(0, b"abc").unwrap();
    r.commit(None).unwrap();
    assert_eq!(r.len(), None);
    status_is::<H>(&r, &ResourceStatus::Committed { final_len: None });
    assert_eq!(observer.heard(), vec![Heard::Write(0..3)]);
    let mut buf = [0; 8];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 3);
}

pub fn second_commit_is_a_harmless_noop<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abcdef").unwrap();
    r.commit(Some(6)).unwrap();
    r.commit(Some(6)).unwrap();
    r.commit(Some(2)).unwrap();
    r.commit(None).unwrap();
    assert_eq!(r.len(), Some(6));
    let mut buf = Vec::new();
    assert_eq!(r.read_into(&mut buf).unwrap(), 6);
    assert_eq!(buf, b"abcdef");
}

pub fn fail_makes_later_operations_fail<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abcd").unwrap();
    r.fail("network gone".into());
    let failed =
        |e: StorageError| matches!(e, StorageError::Failed(ref why) if why == "network gone");
    assert!(failed(r.read_at(0, &mut [0; 4]).unwrap_err()));
    assert!(failed(r.write_at(4, b"x").unwrap_err()));
    assert!(failed(r.commit(Some(4)).unwrap_err()));
    assert!(failed(r.wait_range(0..4).unwrap_err()));
    assert!(failed(r.wait_range(0..0).unwrap_err()));
    assert!(failed(r.read_into(&mut Vec::new()).unwrap_err()));
    status_is::<H>(&r, &ResourceStatus::Failed("network gone".into()));
}

pub fn fail_keeps_the_first_reason<H: Harness>(h: &H) {
    let r = h.fresh();
    r.fail("first".into());
    r.fail("second".into());
    status_is::<H>(&r, &ResourceStatus::Failed("first".into()));
}

pub fn reactivate_after_commit_keeps_the_bytes<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"hello").unwrap();
    r.commit(Some(5)).unwrap();
    r.reactivate().unwrap();
    status_is::<H>(&r, &ResourceStatus::Active);
    assert_eq!(r.len(), None);
    assert!(r.contains_range(0..5));
    r.write_at(5, b" world").unwrap();
    r.commit(Some(11)).unwrap();
    let mut buf = Vec::new();
    r.read_into(&mut buf).unwrap();
    assert_eq!(buf, b"hello world");
}

pub fn reactivate_clears_a_failure<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abc").unwrap();
    r.fail("transient".into());
    r.reactivate().unwrap();
    status_is::<H>(&r, &ResourceStatus::Active);
    assert!(r.contains_range(0..3));
    r.write_at(3, b"d").unwrap();
    assert_eq!(r.wait_range(0..4).unwrap(), WaitOutcome::Ready);
}

pub fn reactivate_of_an_active_resource_is_a_noop<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"abc").unwrap();
    r.reactivate().unwrap();
    status_is::<H>(&r, &ResourceStatus::Active);
    assert!(r.contains_range(0..3));
}

pub fn cancel_makes_later_operations_cancelled<H: Harness>(h: &H) {
    let cancel = CancellationToken::new();
    let r = h.open(cancel.clone(), None);
    r.write_at(0, b"abcd").unwrap();
    cancel.cancel();
    let cancelled = |e: StorageError| matches!(e, StorageError::Cancelled);
    assert!(cancelled(r.read_at(0, &mut [0; 4]).unwrap_err()));
    assert!(cancelled(r.write_at(4, b"x").unwrap_err()));
    assert!(cancelled(r.commit(Some(4)).unwrap_err()));
    assert!(cancelled(r.wait_range(0..4).unwrap_err()));
    assert!(cancelled(r.reactivate().unwrap_err()));
    status_is::<H>(&r, &ResourceStatus::Cancelled);
}

pub fn a_token_cancelled_before_open_cancels_the_resource<H: Harness>(h: &H) {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = h.open(cancel, None);
    status_is::<H>(&r, &ResourceStatus::Cancelled);
    assert!(matches!(r.wait_range(0..1), Err(StorageError::Cancelled)));
}

pub fn cancelling_a_parent_token_cancels_the_resource<H: Harness>(h: &H) {
    let parent = CancellationToken::new();
    let r = h.open(parent.child_token(), None);
    let waiter = PendingWait::start(&r, 0..1);
    wait_for_count("waiter parked", 1, || h.waiters(&r));
    parent.cancel();
    assert!(matches!(waiter.outcome(), Err(StorageError::Cancelled)));
}

pub fn status_priority_is_failed_committed_cancelled_active<H: Harness>(h: &H) {
    let cancel = CancellationToken::new();
    let committed = h.open(cancel.clone(), None);
    committed.commit(Some(0)).unwrap();
    let active = h.open(cancel.clone(), None);
    let failed = h.open(cancel.clone(), None);
    failed.fail("boom".into());
    cancel.cancel();
    status_is::<H>(
        &committed,
        &ResourceStatus::Committed { final_len: Some(0) },
    );
    status_is::<H>(&active, &ResourceStatus::Cancelled);
    status_is::<H>(&failed, &ResourceStatus::Failed("boom".into()));
    let both = h.fresh();
    both.commit(Some(3)).unwrap();
    both.fail("late".into());
    status_is::<H>(&both, &ResourceStatus::Failed("late".into()));
}

pub fn next_gap_finds_the_first_hole_within_the_limit<H: Harness>(h: &H) {
    let r = h.fresh();
    assert_eq!(r.next_gap(0, 100), Some(0..100));
    r.write_at(0, &[1; 10]).unwrap();
    r.write_at(20, &[1; 10]).unwrap();
    assert_eq!(r.next_gap(0, 100), Some(10..20));
    assert_eq!(r.next_gap(12, 100), Some(12..20));
    assert_eq!(r.next_gap(20, 100), Some(30..100));
    assert_eq!(r.next_gap(0, 15), Some(10..15));
    assert_eq!(r.next_gap(0, 10), None);
    assert_eq!(r.next_gap(50, 40), None);
    r.write_at(10, &[1; 10]).unwrap();
    r.commit(Some(40)).unwrap();
    assert_eq!(r.next_gap(0, 1000), None);
}

pub fn contains_range_answers_for_exactly_the_written_bytes<H: Harness>(h: &H) {
    let r = h.fresh();
    assert!(r.contains_range(5..5));
    r.write_at(10, &[1; 10]).unwrap();
    assert!(r.contains_range(10..20));
    assert!(r.contains_range(12..13));
    assert!(!r.contains_range(9..11));
    assert!(!r.contains_range(19..21));
    #[allow(clippy::reversed_empty_ranges, reason = "the case under test")]
    let inverted = 15..12;
    assert!(!r.contains_range(inverted));
}

pub fn is_empty_only_when_committed_with_zero_length<H: Harness>(h: &H) {
    let r = h.fresh();
    assert!(!r.is_empty());
    r.commit(Some(0)).unwrap();
    assert!(r.is_empty());
    let none = h.fresh();
    none.commit(None).unwrap();
    assert!(!none.is_empty());
}

pub fn write_all_commits_and_read_into_replaces_the_buffer<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_all(b"#EXTM3U\n").unwrap();
    assert_eq!(r.len(), Some(8));
    let mut buf = b"old contents that are longer".to_vec();
    assert_eq!(r.read_into(&mut buf).unwrap(), 8);
    assert_eq!(buf, b"#EXTM3U\n");
}

pub use super::model::operations_match_the_model;
pub use super::waits::*;
