//! The in-memory driver: fixed-size chunks that never move once made.
//!
//! [`MemResource`] behaves like a file-backed resource without a file: for
//! tests, wasm, and small assets that need not survive the process. Bytes
//! live in chunks of [`MEM_CHUNK_BYTES`], each behind its own reader-writer
//! lock, so a write copies under the lock of the chunks it touches only:
//! readers of every other chunk go on, and concurrent `read_at` calls run
//! in parallel. The chunks sit in a sparse two-level table (`table.rs`),
//! locked exclusively only while a page of it is made or it is replaced.

#![forbid(unsafe_code)]

mod chunk;
mod table;

use std::{
    io,
    ops::Range,
    sync::atomic::{AtomicU64, Ordering},
};

use chunk::ChunkBytes;
use parking_lot::{RwLock, RwLockWriteGuard};
use storage_core::{
    DefaultOpen, DownloadRecord, Driver, DriverIo, DriverState, RangeSet, Resource, StorageError,
    StorageResult, WriteKind,
};
use table::Table;

/// Bytes per chunk of the memory store: a write copies under the lock of
/// the chunks it touches; chunks are made 16 at a time (a slab, see
/// the crate README) when a write first lands in their range.
pub const MEM_CHUNK_BYTES: usize = 64 * 1024;

/// Options for opening a [`MemResource`].
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
/// use storage_mem::{MemOptions, MemResource};
///
/// let preloaded = MemResource::open(
///     CancellationToken::new(),
///     MemOptions { initial_data: Some(b"#EXTM3U".to_vec()), ..MemOptions::default() },
/// )?;
/// assert_eq!(preloaded.status(), ResourceStatus::Committed { final_len: Some(7) });
/// # Ok::<(), storage_core::StorageError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemOptions {
    /// Contents to start with; the resource then opens committed with this
    /// length. `None` opens an empty, active resource.
    pub initial_data: Option<Vec<u8>>,
    /// Bytes to make room for up front (a hint that saves regrowth of the
    /// chunk table when the size is known); 0 grows on demand.
    pub capacity: usize,
}

/// One past the highest byte a memory resource can hold: 2^48 (256 TiB of
/// address, far past any memory). A write, or a commit, past it is
/// `StorageError::Io` with kind `OutOfMemory`.
pub const MEM_MAX_LEN: u64 = 1 << 48;

/// The in-memory driver behind [`MemResource`].
#[derive(Debug, Default)]
pub struct MemDriver {
    /// The chunks (see `table`). Every read and write holds the table's
    /// read lock and the lock of each chunk it copies; the table's write
    /// lock is taken only to make pages (once per 256 MiB of address
    /// written) or swap in a replacement. Locked before any chunk.
    table: RwLock<Table>,
    /// The end of the contents: the highest write, or the committed length.
    len: AtomicU64,
}

/// A resource held in memory.
pub type MemResource = Resource<MemDriver>;

/// A replacement of a memory store's contents, built aside by
/// [`DriverIo::stage`] and swapped in by [`DriverIo::publish`].
#[derive(Debug)]
pub struct MemStaged {
    table: Table,
    len: u64,
}

fn out_of_memory(what: &str, bytes: u64) -> StorageError {
    StorageError::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("memory resource: cannot {what} to {bytes} bytes"),
    ))
}

/// The chunks holding `start..end` (non-empty, `end` at most
/// [`MEM_MAX_LEN`], so the indices fit).
fn chunks_of(start: u64, end: u64) -> std::ops::RangeInclusive<usize> {
    let chunk = MEM_CHUNK_BYTES as u64;
    let index = |at: u64| usize::try_from(at / chunk).unwrap_or(usize::MAX);
    index(start)..=index(end - 1)
}

/// `Err` when `end` lies past what a memory resource can hold.
fn within_limit(end: u64) -> StorageResult<()> {
    if end > MEM_MAX_LEN {
        return Err(StorageError::Io(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "memory resource: {end} bytes lie past its limit of {MEM_MAX_LEN} (2^48) bytes"
            ),
        )));
    }
    Ok(())
}

