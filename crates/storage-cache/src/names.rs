//! File names of cache entries: derived from a hash of the key, never from
//! the key itself, so any string is a safe key.
//!
//! An entry `NAME` owns up to three files: the data `NAME` (an mmap
//! resource), its driver's journal while partial (named by
//! `storage_mmap::fs`), and its marker `NAME.key` (the key, the pin, the
//! committed length).
//! `NAME` is `{hash:016x}-{probe}`: the 64-bit FNV-1a hash of the key's
//! bytes and the first probe number not taken by another key with the same
//! hash. The marker holds the key, so two keys never share a name.

use std::{fmt, path::Path};

use storage_mmap::fs::{journal_owner, journal_path};

/// Suffix of an entry's marker file.
pub(crate) const MARKER_SUFFIX: &str = ".key";
/// The owner lock file of a cache directory.
pub(crate) const LOCK_FILE: &str = "cache.lock";
/// The persisted index (a hint).
pub(crate) const INDEX_FILE: &str = "cache.index";

/// The 64-bit FNV-1a hash of `key`: stable across builds and platforms
/// (the names on disk must not change with the toolchain), tiny, and good
/// enough as collisions are resolved by probing.
pub(crate) fn key_hash(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.as_bytes().iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The name of an entry's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntryName {
    /// The key's hash.
    pub hash: u64,
    /// Which of the keys sharing `hash` this is.
    pub probe: u32,
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.hash, self.probe)
    }
}

impl EntryName {
    /// Parses a data file name (`{16 hex digits}-{decimal}`), strictly: the
    /// exact form [`fmt::Display`] writes, nothing else.
    pub fn parse(name: &str) -> Option<Self> {
        let (hash, probe) = name.split_once('-')?;
        if hash.len() != 16
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        if probe.is_empty()
            || !probe.bytes().all(|b| b.is_ascii_digit())
            || (probe.len() > 1 && probe.starts_with('0'))
        {
            return None;
        }
        Some(Self {
            hash: u64::from_str_radix(hash, 16).ok()?,
            probe: probe.parse().ok()?,
        })
    }

    /// The data file's name.
    pub fn data(self) -> String {
        self.to_string()
    }

    /// The marker file's name.
    pub fn marker(self) -> String {
        format!("{self}{MARKER_SUFFIX}")
    }

    /// The journal's name, as the mmap driver names it.
    pub fn journal(self) -> String {
        journal_path(Path::new(&self.data()))
            .to_string_lossy()
            .into_owned()
    }
}

/// What a file found in a cache directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// The owner lock file.
    Lock,
    /// The index, or one of its driver's side files (journal, temporary).
    Index,
    /// An entry's data file.
    Data(EntryName),
    /// An entry's marker.
    Marker(EntryName),
    /// An entry's journal.
    Journal(EntryName),
    /// Anything else: temporary files, foreign names. An orphan.
    Other,
}

/// Classifies a file name of a cache directory.
pub(crate) fn classify(name: &str) -> FileKind {
    if name == LOCK_FILE {
        return FileKind::Lock;
    }
    if name == INDEX_FILE {
        return FileKind::Index;
    }
    if let Some(stem) = name.strip_suffix(MARKER_SUFFIX) {
        return EntryName::parse(stem).map_or(FileKind::Other, FileKind::Marker);
    }
    if let Some(owner) = journal_owner(Path::new(name)) {
        return owner
            .to_str()
            .and_then(EntryName::parse)
            .map_or(FileKind::Other, FileKind::Journal);
    }
    EntryName::parse(name).map_or(FileKind::Other, FileKind::Data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        let name = EntryName {
            hash: key_hash("https://x/a.flac"),
            probe: 7,
        };
        assert_eq!(classify(&name.data()), FileKind::Data(name));
        assert_eq!(classify(&name.marker()), FileKind::Marker(name));
        assert_eq!(classify(&name.journal()), FileKind::Journal(name));
        let [_, journal_temp] = storage_mmap::fs::side_files(Path::new("0123456789abcdef-0"));
        let journal_temp = journal_temp.to_string_lossy().into_owned();
        for other in [
            "",
            "-",
            "0123456789abcdef-",
            "0123456789abcdef-01",
            "0123456789ABCDEF-0",
            "0123456789abcde-0",
            "0123456789abcdef-0.tmp",
            "0123456789abcdef-0.key.tmp",
            journal_temp.as_str(),
            ".0123456789abcdef-0.Xyz123.tmp",
            "0123456789abcdef-99999999999",
            "README",
        ] {
            assert_eq!(classify(other), FileKind::Other, "{other:?}");
        }
        assert_eq!(classify(LOCK_FILE), FileKind::Lock);
        assert_eq!(classify(INDEX_FILE), FileKind::Index);
    }

    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        // Published FNV-1a 64 test vectors: names on disk depend on them.
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
