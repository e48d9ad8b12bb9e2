//! Platform code, one file per platform family (memmap2's layout): the
//! positional write, file identity (a replaced file) and version stamps,
//! advisory locks, block reservation and the directory sync. The rest of
//! the crate, and the crates built on it (through `fs`), never see a
//! `cfg(unix)` or a `std::os` call. The test build's fault injection is in
//! `faults.rs`.
//!
//! Tested: Linux (x86-64), where CI runs, and the Windows file under Wine
//! (`cargo xtask windows`).

use std::{fs::File, io, path::Path};

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod os;

/// The power-loss simulation reads files through `/proc` (Unix only, as
/// that simulation is).
#[cfg(all(unix, any(test, feature = "testing")))]
pub(crate) use os::contents_of;
pub(crate) use os::{
    CAN_CUT_MAPPED, DIRECTORY_STAMPS_ARE_EXACT, REMOVED_NAMES_GO_AT_ONCE, no_follow_no_block,
    try_lock,
};

/// A lock to hold on a whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Unlock,
    Shared,
    Exclusive,
}

/// Why a lock request did not succeed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Another handle holds a conflicting lock.
    Conflict,
    /// The file system has no locks of this kind.
    #[cfg_attr(
        windows,
        allow(dead_code, reason = "std's handle locks on Windows say no such thing")
    )]
    Unsupported,
    Io(io::Error),
}

/// The power-loss simulation keys files by their metadata (Unix only, as
/// that simulation is).
#[cfg(all(unix, any(test, feature = "testing")))]
pub(crate) use os::meta_id;

/// An open file's identity (device and inode on Unix, volume serial number
/// and file index on Windows), `None` when it cannot be read.
pub(crate) fn file_id(file: &File) -> Option<(u64, u64)> {
    os::file_id(file)
}

/// When `file` was made (Unix, where the file system says; `None` on
/// Windows): with [`file_id`], what tells a file from a later one given
/// its freed identity.
pub(crate) fn birth(file: &File) -> Option<std::time::SystemTime> {
    os::birth(file)
}

/// The identity of the entry at `path` itself (a link is not followed),
/// `None` when there is none or it cannot be read.
pub(crate) fn entry_id(path: &Path) -> Option<(u64, u64)> {
    os::path_id(path, false).ok().flatten()
}

/// The identity of the file at `path`, links followed: `Ok(None)` when it
/// cannot be read from an entry that exists; an error (`NotFound` for no
/// entry) when the path cannot be looked up.
pub(crate) fn path_id(path: &Path) -> io::Result<Option<(u64, u64)>> {
    os::path_id(path, true)
}

/// Whether the identities `a` and `b` are of the same file; `None` where
/// either is unknown (then callers assume they are).
pub(crate) fn same_id(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<bool> {
    a.zip(b).map(|(a, b)| a == b)
}

/// What tells one version of a file from another: on Unix its inode and
/// modification time (a rename over it or a write into it changes the
/// stamp), elsewhere its length and modification time.
pub(crate) fn stamp(meta: &std::fs::Metadata) -> (u64, u64) {
    os::stamp(meta)
}

/// Renames `from` over `to`, in one step that a crash cannot tear (the old
/// file or the new one is at `to`). Where the platform refuses to rename
/// over a file that another handle holds open or mapped (Windows without
/// POSIX-semantics renames, Wine among them), the error says so
/// ([`in_use`]) and nothing changed.
pub(crate) fn rename_over(from: &Path, to: &Path) -> io::Result<()> {
    os::rename_over(from, to)
}

/// Whether an error of [`rename_over`] means that the file at the target
/// is open or mapped by a handle, which this platform does not rename
/// over (never on Unix).
pub(crate) fn in_use(error: &io::Error) -> bool {
    os::in_use(error)
}

/// Syncs the directory that holds `path` (a new or removed name in it);
/// a no-op where directories cannot be opened for syncing.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    probe::may_fail_dir(dir)?;
    os::sync_dir(dir)?;
    probe::synced(&Synced::Dir(dir));
    Ok(())
}

/// Held while a name in a directory is checked and then relied on (a
/// lock taken on the file found there, a rename over it): every handle of
/// this library that checks-then-acts on a name takes it, so no rename by
/// one lands between another's check and its act. Cross-process (an
/// advisory lock on the directory); the critical sections are a `stat`
/// and a `rename` long, so it is waited for. Released on drop.
pub(crate) struct DirLock(#[allow(dead_code, reason = "held for its lock")] Option<File>);

/// Takes the [`DirLock`] of the directory holding `path` (none where the
/// platform cannot lock a directory, or the directory cannot be opened).
pub(crate) fn dir_lock(path: &Path) -> DirLock {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    DirLock(os::lock_dir(dir))
}

/// What the file system says of its capacity, and what a file holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Space {
    /// The file system's size in blocks: `0` when it does not say (FUSE
    /// file systems without `statfs`, such as `LazyFS`, and some network
    /// mounts report 0 total and 0 free).
    pub(crate) total_blocks: u64,
    /// Bytes free for this process.
    pub(crate) free_bytes: u64,
    /// Bytes the file already holds on disk.
    pub(crate) held: u64,
}

