//! `Shared`: what the clones of a `Cache` and its leases share, and the
//! operations on the books and files that leases call back into; `Lease`:
//! what the handles of one entry share, returned to the cache when the last
//! one drops.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
};

use parking_lot::{Condvar, Mutex};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError, StorageResult};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

use crate::{
    CacheOptions,
    index::{self, IndexRecord},
    marker::Marker,
    names::{EntryName, INDEX_FILE, LOCK_FILE},
    seal::{self, Seal},
    state::{Doomed, Entry, LeaseState, NewEntry, State},
};

/// The books of a cache: entries whose live leases are [`Lease`]s.
pub(crate) type Books = State<Lease>;

/// What the clones of a [`Cache`] and its leases share.
///
/// Lock order: `markers` before `state`, and `state` before a resource's
/// own locks. `state` is never held across I/O; under it the cache only
/// reads a leased resource's `storage_len` or `status` (the driver's and the
/// resource's leaf locks, which never call back into the cache).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The cache directory.
    pub(crate) dir: PathBuf,
    /// Options of new entries.
    pub(crate) options: CacheOptions,
    /// Guards the books: entries, LRU order, totals, counters.
    pub(crate) state: Mutex<Books>,
    /// Signalled when an entry leaves `Opening` or `Releasing`, so a
    /// `resource()` call waiting for it looks again.
    pub(crate) changed: Condvar,
    /// Serialises marker writes (held across the marker's I/O), so the last
    /// marker written reflects the latest pin and length of its entry.
    pub(crate) markers: Mutex<()>,
    /// Serialises index saves (held across the index's I/O).
    pub(crate) index: Mutex<()>,
    /// The clean close ran (`Cache::close`): the drop does not run it again.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// The open lock file: its advisory lock makes this process the
    /// directory's owner until this is dropped.
    pub(crate) owner: File,
}

/// What all clones of one entry's handle share. Its fields drop in order:
/// the resource first (which waits for its background sync and releases
/// the file's lock), then the release, which tells the cache the lease is
/// over — so the cache never opens the file again while this handle still
/// holds it.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) resource: MmapResource,
    pub(crate) release: Release,
}

/// Returns the lease to the cache when dropped.
#[derive(Debug)]
pub(crate) struct Release {
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: usize,
    /// The entry's key (the slot holds it while this lease lives).
    pub(crate) key: Arc<str>,
    /// Held across a commit or replacement and its marker writes, so the
    /// marker's length is the one the last of them left.
    pub(crate) commits: Mutex<()>,
    /// The data file's length last reported to the cache.
    pub(crate) reported_len: AtomicU64,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.shared.release(self.slot);
    }
}

/// Opens `path` for a cache entry: `Auto` (a missing file is created, a
/// journal resumes, a whole file opens committed).
fn open_file(
    path: PathBuf,
    options: &CacheOptions,
    cancel: CancellationToken,
) -> StorageResult<MmapResource> {
    MmapResource::open(
        cancel,
        MmapOptions {
            path,
            initial_len: options.initial_len,
            mode: OpenMode::Auto,
        }
        .checkpoints(options.checkpoints),
    )
}

/// Puts back into the books the entry whose files are at `name` (`bytes`
/// long) as its `marker` says, read at `stamp` (a pin found before
/// eviction, or another key's marker found where an unchecked entry's
/// was). Another key is taken in only if it hashes to `name` and the books
/// have no entry for it; otherwise the files are returned, to be deleted.
fn adopt(
    state: &mut Books,
    name: EntryName,
    bytes: u64,
    marker: Marker,
    stamp: index::Stamp,
) -> Option<Doomed> {
    let fits = crate::names::key_hash(&marker.key) == name.hash;
    if !fits || state.find(&marker.key).is_some() {
        return Some(Doomed {
            name,
            bytes,
            unchecked: None,
        });
    }
    state.forget_name(name);
    state.insert(NewEntry {
        key: marker.key,
        name,
        bytes,
        pinned: marker.pinned,
        committed_len: marker.committed_len,
        stamp,
        lease: LeaseState::Idle,
        checked: true,
    });
    None
}

