//! Growing the file with its disk blocks reserved.
//!
//! Bytes reach the file by `pwrite`, so a full disk is an `Err` from the
//! write, never a SIGBUS in a page fault. Growth still reserves the new
//! blocks (`fallocate`, where the platform has it): a disk that cannot hold
//! the grown file says so at once, and writes into reserved blocks measured
//! faster than into a sparse file.

use std::{fs::File, io};

use crate::sys;

/// Size of a new file when `MmapOptions::initial_len` is `None`, and the
/// smallest size growth goes to.
pub const DEFAULT_INITIAL_LEN: u64 = 64 * 1024;

/// Below this length a file's growth allocates no blocks ahead (the free
/// space is still checked for the whole grown length): a small file (an
/// HLS segment, cover art) committed short of its doubled length would
/// free the reserved tail again at its commit, and its `fdatasync` would
/// convert reserved (unwritten) extents too — measured 18% slower per file
/// than the raw create + write it is compared with, and a second journal
/// commit in its sync. Its bytes reserve their blocks as they are written
/// (`pwrite`: a full disk is still an `Err` from the write), and the tail
/// never written is a hole, only ever read (zeros), never written through
/// the mapping.
pub(crate) const RESERVE_FROM: u64 = 1 << 20;

/// Extends `file` from `old_len` to `new_len` bytes with the blocks reserved
/// (below [`RESERVE_FROM`], only checked against the free space).
///
/// On failure the file is cut back to `old_len` and the error says why.
pub(crate) fn grow(file: &File, old_len: u64, new_len: u64) -> io::Result<()> {
    let allocate_to = if new_len < RESERVE_FROM {
        old_len
    } else {
        new_len
    };
    let result = sys::reserve(file, old_len, new_len, allocate_to).and_then(|()| {
        if file.metadata()?.len() < new_len {
            file.set_len(new_len)?;
        }
        Ok(())
    });
    if result.is_err() {
        // Best effort: leave the file as it was; the original error wins.
        let _ = file.set_len(old_len);
    }
    result
}
