//! `Table`: where the memory driver's chunks live — a sparse, two-level
//! table, so memory follows the bytes written, not the offsets used.
//!
//! A chunk's slot sits in a *page* of [`PAGE_CHUNKS`] slots (256 MiB of
//! address), made when a chunk of its range is first written; the top
//! level holds one pointer per page. A write at 1 TiB costs one page
//! (160 KiB) and a slab of chunks, plus 16 bytes of top level per 256 MiB
//! below it; nothing past [`MEM_MAX_LEN`](crate::MEM_MAX_LEN) is
//! addressable, so the top level never exceeds 16 MiB.

use std::ops::RangeInclusive;

use parking_lot::RwLock;
use storage_core::StorageResult;

use crate::{
    MEM_CHUNK_BYTES,
    chunk::{ChunkBytes, SLAB_CHUNKS},
    out_of_memory,
};

/// Chunk slots per page: 4096 × 64 KiB = 256 MiB of address.
pub(crate) const PAGE_CHUNKS: usize = 4096;

// A slab's chunks share a page of the table.
const _: () = assert!(PAGE_CHUNKS.is_multiple_of(SLAB_CHUNKS));

/// One chunk: `None` until a write into its slab (it reads as zeros).
pub(crate) type Chunk = RwLock<Option<ChunkBytes>>;

/// The pages; a missing page reads as zeros.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pages: Vec<Option<Box<[Chunk]>>>,
}

/// A page of empty slots, reporting allocation failure instead of aborting.
fn new_page(end: u64) -> StorageResult<Box<[Chunk]>> {
    let mut page = Vec::new();
    page.try_reserve_exact(PAGE_CHUNKS)
        .map_err(|_| out_of_memory("grow", end))?;
    page.resize_with(PAGE_CHUNKS, Chunk::default);
    Ok(page.into_boxed_slice())
}

impl Table {
    /// The slot of chunk `index`, if its page exists.
    pub(crate) fn chunk(&self, index: usize) -> Option<&Chunk> {
        let page = self.pages.get(index / PAGE_CHUNKS)?.as_ref()?;
        page.get(index % PAGE_CHUNKS)
    }

    /// Makes the chunks of `chunks` that do not exist, a slab at a time
    /// (their pages must exist; `end`: the write's byte end, for errors).
    /// A write first makes every chunk it needs, so one that fails for
    /// memory has copied nothing. Locks one chunk at a time.
    pub(crate) fn prepare(&self, chunks: &RangeInclusive<usize>, end: u64) -> StorageResult<()> {
        for index in chunks.clone() {
            let slot = self
                .chunk(index)
                .ok_or_else(|| out_of_memory("grow", end))?;
            if slot.read().is_none() {
                self.fill_slab(index, end)?;
            }
        }
        Ok(())
    }

    /// Copies `piece` into chunk `index` at `within`, first making the
    /// chunks of its slab if it does not exist (its page must exist). A
    /// write of more than one chunk calls `prepare` first, so that it
    /// copies nothing unless every chunk is there.
    pub(crate) fn write_into(
        &self,
        index: usize,
        within: usize,
        piece: &[u8],
        end: u64,
    ) -> StorageResult<()> {
        let slot = self
            .chunk(index)
            .ok_or_else(|| out_of_memory("grow", end))?;
        let mut chunk = slot.write();
        if chunk.is_none() {
            drop(chunk);
            self.fill_slab(index, end)?;
            chunk = slot.write();
        }
        // Filled above, and only a cut (under the table's write lock,
        // which excludes `&self`) empties a slot.
        let chunk = chunk.as_mut().ok_or_else(|| out_of_memory("grow", end))?;
        chunk.write(within, piece);
        Ok(())
    }

    /// Gives every empty slot of `index`'s slab a chunk of one new slab.
    /// (Slots empty and fill by whole slabs — see `cut` — so no chunk of
    /// the new slab is left over but when writers race here.)
    fn fill_slab(&self, index: usize, end: u64) -> StorageResult<()> {
        let first = index - index % SLAB_CHUNKS;
        let mut fresh = ChunkBytes::slab(end)?.into_iter();
        for number in first..first + SLAB_CHUNKS {
            if let Some(slot) = self.chunk(number) {
                let mut chunk = slot.write();
                if chunk.is_none() {
                    *chunk = fresh.next();
                }
            }
        }
        Ok(())
    }

    /// Whether every page holding `chunks` exists.
    pub(crate) fn covers(&self, chunks: &RangeInclusive<usize>) -> bool {
        (chunks.start() / PAGE_CHUNKS..=chunks.end() / PAGE_CHUNKS)
            .all(|page| self.pages.get(page).is_some_and(Option::is_some))
    }

