//! Opening a cache directory: taking ownership of it, and rebuilding the
//! books from it (the index only a hint) into the `Shared` a `Cache` wraps.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File, TryLockError},
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::{Condvar, Mutex};
use storage_core::{StorageError, StorageResult};

use crate::{
    CacheOptions,
    index::{self, IndexRecord, Stamp},
    marker::Marker,
    names::{EntryName, FileKind, INDEX_FILE, LOCK_FILE, classify, key_hash},
    policy::Recalled,
    seal,
    shared::{Books, Shared, remove_if_present},
    state::{LeaseState, NewEntry},
};

/// An entry as found on disk, before its last use is known.
struct Found {
    name: EntryName,
    key: Box<str>,
    pinned: bool,
    committed_len: Option<u64>,
    stamp: Stamp,
    bytes: u64,
    /// Where it goes in the eviction order.
    order: Recalled,
    /// Its marker was read (or vouched for by its stamp) at this open.
    checked: bool,
}

impl Found {
    /// An entry as a sealed index records it: trusted, its marker unread.
    fn sealed(record: IndexRecord) -> Self {
        Self {
            name: record.name,
            key: record.key,
            pinned: record.pinned,
            committed_len: record.committed_len,
            stamp: record.stamp,
            bytes: record.bytes,
            order: Recalled::indexed(record.last_use),
            checked: false,
        }
    }
}

/// What a valid seal let the open trust: the index's bytes (the sealed
/// length, ending with the sealed crc32), and whether the directory's names
/// are as the close left them.
struct Sealed {
    bytes: Vec<u8>,
    unchanged: bool,
}

/// Creates `dir` if needed, checks it is a directory, takes its owner
/// lock, and takes (and breaks) the seal of the last clean close.
fn take_ownership(dir: &Path) -> StorageResult<(File, Option<Sealed>)> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StorageError::io(
                "the cache directory is not a directory",
                dir,
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)
                .map_err(|e| StorageError::io("cannot create the cache directory", dir, e))?;
        }
        Err(error) => {
            return Err(StorageError::io(
                "cannot open the cache directory",
                dir,
                error,
            ));
        }
    }
    let lock_path = dir.join(LOCK_FILE);
    if !lock_path.exists() {
        let mut names = fs::read_dir(dir)
            .map_err(|e| StorageError::io("cannot read the cache directory", dir, e))?;
        if names.next().is_some() {
            return Err(StorageError::io(
                "not a cache directory: it is not empty and has no cache.lock (its files would be removed as orphans)",
                dir,
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
    }
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StorageError::io("cannot open the cache's lock file", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {
            // Before anything here changes (the probe below changes the
            // directory's stamp).
            let sealed = unseal(dir, &lock, &lock_path)?;
            check_writable(dir)?;
            Ok((lock, sealed))
        }
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path: lock_path }),
        Err(TryLockError::Error(error)) => Err(StorageError::io(
            "cannot lock the cache directory",
            &lock_path,
            error,
        )),
    }
}

/// Reads the seal and breaks it (see `seal.rs`); the sealed index, when
/// the seal is valid and the index is the one it vouches for.
fn unseal(dir: &Path, lock: &File, lock_path: &Path) -> StorageResult<Option<Sealed>> {
    let seal = seal::take(lock, lock_path)
        .map_err(|e| StorageError::io("cannot read or break the cache's seal", lock_path, e))?;
    let Some(seal) = seal else {
        return Ok(None);
    };
    // Where stamps cannot prove that nothing changed (a directory's, or a
    // marker's: see `storage_mmap::fs::directory_stamps_are_exact`), the
    // seal is not trusted at all: the full scan reads every marker.
    if !storage_mmap::fs::directory_stamps_are_exact() {
        return Ok(None);
    }
    let Ok(bytes) = fs::read(dir.join(INDEX_FILE)) else {
        return Ok(None);
    };
    // The index's own crc32 covers the rest of it (checked as it is
    // decoded): a seal naming its length and that crc32 names this file.
    if bytes.len() as u64 != seal.index_len || index::trailing_crc(&bytes) != Some(seal.index_crc) {
        return Ok(None);
    }
    let unchanged = seal::dir_stamp(dir).is_ok_and(|stamp| stamp == seal.dir);
    Ok(Some(Sealed { bytes, unchanged }))
}

