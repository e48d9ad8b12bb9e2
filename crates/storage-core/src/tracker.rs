//! `RangeTracker`: which bytes of a resource have landed.

mod spans;

use std::ops::Range;

use rangemap::RangeSet;
use spans::Spans;

/// The set of byte ranges of a resource that hold written data.
///
/// Touching ranges are merged, so every query is a binary search in the
/// number of disjoint fragments. The store is this crate's own (`Spans`:
/// blocks of at most 128 sorted ranges): an out-of-order download inserts
/// one range per write into thousands of fragments, about five times
/// faster than into `rangemap`'s B-tree, which stays the type of the public
/// API ([`RangeSet`], in `DriverState`) and the model the tests check the
/// store against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeTracker {
    spans: Spans,
}

impl RangeTracker {
    /// An empty tracker: no byte available.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `range` available. An empty range changes nothing.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start < range.end {
            self.spans.insert(range);
        }
    }

    /// Marks `range` unavailable again (bytes cut off by a truncation).
    pub fn remove(&mut self, range: Range<u64>) {
        if range.start < range.end {
            self.spans.remove(&range);
        }
    }

    /// Whether every byte of `range` is available. An empty range is covered;
    /// an inverted one is not.
    #[must_use]
    pub fn covers(&self, range: &Range<u64>) -> bool {
        if range.start >= range.end {
            return range.start == range.end;
        }
        // Touching ranges are merged, so one stored range holds all of it or
        // the range has a gap.
        self.spans
            .get(range.start)
            .is_some_and(|stored| stored.end >= range.end)
    }

    /// The first unavailable sub-range of `range`, if any.
    #[must_use]
    pub fn first_gap(&self, range: &Range<u64>) -> Option<Range<u64>> {
        if range.start >= range.end {
            return None;
        }
        let mut from = range.start;
        for held in self.spans.overlapping(range.clone()) {
            if held.start > from {
                return Some(from..held.start.min(range.end));
            }
            from = from.max(held.end);
            if from >= range.end {
                return None;
            }
        }
        Some(from..range.end)
    }

    /// Whether any byte of `range` is available.
    #[must_use]
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        range.start < range.end && self.spans.overlapping(range.clone()).next().is_some()
    }

    /// The available ranges that overlap `range`, in order (not clipped).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        self.spans.overlapping(range).cloned()
    }

    /// One past the highest available byte (0 when nothing is available).
    #[must_use]
    pub fn extent(&self) -> u64 {
        self.spans.last().map_or(0, |last| last.end)
    }

    /// Length of the available run that starts at byte 0 (0 when byte 0 is
    /// missing): every range ending at or below it is covered.
    #[must_use]
    pub fn prefix_end(&self) -> u64 {
        self.spans
            .first()
            .filter(|first| first.start == 0)
            .map_or(0, |first| first.end)
    }

    /// Number of disjoint available fragments.
    #[must_use]
    pub fn fragments(&self) -> usize {
        self.spans.len()
    }

    /// The available ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.spans.iter().cloned()
    }

    /// The available ranges as a [`RangeSet`] (a copy).
    #[must_use]
    pub fn to_set(&self) -> RangeSet<u64> {
        self.iter().collect()
    }
}

