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

/// Extends `file` from `old_len` to `new_len` bytes with the blocks reserved.
///
/// On failure the file is cut back to `old_len` and the error says why.
pub(crate) fn grow(file: &File, old_len: u64, new_len: u64) -> io::Result<()> {
    let result = sys::reserve(file, old_len, new_len).and_then(|()| {
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
