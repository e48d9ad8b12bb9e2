//! `Cache`: the handle of a cache directory, and what its clones share.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
};

use parking_lot::{Condvar, Mutex};
use storage_core::{
    CancellationToken, DriverIo, ResourceExt, ResourceStatus, StorageError, StorageResult,
};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

use crate::{
    CacheEntry, CacheOptions, CacheStats,
    index::{self, IndexRecord},
    lease::{CachedResource, Lease, Release},
    marker::Marker,
    names::{EntryName, INDEX_FILE, key_hash},
    state::{Doomed, Entry, LeaseState, State},
};

/// What [`Cache::claim`] found.
enum Claim {
    /// A live lease of the key: a handle of it.
    Shared(CachedResource),
    /// The entry in `slot` is now `Opening` for this call.
    Open {
        slot: usize,
        fresh: bool,
        name: EntryName,
        committed_len: Option<u64>,
    },
}

/// The longest key a marker can hold (4 GiB less one byte): longer keys are
/// refused with `InvalidInput`.
const MAX_KEY_BYTES: usize = u32::MAX as usize - 1;

/// A bounded directory of resources keyed by strings.
///
/// Cheap to clone (clones share one cache); `Send + Sync`. One process at a
/// time owns a directory. See the crate docs for the rules of eviction,
/// leases and pins.
#[derive(Clone, Debug)]
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
}