/// Removes `path`; a missing file is not an error.
pub(crate) fn remove_if_present(path: &Path) -> StorageResult<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(StorageError::io("cannot remove a cache file", path, error))
        }
        _ => Ok(()),
    }
}

impl Shared {
    /// An existing entry whose marker was deleted from outside gets it
    /// back (its file is then treated as it is found).
    pub(crate) fn check_marker(
        &self,
        slot: usize,
        key: &str,
        name: EntryName,
    ) -> StorageResult<()> {
        let path = self.path(name.marker());
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(()),
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StorageError::io(
                "cannot stat the cache marker",
                &path,
                error,
            )),
            _ => {
                let forget = |state: &mut Books| {
                    if let Some(entry) = state.get_mut(slot) {
                        entry.set_committed_len(None);
                    }
                };
                remove_if_present(&path)?;
                self.write_marker(slot, key, false, forget, |_| {})
                    .map(|_| ())
            }
        }
    }

    /// The slot of `key`'s entry; waits while an eviction reads the
    /// marker of `key`'s unchecked entry (it may come back pinned).
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        let mut state = self.state.lock();
        loop {
            if let Some(slot) = state.find(key) {
                return Some(slot);
            }
            if !state.is_burying(key) {
                return None;
            }
            self.changed.wait(&mut state);
        }
    }

    pub(crate) fn path(&self, file: String) -> PathBuf {
        self.dir.join(file)
    }

    /// Deletes an entry's files: the marker first (after which the entry is
    /// gone for a later open), then the data and the journal (orphans
    /// otherwise, removed by the next open).
    pub(crate) fn delete_files(&self, name: EntryName) -> StorageResult<()> {
        remove_if_present(&self.path(name.marker()))?;
        remove_if_present(&self.path(name.data()))?;
        remove_if_present(&self.path(name.journal()))
    }

    /// Deletes the files of `doomed` entries, then frees their names. A name
    /// whose files could not be deleted stays reserved (no new key takes
    /// it) and its bytes count until the next open, which removes them.
    ///
    /// An entry taken from a sealed index whose marker was never read is
    /// read first (the directory is the truth): pinned from outside while
    /// the cache was closed, it goes back into the books, pinned; holding
    /// another key, the files are that key's (see [`Self::adopt`]). Then
    /// the budget is enforced again, until nothing more is doomed.
    pub(crate) fn bury(&self, mut doomed: Vec<Doomed>) {
        while !doomed.is_empty() {
            // Under `markers`: a marker write under way for one of them (a
            // pin of an idle entry evicted meanwhile) lands before its
            // files go, never after, where it would name another key's
            // files.
            let markers = self.markers.lock();
            let mut spared = Vec::new();
            let mut deleted = Vec::new();
            for d in doomed {
                if let Some(key) = &d.unchecked {
                    let path = self.path(d.name.marker());
                    match Marker::read(&path) {
                        Ok(Some(marker)) if marker.pinned || *marker.key != **key => {
                            let stamp =
                                fs::symlink_metadata(&path).map_or((0, 0), |m| index::stamp(&m));
                            spared.push((d, marker, stamp));
                            continue;
                        }
                        // Unreadable: nothing is deleted that could not be
                        // checked (left for the next open, counted).
                        Err(_) => {
                            deleted.push((d, false));
                            continue;
                        }
                        Ok(_) => {}
                    }
                }
                let gone = self.delete_files(d.name).is_ok();
                deleted.push((d, gone));
            }
            let mut state = self.state.lock();
            for (d, gone) in deleted {
                if let Some(key) = &d.unchecked {
                    state.buried(key);
                }
                if gone {
                    state.forget_name(d.name);
                } else {
                    // Out of the books (their markers went first: no open
                    // takes them for entries), but on disk until the next
                    // open: counted.
                    state.leftover(Some(d.name), d.bytes);
                }
            }
            let mut again = Vec::new();
            let came_back = !spared.is_empty();
            for (d, marker, stamp) in spared {
                if let Some(key) = &d.unchecked {
                    state.buried(key);
                }
                state.unevict();
                if let Some(orphan) = adopt(&mut state, d.name, d.bytes, marker, stamp) {
                    again.push(orphan);
                }
            }
            if came_back {
                again.extend(state.evict_over_budget());
            }
            self.changed.notify_all();
            drop(state);
            drop(markers);
            doomed = again;
        }
    }

    /// Reads the marker of the unchecked entry in `slot` (holding `key`),
    /// which the caller holds (its lease `Opening`), and makes the books say
    /// what it says. `Ok(true)`: it is still `key`'s entry, with the pin and
    /// committed length its marker has now. `Ok(false)`: its marker is gone,
    /// torn or another key's, and the entry is out of the books (its files
    /// then are that key's, see [`adopt`], or are deleted).
    pub(crate) fn verify(&self, slot: usize, key: &str) -> StorageResult<bool> {
        let markers = self.markers.lock();
        let name = {
            let state = self.state.lock();
            match state.get(slot) {
                Some(entry) if state.holds(slot, key) => {
                    if entry.checked() {
                        return Ok(true);
                    }
                    entry.name()
                }
                _ => return Ok(false),
            }
        };
        let path = self.path(name.marker());
        let marker = Marker::read(&path)?;
        let stamp = fs::symlink_metadata(&path).map_or((0, 0), |m| index::stamp(&m));
        let mut state = self.state.lock();
        if !state.holds(slot, key) {
            return Ok(false);
        }
        if let Some(marker) = marker.as_ref().filter(|m| *m.key == *key) {
            if let Some(entry) = state.get_mut(slot) {
                entry.set_committed_len(marker.committed_len);
                entry.stamp = stamp;
                entry.set_checked();
            }
            state.set_pinned(slot, marker.pinned);
            return Ok(true);
        }
        let doomed = state.take_out(slot);
        let orphan = match (doomed, marker) {
            (Some(doomed), Some(marker)) => {
                adopt(&mut state, doomed.name, doomed.bytes, marker, stamp)
            }
            (doomed, None) => doomed,
            (None, Some(_)) => None,
        };
        drop(state);
        drop(markers);
        self.bury(orphan.into_iter().collect());
        Ok(false)
    }

    /// Makes sure the books say what the marker of the entry in `slot`
    /// (holding `key`) says, reading it if it was never read (see
    /// [`Self::verify`]); waits while another call opens or checks it.
    /// `Ok(false)` when `slot` no longer holds `key`.
    pub(crate) fn ensure_checked(&self, slot: usize, key: &str) -> StorageResult<bool> {
        {
            let mut state = self.state.lock();
            loop {
                let Some(entry) = state.get(slot).filter(|_| state.holds(slot, key)) else {
                    return Ok(false);
                };
                if entry.checked() {
                    return Ok(true);
                }
                // Only a call checking it holds an unchecked entry.
                if entry.idle() {
                    state.hold(slot);
                    break;
                }
                self.changed.wait(&mut state);
            }
        }
        let result = self.verify(slot, key);
        let mut state = self.state.lock();
        if !matches!(result, Ok(false)) && state.holds(slot, key) {
            state.unhold(slot);
        }
        self.changed.notify_all();
        result
    }

    /// The last lease of `slot` is gone (its file closed): the entry becomes
    /// evictable, or goes if it was removed meanwhile.
    pub(crate) fn release(&self, slot: usize) {
        let mut state = self.state.lock();
        let mut doomed = Vec::new();
        if state.get(slot).is_some_and(Entry::detached) {
            doomed.extend(state.take_out(slot));
        } else {
            state.set_lease(slot, LeaseState::Idle);
        }
        doomed.extend(state.evict_over_budget());
        self.changed.notify_all();
        drop(state);
        self.bury(doomed);
    }

    /// A leased resource's file changed length: update the books and evict
    /// what the budget needs.
    pub(crate) fn resized(&self, slot: usize, resource: &MmapResource) {
        let mut state = self.state.lock();
        state.resize(slot, resource.driver().storage_len());
        let doomed = state.evict_over_budget();
        drop(state);
        self.bury(doomed);
    }

    /// Rewrites the marker of `slot` after `change` updated the books;
    /// `undo` restores them when the marker cannot be written. `Ok(false)`
    /// (nothing changed, nothing written) when `slot` no longer holds `key`
    /// — it was removed or evicted since the caller looked it up, and the
    /// slot may hold another key now — or holds it detached (removed while
    /// leased: it has no marker and gets none).
    pub(crate) fn write_marker(
        &self,
        slot: usize,
        key: &str,
        durable: bool,
        change: impl FnOnce(&mut Books),
        undo: impl FnOnce(&mut Books),
    ) -> StorageResult<bool> {
        let _markers = self.markers.lock();
        let mut state = self.state.lock();
        if !state.holds(slot, key) {
            return Ok(false);
        }
        change(&mut state);
        let Some(entry) = state.get(slot) else {
            return Ok(false);
        };
        // A marker that survived a power loss once (a pin, a synced
        // commit) is never put at risk again by a rewrite that does not.
        let durable = durable || entry.pinned() || entry.durable_marker();
        let marker = Marker {
            key: entry.key.as_ref().into(),
            pinned: entry.pinned(),
            committed_len: entry.committed_len(),
        };
        let path = self.path(entry.name().marker());
        drop(state);
        let written = marker.write(&path, durable).and_then(|()| {
            fs::symlink_metadata(&path)
                .map_err(|e| StorageError::io("cannot stat the cache marker", &path, e))
        });
        // An idle entry being pinned may have been evicted meanwhile (its
        // files are deleted only once `markers` is free: see `bury`).
        let mut state = self.state.lock();
        let still = state.holds(slot, key);
        match written {
            Ok(meta) => {
                if let Some(entry) = state.get_mut(slot).filter(|_| still) {
                    entry.stamp = index::stamp(&meta);
                    entry.set_durable_marker(durable);
                    entry.set_checked();
                }
                Ok(true)
            }
            Err(error) => {
                if still {
                    undo(&mut state);
                }
                Err(error)
            }
        }
    }

    /// Makes the marker of `slot` (holding `key`) durable, if it is not yet:
    /// after the entry's data was synced, so a power loss keeps the entry.
    pub(crate) fn sync_marker(&self, slot: usize, key: &str) -> StorageResult<()> {
        let _markers = self.markers.lock();
        let path = {
            let state = self.state.lock();
            match state.get(slot) {
                Some(entry) if state.holds(slot, key) && !entry.durable_marker() => {
                    self.path(entry.name().marker())
                }
                _ => return Ok(()),
            }
        };
        crate::marker::sync(&path)?;
        let mut state = self.state.lock();
        if state.holds(slot, key)
            && let Some(entry) = state.get_mut(slot)
        {
            entry.set_durable_marker(true);
        }
        Ok(())
    }

    /// Records in the marker of `slot` (holding `key`) the length its file
    /// is committed at; returns the length recorded before.
    pub(crate) fn record_length(
        &self,
        slot: usize,
        key: &str,
        len: Option<u64>,
    ) -> StorageResult<Option<u64>> {
        let before = self.state.lock().get(slot).and_then(Entry::committed_len);
        if before == len {
            return Ok(before);
        }
        let set = move |state: &mut Books| {
            if let Some(entry) = state.get_mut(slot) {
                entry.set_committed_len(len);
            }
        };
        let reset = move |state: &mut Books| {
            if let Some(entry) = state.get_mut(slot) {
                entry.set_committed_len(before);
            }
        };
        self.write_marker(slot, key, false, set, reset)
            .map(|_| before)
    }

    /// Opens the file of an existing entry and checks it against its marker:
    /// `(resource, whole)`, where `whole` means a committed file of the
    /// recorded length (a hit). A committed file shorter than recorded was cut
    /// from outside: it resumes as a partial download of what remains. Any
    /// other mismatch starts the entry afresh.
    pub(crate) fn open_existing(
        &self,
        name: EntryName,
        committed_len: Option<u64>,
        cancel: CancellationToken,
    ) -> StorageResult<(MmapResource, bool)> {
        let path = self.path(name.data());
        let resource = open_file(path.clone(), &self.options, cancel.clone())?;
        if !matches!(resource.status(), ResourceStatus::Committed { .. }) {
            // The mmap driver opens an empty file as a new download; an entry
            // committed empty (its marker says so) with nothing written since
            // is committed empty again.
            if committed_len == Some(0) && resource.next_gap(0, 1) == Some(0..1) {
                resource.commit(Some(0))?;
                return Ok((resource, true));
            }
            return Ok((resource, false));
        }
        let len = resource.driver().storage_len();
        match committed_len {
            None => return Ok((resource, true)),
            Some(expected) if expected == len => return Ok((resource, true)),
            Some(expected) if len < expected && resource.reactivate().is_ok() => {
                return Ok((resource, false));
            }
            Some(_) => {}
        }
        drop(resource);
        remove_if_present(&self.path(name.journal()))?;
        remove_if_present(&path)?;
        Ok((open_file(path, &self.options, cancel)?, false))
    }

    /// Creates the files of a new entry: stale files at its name (there
    /// should be none) removed, the marker written, the file created.
    pub(crate) fn open_new(
        &self,
        slot: usize,
        key: &str,
        name: EntryName,
        cancel: CancellationToken,
    ) -> StorageResult<MmapResource> {
        let path = self.path(name.data());
        remove_if_present(&self.path(name.journal()))?;
        remove_if_present(&path)?;
        self.write_marker(slot, key, false, |_| {}, |_| {})?;
        open_file(path, &self.options, cancel)
    }
}

