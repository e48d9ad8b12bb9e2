//! `AtomicChunked<R>`: a download written at a temporary path and published
//! whole at its canonical path, resumable after a crash.

mod claim;
mod files;
mod lifecycle;

use std::{
    future::Future,
    ops::Range,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use lifecycle::Shared;

use storage_core::{ResourceExt, ResourceStatus, StorageResult, WaitOutcome};

/// Which of its two calls an [`AtomicChunked`] factory is answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenIntent {
    /// The download, at the temporary path `<canonical>.tmp`: open a
    /// writable resource (`OpenMode::Auto` or `OpenMode::ReadWrite`). The
    /// file may exist: the mmap driver then resumes it from its journal.
    Fresh,
    /// The published file, at the canonical path, after the rename: open it
    /// as a committed resource (`OpenMode::Auto`, or `OpenMode::ReadOnly`
    /// for a file that is never written again).
    Reopen,
}

/// A decorator for downloads that must never be seen half done at their
/// final path: writes go to `<canonical>.tmp`, and
/// [`commit`](ResourceExt::commit) makes that file durable, renames it over
/// the canonical path, syncs the directory and reopens the file through the
/// factory. Anything looking at the canonical path — another program, a
/// media library scanner — sees no file or the whole, durable one.
///
/// Downloads survive crashes: with the mmap driver, a process killed
/// mid-download leaves `<canonical>.tmp` and its journal, and the next
/// [`open`](Self::open) of the same canonical path resumes it with exactly
/// its durable ranges; one killed between its commit and its rename is
/// published by the next open. A download that [`fail`](ResourceExt::fail)ed
/// is never resumed nor published, and dropping one before its commit
/// removes `<canonical>.tmp`, its journal (`<canonical>.tmp.storage-journal`)
/// and its claim file (`<canonical>.tmp.claim`, whose lock keeps a second
/// download of the same path out). The README of the `storage` crate
/// (which re-exports this type) tells the whole lifecycle, file by file.
///
/// Clones share one download. Every [`ResourceExt`] method goes to the
/// resource serving at the moment (the temporary file's, then the
/// canonical file's); [`path`](ResourceExt::path) is the canonical path
/// throughout. After a publication, [`reactivate`](ResourceExt::reactivate)
/// and [`write_all`](ResourceExt::write_all) start a new download with the
/// old bytes (or the new ones) and publish it at the next commit: the
/// published file is never written in place.
///
/// An observer's hooks run inside `commit` and `reactivate`: they may call
/// any method of the decorator except those (and `write_all`,
/// `replace_all`), which then return an `Io` error of kind `Deadlock`.
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
/// use storage_mmap::{AtomicChunked, MmapOptions, MmapResource, OpenIntent, OpenMode};
///
/// let dir = tempfile::tempdir()?;
/// let canonical = dir.path().join("track.flac");
/// let cancel = CancellationToken::new();
/// let track = AtomicChunked::open(canonical.clone(), move |path, intent| {
///     let mode = match intent {
///         OpenIntent::Fresh => OpenMode::Auto,
///         OpenIntent::Reopen => OpenMode::ReadOnly,
///     };
///     MmapResource::open(cancel.clone(), MmapOptions { path: path.to_path_buf(), initial_len: None, mode })
/// })?;
/// track.write_at(4, b" frames")?;
/// track.write_at(0, b"fLaC")?;
/// assert!(!canonical.exists(), "nothing at the final path before the commit");
/// track.commit(Some(11))?;
/// assert_eq!(std::fs::read(&canonical)?, b"fLaC frames");
/// assert_eq!(track.status(), ResourceStatus::Committed { final_len: Some(11) });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AtomicChunked<R: ResourceExt> {
    shared: Arc<Shared<R>>,
}

impl<R: ResourceExt> Clone for AtomicChunked<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R: ResourceExt> std::fmt::Debug for AtomicChunked<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl<R: ResourceExt> AtomicChunked<R> {
    /// Claims the download of `canonical_path` and opens it at
    /// `<canonical_path>.tmp` through `factory`, called with that path and
    /// [`OpenIntent::Fresh`]; after the rename at commit, `factory` is
    /// called again with the canonical path and [`OpenIntent::Reopen`]. The
    /// directory is created if need be.
    ///
    /// What a crash left there is taken up: a download with its journal
    /// resumes with exactly its durable ranges; a complete one whose rename
    /// did not happen is published now (the result is then committed); a
    /// failed one, or a file nobody said was complete, is discarded and the
    /// download starts afresh.
    ///
    /// # Errors
    ///
    /// - [`StorageError::TmpClaimed`](storage_core::StorageError::TmpClaimed) at
    ///   once while another `AtomicChunked` of the same canonical path, in
    ///   this process or another, is alive and unpublished.
    /// - `Io` (`InvalidInput`) when the path has no file name, when
    ///   `<canonical>.tmp` or its claim file is something other than a
    ///   regular file (left untouched), or when the factory's resource is
    ///   not of the path it was given, or is committed for `Fresh`.
    /// - Whatever the factory or the file system returns.
    pub fn open<F>(canonical_path: PathBuf, factory: F) -> StorageResult<Self>
    where
        F: Fn(&Path, OpenIntent) -> StorageResult<R> + Send + Sync + 'static,
    {
        Ok(Self {
            shared: Arc::new(Shared::open(canonical_path, Box::new(factory))?),
        })
    }

