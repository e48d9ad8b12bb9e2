//! `MmapDriver`: the mapped store, the journal and the durability
//! finisher, composed; every `DriverIo` call, top to bottom.

use std::ops::Range;

use parking_lot::Mutex;
use storage_core::{DownloadRecord, DriverIo, RangeSet, StorageError, StorageResult, WriteKind};

mod durability;
mod journaling;
mod mapped;
mod open;
mod replace;

pub use replace::MmapStaged;

use self::{
    durability::{Durability, Finisher},
    journaling::Journaling,
    mapped::{Exclusion, MappedStore},
};
use crate::{
    OpenMode,
    checkpoint::Checkpoints,
    map::Mapping,
    mark::{self, Mark},
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
/// moment, and the file is only shrunk under the exclusive lock, its old
/// mapping replaced before that lock is released. Across handles, every
/// mapping holds an advisory lock on its file (shared while it reads,
/// exclusive while it writes), and anything that could shrink or rewrite
/// the file needs the exclusive one: so no other handle of this library —
/// in this process or another — truncates a file this one maps. It is
/// sound as long as no other program writes or truncates the file while
/// the resource is open; see the crate README for that hazard.
#[derive(Debug)]
pub struct MmapDriver {
    /// How the file was opened: a `ReadOnly` driver refuses every change.
    mode: OpenMode,
    /// The file, its lock and mapping, and how far it is written.
    store: MappedStore,
    /// The journal of an active file, its checkpoints and the poison of a
    /// failed data sync. Locked after `store` when both are.
    journal: Journaling,
    /// The durability still owed by the last commit (its final sync, the
    /// journal's removal and the directory sync, run in the background),
    /// and by a replacement's rename: `sync` and the drop wait for it and
    /// report or retry its failure.
    durability: Durability,
    /// Serialises `sync` with the calls that change the lifecycle
    /// (`commit`, `reactivate`, a replacement, a rewrite in place), which
    /// `Resource` serialises with its writes but not with `sync`: a sync
    /// never sees a commit's hand-over or a new journal half done. Writes
    /// into an active file never take it, so a sync's `fdatasync` does not
    /// stop them. Locked before everything else here.
    lifecycle: Mutex<()>,
    /// Whether bytes of the committed file may not be durable yet beyond
    /// what a commit's work syncs (a rewrite in place, a replacement, a
    /// file opened as it was found): `sync` syncs the data only then, so a
    /// commit's `sync` costs its own work alone.
    unsynced: std::sync::atomic::AtomicBool,
}

impl MmapDriver {
    /// A driver of `store`, opened in `mode`, keeping `journal`.
    /// `unsynced_mark`: a committed file found with a mark that vouches
    /// for its bytes (`mark.rs`): its first `sync` settles it.
    fn new(mode: OpenMode, store: MappedStore, journal: Journaling, unsynced_mark: bool) -> Self {
        let durability = Durability::default();
        if unsynced_mark {
            durability.defer();
        }
        Self {
            mode,
            store,
            journal,
            durability,
            lifecycle: Mutex::new(()),
            // A settled mark's sync covers the data.
            unsynced: (!unsynced_mark).into(),
        }
    }

    /// Bytes reserved by the file (its mapped length), which may exceed
    /// the data written.
    #[must_use]
    pub fn storage_len(&self) -> u64 {
        self.store.read().len()
    }

    /// What the durability work of a commit needs, for this handle now.
    fn finisher(&self) -> Finisher {
        Finisher::new(&self.store, &self.journal)
    }

    /// Marks the file committed to its `len` bytes (`mark.rs`) and gives
    /// its lock down to a reader's (no journal is kept for a writer's lock
    /// to guard); says whether the mark was set.
    fn mark_committed(&self, len: u64) -> bool {
        let path = self.store.path();
        let mut store = self.store.write();
        let bytes = store.bytes();
        let Some(contents) = usize::try_from(len).ok().and_then(|len| bytes.get(..len)) else {
            return false;
        };
        let marked = store
            .file(path)
            .is_ok_and(|file| mark::set(file, Mark::of(contents)).is_ok());
        if marked {
            store.release_to_shared(path);
        }
        marked
    }
}

/// The largest commit a mark vouches for (`mark.rs`): its CRC is computed
/// at the commit and again by every open until it is synced. Larger files
/// are checkpointed anyway (see `CHECKPOINT_BYTES`, 8 MiB too).
pub(crate) const MARKED_COMMIT_MAX: u64 = 8 << 20;

impl Drop for MmapDriver {
    fn drop(&mut self) {
        // The last checkpoint: what was written becomes durable and journaled,
        // so reopening resumes with all of it.
        self.journal.finish();
        // A clean exit leaves no journal behind a commit: the background
        // work is waited for, and a retryable failure tried once more. If
        // that fails too, the journal stays and the file reopens resumable.
        self.durability.finish_on_drop(|| self.finisher());
    }
}

/// The length a commit with `final_len` gives the file at `path` (the
/// written `extent` for `None`). Refuses a file cut from outside below the
/// written bytes that length keeps: committing it would publish zeros
/// where the resource says data is (as `reactivate` refuses it).
fn commit_target(
    store: &Store,
    path: &std::path::Path,
    extent: u64,
    final_len: Option<u64>,
) -> StorageResult<u64> {
    let target = final_len.unwrap_or(extent);
    let kept = extent.min(target);
    let on_disk = store
        .file(path)?
        .metadata()
        .map_err(|e| io_error(path, "cannot inspect", e))?
        .len();
    if on_disk < kept {
        let why = format!("truncated from outside: {on_disk} bytes on disk, {kept} written");
        let error = std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        return Err(io_error(path, "cannot commit", error));
    }
    Ok(target)
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
            self.zero_hole(hole.clone())?;
        }
        let _lifecycle = self.lifecycle.lock();
        // A commit owes nothing from an earlier one here (`reactivate`
        // settles it), but a driver used directly may commit twice.
        self.durability.wait();
        let path = self.store.path();
        let mut store = self.store.write();
        let target = commit_target(&store, path, self.store.extent(), final_len)?;
        // The data is not synced first: until the background sync below is
        // done, the journal stays, and only its ranges (synced at their
        // checkpoints) are trusted after a crash.
        let old_len = store.len();
        // No reader can touch a page past the new end: the exclusive lock
        // is held, and the old mapping is dropped before it is released.
        // It is kept through the cut where the platform allows cutting a
        // mapped file, so a cut that fails (an append-only file) leaves the
        // mapping as it was: a file that could not be cut often cannot be
        // mapped again either (Linux refuses a shared mapping of an
        // append-only file opened for writing).
        if !sys::CAN_CUT_MAPPED {
            store.unmap();
        }
        let file = store.file(path)?;
        let resized = file
            .metadata()
            .and_then(|meta| {
                if meta.len() == target {
                    Ok(())
                } else {
                    file.set_len(target)
                }
            })
            .map_err(|e| io_error(path, "cannot truncate", e));
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
                return Err(io_error(path, "cannot map", e));
            }
        }
        drop(store);
        // The point of no return: readers see the committed length. The
        // rest — the checkpoint thread stopped, the file synced, the
        // journal removed, the directory synced — is the background's;
        // `sync` waits for it and reports its errors.
        self.store.set_extent(target);
        let checkpoints = self.journal.take();
        // Everything written so far is the commit's work to sync.
        self.unsynced
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // A small new file never checkpointed has no journal: its mark
        // vouches for the commit, and nothing is synced until asked for.
        if target <= MARKED_COMMIT_MAX
            && checkpoints
                .as_ref()
                .is_some_and(Checkpoints::stop_if_unborn)
        {
            if self.mark_committed(target) {
                self.durability.defer();
            } else {
                // Marked unfinished still: made durable in the background
                // (data, mark removed, directory), with no journal to go.
                self.durability
                    .start(None, self.finisher().without_journal());
            }
            return Ok(());
        }
        self.durability.start(checkpoints, self.finisher());
        Ok(())
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        match record {
            DownloadRecord::Identity {
                expected_len,
                validator,
            } => self.journal.record_identity(expected_len, validator),
            DownloadRecord::Restarted => {
                let _lifecycle = self.lifecycle.lock();
                self.journal.restart()?;
                // Nothing is written any more: a `commit(None)` ends at what
                // is written from here on, and cuts the old bytes away.
                self.store.set_extent(0);
                Ok(())
            }
        }
    }

    fn reactivate(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        let _lifecycle = self.lifecycle.lock();
        self.unsynced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The last commit's durability work first: it must not remove the
        // journal made below, nor release the lock taken below.
        self.durability.wait();
        // Asked before the store is locked: the background work takes the
        // store's lock, and must never be waited for while it is held.
        let commit_owed = self.durability.owed();
        let path = self.store.path();
        let mut store = self.store.write();
        let mut acquired = false;
        let started = self.journal.start(|poison| {
            store.acquire_exclusive(path)?;
            acquired = true;
            let file = store.file(path)?;
            // Bytes rewritten in place since the commit are journaled as
            // durable below: make them so. Never after a failed sync: the
            // ranges to be journaled may hold bytes the disk lost.
            poison
                .sync(|| sys::sync_data(file))
                .map_err(|e| io_error(path, "cannot sync", e))?;
            // Only the ranges that hold data, cut to the file.
            let mut ranges = available.clone();
            ranges.remove(store.len()..u64::MAX);
            Ok((store.shared_file(path)?, ranges))
        });
        match started {
            Ok(true) => {
                // The new journal supersedes what the commit owed.
                self.durability.clear();
                Ok(())
            }
            Ok(false) => Ok(()), // active already
            Err(e) => {
                // Back to the committed file as it was (no journal was
                // made), and a reader's lock, unless an unsynced commit
                // still needs the writer's.
                if acquired && !commit_owed {
                    store.release_to_shared(path);
                }
                Err(e)
            }
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        Ok(self.store.read_at(offset, buf, effective_len))
    }

    fn stage(&self, data: &[u8], durable: bool) -> StorageResult<MmapStaged<'_>> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        let lifecycle = self.lifecycle.lock();
        // The last commit's durability work first: it syncs, unlocks and
        // removes what belongs to the file being replaced.
        self.durability.wait();
        replace::stage(lifecycle, &self.store, &self.journal, data, durable)
    }

    fn publish(&self, staged: MmapStaged<'_>) {
        self.unsynced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        staged.publish(&self.store, &self.journal, &self.durability);
    }

    fn sync(&self) -> StorageResult<()> {
        let path = self.store.path();
        let (file, poison_file, rename_owed) = {
            let _lifecycle = self.lifecycle.lock();
            // The last commit's durability work: `Ok` when it is durable
            // (or there was none); its error once; else one more try.
            self.durability.settle(|| self.finisher())?;
            // Taken out under the lock for a moment only: writers record
            // into the checkpoints while this one syncs. The flush runs
            // under the lifecycle lock: no commit takes the checkpoints
            // from under it.
            if let Some(flusher) = self.journal.flusher() {
                return flusher
                    .flush()
                    .map_err(|e| io_error(path, "cannot sync", e));
            }
            let store = self.store.read();
            let rename_owed = self.durability.take_owed_rename();
            let unsynced = self
                .unsynced
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            if (!store.is_writable() || !unsynced) && !rename_owed {
                // Read-only, or nothing written since the commit whose work
                // `settle` saw durable.
                return Ok(());
            }
            (
                store.shared_file(path),
                // A replacement may land while this file syncs: a failure
                // then poisons the file gone, not the new one.
                self.journal.poison().file(),
                rename_owed,
            )
        };
        // Committed and durable: what a rewrite in place (`ReadWrite`)
        // wrote since is synced too — on a handle of its own, without the
        // lifecycle lock or the store's, so a rewrite does not wait for it.
        // Then the name a replacement renamed in, if it was not made durable.
        let synced = file.and_then(|file| {
            self.journal
                .poison()
                .sync_of(poison_file, || sys::sync_data(&file))
                .map_err(|e| io_error(path, "cannot sync", e))
        });
        let synced = synced.and_then(|()| {
            if rename_owed {
                sys::sync_dir(path).map_err(|e| io_error(path, "cannot sync the directory of", e))
            } else {
                Ok(())
            }
        });
        if synced.is_err() {
            if rename_owed {
                self.durability.owe_rename();
            }
            self.unsynced
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        synced
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        match kind {
            WriteKind::Fresh => self.write_active(offset, data, Exclusion::Shared),
            WriteKind::Active => self.write_active(offset, data, Exclusion::Exclusive),
            WriteKind::Committed { holes } => {
                self.unsynced
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let written = self.rewrite(offset, data);
                if written.is_err() {
                    // A failed rewrite may have stored part of itself in a
                    // hole of a file committed with holes: zeroed again, as
                    // well as the disk lets us (the write's error is the
                    // one to report).
                    for hole in holes {
                        let _ = self.zero_hole(hole.clone());
                    }
                }
                written
            }
        }
    }
}

