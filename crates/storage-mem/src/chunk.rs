//! `ChunkBytes`: one chunk's [`MEM_CHUNK_BYTES`] bytes, starting at a page
//! boundary, made [`SLAB_CHUNKS`] at a time from one zeroed allocation.
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
//! (`split_to`: disjoint views of one buffer, each freely mutable, the
//! buffer freed with the last), so this crate holds no `unsafe`.
//!
//! The slab comes zeroed from the allocator (`calloc`, through `bytemuck`,
//! fallible): a slab of this size is mapped fresh from the kernel, whose
//! pages are zero already and are neither written twice nor touched at all
//! until a write lands in them, like the raw `Vec` a download would
//! otherwise fill. (Memory the allocator recycles it zeroes itself.)

use std::ops::{Deref, DerefMut};

use bytes::{Bytes, BytesMut};
use storage_core::StorageResult;

use crate::{MEM_CHUNK_BYTES, out_of_memory};

/// The page size chunks are aligned to (4 KiB on the platforms this runs
/// on; with a larger page a read across its boundary is a little slower,
/// never wrong).
const PAGE: usize = 4096;

/// Chunks made by one allocation: 16 × 64 KiB = 1 MiB, and a page.
pub(crate) const SLAB_CHUNKS: usize = 16;

/// One chunk: [`MEM_CHUNK_BYTES`] bytes of a slab, zero until written.
#[derive(Debug)]
pub(crate) struct ChunkBytes(BytesMut);

/// The distance from `at` to the next page boundary.
fn to_page_boundary(at: *const u8) -> usize {
    at.addr().wrapping_neg() % PAGE
}

impl ChunkBytes {
    /// [`SLAB_CHUNKS`] zeroed chunks from one allocation, each starting at
    /// a page boundary (`end`: the write's byte end, for the error).
    pub(crate) fn slab(end: u64) -> StorageResult<Vec<Self>> {
        let zeroed =
            bytemuck::allocation::try_zeroed_vec::<u8>(SLAB_CHUNKS * MEM_CHUNK_BYTES + PAGE)
                .map_err(|()| out_of_memory("grow", end))?;
        let start = to_page_boundary(zeroed.as_ptr());
        // Unique (just made), so this is the same buffer, not a copy.
        let Ok(mut rest) = Bytes::from(zeroed).try_into_mut() else {
            return Err(out_of_memory("grow", end));
        };
        drop(rest.split_to(start));
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(SLAB_CHUNKS)
            .map_err(|_| out_of_memory("grow", end))?;
        for _ in 0..SLAB_CHUNKS {
            chunks.push(Self(rest.split_to(MEM_CHUNK_BYTES)));
        }
        Ok(chunks)
    }
}

impl Deref for ChunkBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for ChunkBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slab_is_chunks_at_page_boundaries_zeroed_and_written_apart() {
        let mut chunks = ChunkBytes::slab(0).unwrap();
        assert_eq!(chunks.len(), SLAB_CHUNKS);
        for (number, chunk) in chunks.iter_mut().enumerate() {
            assert_eq!(chunk.as_ptr().addr() % PAGE, 0);
            assert_eq!(chunk.len(), MEM_CHUNK_BYTES);
            assert!(chunk.iter().all(|&b| b == 0));
            chunk.fill(u8::try_from(number).unwrap());
        }
        // Each wrote its own bytes only; one dropped leaves the others.
        drop(chunks.remove(3));
        for (number, chunk) in chunks.iter().enumerate() {
            let expected = u8::try_from(if number < 3 { number } else { number + 1 }).unwrap();
            assert!(chunk.iter().all(|&b| b == expected));
        }
    }
}
