//! The cache's bookkeeping in memory: entries, the byte total and the
//! counters, with the eviction order kept by the policy ([`Lru`]).
//!
//! Everything here lives behind one `parking_lot::Mutex` in `Shared`
//! (see `shared.rs`), and nothing here does I/O: eviction only *chooses*
//! victims and takes them out of the books; their files are deleted by the
//! caller after the lock is released. The books are generic over the lease
//! an entry's handles share (`L`), which they only hold and hand back.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Weak,
};

use crate::{
    CacheStats,
    index::Stamp,
    names::{EntryName, key_hash},
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
    pub key: Box<str>,
    /// Its files' name (the key's hash, and a probe).
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

/// One entry of the cache, in 80 bytes: what decides whether it may be
/// evicted (its lease, pin and removal), its size and its last use change
/// only through [`State`], which keeps the totals and the eviction order in
/// step. Its name is kept as the key's hash (in the name map too) and a
/// probe; its flags in one byte.
#[derive(Debug)]
pub(crate) struct Entry<L> {
    /// The key.
    pub key: Box<str>,
    /// The stamp of its marker on disk, for the index.
    pub stamp: Stamp,
    /// Its name's hash (the key's).
    hash: u64,
    /// Its data file's length (what it occupies, reservations included).
    bytes: u64,
    /// The length it was committed at, as its marker says
    /// ([`NO_LENGTH`]: none).
    committed: u64,
    /// Its last use, as the eviction policy ranks it.
    last_use: LastUse,
    /// The handles' lease while [`LEASE_LIVE`] (dangling otherwise).
    lease: Weak<L>,
    /// Its name's probe.
    probe: u32,
    /// `PINNED`, `DETACHED`, `DURABLE_MARKER`, `CHECKED`, and the lease's
    /// kind (`LEASE_*`).
    flags: u8,
}

/// [`Entry::committed`] when the entry was never committed (or its length
/// is unknown).
const NO_LENGTH: u64 = u64::MAX;
/// Never evicted.
const PINNED: u8 = 1;
/// Removed while leased: no longer reachable by key, its files go when the
/// last lease does.
const DETACHED: u8 = 1 << 1;
/// Its marker on disk was synced (file and directory) since it was last
/// written: it survives a power loss.
const DURABLE_MARKER: u8 = 1 << 2;
/// Its marker was read or written in this session (see
/// [`NewEntry::checked`]).
const CHECKED: u8 = 1 << 3;
/// The lease's kind, in the top bits.
const LEASE_MASK: u8 = 0b11 << 4;
const LEASE_IDLE: u8 = 0;
const LEASE_OPENING: u8 = 1 << 4;
const LEASE_LIVE: u8 = 2 << 4;

impl<L> Entry<L> {
    fn flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// Its files' name.
    pub fn name(&self) -> EntryName {
        EntryName {
            hash: self.hash,
            probe: self.probe,
        }
    }

    /// The length it was committed at, as its marker says.
    pub fn committed_len(&self) -> Option<u64> {
        (self.committed != NO_LENGTH).then_some(self.committed)
    }

    /// Records the length it was committed at (as its marker will say).
    pub fn set_committed_len(&mut self, len: Option<u64>) {
        self.committed = len.unwrap_or(NO_LENGTH);
    }

    /// Its marker was synced since it was last written.
    pub fn durable_marker(&self) -> bool {
        self.flag(DURABLE_MARKER)
    }

    /// See [`Self::durable_marker`].
    pub fn set_durable_marker(&mut self, durable: bool) {
        self.set_flag(DURABLE_MARKER, durable);
    }

    /// Its marker was read or written in this session.
    pub fn checked(&self) -> bool {
        self.flag(CHECKED)
    }

    /// Its marker was just read or written.
    pub fn set_checked(&mut self) {
        self.set_flag(CHECKED, true);
    }

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
        self.flag(PINNED)
    }

    /// Its lease.
    pub fn lease(&self) -> LeaseState<L> {
        match self.flags & LEASE_MASK {
            LEASE_IDLE => LeaseState::Idle,
            LEASE_OPENING => LeaseState::Opening,
            _ => LeaseState::Live(self.lease.clone()),
        }
    }

    /// Whether no handle is out or being opened.
    pub fn idle(&self) -> bool {
        self.flags & LEASE_MASK == LEASE_IDLE
    }

    fn set_lease(&mut self, lease: LeaseState<L>) {
        let (kind, weak) = match lease {
            LeaseState::Idle => (LEASE_IDLE, Weak::new()),
            LeaseState::Opening => (LEASE_OPENING, Weak::new()),
            LeaseState::Live(weak) => (LEASE_LIVE, weak),
        };
        self.flags = (self.flags & !LEASE_MASK) | kind;
        self.lease = weak;
    }

    /// Removed while leased (see [`State::detach`]).
    pub fn detached(&self) -> bool {
        self.flag(DETACHED)
    }

    /// Neither leased (or about to be) nor pinned nor detached.
    fn evictable(&self) -> bool {
        self.idle() && !self.pinned() && !self.detached()
    }
}

