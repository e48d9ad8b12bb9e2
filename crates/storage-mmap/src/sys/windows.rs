//! Windows: `seek_write`, byte-range locks (`LockFileEx`) far past the
//! data, no reservation, and no directory sync (a directory cannot be
//! opened for syncing there; std and other stores skip it too).

use std::{
    fs::File,
    io,
    os::windows::{
        ffi::{OsStrExt, OsStringExt},
        fs::OpenOptionsExt,
        io::{AsRawHandle, FromRawHandle},
    },
    path::Path,
};

use windows_sys::Win32::{
    Foundation::{
        ERROR_ACCESS_DENIED, ERROR_LOCK_VIOLATION, ERROR_NOT_LOCKED, ERROR_SHARING_VIOLATION,
        ERROR_USER_MAPPED_FILE, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
    },
    Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, FILE_ATTRIBUTE_TEMPORARY, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_NAME_NORMALIZED, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE, GetDiskFreeSpaceExW, GetFileAttributesW, GetFileInformationByHandle,
        GetFinalPathNameByHandleW, INVALID_FILE_ATTRIBUTES, LOCKFILE_EXCLUSIVE_LOCK,
        LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, ReOpenFile, SetFileAttributesW, UnlockFileEx,
    },
    System::IO::OVERLAPPED,
};

use super::{Kind, Refused};

/// The sharing every handle of this crate allows: others may read, write,
/// and delete or rename the file (std's default, spelled out where a
/// handle is opened by hand).
const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/// Whether a removed file's name goes at once, even while a handle
/// holds the file (Windows: it lingers, delete pending, until closed).
pub(crate) const REMOVED_NAMES_GO_AT_ONCE: bool = false;

/// Whether a directory's stamp moves with every change of its names: the
/// stamp is a length and a time; a rename inside the directory was seen to
/// leave it as it was (under Wine).
pub(crate) const DIRECTORY_STAMPS_ARE_EXACT: bool = false;

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

/// No hole punching here: zeros are written instead.
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share"
)]
pub(super) fn punch_hole(_file: &File, _range: std::ops::Range<u64>) -> io::Result<bool> {
    Ok(false)
}

/// The file's index on its volume (`GetFileInformationByHandle`): a
/// file's identity for as long as it exists; `None` when the handle
/// cannot be asked. The volume's serial number is left out (the first
/// half is 0): Wine reports 0 for a handle whose file was renamed since it
/// was opened, and the files compared here are at one path or in one
/// directory, on one volume.
pub(super) fn file_id(file: &File) -> Option<(u64, u64)> {
    let mut info = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: the handle is open for the borrow of `file`; `info` lives
    // across the call, which only writes it.
    let done = unsafe { GetFileInformationByHandle(handle(file), &raw mut info) };
    (done != 0).then(|| {
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        (0, index)
    })
}

