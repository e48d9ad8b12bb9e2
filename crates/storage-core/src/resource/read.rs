//! The read path of `Resource<D>`: `read_at` and `read_into`, one
//! consistent snapshot, the lock-free prefix, and holes filled with zeros.

use std::sync::atomic::{Ordering, fence};

use super::{Shared, readable_in};
use crate::{DriverIo, StorageError, StorageResult};

/// Reads that may run again when a rewrite lands meanwhile, before one
/// holds rewrites off (so a reader is never starved by a busy replacer).
const REREADS: usize = 4;

/// Zeros `buf[count..filled]` (bytes a discarded read left there).
fn zero_past(buf: &mut [u8], count: usize, filled: usize) {
    if let Some(stale) = buf.get_mut(count..filled) {
        stale.fill(0);
    }
}

impl<D: DriverIo> Shared<D> {
    /// `ResourceExt::read_at`: a read from one snapshot, again when a
    /// rewrite was published while it ran.
    pub(super) fn read_at(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        let shared = self;
        shared.check_usable_fast()?;
        // How far a discarded attempt filled `buf`: what the kept one does
        // not overwrite is zeroed, so no byte of the old contents is left
        // past the count returned.
        let mut discarded = 0;
        for _ in 0..REREADS {
            let rewrites = shared.rewrites.load(Ordering::Acquire);
            let count = shared.read_once(offset, buf)?;
            // A replacement or a shrinking commit ran meanwhile: the bytes
            // may pair the old length with the new contents.
            // The copies above happen before the check (a driver may copy
            // without a lock).
            fence(Ordering::Acquire);
            if rewrites.is_multiple_of(2) && shared.rewrites.load(Ordering::Acquire) == rewrites {
                zero_past(buf, count, discarded);
                return Ok(count);
            }
            discarded = discarded.max(count);
        }
        // Rewritten again and again: read with rewrites held off.
        let _writer = shared.writer.lock();
        let count = shared.read_once(offset, buf)?;
        zero_past(buf, count, discarded);
        Ok(count)
    }

    /// `ResourceExt::read_into`: the whole readable contents, all of one
    /// version (read again when a rewrite lands meanwhile).
    pub(super) fn read_into(&self, buf: &mut Vec<u8>) -> StorageResult<usize> {
        let shared = self;
        shared.check_usable_fast()?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Rewritten again and again: read with rewrites held off.
            let _writer = (attempts > REREADS).then(|| shared.writer.lock());
            // Before the length: a replacement after this point is seen
            // below, and the whole of it is read again, so the buffer never
            // holds parts of two contents.
            let rewrites = shared.rewrites.load(Ordering::Acquire);
            let (readable, _) = shared.snapshot();
            let out_of_memory = || {
                StorageError::Io(std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("read_into: {readable} bytes do not fit in memory"),
                ))
            };
            let len = usize::try_from(readable).map_err(|_| out_of_memory())?;
            buf.clear();
            buf.try_reserve_exact(len).map_err(|_| out_of_memory())?;
            buf.resize(len, 0);
            // Through the `read_at` path, so holes read as zeros here too.
            let mut filled = 0;
            while filled < len {
                let n = shared.read_once(filled as u64, &mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            fence(Ordering::Acquire);
            if rewrites.is_multiple_of(2) && shared.rewrites.load(Ordering::Acquire) == rewrites {
                buf.truncate(filled);
                return Ok(filled);
            }
        }
    }

    /// The readable length and the available prefix, taken together (a
    /// shrinking commit changes both): a sequence-lock read, which falls
    /// back to the state lock if a `publish` keeps it busy.
    pub(super) fn snapshot(&self) -> (u64, u64) {
        for _ in 0..64 {
            let before = self.snapshot_seq.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let readable = self.readable_len.load(Ordering::Relaxed);
                let prefix = self.prefix_end.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.snapshot_seq.load(Ordering::Relaxed) == before {
                    return (readable, prefix);
                }
            }
            std::hint::spin_loop();
        }
        let state = self.state.lock();
        (readable_in(&state), state.tracker.prefix_end())
    }

    /// One read at `offset`, from one snapshot (see `read_at`, which checks
    /// that no rewrite was published while it ran).
    pub(super) fn read_once(&self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        let (readable, prefix_end) = self.snapshot();
        if offset >= readable || buf.is_empty() {
            return Ok(0);
        }
        let end = offset.saturating_add(buf.len() as u64).min(readable);
        // Within the available prefix (a committed resource, a sequential
        // download): no lock. Should a shrinking commit land meanwhile, the
        // driver stops at its new end.
        if end <= prefix_end {
            return self.driver.read_at(offset, buf, readable);
        }
        self.read_available(offset, end, buf)
    }

    /// Reads `offset..end` into `buf`: the available parts from the driver,
    /// the holes as zeros, and returns the count. The driver is never asked
    /// for a byte that is not available, so a write of unavailable bytes
    /// (`WriteKind::Fresh`) cannot overlap a read. `end` came from a snapshot
    /// that may be stale: each batch cuts it to the readable length of the
    /// moment, so a shrinking commit never turns into zeros that were never
    /// written.
    fn read_available(&self, offset: u64, mut end: u64, buf: &mut [u8]) -> StorageResult<usize> {
        const BATCH: usize = 8;
        let count = usize::try_from(end - offset).unwrap_or(buf.len());
        let buf = &mut buf[..count];
        buf.fill(0);
        // The available parts, a few at a time, copied out of the lock so
        // the driver reads without it (available bytes cannot become the
        // target of a fresh write).
        let mut from = offset;
        while from < end {
            let mut parts = [(0u64, 0u64); BATCH];
            let mut found = 0;
            let readable = {
                let state = self.state.lock();
                let readable = readable_in(&state);
                end = end.min(readable.max(from));
                for available in state.tracker.overlapping(from..end).take(BATCH) {
                    parts[found] = (available.start.max(from), available.end.min(end));
                    found += 1;
                }
                readable
            };
            for &(part_start, part_end) in &parts[..found] {
                // Within `buf`: `offset <= part_start < part_end <= end`.
                let index = |at: u64| usize::try_from(at - offset).unwrap_or(count);
                let (start, stop) = (index(part_start), index(part_end));
                let mut filled = start;
                while filled < stop {
                    let at = offset + filled as u64;
                    let n = self.driver.read_at(at, &mut buf[filled..stop], readable)?;
                    if n == 0 {
                        // The store ends here: a shrinking commit or a
                        // replacement reached the driver before the state.
                        // What lies past it is gone, not zeros.
                        return Ok(filled);
                    }
                    filled += n;
                }
            }
            from = if found == BATCH {
                parts[BATCH - 1].1
            } else {
                end
            };
        }
        // Within `count`: `end` only ever came down from `offset + count`.
        Ok(usize::try_from(end.saturating_sub(offset)).unwrap_or(count))
    }
}
