//! Windows: `seek_write`, std's handle locks, no reservation, and no
//! directory sync (a directory cannot be opened for syncing there; std and
//! other stores skip it too). Built by construction only (see `sys`).

use std::{fs::File, fs::TryLockError, io, path::Path};

use super::{Kind, Refused};

/// Windows refuses to cut a file while a view of it is mapped: the
/// mapping is dropped first.
pub(crate) const CAN_CUT_MAPPED: bool = false;

pub(super) fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, data, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

/// No stable file identity in std here: callers assume the same file.
/// No hole punching here: zeros are written instead.
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share"
)]
pub(super) fn punch_hole(_file: &File, _range: std::ops::Range<u64>) -> io::Result<bool> {
    Ok(false)
}

pub(super) fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// No inode in std here: the length and the modification time
/// (nanoseconds since the epoch) stand in for it.
pub(super) fn stamp(meta: &std::fs::Metadata) -> (u64, u64) {
    let time = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    (meta.len(), time)
}

/// Nothing to add: the entry is checked before it is opened.
pub(crate) fn no_follow_no_block(_options: &mut std::fs::OpenOptions) {}

/// Directories are not locked here: see the crate README.
pub(super) fn lock_dir(_dir: &Path) -> Option<File> {
    None
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Unix can fail"
)]
pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

pub(crate) fn try_lock(file: &File, kind: Kind) -> Result<(), Refused> {
    let taken = match kind {
        Kind::Unlock => return file.unlock().map_err(Refused::Io),
        Kind::Shared => file.try_lock_shared(),
        Kind::Exclusive => file.try_lock(),
    };
    match taken {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Refused::Conflict),
        Err(TryLockError::Error(e)) => Err(Refused::Io(e)),
    }
}

/// Windows reports no capacity here and reserves nothing: the file is
/// only extended (see the crate README).
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Unix can fail"
)]
pub(super) fn space(_file: &File) -> io::Result<super::Space> {
    Ok(super::Space::UNKNOWN)
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Unix can fail"
)]
pub(super) fn allocate(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    Ok(())
}
