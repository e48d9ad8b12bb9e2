//! Cases for what a downloader relies on: the demand subscription, reads
//! that wait for what they asked, the validator, and `restart`.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::{
    io::{Read, Seek, SeekFrom},
    time::{Duration, Instant},
};

use crate::{ResourceCursor, ResourceExt, StorageError, WaitOutcome};

use super::{Harness, PendingWait, within};

/// The next demanded range of `demand`, failing the test after the limit.
fn next_demand(demand: &mut crate::Demand) -> std::ops::Range<u64> {
    let deadline = Instant::now() + super::LIMIT;
    loop {
        if let Some(range) = demand.try_next() {
            return range;
        }
        assert!(Instant::now() < deadline, "no demand within the limit");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn demand_names_what_blocked_readers_wait_for<H: Harness>(h: &H) {
    let r = h.fresh();
    r.set_expected_len(10_000).unwrap();
    r.write_at(0, &[1; 1000]).unwrap();
    // A reader blocked before the subscription: seeded.
    let early = PendingWait::start(&r, 500..3000);
    super::wait_for_count("the early reader", 1, || h.waiters(&r));
    let mut demand = r.demand();
    assert_eq!(next_demand(&mut demand), 1000..3000);
    // A reader that blocks later: heard; clipped to the expected length.
    let late = PendingWait::start(&r, 9000..12_000);
    assert_eq!(next_demand(&mut demand), 9000..10_000);
    // A wait answered at once is no demand.
    assert_eq!(r.wait_range(0..1000).unwrap(), WaitOutcome::Ready);
    assert_eq!(demand.try_next(), None);
    // Two subscribers both hear; a dropped one is gone.
    let mut other = r.demand();
    drop(demand);
    let third = PendingWait::start(&r, 5000..5001);
    // Seeded with the two waits under way, then the new one.
    let mut heard: Vec<_> = (0..3).map(|_| next_demand(&mut other)).collect();
    heard.sort_by_key(|range| range.start);
    assert_eq!(heard, [1000..3000, 5000..5001, 9000..10_000]);
    r.write_at(1000, &[2; 9000]).unwrap();
    for wait in [early, late, third] {
        assert_eq!(wait.outcome().unwrap(), WaitOutcome::Ready);
    }
}

pub fn a_cursor_that_must_wait_asks_for_the_whole_read<H: Harness>(h: &H) {
    let r = h.fresh();
    let mut demand = r.demand();
    let reader = r.clone();
    let read = std::thread::spawn(move || {
        let mut cursor = ResourceCursor::new(reader);
        cursor.seek(SeekFrom::Start(4000)).unwrap();
        let mut buf = [0; 100];
        let n = cursor.read(&mut buf).unwrap();
        (n, buf)
    });
    // The demand says how much the read needs, not one byte...
    assert_eq!(next_demand(&mut demand), 4000..4100);
    // ...and the read takes what arrives first.
    r.write_at(4000, &[5; 10]).unwrap();
    let (n, buf) = within("the read", move || read.join().unwrap());
    assert_eq!(n, 10);
    assert_eq!(&buf[..10], &[5; 10]);
    // A wait for the first byte of a range, hinted, directly.
    let mut demand = r.demand();
    let waiting = {
        let r = r.clone();
        std::thread::spawn(move || r.wait_first_byte(9000..9500, Some(super::LIMIT)))
    };
    assert_eq!(next_demand(&mut demand), 9000..9500);
    r.write_at(9000, &[1]).unwrap();
    assert_eq!(
        within("the first byte", move || waiting.join().unwrap()).unwrap(),
        WaitOutcome::Ready
    );
}

/// A restarted download's commit shows zeros, never the old version's
/// bytes, in the holes the new version left.
pub fn a_restarted_download_commits_zeros_where_the_old_version_was<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, b"old version").unwrap();
    r.restart().unwrap();
    // The new version writes its head and tail; the middle stays a hole.
    r.write_at(0, b"new").unwrap();
    r.write_at(8, b"end").unwrap();
    r.commit(Some(11)).unwrap();
    let mut all = Vec::new();
    r.read_into(&mut all).unwrap();
    assert_eq!(
        all, b"new\0\0\0\0\0end",
        "a byte of the old version in a hole"
    );
}

/// After a restart, `commit(None)` ends at what was written since, and a
/// later longer commit shows zeros past it, never the old version.
pub fn a_restarted_download_committed_short_then_longer_shows_no_old_byte<H: Harness>(h: &H) {
    let r = h.fresh();
    r.write_at(0, &[0xAB; 4096]).unwrap();
    r.restart().unwrap();
    r.write_at(0, b"0123456789").unwrap();
    r.commit(None).unwrap();
    let mut all = Vec::new();
    r.read_into(&mut all).unwrap();
    assert_eq!(all, b"0123456789", "commit(None) after a restart");
    r.reactivate().unwrap();
    r.commit(Some(2048)).unwrap();
    r.read_into(&mut all).unwrap();
    assert_eq!(&all[..10], b"0123456789");
    assert!(
        all[10..].iter().all(|&b| b == 0),
        "a byte of the old version past the new one's end"
    );
}

/// A validator is kept with the resource; a restart forgets the ranges,
/// the expected length and the validator, and wakes no reader early.
pub fn a_validator_is_kept_and_a_restart_forgets_everything<H: Harness>(h: &H) {
    let r = h.fresh();
    assert_eq!(r.validator(), None);
    r.set_validator("\"v1\"").unwrap();
    r.set_expected_len(8).unwrap();
    r.write_at(0, b"0123").unwrap();
    assert_eq!(r.validator().as_deref(), Some("\"v1\""));
    r.set_validator("\"v2\"").unwrap();
    assert_eq!(r.validator().as_deref(), Some("\"v2\""));
    // A reader waits across the restart, for the new bytes.
    let blocked = PendingWait::start(&r, 4..8);
    super::wait_for_count("the blocked reader", 1, || h.waiters(&r));
    r.restart().unwrap();
    assert!(!r.contains_range(0..1), "a byte of the old version");
    assert_eq!(r.expected_len(), None);
    assert_eq!(r.validator(), None);
    let mut buf = [9; 4];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 0, "nothing to read");
    r.write_at(0, b"abcdefgh").unwrap();
    assert_eq!(blocked.outcome().unwrap(), WaitOutcome::Ready);
    r.commit(Some(8)).unwrap();
    let mut all = Vec::new();
    r.read_into(&mut all).unwrap();
    assert_eq!(all, b"abcdefgh");
    // Committed: refused; failed: refused.
    assert!(matches!(r.restart(), Err(StorageError::Committed)));
    let failed = h.fresh();
    failed.fail("gone".into());
    assert!(matches!(failed.restart(), Err(StorageError::Failed(_))));
    assert!(matches!(
        failed.set_validator("x"),
        Err(StorageError::Failed(_))
    ));
}
