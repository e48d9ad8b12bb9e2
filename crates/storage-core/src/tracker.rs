//! `RangeTracker`: which bytes of a resource have landed.

mod spans;
mod units;

use std::ops::Range;

use rangemap::RangeSet;
use spans::Spans;
use units::Units;

/// The tracker's unit: 1 KiB (as a shift).
const UNIT_SHIFT: u32 = 10;

/// The set of byte ranges of a resource that hold written data.
///
/// Two stores. A write of whole, aligned 1 KiB *units* — how downloads
/// write — that touches no range of the other store sets bits of a sparse
/// bitmap (`Units`), at a few nanoseconds whatever the number of
/// fragments; any other write is a byte-exact range in `Spans` (blocks of
/// sorted ranges, merged as they touch), and takes in the runs of units it
/// touches. So the stores never touch: every available run lies in one of
/// them, and a query walks one step per run. [`RangeSet`] (`rangemap`)
/// stays the type of the public API (`DriverState`) and the model the
/// tests check the tracker against.
#[derive(Clone, Debug)]
pub struct RangeTracker {
    /// log2 of the unit (tests use smaller units, to cross them often).
    shift: u32,
    /// Whole units written as such, touching no range of `edges`.
    units: Units,
    /// Every other write, byte-exact.
    edges: Spans,
    /// Where the available run from byte 0 ends, and one past the highest
    /// available byte (kept: both are asked on every write).
    prefix: u64,
    extent: u64,
}

impl Default for RangeTracker {
    fn default() -> Self {
        Self::with_shift(UNIT_SHIFT)
    }
}

impl PartialEq for RangeTracker {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RangeTracker {}

impl RangeTracker {
    /// An empty tracker: no byte available.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with_shift(shift: u32) -> Self {
        Self {
            shift,
            units: Units::default(),
            edges: Spans::default(),
            prefix: 0,
            extent: 0,
        }
    }

    /// The last unit (holding byte `u64::MAX - 1`).
    fn max_unit(&self) -> u64 {
        u64::MAX >> self.shift
    }

    fn unit_start(&self, unit: u64) -> u64 {
        unit << self.shift
    }

    /// One past the unit's last byte (`u64::MAX` for the last unit: no
    /// range reaches past it).
    fn unit_end(&self, unit: u64) -> u64 {
        if unit >= self.max_unit() {
            u64::MAX
        } else {
            (unit + 1) << self.shift
        }
    }

    /// The units wholly inside `range` (non-empty), as `first..=last`.
    fn whole_units(&self, range: &Range<u64>) -> Option<(u64, u64)> {
        let first = range.start >> self.shift;
        let last = (range.end - 1) >> self.shift;
        let from = if range.start == self.unit_start(first) {
            first
        } else {
            first + 1
        };
        let to = if range.end == self.unit_end(last) {
            Some(last)
        } else {
            last.checked_sub(1)
        };
        to.filter(|&to| to >= from).map(|to| (from, to))
    }

    /// The units `range` (non-empty) reaches without holding them whole:
    /// at most two, the first and the last.
    fn partial_units(&self, range: &Range<u64>) -> [Option<u64>; 2] {
        let first = range.start >> self.shift;
        let last = (range.end - 1) >> self.shift;
        let whole = self.whole_units(range);
        let holds = |unit: u64| whole.is_some_and(|(from, to)| from <= unit && unit <= to);
        [
            (!holds(first)).then_some(first),
            (last != first && !holds(last)).then_some(last),
        ]
    }

