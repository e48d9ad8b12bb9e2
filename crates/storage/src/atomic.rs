//! `Atomic<R>`: whole-file replacement that a crash or a reader never sees half done.

use std::{future::Future, ops::Range, path::Path, pin::Pin, time::Duration};

use crate::{ResourceExt, ResourceStatus, StorageResult, WaitOutcome};

/// A decorator that makes [`write_all`](ResourceExt::write_all) atomic, for
/// small whole files (playlists, keys, indexes).
///
/// On a file-backed resource, `write_all` writes the data to a temporary
/// file in the same directory, renames it over the resource's path, then
/// commits the resource, which takes up the new file: a crash at any instant
/// leaves the old file or the new one, whole, and no temporary file is left
/// behind on success or on error. [`write_all_durable`](Self::write_all_durable)
/// also syncs the file before the rename and the directory after it, so the
/// replacement survives a power loss. On a memory resource, `write_all` is
/// `reactivate` + `write_all` of the inner resource.
///
/// Every other method delegates to the inner resource.
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
        self.replace(data, true)
    }

    fn replace(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        #[cfg(feature = "mmap")]
        if let Some(path) = self.inner.path() {
            // Refuse before touching the disk if the resource cannot take the
            // new contents (read-only, failed, cancelled).
            self.inner.reactivate()?;
            replace_file(path, data, durable)?;
            return self.inner.commit(Some(data.len() as u64));
        }
        let _ = durable; // nothing to sync in memory
        self.inner.reactivate()?;
        self.inner.write_all(data)
    }
}

/// Writes `data` to a temporary file beside `path` and renames it over `path`.
#[cfg(feature = "mmap")]
fn replace_file(path: &Path, data: &[u8], durable: bool) -> StorageResult<()> {
    use std::io::Write;

    let context = |what: &str, error: std::io::Error| {
        crate::StorageError::Io(std::io::Error::new(
            error.kind(),
            format!("atomic write of {}: {what}: {error}", path.display()),
        ))
    };
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| context("cannot create the directory", e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Dropped on any error before `persist`, which deletes the temporary file.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| context("cannot create a temporary file", e))?;
    temp.write_all(data)
        .map_err(|e| context("cannot write the temporary file", e))?;
    if durable {
        temp.as_file()
            .sync_all()
            .map_err(|e| context("cannot sync the temporary file", e))?;
    }
    temp.persist(path)
        .map_err(|e| context("cannot rename over the file", e.error))?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| context("cannot sync the directory", e))?;
    }
    Ok(())
}

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
        self.replace(data, false)
    }
}
