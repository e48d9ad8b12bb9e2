//! The behaviour suite every driver must pass, for driver authors (feature
//! `testing`), and a reference driver (always here: the examples use it).
//!
//! A driver proves itself with one macro call in a test file: implement
//! [`Harness`] (how to open a fresh, empty, active resource, and how many
//! waiters are parked), then call [`behaviour_suite!`](crate::behaviour_suite).
//! It expands to one `#[test]` per line of the contract (ranges, writes,
//! reads, waits, commit, fail, reactivate, cancellation, observers, timed
//! and async waits, interrupts, the cursor, and a proptest of random
//! operations against a model). [`ReferenceDriver`] is a tiny driver that
//! passes it, to read as an example.
//!
//! # Examples
//!
//! A test file of the driver's crate (`tests/meets_the_contract.rs`, with
//! `storage-core = { version = "…", features = ["testing"] }` among the
//! dev-dependencies); here with the reference driver, as
//! `storage-core`'s own `tests/reference_driver_meets_the_contract.rs`
//! runs it:
//!
//! ```
//! use std::sync::Arc;
//!
//! use storage_core::{
//!     AvailabilityObserver, CancellationToken, Resource,
//!     testing::{Harness, ReferenceDriver, ReferenceResource},
//! };
//!
//! struct Reference;
//!
//! impl Harness for Reference {
//!     type R = ReferenceResource;
//!
//!     fn open(
//!         &self,
//!         cancel: CancellationToken,
//!         observer: Option<Arc<dyn AvailabilityObserver>>,
//!     ) -> ReferenceResource {
//!         Resource::<ReferenceDriver>::open_with_observer(cancel, (), observer).unwrap()
//!     }
//!
//!     fn waiters(&self, resource: &ReferenceResource) -> usize {
//!         resource.waiter_count()
//!     }
//! }
//!
//! // With the `testing` feature, at the top level of the test file:
//! // storage_core::behaviour_suite!(Reference);
//! # assert_eq!(Reference.waiters(&Reference.fresh()), 0);
//! ```

#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test support: panicking is how a check fails, errors are the waits'"
)]

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod bench;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod cases;
#[cfg(feature = "testing")]
mod downloads;
#[cfg(feature = "testing")]
mod ends;
#[cfg(feature = "testing")]
mod extensions;
#[cfg(feature = "testing")]
mod model;
#[cfg(feature = "testing")]
mod process;
mod reference;
#[cfg(feature = "testing")]
mod retries;
#[cfg(feature = "testing")]
mod waits;