impl MmapDriver {
    /// A write into an active file: fresh bytes beside readers
    /// (`Exclusion::Shared`), or an overwrite that keeps them out.
    fn write_active(&self, offset: u64, data: &[u8], exclusion: Exclusion) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = self.store.write_active(offset, data, exclusion)?;
        self.journal.record(offset..end);
        Ok(())
    }

    /// A write into a committed `ReadWrite` file, within its length.
    fn rewrite(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        if self.mode != OpenMode::ReadWrite {
            return Err(StorageError::Committed);
        }
        if data.is_empty() {
            return Ok(());
        }
        let _lifecycle = self.lifecycle.lock();
        // After the commit's background work, which may release the lock.
        self.durability.wait();
        // A mark vouches for the bytes as committed: they are made durable
        // and the mark goes before any is changed (not for a write refused
        // anyway: past the end, which needs `reactivate`).
        if offset.saturating_add(data.len() as u64) > self.store.read().len() {
            return Err(StorageError::Committed);
        }
        if self.durability.is_deferred() {
            self.durability.settle(|| self.finisher())?;
        }
        self.store.rewrite_in_place(offset, data)
    }

    /// Makes `range` (a hole: no reader reads it) read as zeros.
    fn zero_hole(&self, range: Range<u64>) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            // Nothing is written through this handle; the commit refuses.
            return Ok(());
        }
        self.store.zero_range(range)
    }
}
