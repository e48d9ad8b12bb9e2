//! The cache's bookkeeping in memory: entries, the least-recently-used
//! order of the evictable ones, the byte total and the counters.
//!
//! Everything here lives behind one `parking_lot::Mutex` in `Shared`
//! (see `cache.rs`), and nothing here does I/O: eviction only *chooses*
//! victims and takes them out of the books; their files are deleted by the
//! caller after the lock is released.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Weak},
};

use crate::{index::Stamp, lease::Lease, names::EntryName};

/// Where an entry's lease stands.
#[derive(Debug)]
pub(crate) enum LeaseState {
    /// No handle: the entry may be evicted (unless pinned).
    Idle,
    /// A `resource()` call is opening the file: others wait for it.
    Opening,
    /// Handles are out; new `resource()` calls share them. A `Weak` that no
    /// longer upgrades means the last handle was dropped and its file is
    /// being closed: others wait for the release, so no second handle of the
    /// file is opened while the first still holds its lock.
    Live(Weak<Lease>),
}

/// One entry of the cache.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The key.
    pub key: Arc<str>,
    /// Its files' name.
    pub name: EntryName,
    /// Its data file's length (what it occupies, reservations included).
    pub bytes: u64,
    /// The tick of its last use; its key in the LRU order while evictable.
    pub last_use: u64,
    /// Never evicted.
    pub pinned: bool,
    /// The length it was committed at, as its marker says.
    pub committed_len: Option<u64>,
    /// The stamp of its marker on disk, for the index.
    pub stamp: Stamp,
    /// Its lease.
    pub lease: LeaseState,
    /// Removed while leased: no longer reachable by key, its files go when
    /// the last lease does.
    pub detached: bool,
    /// Its marker on disk was synced (file and directory) since it was
    /// last written: it survives a power loss.
    pub durable_marker: bool,
}

impl Entry {
    /// Neither leased (or about to be) nor pinned nor detached.
    fn evictable(&self) -> bool {
        matches!(self.lease, LeaseState::Idle) && !self.pinned && !self.detached
    }
}

/// An entry taken out of the books whose files must now be deleted.
#[derive(Debug)]
pub(crate) struct Doomed {
    /// Its files' name, still reserved in [`State::names`] until
    /// [`State::forget_name`].
    pub name: EntryName,
    /// Its data file's length.
    pub bytes: u64,
}

/// The counters of [`crate::CacheStats`] and the books.
#[derive(Debug)]
pub(crate) struct State {
    /// Entries by slot; a slot is reused after its entry is gone.
    entries: Vec<Option<Entry>>,
    /// Free slots of `entries`.
    free: Vec<usize>,
    /// Key → slot, for entries reachable by key (not detached ones).
    by_key: HashMap<Arc<str>, usize>,
    /// Every name with files on disk or about to: entries' names and the
    /// names of doomed entries whose files are still being deleted. A new
    /// key never takes one of these.
    names: HashSet<EntryName>,
    /// Evictable entries by last use: the first is the least recently used.
    lru: BTreeMap<u64, usize>,
    /// The clock of last uses.
    clock: u64,
    /// The budget.
    pub max_bytes: u64,
    /// Sum of `bytes` over all entries (detached ones included), and of
    /// `leftover`.
    pub bytes: u64,
    /// Bytes of files that could not be deleted (an evicted entry's on an
    /// immutable file, an orphan at open): on disk until the next open
    /// removes them, so they count, though nothing can evict them.
    pub leftover: u64,
    /// The highest `bytes` after any change (and its eviction) since open.
    pub peak_bytes: u64,
    /// `resource()` calls served a whole committed entry.
    pub hits: u64,
    /// `resource()` calls that created or resumed an entry.
    pub misses: u64,
    /// Entries evicted for the budget.
    pub evictions: u64,
}

impl State {
    /// Empty books for a budget of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            names: HashSet::new(),
            lru: BTreeMap::new(),
            clock: 0,
            max_bytes,
            bytes: 0,
            leftover: 0,
            peak_bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// The slot of `key`.
    pub fn find(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// The entry in `slot`. Slots handed out by this type are live until
    /// [`Self::take_out`]; a stale slot is a bug, reported as `None`.
    pub fn get(&self, slot: usize) -> Option<&Entry> {
        self.entries.get(slot).and_then(Option::as_ref)
    }

    /// Whether `slot` holds `key`'s entry, reachable by key (not detached).
    pub fn holds(&self, slot: usize, key: &str) -> bool {
        self.get(slot)
            .is_some_and(|e| !e.detached && *e.key == *key)
    }

    /// As [`Self::get`], mutable.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.entries.get_mut(slot).and_then(Option::as_mut)
    }

    /// How many entries are reachable by key.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every live entry, detached ones included.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    /// The next tick of the clock.
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The first name for `hash` that no entry (and no doomed one) holds.
    pub fn free_name(&self, hash: u64) -> EntryName {
        (0..=u32::MAX)
            .map(|probe| EntryName { hash, probe })
            .find(|name| !self.names.contains(name))
            // 2^32 keys with one 64-bit hash cannot be held in memory.
            .unwrap_or(EntryName {
                hash,
                probe: u32::MAX,
            })
    }

    /// Adds `entry`; it is evictable at once if idle and unpinned.
    pub fn insert(&mut self, entry: Entry) -> usize {
        self.names.insert(entry.name);
        self.bytes += entry.bytes;
        let key = Arc::clone(&entry.key);
        let last_use = entry.last_use;
        let evictable = entry.evictable();
        let slot = if let Some(slot) = self.free.pop() {
            self.entries[slot] = Some(entry);
            slot
        } else {
            self.entries.push(Some(entry));
            self.entries.len() - 1
        };
        self.by_key.insert(key, slot);
        if evictable {
            self.lru.insert(last_use, slot);
        }
        self.clock = self.clock.max(last_use);
        slot
    }

