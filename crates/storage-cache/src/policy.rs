//! The eviction policy: least recently used first, among the entries that
//! may be evicted. The one place that knows the order; the books ask it.
//!
//! Every use of an entry (its creation, an open, a hit on a live lease, the
//! release of its last lease) takes the next tick of a clock. The entries
//! that may be evicted (neither leased nor pinned nor removed: the books
//! say which) are kept by their last tick, so the next victim is the first
//! one, found and taken out in O(log n). Across restarts the order lives in
//! the index ([`LastUse::persisted`]); [`Recalled`] ranks what an open finds.

use std::collections::BTreeMap;

/// When an entry was last used, as the policy ranks it: of two entries,
/// the smaller is the less recently used (listed first, evicted first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LastUse(u64);

impl LastUse {
    /// What the index keeps of it: a number whose order across entries is
    /// their order of use (see [`Recalled::indexed`]).
    pub(crate) fn persisted(self) -> u64 {
        self.0
    }
}

/// Where an entry found by `Cache::open` goes in the order. The open adds
/// entries least recently used first, in ascending `Recalled` order: first
/// those the index knows, by their last use then, and after them those
/// created or changed since its last save, by their data file's
/// modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Recalled {
    /// Newer than the index: after every entry it knows.
    unindexed: bool,
    /// The index's last use, or the modification time.
    at: u64,
}

impl Recalled {
    /// An entry whose last use the index kept ([`LastUse::persisted`]).
    pub(crate) fn indexed(last_use: u64) -> Self {
        Self {
            unindexed: false,
            at: last_use,
        }
    }

    /// An entry the index does not know, whose data file was last modified
    /// at `modified` (nanoseconds since the epoch).
    pub(crate) fn unindexed(modified: u64) -> Self {
        Self {
            unindexed: true,
            at: modified,
        }
    }
}

/// Least recently used eviction: the order of the evictable entries, and
/// the clock of uses. Entries are named by their slot in the books.
///
/// The books tell it of every use ([`Self::touch`]), every change of
/// whether an entry may be evicted ([`Self::set_evictable`]), and every
/// entry that comes ([`Self::insert`]) or goes ([`Self::remove`]); it
/// answers which entry goes next ([`Self::pop_victim`]).
#[derive(Debug, Default)]
pub(crate) struct Lru {
    /// Evictable entries by the tick of their last use: the first is the
    /// least recently used. Ticks are unique, so a tick names its entry.
    order: BTreeMap<u64, usize>,
    /// The last tick handed out.
    clock: u64,
}

impl Lru {
    /// An empty order.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A use now: the next tick.
    fn tick(&mut self) -> LastUse {
        self.clock += 1;
        LastUse(self.clock)
    }

    /// A new entry comes in, used now: its last use, for it to keep. It is
    /// no candidate for eviction until [`Self::set_evictable`] says so.
    pub(crate) fn insert(&mut self) -> LastUse {
        self.tick()
    }

    /// The entry in `slot` (last used at `last_use`) is used now: it
    /// becomes the most recently used, a candidate when `evictable`.
    pub(crate) fn touch(&mut self, slot: usize, last_use: &mut LastUse, evictable: bool) {
        let now = self.tick();
        self.order.remove(&last_use.0);
        *last_use = now;
        if evictable {
            self.order.insert(now.0, slot);
        }
    }

    /// The entry in `slot` became a candidate for eviction, or stopped
    /// being one (pinned, leased, removed), without being used: it keeps
    /// its place in the order.
    pub(crate) fn set_evictable(&mut self, slot: usize, last_use: LastUse, evictable: bool) {
        if evictable {
            self.order.insert(last_use.0, slot);
        } else {
            self.order.remove(&last_use.0);
        }
    }

    /// The entry last used at `last_use` leaves the cache.
    pub(crate) fn remove(&mut self, last_use: LastUse) {
        self.order.remove(&last_use.0);
    }

