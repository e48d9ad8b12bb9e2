//! The lifecycle of an `AtomicChunked` download: what an open finds on disk,
//! the publication at commit, fail, reactivate, whole replacement and drop.

use std::{
    cell::RefCell,
    fmt, fs,
    io::{self, Read, Seek, SeekFrom},
    mem,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::{ReentrantMutex, RwLock};

use super::{
    OpenIntent,
    claim::{Claim, Mark},
    files,
};
use crate::{ResourceExt, ResourceStatus, StorageError, StorageResult};

/// Opens the resource at a path, for the intent given.
pub(super) type Factory<R> = dyn Fn(&Path, OpenIntent) -> StorageResult<R> + Send + Sync;

/// Where a download is.
pub(super) enum Lifecycle {
    /// No temporary file (`passthrough`): every call goes to the resource.
    Passthrough,
    /// Downloading into the temporary file, under the claim. The served
    /// resource may be committed already when a publication failed before
    /// its rename (the claim then says `Committing`).
    Writing(Claim),
    /// Renamed to the canonical path; the claim is released.
    Published(Pending),
}

/// The steps after the rename still to do (retried by `commit` and `sync`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    /// The directory has not been synced since the rename.
    sync_dir: bool,
    /// Reopen through the factory, expecting a committed file of this length.
    reopen: Option<u64>,
}

/// The state every clone of one `AtomicChunked` shares.
pub(super) struct Shared<R: ResourceExt> {
    pub(super) canonical: PathBuf,
    /// `<canonical>.tmp` (unused by a passthrough).
    temp: PathBuf,
    /// `None` for a passthrough.
    factory: Option<Box<Factory<R>>>,
    /// The resource every read, write and wait goes to: the temporary
    /// file's until the publication, then the canonical file's. The lock
    /// guards only the handle: it is held to clone or swap it, never across
    /// a call.
    served: RwLock<Arc<R>>,
    /// Where the download is, and its claim. Held for the whole of a commit,
    /// fail, reactivate or replacement, to order those multi-step
    /// operations: the one lock held across file I/O, by design; no read,
    /// write or wait takes it. Reentrant so that an observer hook calling
    /// back from inside one of them gets an error instead of a deadlock.
    lifecycle: ReentrantMutex<RefCell<Lifecycle>>,
}

fn is_committed(resource: &impl ResourceExt) -> bool {
    matches!(resource.status(), ResourceStatus::Committed { .. })
}

/// Refuses a resource that is not of the file at `expected`.
fn check_path(resource: &impl ResourceExt, expected: &Path) -> StorageResult<()> {
    if resource.path() == Some(expected) {
        return Ok(());
    }
    let opened = resource
        .path()
        .map_or_else(|| "no file".to_owned(), |p| p.display().to_string());
    let why = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the factory opened {opened}: it must open the file at the path it is given \
             (a memory resource takes `AtomicChunked::passthrough`)"
        ),
    );
    Err(StorageError::io("cannot download to", expected, why))
}

/// Opens the temporary file through `factory`. Another writer's lock on it
/// is another download's claim.
fn open_temp<R: ResourceExt>(factory: &Factory<R>, temp: &Path) -> StorageResult<R> {
    let resource = factory(temp, OpenIntent::Fresh).map_err(|e| match e {
        StorageError::Locked { path } if path == temp => StorageError::TmpClaimed(path),
        other => other,
    })?;
    check_path(&resource, temp)?;
    Ok(resource)
}

/// How much of a file is copied at a time when a download restarts.
const COPY_CHUNK: usize = 1 << 20;

/// Where the bytes of a restarted download come from.
enum Source<'a, R> {
    /// The resource that served them.
    Resource(&'a R),
    /// The published file itself (its resource failed, and refuses reads).
    File(fs::File, &'a Path),
}

impl<R: ResourceExt> Source<'_, R> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        match self {
            Self::Resource(resource) => resource.read_at(offset, buf),
            Self::File(file, path) => file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| file.read(buf))
                .map_err(|e| StorageError::io("cannot read", *path, e)),
        }
    }
}

/// Writes into `target` the bytes `source` holds at the ranges `coverage`
/// has available.
fn copy_available<R: ResourceExt>(
    mut source: Source<'_, R>,
    coverage: &R,
    target: &R,
) -> StorageResult<()> {
    let mut buf = vec![0; COPY_CHUNK];
    let mut at = 0u64;
    loop {
        let count = source.read_at(at, &mut buf)?;
        if count == 0 {
            return Ok(());
        }
        let end = at
            .checked_add(count as u64)
            .ok_or_else(|| StorageError::overflow(at))?;
        let mut from = at;
        while from < end {
            let gap = coverage.next_gap(from, end).unwrap_or(end..end);
            if gap.start > from {
                let slice = index(from - at)..index(gap.start.min(end) - at);
                target.write_at(from, &buf[slice])?;
            }
            if gap.end <= from {
                break;
            }
            from = gap.end;
        }
        at = end;
    }
}

