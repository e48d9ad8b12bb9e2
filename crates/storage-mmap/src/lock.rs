//! Advisory whole-file locks that belong to an open file description.
//!
//! On Linux (and Android) these are *open file description* record locks
//! (`fcntl(F_OFD_SETLK)`): like `flock`, two opens of one path in one
//! process conflict as two processes do, and dropping the last handle
//! releases the lock; unlike `flock`, converting a lock is atomic — a
//! refused upgrade from shared to exclusive keeps the shared lock, and a
//! downgrade never lets another handle in between. Two handles that try to
//! upgrade at once therefore cannot both lose their shared lock and let one
//! of them shrink the file under the other's mapping.
//!
//! Elsewhere, `flock` through std (`File::try_lock`), whose conversions are
//! not atomic: see the crate README for what that leaves open.

use std::{fs::File, io};

/// A lock to hold on a whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Unlock,
    Shared,
    Exclusive,
}

/// The outcome of a lock request that did not succeed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Another handle holds a conflicting lock.
    Conflict,
    /// The file system has no locks of this kind.
    Unsupported,
    Io(io::Error),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn two_opens_in_one_process_conflict_and_a_refused_upgrade_keeps_the_shared_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked");
        std::fs::write(&path, b"x").unwrap();
        let (a, b, c) = (open(&path), open(&path), open(&path));
        try_lock(&a, Kind::Shared).unwrap();
        try_lock(&b, Kind::Shared).unwrap();
        assert!(matches!(
            try_lock(&a, Kind::Exclusive),
            Err(Refused::Conflict)
        ));
        // `a` still holds its shared lock: `c` cannot take the file.
        try_lock(&b, Kind::Unlock).unwrap();
        assert!(matches!(
            try_lock(&c, Kind::Exclusive),
            Err(Refused::Conflict)
        ));
        // Alone, `a` upgrades, and downgrades without letting `c` in.
        try_lock(&a, Kind::Exclusive).unwrap();
        assert!(matches!(try_lock(&c, Kind::Shared), Err(Refused::Conflict)));
        try_lock(&a, Kind::Shared).unwrap();
        try_lock(&c, Kind::Shared).unwrap();
        drop(a);
        try_lock(&c, Kind::Exclusive).unwrap();
    }
}
