//! `MmapDriver`: the driver's state, commit, reactivate and sync (writes: `write.rs`).

use std::{
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        Arc, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::Mutex;
use storage_core::{DownloadRecord, DriverIo, RangeSet, StorageError, StorageResult, WriteKind};

use crate::{
    OpenMode,
    checkpoint::{CheckpointPolicy, Checkpoints},
    durability::{Durability, Finisher},
    journal::Journal,
    map::Mapping,
    poison::Poison,
    replace::MmapStaged,
    store::{Store, io_error},
    sys,
};

/// The file-backed driver behind `MmapResource`.
///
/// # Safety
///
/// Mapping a file is `unsafe` because the bytes can change, or vanish, under
/// the mapping without the program writing them: another process (or another
/// handle in this one) that writes the file changes what a `&[u8]` shows,
/// and one that truncates it makes a read of the lost pages raise SIGBUS.
/// This driver never does either to its own readers: its mapping is
/// read-only, bytes go in with `pwrite` only where no reader reads at that
/// moment, and the file is only shrunk after its mapping is dropped under the
/// exclusive lock. Across handles, every mapping holds an advisory lock on
/// its file (shared while it reads, exclusive while it writes), and
/// anything that could shrink or rewrite the file needs the exclusive one:
/// so no other handle of this library — in this process or another —
/// truncates a file this one maps. It is sound as long as no other program
/// writes or truncates the file while the resource is open; see the crate
/// README for that hazard.
#[derive(Debug)]
pub struct MmapDriver {
    pub(crate) path: PathBuf,
    pub(crate) journal_path: PathBuf,
    pub(crate) mode: OpenMode,
    /// When written bytes are checkpointed, for every journal this handle
    /// keeps (a reactivation's too).
    pub(crate) policy: CheckpointPolicy,
    /// Guards the file handle and the mapping: readers and fresh writes
    /// share it; overwrites, the swap of a grown mapping, commit and
    /// reactivate hold it exclusively. Sharded: a reader locks only its
    /// thread's shard, so parallel readers do not contend on one lock word.
    /// Shared with the thread that makes a commit durable (`durability`).
    pub(crate) store: Arc<ShardedLock<Store>>,
    /// One past the highest byte written or committed (raised by writes
    /// under the shared lock, set by commit under the exclusive one).
    pub(crate) extent: AtomicU64,
    /// The journal of an active file, `None` once committed (and for
    /// read-only resources). Locked after `store` when both are; held only
    /// for moments (a writer's record, taking or putting the checkpoints),
    /// never across a sync.
    pub(crate) checkpoints: Mutex<Option<Checkpoints>>,
    /// Serialises `sync` with the calls that change the lifecycle
    /// (`commit`, `reactivate`, a replacement, a rewrite in place), which
    /// `Resource` serialises with its writes but not with `sync`: a sync
    /// never sees a commit's hand-over or a new journal half done. Writes
    /// into an active file never take it, so a sync's `fdatasync` does not
    /// stop them. Locked before everything else here.
    pub(crate) lifecycle: Mutex<()>,
    /// The durability still owed by the last commit (its final sync, the
    /// journal's removal and the directory sync, run in the background):
    /// `sync` and the drop wait for it and report or retry its failure.
    pub(crate) durability: Durability,
    /// A failed data sync of this handle's file, shared with its
    /// checkpoints and its commits' background work (see `poison`).
    pub(crate) poison: Poison,
    /// The identity of this handle's journal (set when it creates or
    /// resumes one): only that journal is ever removed by it, never one
    /// that another download put at the path since.
    pub(crate) journal_id: Mutex<Option<(u64, u64)>>,
    /// A replacement that was not made durable renamed a file over the
    /// path: the next `sync` syncs the directory too (after the file), so
    /// that the rename survives a power loss as `sync` promises. Not the
    /// `durability` phase: that work is also finished by the drop, which
    /// would make every non-durable replacement durable (and slow) at the
    /// last handle's drop.
    pub(crate) rename_owed: std::sync::atomic::AtomicBool,
}

/// An offset already checked to lie within a mapping (whose length is a `usize`).
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// A second handle of `file`, for the checkpoint thread to sync.
pub(crate) fn second_handle(file: &File, path: &Path) -> StorageResult<File> {
    file.try_clone()
        .map_err(|e| io_error(path, "cannot duplicate the handle of", e))
}

impl MmapDriver {
    /// The store, shared. A poisoned lock is taken as is: no code panics
    /// while holding it, and the store is consistent between statements.
    pub(crate) fn read(&self) -> ShardedLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store, exclusively.
    pub(crate) fn write(&self) -> ShardedLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for MmapDriver {
    fn drop(&mut self) {
        // The last checkpoint: what was written becomes durable and journaled,
        // so reopening resumes with all of it.
        if let Some(checkpoints) = self.checkpoints.get_mut().take() {
            let _ = checkpoints.finish();
        }
        // A clean exit leaves no journal behind a commit: the background
        // work is waited for, and a retryable failure tried once more. If
        // that fails too, the journal stays and the file reopens resumable.
        self.durability.finish_on_drop(|| self.finisher());
    }
}

impl MmapDriver {
    /// What the durability work of a commit needs, for this handle now.
    pub(crate) fn finisher(&self) -> Finisher {
        Finisher {
            store: Arc::clone(&self.store),
            path: self.path.clone(),
            journal_path: self.journal_path.clone(),
            journal_id: *self.journal_id.lock(),
            poison: self.poison.clone(),
        }
    }

    /// Waits for the last commit's durability work and reports how it
    /// ended: `Ok` when the commit is durable (or there was none); its
    /// error once; else one more try (see `durability`).
    pub(crate) fn finish_commit(&self) -> StorageResult<()> {
        self.durability.settle(|| self.finisher())
    }

    /// Removes the journal at the path, durably, when its identity passes
    /// `is_ours` (see [`crate::durability::remove_journal_if`]).
    pub(crate) fn remove_journal_if(
        &self,
        is_ours: impl Fn(Option<(u64, u64)>) -> bool,
    ) -> StorageResult<()> {
        crate::durability::remove_journal_if(&self.journal_path, is_ours)
    }
}

impl DriverIo for MmapDriver {
    /// A fresh write copies beside readers (a shared lock of the map).
    const FRESH_WRITES: bool = true;

    type Staged<'a> = MmapStaged<'a>;

    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        for hole in holes {
            self.zero_bytes(hole.clone())?;
        }
        let _lifecycle = self.lifecycle.lock();
        // A commit owes nothing from an earlier one here (`reactivate`
        // settles it), but a driver used directly may commit twice.
        self.durability.wait();
        let mut store = self.write();
        let target = self.commit_target(&store, final_len)?;
        // The data is not synced first: until the background sync below is
        // done, the journal stays, and only its ranges (synced at their
        // checkpoints) are trusted after a crash.
        let old_len = store.len;
        // No reader can touch a page past the new end: the exclusive lock
        // is held, and the old mapping is dropped before it is released.
        // It is kept through the cut where the platform allows cutting a
        // mapped file, so a cut that fails (an append-only file) leaves the
        // mapping as it was: a file that could not be cut often cannot be
        // mapped again either (Linux refuses a shared mapping of an
        // append-only file opened for writing).
        if !sys::CAN_CUT_MAPPED {
            store.map = Mapping::Empty;
        }
        let file = store.file(&self.path)?;
        let resized = file
            .metadata()
            .and_then(|meta| {
                if meta.len() == target {
                    Ok(())
                } else {
                    file.set_len(target)
                }
            })
            .map_err(|e| io_error(&self.path, "cannot truncate", e));
        if let Err(e) = resized {
            // Not committed: the file keeps its length and its map.
            if sys::CAN_CUT_MAPPED {
                return Err(e);
            }
            let map = Mapping::read_only(file, old_len).unwrap_or(Mapping::Empty);
            store.install(map, old_len);
            return Err(e);
        }
        match Mapping::read_only(file, target) {
            Ok(map) => store.install(map, target),
            Err(e) => {
                // Cut but not mappable (no address space for a huge
                // length): back to the old length, which was mapped, when
                // the cut only grew the file; else nothing to map.
                let restored = (target > old_len)
                    .then(|| file.set_len(old_len).ok())
                    .flatten()
                    .and_then(|()| Mapping::read_only(file, old_len).ok());
                match restored {
                    Some(map) => store.install(map, old_len),
                    None => store.install(Mapping::Empty, target.min(old_len)),
                }
                return Err(io_error(&self.path, "cannot map", e));
            }
        }
        drop(store);
        // The point of no return: readers see the committed length. The
        // rest — the checkpoint thread stopped, the file synced, the
        // journal removed, the directory synced — is the background's;
        // `sync` waits for it and reports its errors.
        self.extent.store(target, Ordering::Release);
        let checkpoints = self.checkpoints.lock().take();
        self.durability.start(checkpoints, self.finisher());
        Ok(())
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        match record {
            DownloadRecord::Identity {
                expected_len,
                validator,
            } => self.record_identity(expected_len, validator),
            DownloadRecord::Restarted => self.forget_ranges(),
        }
    }

    fn reactivate(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        self.reactivate_with(available)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let store = self.read();
        let bytes = store.map.bytes();
        let end = effective_len.min(bytes.len() as u64);
        if offset >= end {
            // Past the mapping: the end, or a read that a shrinking commit
            // overtook (`Resource` sees the rewrite and reads again).
            return Ok(0);
        }
        // Both are at most `bytes.len()`, so they fit in a `usize`.
        let (start, end) = (to_index(offset), to_index(end));
        let count = buf.len().min(end - start);
        buf[..count].copy_from_slice(&bytes[start..start + count]);
        Ok(count)
    }

    fn stage(&self, data: &[u8], durable: bool) -> StorageResult<MmapStaged<'_>> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        self.stage_replacement(data, durable)
    }

    fn publish(&self, staged: MmapStaged<'_>) {
        self.publish_replacement(staged);
    }

    fn sync(&self) -> StorageResult<()> {
        self.sync_all()
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        match kind {
            WriteKind::Fresh => self.write_bytes(offset, data, false, Exclusion::Shared),
            WriteKind::Active => self.write_bytes(offset, data, false, Exclusion::Exclusive),
            WriteKind::Committed { holes } => {
                let written = self.write_bytes(offset, data, true, Exclusion::Exclusive);
                if written.is_err() {
                    // A failed rewrite may have stored part of itself in a
                    // hole of a file committed with holes: zeroed again, as
                    // well as the disk lets us (the write's error is the
                    // one to report).
                    for hole in holes {
                        let _ = self.zero_bytes(hole.clone());
                    }
                }
                written
            }
        }
    }
}