impl Shared {
    /// See [`Cache::save_index`].
    pub(crate) fn save_index(&self) -> StorageResult<()> {
        self.write_index().map(|_| ())
    }

    /// Writes the index; its file's length and crc32, and whether it
    /// records every entry and the directory holds no other file of the
    /// cache's (what a seal may vouch for).
    fn write_index(&self) -> StorageResult<(u64, u32, bool)> {
        let _index = self.index.lock();
        // The mmap driver creates missing parent directories: a cache
        // directory deleted from outside must not come back this way.
        if !self.dir.is_dir() {
            return Err(StorageError::io(
                "the cache directory is gone",
                &self.dir,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        let state = self.state.lock();
        let mut records: Vec<IndexRecord> = state
            .iter()
            .filter(|e| !e.detached() && e.stamp != (0, 0))
            .map(|e| IndexRecord {
                name: e.name(),
                stamp: e.stamp,
                last_use: e.last_use().persisted(),
                pinned: e.pinned(),
                committed_len: e.committed_len(),
                bytes: e.bytes(),
                key: e.key.as_ref().into(),
            })
            .collect();
        let complete = state.settled() && records.len() == state.len();
        drop(state);
        // Least recently used first: the order an open adds them in.
        records.sort_unstable_by_key(|r| r.last_use);
        let (len, crc) = index::write(&self.path(INDEX_FILE.to_owned()), &records)?;
        Ok((len, crc, complete))
    }

    /// The clean close: the index written, then sealed (see `seal.rs`) if
    /// it records the whole directory. Runs when the last clone and lease
    /// are gone, so nothing changes the books meanwhile.
    /// `Ok(true)` when sealed; `Ok(false)` when it could not be (see
    /// [`State::settled`]) or was already closed.
    pub(crate) fn close(&self) -> StorageResult<bool> {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(false);
        }
        let (index_len, index_crc, complete) = self.write_index()?;
        if !complete {
            return Ok(false);
        }
        let lock_path = self.path(LOCK_FILE.to_owned());
        let sealed = seal::settled_dir_stamp(&self.dir).and_then(|dir| {
            let seal = Seal {
                index_len,
                index_crc,
                dir,
            };
            seal::write(&self.owner, &lock_path, &seal)
        });
        sealed
            .map(|()| true)
            .map_err(|e| StorageError::io("cannot seal the cache index", &lock_path, e))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A hint only: a failure costs the next open some time, no entry.
        let _ = self.close();
    }
}
