//! `StorageResource`: one resource type over every enabled driver, each
//! method forwarded to the resource inside (the enum and its variants are
//! declared in `lib.rs`, with the rest of each driver's wiring).

use std::{future::Future, ops::Range, path::Path, pin::Pin, time::Duration};

use crate::{ResourceExt, ResourceStatus, StorageResource, StorageResult, WaitOutcome, dispatch};

impl StorageResource {
    /// How many threads are blocked in `wait_range` right now.
    #[must_use]
    pub fn waiter_count(&self) -> usize {
        dispatch!(self, inner => inner.waiter_count())
    }
}

// Every method forwarded: a new one cannot be forgotten.
#[deny(clippy::missing_trait_methods)]
impl ResourceExt for StorageResource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        dispatch!(self, inner => inner.read_at(offset, buf))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        dispatch!(self, inner => inner.write_at(offset, data))
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        dispatch!(self, inner => inner.wait_range(range))
    }

    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome> {
        dispatch!(self, inner => inner.wait_range_timeout(range, timeout))
    }

    fn interrupt(&self) {
        dispatch!(self, inner => inner.interrupt());
    }

    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>> {
        dispatch!(self, inner => inner.wait_range_async(range))
    }

    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        dispatch!(self, inner => inner.commit(final_len))
    }

    fn fail(&self, reason: String) {
        dispatch!(self, inner => inner.fail(reason));
    }

    fn path(&self) -> Option<&Path> {
        dispatch!(self, inner => inner.path())
    }

    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        dispatch!(self, inner => inner.set_expected_len(len))
    }

    fn expected_len(&self) -> Option<u64> {
        dispatch!(self, inner => inner.expected_len())
    }

    fn len(&self) -> Option<u64> {
        dispatch!(self, inner => inner.len())
    }

    fn is_empty(&self) -> bool {
        dispatch!(self, inner => inner.is_empty())
    }

    fn status(&self) -> ResourceStatus {
        dispatch!(self, inner => inner.status())
    }

    fn reactivate(&self) -> StorageResult<()> {
        dispatch!(self, inner => inner.reactivate())
    }

    fn contains_range(&self, range: Range<u64>) -> bool {
        dispatch!(self, inner => inner.contains_range(range))
    }

    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>> {
        dispatch!(self, inner => inner.next_gap(from, limit))
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        dispatch!(self, inner => inner.read_into(buf))
    }

    fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        dispatch!(self, inner => inner.write_all(data))
    }

    fn sync(&self) -> StorageResult<()> {
        dispatch!(self, inner => inner.sync())
    }

    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        dispatch!(self, inner => inner.replace_all(data, durable))
    }

    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        dispatch!(self, inner => inner.wait_first_byte(range, timeout))
    }

    fn demand(&self) -> crate::Demand {
        dispatch!(self, inner => inner.demand())
    }

    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        dispatch!(self, inner => inner.set_validator(validator))
    }

    fn validator(&self) -> Option<String> {
        dispatch!(self, inner => inner.validator())
    }

    fn restart(&self) -> StorageResult<()> {
        dispatch!(self, inner => inner.restart())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn storage_resource_is_a_shareable_handle() {
        const _: () = assert_send_sync::<StorageResource>();
        #[cfg(feature = "mem")]
        const _: () = assert_send_sync::<crate::MemResource>();
        #[cfg(feature = "mmap")]
        const _: () = assert_send_sync::<crate::MmapResource>();
        #[cfg(feature = "stream-download")]
        const _: () = assert_send_sync::<crate::ResourceStorageProvider<StorageResource>>();
    }

    #[cfg(feature = "mmap")]
    #[test]
    fn atomic_chunked_is_a_shareable_handle() {
        const _: () = assert_send_sync::<crate::AtomicChunked<crate::MmapResource>>();
        const _: () = assert_send_sync::<crate::AtomicChunked<crate::StorageResource>>();
    }
}