/// The identity of the file at `path` (of a link itself unless `follow`):
/// the entry is opened without any access (no sharing conflict with the
/// handles that hold it) and asked.
pub(super) fn path_id(path: &Path, follow: bool) -> io::Result<Option<(u64, u64)>> {
    let mut flags = FILE_FLAG_BACKUP_SEMANTICS;
    if !follow {
        flags |= FILE_FLAG_OPEN_REPARSE_POINT;
    }
    let entry = std::fs::OpenOptions::new()
        .access_mode(0)
        .share_mode(SHARE_ALL)
        .custom_flags(flags)
        .open(path)?;
    Ok(file_id(&entry))
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

/// Makes `file` durable (`FlushFileBuffers`, which std's `sync_data` and
/// `sync_all` both call). That call needs write access: a handle opened
/// for reading is reopened for writing (`ReOpenFile`), whose flush covers
/// every handle's writes (the cache is the file's, not the handle's).
pub(super) fn sync(file: &File, data_only: bool) -> io::Result<()> {
    let synced = if data_only {
        file.sync_data()
    } else {
        file.sync_all()
    };
    match synced {
        Err(error) if error.raw_os_error() == Some(ERROR_ACCESS_DENIED.cast_signed()) => {
            // SAFETY: the handle is open for the borrow of `file`; the call
            // only reads it.
            let writable = unsafe { ReOpenFile(handle(file), GENERIC_WRITE, SHARE_ALL, 0) };
            if writable == INVALID_HANDLE_VALUE {
                return Err(error);
            }
            // SAFETY: `writable` is a new handle that nothing else owns;
            // the `File` closes it.
            unsafe { File::from_raw_handle(writable) }.sync_all()
        }
        other => other,
    }
}

/// The byte whose lock is the file's lock: shared or exclusive, held by
/// one handle. Windows locks are mandatory (a locked byte cannot be read
/// or written through another handle), so the lock bytes lie far past any
/// data a file of this crate holds (locking past the end is allowed).
const STATE: u64 = 1 << 62;

/// The byte held exclusively while a handle changes its lock on [`STATE`]:
/// Windows neither upgrades nor downgrades a lock in place, so a change is
/// an unlock and a lock, and the gate keeps every other handle from
/// slipping in between. Each change takes it (waiting: it is held for two
/// system calls, never across a wait).
const GATE: u64 = STATE + 1;

/// A lock on the one byte at `at`: `Ok(false)` when another handle holds a
/// conflicting one (only asked with `wait` off).
fn lock_byte(file: &File, at: u64, exclusive: bool, wait: bool) -> io::Result<bool> {
    let mut flags = 0;
    if exclusive {
        flags |= LOCKFILE_EXCLUSIVE_LOCK;
    }
    if !wait {
        flags |= LOCKFILE_FAIL_IMMEDIATELY;
    }
    let mut overlapped = at_offset(at);
    // SAFETY: the handle is open for the borrow of `file`; `overlapped`
    // lives across the call, which completes before returning (the handle
    // is synchronous: std opens files without FILE_FLAG_OVERLAPPED).
    let done = unsafe { LockFileEx(handle(file), flags, 0, 1, 0, &raw mut overlapped) };
    if done != 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(ERROR_LOCK_VIOLATION.cast_signed()) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// Releases this handle's lock on the byte at `at`: `Ok(false)` when it
/// held none (Windows says `ERROR_NOT_LOCKED`, Wine `ERROR_LOCK_VIOLATION`).
fn unlock_byte(file: &File, at: u64) -> io::Result<bool> {
    let mut overlapped = at_offset(at);
    // SAFETY: as in `lock_byte`.
    let done = unsafe { UnlockFileEx(handle(file), 0, 1, 0, &raw mut overlapped) };
    if done != 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    let not_held = [ERROR_NOT_LOCKED, ERROR_LOCK_VIOLATION].map(|code| Some(code.cast_signed()));
    if not_held.contains(&error.raw_os_error()) {
        Ok(false)
    } else {
        Err(error)
    }
}

fn at_offset(at: u64) -> OVERLAPPED {
    let mut overlapped = OVERLAPPED::default();
    #[allow(clippy::cast_possible_truncation, reason = "the two halves of `at`")]
    {
        overlapped.Anonymous.Anonymous.Offset = at as u32;
        overlapped.Anonymous.Anonymous.OffsetHigh = (at >> 32) as u32;
    }
    overlapped
}

fn handle(file: &File) -> HANDLE {
    file.as_raw_handle()
}

/// Takes, changes or drops `file`'s lock, as `flock` does on Unix: an
/// upgrade that is refused keeps the shared lock, a downgrade never lets
/// an exclusive locker in.
pub(crate) fn try_lock(file: &File, kind: Kind) -> Result<(), Refused> {
    let exclusive = match kind {
        Kind::Unlock => return unlock_byte(file, STATE).map(drop).map_err(Refused::Io),
        Kind::Shared => false,
        Kind::Exclusive => true,
    };
    lock_byte(file, GATE, true, true).map_err(Refused::Io)?;
    let changed = change(file, exclusive);
    let opened = unlock_byte(file, GATE).map_err(Refused::Io);
    changed.and(opened.map(drop))
}

/// The change itself, under the gate: no other handle takes or changes a
/// lock meanwhile, so the shared lock given up for a refused upgrade is
/// taken back (only shared locks can be beside it).
fn change(file: &File, exclusive: bool) -> Result<(), Refused> {
    let held = unlock_byte(file, STATE).map_err(Refused::Io)?;
    if lock_byte(file, STATE, exclusive, false).map_err(Refused::Io)? {
        return Ok(());
    }
    if held && !lock_byte(file, STATE, false, false).map_err(Refused::Io)? {
        return Err(Refused::Io(io::Error::other(
            "the shared lock given up for an upgrade could not be taken back",
        )));
    }
    Err(Refused::Conflict)
}

/// The capacity of the volume that holds `file` (`GetDiskFreeSpaceExW` on
/// the directory of its final path), in bytes (a block of 1 byte), and
/// the file's length as what it holds; a volume that cannot be asked says
/// nothing (`Space::UNKNOWN`). Nothing is reserved ([`allocate`]): growth
/// is checked against this, then the file is only extended.
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Unix can fail"
)]
pub(super) fn space(file: &File) -> io::Result<super::Space> {
    Ok(volume_space(file).unwrap_or(super::Space::UNKNOWN))
}

