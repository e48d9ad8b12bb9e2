//! `RangeTracker`: which bytes of a resource have landed.

use std::ops::Range;

use rangemap::RangeSet;

/// The set of byte ranges of a resource that hold written data.
///
/// A thin layer over [`rangemap::RangeSet`] (which merges touching ranges, so
/// every query is a `O(log n)` B-tree lookup in the number of disjoint
/// fragments) with the questions the wait logic asks.
///
/// The two questions asked after every write — the extent and the end of
/// the run from byte 0 — are kept up to date on insert instead of walking
/// the tree each time (two `O(log n)` walks saved per write, which is what
/// a download written out of order into thousands of fragments pays).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeTracker {
    ranges: RangeSet<u64>,
    /// One past the highest available byte.
    extent: u64,
    /// The end of the available run from byte 0.
    prefix_end: u64,
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
            let (start, end) = (range.start, range.end);
            self.ranges.insert(range);
            self.extent = self.extent.max(end);
            // Only a range that reaches the run from 0 can lengthen it.
            if start <= self.prefix_end {
                self.prefix_end = self.ranges.get(&0).map_or(0, |first| first.end);
            }
        }
    }

    /// Marks `range` unavailable again (bytes cut off by a truncation).
    pub fn remove(&mut self, range: Range<u64>) {
        if range.start < range.end {
            self.ranges.remove(range);
            self.recount();
        }
    }

    /// Recomputes the kept answers from the ranges.
    fn recount(&mut self) {
        self.extent = self.ranges.last().map_or(0, |last| last.end);
        self.prefix_end = self
            .ranges
            .first()
            .filter(|first| first.start == 0)
            .map_or(0, |first| first.end);
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
        self.ranges
            .get(&range.start)
            .is_some_and(|stored| stored.end >= range.end)
    }

    /// The first unavailable sub-range of `range`, if any.
    #[must_use]
    pub fn first_gap(&self, range: &Range<u64>) -> Option<Range<u64>> {
        if range.start >= range.end {
            return None;
        }
        self.ranges.gaps(range).next()
    }

    /// Whether any byte of `range` is available.
    #[must_use]
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        range.start < range.end && self.ranges.overlaps(range)
    }

    /// The available ranges that overlap `range`, in order (not clipped).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.overlapping(range).cloned()
    }

    /// One past the highest available byte (0 when nothing is available).
    #[must_use]
    pub fn extent(&self) -> u64 {
        self.extent
    }

    /// Length of the available run that starts at byte 0 (0 when byte 0 is
    /// missing): every range ending at or below it is covered.
    #[must_use]
    pub fn prefix_end(&self) -> u64 {
        self.prefix_end
    }

    /// Number of disjoint available fragments.
    #[must_use]
    pub fn fragments(&self) -> usize {
        self.ranges.len()
    }

    /// The available ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// The underlying set.
    #[must_use]
    pub fn as_set(&self) -> &RangeSet<u64> {
        &self.ranges
    }
}

impl From<RangeSet<u64>> for RangeTracker {
    fn from(ranges: RangeSet<u64>) -> Self {
        let mut tracker = Self {
            ranges,
            extent: 0,
            prefix_end: 0,
        };
        tracker.recount();
        tracker
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
