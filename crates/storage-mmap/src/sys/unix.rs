//! Unix: `pwrite`, inode identity, open-file-description locks on Linux
//! (`flock` elsewhere), `fallocate` where it exists, and `fsync` of the
//! directory.
//!
//! Locks. On Linux (and Android) these are *open file description* record
//! locks (`fcntl(F_OFD_SETLK)`): like `flock`, two opens of one path in one
//! process conflict as two processes do, and dropping the last reference to
//! the open file releases the lock; unlike `flock`, converting a lock is
//! atomic — a refused upgrade from shared to exclusive keeps the shared
//! lock, and a downgrade never lets another handle in between. Elsewhere,
//! `flock` through std, whose conversions are not atomic (see the crate
//! README).

use std::{fs::File, io, os::unix::fs::MetadataExt, path::Path};

use super::{Kind, Refused};

/// Whether a removed file's name goes at once, even while a handle
/// holds the file (Windows: it lingers, delete pending, until closed).
pub(crate) const REMOVED_NAMES_GO_AT_ONCE: bool = true;

/// Whether a directory's stamp moves with every change of its names: a name
/// added, removed or renamed over sets the directory's modification time
/// (and its stamp is inode + time in nanoseconds).
pub(crate) const DIRECTORY_STAMPS_ARE_EXACT: bool = true;

/// A mapped file may be cut (the pages past the new end must not be
/// touched until the mapping is dropped, which the caller ensures).
pub(crate) const CAN_CUT_MAPPED: bool = true;

/// `fdatasync` or `fsync`; either works on a descriptor opened for reading.
pub(super) fn sync(file: &File, data_only: bool) -> io::Result<()> {
    if data_only {
        file.sync_data()
    } else {
        file.sync_all()
    }
}

pub(super) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

/// Frees the blocks of `range` (within the file's length) so it reads as
/// zeros: `Ok(false)` where the file system cannot punch holes.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn punch_hole(file: &File, range: std::ops::Range<u64>) -> io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};

    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    match fallocate(file, flags, range.start, range.end - range.start) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Linux can fail"
)]
pub(super) fn punch_hole(_file: &File, _range: std::ops::Range<u64>) -> io::Result<bool> {
    Ok(false)
}

/// Device and inode: a file's identity for as long as it exists.
pub(crate) fn meta_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The identity of an open file; `None` when it cannot be inspected.
pub(super) fn file_id(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|meta| meta_id(&meta))
}

/// The identity of the file at `path` (of a link itself unless `follow`).
pub(super) fn path_id(path: &Path, follow: bool) -> io::Result<Option<(u64, u64)>> {
    let meta = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    Ok(Some(meta_id(&meta)))
}

/// Inode and modification time (nanoseconds since the epoch): a file
/// replaced by a rename has another inode, one rewritten in place another
/// time.
pub(super) fn stamp(meta: &std::fs::Metadata) -> (u64, u64) {
    // Nanoseconds since the epoch fit in u64 until 2554; wrapping keeps it a stamp after that.
    #[allow(clippy::cast_sign_loss, reason = "a stamp is compared, never ordered")]
    let time = (meta.mtime() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(meta.mtime_nsec() as u64);
    (meta.ino(), time)
}

/// What `file` holds now, read through `/proc` (some files are opened for
/// writing only): for the power-loss simulation.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn contents_of(file: &File) -> Vec<u8> {
    use std::os::fd::AsRawFd;

    std::fs::read(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
}

/// Opens without following a symlink at the last component and without
/// blocking on a FIFO.
pub(crate) fn no_follow_no_block(options: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;

    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
}

/// How long a directory lock held by someone else is waited for: this
/// crate holds it for a `stat` and a `rename`; another program (`flock
/// DIR command`) may hold it for as long as it likes.
const DIR_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn lock_dir(dir: &Path) -> Option<File> {
    let handle = File::open(dir).ok()?;
    // `flock` on the directory: per open file description, so two handles
    // in one process exclude each other too. Waited for, within a bound:
    // past it, the caller goes on without it, as where the directory
    // cannot be opened (the lock orders this crate's own handles' journal
    // renames and removals; a program holding it that long is not one).
    let deadline = std::time::Instant::now() + DIR_LOCK_WAIT;
    loop {
        match handle.try_lock() {
            Ok(()) => return Some(handle),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Err(_) => return None,
        }
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
))]
pub(crate) fn try_lock(file: &File, kind: Kind) -> Result<(), Refused> {
    use std::os::fd::AsRawFd;

    let l_type = match kind {
        Kind::Unlock => libc::F_UNLCK,
        Kind::Shared => libc::F_RDLCK,
        Kind::Exclusive => libc::F_WRLCK,
    };
    // SAFETY: `flock` is a plain C struct of integers, for which all zeros
    // is a valid value (whole file from offset 0, pid 0 as OFD locks need).
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    // The constants are small (0..=2) and fit the field's type.
    request.l_type = libc::c_short::try_from(l_type).unwrap_or_default();
    request.l_whence = libc::c_short::try_from(libc::SEEK_SET).unwrap_or_default();
    // SAFETY: `fcntl(F_OFD_SETLK)` only reads the `flock` passed by pointer,
    // which lives on this stack frame for the whole call, and `file` keeps
    // the descriptor open for as long as it is borrowed.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const request) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Err(Refused::Conflict),
        // No OFD locks (a kernel before 3.15) or none on this file system.
        Some(libc::EINVAL | libc::ENOLCK | libc::EOPNOTSUPP) => Err(Refused::Unsupported),
        _ => Err(Refused::Io(error)),
    }
}

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
)))]
pub(crate) fn try_lock(file: &File, kind: Kind) -> Result<(), Refused> {
    use std::fs::TryLockError;

    let taken = match kind {
        Kind::Unlock => return file.unlock().map_err(Refused::Io),
        Kind::Shared => file.try_lock_shared(),
        Kind::Exclusive => file.try_lock(),
    };
    match taken {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Refused::Conflict),
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
            Err(Refused::Unsupported)
        }
        Err(TryLockError::Error(e)) => Err(Refused::Io(e)),
    }
}