    /// Wraps an open resource with no temporary file and no rename: every
    /// call goes to `inner`, and [`path`](ResourceExt::path) answers
    /// `canonical_path`. For memory resources, or files already published.
    pub fn passthrough(inner: R, canonical_path: PathBuf) -> Self {
        Self {
            shared: Arc::new(Shared::passthrough(inner, canonical_path)),
        }
    }

    /// The path the file is published at.
    #[must_use]
    pub fn canonical_path(&self) -> &Path {
        &self.shared.canonical
    }

    /// The resource serving at this moment: the temporary file's until the
    /// publication, then (usually) the reopened canonical file's.
    #[must_use]
    pub fn inner(&self) -> Arc<R> {
        self.shared.served()
    }
}

// Every method forwarded: a new one cannot be forgotten.
#[deny(clippy::missing_trait_methods)]
impl<R: ResourceExt> ResourceExt for AtomicChunked<R> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        self.shared.served().read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        self.shared.served().write_at(offset, data)
    }

    fn wait_range(&self, range: Range<u64>) -> StorageResult<WaitOutcome> {
        self.shared.served().wait_range(range)
    }

    fn wait_range_timeout(
        &self,
        range: Range<u64>,
        timeout: Duration,
    ) -> StorageResult<WaitOutcome> {
        self.shared.served().wait_range_timeout(range, timeout)
    }

    fn interrupt(&self) {
        self.shared.served().interrupt();
    }

    fn wait_range_async(
        &self,
        range: Range<u64>,
    ) -> Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send + '_>> {
        let served = self.shared.served();
        Box::pin(async move { served.wait_range_async(range).await })
    }

    /// Publishes the download: commits it, makes it durable, renames it
    /// over the canonical path, syncs the directory and reopens the file
    /// through the factory (after `commit(None)` or an empty file, the
    /// committed resource goes on serving: a reopen would invent a length
    /// or take the file for a new download). On a published file, as the
    /// resource's own `commit`, retrying a step left pending.
    ///
    /// # Errors
    ///
    /// As the resource's `commit`; `Io` (`IsADirectory`) when a directory
    /// is at the canonical path, (`AlreadyExists`) when an unfinished mmap
    /// download of that path lies there (its journal beside it); `Io` when
    /// a sync or the rename fails. Before the rename nothing is published,
    /// and a committed download waits for the next `commit` or `open`.
    /// After it the file is whole at the canonical path, and the error is
    /// of a directory sync (retried by `sync` and `commit`) or of the
    /// reopen (retried by `commit`; the committed resource serves).
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        self.shared.commit(final_len)
    }

    /// Marks the download failed: never resumed nor published after this,
    /// even after a crash. Its files stay until the decorator is dropped
    /// (so that `reactivate` keeps the bytes), then go.
    fn fail(&self, reason: String) {
        self.shared.fail(reason);
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.shared.canonical)
    }

    fn len(&self) -> Option<u64> {
        self.shared.served().len()
    }

    fn is_empty(&self) -> bool {
        self.shared.served().is_empty()
    }

    fn status(&self) -> ResourceStatus {
        self.shared.served().status()
    }

    /// Before the publication, as the resource's own `reactivate`. After
    /// it, a new download at the temporary path takes the published bytes
    /// and ranges, and the next commit publishes it; the canonical file is
    /// not touched until then.
    ///
    /// # Errors
    ///
    /// As the resource's own; `TmpClaimed` after the publication while
    /// another download of the path is alive.
    fn reactivate(&self) -> StorageResult<()> {
        self.shared.reactivate()
    }

    fn contains_range(&self, range: Range<u64>) -> bool {
        self.shared.served().contains_range(range)
    }

    fn next_gap(&self, from: u64, limit: u64) -> Option<Range<u64>> {
        self.shared.served().next_gap(from, limit)
    }

    /// As the resource's own (the download's; once published, the
    /// committed file answers with its length).
    fn set_expected_len(&self, len: u64) -> StorageResult<()> {
        self.shared.served().set_expected_len(len)
    }

    fn expected_len(&self) -> Option<u64> {
        self.shared.served().expected_len()
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        self.shared.served().read_into(buf)
    }

    /// Before the publication, `write_at(0, data)` then `commit` (which
    /// publishes). After it, as [`replace_all`](Self::replace_all): a new
    /// download holding `data` is published over the file — never a write
    /// into the published file.
    fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        self.shared.write_all(data)
    }

    fn sync(&self) -> StorageResult<()> {
        self.shared.sync()
    }

    /// Before the publication, the resource's own replacement, then the
    /// publication. After it, a new download holding `data` is published
    /// over the file: readers and the canonical path see the old file or
    /// the new, whole. Always durable (the publication syncs).
    fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        self.shared.replace_all(data, durable)
    }

    fn wait_first_byte(
        &self,
        range: Range<u64>,
        timeout: Option<Duration>,
    ) -> StorageResult<WaitOutcome> {
        self.shared.served().wait_first_byte(range, timeout)
    }

    /// The demand of the resource serving at the moment (the download at
    /// `.tmp` until the publication).
    fn demand(&self) -> storage_core::Demand {
        self.shared.served().demand()
    }

    fn set_validator(&self, validator: &str) -> StorageResult<()> {
        self.shared.served().set_validator(validator)
    }

    fn validator(&self) -> Option<String> {
        self.shared.served().validator()
    }

    /// As the serving resource's own: before the publication, the download
    /// at `.tmp` forgets what it holds; after it, `Committed`.
    fn restart(&self) -> StorageResult<()> {
        self.shared.served().restart()
    }
}