    /// Marks `range` available. An empty range changes nothing.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        match self.whole_units(&range) {
            // Exactly whole units, touching no range: bits.
            Some((from, to))
                if self.unit_start(from) == range.start
                    && self.unit_end(to) == range.end
                    && !self.edges_touch(&range) =>
            {
                self.units.change(from, to, true);
            }
            _ => {
                self.edges.insert(range.clone());
                self.absorb_touching_units(range.start);
            }
        }
        if range.start <= self.prefix {
            // All of `..prefix` and `range` is there: look on from their end.
            let from = self.prefix.max(range.end);
            self.prefix = self.next_missing(from, u64::MAX);
        }
        self.extent = self.extent.max(range.end);
    }

    /// Whether a range in `edges` overlaps or touches `range` (non-empty).
    fn edges_touch(&self, range: &Range<u64>) -> bool {
        self.edges
            .next_after(range.start.saturating_sub(1))
            .is_some_and(|held| held.start <= range.end)
    }

    /// Keeps the stores apart: no range in `edges` overlaps or touches a
    /// unit in `units`, so every available run lies wholly in one store
    /// and a walk crosses one run per step. Moves into `edges` every run of
    /// units that touches the range holding byte `at` (just inserted
    /// there). A unit moved never goes back; each moves once.
    fn absorb_touching_units(&mut self, at: u64) {
        if self.units.is_empty() {
            return;
        }
        while let Some(held) = self.edges.get(at) {
            // Units holding the byte before the range through the byte after.
            let low = held.start.saturating_sub(1) >> self.shift;
            let high = held.end.min(u64::MAX - 1) >> self.shift;
            let Some(unit) = self.units.next_in(low).filter(|&unit| unit <= high) else {
                return;
            };
            self.absorb_run(unit);
        }
    }

    /// Moves the run of units holding `unit` (in `units`) into `edges`.
    fn absorb_run(&mut self, unit: u64) {
        let first = self.units.last_out(unit).map_or(0, |out| out + 1);
        let last = self
            .units
            .next_out(unit)
            .map_or(self.max_unit(), |out| out - 1)
            .min(self.max_unit());
        self.units.change(first, last, false);
        self.edges
            .insert(self.unit_start(first)..self.unit_end(last));
    }

    /// Marks `range` unavailable again (bytes cut off by a truncation).
    pub fn remove(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        for unit in self.partial_units(&range).into_iter().flatten() {
            if self.units.contains(unit) {
                // Partly cut: its run becomes ranges, cut below.
                self.absorb_run(unit);
            }
        }
        if let Some((from, to)) = self.whole_units(&range) {
            self.units.change(from, to, false);
        }
        self.edges.remove(&range);
        self.prefix = self.prefix.min(range.start);
        if range.end >= self.extent {
            self.extent = self.find_extent();
        }
    }

    /// The first unavailable byte at or after `from`, looking no further
    /// than `limit` (a result at or past `limit`: none before it;
    /// `u64::MAX`: none at all).
    fn next_missing(&self, from: u64, limit: u64) -> u64 {
        let mut at = from;
        let no_units = self.units.is_empty();
        while at < limit {
            let unit = at >> self.shift;
            match if no_units {
                Some(unit)
            } else {
                self.units.next_out(unit)
            } {
                Some(out) if out == unit => {}
                Some(out) if out <= self.max_unit() => {
                    at = self.unit_start(out);
                    continue;
                }
                _ => return u64::MAX,
            }
            match self.edges.get(at) {
                Some(held) => at = held.end,
                None => return at,
            }
        }
        at
    }

    /// The first available byte at or after `from`.
    fn next_held(&self, from: u64) -> Option<u64> {
        if self.units.is_empty() {
            return self.edges.next_after(from).map(|held| held.start.max(from));
        }
        let by_units = self
            .units
            .next_in(from >> self.shift)
            .filter(|&unit| unit <= self.max_unit())
            .map(|unit| self.unit_start(unit).max(from));
        let by_edges = self.edges.next_after(from).map(|held| held.start.max(from));
        by_units
            .into_iter()
            .chain(by_edges)
            .min()
            .filter(|&at| at < u64::MAX)
    }

    /// Where the available run holding byte `at` starts.
    fn run_start(&self, at: u64) -> u64 {
        let mut start = at;
        while start > 0 {
            let before = start - 1;
            let unit = before >> self.shift;
            if self.units.contains(unit) {
                start = self
                    .units
                    .last_out(unit)
                    .map_or(0, |out| (out + 1) << self.shift);
                continue;
            }
            match self.edges.get(before) {
                Some(held) => start = held.start,
                None => break,
            }
        }
        start
    }

    /// Whether every byte of `range` is available. An empty range is covered;
    /// an inverted one is not.
    #[must_use]
    pub fn covers(&self, range: &Range<u64>) -> bool {
        if range.start >= range.end {
            return range.start == range.end;
        }
        range.end <= self.prefix || self.next_missing(range.start, range.end) >= range.end
    }

    /// The first unavailable sub-range of `range`, if any.
    #[must_use]
    pub fn first_gap(&self, range: &Range<u64>) -> Option<Range<u64>> {
        if range.start >= range.end {
            return None;
        }
        let start = self.next_missing(range.start, range.end);
        if start >= range.end {
            return None;
        }
        let end = self.next_held(start).unwrap_or(u64::MAX).min(range.end);
        Some(start..end)
    }

    /// Whether any byte of `range` is available.
    #[must_use]
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        range.start < range.end && self.next_held(range.start).is_some_and(|at| at < range.end)
    }

    /// The available ranges that overlap `range`, in order (not clipped).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut from = range.start;
        let mut first = true;
        std::iter::from_fn(move || {
            if from >= range.end {
                return None;
            }
            let Some(start) = self.next_held(from).filter(|&at| at < range.end) else {
                from = range.end;
                return None;
            };
            let run_start = if first && start == from {
                self.run_start(start)
            } else {
                start
            };
            first = false;
            let end = self.next_missing(start, u64::MAX);
            from = end;
            Some(run_start..end)
        })
    }

    /// Whether no range of `edges` overlaps or touches a unit in `units`.
    #[cfg(test)]
    fn stores_apart(&self) -> bool {
        self.edges.iter().all(|held| {
            let low = held.start.saturating_sub(1) >> self.shift;
            let high = held.end.min(u64::MAX - 1) >> self.shift;
            self.units.next_in(low).is_none_or(|unit| unit > high)
        })
    }

    /// One past the highest available byte (0 when nothing is available).
    #[must_use]
    pub fn extent(&self) -> u64 {
        self.extent
    }

    /// The extent, from the tiers.
    fn find_extent(&self) -> u64 {
        let by_units = self
            .units
            .last()
            .filter(|&unit| unit <= self.max_unit())
            .map(|unit| self.unit_end(unit));
        let by_edges = self.edges.last().map(|held| held.end);
        by_units.max(by_edges).unwrap_or(0)
    }

    /// Length of the available run that starts at byte 0 (0 when byte 0 is
    /// missing): every range ending at or below it is covered.
    #[must_use]
    pub fn prefix_end(&self) -> u64 {
        self.prefix
    }

    /// Number of disjoint available fragments (counted: one pass).
    #[must_use]
    pub fn fragments(&self) -> usize {
        self.iter().count()
    }

    /// The available ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let start = self.next_held(from)?;
            let end = self.next_missing(start, u64::MAX);
            from = end;
            Some(start..end)
        })
    }

    /// The available ranges as a [`RangeSet`] (a copy).
    #[must_use]
    pub fn to_set(&self) -> RangeSet<u64> {
        self.iter().collect()
    }
}

