//! `Spans`: the range tracker's byte-exact store — sorted, disjoint byte
//! ranges in blocks of bounded size (writes that are not whole aligned
//! units; whole units are bits in `Units`).
//!
//! A download written out of order holds thousands of fragments, and every
//! write inserts one range. In a B-tree of ranges (`rangemap`) that insert
//! takes two range descents and a node insert (~0.7 µs at 16k fragments on
//! the bench machine). Here the search is a binary search over the blocks'
//! last ends, then one within a block, and an insert moves at most one
//! block's entries (~0.1 µs; see the crate README).

use std::ops::Range;

/// Most ranges a block holds before it splits in two.
const BLOCK: usize = 128;

/// Sorted, disjoint, non-touching (`a.end < b.start`), non-empty ranges,
/// in blocks of at most [`BLOCK`], with each block's last end kept beside
/// it for the search.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spans {
    /// Never an empty block; all blocks together are sorted.
    blocks: Vec<Vec<Range<u64>>>,
    /// `ends[i]` is the end of the last range of `blocks[i]`.
    ends: Vec<u64>,
    /// Ranges in all blocks.
    len: usize,
}

/// The end of a block's last range (blocks are never empty).
fn end_of(block: &[Range<u64>]) -> u64 {
    block.last().map_or(0, |last| last.end)
}

impl Spans {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn last(&self) -> Option<&Range<u64>> {
        self.blocks.last().and_then(|block| block.last())
    }

    /// (block, index) of the first range whose end is at least `at`, or
    /// with `strict` greater than `at`; `None` when there is none.
    fn locate(&self, at: u64, strict: bool) -> Option<(usize, usize)> {
        let before = |end: u64| if strict { end <= at } else { end < at };
        let block = self.ends.partition_point(|&end| before(end));
        let ranges = self.blocks.get(block)?;
        Some((block, ranges.partition_point(|range| before(range.end))))
    }

    /// Adds `range` (non-empty), merged with every range it overlaps or touches.
    pub(crate) fn insert(&mut self, range: Range<u64>) {
        let Some((block, at)) = self.locate(range.start, false) else {
            // Past every range, touching none.
            self.len += 1;
            match (self.blocks.last_mut(), self.ends.last_mut()) {
                (Some(last), Some(end)) if last.len() < BLOCK => {
                    *end = range.end;
                    last.push(range);
                }
                _ => {
                    self.ends.push(range.end);
                    self.blocks.push(vec![range]);
                }
            }
            return;
        };
        let ranges = &mut self.blocks[block];
        if ranges[at].start > range.end {
            // Between two ranges, touching neither.
            ranges.insert(at, range);
            self.len += 1;
            self.split_if_full(block);
            return;
        }
        // `ranges[at]` touches `range`: merge it and every later range that
        // touches the growing union.
        let start = ranges[at].start.min(range.start);
        let mut end = range.end;
        let mut stop = at;
        while stop < ranges.len() && ranges[stop].start <= end {
            end = end.max(ranges[stop].end);
            stop += 1;
        }
        let reached_block_end = stop == ranges.len();
        ranges[at] = start..end;
        ranges.drain(at + 1..stop);
        self.len -= stop - at - 1;
        if reached_block_end {
            end = self.merge_following(block, end);
            let ranges = &mut self.blocks[block];
            let last = ranges.len() - 1;
            ranges[last].end = end;
        }
        self.ends[block] = end_of(&self.blocks[block]);
    }

    /// Takes from the blocks after `block` every range touching `..end`,
    /// dropping blocks left empty; the end of the union.
    fn merge_following(&mut self, block: usize, mut end: u64) -> u64 {
        let next = block + 1;
        while let Some(following) = self.blocks.get_mut(next) {
            let mut taken = 0;
            while taken < following.len() && following[taken].start <= end {
                end = end.max(following[taken].end);
                taken += 1;
            }
            following.drain(..taken);
            self.len -= taken;
            if !following.is_empty() {
                break;
            }
            self.blocks.remove(next);
            self.ends.remove(next);
        }
        end
    }

    fn split_if_full(&mut self, block: usize) {
        if self.blocks[block].len() > BLOCK {
            let upper = self.blocks[block].split_off(BLOCK / 2);
            self.ends[block] = end_of(&self.blocks[block]);
            self.ends.insert(block + 1, end_of(&upper));
            self.blocks.insert(block + 1, upper);
        }
    }

    /// The range holding byte `at`, if any.
    pub(crate) fn get(&self, at: u64) -> Option<&Range<u64>> {
        let (block, index) = self.locate(at, true)?;
        let range = &self.blocks[block][index];
        (range.start <= at).then_some(range)
    }

    /// Every range, in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Range<u64>> + '_ {
        self.blocks.iter().flatten()
    }

    /// The first range that ends after `at`, if any.
    pub(crate) fn next_after(&self, at: u64) -> Option<Range<u64>> {
        let (block, index) = self.locate(at, true)?;
        Some(self.blocks[block][index].clone())
    }

    /// Takes `range` (non-empty) out of every range, in place.
    pub(crate) fn remove(&mut self, range: &Range<u64>) {
        let Some((mut block, mut index)) = self.locate(range.start, true) else {
            return;
        };
        let first = self.blocks[block][index].clone();
        if first.start >= range.end {
            return;
        }
        if first.start < range.start {
            self.blocks[block][index].end = range.start;
            if first.end > range.end {
                // Cut in two.
                self.blocks[block].insert(index + 1, range.end..first.end);
                self.len += 1;
                self.ends[block] = end_of(&self.blocks[block]);
                self.split_if_full(block);
                return;
            }
            index += 1;
        }
        // Ranges from `index` on start at or after `range.start`: drop those
        // that end by `range.end`, and trim the one that reaches past it.
        while block < self.blocks.len() {
            let ranges = &mut self.blocks[block];
            let stop = index + ranges[index..].partition_point(|held| held.end <= range.end);
            ranges.drain(index..stop);
            self.len -= stop - index;
            if let Some(next) = ranges.get_mut(index) {
                next.start = next.start.max(range.end);
                self.ends[block] = end_of(ranges);
                return;
            }
            if ranges.is_empty() {
                self.blocks.remove(block);
                self.ends.remove(block);
            } else {
                self.ends[block] = end_of(ranges);
                block += 1;
            }
            index = 0;
        }
    }
}
