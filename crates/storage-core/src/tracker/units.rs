//! `Units`: a set of unit numbers (the range tracker's whole, aligned
//! blocks of bytes) as a sparse bitmap.
//!
//! Units are grouped in leaves of [`LEAF`]. A leaf wholly in the set is one
//! number in `full` (runs of such leaves are one range there, so a set of
//! every unit is one range, not 2^52 leaves); a leaf partly in the set has
//! its bits in `partial`. A leaf is in at most one of the two, and a leaf in
//! neither has no unit in the set.

use std::{collections::BTreeMap, ops::Range};

use super::spans::Spans;

/// Units per leaf.
const LEAF: u64 = 4096;
/// `LEAF` as a shift.
const LEAF_SHIFT: u32 = LEAF.trailing_zeros();
/// A unit's place within its leaf.
const MASK: u64 = LEAF - 1;
/// Words per leaf.
const WORDS: usize = 64;
/// The last leaf number.
const LAST_LEAF: u64 = u64::MAX >> LEAF_SHIFT;

/// The bits of a leaf partly in the set, with how many are set.
#[derive(Clone, Debug)]
struct Leaf {
    words: [u64; WORDS],
    count: u64,
}

/// The bits `lo..=hi` (within one word) of a word.
fn word_mask(lo: u64, hi: u64) -> u64 {
    (u64::MAX << lo) & (u64::MAX >> (63 - hi))
}

/// Index of the word holding bit `bit` of a leaf (always below `WORDS`).
fn word_of(bit: u64) -> usize {
    usize::try_from(bit / 64).unwrap_or(WORDS - 1)
}

impl Leaf {
    fn empty() -> Self {
        Self {
            words: [0; WORDS],
            count: 0,
        }
    }

    fn full() -> Self {
        Self {
            words: [u64::MAX; WORDS],
            count: LEAF,
        }
    }

    fn contains(&self, bit: u64) -> bool {
        self.words[word_of(bit)] >> (bit % 64) & 1 == 1
    }

    /// Sets (`on`) or clears bits `lo..=hi`.
    fn change(&mut self, lo: u64, hi: u64, on: bool) {
        for word in lo / 64..=hi / 64 {
            let first = if word == lo / 64 { lo % 64 } else { 0 };
            let last = if word == hi / 64 { hi % 64 } else { 63 };
            let mask = word_mask(first, last);
            let slot = &mut self.words[word_of(word * 64)];
            let before = u64::from(slot.count_ones());
            if on {
                *slot |= mask;
            } else {
                *slot &= !mask;
            }
            let after = u64::from(slot.count_ones());
            self.count = self.count + after - before;
        }
    }

    /// The first bit at or after `from` that is set (`on`) or clear.
    fn first_from(&self, from: u64, on: bool) -> Option<u64> {
        let start = word_of(from);
        for (index, &word) in self.words.iter().enumerate().skip(start) {
            let mut word = if on { word } else { !word };
            if index == start {
                word &= u64::MAX << (from % 64);
            }
            if word != 0 {
                return Some(index as u64 * 64 + u64::from(word.trailing_zeros()));
            }
        }
        None
    }

    /// The last bit at or before `upto` that is set (`on`) or clear.
    fn last_upto(&self, upto: u64, on: bool) -> Option<u64> {
        let stop = word_of(upto);
        for index in (0..=stop).rev() {
            let mut word = if on {
                self.words[index]
            } else {
                !self.words[index]
            };
            if index == stop {
                word &= u64::MAX >> (63 - upto % 64);
            }
            if word != 0 {
                return Some(index as u64 * 64 + 63 - u64::from(word.leading_zeros()));
            }
        }
        None
    }
}

/// The partial leaves by number, each boxed: the map's nodes stay small
/// (a search reads keys, not bits), and a leaf is never moved. A sorted
/// array searched faster, but a new leaf among thousands shifted all those
/// after it: quadratic for a sparse download of a large file.
#[derive(Clone, Debug, Default)]
struct Leaves(BTreeMap<u64, Box<Leaf>>);

impl Leaves {
    fn get(&self, number: u64) -> Option<&Leaf> {
        self.0.get(&number).map(|leaf| &**leaf)
    }

    fn get_mut(&mut self, number: u64) -> Option<&mut Leaf> {
        self.0.get_mut(&number).map(|leaf| &mut **leaf)
    }

    fn insert(&mut self, number: u64, leaf: Leaf) {
        self.0.insert(number, Box::new(leaf));
    }

    fn remove(&mut self, number: u64) {
        self.0.remove(&number);
    }

    /// Drops every leaf numbered within `numbers`.
    fn remove_range(&mut self, numbers: Range<u64>) {
        let doomed: Vec<u64> = self.0.range(numbers).map(|(&number, _)| number).collect();
        for number in doomed {
            self.0.remove(&number);
        }
    }

