//! `ChunkBytes`: one chunk's [`MEM_CHUNK_BYTES`] bytes, starting at a page
//! boundary, made [`SLAB_CHUNKS`] at a time from one allocation.
//!
//! A heap allocation starts wherever the allocator puts it: chunks
//! allocated one by one start at a different offset within a page each, and
//! a 4 KiB read at a page-aligned offset of the contents then spans two
//! pages of memory almost evenly. The hardware prefetcher stops at a page
//! boundary, so such reads ran at 0.85–0.87 of a raw `Vec` (whose data
//! starts 16 bytes into a page), where chunks starting at a page boundary
//! ran at 0.95–0.98 (`BENCHMARKS.md`). A chunk aligned inside an allocation
//! of its own costs a page more each (the allocator's header sits on a page
//! of its own), and that extra page fault per 16 cost fresh writes 4–5%; so
//! a *slab* of [`SLAB_CHUNKS`] chunks is allocated at once, one page larger
//! than they are, and cut at page boundaries into chunks that are owned,
//! locked and dropped each on its own. The cutting is `bytes::BytesMut`'s
//! (`split_off`: disjoint views of one buffer, each freely mutable, the
//! buffer freed with the last), so this crate holds no `unsafe`.
//!
//! A chunk is zeroed when first written (its bytes written once each,
//! zeros or the piece written), not when its slab is made: a lone write
//! makes one chunk resident, not its slab, whether the allocator maps the
//! slab fresh or hands back memory it recycles. Until then the chunk reads
//! as zeros, and a cut empties a chunk again the same way, keeping its
//! place in the slab for the next write rather than making a new slab.

use bytes::{Bytes, BytesMut};
use storage_core::StorageResult;

use crate::{MEM_CHUNK_BYTES, out_of_memory};

/// The page size chunks are aligned to (4 KiB on the platforms this runs
/// on; with a larger page a read across its boundary is a little slower,
/// never wrong).
const PAGE: usize = 4096;

/// Chunks made by one allocation: 16 × 64 KiB = 1 MiB, and a page.
pub(crate) const SLAB_CHUNKS: usize = 16;

/// One chunk: room for [`MEM_CHUNK_BYTES`] bytes in a slab, empty (all
/// zeros) until first written.
#[derive(Debug)]
pub(crate) struct ChunkBytes(BytesMut);

/// The distance from `at` to the next page boundary.
fn to_page_boundary(at: *const u8) -> usize {
    at.addr().wrapping_neg() % PAGE
}

#[cfg(test)]
thread_local! {
    /// Slabs made by this thread, for the tests.
    pub(crate) static SLABS_MADE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Slabs this thread may still make before allocation fails (`None`:
    /// no limit), for the tests.
    pub(crate) static SLABS_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl ChunkBytes {
    /// [`SLAB_CHUNKS`] empty chunks from one allocation, each starting at a
    /// page boundary (`end`: the write's byte end, for the error).
    pub(crate) fn slab(end: u64) -> StorageResult<Vec<Self>> {
        #[cfg(test)]
        {
            if SLABS_LEFT.get() == Some(0) {
                return Err(out_of_memory("grow", end));
            }
            SLABS_LEFT.set(SLABS_LEFT.get().map(|left| left - 1));
            SLABS_MADE.set(SLABS_MADE.get() + 1);
        }
        let mut room: Vec<u8> = Vec::new();
        room.try_reserve_exact(SLAB_CHUNKS * MEM_CHUNK_BYTES + PAGE)
            .map_err(|_| out_of_memory("grow", end))?;
        let start = to_page_boundary(room.as_ptr());
        // Unique and empty (just made): the same buffer and capacity come
        // back, not a copy.
        let Ok(mut whole) = Bytes::from(room).try_into_mut() else {
            return Err(out_of_memory("grow", end));
        };
        let mut rest = whole.split_off(start);
        drop(whole);
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(SLAB_CHUNKS)
            .map_err(|_| out_of_memory("grow", end))?;
        for _ in 0..SLAB_CHUNKS {
            let next = rest.split_off(MEM_CHUNK_BYTES);
            chunks.push(Self(std::mem::replace(&mut rest, next)));
        }
        Ok(chunks)
    }

    /// The chunk's bytes; `None` while it was never written (all zeros).
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        (self.0.len() == MEM_CHUNK_BYTES).then_some(&self.0[..])
    }

    /// Copies `piece` in at `within` (the first write of the chunk writes
    /// zeros around it, in its own room: nothing reallocates).
    pub(crate) fn write(&mut self, within: usize, piece: &[u8]) {
        if self.0.len() == MEM_CHUNK_BYTES {
            self.0[within..within + piece.len()].copy_from_slice(piece);
        } else {
            self.0.resize(within, 0);
            self.0.extend_from_slice(piece);
            self.0.resize(MEM_CHUNK_BYTES, 0);
        }
    }

    /// Zeros `n` bytes at `within` (nothing to do while it was never written).
    pub(crate) fn zero(&mut self, within: usize, n: usize) {
        if let Some(bytes) = self.0.get_mut(within..within + n) {
            bytes.fill(0);
        }
    }

    /// Zeros the bytes from `within` on (all of them: the chunk is empty
    /// again, and keeps its room).
    pub(crate) fn zero_from(&mut self, within: usize) {
        if within == 0 {
            self.0.clear();
        } else if let Some(tail) = self.0.get_mut(within..) {
            tail.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slab_is_empty_chunks_at_page_boundaries_written_apart() {
        let mut chunks = ChunkBytes::slab(0).unwrap();
        assert_eq!(chunks.len(), SLAB_CHUNKS);
        for (number, chunk) in chunks.iter_mut().enumerate() {
            assert!(chunk.bytes().is_none(), "a new chunk is empty");
            chunk.write(7, &[u8::try_from(number).unwrap(); 3]);
            let bytes = chunk.bytes().unwrap();
            assert_eq!(bytes.as_ptr().addr() % PAGE, 0);
            assert_eq!(bytes.len(), MEM_CHUNK_BYTES);
        }
        // Each wrote its own bytes only; one dropped leaves the others.
        drop(chunks.remove(3));
        for (number, chunk) in chunks.iter().enumerate() {
            let expected = u8::try_from(if number < 3 { number } else { number + 1 }).unwrap();
            let bytes = chunk.bytes().unwrap();
            assert!(bytes[..7].iter().chain(&bytes[10..]).all(|&b| b == 0));
            assert_eq!(bytes[7..10], [expected; 3]);
        }
        // Emptied, a chunk reads as never written and is zeroed again.
        let chunk = &mut chunks[0];
        let at = chunk.bytes().unwrap().as_ptr();
        chunk.zero_from(0);
        assert!(chunk.bytes().is_none());
        chunk.write(1, &[5]);
        assert_eq!(chunk.bytes().unwrap().as_ptr(), at, "same room");
        assert_eq!(chunk.bytes().unwrap()[..3], [0, 5, 0]);
    }
}
