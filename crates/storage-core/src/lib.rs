//! The core of the `storage` family: traits, range tracking, wait logic.
//!
//! **Who this crate is for.** Driver authors depend on `storage-core` to
//! implement [`Driver`] for a new backing store. Applications depend on the
//! `storage` facade, which re-exports everything here together with the
//! memory and mmap drivers.
//!
//! A [`Resource<D>`] wraps a driver and owns everything that is the same for
//! every store: which byte ranges have landed ([`RangeTracker`]), the
//! lifecycle (active, committed, failed, cancelled), and waits that block a
//! reader until the bytes it needs are written. Waits are event-driven: each
//! blocked waiter sleeps on its own condvar and is woken by the write that
//! completes its range, by a lifecycle change, or at once by cancellation of
//! the resource's [`CancellationToken`] — no polling, no timer.
//!
//! This crate holds no driver, does no file I/O and contains no `unsafe`.
//!
//! # Feature flags
//!
//! - `testing`: the behaviour suite a driver runs with one macro call
//!   (`behaviour_suite!`, see [`testing`]). For tests (a dev-dependency);
//!   it pulls `proptest`, `tokio` and `futures-executor`. The module's
//!   helpers and its reference driver are there without the feature.
//! - `symphonia`: [`ResourceCursor`] implements symphonia's `MediaSource`
//!   (symphonia-core 0.5), so a decoder reads a resource still downloading.
//! - `tokio`: `AsyncResourceCursor`, tokio's `AsyncRead + AsyncSeek` over a
//!   resource, waiting through `wait_range_async` (no blocked runtime
//!   thread).

#![forbid(unsafe_code)]

mod cancel;
mod cursor;
mod demand;
mod driver;
mod error;
mod ext;
mod resource;
pub mod testing;
mod tracker;
mod waiters;

#[cfg(feature = "tokio")]
pub use cursor::AsyncResourceCursor;
pub use cursor::{Interrupts, ResourceCursor};
pub use demand::Demand;
pub use driver::{DefaultOpen, DownloadRecord, Driver, DriverIo, DriverState, WriteKind};
pub use error::{IoFailure, StorageError, StorageResult};
pub use ext::{AvailabilityObserver, ResourceExt, ResourceStatus, WaitOutcome};
pub use rangemap::RangeSet;
pub use resource::Resource;
pub use tokio_util::sync::CancellationToken;
pub use tracker::RangeTracker;

#[cfg(test)]
mod tests {
    use super::*;

    const fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        const _: () = assert_send_sync::<StorageError>();
        const _: () = assert_send_sync::<RangeTracker>();
        const _: () = assert_send_sync::<Box<dyn ResourceExt>>();
        const _: () = assert_send_sync::<std::sync::Arc<dyn AvailabilityObserver>>();
        const _: () = assert_send_sync::<ResourceCursor<testing::ReferenceResource>>();
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn the_async_cursor_can_move_between_threads() {
        const fn assert_send<T: Send>() {}
        const _: () = assert_send::<AsyncResourceCursor<testing::ReferenceResource>>();
    }
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