impl From<RangeSet<u64>> for RangeTracker {
    fn from(ranges: RangeSet<u64>) -> Self {
        let mut tracker = Self::new();
        for range in ranges.iter() {
            tracker.insert(range.clone());
        }
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
        for shift in [0, 3, UNIT_SHIFT] {
            let mut tracker = RangeTracker::with_shift(shift);
            tracker.insert(u64::MAX - 10..u64::MAX);
            assert!(tracker.covers(&(u64::MAX - 5..u64::MAX)));
            assert_eq!(tracker.extent(), u64::MAX);
            assert_eq!(tracker.prefix_end(), 0);
            tracker.insert(u64::MAX - 5000..u64::MAX - 20);
            assert_eq!(tracker.first_gap(&(0..u64::MAX)), Some(0..u64::MAX - 5000));
            assert_eq!(
                tracker.first_gap(&(u64::MAX - 5000..u64::MAX)),
                Some(u64::MAX - 20..u64::MAX - 10)
            );
            tracker.insert(0..u64::MAX);
            assert_eq!(tracker.prefix_end(), u64::MAX);
            assert_eq!(tracker.fragments(), 1);
            assert!(tracker.iter().eq(std::iter::once(0..u64::MAX)));
            tracker.remove(7..u64::MAX - 3);
            assert!(tracker.iter().eq([0..7, u64::MAX - 3..u64::MAX]));
            assert!(
                tracker
                    .overlapping(u64::MAX - 2..u64::MAX)
                    .eq(std::iter::once(u64::MAX - 3..u64::MAX))
            );
            assert_eq!(tracker.prefix_end(), 7);
            assert_eq!(tracker.extent(), u64::MAX);
        }
    }

    #[test]
    fn aligned_writes_are_bits_and_the_rest_stays_exact() {
        let mut tracker = RangeTracker::new();
        let unit = 1u64 << UNIT_SHIFT;
        // Aligned units out of order: bits only.
        for i in [5u64, 1, 3, 0, 2, 4] {
            tracker.insert(i * unit..(i + 1) * unit);
        }
        assert!(tracker.edges.iter().next().is_none());
        assert!(tracker.iter().eq(std::iter::once(0..6 * unit)));
        assert_eq!(tracker.prefix_end(), 6 * unit);
        // Another write is an exact range, and takes in the units it
        // touches: the stores never touch, so a run lies in one of them.
        tracker.insert(6 * unit + 10..7 * unit + 5);
        assert!(
            tracker
                .iter()
                .eq([0..6 * unit, 6 * unit + 10..7 * unit + 5])
        );
        tracker.insert(6 * unit..6 * unit + 10);
        assert!(tracker.iter().eq(std::iter::once(0..7 * unit + 5)));
        assert!(
            tracker
                .edges
                .iter()
                .cloned()
                .eq(std::iter::once(0..7 * unit + 5))
        );
        assert_eq!(tracker.units.next_in(0), None);
        // A unit written again whole, touching the range, joins it.
        tracker.insert(7 * unit..8 * unit);
        assert!(tracker.iter().eq(std::iter::once(0..8 * unit)));
        assert_eq!(tracker.units.next_in(0), None);
        assert_eq!(tracker.prefix_end(), 8 * unit);
        // Cutting inside a range splits it.
        tracker.remove(2 * unit + 1..2 * unit + 2);
        assert!(tracker.iter().eq([0..2 * unit + 1, 2 * unit + 2..8 * unit]));
        assert_eq!(tracker.prefix_end(), 2 * unit + 1);
        assert_eq!(tracker.fragments(), 2);
    }