/// What the name map holds for a name whose files no entry holds.
const RESERVED: u32 = u32::MAX;

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
    pub unchecked: Option<Box<str>>,
}

/// The books: entries, totals and the counters of [`crate::CacheStats`].
#[derive(Debug)]
pub(crate) struct State<L> {
    /// Entries by slot; a slot is reused after its entry is gone.
    entries: Vec<Option<Entry<L>>>,
    /// Free slots of `entries`.
    free: Vec<usize>,
    /// The name map: every name with files on disk or about to, to the
    /// slot of its entry, or to [`RESERVED`] (a doomed entry whose files
    /// are being deleted, files that could not be). A new key never takes
    /// one of these. Names of probe 0 (all but the second and later keys of
    /// one 64-bit hash) by hash; the rest in `more`.
    first: HashMap<u64, u32>,
    /// The names of probe 1 and more.
    more: BTreeMap<(u64, u32), u32>,
    /// How many entries are reachable by key (not detached).
    reachable: usize,
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
    /// Keys of unchecked entries evicted whose markers are not read yet
    /// (`Shared::bury`): until then a lookup of one waits, since its marker
    /// may bring it back (pinned from outside) — a new entry made for the
    /// key meanwhile would have its files taken for orphans.
    burying: Vec<Box<str>>,
}