/// What `statvfs` says of `file`'s file system, and the bytes `file`
/// already holds on disk.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(super) fn space(file: &File) -> io::Result<super::Space> {
    let held = file.metadata()?.blocks().saturating_mul(512);
    let stats = rustix::fs::fstatvfs(file)?;
    Ok(super::Space {
        total_blocks: stats.f_blocks,
        free_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
        held,
    })
}

/// No `statvfs` check here (see the crate README): nothing is reported.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Linux can fail"
)]
pub(super) fn space(_file: &File) -> io::Result<super::Space> {
    Ok(super::Space::UNKNOWN)
}

/// Reserves the blocks of `from..to` (`fallocate`); nothing where the
/// platform or the file system has no reservation.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(super) fn allocate(file: &File, from: u64, to: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};

    match fallocate(file, FallocateFlags::empty(), from, to - from) {
        Ok(()) | Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Linux can fail"
)]
pub(super) fn allocate(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    Ok(())
}

/// `rename(2)`: atomic, whoever holds the file at `to` open or mapped.
pub(super) fn rename_over(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// A rename over a file is never refused for the file being in use here.
pub(super) fn in_use(_error: &io::Error) -> bool {
    false
}

/// The extended attribute that carries a file's state mark (`mark.rs`).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
const MARK_NAME: &str = "user.storage-mmap.state";

/// The state mark of `file`: `None` when it has none, or its file system
/// keeps no extended attributes.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub(super) fn read_mark(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut value = [0u8; 64];
    match rustix::fs::fgetxattr(file, MARK_NAME, &mut value) {
        Ok(len) => Ok(Some(value[..len.min(value.len())].to_vec())),
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => Ok(None),
        // Longer than any mark: someone else's value, kept as unreadable.
        Err(e) if e == rustix::io::Errno::RANGE => Ok(Some(Vec::new())),
        Err(e) => Err(e.into()),
    }
}

/// Sets `file`'s state mark (one metadata change, no sync); an error
/// (`Unsupported` on a file system without extended attributes) leaves
/// the mark that was there.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub(super) fn set_mark(file: &File, value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(file, MARK_NAME, value, rustix::fs::XattrFlags::empty())
        .map_err(Into::into)
}

/// Removes `file`'s state mark, if it has one.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub(super) fn clear_mark(file: &File) -> io::Result<()> {
    match rustix::fs::fremovexattr(file, MARK_NAME) {
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => Ok(()),
        done => done.map_err(Into::into),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(super) fn read_mark(_file: &File) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(super) fn set_mark(_file: &File, _value: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(super) fn clear_mark(_file: &File) -> io::Result<()> {
    Ok(())
}

/// When `file` was made, where the file system says (Linux: `statx`'s
/// birth time), to tell it from a later file given its freed inode number.
pub(super) fn birth(file: &File) -> Option<std::time::SystemTime> {
    file.metadata().and_then(|meta| meta.created()).ok()
}
