//! Growing the file with its disk blocks reserved.
//!
//! Bytes reach the file by `pwrite`, so a full disk is an `Err` from the
//! write, never a SIGBUS in a page fault. Growth still reserves the new
//! blocks (`fallocate`, where the platform has it): a disk that cannot hold
//! the grown file says so at once, and writes into reserved blocks measured
//! faster than into a sparse file.

use std::{fs::File, io};

/// Size of a new file when `MmapOptions::initial_len` is `None`, and the
/// smallest size growth goes to.
pub const DEFAULT_INITIAL_LEN: u64 = 64 * 1024;

/// Extends `file` from `old_len` to `new_len` bytes with the blocks reserved.
///
/// On failure the file is cut back to `old_len` and the error says why.
pub(crate) fn grow(file: &File, old_len: u64, new_len: u64) -> io::Result<()> {
    let result = reserve(file, old_len, new_len).and_then(|()| {
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

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn reserve(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;

    use rustix::fs::{FallocateFlags, fallocate, fstatvfs};

    if to <= from {
        return Ok(());
    }
    // Refuse at once what cannot fit, instead of letting fallocate fill the
    // disk block by block before it fails. Blocks the file already holds
    // need no new space.
    let held = file.metadata()?.blocks().saturating_mul(512);
    let wanted = (to - from).saturating_sub(held.saturating_sub(from));
    let stats = fstatvfs(file)?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if wanted > free {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("cannot reserve {wanted} bytes: {free} bytes free on the file system"),
        ));
    }
    match fallocate(file, FallocateFlags::empty(), from, to - from) {
        // File systems without fallocate: growth still works, unreserved.
        Ok(()) | Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn reserve(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    // No portable reservation here: the file is only extended (see README).
    Ok(())
}