fn volume_space(file: &File) -> Option<super::Space> {
    let mut name = vec![0u16; 1024];
    loop {
        let capacity = u32::try_from(name.len()).ok()?;
        // SAFETY: the handle is open for the borrow of `file`; `name` holds
        // `capacity` wide characters, which the call writes at most.
        let len = unsafe {
            GetFinalPathNameByHandleW(
                handle(file),
                name.as_mut_ptr(),
                capacity,
                FILE_NAME_NORMALIZED,
            )
        };
        match usize::try_from(len).ok()? {
            0 => return None,
            len if len < name.len() => {
                name.truncate(len);
                break;
            }
            // Too small: `len` is the size needed, with the NUL.
            len => name.resize(len, 0),
        }
    }
    let path = std::path::PathBuf::from(std::ffi::OsString::from_wide(&name));
    let dir = wide(path.parent()?);
    let (mut free, mut total) = (0u64, 0u64);
    // SAFETY: `dir` is a NUL-terminated wide string that outlives the
    // call; the two counts live across it; the third may be null.
    let done = unsafe {
        GetDiskFreeSpaceExW(
            dir.as_ptr(),
            &raw mut free,
            &raw mut total,
            std::ptr::null_mut(),
        )
    };
    (done != 0).then(|| super::Space {
        total_blocks: total,
        free_bytes: free,
        held: file.metadata().map_or(0, |meta| meta.len()),
    })
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature all platforms share; Unix can fail"
)]
pub(super) fn allocate(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    Ok(())
}

/// `path` as a NUL-terminated wide string, for the calls std does not wrap.
fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// Renames `from` over `to`. std's rename asks for POSIX semantics first
/// (`FileRenameInfoEx` with `FILE_RENAME_FLAG_POSIX_SEMANTICS`: the file at
/// `to` may be open, even mapped, elsewhere, whose handles keep the old
/// file) and falls back to `MoveFileExW(MOVEFILE_REPLACE_EXISTING)` where
/// the system or the file system lacks them (Wine, FAT, Windows before
/// 10 1709), which refuses a `to` that is open or mapped: see [`in_use`].
/// A temporary file (tempfile marks them `FILE_ATTRIBUTE_TEMPORARY`, which
/// lets the cache keep their data from the disk) is made an ordinary one
/// first.
pub(super) fn rename_over(from: &Path, to: &Path) -> io::Result<()> {
    let name = wide(from);
    // SAFETY: `name` is a NUL-terminated wide string that outlives the call.
    let attributes = unsafe { GetFileAttributesW(name.as_ptr()) };
    if attributes != INVALID_FILE_ATTRIBUTES && attributes & FILE_ATTRIBUTE_TEMPORARY != 0 {
        // SAFETY: as above.
        let done =
            unsafe { SetFileAttributesW(name.as_ptr(), attributes & !FILE_ATTRIBUTE_TEMPORARY) };
        if done == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    std::fs::rename(from, to)
}

/// Whether a rename over a file failed because the file is open or mapped
/// by a handle that did not allow it (or the system allows it to none).
pub(super) fn in_use(error: &io::Error) -> bool {
    [
        ERROR_ACCESS_DENIED,
        ERROR_SHARING_VIOLATION,
        ERROR_USER_MAPPED_FILE,
    ]
    .iter()
    .any(|code| error.raw_os_error() == Some(code.cast_signed()))
}

/// No state marks on Windows (no extended attributes through this crate):
/// a new file keeps a journal from its creation, as before marks.
pub(super) fn read_mark(_file: &File) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

pub(super) fn set_mark(_file: &File, _value: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(super) fn clear_mark(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Not read on Windows: under Wine a journal's creation time read through
/// a handle opened before its rename differed from one opened after it
/// (every journal looked replaced). The file index alone tells files apart.
pub(super) fn birth(_file: &File) -> Option<std::time::SystemTime> {
    None
}