impl Space {
    /// A file system that says nothing.
    #[allow(dead_code, reason = "used by the platforms without statvfs")]
    pub(crate) const UNKNOWN: Self = Self {
        total_blocks: 0,
        free_bytes: 0,
        held: 0,
    };
}

/// Reserves the disk blocks for growing `file` from `from` to `to` bytes
/// (allocated up to `allocate_to`; the free space is checked for `to`).
///
/// What cannot fit is refused at once (`StorageFull`), before `fallocate`
/// would fill the disk block by block; blocks the file already holds need
/// no new space. A file system that reports no capacity (a total of 0
/// blocks) means "unknown", not "full": it is taken at `fallocate`'s word,
/// and where there is no `fallocate` either, the file is only extended.
/// That cannot end in SIGBUS here: bytes reach the file by `pwrite` (a
/// full disk is its `Err`), and readers of the mapping only touch bytes a
/// `pwrite` stored, never the unreserved growth.
pub(crate) fn reserve(file: &File, from: u64, to: u64, allocate_to: u64) -> io::Result<()> {
    if to <= from {
        return Ok(());
    }
    let space = probe::space().map_or_else(|| os::space(file), Ok)?;
    let wanted = (to - from).saturating_sub(space.held.saturating_sub(from));
    if space.total_blocks != 0 && wanted > space.free_bytes {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "cannot reserve {wanted} bytes: {} bytes free on the file system",
                space.free_bytes
            ),
        ));
    }
    if probe::space().is_some() || allocate_to <= from {
        // The test's file system has no `fallocate` either.
        return Ok(());
    }
    os::allocate(file, from, allocate_to.min(to))
}

/// Writes all of `data` at `offset` (`pwrite` until done). An error may
/// come after some of the bytes are in the file; the test build's probe
/// makes such errors on demand.
pub(crate) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    if let Some(stored) = probe::cut_write(file, data.len()) {
        os::write_all_at(file, &data[..stored], offset)?;
        return Err(io::Error::other("injected: the disk failed mid-write"));
    }
    os::write_all_at(file, data, offset)
}

/// Makes `range` of `file` read as zeros without growing the file: the
/// blocks are freed (`fallocate` `PUNCH_HOLE` where there is one), or
/// zeros are written over the part below the file's length.
pub(crate) fn zero_range(file: &File, range: std::ops::Range<u64>) -> io::Result<()> {
    let end = range.end.min(file.metadata()?.len());
    if range.start >= end || (!probe::no_punch() && os::punch_hole(file, range.start..end)?) {
        return Ok(());
    }
    let zeros = [0u8; 16 * 1024];
    let mut at = range.start;
    while at < end {
        let n = usize::try_from(end - at).map_or(zeros.len(), |left| left.min(zeros.len()));
        write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Makes `file`'s data (and the length needed to read it) durable.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    probe::may_fail(file)?;
    os::sync(file, true)?;
    probe::synced(&Synced::File(file));
    Ok(())
}

/// The state mark stored with `file` (an extended attribute), `None`
/// when there is none or the platform keeps none (see `mark.rs`).
pub(crate) fn read_mark(file: &File) -> io::Result<Option<Vec<u8>>> {
    os::read_mark(file)
}

/// Sets `file`'s state mark: a metadata change, no sync. `Unsupported`
/// where the platform or file system keeps no extended attributes (and in
/// this crate's tests of the fallback, `probe::without_marks`).
pub(crate) fn set_mark(file: &File, value: &[u8]) -> io::Result<()> {
    if probe::marks_refused() {
        return Err(io::ErrorKind::Unsupported.into());
    }
    os::set_mark(file, value)
}

/// Removes `file`'s state mark, if it has one.
pub(crate) fn clear_mark(file: &File) -> io::Result<()> {
    os::clear_mark(file)
}

/// Makes `file`'s data and metadata durable.
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    probe::may_fail(file)?;
    os::sync(file, false)?;
    probe::synced(&Synced::File(file));
    Ok(())
}