/// Creates and removes a probe file: a cache must create and delete files,
/// and a directory that refuses it (read-only, immutable) is an error now
/// rather than at the first download.
/// The probe is closed before it is removed: a FUSE file system (libfuse)
/// renames a file removed while open to a hidden `.fuse_hidden…` name
/// instead, which the scan would then meet.
fn check_writable(dir: &Path) -> StorageResult<()> {
    let probe = dir.join(".cache-open-probe.tmp");
    File::create(&probe)
        .map(drop)
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|e| StorageError::io("the cache directory is not writable", dir, e))
}

/// The stamp of a file's modification time as a number, for ordering
/// entries the index does not know.
fn mtime(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The files of a cache directory, sorted by kind.
#[derive(Default)]
struct Listing {
    data: HashMap<EntryName, fs::Metadata>,
    markers: Vec<(EntryName, fs::Metadata)>,
    journals: HashSet<EntryName>,
    orphans: Vec<PathBuf>,
}

/// Lists `dir` once (one `stat` per file).
fn list(dir: &Path) -> StorageResult<Listing> {
    let mut listing = Listing::default();
    let items = fs::read_dir(dir)
        .map_err(|e| StorageError::io("cannot read the cache directory", dir, e))?;
    for item in items {
        let item = item.map_err(|e| StorageError::io("cannot read the cache directory", dir, e))?;
        let file_name = item.file_name();
        let Some(name) = file_name.to_str() else {
            listing.orphans.push(item.path());
            continue;
        };
        let meta = match item.metadata() {
            Ok(meta) => meta,
            // Gone since it was listed (a FUSE file system's hidden file
            // of a file closed meanwhile, another program's temporary
            // file): not a file of this cache any more.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(StorageError::io(
                    "cannot stat a cache file",
                    item.path(),
                    error,
                ));
            }
        };
        if meta.is_dir() {
            // Never deleted: see the README ("Orphans").
            continue;
        }
        match classify(name) {
            FileKind::Lock | FileKind::Index if meta.is_file() => {}
            FileKind::Data(entry) if meta.is_file() => {
                listing.data.insert(entry, meta);
            }
            FileKind::Marker(entry) if meta.is_file() => listing.markers.push((entry, meta)),
            FileKind::Journal(entry) => {
                listing.journals.insert(entry);
            }
            _ => listing.orphans.push(item.path()),
        }
    }
    Ok(listing)
}

/// The files of a cache directory by name and kind only (no `stat`: the
/// kind comes with the listing on most file systems).
#[derive(Default)]
struct Names {
    data: HashSet<EntryName>,
    /// Each marker with its inode where the platform lists it (`None`
    /// elsewhere).
    markers: HashMap<EntryName, Option<u64>>,
    journals: HashSet<EntryName>,
    orphans: Vec<PathBuf>,
}

#[cfg(unix)]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the same signature as on platforms that list no inode"
)]
fn listed_inode(item: &fs::DirEntry) -> Option<u64> {
    use std::os::unix::fs::DirEntryExt;
    Some(item.ino())
}

#[cfg(not(unix))]
fn listed_inode(_: &fs::DirEntry) -> Option<u64> {
    None
}

