//! The cache's bookkeeping in memory: entries, the byte total and the
//! counters, with the eviction order kept by the policy ([`Lru`]).
//!
//! Everything here lives behind one `parking_lot::Mutex` in `Shared`
//! (see `shared.rs`), and nothing here does I/O: eviction only *chooses*
//! victims and takes them out of the books; their files are deleted by the
//! caller after the lock is released. The books are generic over the lease
//! an entry's handles share (`L`), which they only hold and hand back.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Weak},
};

use crate::{
    CacheStats,
    index::Stamp,
    names::EntryName,
    policy::{LastUse, Lru},
};

/// Where an entry's lease stands.
#[derive(Debug)]
pub(crate) enum LeaseState<L> {
    /// No handle: the entry may be evicted (unless pinned).
    Idle,
    /// A `resource()` call is opening the file: others wait for it.
    Opening,
    /// Handles are out; new `resource()` calls share them. A `Weak` that no
    /// longer upgrades means the last handle was dropped and its file is
    /// being closed: others wait for the release, so no second handle of the
    /// file is opened while the first still holds its lock.
    Live(Weak<L>),
}

/// An entry about to join the books ([`State::insert`]): used now, neither
/// removed nor with a synced marker yet.
#[derive(Debug)]
pub(crate) struct NewEntry<L> {
    /// The key.
    pub key: Arc<str>,
    /// Its files' name.
    pub name: EntryName,
    /// Its data file's length.
    pub bytes: u64,
    /// Never evicted.
    pub pinned: bool,
    /// The length it was committed at, as its marker says.
    pub committed_len: Option<u64>,
    /// The stamp of its marker on disk (`(0, 0)`: none yet).
    pub stamp: Stamp,
    /// Its lease.
    pub lease: LeaseState<L>,
    /// What the books say was read from its marker (or written to it) in
    /// this session; `false` for an entry taken from a sealed index, whose
    /// marker is read before it is used (see `Shared::verify`).
    pub checked: bool,
}

/// One entry of the cache. What decides whether it may be evicted (its
/// lease, pin and removal), its size and its last use change only through
/// [`State`], which keeps the totals and the eviction order in step.
#[derive(Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts of one entry"
)]
pub(crate) struct Entry<L> {
    /// The key.
    pub key: Arc<str>,
    /// Its files' name.
    pub name: EntryName,
    /// The length it was committed at, as its marker says.
    pub committed_len: Option<u64>,
    /// The stamp of its marker on disk, for the index.
    pub stamp: Stamp,
    /// Its marker on disk was synced (file and directory) since it was
    /// last written: it survives a power loss.
    pub durable_marker: bool,
    /// Its marker was read or written in this session (see
    /// [`NewEntry::checked`]).
    pub checked: bool,
    /// Its data file's length (what it occupies, reservations included).
    bytes: u64,
    /// Its last use, as the eviction policy ranks it.
    last_use: LastUse,
    /// Never evicted.
    pinned: bool,
    /// Its lease.
    lease: LeaseState<L>,
    /// Removed while leased: no longer reachable by key, its files go when
    /// the last lease does.
    detached: bool,
}

impl<L> Entry<L> {
    /// Its data file's length.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its last use: of two entries, the smaller was used less recently.
    pub fn last_use(&self) -> LastUse {
        self.last_use
    }

    /// Pinned: never evicted.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// Its lease.
    pub fn lease(&self) -> &LeaseState<L> {
        &self.lease
    }

    /// Removed while leased (see [`State::detach`]).
    pub fn detached(&self) -> bool {
        self.detached
    }

    /// Neither leased (or about to be) nor pinned nor detached.
    fn evictable(&self) -> bool {
        matches!(self.lease, LeaseState::Idle) && !self.pinned && !self.detached
    }
}

/// An entry taken out of the books whose files must now be deleted.
#[derive(Debug)]
pub(crate) struct Doomed {
    /// Its files' name, still reserved in [`State`] until
    /// [`State::forget_name`].
    pub name: EntryName,
    /// Its data file's length.
    pub bytes: u64,
    /// Its key when its marker was never read in this session (taken from
    /// a sealed index): the marker is read before the files are deleted.
    pub unchecked: Option<Arc<str>>,
}

