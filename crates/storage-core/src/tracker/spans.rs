//! `Spans`: the range tracker's store — sorted, disjoint byte ranges in
//! blocks of bounded size.
//!
//! A download written out of order holds thousands of fragments, and every
//! write inserts one range. In a B-tree of ranges (`rangemap`) that insert
//! takes two range descents and a node insert (~0.7 µs at 16k fragments on
//! the bench machine). Here the search is a binary search over the blocks'
//! last ends, then one within a block, and an insert moves at most one
//! block's entries (~0.15 µs; see the crate README).

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
    /// From sorted, disjoint, non-touching, non-empty ranges.
    pub(crate) fn from_sorted(ranges: &[Range<u64>]) -> Self {
        let blocks: Vec<Vec<Range<u64>>> = ranges.chunks(BLOCK / 2).map(<[_]>::to_vec).collect();
        let ends = blocks.iter().map(|block| end_of(block)).collect();
        Self {
            blocks,
            ends,
            len: ranges.len(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn first(&self) -> Option<&Range<u64>> {
        self.blocks.first().and_then(|block| block.first())
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

    /// The ranges overlapping `range`, in order (not clipped).
    pub(crate) fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = &Range<u64>> + '_ {
        let (block, index) = self
            .locate(range.start, true)
            .unwrap_or((self.blocks.len(), 0));
        self.blocks[block..]
            .iter()
            .enumerate()
            .flat_map(move |(i, ranges)| &ranges[if i == 0 { index } else { 0 }..])
            .take_while(move |candidate| candidate.start < range.end)
    }

    /// Every range, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Range<u64>> + '_ {
        self.blocks.iter().flatten()
    }

    /// Takes `range` (non-empty) out of every range. Rebuilds the blocks: a
    /// removal is rare (a commit that cuts the contents).
    pub(crate) fn remove(&mut self, range: &Range<u64>) {
        let kept: Vec<Range<u64>> = self
            .iter()
            .flat_map(|held| {
                let left =
                    (held.start < range.start).then(|| held.start..held.end.min(range.start));
                let right = (held.end > range.end).then(|| held.start.max(range.end)..held.end);
                left.into_iter().chain(right)
            })
            .filter(|piece| piece.start < piece.end)
            .collect();
        *self = Self::from_sorted(&kept);
    }
}

impl PartialEq for Spans {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Spans {}
