//! An entry's marker `NAME.key`: its key, whether it is pinned, and the
//! length it was committed at. Written whole (temporary file + rename), so
//! a kill leaves the old marker or the new one.
//!
//! Layout: magic `SCKEY001`, flags `u8` (bit 0: pinned), committed length
//! `u64` (`u64::MAX`: unknown or never committed), key length `u32`, the
//! key's bytes, then a crc32 of everything before it. All little-endian.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use storage_core::{StorageError, StorageResult};

const MAGIC: &[u8; 8] = b"SCKEY001";
const NO_LENGTH: u64 = u64::MAX;
const FLAG_PINNED: u8 = 1;

/// What a marker says about its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The entry's key.
    pub key: Box<str>,
    /// Never evicted, kept across restarts.
    pub pinned: bool,
    /// The length the entry was last committed at, when known: a committed
    /// file of another length was cut or changed from outside.
    pub committed_len: Option<u64>,
}

impl Marker {
    /// The marker's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let key = self.key.as_bytes();
        let mut bytes = Vec::with_capacity(8 + 1 + 8 + 4 + key.len() + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.push(if self.pinned { FLAG_PINNED } else { 0 });
        bytes.extend_from_slice(&self.committed_len.unwrap_or(NO_LENGTH).to_le_bytes());
        // Keys longer than 4 GiB cannot be markers; `Cache::resource` refuses them first.
        bytes.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        bytes.extend_from_slice(key);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses a marker; `None` when it is torn, corrupt or foreign.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let (&flags, rest) = rest.split_first()?;
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let (key_len, key) = rest.split_first_chunk::<4>()?;
        if usize::try_from(u32::from_le_bytes(*key_len)).ok()? != key.len()
            || flags & !FLAG_PINNED != 0
        {
            return None;
        }
        let committed_len = u64::from_le_bytes(*len);
        Some(Self {
            key: std::str::from_utf8(key).ok()?.into(),
            pinned: flags & FLAG_PINNED != 0,
            committed_len: (committed_len != NO_LENGTH).then_some(committed_len),
        })
    }

    /// Reads the marker at `path`; `Ok(None)` when it is missing or not a
    /// marker.
    ///
    /// # Errors
    ///
    /// `Io` when the file exists but cannot be read.
    pub fn read(path: &Path) -> StorageResult<Option<Self>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Self::decode(&bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::io(
                "cannot read the cache marker",
                path,
                error,
            )),
        }
    }

    /// Writes the marker to `path` whole: a temporary file beside it, then a
    /// rename. With `durable`, the temporary file is synced before the
    /// rename and the directory after it, so the marker survives a power
    /// loss (a pin, a synced commit); otherwise it survives a killed
    /// process (the page cache does), and after a power loss a torn or
    /// lost marker drops its entry, never gives its bytes to another key
    /// (see the README, "Durability").
    ///
    /// # Errors
    ///
    /// `Io` when the directory refuses the file or a sync fails; the
    /// temporary file is then removed and the old marker (if any) is left
    /// as it was (or, after a failed directory sync, the new one is in
    /// place but not yet durable).
    pub fn write(&self, path: &Path, durable: bool) -> StorageResult<()> {
        let temp = temp_path(path);
        let result = fs::write(&temp, self.encode())
            .and_then(|()| {
                if durable {
                    storage_mmap::fs::sync_file(&temp)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StorageError::io("cannot write the cache marker", &temp, e))
            .and_then(|()| {
                fs::rename(&temp, path).map_err(|e| {
                    StorageError::io("cannot rename the cache marker into place", path, e)
                })
            });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        if durable {
            sync_name(path)?;
        }
        Ok(())
    }
}

/// Makes the marker at `path` durable: its contents, then its name.
///
/// # Errors
///
/// `Io` when a sync fails.
pub(crate) fn sync(path: &Path) -> StorageResult<()> {
    storage_mmap::fs::sync_file(path)
        .map_err(|e| StorageError::io("cannot sync the cache marker", path, e))?;
    sync_name(path)
}

/// Syncs the directory of `path` (its name there).
fn sync_name(path: &Path) -> StorageResult<()> {
    storage_mmap::fs::sync_dir(path)
        .map_err(|e| StorageError::io("cannot sync the cache directory of", path, e))
}

/// `NAME.key.tmp`, the marker's temporary name (an orphan if a kill leaves it).
fn temp_path(path: &Path) -> PathBuf {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    PathBuf::from(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_damage_is_refused() {
        for marker in [
            Marker {
                key: "".into(),
                pinned: false,
                committed_len: None,
            },
            Marker {
                key: "../../etc/passwd\0é".into(),
                pinned: true,
                committed_len: Some(0),
            },
            Marker {
                key: "k".repeat(10_240).into(),
                pinned: false,
                committed_len: Some(u64::MAX - 1),
            },
        ] {
            let bytes = marker.encode();
            assert_eq!(Marker::decode(&bytes), Some(marker.clone()));
            for cut in 0..bytes.len().min(64) {
                assert_eq!(Marker::decode(&bytes[..cut]), None);
            }
            let mut flipped = bytes.clone();
            flipped[10] ^= 0x40;
            assert_eq!(Marker::decode(&flipped), None);
        }
    }
}
