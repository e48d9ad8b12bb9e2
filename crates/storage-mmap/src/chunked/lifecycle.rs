//! The lifecycle of an `AtomicChunked` download: what an open finds on disk,
//! the publication at commit, fail, sync and drop (restarts from a failed or
//! published state in `restart.rs`, the factory's calls in `factory.rs`).

use std::{
    cell::RefCell,
    fmt, io, mem,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::{ReentrantMutex, RwLock};
use storage_core::{ResourceExt, ResourceStatus, StorageError, StorageResult};

mod factory;
mod restart;

use factory::{is_committed, open_temp};

use super::{
    OpenIntent,
    claim::{Claim, Mark},
    files,
};

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

impl<R: ResourceExt> Shared<R> {
    /// Claims the download of `canonical` and opens it: resumed, published
    /// (a complete one a crash left before its rename), or started afresh.
    pub(super) fn open(canonical: PathBuf, factory: Box<Factory<R>>) -> StorageResult<Self> {
        let temp = files::temp_path(&canonical)?;
        files::create_parent(&temp)?;
        files::check_regular_or_absent(&temp, "cannot open")?;
        files::check_ours_or_absent(&temp)?;
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

    /// `write_all`: see `AtomicChunked`'s. The lifecycle stays locked from
    /// the look at the phase to the end, so no clone publishes in between
    /// (its commit waits; this thread's own calls re-enter the lock).
    pub(super) fn write_all(&self, data: &[u8]) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let published = match guard.try_borrow() {
            Ok(lifecycle) => matches!(*lifecycle, Lifecycle::Published(_)),
            Err(_) => return Err(self.reentered("cannot write")),
        };
        if published {
            return self.replace_all(data, false);
        }
        self.served().write_at(0, data)?;
        self.commit(Some(data.len() as u64))
    }

    fn is_published(&self) -> bool {
        let guard = self.lifecycle.lock();
        guard
            .try_borrow()
            .is_ok_and(|lifecycle| matches!(*lifecycle, Lifecycle::Published(_)))
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
        let pending = Pending {
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
        // Published before the steps after the rename run (the factory's
        // reopen among them): if one panics, the next `commit` or `sync`
        // takes them up again instead of finding a download whose file is
        // gone.
        if let Lifecycle::Writing(claim) = mem::replace(lifecycle, Lifecycle::Published(pending)) {
            claim.release();
        }
        match lifecycle {
            Lifecycle::Published(pending) => self.finish(pending),
            _ => Ok(()),
        }
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

    pub(super) fn fail(&self, reason: String) {
        // At once, not after a commit running meanwhile: that commit sees
        // the failure before its rename.
        let failed = self.served();
        failed.fail(reason.clone());
        let guard = self.lifecycle.lock();
        let serving = self.served();
        if !Arc::ptr_eq(&failed, &serving) {
            // A commit published and reopened meanwhile: the new resource
            // fails too, or the failure would be lost.
            serving.fail(reason);
        }
        // Inside this thread's own commit (an observer hook), that commit
        // marks the claim itself.
        if let Ok(mut lifecycle) = guard.try_borrow_mut()
            && let Lifecycle::Writing(claim) = &mut *lifecycle
        {
            // Never resumed nor published after this, even after a crash.
            let _ = claim.set(Mark::Failed, true);
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
            claim.release_removed();
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