    /// Whole units, then a unit written in two unaligned pieces, over and
    /// over: one run, which must lie in one store (found from outside: with
    /// the stores free to touch, every query walked every alternation).
    #[test]
    fn a_run_written_aligned_and_unaligned_in_turn_lies_in_one_store() {
        let mut tracker = RangeTracker::new();
        let unit = 1u64 << UNIT_SHIFT;
        for i in 0..2000u64 {
            let at = i * 2 * unit;
            tracker.insert(at..at + unit);
            tracker.insert(at + unit..at + 2 * unit - 1);
            tracker.insert(at + 2 * unit - 1..at + 2 * unit);
        }
        assert!(tracker.stores_apart());
        assert_eq!(tracker.edges.len(), 1);
        assert_eq!(tracker.units.next_in(0), None);
        assert!(tracker.covers(&(unit..4000 * unit)));
        // Cutting one byte inside splits it in two, still apart.
        tracker.remove(3 * unit..3 * unit + 1);
        assert!(tracker.stores_apart());
        assert_eq!(tracker.fragments(), 2);
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
        // Half of the writes aligned to 1 KiB and whole KiBs long, as a
        // download writes (the tracker's bits at its own unit), half not.
        let write = (
            proptest::bool::weighted(0.97),
            0..200_000u64,
            1..300u64,
            any::<bool>(),
        )
            .prop_map(|(insert, start, len, aligned)| {
                if aligned {
                    (insert, start / 1024 * 1024, len % 4 * 1024 + 1024)
                } else {
                    (insert, start, len)
                }
            });
        proptest::collection::vec(write, 1..3000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn tracker_agrees_with_rangemap_over_thousands_of_fragments(ops in many_fragments(), shift in prop_oneof![Just(0u32), Just(3), Just(6), Just(UNIT_SHIFT)]) {
            let mut tracker = RangeTracker::with_shift(shift);
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
            prop_assert!(tracker.stores_apart());
            prop_assert_eq!(tracker.extent(), model.iter().next_back().map_or(0, |last| last.end));
            let prefix = model.iter().next().filter(|first| first.start == 0).map_or(0, |first| first.end);
            prop_assert_eq!(tracker.prefix_end(), prefix);
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
            shift in 0u32..5,
        ) {
            let mut tracker = RangeTracker::with_shift(shift);
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
            prop_assert!(tracker.stores_apart());
            for (a, b) in queries {
                let (a, b) = (a.min(b), a.max(b));
                let covered = (a..b).all(|i| bits[usize::try_from(i).unwrap()]);
                prop_assert_eq!(tracker.covers(&(a..b)), covered, "covers {}..{}", a, b);
                prop_assert_eq!(tracker.first_gap(&(a..b)), model_gap(&bits, a..b));
                let overlaps = (a..b).any(|i| bits[usize::try_from(i).unwrap()]);
                prop_assert_eq!(tracker.overlaps(&(a..b)), overlaps, "overlaps {}..{}", a, b);
                // Each overlapping run is maximal: held throughout, missing at both ends.
                for run in tracker.overlapping(a..b) {
                    prop_assert!(run.start < b && run.end > a && run.start < run.end);
                    prop_assert!(run.clone().all(|i| bits[usize::try_from(i).unwrap()]));
                    prop_assert!(run.start == 0 || !bits[usize::try_from(run.start - 1).unwrap()]);
                    prop_assert!(run.end == UNIVERSE || !bits[usize::try_from(run.end).unwrap()]);
                }
            }
            let extent = bits.iter().rposition(|&b| b).map_or(0, |i| i as u64 + 1);
            prop_assert_eq!(tracker.extent(), extent);
            let prefix = bits.iter().position(|&b| !b).map_or(UNIVERSE, |i| i as u64);
            prop_assert_eq!(tracker.prefix_end(), prefix);
        }
    }
}