impl MmapDriver {
    /// Bytes reserved by the file (its mapped length), which may exceed
    /// the data written.
    #[must_use]
    pub fn storage_len(&self) -> u64 {
        self.read().len
    }

    fn record_identity(
        &self,
        expected_len: Option<u64>,
        validator: Option<&str>,
    ) -> StorageResult<()> {
        match self.checkpoints.lock().as_ref() {
            Some(checkpoints) => checkpoints
                .record_identity(expected_len, validator)
                .map_err(|e| io_error(&self.journal_path, "cannot write", e)),
            // Committed or read-only: no download to resume.
            None => Ok(()),
        }
    }

    /// A new journal, whole, with no range and no identity, in place of the
    /// old one (`restart`); on failure the old one goes on.
    fn forget_ranges(&self) -> StorageResult<()> {
        let _lifecycle = self.lifecycle.lock();
        let mut checkpoints = self.checkpoints.lock();
        let Some(old) = checkpoints.take() else {
            return Ok(());
        };
        let (journal, pending, data) = old.stop();
        match Journal::create(&self.journal_path, std::iter::empty()) {
            Ok(fresh) => {
                *self.journal_id.lock() = fresh.id();
                *checkpoints = Some(Checkpoints::resume(
                    data,
                    fresh,
                    Vec::new(),
                    self.poison.clone(),
                    self.policy,
                ));
                Ok(())
            }
            Err(e) => {
                if let Some(journal) = journal {
                    *checkpoints = Some(Checkpoints::resume(
                        data,
                        journal,
                        pending,
                        self.poison.clone(),
                        self.policy,
                    ));
                }
                Err(io_error(&self.journal_path, "cannot write", e))
            }
        }
    }