/// What the clones of a [`Cache`] and its leases share.
///
/// Lock order: `markers` before `state`; `state` is never held across I/O
/// except one call, `storage_len` of a leased resource in `resized` (a read
/// of the driver's own leaf lock, which never calls back).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The cache directory.
    pub(crate) dir: PathBuf,
    /// Options of new entries.
    pub(crate) options: CacheOptions,
    /// Guards the books: entries, LRU order, totals, counters.
    pub(crate) state: Mutex<State>,
    /// Signalled when an entry leaves `Opening` or `Releasing`, so a
    /// `resource()` call waiting for it looks again.
    pub(crate) changed: Condvar,
    /// Serialises marker writes (held across the marker's I/O), so the last
    /// marker written reflects the latest pin and length of its entry.
    pub(crate) markers: Mutex<()>,
    /// Serialises index saves (held across the index's I/O).
    pub(crate) index: Mutex<()>,
    /// The open lock file: its advisory lock makes this process the
    /// directory's owner until this is dropped.
    pub(crate) _owner: File,
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
        },
    )
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
    fn path(&self, file: String) -> PathBuf {
        self.dir.join(file)
    }

    /// Deletes an entry's files: the marker first (after which the entry is
    /// gone for a later open), then the data and the journal (orphans
    /// otherwise, removed by the next open).
    fn delete_files(&self, name: EntryName) -> StorageResult<()> {
        remove_if_present(&self.path(name.marker()))?;
        remove_if_present(&self.path(name.data()))?;
        remove_if_present(&self.path(name.journal()))
    }

    /// Deletes the files of `doomed` entries, then frees their names. A name
    /// whose files could not be deleted stays reserved (no new key takes
    /// it) until the next open, which removes them.
    pub(crate) fn bury(&self, doomed: Vec<Doomed>) {
        if doomed.is_empty() {
            return;
        }
        let buried: Vec<EntryName> = doomed
            .into_iter()
            .filter(|d| self.delete_files(d.name).is_ok())
            .map(|d| d.name)
            .collect();
        let mut state = self.state.lock();
        for name in buried {
            state.forget_name(name);
        }
    }

    /// The key of `slot`.
    pub(crate) fn key_of(&self, slot: usize) -> Arc<str> {
        self.state
            .lock()
            .get(slot)
            .map_or_else(|| Arc::from(""), |e| Arc::clone(&e.key))
    }

    /// The last lease of `slot` is gone (its file closed): the entry becomes
    /// evictable, or goes if it was removed meanwhile.
    pub(crate) fn release(&self, slot: usize) {
        let mut state = self.state.lock();
        let mut doomed = Vec::new();
        if state.get(slot).is_some_and(|e| e.detached) {
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
    /// `undo` restores them when the marker cannot be written. Detached
    /// entries have no marker and get none.
    fn write_marker(
        &self,
        slot: usize,
        change: impl FnOnce(&mut State),
        undo: impl FnOnce(&mut State),
    ) -> StorageResult<()> {
        let _markers = self.markers.lock();
        let mut state = self.state.lock();
        change(&mut state);
        let Some(entry) = state.get(slot).filter(|e| !e.detached) else {
            return Ok(());
        };
        let marker = Marker {
            key: entry.key.as_ref().into(),
            pinned: entry.pinned,
            committed_len: entry.committed_len,
        };
        let path = self.path(entry.name.marker());
        drop(state);
        let written = marker.write(&path).and_then(|()| {
            fs::symlink_metadata(&path)
                .map_err(|e| StorageError::io("cannot stat the cache marker", &path, e))
        });
        let mut state = self.state.lock();
        match written {
            Ok(meta) => {
                if let Some(entry) = state.get_mut(slot) {
                    entry.stamp = index::stamp(&meta);
                }
                Ok(())
            }
            Err(error) => {
                undo(&mut state);
                Err(error)
            }
        }
    }

    /// Records in the marker of `slot` that its file is about to be
    /// committed at `len`; returns the length recorded before.
    pub(crate) fn expect_length(
        &self,
        slot: usize,
        len: Option<u64>,
    ) -> StorageResult<Option<u64>> {
        let before = self.state.lock().get(slot).and_then(|e| e.committed_len);
        if before == len {
            return Ok(before);
        }
        let set = move |state: &mut State| {
            if let Some(entry) = state.get_mut(slot) {
                entry.committed_len = len;
            }
        };
        let reset = move |state: &mut State| {
            if let Some(entry) = state.get_mut(slot) {
                entry.committed_len = before;
            }
        };
        self.write_marker(slot, set, reset).map(|()| before)
    }

    /// Puts back the length recorded before a commit that failed.
    pub(crate) fn restore_length(&self, slot: usize, before: Option<u64>) -> StorageResult<()> {
        self.expect_length(slot, before).map(|_| ())
    }

    /// Opens the file of an existing entry and checks it against its marker:
    /// `(resource, whole)`, where `whole` means a committed file of the
    /// recorded length (a hit). A committed file shorter than recorded was cut
    /// from outside: it resumes as a partial download of what remains. Any
    /// other mismatch starts the entry afresh.
    fn open_existing(
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
    fn open_new(
        &self,
        slot: usize,
        name: EntryName,
        cancel: CancellationToken,
    ) -> StorageResult<MmapResource> {
        let path = self.path(name.data());
        remove_if_present(&self.path(name.journal()))?;
        remove_if_present(&path)?;
        self.write_marker(slot, |_| {}, |_| {})?;
        open_file(path, &self.options, cancel)
    }
}

impl Cache {
    /// Opens (or creates) the cache directory `dir` under `options`.
    ///
    /// The directory is scanned: every entry with a marker and a data file
    /// is kept — whole, or partial with its journal — and everything else
    /// (temporary files, journals or markers without data, data without a
    /// marker, unknown names) is removed. The index, when valid, spares
    /// reading markers it already knows and gives the last-use order; when
    /// it is missing, stale or corrupt, the directory alone is read and no
    /// entry or pin is lost. If the entries found exceed `max_bytes`, the
    /// least recently used are evicted at once.
    ///
    /// # Errors
    ///
    /// - `Locked { path: dir/cache.lock }` when another `Cache` (another
    ///   process, or this one) has the directory open.
    /// - `Io` (kind `NotADirectory`) when `dir` is a file; (kind
    ///   `InvalidInput`) when it is a non-empty directory that was never a
    ///   cache (no `cache.lock`): the cache refuses to delete someone's files
    ///   as orphans; any other `Io` when it cannot be created, locked or
    ///   read (a read-only directory, say), naming the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use storage_cache::{Cache, CacheOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path(), CacheOptions { max_bytes: 1 << 20, ..CacheOptions::default() })?;
    /// assert_eq!(cache.stats().entries, 0);
    /// # Ok::<(), storage_core::StorageError>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: CacheOptions) -> StorageResult<Self> {
        crate::scan::open(dir.as_ref(), options)
    }

    /// The resource of `key`: a lease on its entry.
    ///
    /// A whole committed entry opens committed (a *hit*); a partial one
    /// resumes active with its journaled ranges; a missing one is created
    /// active (both *misses*). While a lease of `key` lives, this returns
    /// another handle of the same resource (and `cancel` is not used: the
    /// resource keeps the token it was opened with). A file deleted from
    /// outside is a missing entry; one cut short resumes as partial; neither
    /// is ever served whole.
    ///
    /// # Errors
    ///
    /// `Cancelled` when `cancel` is already cancelled; `Io` (kind
    /// `InvalidInput`) for a key of 4 GiB or more; `Io` when the directory
    /// refuses the marker or the file (deleted or read-only directory);
    /// whatever opening the mmap resource reports. On error the cache is as
    /// it was (a new entry is forgotten, an existing one stays).
    ///
    /// # Examples
    ///
    /// ```
    /// use storage_cache::{Cache, CacheOptions};
    /// use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path(), CacheOptions::default())?;
    /// let track = cache.resource("https://example.com/a.flac", CancellationToken::new())?;
    /// track.write_all(b"fLaC...")?;
    /// drop(track);
    /// let again = cache.resource("https://example.com/a.flac", CancellationToken::new())?;
    /// assert_eq!(again.status(), ResourceStatus::Committed { final_len: Some(7) });
    /// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    /// # Ok::<(), storage_core::StorageError>(())
    /// ```
    pub fn resource(&self, key: &str, cancel: CancellationToken) -> StorageResult<CachedResource> {
        if cancel.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(StorageError::io(
                "cache keys must be shorter than 4 GiB",
                &self.shared.dir,
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
        let (slot, fresh, name, committed_len) = match self.claim(key)? {
            Claim::Shared(handle) => return Ok(handle),
            Claim::Open {
                slot,
                fresh,
                name,
                committed_len,
            } => (slot, fresh, name, committed_len),
        };
        let shared = &self.shared;
        let opened = if fresh {
            shared.open_new(slot, name, cancel).map(|r| (r, false))
        } else {
            self.check_marker(slot, name)
                .and_then(|()| shared.open_existing(name, committed_len, cancel))
        };
        self.install(slot, fresh, opened)
    }

    /// Finds `key`'s entry and either shares its live lease or marks it
    /// `Opening` for this call (creating it if missing); waits while another
    /// thread opens or releases it.
    fn claim(&self, key: &str) -> StorageResult<Claim> {
        let shared = &self.shared;
        let mut state = shared.state.lock();
        let (slot, fresh) = loop {
            if let Some(slot) = state.find(key) {
                let Some(entry) = state.get(slot) else {
                    break (slot, false);
                };
                match &entry.lease {
                    LeaseState::Live(weak) => {
                        if let Some(lease) = weak.upgrade() {
                            state.touch(slot);
                            if matches!(lease.resource.status(), ResourceStatus::Committed { .. }) {
                                state.hits += 1;
                            } else {
                                state.misses += 1;
                            }
                            return Ok(Claim::Shared(CachedResource { lease }));
                        }
                        shared.changed.wait(&mut state);
                    }
                    LeaseState::Opening => shared.changed.wait(&mut state),
                    LeaseState::Idle => {
                        state.set_lease(slot, LeaseState::Opening);
                        break (slot, false);
                    }
                }
            } else {
                let name = state.free_name(key_hash(key));
                let last_use = state.tick();
                let slot = state.insert(Entry {
                    key: key.into(),
                    name,
                    bytes: 0,
                    last_use,
                    pinned: false,
                    committed_len: None,
                    stamp: (0, 0),
                    lease: LeaseState::Opening,
                    detached: false,
                });
                break (slot, true);
            }
        };
        let entry = state
            .get(slot)
            .ok_or_else(|| StorageError::Failed("cache entry vanished while opening".into()))?;
        Ok(Claim::Open {
            slot,
            fresh,
            name: entry.name,
            committed_len: entry.committed_len,
        })
    }

    /// Gives the entry in `slot` the lease of the resource just `opened`,
    /// or, if the open failed, puts the entry back as it was (a new one is
    /// forgotten and its files removed).
    fn install(
        &self,
        slot: usize,
        fresh: bool,
        opened: StorageResult<(MmapResource, bool)>,
    ) -> StorageResult<CachedResource> {
        let shared = &self.shared;
        let mut state = shared.state.lock();
        let (resource, whole) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let doomed = if fresh {
                    state.take_out(slot)
                } else {
                    state.set_lease(slot, LeaseState::Idle);
                    None
                };
                shared.changed.notify_all();
                drop(state);
                shared.bury(doomed.into_iter().collect());
                return Err(error);
            }
        };
        let len = resource.driver().storage_len();
        let lease = Arc::new(Lease {
            resource,
            release: Release {
                shared: Arc::clone(shared),
                slot,
                reported_len: AtomicU64::new(len),
            },
        });
        state.set_lease(slot, LeaseState::Live(Arc::downgrade(&lease)));
        state.resize(slot, len);
        if whole {
            state.hits += 1;
        } else {
            state.misses += 1;
        }
        let doomed = state.evict_over_budget();
        shared.changed.notify_all();
        drop(state);
        shared.bury(doomed);
        Ok(CachedResource { lease })
    }

    /// An existing entry whose marker was deleted from outside gets it
    /// back (its file is then treated as it is found).
    fn check_marker(&self, slot: usize, name: EntryName) -> StorageResult<()> {
        let path = self.shared.path(name.marker());
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(()),
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StorageError::io(
                "cannot stat the cache marker",
                &path,
                error,
            )),
            _ => {
                let forget = |state: &mut State| {
                    if let Some(entry) = state.get_mut(slot) {
                        entry.committed_len = None;
                    }
                };
                remove_if_present(&path)?;
                self.shared.write_marker(slot, forget, |_| {})
            }
        }
    }

    /// Pins `key`: its entry is never evicted, across restarts too (the pin
    /// is in its marker), until [`unpin`](Self::unpin).
    ///
    /// # Errors
    ///
    /// `Io` (kind `NotFound`) when the cache has no entry for `key`; `Io`
    /// when the marker cannot be written (then the entry stays unpinned).
    pub fn pin(&self, key: &str) -> StorageResult<()> {
        self.set_pinned(key, true)
    }

    /// Unpins `key`: its entry may be evicted again (at once, if the cache
    /// is over its budget and the entry is not leased). Unpinning a key the
    /// cache does not hold does nothing.
    ///
    /// # Errors
    ///
    /// `Io` when the marker cannot be written (then the entry stays pinned).
    pub fn unpin(&self, key: &str) -> StorageResult<()> {
        self.set_pinned(key, false)
    }

    fn set_pinned(&self, key: &str, pinned: bool) -> StorageResult<()> {
        let shared = &self.shared;
        let Some(slot) = shared.state.lock().find(key) else {
            return if pinned {
                Err(StorageError::io(
                    "no cache entry to pin (open it with `resource` first)",
                    shared.dir.join(key_hash(key).to_string()),
                    io::Error::from(io::ErrorKind::NotFound),
                ))
            } else {
                Ok(())
            };
        };
        shared.write_marker(
            slot,
            |state| state.set_pinned(slot, pinned),
            |state| state.set_pinned(slot, !pinned),
        )?;
        let doomed = shared.state.lock().evict_over_budget();
        shared.bury(doomed);
        Ok(())
    }

    /// Removes `key`'s entry and its files. A leased entry is forgotten by
    /// key at once (a later `resource(key)` starts afresh) and its files go
    /// when its last lease drops. Removing a missing key does nothing.
    ///
    /// # Errors
    ///
    /// `Io` when a file cannot be deleted; the entry is then out of the
    /// cache's books, and its leftover files are removed by the next open.
    pub fn remove(&self, key: &str) -> StorageResult<()> {
        let shared = &self.shared;
        let _markers = shared.markers.lock();
        let mut state = shared.state.lock();
        let Some(slot) = state.find(key) else {
            return Ok(());
        };
        let Some(entry) = state.get(slot) else {
            return Ok(());
        };
        let name = entry.name;
        if matches!(entry.lease, LeaseState::Idle) {
            state.take_out(slot);
            drop(state);
            let deleted = shared.delete_files(name);
            if deleted.is_ok() {
                shared.state.lock().forget_name(name);
            }
            deleted
        } else {
            state.detach(slot);
            drop(state);
            remove_if_present(&shared.path(name.marker()))
        }
    }

    /// Whether the cache holds an entry for `key` (whole or partial).
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.shared.state.lock().find(key).is_some()
    }

    /// The cache's counters and sizes at this instant.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let state = self.shared.state.lock();
        CacheStats {
            bytes: state.bytes,
            entries: state.len() as u64,
            hits: state.hits,
            misses: state.misses,
            evictions: state.evictions,
            overshoot: state.bytes.saturating_sub(state.max_bytes),
            peak_bytes: state.peak_bytes,
            max_bytes: state.max_bytes,
        }
    }

    /// Every entry reachable by key, least recently used first.
    #[must_use]
    pub fn entries(&self) -> Vec<CacheEntry> {
        let state = self.shared.state.lock();
        let mut entries: Vec<(u64, CacheEntry)> = state
            .iter()
            .filter(|e| !e.detached)
            .map(|e| {
                (
                    e.last_use,
                    CacheEntry {
                        key: e.key.to_string(),
                        bytes: e.bytes,
                        pinned: e.pinned,
                        leased: !matches!(e.lease, LeaseState::Idle),
                    },
                )
            })
            .collect();
        drop(state);
        entries.sort_unstable_by_key(|(last_use, _)| *last_use);
        entries.into_iter().map(|(_, e)| e).collect()
    }

    /// Writes the index now (it is also written when the last clone of the
    /// cache and the last lease are dropped). Only a hint for the next
    /// open: see the crate docs.
    ///
    /// # Errors
    ///
    /// `Io` when the index cannot be written; the old one is then kept.
    pub fn save_index(&self) -> StorageResult<()> {
        self.shared.save_index()
    }

    /// The cache directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Shared {
    /// See [`Cache::save_index`].
    pub(crate) fn save_index(&self) -> StorageResult<()> {
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
        let records: Vec<IndexRecord> = state
            .iter()
            .filter(|e| !e.detached && e.stamp != (0, 0))
            .map(|e| IndexRecord {
                name: e.name,
                stamp: e.stamp,
                last_use: e.last_use,
                pinned: e.pinned,
                committed_len: e.committed_len,
                key: e.key.as_ref().into(),
            })
            .collect();
        drop(state);
        index::write(&self.path(INDEX_FILE.to_owned()), &records)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A hint only: a failure costs the next open some time, no entry.
        let _ = self.save_index();
    }
}