/// Lists `dir` by name (see [`Names`]).
fn list_names(dir: &Path) -> StorageResult<Names> {
    let mut names = Names::default();
    let items = fs::read_dir(dir)
        .map_err(|e| StorageError::io("cannot read the cache directory", dir, e))?;
    for item in items {
        let item = item.map_err(|e| StorageError::io("cannot read the cache directory", dir, e))?;
        let file_name = item.file_name();
        let Some(name) = file_name.to_str() else {
            names.orphans.push(item.path());
            continue;
        };
        let kind = match item.file_type() {
            Ok(kind) => kind,
            // Gone since it was listed: see `list`.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(StorageError::io(
                    "cannot stat a cache file",
                    item.path(),
                    error,
                ));
            }
        };
        if kind.is_dir() {
            continue;
        }
        match classify(name) {
            FileKind::Lock | FileKind::Index if kind.is_file() => {}
            FileKind::Data(entry) if kind.is_file() => {
                names.data.insert(entry);
            }
            FileKind::Marker(entry) if kind.is_file() => {
                names.markers.insert(entry, listed_inode(&item));
            }
            FileKind::Journal(entry) => {
                names.journals.insert(entry);
            }
            _ => names.orphans.push(item.path()),
        }
    }
    Ok(names)
}

/// The books of a sealed index, when no name changed since the close:
/// its records as they are, added in the order written (least recently
/// used first), unchecked. `false` (and the books left empty) if the index
/// does not parse.
fn open_trusted(state: &mut Books, bytes: &[u8]) -> bool {
    // The record count, after the magic (checked as the index is decoded).
    let Some(count) = bytes.get(8..16).and_then(|c| <[u8; 8]>::try_from(c).ok()) else {
        return false;
    };
    // A lying count is refused by the decoding (its crc32 first): reserve
    // no more than the file could hold.
    let count = u64::from_le_bytes(count).min(bytes.len() as u64 / index::RECORD_MIN as u64);
    state.reserve(usize::try_from(count).unwrap_or(0));
    let parsed = index::decode_each(bytes, |record| {
        state.insert(NewEntry {
            key: record.key,
            name: record.name,
            bytes: record.bytes,
            pinned: record.pinned,
            committed_len: record.committed_len,
            stamp: record.stamp,
            lease: LeaseState::Idle,
            checked: false,
        });
    });
    if parsed.is_none() {
        *state = Books::new(state.stats().max_bytes);
    }
    parsed.is_some()
}

/// The entries of a directory whose index is sealed but whose names
/// changed since the close (and the files to remove): the directory is
/// listed by name, records whose files are gone are forgotten, and the
/// entries the index does not know (or whose marker was replaced: a new
/// inode) are read from their markers; the rest is the index's, unchecked.
fn open_sealed(dir: &Path, records: Vec<IndexRecord>) -> StorageResult<(Vec<Found>, Vec<PathBuf>)> {
    let Names {
        mut data,
        mut markers,
        mut journals,
        mut orphans,
    } = list_names(dir)?;
    let mut found = Vec::with_capacity(records.len());
    let mut unknown = Vec::new();
    for record in records {
        let name = record.name;
        match (markers.remove(&name), data.remove(&name)) {
            (Some(inode), true) if inode.is_none_or(|inode| inode == record.stamp.0) => {
                journals.remove(&name);
                found.push(Found::sealed(record));
            }
            // Replaced by a rename: read below like an unknown entry.
            (Some(_), true) => unknown.push(name),
            (marker, data) => {
                if marker.is_some() {
                    orphans.push(dir.join(name.marker()));
                }
                if data {
                    orphans.push(dir.join(name.data()));
                }
            }
        }
    }
    for (name, _) in markers {
        if data.remove(&name) {
            unknown.push(name);
        } else {
            orphans.push(dir.join(name.marker()));
        }
    }
    unknown.sort_unstable();
    let read = read_markers(dir, &unknown)?;
    for (name, marker) in unknown.into_iter().zip(read) {
        let data_meta = fs::symlink_metadata(dir.join(name.data())).ok();
        let marker_meta = fs::symlink_metadata(dir.join(name.marker())).ok();
        match (marker, data_meta, marker_meta) {
            (Some(marker), Some(data_meta), Some(marker_meta))
                if data_meta.is_file() && key_hash(&marker.key) == name.hash =>
            {
                journals.remove(&name);
                found.push(Found {
                    name,
                    key: marker.key,
                    pinned: marker.pinned,
                    committed_len: marker.committed_len,
                    stamp: index::stamp(&marker_meta),
                    bytes: data_meta.len(),
                    order: Recalled::unindexed(mtime(&data_meta)),
                    checked: true,
                });
            }
            _ => orphans.extend([name.marker(), name.data()].map(|f| dir.join(f))),
        }
    }
    orphans.extend(data.into_iter().map(|name| dir.join(name.data())));
    orphans.extend(journals.into_iter().map(|name| dir.join(name.journal())));
    Ok((found, orphans))
}