/// An offset inside the copy buffer (at most [`COPY_CHUNK`]).
fn index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl<R: ResourceExt> Shared<R> {
    /// Claims the download of `canonical` and opens it: resumed, published
    /// (a complete one a crash left before its rename), or started afresh.
    pub(super) fn open(canonical: PathBuf, factory: Box<Factory<R>>) -> StorageResult<Self> {
        let temp = files::temp_path(&canonical)?;
        files::create_parent(&temp)?;
        let mut claim = Claim::take(&temp)?;
        files::check_regular_or_absent(&temp, "cannot open")?;
        let was = claim.mark();
        if was == Mark::Failed {
            // A failed or abandoned download: never resumed.
            files::remove_download(&temp)?;
        }
        let mut download = open_temp(&*factory, &temp)?;
        if is_committed(&download) && was != Mark::Committing {
            // A whole file nobody said was complete (a crash while a
            // download restarted, another program's leftover): its bytes
            // cannot be trusted. Start over.
            drop(download);
            files::remove_download(&temp)?;
            download = open_temp(&*factory, &temp)?;
            if is_committed(&download) {
                let why = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the factory opened it committed: `OpenIntent::Fresh` needs a writable \
                     resource (`OpenMode::Auto` or `ReadWrite`)",
                );
                return Err(StorageError::io("cannot download to", &temp, why));
            }
        }
        let publish = is_committed(&download);
        if !publish && was != Mark::Writing {
            claim.set(Mark::Writing, was == Mark::Failed)?;
        }
        let shared = Self {
            canonical,
            temp,
            factory: Some(factory),
            served: RwLock::new(Arc::new(download)),
            lifecycle: ReentrantMutex::new(RefCell::new(Lifecycle::Writing(claim))),
        };
        if publish {
            // Complete and durable before a crash, not yet renamed: the
            // publication is finished now. Once renamed, a later step's
            // error is retried by `commit` and `sync`.
            if let Err(e) = shared.commit(None)
                && !shared.is_published()
            {
                return Err(e);
            }
        }
        Ok(shared)
    }

    /// A decorator without a temporary file.
    pub(super) fn passthrough(inner: R, canonical: PathBuf) -> Self {
        Self {
            temp: files::temp_path(&canonical).unwrap_or_default(),
            canonical,
            factory: None,
            served: RwLock::new(Arc::new(inner)),
            lifecycle: ReentrantMutex::new(RefCell::new(Lifecycle::Passthrough)),
        }
    }

    /// The resource serving now.
    pub(super) fn served(&self) -> Arc<R> {
        Arc::clone(&self.served.read())
    }

    /// Serves `resource` from now on; returns the one it replaces (to be
    /// dropped outside the lock).
    fn install(&self, resource: Arc<R>) -> Arc<R> {
        mem::replace(&mut *self.served.write(), resource)
    }

    fn is_published(&self) -> bool {
        let guard = self.lifecycle.lock();
        guard
            .try_borrow()
            .is_ok_and(|lifecycle| matches!(*lifecycle, Lifecycle::Published(_)))
    }

    fn factory(&self) -> StorageResult<&Factory<R>> {
        self.factory.as_deref().ok_or_else(|| {
            let why = io::Error::new(io::ErrorKind::Unsupported, "a passthrough has no factory");
            StorageError::io("cannot open", &self.canonical, why)
        })
    }

    fn reentered(&self, op: &'static str) -> StorageError {
        let why = io::Error::new(
            io::ErrorKind::Deadlock,
            "called from inside a commit, reactivate or whole replacement of the same \
             resource (an observer hook)",
        );
        StorageError::io(op, &self.canonical, why)
    }

    pub(super) fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return Err(self.reentered("cannot commit"));
        };
        if matches!(*lifecycle, Lifecycle::Writing(_)) {
            let download = self.served();
            return self.publish(&mut lifecycle, &download, |d| d.commit(final_len));
        }
        self.served().commit(final_len)?;
        match &mut *lifecycle {
            Lifecycle::Published(pending) => self.finish(pending),
            _ => Ok(()),
        }
    }

    /// Publishes `download` (the resource of the temporary file, serving
    /// or not): `complete` commits it, then it is made durable, renamed to
    /// the canonical path, the directory synced, and the file reopened.
    /// Before the rename an error leaves the download where it was
    /// (`lifecycle` stays `Writing`); after it, `lifecycle` is `Published`
    /// and an error is a step left pending.
    fn publish(
        &self,
        lifecycle: &mut Lifecycle,
        download: &Arc<R>,
        complete: impl FnOnce(&R) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let Lifecycle::Writing(claim) = lifecycle else {
            return Ok(());
        };
        self.rename_into_place(claim, download, complete)?;
        // The point of no return: the file is whole at the canonical path.
        let mut pending = Pending {
            sync_dir: true,
            reopen: match download.status() {
                // An empty file would reopen as a new download, and one
                // committed without a length would reopen with one: the
                // committed resource (the same file, renamed) goes on.
                ResourceStatus::Committed {
                    final_len: Some(len),
                } if len > 0 => Some(len),
                _ => None,
            },
        };
        if !Arc::ptr_eq(download, &self.served.read()) {
            drop(self.install(Arc::clone(download)));
        }
        let finished = self.finish(&mut pending);
        if let Lifecycle::Writing(claim) = mem::replace(lifecycle, Lifecycle::Published(pending)) {
            claim.release();
        }
        finished
    }

    /// The steps of a publication up to the rename.
    fn rename_into_place(
        &self,
        claim: &mut Claim,
        download: &R,
        complete: impl FnOnce(&R) -> StorageResult<()>,
    ) -> StorageResult<()> {
        if let ResourceStatus::Failed(reason) = download.status() {
            return Err(StorageError::Failed(reason));
        }
        files::check_publishable(&self.canonical)?;
        if claim.mark() != Mark::Committing {
            // Durable before the download is: whatever a crash leaves, a
            // committed temporary file is known to be complete.
            claim.set(Mark::Committing, true)?;
        }
        let renamed = (|| {
            complete(download)?;
            // An observer hook may have failed it from inside `complete`.
            if let ResourceStatus::Failed(reason) = download.status() {
                return Err(StorageError::Failed(reason));
            }
            download.sync()?;
            files::sync_file(&self.temp)?;
            files::check_download(&self.temp, download.len())?;
            files::check_publishable(&self.canonical)?;
            files::rename(&self.temp, &self.canonical)
        })();
        if renamed.is_err() {
            // A committed download stays `Committing`: complete, to be
            // published by the next commit or open.
            let _ = match download.status() {
                ResourceStatus::Committed { .. } => Ok(()),
                ResourceStatus::Failed(_) => claim.set(Mark::Failed, true),
                _ => claim.set(Mark::Writing, false),
            };
        }
        renamed
    }

    /// The steps after the rename: the directory sync, then the reopen.
    fn finish(&self, pending: &mut Pending) -> StorageResult<()> {
        let synced = if pending.sync_dir {
            files::sync_dir(&self.canonical)
        } else {
            Ok(())
        };
        pending.sync_dir = synced.is_err();
        synced.and(self.reopen(pending))
    }

    fn reopen(&self, pending: &mut Pending) -> StorageResult<()> {
        let Some(len) = pending.reopen else {
            return Ok(());
        };
        // An error of the factory is retried by the next commit.
        let reopened = self.factory()?(&self.canonical, OpenIntent::Reopen)?;
        pending.reopen = None;
        check_path(&reopened, &self.canonical)?;
        let status = reopened.status();
        if status
            != (ResourceStatus::Committed {
                final_len: Some(len),
            })
        {
            let why = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the factory reopened it as {status:?}, not as the committed file of {len} \
                     bytes: the committed download goes on serving"
                ),
            );
            return Err(StorageError::io("cannot reopen", &self.canonical, why));
        }
        drop(self.install(Arc::new(reopened)));
        Ok(())
    }

    pub(super) fn fail(&self, reason: String) {
        let guard = self.lifecycle.lock();
        self.served().fail(reason);
        // Inside this thread's own commit (an observer hook), that commit
        // sees the failure before its rename and marks the claim itself.
        if let Ok(mut lifecycle) = guard.try_borrow_mut()
            && let Lifecycle::Writing(claim) = &mut *lifecycle
        {
            // Never resumed nor published after this, even after a crash.
            let _ = claim.set(Mark::Failed, true);
        }
    }

    pub(super) fn reactivate(&self) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return Err(self.reentered("cannot reactivate"));
        };
        match &mut *lifecycle {
            Lifecycle::Passthrough => self.served().reactivate(),
            Lifecycle::Writing(claim) => {
                let was = claim.mark();
                if was != Mark::Writing {
                    claim.set(Mark::Writing, was == Mark::Failed)?;
                }
                let reactivated = self.served().reactivate();
                if reactivated.is_err() {
                    let _ = claim.set(was, was == Mark::Failed);
                }
                reactivated
            }
            Lifecycle::Published(_) => {
                let claim = self.restart()?;
                *lifecycle = Lifecycle::Writing(claim);
                Ok(())
            }
        }
    }

    /// Reactivates a published file without touching it: a new download
    /// starts with its bytes and ranges, and replaces it at the next
    /// commit (the canonical path keeps the whole old file until then).
    fn restart(&self) -> StorageResult<Claim> {
        let old = self.served();
        let source = match old.status() {
            // Read from the published file itself (a reopen through the
            // factory could take an empty file for a new download); `old`
            // still knows which ranges were there.
            ResourceStatus::Failed(_) => Source::File(
                fs::File::open(&self.canonical)
                    .map_err(|e| StorageError::io("cannot open", &self.canonical, e))?,
                &self.canonical,
            ),
            _ => Source::Resource(&*old),
        };
        let (claim, fresh) = self.fresh_download()?;
        if let Err(e) = copy_available(source, &*old, &fresh) {
            drop(fresh);
            let _ = files::remove_download(&self.temp);
            return Err(e);
        }
        drop(self.install(Arc::new(fresh)));
        Ok(claim)
    }

    /// Claims the temporary path and opens an empty download there (a
    /// leftover of an earlier download of this path is superseded).
    fn fresh_download(&self) -> StorageResult<(Claim, R)> {
        let mut claim = Claim::take(&self.temp)?;
        files::check_regular_or_absent(&self.temp, "cannot open")?;
        files::remove_download(&self.temp)?;
        if claim.mark() != Mark::Writing {
            claim.set(Mark::Writing, true)?;
        }
        let fresh = open_temp(self.factory()?, &self.temp)?;
        let empty = fresh.next_gap(0, u64::MAX) == Some(0..u64::MAX);
        if is_committed(&fresh) || !empty {
            drop(fresh);
            let _ = files::remove_download(&self.temp);
            let why = io::Error::new(
                io::ErrorKind::InvalidData,
                "the factory did not open a new, empty download",
            );
            return Err(StorageError::io("cannot download to", &self.temp, why));
        }
        Ok((claim, fresh))
    }

    pub(super) fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return Err(self.reentered("cannot replace"));
        };
        match &*lifecycle {
            Lifecycle::Passthrough => self.served().replace_all(data, durable),
            Lifecycle::Writing(_) => {
                let download = self.served();
                self.publish(&mut lifecycle, &download, |d| d.replace_all(data, durable))
            }
            Lifecycle::Published(_) => {
                if let ResourceStatus::Failed(reason) = self.served().status() {
                    return Err(StorageError::Failed(reason));
                }
                // A new download, published over the old file: the
                // canonical path holds the old file or the new, whole.
                let (claim, fresh) = self.fresh_download()?;
                let fresh = Arc::new(fresh);
                let mut replacing = Lifecycle::Writing(claim);
                let replaced = self.publish(&mut replacing, &fresh, |d| {
                    d.write_at(0, data)?;
                    d.commit(Some(data.len() as u64))
                });
                match replacing {
                    Lifecycle::Writing(claim) => {
                        // Not renamed: the old file stays; the new one goes.
                        drop(fresh);
                        if files::remove_download(&self.temp).is_ok() {
                            claim.release();
                        }
                    }
                    published => *lifecycle = published,
                }
                replaced
            }
        }
    }

    pub(super) fn sync(&self) -> StorageResult<()> {
        let synced = self.served().sync();
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return synced;
        };
        match &mut *lifecycle {
            // The rename's own durability, if the commit could not sync it.
            Lifecycle::Published(pending) if pending.sync_dir => {
                let dir = files::sync_dir(&self.canonical);
                pending.sync_dir = dir.is_err();
                synced.and(dir)
            }
            _ => synced,
        }
    }
}

impl<R: ResourceExt> Drop for Shared<R> {
    fn drop(&mut self) {
        let lifecycle = mem::replace(self.lifecycle.get_mut().get_mut(), Lifecycle::Passthrough);
        let Lifecycle::Writing(mut claim) = lifecycle else {
            return;
        };
        if is_committed(&**self.served.get_mut()) {
            // Complete and durable, its rename failed: the claim file says
            // `Committing`, and the next open publishes it.
            return;
        }
        // Abandoned. Said first, so that if a removal fails the next open
        // discards the rest instead of resuming it.
        let _ = claim.set(Mark::Failed, false);
        if files::remove_download(&self.temp).is_ok() {
            claim.release();
        }
    }
}

impl<R: ResourceExt> fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = self.lifecycle.try_lock().and_then(|guard| {
            guard.try_borrow().ok().map(|lifecycle| match &*lifecycle {
                Lifecycle::Passthrough => "passthrough",
                Lifecycle::Writing(_) => "writing",
                Lifecycle::Published(_) => "published",
            })
        });
        f.debug_struct("AtomicChunked")
            .field("canonical_path", &self.canonical)
            .field("phase", &phase.unwrap_or("busy"))
            .finish_non_exhaustive()
    }
}