impl From<RangeSet<u64>> for RangeTracker {
    fn from(ranges: RangeSet<u64>) -> Self {
        // A `RangeSet` is sorted, disjoint and merges touching ranges.
        let ranges: Vec<Range<u64>> = ranges.iter().cloned().collect();
        Self {
            spans: Spans::from_sorted(&ranges),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty_tracker_covers_only_empty_ranges() {
        let tracker = RangeTracker::new();
        assert!(tracker.covers(&(5..5)));
        assert!(!tracker.covers(&(0..1)));
        assert_eq!(tracker.extent(), 0);
        assert_eq!(tracker.prefix_end(), 0);
        assert_eq!(tracker.first_gap(&(0..10)), Some(0..10));
    }

    #[test]
    fn touching_inserts_merge_into_one_fragment() {
        let mut tracker = RangeTracker::new();
        tracker.insert(10..20);
        tracker.insert(0..10);
        tracker.insert(20..30);
        assert_eq!(tracker.fragments(), 1);
        assert!(tracker.covers(&(0..30)));
        assert_eq!(tracker.prefix_end(), 30);
    }

    #[test]
    fn gap_is_reported_and_blocks_coverage() {
        let mut tracker = RangeTracker::new();
        tracker.insert(0..10);
        tracker.insert(20..30);
        assert!(!tracker.covers(&(5..25)));
        assert!(tracker.covers(&(20..30)));
        assert_eq!(tracker.first_gap(&(0..30)), Some(10..20));
        assert_eq!(tracker.first_gap(&(12..15)), Some(12..15));
        assert_eq!(tracker.first_gap(&(20..30)), None);
        assert_eq!(tracker.extent(), 30);
        assert_eq!(tracker.prefix_end(), 10);
    }

    #[test]
    fn inverted_range_is_never_covered() {
        let mut tracker = RangeTracker::new();
        tracker.insert(0..100);
        #[allow(clippy::reversed_empty_ranges, reason = "the case under test")]
        let inverted = 10..5;
        assert!(!tracker.covers(&inverted));
        assert_eq!(tracker.first_gap(&inverted), None);
    }

    #[test]
    fn remove_cuts_a_hole_and_shrinks_extent() {
        let mut tracker = RangeTracker::new();
        tracker.insert(0..100);
        tracker.remove(40..50);
        assert_eq!(tracker.first_gap(&(0..100)), Some(40..50));
        tracker.remove(60..u64::MAX);
        assert_eq!(tracker.extent(), 60);
    }

    #[test]
    fn ranges_at_the_top_of_u64_work() {
        let mut tracker = RangeTracker::new();
        tracker.insert(u64::MAX - 10..u64::MAX);
        assert!(tracker.covers(&(u64::MAX - 5..u64::MAX)));
        assert_eq!(tracker.extent(), u64::MAX);
        assert_eq!(tracker.prefix_end(), 0);
    }

    /// A bitmap over a small universe: the model the tracker is checked against.
    const UNIVERSE: u64 = 96;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let range = (0..=UNIVERSE, 0..=UNIVERSE).prop_map(|(a, b)| (a.min(b), a.max(b)));
        prop_oneof![
            3 => range.clone().prop_map(|(a, b)| Op::Insert(a, b)),
            1 => range.prop_map(|(a, b)| Op::Remove(a, b)),
        ]
    }

    fn model_gap(bits: &[bool], range: Range<u64>) -> Option<Range<u64>> {
        let start = range
            .clone()
            .find(|&i| !bits[usize::try_from(i).unwrap()])?;
        let end = (start..range.end)
            .find(|&i| bits[usize::try_from(i).unwrap()])
            .unwrap_or(range.end);
        Some(start..end)
    }

    /// Inserts and removes that make thousands of fragments (many blocks,
    /// splits, merges across blocks), checked against `rangemap`.
    fn many_fragments() -> impl Strategy<Value = Vec<(bool, u64, u64)>> {
        proptest::collection::vec(
            (proptest::bool::weighted(0.97), 0..200_000u64, 1..300u64),
            1..3000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn tracker_agrees_with_rangemap_over_thousands_of_fragments(ops in many_fragments()) {
            let mut tracker = RangeTracker::new();
            let mut model = RangeSet::new();
            for (insert, start, len) in ops {
                if insert {
                    tracker.insert(start..start + len);
                    model.insert(start..start + len);
                } else {
                    tracker.remove(start..start + len * 100);
                    model.remove(start..start + len * 100);
                }
            }
            prop_assert!(tracker.iter().eq(model.iter().cloned()));
            prop_assert_eq!(tracker.fragments(), model.len());
            prop_assert_eq!(tracker.to_set(), model.clone());
            for at in (0..200_500u64).step_by(997) {
                let probe = at..at + 700;
                prop_assert_eq!(tracker.overlaps(&probe), model.overlaps(&probe));
                prop_assert_eq!(tracker.first_gap(&probe), model.gaps(&probe).next());
                let covered = model.gaps(&probe).next().is_none();
                prop_assert_eq!(tracker.covers(&probe), covered);
                prop_assert!(tracker.overlapping(probe.clone()).eq(model.overlapping(&probe).cloned()));
            }
            prop_assert_eq!(RangeTracker::from(model.clone()), tracker);
        }
    }

    proptest! {
        #[test]
        fn tracker_agrees_with_a_bitmap(
            ops in proptest::collection::vec(op(), 0..40),
            queries in proptest::collection::vec((0..=UNIVERSE, 0..=UNIVERSE), 1..20),
        ) {
            let mut tracker = RangeTracker::new();
            let mut bits = vec![false; usize::try_from(UNIVERSE).unwrap()];
            for op in ops {
                match op {
                    Op::Insert(a, b) => {
                        tracker.insert(a..b);
                        for i in a..b { bits[usize::try_from(i).unwrap()] = true; }
                    }
                    Op::Remove(a, b) => {
                        tracker.remove(a..b);
                        for i in a..b { bits[usize::try_from(i).unwrap()] = false; }
                    }
                }
            }
            for (a, b) in queries {
                let (a, b) = (a.min(b), a.max(b));
                let covered = (a..b).all(|i| bits[usize::try_from(i).unwrap()]);
                prop_assert_eq!(tracker.covers(&(a..b)), covered, "covers {}..{}", a, b);
                prop_assert_eq!(tracker.first_gap(&(a..b)), model_gap(&bits, a..b));
            }
            let extent = bits.iter().rposition(|&b| b).map_or(0, |i| i as u64 + 1);
            prop_assert_eq!(tracker.extent(), extent);
            let prefix = bits.iter().position(|&b| !b).map_or(UNIVERSE, |i| i as u64);
            prop_assert_eq!(tracker.prefix_end(), prefix);
        }
    }
}