    /// The least recently used candidate, taken out of the order: the slot
    /// of the next entry to evict, or `None` when no entry may be evicted.
    pub(crate) fn pop_victim(&mut self) -> Option<usize> {
        self.order.pop_first().map(|(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new entry in `slot`, a candidate when `evictable`.
    fn admit(lru: &mut Lru, slot: usize, evictable: bool) -> LastUse {
        let last_use = lru.insert();
        lru.set_evictable(slot, last_use, evictable);
        last_use
    }

    fn victims(lru: &mut Lru) -> Vec<usize> {
        std::iter::from_fn(|| lru.pop_victim()).collect()
    }

    #[test]
    fn victims_come_least_recently_used_first() {
        let mut lru = Lru::new();
        let mut uses: Vec<LastUse> = (0..4).map(|slot| admit(&mut lru, slot, true)).collect();
        lru.touch(1, &mut uses[1], true);
        lru.touch(0, &mut uses[0], true);
        assert!(uses[2] < uses[3] && uses[3] < uses[1] && uses[1] < uses[0]);
        assert_eq!(victims(&mut lru), vec![2, 3, 1, 0]);
        assert_eq!(lru.pop_victim(), None);
    }

    #[test]
    fn entries_that_may_not_be_evicted_are_never_victims() {
        let mut lru = Lru::new();
        let leased = admit(&mut lru, 0, false);
        let pinned = admit(&mut lru, 1, true);
        let idle = admit(&mut lru, 2, true);
        let gone = admit(&mut lru, 3, true);
        lru.set_evictable(1, pinned, false);
        lru.remove(gone);
        assert_eq!(victims(&mut lru), vec![2]);
        // Unpinned and released again: each back at its own place.
        lru.set_evictable(2, idle, true);
        lru.set_evictable(1, pinned, true);
        let mut released = leased;
        lru.touch(0, &mut released, true);
        assert_eq!(victims(&mut lru), vec![1, 2, 0]);
    }

    #[test]
    fn a_use_of_a_leased_entry_moves_it_without_making_it_a_candidate() {
        let mut lru = Lru::new();
        let mut leased = admit(&mut lru, 0, false);
        let other = admit(&mut lru, 1, true);
        lru.touch(0, &mut leased, false);
        assert!(other < leased);
        assert_eq!(victims(&mut lru), vec![1]);
    }

    #[test]
    fn the_persisted_order_is_the_order_of_use_and_newer_entries_come_after() {
        let mut lru = Lru::new();
        let mut first = admit(&mut lru, 0, true);
        let second = admit(&mut lru, 1, true);
        lru.touch(0, &mut first, true);
        assert!(second.persisted() < first.persisted());
        let (second, first) = (
            Recalled::indexed(second.persisted()),
            Recalled::indexed(first.persisted()),
        );
        // An entry the index does not know comes after every one it knows,
        // however old its file; among themselves, by modification time.
        let (older, newer) = (Recalled::unindexed(5), Recalled::unindexed(9));
        let mut found = [newer, first, older, second];
        found.sort_unstable();
        assert_eq!(found, [second, first, older, newer]);
    }

    /// What the books may tell the policy, about the entry in slot `.0`
    /// (a slot of 8).
    #[derive(Clone, Copy, Debug)]
    enum Event {
        Insert(usize, bool),
        Touch(usize, bool),
        SetEvictable(usize, bool),
        Remove(usize),
        PopVictim,
    }

    fn event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        prop_oneof![
            (0..8usize, any::<bool>()).prop_map(|(s, e)| Event::Insert(s, e)),
            (0..8usize, any::<bool>()).prop_map(|(s, e)| Event::Touch(s, e)),
            (0..8usize, any::<bool>()).prop_map(|(s, e)| Event::SetEvictable(s, e)),
            (0..8usize).prop_map(Event::Remove),
            Just(Event::PopVictim),
        ]
    }

    proptest::proptest! {
        /// Against a plain model: each slot's entry with its count of uses
        /// so far and whether it may be evicted; the victim is the
        /// evictable entry used longest ago, scanned for.
        #[test]
        fn the_policy_matches_a_scan_for_the_oldest_evictable_entry(
            events in proptest::collection::vec(event(), 1..200)
        ) {
            let mut lru = Lru::new();
            let mut uses = 0u64;
            // slot → (its last use, the model's last use, evictable)
            let mut model: [Option<(LastUse, u64, bool)>; 8] = [None; 8];
            for event in events {
                match event {
                    Event::Insert(slot, evictable) if model[slot].is_none() => {
                        uses += 1;
                        let last_use = lru.insert();
                        lru.set_evictable(slot, last_use, evictable);
                        model[slot] = Some((last_use, uses, evictable));
                    }
                    Event::Touch(slot, evictable) => {
                        if let Some((last_use, used, can)) = model[slot].as_mut() {
                            uses += 1;
                            lru.touch(slot, last_use, evictable);
                            (*used, *can) = (uses, evictable);
                        }
                    }
                    Event::SetEvictable(slot, evictable) => {
                        if let Some((last_use, _, can)) = model[slot].as_mut() {
                            lru.set_evictable(slot, *last_use, evictable);
                            *can = evictable;
                        }
                    }
                    Event::Remove(slot) => {
                        if let Some((last_use, ..)) = model[slot].take() {
                            lru.remove(last_use);
                        }
                    }
                    Event::PopVictim => {
                        let expected = (0..8)
                            .filter_map(|slot| model[slot].map(|(_, used, can)| (slot, used, can)))
                            .filter(|&(_, _, can)| can)
                            .min_by_key(|&(_, used, _)| used)
                            .map(|(slot, ..)| slot);
                        proptest::prop_assert_eq!(lru.pop_victim(), expected);
                        // The books take a victim out at once.
                        if let Some(slot) = expected
                            && let Some((last_use, ..)) = model[slot].take()
                        {
                            lru.remove(last_use);
                        }
                    }
                    Event::Insert(..) => {}
                }
            }
            // Last uses order entries as their uses did.
            let mut present: Vec<(LastUse, u64)> =
                model.iter().flatten().map(|&(last_use, used, _)| (last_use, used)).collect();
            present.sort_unstable();
            proptest::prop_assert!(present.windows(2).all(|w| w[0].1 < w[1].1));
        }
    }
}
