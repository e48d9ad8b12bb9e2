//! Reserving disk blocks before a mapping can touch them.
//!
//! A page of a shared file mapping whose block cannot be allocated (disk
//! full) faults with SIGBUS. So every byte the driver may write through the
//! mapping is reserved first, where the platform can: a full disk is then an
//! `Err` from `write_at`, not a crash.

use std::{fs::File, io};

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

/// Reserves the blocks of every hole in the first `len` bytes of `file`.
pub(crate) fn reserve_all(file: &File, len: u64) -> io::Result<()> {
    reserve(file, 0, len)
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