/// Reads the markers of `which`, split over the machine's cores; their
/// contents in the same order.
fn read_markers(dir: &Path, which: &[EntryName]) -> StorageResult<Vec<Option<Marker>>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per_thread = which.len().div_ceil(threads).max(1);
    let read_some = |part: &[EntryName]| -> StorageResult<Vec<Option<Marker>>> {
        part.iter()
            .map(|name| Marker::read(&dir.join(name.marker())))
            .collect()
    };
    if threads == 1 || which.len() < 1024 {
        return read_some(which);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = which
            .chunks(per_thread)
            .map(|part| scope.spawn(move || read_some(part)))
            .collect();
        let mut all = Vec::with_capacity(which.len());
        for worker in workers {
            let part = worker.join().map_err(|_| {
                StorageError::Failed("a thread reading cache markers panicked".into())
            })??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// Removes `orphans`. One that cannot be removed (an immutable file) is
/// left, and does not stop the cache from opening: returned with its
/// entry name (kept from new keys) and its bytes (counted).
fn remove_orphans(orphans: &[PathBuf]) -> Vec<(Option<EntryName>, u64)> {
    orphans
        .iter()
        .filter(|orphan| remove_if_present(orphan).is_err())
        .map(|orphan| {
            let name =
                orphan
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| match classify(n) {
                        FileKind::Data(e) | FileKind::Marker(e) | FileKind::Journal(e) => Some(e),
                        _ => None,
                    });
            let bytes = fs::symlink_metadata(orphan).map_or(0, |meta| meta.len());
            (name, bytes)
        })
        .collect()
}

/// The index's records by name; none when it is missing or corrupt (a
/// hint only).
fn read_index(dir: &Path) -> HashMap<EntryName, IndexRecord> {
    index::read(&dir.join(INDEX_FILE))
        .unwrap_or_default()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.name, r))
        .collect()
}

/// What a [`Cache`](crate::Cache) opened at `dir` shares: see
/// [`Cache::open`](crate::Cache::open).
pub(crate) fn open(dir: &Path, options: CacheOptions) -> StorageResult<Arc<Shared>> {
    let (owner, sealed) = take_ownership(dir)?;
    let mut state = Books::new(options.max_bytes);
    let (mut found, orphans) = match sealed {
        Some(Sealed {
            bytes,
            unchanged: true,
        }) if open_trusted(&mut state, &bytes) => (Vec::new(), Vec::new()),
        Some(Sealed { bytes, .. }) => match index::decode(&bytes) {
            Some(records) => open_sealed(dir, records)?,
            None => scan(dir)?,
        },
        None => scan(dir)?,
    };
    let stuck = remove_orphans(&orphans);

    // Least recently used first: each insertion is a use.
    found.sort_unstable_by_key(|f| f.order);
    state.reserve(found.len());
    let mut doubles = Vec::new();
    for f in found {
        // A second entry of one key (only an entry added from outside can
        // be one: the scan keeps the first of each key itself).
        if f.checked && state.find(&f.key).is_some() {
            doubles.extend([f.name.marker(), f.name.data()].map(|n| dir.join(n)));
            continue;
        }
        state.insert(NewEntry {
            key: f.key,
            name: f.name,
            bytes: f.bytes,
            pinned: f.pinned,
            committed_len: f.committed_len,
            stamp: f.stamp,
            lease: LeaseState::Idle,
            checked: f.checked,
        });
    }
    for (name, bytes) in stuck.into_iter().chain(remove_orphans(&doubles)) {
        state.leftover(name, bytes);
    }
    // Also the first peak: what the open settles at.
    let doomed = state.evict_over_budget();
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        options,
        state: Mutex::new(state),
        changed: Condvar::new(),
        markers: Mutex::new(()),
        index: Mutex::new(()),
        closed: std::sync::atomic::AtomicBool::new(false),
        owner,
    });
    shared.bury(doomed);
    Ok(shared)
}

