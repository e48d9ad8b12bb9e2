//! `CachedResource`: a handle of a cache entry's resource, holding the
//! lease (`shared.rs`) that keeps the entry from eviction while it lives.

use std::{
    future::Future,
    ops::Range,
    path::Path,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use storage_core::{ResourceExt, ResourceStatus, StorageResult, WaitOutcome};

use crate::shared::Lease;

/// A handle of one cache entry's resource, and a *lease* on the entry:
/// while any clone of it lives, the entry is never evicted. Every
/// `Cache::resource` call for the same key while a lease lives returns a
/// handle of the same resource (one writer), never `Locked`.
///
/// It implements [`ResourceExt`] by forwarding to the entry's
/// [`MmapResource`](storage_mmap::MmapResource); writes, commits and
/// replacements also report the entry's new size to the cache, which evicts
/// other entries when the budget is passed.
#[derive(Clone, Debug)]
pub struct CachedResource {
    pub(crate) lease: Arc<Lease>,
}

impl CachedResource {
    /// The entry's key.
    #[must_use]
    pub fn key(&self) -> Arc<str> {
        Arc::clone(&self.lease.release.key)
    }

    /// Reports the file's length to the cache if it changed.
    fn report_len(&self) {
        let len = self.lease.resource.driver().storage_len();
        let release = &self.lease.release;
        if release.reported_len.swap(len, Ordering::AcqRel) != len {
            release.shared.resized(release.slot, &self.lease.resource);
        }
    }

    /// Runs a commit-like `op` with the entry's marker kept true to what
    /// the file becomes.
    ///
    /// When `op` will change the file (`changes`: a replacement, or a
    /// commit of an active resource), the marker records `final_len` first,
    /// so a kill between the commit and the marker never leaves a committed
    /// file whose length the marker does not vouch for; after `op`, the
    /// marker is set to the length the file actually has (a `commit(None)`,
    /// or a commit the resource refused or made a no-op), or put back when
    /// `op` failed. A commit of a resource already committed is a no-op
    /// (the core's contract) and leaves the marker alone.
    fn committing(
        &self,
        final_len: Option<u64>,
        replaces: bool,
        op: impl FnOnce() -> StorageResult<()>,
    ) -> StorageResult<()> {
        let release = &self.lease.release;
        let resource = &self.lease.resource;
        let _one = release.commits.lock();
        let committed = |status| matches!(status, ResourceStatus::Committed { .. });
        if !replaces && committed(resource.status()) {
            return op();
        }
        let (shared, slot, key) = (&release.shared, release.slot, &*release.key);
        let before = shared.record_length(slot, key, final_len)?;
        let result = op();
        let after = if result.is_ok() && committed(resource.status()) {
            Some(resource.driver().storage_len())
        } else {
            before
        };
        // The commit (or its failure) stands either way; a marker that
        // cannot record it only leaves the next open's length check undone
        // (a longer file is then fetched afresh, a shorter one resumed).
        let _ = shared.record_length(slot, key, after);
        self.report_len();
        result
    }
}

// Every method forwarded: a new one cannot be forgotten.
#[deny(clippy::missing_trait_methods)]
impl ResourceExt for CachedResource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        self.lease.resource.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        let result = self.lease.resource.write_at(offset, data);
        self.report_len();
        result
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        self.lease.resource.wait_range(range)
    }

    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome> {
        self.lease.resource.wait_range_timeout(range, timeout)
    }

    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        self.lease.resource.wait_first_byte(range, timeout)
    }

    fn interrupt(&self) {
        self.lease.resource.interrupt();
    }

    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>> {
        self.lease.resource.wait_range_async(range)
    }

    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        self.committing(final_len, false, || self.lease.resource.commit(final_len))
    }

    fn fail(&self, reason: String) {
        self.lease.resource.fail(reason);
    }

    fn path(&self) -> Option<&Path> {
        self.lease.resource.path()
    }

    fn len(&self) -> Option<u64> {
        self.lease.resource.len()
    }

    fn is_empty(&self) -> bool {
        self.lease.resource.is_empty()
    }

    fn status(&self) -> ResourceStatus {
        self.lease.resource.status()
    }

    fn reactivate(&self) -> StorageResult<()> {
        let result = self.lease.resource.reactivate();
        self.report_len();
        result
    }

    fn contains_range(&self, range: Range<u64>) -> bool {
        self.lease.resource.contains_range(range)
    }

    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>> {
        self.lease.resource.next_gap(from, limit)
    }

    /// As the resource's own: kept in the entry's journal while it is
    /// partial, so a reopened partial entry knows its length offline.
    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        self.lease.resource.set_expected_len(len)
    }

    fn expected_len(&self) -> Option<u64> {
        self.lease.resource.expected_len()
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        self.lease.resource.read_into(buf)
    }

    /// `write_at(0, data)` then `commit(Some(len))`, both through the cache
    /// (so the budget and the marker see them).
    fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        self.write_at(0, data)?;
        self.commit(Some(data.len() as u64))
    }

    /// As the resource's own, and then the entry's marker is made durable
    /// too (once): a power loss after this returns keeps the entry — whole
    /// if it was committed, resumable with what was written otherwise.
    fn sync(&self) -> StorageResult<()> {
        self.lease.resource.sync()?;
        let release = &self.lease.release;
        release.shared.sync_marker(release.slot, &release.key)
    }

    fn demand(&self) -> storage_core::Demand {
        self.lease.resource.demand()
    }

    /// As the resource's own (kept in its journal while the entry is
    /// partial).
    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        self.lease.resource.set_validator(validator)
    }

    fn validator(&self) -> Option<String> {
        self.lease.resource.validator()
    }

    fn restart(&self) -> StorageResult<()> {
        let result = self.lease.resource.restart();
        self.report_len();
        result
    }

    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        self.committing(Some(data.len() as u64), true, || {
            self.lease.resource.replace_all(data, durable)
        })
    }
}
