//! `Cache`: the handle of a cache directory and its public operations.

use std::{
    io,
    path::Path,
    sync::{Arc, atomic::AtomicU64},
};

use parking_lot::Mutex;
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError, StorageResult};
use storage_mmap::MmapResource;

use crate::{
    CacheEntry, CacheOptions, CacheStats,
    lease::CachedResource,
    names::{EntryName, key_hash},
    policy::LastUse,
    shared::{Lease, Release, Shared, remove_if_present},
    state::{Entry, LeaseState, NewEntry},
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
        checked: bool,
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

impl Cache {
    /// Opens (or creates) the cache directory `dir` under `options`.
    ///
    /// After a clean close (the last clone and lease dropped) the index is
    /// *sealed*: this open then trusts it — no marker read, no file
    /// `stat`ed — listing the directory by name only if a name changed
    /// while it was closed, and reads each entry's marker lazily, before
    /// its first use, pin, unpin, removal or eviction (see the crate
    /// README). Otherwise the directory is scanned: every entry with a
    /// marker and a data file is kept — whole, or partial with its journal
    /// — and everything else (temporary files, journals or markers without
    /// data, data without a marker, unknown names) is removed. The index,
    /// when valid, spares reading markers it already knows and gives the
    /// last-use order; when it is missing, stale or corrupt, the directory
    /// alone is read and no entry or pin is lost. If the entries found
    /// exceed `max_bytes`, the least recently used are evicted at once.
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
        crate::scan::open(dir.as_ref(), options).map(|shared| Self { shared })
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
        let shared = &self.shared;
        let (slot, fresh, name, committed_len) = loop {
            match self.claim(key)? {
                Claim::Shared(handle) => return Ok(handle),
                Claim::Open {
                    slot,
                    fresh,
                    name,
                    committed_len,
                    checked: true,
                } => break (slot, fresh, name, committed_len),
                // Taken from a sealed index: its marker is read first.
                Claim::Open { slot, name, .. } => match shared.verify(slot, key) {
                    Ok(true) => {
                        let state = shared.state.lock();
                        let committed_len = state.get(slot).and_then(Entry::committed_len);
                        break (slot, false, name, committed_len);
                    }
                    // Not `key`'s any more: out of the books; look again
                    // (a miss).
                    Ok(false) => {
                        shared.changed.notify_all();
                    }
                    Err(error) => return self.install(slot, key, false, Err(error)),
                },
            }
        };
        let opened = if fresh {
            shared.open_new(slot, key, name, cancel).map(|r| (r, false))
        } else {
            shared
                .check_marker(slot, key, name)
                .and_then(|()| shared.open_existing(name, committed_len, cancel))
        };
        self.install(slot, key, fresh, opened)
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
                match entry.lease() {
                    LeaseState::Live(weak) => {
                        if let Some(lease) = weak.upgrade() {
                            state.touch(slot);
                            let whole =
                                matches!(lease.resource.status(), ResourceStatus::Committed { .. });
                            state.count_open(whole);
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
            } else if state.is_burying(key) {
                // Evicted unchecked, its marker being read: it may come
                // back (pinned from outside).
                shared.changed.wait(&mut state);
            } else {
                let name = state.free_name(key_hash(key));
                let slot = state.insert(NewEntry {
                    key: key.into(),
                    name,
                    bytes: 0,
                    pinned: false,
                    committed_len: None,
                    stamp: (0, 0),
                    lease: LeaseState::Opening,
                    checked: true,
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
            name: entry.name(),
            committed_len: entry.committed_len(),
            checked: entry.checked(),
        })
    }

    /// Gives the entry in `slot` the lease of the resource just `opened`,
    /// or, if the open failed, puts the entry back as it was (a new one is
    /// forgotten and its files removed).
    fn install(
        &self,
        slot: usize,
        key: &str,
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
                key: Arc::from(key),
                commits: Mutex::new(()),
                reported_len: AtomicU64::new(len),
            },
        });
        state.set_lease(slot, LeaseState::Live(Arc::downgrade(&lease)));
        state.resize(slot, len);
        state.count_open(whole);
        let doomed = state.evict_over_budget();
        shared.changed.notify_all();
        drop(state);
        shared.bury(doomed);
        Ok(CachedResource { lease })
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
        let mut found = shared.find(key);
        if let Some(slot) = found
            && !shared.ensure_checked(slot, key)?
        {
            found = None;
        }
        // The slot is looked up again, with its key, under the lock the
        // marker is written with: removed or evicted meanwhile, it may
        // hold another key by then.
        let written = match found {
            Some(slot) => shared.write_marker(
                slot,
                key,
                true,
                |state| state.set_pinned(slot, pinned),
                |state| state.set_pinned(slot, !pinned),
            )?,
            None => false,
        };
        if !written && pinned {
            return Err(StorageError::io(
                "no cache entry to pin (open it with `resource` first)",
                shared.dir.join(key_hash(key).to_string()),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
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
    /// `Io` when the entry's data file cannot be deleted: the entry then
    /// stays as it was (reachable, pinned if it was). Once the data is
    /// gone the entry is, and a journal or marker that cannot be deleted
    /// is left for the next open to remove (counted in `stats().bytes`
    /// until then).
    pub fn remove(&self, key: &str) -> StorageResult<()> {
        let shared = &self.shared;
        // An entry taken from a sealed index: its marker is read first
        // (another key's files are never deleted for this one).
        let found = shared.find(key);
        if let Some(slot) = found
            && !shared.ensure_checked(slot, key)?
        {
            return Ok(());
        }
        let _markers = shared.markers.lock();
        let mut state = shared.state.lock();
        let Some(slot) = state.find(key) else {
            return Ok(());
        };
        let Some(entry) = state.get(slot) else {
            return Ok(());
        };
        let name = entry.name();
        if !entry.idle() {
            state.detach(slot);
            drop(state);
            return remove_if_present(&shared.path(name.marker()));
        }
        // The data first: if it cannot go, nothing has changed.
        state.hold(slot);
        drop(state);
        let data = remove_if_present(&shared.path(name.data()));
        let mut state = shared.state.lock();
        if let Err(error) = data {
            state.unhold(slot);
            shared.changed.notify_all();
            return Err(error);
        }
        state.take_out(slot);
        shared.changed.notify_all();
        drop(state);
        let rest = remove_if_present(&shared.path(name.journal()))
            .and_then(|()| remove_if_present(&shared.path(name.marker())));
        let mut state = shared.state.lock();
        match rest {
            Ok(()) => state.forget_name(name),
            Err(_) => state.leftover(Some(name), 0),
        }
        Ok(())
    }

    /// Whether the cache holds an entry for `key` (whole or partial).
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.shared.find(key).is_some()
    }

    /// The cache's counters and sizes at this instant.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.shared.state.lock().stats()
    }

    /// Every entry reachable by key, least recently used first.
    #[must_use]
    pub fn entries(&self) -> Vec<CacheEntry> {
        let state = self.shared.state.lock();
        let mut entries: Vec<(LastUse, CacheEntry)> = state
            .iter()
            .filter(|e| !e.detached())
            .map(|e| {
                (
                    e.last_use(),
                    CacheEntry {
                        key: e.key.to_string(),
                        bytes: e.bytes(),
                        pinned: e.pinned(),
                        leased: !e.idle(),
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

    /// Closes this handle, and the cache if it is the last handle (no other
    /// clone, no lease): the index is written and sealed now, with its
    /// errors reported — what dropping the last handle does silently. A
    /// sealed index lets the next open trust it (see the crate README).
    ///
    /// Returns `Ok(true)` when the index was sealed; `Ok(false)` when other
    /// clones or leases keep the cache open (the last of them to drop
    /// closes it), or when the directory holds files the index cannot
    /// account for (an entry removed while leased, a file that could not
    /// be deleted: the next open then scans).
    ///
    /// # Errors
    ///
    /// `Io` when the index or the seal cannot be written; the next open
    /// then scans the directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use storage_cache::{Cache, CacheOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path(), CacheOptions::default())?;
    /// let other = cache.clone();
    /// assert!(!cache.close()?, "a clone keeps it open");
    /// assert!(other.close()?, "the last handle seals the index");
    /// # Ok::<(), storage_core::StorageError>(())
    /// ```
    pub fn close(self) -> StorageResult<bool> {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared.close(),
            Err(_) => Ok(false),
        }
    }

    /// The cache directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}