/// The books: entries, totals and the counters of [`crate::CacheStats`].
#[derive(Debug)]
pub(crate) struct State<L> {
    /// Entries by slot; a slot is reused after its entry is gone.
    entries: Vec<Option<Entry<L>>>,
    /// Free slots of `entries`.
    free: Vec<usize>,
    /// Key → slot, for entries reachable by key (not detached ones).
    by_key: HashMap<Arc<str>, usize>,
    /// Every name with files on disk or about to: entries' names and the
    /// names of doomed entries whose files are still being deleted. A new
    /// key never takes one of these.
    names: HashSet<EntryName>,
    /// The eviction order of the evictable entries.
    policy: Lru,
    /// The budget.
    max_bytes: u64,
    /// Sum of `bytes` over all entries (detached ones included), and of
    /// `leftover`.
    bytes: u64,
    /// Bytes of files that could not be deleted (an evicted entry's on an
    /// immutable file, an orphan at open): on disk until the next open
    /// removes them, so they count, though nothing can evict them.
    leftover: u64,
    /// How many names are reserved by files that could not be deleted.
    stuck: usize,
    /// The highest `bytes` after any change (and its eviction) since open.
    peak_bytes: u64,
    /// `resource()` calls served a whole committed entry.
    hits: u64,
    /// `resource()` calls that created or resumed an entry.
    misses: u64,
    /// Entries evicted for the budget.
    evictions: u64,
}