    fn reactivate_with(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        let _lifecycle = self.lifecycle.lock();
        // The last commit's durability work first: it must not remove the
        // journal made below, nor release the lock taken below.
        self.durability.wait();
        // Asked before the store is locked: the background work takes the
        // store's lock, and must never be waited for while it is held.
        let commit_owed = self.durability.owed();
        let mut store = self.write();
        let mut checkpoints = self.checkpoints.lock();
        if checkpoints.is_some() {
            return Ok(()); // active already
        }
        store.acquire_exclusive(&self.path)?;
        let started = (|| {
            let file = store.file(&self.path)?;
            // Bytes rewritten in place since the commit are journaled as
            // durable below: make them so. Never after a failed sync: the
            // ranges to be journaled may hold bytes the disk lost.
            self.poison
                .sync(|| sys::sync_data(file))
                .map_err(|e| io_error(&self.path, "cannot sync", e))?;
            // Only the ranges that hold data, cut to the file.
            let mut ranges = available.clone();
            ranges.remove(store.len..u64::MAX);
            let data = second_handle(file, &self.path)?;
            // The last step that can fail: it leaves the journal that was
            // there (none, or an unsynced commit's) when it does.
            let journal = Journal::create(&self.journal_path, ranges.iter())
                .map_err(|e| io_error(&self.journal_path, "cannot write", e))?;
            *self.journal_id.lock() = journal.id();
            Ok(Checkpoints::new(
                data,
                journal,
                self.poison.clone(),
                self.policy,
            ))
        })();
        match started {
            Ok(started) => {
                *checkpoints = Some(started);
                // The new journal supersedes what the commit owed.
                self.durability.clear();
                Ok(())
            }
            Err(e) => {
                // Back to the committed file as it was (no journal was
                // made), and a reader's lock, unless an unsynced commit
                // still needs the writer's.
                if !commit_owed {
                    store.release_to_shared(&self.path);
                }
                Err(e)
            }
        }
    }