impl<L> State<L> {
    /// Empty books for a budget of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            first: HashMap::new(),
            more: BTreeMap::new(),
            reachable: 0,
            policy: Lru::new(),
            max_bytes,
            bytes: 0,
            leftover: 0,
            stuck: 0,
            peak_bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            burying: Vec::new(),
        }
    }

    /// Whether `key`'s entry was evicted unchecked and its marker is not
    /// read yet (a lookup waits for [`Self::buried`]).
    pub fn is_burying(&self, key: &str) -> bool {
        self.burying.iter().any(|burying| **burying == *key)
    }

    /// `key`'s evicted entry is decided: deleted, or back in the books.
    pub fn buried(&mut self, key: &str) {
        if let Some(at) = self.burying.iter().position(|burying| **burying == *key) {
            self.burying.swap_remove(at);
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

    /// Makes room for `more` entries (an open knows how many it adds).
    pub fn reserve(&mut self, more: usize) {
        self.entries.reserve_exact(more);
        self.first.reserve(more);
    }

    /// The slot `name` maps to (an entry's, or [`RESERVED`]).
    fn name_slot(&self, name: EntryName) -> Option<u32> {
        if name.probe == 0 {
            self.first.get(&name.hash).copied()
        } else {
            self.more.get(&(name.hash, name.probe)).copied()
        }
    }

    fn set_name(&mut self, name: EntryName, slot: u32) {
        if name.probe == 0 {
            self.first.insert(name.hash, slot);
        } else {
            self.more.insert((name.hash, name.probe), slot);
        }
    }

    /// The slot of `key`: among the names of its hash, the entry holding it
    /// (reachable by key).
    pub fn find(&self, key: &str) -> Option<usize> {
        let hash = key_hash(key);
        let others = self
            .more
            .range((hash, 1)..=(hash, u32::MAX))
            .map(|(_, &slot)| slot);
        self.first
            .get(&hash)
            .copied()
            .into_iter()
            .chain(others)
            .map(|slot| slot as usize)
            .find(|&slot| self.holds(slot, key))
    }

    /// The entry in `slot`. Slots handed out by this type are live until
    /// [`Self::take_out`]; a stale slot is a bug, reported as `None`.
    pub fn get(&self, slot: usize) -> Option<&Entry<L>> {
        self.entries.get(slot).and_then(Option::as_ref)
    }

    /// Whether `slot` holds `key`'s entry, reachable by key (not detached).
    pub fn holds(&self, slot: usize, key: &str) -> bool {
        self.get(slot)
            .is_some_and(|e| !e.detached() && *e.key == *key)
    }

    /// As [`Self::get`], mutable (its public fields: the marker's record).
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Entry<L>> {
        self.entries.get_mut(slot).and_then(Option::as_mut)
    }

    /// How many entries are reachable by key.
    pub fn len(&self) -> usize {
        self.reachable
    }

    /// Every live entry, detached ones included.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<L>> {
        self.entries.iter().flatten()
    }

    /// The first name for `hash` that no entry (and no doomed one) holds.
    pub fn free_name(&self, hash: u64) -> EntryName {
        (0..=u32::MAX)
            .map(|probe| EntryName { hash, probe })
            .find(|&name| self.name_slot(name).is_none())
            // 2^32 keys with one 64-bit hash cannot be held in memory.
            .unwrap_or(EntryName {
                hash,
                probe: u32::MAX,
            })
    }

    /// Adds `new`, used now; it is evictable at once if idle and unpinned.
    /// Its name must be free (or reserved by this entry's own files) and
    /// its key's hash; its key not reachable already.
    pub fn insert(&mut self, new: NewEntry<L>) -> usize {
        debug_assert_eq!(key_hash(&new.key), new.name.hash, "a name is its key's");
        let slot = self.free.pop().unwrap_or(self.entries.len());
        let mut entry = Entry {
            key: new.key,
            stamp: new.stamp,
            hash: new.name.hash,
            bytes: new.bytes,
            committed: NO_LENGTH,
            last_use: self.policy.insert(),
            lease: Weak::new(),
            probe: new.name.probe,
            flags: 0,
        };
        entry.set_committed_len(new.committed_len);
        entry.set_flag(PINNED, new.pinned);
        entry.set_flag(CHECKED, new.checked);
        entry.set_lease(new.lease);
        self.policy
            .set_evictable(slot, entry.last_use, entry.evictable());
        // Slots fit in 32 bits: 2^32 entries cannot be held in memory.
        self.set_name(entry.name(), u32::try_from(slot).unwrap_or(RESERVED));
        self.bytes += entry.bytes;
        self.reachable += 1;
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
        if !entry.detached() {
            self.reachable -= 1;
        }
        self.bytes -= entry.bytes;
        let name = entry.name();
        self.set_name(name, RESERVED);
        Some(Doomed {
            name,
            bytes: entry.bytes,
            unchecked: (!entry.checked()).then_some(entry.key),
        })
    }

    /// Counts `bytes` of files that could not be deleted, and keeps `name`
    /// (if they had one) from new keys until the next open.
    pub fn leftover(&mut self, name: Option<EntryName>, bytes: u64) {
        if let Some(name) = name
            && self.name_slot(name).is_none()
        {
            self.set_name(name, RESERVED);
        }
        self.stuck += 1;
        self.leftover += bytes;
        self.bytes += bytes;
    }

    /// Holds the idle entry in `slot` out of reach while a removal deletes
    /// its data (`resource()` calls wait for it), without a use.
    pub fn hold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.set_lease(LeaseState::Opening);
            self.policy.set_evictable(slot, entry.last_use, false);
        }
    }

    /// Puts the entry [`Self::hold`] held back as it was.
    pub fn unhold(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) {
            entry.set_lease(LeaseState::Idle);
            self.policy
                .set_evictable(slot, entry.last_use, entry.evictable());
        }
    }

    /// Whether every entry is reachable by key and every file on disk
    /// belongs to one: no entry removed while leased, no leftover.
    pub fn settled(&self) -> bool {
        self.stuck == 0 && self.iter().all(|e| !e.detached())
    }

    /// An eviction counted by [`Self::evict_over_budget`] did not happen
    /// (its marker, read before deleting, pinned it).
    pub fn unevict(&mut self) {
        self.evictions = self.evictions.saturating_sub(1);
    }

    /// Makes `name` available again: its files are gone.
    pub fn forget_name(&mut self, name: EntryName) {
        if name.probe == 0 {
            self.first.remove(&name.hash);
        } else {
            self.more.remove(&(name.hash, name.probe));
        }
    }

    /// Detaches the entry in `slot` from its key (removed while leased).
    pub fn detach(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut)
            && !entry.detached()
        {
            entry.set_flag(DETACHED, true);
            self.policy.set_evictable(slot, entry.last_use, false);
            self.reachable -= 1;
        }
    }

    /// Sets the lease of `slot`: a use, after which the entry is evictable
    /// or not by its new lease.
    pub fn set_lease(&mut self, slot: usize, lease: LeaseState<L>) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        entry.set_lease(lease);
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
        entry.set_flag(PINNED, pinned);
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
                if let Some(key) = &victim.unchecked {
                    self.burying.push(key.clone());
                }
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

    #[test]
    fn entries_are_80_bytes_and_found_by_their_keys_hash_at_any_probe() {
        assert_eq!(std::mem::size_of::<Option<Entry<u64>>>(), 80);
        let mut state: State<()> = State::new(u64::MAX);
        let hash = crate::names::key_hash("a");
        // Probe 0 held by files no entry holds: "a" goes to probe 1.
        state.leftover(Some(EntryName { hash, probe: 0 }), 0);
        let name = state.free_name(hash);
        assert_eq!(name.probe, 1);
        let slot = state.insert(NewEntry {
            name,
            ..entry("a", 10)
        });
        assert_eq!(state.find("a"), Some(slot));
        assert_eq!(state.find("b"), None);
        assert_eq!(state.free_name(hash).probe, 2);
        // Detached: not found by key, its name still held.
        state.detach(slot);
        assert_eq!((state.find("a"), state.len()), (None, 0));
        assert_eq!(state.free_name(hash).probe, 2);
        let doomed = state.take_out(slot).unwrap();
        assert_eq!(doomed.name, name);
        assert_eq!(state.free_name(hash).probe, 2, "reserved until forgotten");
        state.forget_name(name);
        assert_eq!(state.free_name(hash).probe, 1);
        // A slot reused by another key.
        let b = state.insert(entry("b", 5));
        assert_eq!(b, slot);
        assert_eq!((state.find("b"), state.find("a")), (Some(b), None));
        assert_eq!(state.len(), 1);
    }
}
