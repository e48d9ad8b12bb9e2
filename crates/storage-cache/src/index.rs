//! The persisted index `cache.index`: a hint that spares `Cache::open`
//! reading every marker, and the only record of the least-recently-used
//! order across restarts.
//!
//! For each entry it keeps the name, the key, the last use, the pin, the
//! committed length, and the *stamp* of the marker it was read from (inode
//! and modification time). At open, a marker whose stamp matches its index
//! record is not read again (a marker is only ever replaced whole by a
//! rename, which gives it a new inode); any other marker is read. Entries
//! the index lists but the directory lacks are forgotten. So a missing,
//! stale or corrupt index costs time, never an entry or a pin.
//!
//! It also keeps each entry's data length, so that an open that may trust
//! the index whole (a *sealed* one, see `seal.rs`) needs no `stat` of the
//! data files for `stats().bytes`. Records are written least recently used
//! first: an open adds them in that order without sorting.
//!
//! Layout: magic `SCINDEX2`, entry count `u64`, then per entry: hash `u64`,
//! probe `u32`, stamp `u64` × 2, last use `u64`, committed length `u64`
//! (`u64::MAX`: none), data length `u64`, pinned `u8`, key length `u32`,
//! key; then a crc32 of everything before it. Little-endian. Written with
//! the mmap driver's whole replacement (`replace_all(bytes, durable =
//! true)`).

use std::{fs, io, path::Path};

use storage_core::{CancellationToken, ResourceExt, StorageError, StorageResult};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

use crate::names::EntryName;

const MAGIC: &[u8; 8] = b"SCINDEX2";
const NO_LENGTH: u64 = u64::MAX;
/// The bytes of a record with an empty key.
pub(crate) const RECORD_MIN: usize = 8 + 4 + 16 + 8 + 8 + 8 + 1 + 4;

/// What identifies one version of a marker file: its inode and its
/// modification time (on platforms without inodes, its length and time).
pub(crate) type Stamp = (u64, u64);

/// The stamp of a file's metadata (the mmap driver's platform code makes
/// it).
pub(crate) fn stamp(meta: &fs::Metadata) -> Stamp {
    storage_mmap::fs::version_stamp(meta)
}

/// One entry as the index remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    /// The entry's file name.
    pub name: EntryName,
    /// The stamp of the marker this record was taken from.
    pub stamp: Stamp,
    /// The last use (a tick of the cache's clock; only the order matters).
    pub last_use: u64,
    /// Pinned, as the marker says.
    pub pinned: bool,
    /// The committed length, as the marker says.
    pub committed_len: Option<u64>,
    /// The data file's length.
    pub bytes: u64,
    /// The key, as the marker says.
    pub key: Box<str>,
}