/// The entries of a directory without a valid seal (and the files to
/// remove): every file listed and `stat`ed, every marker the index (a
/// hint) does not vouch for read.
fn scan(dir: &Path) -> StorageResult<(Vec<Found>, Vec<PathBuf>)> {
    let known = read_index(dir);

    let Listing {
        mut data,
        mut markers,
        mut journals,
        mut orphans,
    } = list(dir)?;
    markers.sort_unstable_by_key(|(name, _)| *name);
    // The markers the index does not vouch for are read, on as many
    // threads as the machine has cores (the file reads are most of an open
    // without an index).
    let unknown: Vec<usize> = markers
        .iter()
        .enumerate()
        .filter(|(_, (name, meta))| {
            known
                .get(name)
                .is_none_or(|record| record.stamp != index::stamp(meta))
        })
        .map(|(at, _)| at)
        .collect();
    let unknown_names: Vec<EntryName> = unknown.iter().map(|&at| markers[at].0).collect();
    let mut read = read_markers(dir, &unknown_names)?.into_iter();
    let mut keys: HashSet<Box<str>> = HashSet::new();
    let mut found = Vec::new();
    let mut next_unknown = unknown.iter().peekable();
    for (at, (name, marker_meta)) in markers.into_iter().enumerate() {
        let stamp = index::stamp(&marker_meta);
        let marker = if next_unknown.next_if(|&&unknown| unknown == at).is_some() {
            read.next().flatten()
        } else {
            None
        };
        let Some(data_meta) = data.remove(&name) else {
            orphans.push(dir.join(name.marker()));
            continue;
        };
        let described = match known.get(&name) {
            Some(record) if record.stamp == stamp => Some((
                record.key.clone(),
                record.pinned,
                record.committed_len,
                Recalled::indexed(record.last_use),
            )),
            _ => marker.map(|m| {
                let order = Recalled::unindexed(mtime(&data_meta));
                (m.key, m.pinned, m.committed_len, order)
            }),
        };
        // A torn marker, a key that is not this name's (a marker copied to
        // another entry's name: names are their keys' hashes), or a second
        // entry of one key (a kill while an evicted entry's files were
        // being deleted): orphans.
        let Some((key, pinned, committed_len, order)) =
            described.filter(|(key, ..)| key_hash(key) == name.hash && keys.insert(key.clone()))
        else {
            orphans.extend([name.marker(), name.data()].map(|f| dir.join(f)));
            continue;
        };
        journals.remove(&name);
        found.push(Found {
            name,
            key,
            pinned,
            committed_len,
            stamp,
            bytes: data_meta.len(),
            order,
            checked: true,
        });
    }
    orphans.extend(data.into_keys().map(|name| dir.join(name.data())));
    orphans.extend(journals.into_iter().map(|name| dir.join(name.journal())));
    Ok((found, orphans))
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        thread,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn files_vanishing_during_the_scan_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (dir, stop) = (dir.path().to_path_buf(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = dir.join(format!(".fuse_hidden{:016x}", i % 64));
                    let _ = fs::write(&path, b"x");
                    let _ = fs::remove_file(&path);
                    i += 1;
                }
            })
        };
        let started = Instant::now();
        let mut scans = 0;
        while scans < 2_000 && started.elapsed() < Duration::from_secs(10) {
            list(dir.path()).unwrap();
            scans += 1;
        }
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        assert!(scans > 0);
    }
}