    /// Takes the entry in `slot` out of the books (its name stays reserved
    /// until [`Self::forget_name`]).
    pub fn take_out(&mut self, slot: usize) -> Option<Doomed> {
        let entry = self.entries.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.lru.remove(&entry.last_use);
        if !entry.detached {
            self.by_key.remove(&entry.key);
        }
        self.bytes -= entry.bytes;
        Some(Doomed {
            name: entry.name,
            bytes: entry.bytes,
        })
    }

    /// Counts `bytes` of files that could not be deleted, and keeps `name`
    /// (if they had one) from new keys until the next open.
    pub fn leftover(&mut self, name: Option<EntryName>, bytes: u64) {
        if let Some(name) = name {
            self.names.insert(name);
        }
        self.leftover += bytes;
        self.bytes += bytes;
    }

    /// Holds the idle entry in `slot` out of reach while a removal deletes
    /// its data (`resource()` calls wait for it), without a use.
    pub fn hold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            self.lru.remove(&entry.last_use);
            entry.lease = LeaseState::Opening;
        }
    }

    /// Puts the entry [`Self::hold`] held back as it was.
    pub fn unhold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.lease = LeaseState::Idle;
            if entry.evictable() {
                self.lru.insert(entry.last_use, slot);
            }
        }
    }

    /// Makes `name` available again: its files are gone.
    pub fn forget_name(&mut self, name: EntryName) {
        self.names.remove(&name);
    }

    /// Detaches the entry in `slot` from its key (removed while leased).
    pub fn detach(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.detached = true;
            self.lru.remove(&entry.last_use);
            self.by_key.remove(&entry.key);
        }
    }

    /// Sets the lease of `slot`, moving the entry in or out of the LRU order
    /// (a use: its last use becomes now).
    pub fn set_lease(&mut self, slot: usize, lease: LeaseState) {
        let tick = self.tick();
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        self.lru.remove(&entry.last_use);
        entry.lease = lease;
        entry.last_use = tick;
        if entry.evictable() {
            self.lru.insert(tick, slot);
        }
    }

    /// Marks `slot` used now (a hit on a live lease).
    pub fn touch(&mut self, slot: usize) {
        let tick = self.tick();
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.last_use = tick;
        }
    }

    /// Pins or unpins `slot`.
    pub fn set_pinned(&mut self, slot: usize, pinned: bool) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        entry.pinned = pinned;
        if entry.evictable() {
            self.lru.insert(entry.last_use, slot);
        } else {
            self.lru.remove(&entry.last_use);
        }
    }

    /// Sets the bytes of `slot` to `bytes`; the caller then calls
    /// [`Self::evict_over_budget`] before releasing the lock.
    pub fn resize(&mut self, slot: usize, bytes: u64) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.bytes = bytes;
        }
    }

    /// Evicts least-recently-used evictable entries until the total is back
    /// under the budget or nothing evictable is left: O(log n) each.
    pub fn evict_over_budget(&mut self) -> Vec<Doomed> {
        let mut doomed = Vec::new();
        while self.bytes > self.max_bytes {
            let Some((_, slot)) = self.lru.pop_first() else {
                break;
            };
            if let Some(victim) = self.take_out(slot) {
                self.evictions += 1;
                doomed.push(victim);
            }
        }
        // The peak is what the cache settles at after each change: the
        // instant between a growth and its eviction, under the lock, is
        // never seen by anyone.
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        doomed
    }

    /// Bytes of entries that may not be evicted (leased, pinned, detached).
    #[cfg(test)]
    pub fn held_bytes(&self) -> u64 {
        self.iter()
            .filter(|e| !e.evictable())
            .map(|e| e.bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, bytes: u64, last_use: u64) -> Entry {
        Entry {
            key: key.into(),
            name: EntryName {
                hash: crate::names::key_hash(key),
                probe: 0,
            },
            bytes,
            last_use,
            pinned: false,
            committed_len: None,
            stamp: (0, 0),
            lease: LeaseState::Idle,
            detached: false,
            durable_marker: false,
        }
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_spares_leased_and_pinned() {
        let mut state = State::new(250);
        let a = state.insert(entry("a", 100, 1));
        let b = state.insert(entry("b", 100, 2));
        let c = state.insert(entry("c", 100, 3));
        let d = state.insert(entry("d", 100, 4));
        state.set_lease(a, LeaseState::Opening);
        state.set_pinned(b, true);
        let doomed = state.evict_over_budget();
        // a is leased, b pinned: c (the oldest evictable) goes, then d.
        let names: Vec<_> = doomed.iter().map(|d| d.name).collect();
        assert_eq!(names, vec![state_name("c"), state_name("d")]);
        assert_eq!(state.bytes, 200);
        assert!(state.get(c).is_none() && state.get(d).is_none());
        assert_eq!(state.evictions, 2);
        // The names stay reserved until their files are gone.
        assert_eq!(state.free_name(crate::names::key_hash("c")).probe, 1);
        state.forget_name(state_name("c"));
        assert_eq!(state.free_name(crate::names::key_hash("c")).probe, 0);
        // Over budget with only held entries: nothing to evict, overshoot shows.
        state.resize(a, 300);
        assert!(state.evict_over_budget().is_empty());
        assert_eq!(state.bytes, 400);
        assert_eq!(state.held_bytes(), 400);
    }

    fn state_name(key: &str) -> EntryName {
        EntryName {
            hash: crate::names::key_hash(key),
            probe: 0,
        }
    }
}