/// The index's bytes.
pub(crate) fn encode(records: &[IndexRecord]) -> Vec<u8> {
    let keys: usize = records.iter().map(|r| r.key.len()).sum();
    let mut bytes = Vec::with_capacity(16 + records.len() * RECORD_MIN + keys + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for record in records {
        bytes.extend_from_slice(&record.name.hash.to_le_bytes());
        bytes.extend_from_slice(&record.name.probe.to_le_bytes());
        bytes.extend_from_slice(&record.stamp.0.to_le_bytes());
        bytes.extend_from_slice(&record.stamp.1.to_le_bytes());
        bytes.extend_from_slice(&record.last_use.to_le_bytes());
        bytes.extend_from_slice(&record.committed_len.unwrap_or(NO_LENGTH).to_le_bytes());
        bytes.extend_from_slice(&record.bytes.to_le_bytes());
        bytes.push(u8::from(record.pinned));
        bytes.extend_from_slice(
            &u32::try_from(record.key.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        bytes.extend_from_slice(record.key.as_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Reads `count` little-endian bytes from the front of `rest`.
fn take<'a, const N: usize>(rest: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(head)
}

/// Parses an index; `None` when it is torn, corrupt or foreign (then the
/// directory alone is read).
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<IndexRecord>> {
    let mut records = Vec::new();
    decode_each(bytes, |record| records.push(record))?;
    Some(records)
}

/// Parses an index, handing each record to `each` in the order written
/// (least recently used first); the count, or `None` when it is torn,
/// corrupt or foreign — checked by its crc32 before the first record is
/// handed over, so `None` after some were is a file that lies about itself
/// behind a valid crc32 (the caller then drops what it got).
pub(crate) fn decode_each(bytes: &[u8], mut each: impl FnMut(IndexRecord)) -> Option<u64> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC)?;
    let count = u64::from_le_bytes(*take::<8>(&mut rest)?);
    // Each record takes at least `RECORD_MIN` bytes: a count beyond that is
    // a lie.
    if count > (rest.len() / RECORD_MIN) as u64 {
        return None;
    }
    for _ in 0..count {
        let hash = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let probe = u32::from_le_bytes(*take::<4>(&mut rest)?);
        let stamp = (
            u64::from_le_bytes(*take::<8>(&mut rest)?),
            u64::from_le_bytes(*take::<8>(&mut rest)?),
        );
        let last_use = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let committed_len = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let data_len = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let pinned = match take::<1>(&mut rest)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        let key_len = usize::try_from(u32::from_le_bytes(*take::<4>(&mut rest)?)).ok()?;
        let (key, tail) = rest.split_at_checked(key_len)?;
        rest = tail;
        each(IndexRecord {
            name: EntryName { hash, probe },
            stamp,
            last_use,
            pinned,
            committed_len: (committed_len != NO_LENGTH).then_some(committed_len),
            bytes: data_len,
            key: std::str::from_utf8(key).ok()?.into(),
        });
    }
    rest.is_empty().then_some(count)
}

/// The crc32 an index file ends with (of everything before it).
pub(crate) fn trailing_crc(bytes: &[u8]) -> Option<u32> {
    let (_, crc) = bytes.split_last_chunk::<4>()?;
    Some(u32::from_le_bytes(*crc))
}

/// Reads the index at `path`: `Ok(None)` when there is none or it is not
/// valid (then the directory alone is the truth).
///
/// # Errors
///
/// `Io` when the file exists but cannot be read.
pub(crate) fn read(path: &Path) -> StorageResult<Option<Vec<IndexRecord>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StorageError::io("cannot read the cache index", path, error)),
    }
}

/// Replaces the index at `path` with `records`, whole and durably, through
/// the mmap driver's replacement (temporary file, sync, rename).
///
/// Returns the written file's length and its own crc32 (its last four
/// bytes, covering the rest): what a seal records.
///
/// # Errors
///
/// `Io` when the directory refuses the file; the old index is then kept.
pub(crate) fn write(path: &Path, records: &[IndexRecord]) -> StorageResult<(u64, u32)> {
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions {
            path: path.to_path_buf(),
            initial_len: None,
            mode: OpenMode::Auto,
        },
    )?;
    let bytes = encode(records);
    resource.replace_all(&bytes, true)?;
    resource.sync()?;
    Ok((bytes.len() as u64, trailing_crc(&bytes).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, probe: u32) -> IndexRecord {
        IndexRecord {
            name: EntryName {
                hash: crate::names::key_hash(key),
                probe,
            },
            stamp: (u64::from(probe) + 11, 22),
            last_use: 33,
            pinned: !probe.is_multiple_of(2),
            committed_len: (!probe.is_multiple_of(3)).then_some(u64::from(probe) * 1000),
            bytes: u64::from(probe) * 4096,
            key: key.into(),
        }
    }

    #[test]
    fn indexes_round_trip_and_damage_is_refused() {
        let records: Vec<IndexRecord> = (0..5)
            .map(|i| record(&"k".repeat(i as usize * 7), i))
            .collect();
        let bytes = encode(&records);
        assert_eq!(decode(&bytes), Some(records));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped), None);
        assert_eq!(decode(&encode(&[])), Some(Vec::new()));
    }

    #[test]
    fn writing_replaces_the_index_and_leaves_no_side_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::names::INDEX_FILE);
        write(&path, &[record("a", 1)]).unwrap();
        write(&path, &[record("b", 2), record("c", 3)]).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            Some(vec![record("b", 2), record("c", 3)])
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(crate::names::INDEX_FILE)]
        );
    }
}