    fn sync_all(&self) -> StorageResult<()> {
        let (file, poison_file, rename_owed) = {
            let _lifecycle = self.lifecycle.lock();
            self.finish_commit()?;
            // Taken out under the lock for a moment only: writers record
            // into the checkpoints while this one syncs. The flush runs
            // under the lifecycle lock: no commit takes the checkpoints
            // from under it.
            let flusher = self.checkpoints.lock().as_ref().map(Checkpoints::flusher);
            if let Some(flusher) = flusher {
                return flusher
                    .flush()
                    .map_err(|e| io_error(&self.path, "cannot sync", e));
            }
            let store = self.read();
            let rename_owed = self.rename_owed.swap(false, Ordering::AcqRel);
            if !store.file_writable && !rename_owed {
                return Ok(()); // read-only: nothing written to sync
            }
            (
                second_handle(store.file(&self.path)?, &self.path),
                // A replacement may land while this file syncs: a failure
                // then poisons the file gone, not the new one.
                self.poison.file(),
                rename_owed,
            )
        };
        // Committed and durable: what a rewrite in place (`ReadWrite`)
        // wrote since is synced too — on a handle of its own, without the
        // lifecycle lock or the store's, so a rewrite does not wait for it.
        // Then the name a replacement renamed in, if it was not made durable.
        let synced = file.and_then(|file| {
            self.poison
                .sync_of(poison_file, || sys::sync_data(&file))
                .map_err(|e| io_error(&self.path, "cannot sync", e))
        });
        let synced = synced.and_then(|()| {
            if rename_owed {
                sys::sync_dir(&self.path)
                    .map_err(|e| io_error(&self.path, "cannot sync the directory of", e))
            } else {
                Ok(())
            }
        });
        if synced.is_err() && rename_owed {
            self.rename_owed.store(true, Ordering::Release);
        }
        synced
    }
}

/// Which lock a write of the file holds while the kernel copies its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exclusion {
    /// The bytes may be read right now: keep readers out.
    Exclusive,
    /// No reader reads these bytes until the write returns (`write_fresh`).
    Shared,
}
