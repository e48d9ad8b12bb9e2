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
    names::{EntryName, FileKind, INDEX_FILE, LOCK_FILE, classify},
    policy::Recalled,
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
}

/// Creates `dir` if needed, checks it is a directory, and takes its owner
/// lock.
fn take_ownership(dir: &Path) -> StorageResult<File> {
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
            check_writable(dir)?;
            Ok(lock)
        }
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path: lock_path }),
        Err(TryLockError::Error(error)) => Err(StorageError::io(
            "cannot lock the cache directory",
            &lock_path,
            error,
        )),
    }
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

/// Reads the markers at `which` (indices into `markers`, in order), split
/// over the machine's cores; their contents in the same order.
fn read_markers(
    dir: &Path,
    markers: &[(EntryName, fs::Metadata)],
    which: &[usize],
) -> StorageResult<Vec<Option<Marker>>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per_thread = which.len().div_ceil(threads).max(1);
    let read_some = |part: &[usize]| -> StorageResult<Vec<Option<Marker>>> {
        part.iter()
            .map(|&at| Marker::read(&dir.join(markers[at].0.marker())))
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
    let owner = take_ownership(dir)?;
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
    let mut read = read_markers(dir, &markers, &unknown)?.into_iter();
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
        // A torn marker, or a second entry of one key (a kill while an
        // evicted entry's files were being deleted): orphans.
        let Some((key, pinned, committed_len, order)) =
            described.filter(|(key, ..)| keys.insert(key.clone()))
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
        });
    }
    orphans.extend(data.into_keys().map(|name| dir.join(name.data())));
    orphans.extend(journals.into_iter().map(|name| dir.join(name.journal())));
    let stuck = remove_orphans(&orphans);

    // Least recently used first: each insertion is a use.
    found.sort_unstable_by_key(|f| f.order);
    let mut state = Books::new(options.max_bytes);
    for f in found {
        state.insert(NewEntry {
            key: Arc::from(f.key),
            name: f.name,
            bytes: f.bytes,
            pinned: f.pinned,
            committed_len: f.committed_len,
            stamp: f.stamp,
            lease: LeaseState::Idle,
        });
    }
    for (name, bytes) in stuck {
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
        _owner: owner,
    });
    shared.bury(doomed);
    Ok(shared)
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