use std::{
    ops::Range,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

#[cfg(feature = "testing")]
pub use process::{retry_locked, spawn_ready_child};
pub use reference::{ReferenceDriver, ReferenceResource};

use crate::{AvailabilityObserver, CancellationToken, ResourceExt, StorageResult, WaitOutcome};

/// How long any wait in a test may take before it counts as a deadlock.
pub const LIMIT: Duration = Duration::from_secs(10);

/// How the suite opens fresh resources of one driver.
pub trait Harness {
    /// The resource type under test.
    type R: ResourceExt + Clone;
    /// Opens an empty, active resource.
    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> Self::R;
    /// Threads blocked in `wait_range` on `resource` right now.
    fn waiters(&self, resource: &Self::R) -> usize;

    /// An empty, active resource with a fresh token and no observer.
    fn fresh(&self) -> Self::R {
        self.open(CancellationToken::new(), None)
    }
}

/// Runs `f` on its own thread and returns its result, failing the test if it
/// takes longer than [`LIMIT`] (a deadlock is a red test, not a hung run).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result within {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// A `wait_range` running on another thread.
pub struct PendingWait {
    rx: mpsc::Receiver<StorageResult<WaitOutcome>>,
}

impl PendingWait {
    /// Starts `resource.wait_range(range)` on a new thread.
    pub fn start<R: ResourceExt + Clone>(resource: &R, range: Range<u64>) -> Self {
        let resource = resource.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(resource.wait_range(range));
        });
        Self { rx }
    }

    /// The outcome, failing the test after [`LIMIT`].
    pub fn outcome(self) -> StorageResult<WaitOutcome> {
        self.rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("waiter did not return within {LIMIT:?}: {e}"))
    }

    /// Whether the waiter has returned yet (without waiting).
    #[must_use]
    pub fn has_returned(&self) -> bool {
        !matches!(self.rx.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

/// Blocks until `count()` reaches `expected`, failing after [`LIMIT`].
pub fn wait_for_count(what: &str, expected: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + LIMIT;
    while count() != expected {
        assert!(
            Instant::now() < deadline,
            "{what}: still {} after {LIMIT:?}, expected {expected}",
            count()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What an observer heard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// `on_write(range)`.
    Write(Range<u64>),
    /// `on_commit(final_len)`.
    Commit(u64),
    /// `on_wait(range)`: a reader blocked on `range`.
    Wait(Range<u64>),
}

/// Records every call; optionally calls back into a resource from inside the
/// hook to prove no lock of the resource is held there.
#[derive(Default)]
pub struct RecordingObserver {
    /// Every call, in order.
    pub heard: Mutex<Vec<Heard>>,
    /// Run at the start of each hook, if set.
    pub call_back: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl RecordingObserver {
    /// What was heard so far.
    #[must_use]
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().clone()
    }

    fn call_back(&self) {
        if let Some(call_back) = &*self.call_back.lock() {
            call_back();
        }
    }
}

impl AvailabilityObserver for RecordingObserver {
    fn on_commit(&self, final_len: u64) {
        self.call_back();
        self.heard.lock().push(Heard::Commit(final_len));
    }

    fn on_write(&self, range: Range<u64>) {
        self.call_back();
        self.heard.lock().push(Heard::Write(range));
    }

    fn on_wait(&self, range: Range<u64>) {
        self.call_back();
        self.heard.lock().push(Heard::Wait(range));
    }
}

/// Checks that every byte `resource` reports available within
/// `0..expected.len()` is `expected`'s; returns how many bytes that is.
///
/// # Panics
///
/// When a byte reported available is not `expected`'s, or cannot be read.
pub fn assert_available_bytes_are(resource: &impl ResourceExt, expected: &[u8], what: &str) -> u64 {
    let mut held = 0;
    for range in available(resource, expected.len() as u64) {
        assert_eq!(
            resource.wait_range(range.clone()).unwrap(),
            WaitOutcome::Ready,
            "{what}: {range:?}"
        );
        let start = usize::try_from(range.start).unwrap();
        let end = usize::try_from(range.end).unwrap();
        let mut buf = vec![0; end - start];
        assert_eq!(resource.read_at(range.start, &mut buf).unwrap(), buf.len());
        assert!(
            buf == expected[start..end],
            "{what}: bytes in {range:?} reported available are not the written ones"
        );
        held += range.end - range.start;
    }
    held
}

/// The available ranges of `resource` within `0..len`, in order.
pub fn available(resource: &impl ResourceExt, len: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < len {
        let gap = resource.next_gap(at, len).unwrap_or(len..len);
        if gap.start > at {
            ranges.push(at..gap.start);
        }
        at = gap.end;
    }
    ranges
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
#[must_use]
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A deterministic shuffle of `0..n` (Fisher–Yates on xorshift).
#[must_use]
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        order.swap(i, j);
    }
    order
}

/// Expands to one `#[test]` per behaviour of the contract, each run on
/// `$harness` (an expression of a type that implements
/// [`Harness`]).
///
/// Call it once at the top level of a test file (or in a module) of the
/// crate that holds the driver; it needs `proptest` nowhere but here.
#[cfg(feature = "testing")]
#[macro_export]
macro_rules! behaviour_suite {
    ($harness:expr) => {
        $crate::behaviour_suite!(@tests $harness;
            wait_rejects_an_inverted_range,
            empty_range_is_ready_at_once,
            overflowing_offsets_are_invalid_ranges_not_panics,
            write_makes_the_range_available_and_readable,
            observer_hears_writes_after_locks_are_released,
            writing_a_committed_resource_is_refused,
            read_stops_at_the_written_extent_while_active,
            read_stops_at_the_final_length_once_committed,
            read_does_not_wait,
            wait_is_ready_when_covered,
            wait_is_eof_at_or_past_the_committed_end,
            wait_is_ready_when_the_clipped_range_is_covered,
            committed_without_length_answers_eof_for_holes,
            commit_with_length_marks_everything_available,
            commit_with_length_cuts_later_bytes,
            commit_without_length_is_silent_and_keeps_len_unknown,
            second_commit_is_a_harmless_noop,
            fail_makes_later_operations_fail,
            fail_keeps_the_first_reason,
            reactivate_after_commit_keeps_the_bytes,
            reactivate_clears_a_failure,
            reactivate_of_an_active_resource_is_a_noop,
            cancel_makes_later_operations_cancelled,
            a_token_cancelled_before_open_cancels_the_resource,
            cancelling_a_parent_token_cancels_the_resource,
            status_priority_is_failed_committed_cancelled_active,
            next_gap_finds_the_first_hole_within_the_limit,
            contains_range_answers_for_exactly_the_written_bytes,
            is_empty_only_when_committed_with_zero_length,
            write_all_commits_and_read_into_replaces_the_buffer,
            blocked_waiter_wakes_on_the_write_that_covers_it,
            a_write_elsewhere_leaves_a_waiter_blocked,
            blocked_waiter_wakes_on_commit,
            blocked_waiter_wakes_on_fail,
            blocked_waiter_wakes_on_cancel,
            many_waiters_and_a_writer_in_random_order,
            operations_match_the_model,
            timeout_never_returns_early,
            timeout_gives_the_outcome_when_it_comes_first,
            interrupt_wakes_exactly_the_waiters_present,
            async_wait_works_under_tokio,
            async_wait_works_under_block_on,
            async_and_blocking_waiters_share_a_resource,
            dropping_a_pending_async_wait_deregisters_it,
            cursor_copies_a_resource_being_written,
            cursor_read_returns_what_is_there_without_waiting_for_more,
            cursor_ends_at_the_committed_end_and_refuses_seeks_past_it,
            cursor_errors_carry_the_storage_error,
            cursor_retries_interrupts_unless_told_to_report_them,
            cursor_timeout_holds_across_retried_interrupts,
            expected_len_is_known_before_commit_while_len_stays_none,
            expected_len_refuses_every_contradiction,
            expected_len_wakes_waiters_past_it_with_eof,
            expected_len_lasts_until_reactivate_or_replace,
            a_failure_after_a_commit_keeps_its_length,
            cursor_ends_at_the_expected_length_before_commit,
            on_wait_names_the_missing_range_of_a_blocked_reader,
            on_wait_runs_outside_the_locks_so_it_can_fetch_the_range_itself,
            a_panicking_on_wait_leaves_no_waiter_behind,
            demand_names_what_blocked_readers_wait_for,
            a_cursor_that_must_wait_asks_for_the_whole_read,
            a_validator_is_kept_and_a_restart_forgets_everything,
            a_restarted_download_commits_zeros_where_the_old_version_was,
            a_restarted_download_committed_short_then_longer_shows_no_old_byte,
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::cases::$name(&$harness);
            }
        )*
    };
}

/// Checks that the hot paths of `resource` (committed, or with `0..len`
/// written) allocate nothing: 1000 rounds of `read_at` of 4 KiB,
/// `wait_range` and `contains_range` of a covered range. `count` runs what
/// it is given and returns how many allocations it made (each driver's
/// test brings its own counting allocator).
pub fn assert_hot_paths_allocate_nothing(
    resource: &impl ResourceExt,
    len: u64,
    count: impl FnOnce(&mut dyn FnMut()) -> usize,
) {
    let mut buf = vec![0u8; 4096];
    // Warm up: thread-local registrations of the locks happen once per thread.
    resource.read_at(0, &mut buf).unwrap();
    resource.wait_range(0..1).unwrap();
    let allocations = count(&mut || {
        for i in 0..1000u64 {
            let at = (i * 7919) % (len - 4096);
            assert_eq!(resource.read_at(at, &mut buf).unwrap(), 4096);
            assert_eq!(
                resource.wait_range(at..at + 4096).unwrap(),
                WaitOutcome::Ready
            );
            assert!(resource.contains_range(at..at + 4096));
        }
    });
    assert_eq!(allocations, 0, "{allocations} allocations on the hot paths");
}
