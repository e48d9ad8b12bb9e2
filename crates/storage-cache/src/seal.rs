//! The seal: what a clean close writes into the owner lock file so that the
//! next open may trust the index whole.
//!
//! A clean close (the last `Cache` clone and lease dropped) writes the
//! index durably, then records in `cache.lock` the index file's length and
//! crc32 and the directory's own stamp (inode and modification time), and
//! syncs it. The next open reads the seal and *breaks* it — empties the
//! lock file and syncs that — before it changes anything, so a seal never
//! covers a directory the cache has changed since: a kill or a power loss
//! at any later instant leaves no seal, and the open after it scans the
//! directory in full.
//!
//! What a valid seal proves: the index is the one the last clean close
//! wrote (length and crc32), so every record in it was true at that close.
//! What it cannot prove, and how the cache learns it:
//!
//! - a name added or removed while the cache was closed changes the
//!   directory's modification time: the open then lists the directory by
//!   name (no `stat`), forgets records whose files are gone and reads the
//!   markers of the entries it did not know;
//! - a file rewritten *in place* (same name, same inode) changes no name:
//!   an entry taken from a sealed index is *unchecked* until its marker is
//!   read — at its first `resource`, `pin`, `unpin` or `remove`, and before
//!   eviction deletes its files (see `Shared::verify`).
//!
//! Layout: magic `SCSEAL01`, index length `u64`, index crc32 `u32`, the
//! directory's stamp `u64` × 2, then a crc32 of everything before it.
//! Little-endian.

use std::{
    fs::{self, File},
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use crate::index::{self, Stamp};

const MAGIC: &[u8; 8] = b"SCSEAL01";
const LEN: usize = 8 + 8 + 4 + 16 + 4;

/// How long after the directory's last change a seal is written: a change
/// made after that moves the directory's modification time even where the
/// file system stamps times with a coarse clock (the kernel's tick: 10 ms
/// at most), so an unchanged stamp proves no name changed.
const SETTLE: Duration = Duration::from_millis(20);

/// The same on a file system that keeps whole seconds (ext3, ext4 with
/// 128-byte inodes, HFS+: 1 s; FAT: 2 s), told by a modification time
/// with no fraction of a second: a change within the same second would
/// leave the stamp as it was.
const SETTLE_WHOLE_SECONDS: Duration = Duration::from_secs(2);

/// How long after `modified` a seal may be written (see [`SETTLE`]).
fn settle_after(modified: SystemTime) -> Duration {
    let whole_second = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|since| since.subsec_nanos() == 0);
    if whole_second {
        SETTLE_WHOLE_SECONDS
    } else {
        SETTLE
    }
}

/// What a clean close vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seal {
    /// The index file's length.
    pub index_len: u64,
    /// The crc32 of the whole index file.
    pub index_crc: u32,
    /// The cache directory's stamp once the index was in place.
    pub dir: Stamp,
}

impl Seal {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.index_len.to_le_bytes());
        bytes.extend_from_slice(&self.index_crc.to_le_bytes());
        bytes.extend_from_slice(&self.dir.0.to_le_bytes());
        bytes.extend_from_slice(&self.dir.1.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEN {
            return None;
        }
        let (body, crc) = bytes.split_at(LEN - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let (crc, rest) = rest.split_first_chunk::<4>()?;
        let (ino, rest) = rest.split_first_chunk::<8>()?;
        let (time, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            index_len: u64::from_le_bytes(*len),
            index_crc: u32::from_le_bytes(*crc),
            dir: (u64::from_le_bytes(*ino), u64::from_le_bytes(*time)),
        })
    }
}

/// Reads the seal in the lock file `lock` (at `lock_path`), then breaks it:
/// the lock file is emptied and synced before this returns, so nothing
/// changed after it is ever covered by this seal. `None` when there is no
/// valid seal (a kill, a power loss, a torn seal, a first open).
///
/// # Errors
///
/// When the lock file cannot be read, emptied or synced.
pub(crate) fn take(mut lock: &File, lock_path: &Path) -> io::Result<Option<Seal>> {
    let mut bytes = Vec::new();
    lock.seek(SeekFrom::Start(0))?;
    lock.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    lock.set_len(0)?;
    storage_mmap::fs::sync_file(lock_path)?;
    Ok(Seal::decode(&bytes))
}

/// The stamp of the directory `dir` now.
///
/// # Errors
///
/// When `dir` cannot be read.
pub(crate) fn dir_stamp(dir: &Path) -> io::Result<Stamp> {
    fs::metadata(dir).map(|meta| index::stamp(&meta))
}

/// The stamp of `dir`, once the clock has moved [`SETTLE`] past its last
/// change (a wait of at most that long).
///
/// # Errors
///
/// When `dir` cannot be read.
pub(crate) fn settled_dir_stamp(dir: &Path) -> io::Result<Stamp> {
    let meta = fs::metadata(dir)?;
    // Waited for only where an open trusts the stamp.
    if storage_mmap::fs::directory_stamps_are_exact()
        && let Ok(modified) = meta.modified()
    {
        let settle = settle_after(modified);
        if let Ok(wait) = (modified + settle).duration_since(SystemTime::now()) {
            std::thread::sleep(wait.min(settle));
        }
    }
    Ok(index::stamp(&meta))
}

/// Writes `seal` into the lock file `lock` (at `lock_path`) and syncs it.
///
/// # Errors
///
/// When the lock file cannot be written or synced (a torn seal is refused
/// by its crc32 at the next open).
pub(crate) fn write(mut lock: &File, lock_path: &Path, seal: &Seal) -> io::Result<()> {
    lock.seek(SeekFrom::Start(0))?;
    lock.write_all(&seal.encode())?;
    lock.set_len(LEN as u64)?;
    storage_mmap::fs::sync_file(lock_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_of_whole_seconds_waits_out_a_coarse_clock() {
        let fine = SystemTime::UNIX_EPOCH + Duration::new(1_765_000_000, 123_456_789);
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        assert_eq!(settle_after(fine), SETTLE);
        assert_eq!(settle_after(whole), SETTLE_WHOLE_SECONDS);
    }

    #[test]
    fn seals_round_trip_and_damage_is_refused() {
        let seal = Seal {
            index_len: 123_456,
            index_crc: 0xdead_beef,
            dir: (42, 1_700_000_000_123_456_789),
        };
        let bytes = seal.encode();
        assert_eq!(Seal::decode(&bytes), Some(seal));
        for cut in 0..bytes.len() {
            assert_eq!(Seal::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert_eq!(Seal::decode(&flipped), None, "flipped at {at}");
        }
    }

    #[test]
    fn a_seal_is_read_once_then_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        assert_eq!(take(&lock, &path).unwrap(), None);
        let seal = Seal {
            index_len: 1,
            index_crc: 2,
            dir: (3, 4),
        };
        write(&lock, &path, &seal).unwrap();
        assert_eq!(take(&lock, &path).unwrap(), Some(seal));
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(take(&lock, &path).unwrap(), None);
    }
}