/// `data` as a table of chunks.
fn table_of(data: &[u8]) -> StorageResult<Table> {
    let end = data.len() as u64;
    within_limit(end)?;
    let mut table = Table::default();
    if end == 0 {
        return Ok(table);
    }
    // On an error the table, half made, is dropped: no `prepare`.
    table.add_pages(&chunks_of(0, end), end)?;
    for (index, piece) in data.chunks(MEM_CHUNK_BYTES).enumerate() {
        table.write_into(index, 0, piece, end)?;
    }
    Ok(table)
}

/// Where `at` falls within its chunk (below `MEM_CHUNK_BYTES`, so it fits).
fn offset_in_chunk(at: u64) -> usize {
    usize::try_from(at % MEM_CHUNK_BYTES as u64).unwrap_or(0)
}

/// Splits `start..start + len` into (chunk index, offset in it, length).
fn pieces(start: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut at = start;
    let end = start + len as u64;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        // Offsets below `end` index a table that holds them: they fit.
        let index = usize::try_from(at / MEM_CHUNK_BYTES as u64).unwrap_or(usize::MAX);
        let within = offset_in_chunk(at);
        let count = (MEM_CHUNK_BYTES - within).min(usize::try_from(end - at).unwrap_or(usize::MAX));
        at += count as u64;
        Some((index, within, count))
    })
}

impl Driver for MemDriver {
    type Options = MemOptions;

    fn open(opts: MemOptions) -> StorageResult<(Self, DriverState)> {
        // Checked with initial data too: a capacity past the limit is an
        // error either way.
        within_limit(opts.capacity as u64)?;
        let Some(data) = opts.initial_data else {
            let mut table = Table::default();
            table.reserve(opts.capacity as u64)?;
            return Ok((Self::with_table(table, 0), DriverState::default()));
        };
        let len = data.len() as u64;
        let mut table = table_of(&data)?;
        table.reserve(opts.capacity as u64)?;
        drop(data);
        let mut available = RangeSet::new();
        if len > 0 {
            available.insert(0..len);
        }
        let state = DriverState {
            final_len: Some(len),
            available,
            is_committed: true,
            unclean_holes: false,
            ..DriverState::default()
        };
        Ok((Self::with_table(table, len), state))
    }
}

impl DefaultOpen for MemDriver {
    fn open_default() -> (Self, DriverState) {
        (Self::default(), DriverState::default())
    }
}

impl MemDriver {
    fn with_table(table: Table, len: u64) -> Self {
        Self {
            table: RwLock::new(table),
            len: AtomicU64::new(len),
        }
    }
}

impl MemDriver {
    /// Bytes the store holds (its chunks), which may exceed the data written.
    #[must_use]
    pub fn storage_len(&self) -> u64 {
        self.table.read().covered_bytes()
    }
}

impl DriverIo for MemDriver {
    const FRESH_WRITES: bool = false;

    type Staged<'a> = MemStaged;

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let table = self.table.read();
        let end = effective_len.min(self.len.load(Ordering::Acquire));
        if offset >= end {
            return Ok(0);
        }
        let count = usize::try_from(end - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let mut filled = 0;
        for (index, within, n) in pieces(offset, count) {
            let out = &mut buf[filled..filled + n];
            match table.chunk(index).map(|slot| slot.read()) {
                Some(guard) => match guard.as_ref().and_then(ChunkBytes::bytes) {
                    Some(chunk) => out.copy_from_slice(&chunk[within..within + n]),
                    None => out.fill(0),
                },
                None => out.fill(0),
            }
            filled += n;
        }
        Ok(count)
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        if let WriteKind::Committed { .. } = kind {
            return Err(StorageError::Committed);
        }
        self.write_bytes(offset, data)
    }

    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()> {
        if let Some(len) = final_len {
            within_limit(len)?;
        }
        let mut table = self.table.write();
        // A restarted download leaves its old bytes in the holes.
        let stored = self.len.load(Ordering::Acquire);
        for hole in holes {
            let end = hole.end.min(stored);
            if hole.start >= end {
                continue;
            }
            let count = usize::try_from(end - hole.start).unwrap_or(usize::MAX);
            for (index, within, n) in pieces(hole.start, count) {
                if let Some(slot) = table.chunk(index)
                    && let Some(chunk) = slot.write().as_mut()
                {
                    chunk.zero(within, n);
                }
            }
        }
        let Some(len) = final_len else {
            return Ok(());
        };
        if len < stored {
            table.cut(len);
        }
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn reactivate(&self, _available: &RangeSet<u64>) -> StorageResult<()> {
        Ok(())
    }

    fn stage(&self, data: &[u8], _durable: bool) -> StorageResult<MemStaged> {
        // Built aside: readers go on reading the old chunks meanwhile.
        Ok(MemStaged {
            table: table_of(data)?,
            len: data.len() as u64,
        })
    }

    fn publish(&self, staged: MemStaged) {
        let mut table = self.table.write();
        *table = staged.table;
        self.len.store(staged.len, Ordering::Release);
    }

    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        if record == DownloadRecord::Restarted {
            // Nothing is written any more (no reader reads: nothing is
            // available): the old bytes go, so no commit shows them.
            self.table.write().cut(0);
            self.len.store(0, Ordering::Release);
        }
        Ok(())
    }
}