/// What a sync made durable, for the power-loss test's probe. Every sync
/// of this crate goes through [`sync_data`], [`sync_all`] or [`sync_dir`]:
/// the one seam where durability happens.
#[cfg_attr(
    not(all(unix, any(test, feature = "testing"))),
    allow(dead_code, reason = "read by the power-loss simulation only (Unix)")
)]
pub(crate) enum Synced<'a> {
    /// A file's contents (and length).
    File(&'a File),
    /// A directory's names.
    Dir(&'a Path),
}

/// The probe: nothing outside tests (beyond the power-loss simulation of
/// feature `testing`); in this crate's tests, the fault injection of
/// `faults.rs`.
#[cfg(not(test))]
mod probe {
    #[inline]
    pub(crate) fn synced(event: &super::Synced<'_>) {
        #[cfg(all(unix, feature = "testing"))]
        crate::fs::testing::synced(event);
        let _ = event;
    }

    #[inline]
    #[allow(
        clippy::unnecessary_wraps,
        reason = "the test build's probe can fail; this one never does"
    )]
    pub(crate) fn may_fail(_file: &std::fs::File) -> std::io::Result<()> {
        Ok(())
    }

    #[inline]
    #[allow(
        clippy::unnecessary_wraps,
        reason = "the test build's probe can fail; this one never does"
    )]
    pub(crate) fn may_fail_dir(_dir: &std::path::Path) -> std::io::Result<()> {
        Ok(())
    }

    #[inline]
    pub(crate) fn cut_write(_file: &std::fs::File, _len: usize) -> Option<usize> {
        None
    }

    #[inline]
    pub(crate) fn no_punch() -> bool {
        false
    }

    #[inline]
    pub(crate) fn marks_refused() -> bool {
        false
    }

    #[inline]
    pub(crate) fn space() -> Option<super::Space> {
        None
    }
}

#[cfg(test)]
#[path = "faults.rs"]
pub(crate) mod probe;

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        io::{Read, Seek, Write},
    };

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
        os::try_lock(&a, Kind::Shared).unwrap();
        os::try_lock(&b, Kind::Shared).unwrap();
        assert!(matches!(
            os::try_lock(&a, Kind::Exclusive),
            Err(Refused::Conflict)
        ));
        // `a` still holds its shared lock: `c` cannot take the file.
        os::try_lock(&b, Kind::Unlock).unwrap();
        assert!(matches!(
            os::try_lock(&c, Kind::Exclusive),
            Err(Refused::Conflict)
        ));
        // Alone, `a` upgrades, and downgrades without letting `c` in.
        os::try_lock(&a, Kind::Exclusive).unwrap();
        assert!(matches!(
            os::try_lock(&c, Kind::Shared),
            Err(Refused::Conflict)
        ));
        os::try_lock(&a, Kind::Shared).unwrap();
        os::try_lock(&c, Kind::Shared).unwrap();
        drop(a);
        os::try_lock(&c, Kind::Exclusive).unwrap();
    }

    #[test]
    fn a_file_system_that_reports_no_capacity_is_not_taken_for_a_full_one() {
        use storage_core::{CancellationToken, ResourceExt, ResourceStatus};

        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            crate::MmapResource::open(
                CancellationToken::new(),
                crate::MmapOptions::new(dir.path().join(name)),
            )
        };
        // LazyFS, some FUSE and network mounts: 0 total, 0 free.
        probe::SPACE.set(Some(Space::UNKNOWN));
        let unknown = open("unknown").map(|resource| {
            // Growth past the first 64 KiB, twice.
            let data = storage_core::testing::pattern(1, 300_000);
            resource.write_at(0, &data).unwrap();
            resource.commit(Some(300_000)).unwrap();
            let mut back = Vec::new();
            resource.read_into(&mut back).unwrap();
            (resource.status(), back == data)
        });
        // A known, full file system is still refused at once.
        probe::SPACE.set(Some(Space {
            total_blocks: 1000,
            ..Space::UNKNOWN
        }));
        let full = open("full").map(|_| ());
        probe::SPACE.set(None);
        assert_eq!(
            unknown.unwrap(),
            (
                ResourceStatus::Committed {
                    final_len: Some(300_000)
                },
                true
            )
        );
        let error = full.unwrap_err().to_string();
        assert!(error.contains("0 bytes free"), "{error}");
    }

    #[test]
    fn zero_range_zeros_within_the_file_and_never_grows_it() {
        for no_punch in [false, true] {
            probe::NO_PUNCH.set(no_punch);
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&vec![7u8; 100_000]).unwrap();
            zero_range(&file, 10_000..90_000).unwrap();
            zero_range(&file, 99_000..200_000).unwrap();
            zero_range(&file, 150_000..160_000).unwrap();
            let mut bytes = Vec::new();
            file.seek(std::io::SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes.len(), 100_000, "no_punch {no_punch}");
            assert!(bytes[..10_000].iter().all(|&b| b == 7));
            assert!(bytes[10_000..90_000].iter().all(|&b| b == 0));
            assert!(bytes[90_000..99_000].iter().all(|&b| b == 7));
            assert!(bytes[99_000..].iter().all(|&b| b == 0));
        }
        probe::NO_PUNCH.set(false);
    }
}