    /// The leaves numbered `from` or more, in order.
    fn from(&self, from: u64) -> impl Iterator<Item = (u64, &Leaf)> + '_ {
        self.0
            .range(from..)
            .map(|(&number, leaf)| (number, &**leaf))
    }

    fn last(&self) -> Option<(u64, &Leaf)> {
        self.0
            .last_key_value()
            .map(|(&number, leaf)| (number, &**leaf))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Units {
    /// Leaves wholly in the set.
    full: Spans,
    /// Leaves partly in the set: never empty, never full.
    partial: Leaves,
}

impl Units {
    /// Whether no unit is in the set (a download that never wrote a
    /// whole aligned unit: its tracker is its ranges alone).
    pub(crate) fn is_empty(&self) -> bool {
        self.partial.is_empty() && self.full.last().is_none()
    }

    pub(crate) fn contains(&self, unit: u64) -> bool {
        let leaf = unit >> LEAF_SHIFT;
        match self.partial.get(leaf) {
            Some(bits) => bits.contains(unit & MASK),
            None => self.full.get(leaf).is_some(),
        }
    }

    /// Adds (`on`) or takes out units `first..=last`.
    pub(crate) fn change(&mut self, first: u64, last: u64, on: bool) {
        let (first_leaf, last_leaf) = (first >> LEAF_SHIFT, last >> LEAF_SHIFT);
        let whole_from = if first & MASK == 0 {
            first_leaf
        } else {
            first_leaf + 1
        };
        let whole_to = if last & MASK == MASK {
            Some(last_leaf)
        } else {
            last_leaf.checked_sub(1)
        };
        if let Some(whole_to) = whole_to.filter(|&to| to >= whole_from) {
            self.change_leaves(whole_from, whole_to, on);
        }
        if whole_from != first_leaf {
            let hi = if first_leaf == last_leaf {
                last & MASK
            } else {
                MASK
            };
            self.change_bits(first_leaf, first & MASK, hi, on);
        }
        if whole_to != Some(last_leaf) && (last_leaf != first_leaf || whole_from == first_leaf) {
            self.change_bits(last_leaf, 0, last & MASK, on);
        }
    }

    /// Whole leaves `first..=last` in or out.
    fn change_leaves(&mut self, first: u64, last: u64, on: bool) {
        // `last` is at most `LAST_LEAF`, so `last + 1` does not overflow.
        let leaves = first..last + 1;
        self.partial.remove_range(leaves.clone());
        if on {
            self.full.insert(leaves);
        } else {
            self.full.remove(&leaves);
        }
    }

    /// Bits `lo..=hi` of leaf `leaf` in or out.
    fn change_bits(&mut self, leaf: u64, lo: u64, hi: u64, on: bool) {
        if let Some(bits) = self.partial.get_mut(leaf) {
            // The common case first: a leaf being filled.
            bits.change(lo, hi, on);
            if bits.count == 0 || bits.count == LEAF {
                self.settle(leaf);
            }
            return;
        }
        // Not partial: the leaf is full or empty, and becomes partial.
        let mut bits = match (self.full.get(leaf).is_some(), on) {
            (true, true) | (false, false) => return,
            (true, false) => {
                self.full.remove(&(leaf..leaf + 1));
                Leaf::full()
            }
            (false, true) => Leaf::empty(),
        };
        bits.change(lo, hi, on);
        self.partial.insert(leaf, bits);
        self.settle(leaf);
    }

    /// Moves a partial leaf that became empty or full out of `partial`.
    fn settle(&mut self, leaf: u64) {
        let count = self.partial.get(leaf).map_or(1, |bits| bits.count);
        if count == 0 {
            self.partial.remove(leaf);
        } else if count == LEAF {
            self.partial.remove(leaf);
            self.full.insert(leaf..leaf + 1);
        }
    }

    /// The first unit at or after `from` in the set.
    pub(crate) fn next_in(&self, from: u64) -> Option<u64> {
        let leaf = from >> LEAF_SHIFT;
        let by_full = self.full.next_after(leaf).map(|run| {
            if run.start <= leaf {
                from
            } else {
                run.start << LEAF_SHIFT
            }
        });
        let by_partial = self.partial.from(leaf).find_map(|(at, bits)| {
            let within = if at == leaf { from & MASK } else { 0 };
            bits.first_from(within, true)
                .map(|bit| (at << LEAF_SHIFT) | bit)
        });
        by_full.into_iter().chain(by_partial).min()
    }

    /// The first unit at or after `from` not in the set (`None`: every
    /// unit from `from` to `u64::MAX` is).
    pub(crate) fn next_out(&self, from: u64) -> Option<u64> {
        let mut at = from;
        loop {
            let leaf = at >> LEAF_SHIFT;
            let Some(bits) = self.partial.get(leaf) else {
                let Some(run) = self.full.get(leaf) else {
                    return Some(at);
                };
                // `run.end` is past the last leaf when the run reaches it.
                if run.end > LAST_LEAF {
                    return None;
                }
                at = run.end << LEAF_SHIFT;
                continue;
            };
            if let Some(bit) = bits.first_from(at & MASK, false) {
                return Some((leaf << LEAF_SHIFT) | bit);
            }
            if leaf == LAST_LEAF {
                return None;
            }
            at = (leaf + 1) << LEAF_SHIFT;
        }
    }

    /// The last unit at or before `upto` not in the set (`None`: every
    /// unit from 0 to `upto` is).
    pub(crate) fn last_out(&self, upto: u64) -> Option<u64> {
        let mut at = upto;
        loop {
            let leaf = at >> LEAF_SHIFT;
            if let Some(run) = self.full.get(leaf) {
                if run.start == 0 {
                    return None;
                }
                at = (run.start << LEAF_SHIFT) - 1;
                continue;
            }
            let Some(bits) = self.partial.get(leaf) else {
                return Some(at);
            };
            if let Some(bit) = bits.last_upto(at & MASK, false) {
                return Some((leaf << LEAF_SHIFT) | bit);
            }
            if leaf == 0 {
                return None;
            }
            at = (leaf << LEAF_SHIFT) - 1;
        }
    }

    /// The highest unit in the set.
    pub(crate) fn last(&self) -> Option<u64> {
        let by_full = self
            .full
            .last()
            .map(|run| ((run.end - 1) << LEAF_SHIFT) | MASK);
        let by_partial = self.partial.last().and_then(|(leaf, bits)| {
            bits.last_upto(MASK, true)
                .map(|bit| (leaf << LEAF_SHIFT) | bit)
        });
        by_full.max(by_partial)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Units near `base`, within `span`, set and cleared at random, checked
    /// against a `BTreeSet` — across leaf boundaries and at the top of u64.
    fn check(base: u64, span: u64, ops: &[(bool, u64, u64)], probes: &[u64]) {
        let top = base + (span - 1);
        let mut units = Units::default();
        let mut model = BTreeSet::new();
        for &(on, a, len) in ops {
            let first = base + a % span;
            let last = first.saturating_add(len % 5000).min(top);
            units.change(first, last, on);
            for unit in first..=last {
                if on {
                    model.insert(unit);
                } else {
                    model.remove(&unit);
                }
            }
        }
        for &probe in probes {
            let at = base + probe % span;
            assert_eq!(units.contains(at), model.contains(&at), "contains {at}");
            assert_eq!(
                units.next_in(at),
                model.range(at..).next().copied(),
                "next_in {at}"
            );
            let next_out = (at..=top).find(|unit| !model.contains(unit));
            if let Some(expected) = next_out {
                assert_eq!(units.next_out(at), Some(expected), "next_out {at}");
            }
            let last_out = (base..=at).rev().find(|unit| !model.contains(unit));
            if let Some(expected) = last_out {
                assert_eq!(units.last_out(at), Some(expected), "last_out {at}");
            }
        }
        assert_eq!(units.last(), model.iter().next_back().copied());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn units_agree_with_a_set(
            ops in proptest::collection::vec((proptest::bool::weighted(0.7), any::<u64>(), any::<u64>()), 0..40),
            probes in proptest::collection::vec(any::<u64>(), 1..40),
        ) {
            check(0, 9_000, &ops, &probes);
            check(3 * LEAF - 4_500, 9_000, &ops, &probes);
            check(u64::MAX - 8_999, 9_000, &ops, &probes);
        }
    }

    #[test]
    fn every_unit_is_one_run_and_clears_in_the_middle() {
        let mut units = Units::default();
        units.change(0, u64::MAX, true);
        assert!(units.contains(u64::MAX) && units.contains(0));
        assert_eq!(units.next_out(0), None);
        assert_eq!(units.last(), Some(u64::MAX));
        units.change(5 * LEAF + 3, 9 * LEAF, false);
        assert_eq!(units.next_out(0), Some(5 * LEAF + 3));
        assert_eq!(units.next_in(5 * LEAF + 3), Some(9 * LEAF + 1));
        assert_eq!(units.last_out(u64::MAX), Some(9 * LEAF));
        assert_eq!(units.last_out(5 * LEAF + 2), None);
        units.change(0, u64::MAX, false);
        assert_eq!(units.next_in(0), None);
        assert_eq!(units.last(), None);
        assert!(units.partial.is_empty() && units.full.len() == 0);
    }
}