impl MemDriver {
    /// Stores `data` at `offset` in an active store.
    fn write_bytes(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(StorageError::overflow(offset))?;
        within_limit(end)?;
        let needed = chunks_of(offset, end);
        let table = {
            let table = self.table.read();
            if table.covers(&needed) {
                table
            } else {
                drop(table);
                let mut table = self.table.write();
                table.add_pages(&needed, end)?;
                RwLockWriteGuard::downgrade(table)
            }
        };
        // Across chunks, every chunk first: a write that fails for memory
        // copies nothing (bytes of it left behind would show through a
        // later commit that zero-extends over them). Within one chunk, the
        // copy makes it, with no look-up beforehand.
        if needed.start() != needed.end() {
            table.prepare(&needed, end)?;
        }
        let mut taken = 0;
        for (index, within, n) in pieces(offset, data.len()) {
            // The table holds `needed` pages while its lock is held.
            table.write_into(index, within, &data[taken..taken + n], end)?;
            taken += n;
        }
        drop(table);
        // Writes never run concurrently (`Resource` serialises them), and
        // most writes of a download land below the end: no atomic
        // read-modify-write for those.
        if end > self.len.load(Ordering::Acquire) {
            self.len.store(end, Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grows_and_read_clips_to_the_effective_length() {
        let driver = MemDriver::default();
        driver.write(4, b"abcd", WriteKind::Active).unwrap();
        let mut buf = [0xFF; 8];
        assert_eq!(driver.read_at(0, &mut buf, 8).unwrap(), 8);
        assert_eq!(&buf, b"\0\0\0\0abcd");
        assert_eq!(driver.read_at(0, &mut buf, 6).unwrap(), 6);
        assert_eq!(driver.read_at(6, &mut buf, 100).unwrap(), 2);
        assert_eq!(driver.read_at(u64::MAX, &mut buf, u64::MAX).unwrap(), 0);
    }

    #[test]
    fn commit_cuts_or_extends_to_the_final_length() {
        let driver = MemDriver::default();
        driver.write(0, b"abcdef", WriteKind::Active).unwrap();
        driver.commit(Some(3), &[]).unwrap();
        let mut buf = [0; 8];
        assert_eq!(driver.read_at(0, &mut buf, u64::MAX).unwrap(), 3);
        driver.commit(Some(5), &[]).unwrap();
        assert_eq!(driver.read_at(0, &mut buf, u64::MAX).unwrap(), 5);
        assert_eq!(&buf[..5], b"abc\0\0");
    }

    #[test]
    fn writes_across_chunk_boundaries_read_back_whole() {
        let driver = MemDriver::default();
        let data: Vec<u8> = (0..3 * MEM_CHUNK_BYTES + 100)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        // Unaligned, straddling every boundary, out of order.
        let cut = MEM_CHUNK_BYTES + 7;
        driver
            .write(cut as u64, &data[cut..], WriteKind::Active)
            .unwrap();
        driver.write(0, &data[..cut], WriteKind::Active).unwrap();
        let mut back = vec![0; data.len() + 10];
        assert_eq!(driver.read_at(0, &mut back, u64::MAX).unwrap(), data.len());
        assert!(back[..data.len()] == data[..]);
        let mut middle = vec![0; 2 * MEM_CHUNK_BYTES];
        let at = MEM_CHUNK_BYTES as u64 / 2;
        assert_eq!(
            driver.read_at(at, &mut middle, u64::MAX).unwrap(),
            middle.len()
        );
        assert!(middle[..] == data[MEM_CHUNK_BYTES / 2..MEM_CHUNK_BYTES / 2 + 2 * MEM_CHUNK_BYTES]);
    }

    #[test]
    fn a_cut_then_extended_store_reads_zeros_not_the_old_bytes() {
        let driver = MemDriver::default();
        driver
            .write(0, &vec![9; 3 * MEM_CHUNK_BYTES], WriteKind::Active)
            .unwrap();
        driver
            .commit(Some(MEM_CHUNK_BYTES as u64 + 5), &[])
            .unwrap();
        driver
            .commit(Some(3 * MEM_CHUNK_BYTES as u64), &[])
            .unwrap();
        let mut back = vec![1; 3 * MEM_CHUNK_BYTES];
        assert_eq!(driver.read_at(0, &mut back, u64::MAX).unwrap(), back.len());
        assert!(back[..MEM_CHUNK_BYTES + 5].iter().all(|&b| b == 9));
        assert!(back[MEM_CHUNK_BYTES + 5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_chunk_cut_from_its_slab_comes_back_as_zeros_beside_kept_neighbours() {
        let driver = MemDriver::default();
        driver
            .write(0, &vec![9; 3 * MEM_CHUNK_BYTES], WriteKind::Active)
            .unwrap();
        // Cuts chunk 1 to 5 bytes and empties chunk 2; chunk 0 and the
        // slab they came from live on.
        driver
            .commit(Some(MEM_CHUNK_BYTES as u64 + 5), &[])
            .unwrap();
        let far = 2 * MEM_CHUNK_BYTES as u64 + 10;
        driver.write(far, b"new", WriteKind::Active).unwrap();
        let mut back = vec![1; 3 * MEM_CHUNK_BYTES];
        assert_eq!(
            driver.read_at(0, &mut back, u64::MAX).unwrap(),
            2 * MEM_CHUNK_BYTES + 13
        );
        let chunk = MEM_CHUNK_BYTES;
        assert!(back[..chunk + 5].iter().all(|&b| b == 9));
        assert!(back[chunk + 5..2 * chunk + 10].iter().all(|&b| b == 0));
        assert_eq!(&back[2 * chunk + 10..2 * chunk + 13], b"new");
    }

    /// Bytes of one slab.
    const SLAB_BYTES: usize = chunk::SLAB_CHUNKS * MEM_CHUNK_BYTES;

    #[test]
    fn a_write_that_fails_for_memory_leaves_no_byte_for_a_commit_to_show() {
        let driver = MemDriver::default();
        driver.write(0, b"start", WriteKind::Active).unwrap();
        // The last 10 bytes of slab 2 and the first 10 of slab 3: slab 2
        // can be made, slab 3 cannot.
        let at = (3 * SLAB_BYTES - 10) as u64;
        chunk::SLABS_LEFT.set(Some(1));
        let failed = driver.write(at, &[0x77; 20], WriteKind::Active);
        chunk::SLABS_LEFT.set(None);
        assert!(
            matches!(&failed, Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::OutOfMemory),
            "{failed:?}"
        );
        // Zero-extended over where the write went: zeros, not half of it.
        driver.commit(Some(at + 20), &[]).unwrap();
        let mut back = [1; 20];
        assert_eq!(driver.read_at(at, &mut back, u64::MAX).unwrap(), 20);
        assert_eq!(back, [0; 20], "a failed write left bytes behind");
    }

    #[test]
    fn cuts_and_rewrites_inside_a_slab_reuse_it() {
        let driver = MemDriver::default();
        chunk::SLABS_MADE.set(0);
        driver
            .write(0, &vec![5; SLAB_BYTES], WriteKind::Active)
            .unwrap();
        for kept in 1..chunk::SLAB_CHUNKS {
            let cut = kept * MEM_CHUNK_BYTES;
            driver.commit(Some(cut as u64), &[]).unwrap();
            driver.reactivate(&RangeSet::new()).unwrap();
            driver
                .write(cut as u64, &vec![6; SLAB_BYTES - cut], WriteKind::Active)
                .unwrap();
        }
        assert_eq!(
            chunk::SLABS_MADE.get(),
            1,
            "a cut and a rewrite made a new slab beside the live one"
        );
        let mut back = vec![0; SLAB_BYTES];
        assert_eq!(driver.read_at(0, &mut back, u64::MAX).unwrap(), SLAB_BYTES);
        assert!(back[..MEM_CHUNK_BYTES].iter().all(|&b| b == 5));
        assert!(back[MEM_CHUNK_BYTES..].iter().all(|&b| b == 6));
        // A cut before the slab lets it go; the next write makes one.
        driver.commit(Some(0), &[]).unwrap();
        driver.reactivate(&RangeSet::new()).unwrap();
        driver.write(10, b"x", WriteKind::Active).unwrap();
        assert_eq!(chunk::SLABS_MADE.get(), 2);
        let mut head = [7; 12];
        assert_eq!(driver.read_at(0, &mut head, u64::MAX).unwrap(), 11);
        assert_eq!(head[..11], *b"\0\0\0\0\0\0\0\0\0\0x");
    }

    #[test]
    fn a_capacity_past_the_limit_is_refused_with_initial_data_too() {
        let err = MemDriver::open(MemOptions {
            initial_data: Some(Vec::new()),
            capacity: usize::MAX,
        })
        .unwrap_err();
        assert!(
            matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory),
            "{err}"
        );
    }

    #[test]
    fn a_copy_into_one_chunk_does_not_stop_readers_of_another() {
        let driver = std::sync::Arc::new(MemDriver::default());
        driver
            .write(0, &vec![3; 2 * MEM_CHUNK_BYTES], WriteKind::Active)
            .unwrap();
        // A writer in the middle of its copy into chunk 1.
        let table = driver.table.read();
        let copying = table.chunk(1).unwrap().write();
        let reader = {
            let driver = std::sync::Arc::clone(&driver);
            std::thread::spawn(move || {
                let mut buf = vec![0; MEM_CHUNK_BYTES];
                driver.read_at(0, &mut buf, u64::MAX).unwrap()
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !reader.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "a reader of chunk 0 waited for a copy into chunk 1"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(copying);
        drop(table);
        assert_eq!(reader.join().unwrap(), MEM_CHUNK_BYTES);
    }

    #[test]
    fn a_byte_far_out_costs_a_page_not_a_table_of_everything_below() {
        let driver = MemDriver::default();
        driver.write(1 << 40, b"x", WriteKind::Active).unwrap();
        // One page of slots covers it; nothing below was made.
        assert_eq!(
            driver.storage_len(),
            (table::PAGE_CHUNKS * MEM_CHUNK_BYTES) as u64
        );
        let mut buf = [7; 2];
        assert_eq!(
            driver.read_at((1 << 40) - 1, &mut buf, u64::MAX).unwrap(),
            2
        );
        assert_eq!(buf, [0, b'x']);
        let mut low = [7; 4];
        assert_eq!(driver.read_at(5, &mut low, u64::MAX).unwrap(), 4);
        assert_eq!(low, [0; 4]);
        // A commit far out makes no page at all.
        let committed = MemDriver::default();
        committed.commit(Some(1 << 44), &[]).unwrap();
        assert_eq!(committed.storage_len(), 0);
    }

    #[test]
    fn past_the_limit_is_an_error_not_an_allocation() {
        let driver = MemDriver::default();
        for offset in [MEM_MAX_LEN, 1 << 50, u64::MAX - 10] {
            let err = driver.write(offset, b"x", WriteKind::Active).unwrap_err();
            assert!(
                matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory),
                "{offset}: {err}"
            );
        }
        assert!(driver.commit(Some(MEM_MAX_LEN + 1), &[]).is_err());
        assert_eq!(driver.storage_len(), 0);
    }

    #[test]
    fn committed_writes_are_refused() {
        let driver = MemDriver::default();
        assert!(matches!(
            driver.write(0, b"x", WriteKind::Committed { holes: &[] }),
            Err(StorageError::Committed)
        ));
    }

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        let driver = MemDriver::default();
        let err = driver.write(1 << 50, b"x", WriteKind::Active).unwrap_err();
        assert!(
            matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory),
            "{err}"
        );
        let err = MemDriver::open(MemOptions {
            initial_data: None,
            capacity: usize::MAX / 2,
        })
        .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
    }
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