impl<L> State<L> {
    /// Empty books for a budget of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            names: HashSet::new(),
            policy: Lru::new(),
            max_bytes,
            bytes: 0,
            leftover: 0,
            stuck: 0,
            peak_bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// The counters and sizes now.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes: self.bytes,
            entries: self.len() as u64,
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            overshoot: self.bytes.saturating_sub(self.max_bytes),
            peak_bytes: self.peak_bytes,
            max_bytes: self.max_bytes,
        }
    }

    /// Counts a `resource()` call: a hit when it served a `whole`
    /// committed entry, a miss otherwise.
    pub fn count_open(&mut self, whole: bool) {
        if whole {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// The slot of `key`.
    pub fn find(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// The entry in `slot`. Slots handed out by this type are live until
    /// [`Self::take_out`]; a stale slot is a bug, reported as `None`.
    pub fn get(&self, slot: usize) -> Option<&Entry<L>> {
        self.entries.get(slot).and_then(Option::as_ref)
    }

    /// Whether `slot` holds `key`'s entry, reachable by key (not detached).
    pub fn holds(&self, slot: usize, key: &str) -> bool {
        self.get(slot)
            .is_some_and(|e| !e.detached && *e.key == *key)
    }

    /// As [`Self::get`], mutable (its public fields: the marker's record).
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Entry<L>> {
        self.entries.get_mut(slot).and_then(Option::as_mut)
    }

    /// How many entries are reachable by key.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every live entry, detached ones included.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<L>> {
        self.entries.iter().flatten()
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

    /// Adds `new`, used now; it is evictable at once if idle and unpinned.
    pub fn insert(&mut self, new: NewEntry<L>) -> usize {
        let slot = self.free.pop().unwrap_or(self.entries.len());
        let entry = Entry {
            key: new.key,
            name: new.name,
            committed_len: new.committed_len,
            stamp: new.stamp,
            durable_marker: false,
            checked: new.checked,
            bytes: new.bytes,
            last_use: self.policy.insert(),
            pinned: new.pinned,
            lease: new.lease,
            detached: false,
        };
        self.policy
            .set_evictable(slot, entry.last_use, entry.evictable());
        self.names.insert(entry.name);
        self.bytes += entry.bytes;
        self.by_key.insert(Arc::clone(&entry.key), slot);
        if slot == self.entries.len() {
            self.entries.push(Some(entry));
        } else {
            self.entries[slot] = Some(entry);
        }
        slot
    }

    /// Takes the entry in `slot` out of the books (its name stays reserved
    /// until [`Self::forget_name`]).
    pub fn take_out(&mut self, slot: usize) -> Option<Doomed> {
        let entry = self.entries.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.policy.remove(entry.last_use);
        if !entry.detached {
            self.by_key.remove(&entry.key);
        }
        self.bytes -= entry.bytes;
        Some(Doomed {
            name: entry.name,
            bytes: entry.bytes,
            unchecked: (!entry.checked).then_some(entry.key),
        })
    }

    /// Counts `bytes` of files that could not be deleted, and keeps `name`
    /// (if they had one) from new keys until the next open.
    pub fn leftover(&mut self, name: Option<EntryName>, bytes: u64) {
        if let Some(name) = name {
            self.names.insert(name);
        }
        self.stuck += 1;
        self.leftover += bytes;
        self.bytes += bytes;
    }

    /// Holds the idle entry in `slot` out of reach while a removal deletes
    /// its data (`resource()` calls wait for it), without a use.
    pub fn hold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.lease = LeaseState::Opening;
            self.policy.set_evictable(slot, entry.last_use, false);
        }
    }

    /// Puts the entry [`Self::hold`] held back as it was.
    pub fn unhold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.lease = LeaseState::Idle;
            self.policy
                .set_evictable(slot, entry.last_use, entry.evictable());
        }
    }

    /// Whether every entry is reachable by key and every file on disk
    /// belongs to one: no entry removed while leased, no leftover.
    pub fn settled(&self) -> bool {
        self.stuck == 0 && self.iter().all(|e| !e.detached)
    }

    /// An eviction counted by [`Self::evict_over_budget`] did not happen
    /// (its marker, read before deleting, pinned it).
    pub fn unevict(&mut self) {
        self.evictions = self.evictions.saturating_sub(1);
    }

    /// Makes `name` available again: its files are gone.
    pub fn forget_name(&mut self, name: EntryName) {
        self.names.remove(&name);
    }

    /// Detaches the entry in `slot` from its key (removed while leased).
    pub fn detach(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.detached = true;
            self.policy.set_evictable(slot, entry.last_use, false);
            self.by_key.remove(&entry.key);
        }
    }

    /// Sets the lease of `slot`: a use, after which the entry is evictable
    /// or not by its new lease.
    pub fn set_lease(&mut self, slot: usize, lease: LeaseState<L>) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        entry.lease = lease;
        let evictable = entry.evictable();
        self.policy.touch(slot, &mut entry.last_use, evictable);
    }

    /// Marks `slot` used now (a hit on a live lease).
    pub fn touch(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            let evictable = entry.evictable();
            self.policy.touch(slot, &mut entry.last_use, evictable);
        }
    }

    /// Pins or unpins `slot`.
    pub fn set_pinned(&mut self, slot: usize, pinned: bool) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        entry.pinned = pinned;
        self.policy
            .set_evictable(slot, entry.last_use, entry.evictable());
    }

    /// Sets the bytes of `slot` to `bytes`; the caller then calls
    /// [`Self::evict_over_budget`] before releasing the lock.
    pub fn resize(&mut self, slot: usize, bytes: u64) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.bytes = bytes;
        }
    }

    /// Evicts the entries the policy picks until the total is back under
    /// the budget or nothing evictable is left: O(log n) each.
    pub fn evict_over_budget(&mut self) -> Vec<Doomed> {
        let mut doomed = Vec::new();
        while self.bytes > self.max_bytes {
            let Some(slot) = self.policy.pop_victim() else {
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

    /// An idle, unpinned entry of `bytes` bytes (a lease of nothing).
    fn entry(key: &str, bytes: u64) -> NewEntry<()> {
        NewEntry {
            key: key.into(),
            name: EntryName {
                hash: crate::names::key_hash(key),
                probe: 0,
            },
            bytes,
            pinned: false,
            committed_len: None,
            stamp: (0, 0),
            lease: LeaseState::Idle,
            checked: true,
        }
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_spares_leased_and_pinned() {
        // Inserted in this order: a is the least recently used.
        let mut state = State::new(250);
        let a = state.insert(entry("a", 100));
        let b = state.insert(entry("b", 100));
        let c = state.insert(entry("c", 100));
        let d = state.insert(entry("d", 100));
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
