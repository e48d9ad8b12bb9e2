//! `Atomic<R>`: whole-file replacement that a crash or a reader never sees half done.

use std::{future::Future, ops::Range, path::Path, pin::Pin, time::Duration};

use crate::{ResourceExt, ResourceStatus, StorageResult, WaitOutcome};

/// A decorator that makes [`write_all`](ResourceExt::write_all) atomic, for
/// small whole files (playlists, keys, indexes).
///
/// `write_all` is the inner resource's own whole replacement
/// ([`ResourceExt::replace_all`]): on a file, the driver writes the new
/// contents to a temporary file beside it and renames it over the path, so a
/// crash at any instant leaves the old file or the new one, whole, and no
/// temporary file is left behind on success or on error; in memory, the
/// new bytes are swapped in at once. Readers see the old contents or the
/// new. Replacements of one resource are serialised: the last one wins,
/// whole. [`write_all_durable`](Self::write_all_durable) also syncs the file
/// before the rename and the directory after it, so the replacement
/// survives a power loss.
///
/// A failed resource refuses (`Err(Failed)`, the file untouched); call
/// `reactivate` first to clear the failure. A read-only or cancelled one
/// refuses too. Every other method delegates to the inner resource.
///
/// # Examples
///
/// ```
/// use storage::{Atomic, CancellationToken, MemResource, ResourceExt};
///
/// let playlist = Atomic::new(MemResource::new(CancellationToken::new()));
/// playlist.write_all(b"#EXTM3U\n#EXT-X-VERSION:3\n")?;
/// playlist.write_all(b"#EXTM3U\n#EXT-X-VERSION:7\n")?;
/// let mut text = Vec::new();
/// playlist.read_into(&mut text)?;
/// assert!(text.ends_with(b"7\n"));
/// # Ok::<(), storage::StorageError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Atomic<R: ResourceExt> {
    inner: R,
}

impl<R: ResourceExt> Atomic<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The wrapped resource.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Unwraps the resource.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// As [`write_all`](ResourceExt::write_all), and durable: on a file, the
    /// temporary file is synced before the rename and its directory after,
    /// so once this returns the new contents survive a power loss.
    ///
    /// # Errors
    ///
    /// As `write_all`; `Io` when a sync fails.
    pub fn write_all_durable(&self, data: &[u8]) -> StorageResult<()> {
        self.inner.replace_all(data, true)
    }
}

// Every method forwarded: a new one cannot be forgotten.
#[deny(clippy::missing_trait_methods)]
impl<R: ResourceExt> ResourceExt for Atomic<R> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        self.inner.write_at(offset, data)
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        self.inner.wait_range(range)
    }

    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome> {
        self.inner.wait_range_timeout(range, timeout)
    }

    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        self.inner.wait_first_byte(range, timeout)
    }

    fn interrupt(&self) {
        self.inner.interrupt();
    }

    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>> {
        self.inner.wait_range_async(range)
    }

    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        self.inner.commit(final_len)
    }

    fn fail(&self, reason: String) {
        self.inner.fail(reason);
    }

    fn path(&self) -> Option<&Path> {
        self.inner.path()
    }

    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        self.inner.set_expected_len(len)
    }

    fn expected_len(&self) -> Option<u64> {
        self.inner.expected_len()
    }

    fn len(&self) -> Option<u64> {
        self.inner.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn status(&self) -> ResourceStatus {
        self.inner.status()
    }

    fn reactivate(&self) -> StorageResult<()> {
        self.inner.reactivate()
    }

    fn contains_range(&self, range: Range<u64>) -> bool {
        self.inner.contains_range(range)
    }

    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>> {
        self.inner.next_gap(from, limit)
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        self.inner.read_into(buf)
    }

    fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        self.inner.replace_all(data, false)
    }

    fn sync(&self) -> StorageResult<()> {
        self.inner.sync()
    }

    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        self.inner.replace_all(data, durable)
    }

    fn demand(&self) -> crate::Demand {
        self.inner.demand()
    }

    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        self.inner.set_validator(validator)
    }

    fn validator(&self) -> Option<String> {
        self.inner.validator()
    }

    fn restart(&self) -> StorageResult<()> {
        self.inner.restart()
    }
}