    /// Makes the pages holding `chunks` (`end`: the byte end, for errors).
    pub(crate) fn add_pages(
        &mut self,
        chunks: &RangeInclusive<usize>,
        end: u64,
    ) -> StorageResult<()> {
        let last = chunks.end() / PAGE_CHUNKS;
        if last >= self.pages.len() {
            self.pages
                .try_reserve(last + 1 - self.pages.len())
                .map_err(|_| out_of_memory("grow", end))?;
            self.pages.resize_with(last + 1, || None);
        }
        for page in chunks.start() / PAGE_CHUNKS..=last {
            if self.pages[page].is_none() {
                self.pages[page] = Some(new_page(end)?);
            }
        }
        Ok(())
    }

    /// Room in the top level for `len` bytes (a hint; no page is made).
    pub(crate) fn reserve(&mut self, len: u64) -> StorageResult<()> {
        let pages = usize::try_from(len.div_ceil((PAGE_CHUNKS * MEM_CHUNK_BYTES) as u64))
            .map_err(|_| out_of_memory("reserve", len))?;
        self.pages
            .try_reserve(pages)
            .map_err(|_| out_of_memory("reserve", len))
    }

    /// Bytes of address the pages made so far cover.
    pub(crate) fn covered_bytes(&self) -> u64 {
        let pages = self.pages.iter().filter(|page| page.is_some()).count();
        pages as u64 * (PAGE_CHUNKS * MEM_CHUNK_BYTES) as u64
    }

    /// Zeros every byte from `from` on: the chunks past it are emptied, and
    /// the slabs and pages wholly past it go. (A slab partly before the cut
    /// lives on anyway, so its chunks past the cut keep their room for the
    /// next write instead of a new slab being made beside it.)
    pub(crate) fn cut(&mut self, from: u64) {
        let chunk_bytes = MEM_CHUNK_BYTES as u64;
        let Ok(first_dropped) = usize::try_from(from.div_ceil(chunk_bytes)) else {
            return;
        };
        for (number, page) in self.pages.iter_mut().enumerate() {
            let Some(slots) = page else { continue };
            let first = number * PAGE_CHUNKS;
            if first >= first_dropped {
                *page = None;
                continue;
            }
            for (index, slot) in slots
                .iter_mut()
                .enumerate()
                .skip(first_dropped - first)
                .map(|(at, slot)| (first + at, slot))
            {
                let chunk = slot.get_mut();
                if index - index % SLAB_CHUNKS >= first_dropped {
                    *chunk = None;
                } else if let Some(chunk) = chunk {
                    chunk.zero_from(0);
                }
            }
        }
        let within = usize::try_from(from % chunk_bytes).unwrap_or(0);
        let partial = usize::try_from(from / chunk_bytes).ok();
        if within > 0
            && let Some(index) = partial
            && let Some(Some(page)) = self.pages.get_mut(index / PAGE_CHUNKS)
            && let Some(chunk) = page[index % PAGE_CHUNKS].get_mut()
        {
            chunk.zero_from(within);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_made_only_where_chunks_are_wanted() {
        let mut table = Table::default();
        let far = 10 * PAGE_CHUNKS + 7;
        assert!(!table.covers(&(far..=far)));
        table.add_pages(&(far..=far), 0).unwrap();
        assert!(table.covers(&(far..=far)));
        assert!(table.chunk(far).is_some());
        assert!(table.chunk(0).is_none(), "no page below was made");
        assert_eq!(
            table.covered_bytes(),
            (PAGE_CHUNKS * MEM_CHUNK_BYTES) as u64
        );
        // Across a page boundary: both pages.
        let across = PAGE_CHUNKS - 1..=PAGE_CHUNKS;
        table.add_pages(&across, 0).unwrap();
        assert!(table.covers(&across));
    }

    #[test]
    fn a_cut_drops_chunks_and_pages_past_it_and_zeros_the_partial_chunk() {
        let mut table = Table::default();
        table.add_pages(&(0..=PAGE_CHUNKS + 1), 0).unwrap();
        for index in [0, 1, 2, PAGE_CHUNKS + 1] {
            table
                .write_into(index, 0, &vec![9; MEM_CHUNK_BYTES], 0)
                .unwrap();
        }
        table.cut(MEM_CHUNK_BYTES as u64 + 5);
        let chunk = table.chunk(1).unwrap().read();
        let bytes = chunk.as_ref().and_then(ChunkBytes::bytes).unwrap();
        assert!(bytes[..5].iter().all(|&b| b == 9));
        assert!(bytes[5..].iter().all(|&b| b == 0));
        drop(chunk);
        assert!(
            table.chunk(PAGE_CHUNKS + 1).is_none(),
            "the page past the cut went"
        );
        assert!(table.chunk(0).unwrap().read().is_some());
        // Chunk 2 shares a slab with the kept ones: emptied, its room kept.
        let emptied = table.chunk(2).unwrap().read();
        assert!(
            emptied
                .as_ref()
                .is_some_and(|chunk| chunk.bytes().is_none())
        );
    }
}
