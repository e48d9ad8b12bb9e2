//! `MmapDriver`: opening, growing, committing and reactivating a mapped file.

use std::{
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
    sync::{
        PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use storage_core::{Driver, DriverIo, DriverState, RangeSet, StorageError, StorageResult};

use crate::{MmapOptions, OpenMode, map::Mapping, space};

/// Size of a new file when `MmapOptions::initial_len` is `None`, and the
/// smallest size growth goes to.
pub const DEFAULT_INITIAL_LEN: u64 = 64 * 1024;

/// The file-backed driver behind `MmapResource`.
///
/// # Safety
///
/// Mapping a file is `unsafe` because the bytes can change, or vanish, under
/// the mapping without the program writing them: another process (or another
/// handle in this one) that writes the file changes what a `&[u8]` shows,
/// and one that truncates it makes a read of the lost pages raise SIGBUS.
/// This driver never does either to its own mappings — every access goes
/// through borrows of one `RwLock` (writes exclusive), and the file is only
/// shrunk after its mapping is dropped under the exclusive lock — so it is
/// sound as long as no one else writes or truncates the file while the
/// resource is open. See the crate README for that hazard.
#[derive(Debug)]
pub struct MmapDriver {
    path: PathBuf,
    mode: OpenMode,
    /// Guards the file handle and the mapping: readers and fresh writes
    /// share it; overwrites, the swap of a grown mapping, commit and
    /// reactivate hold it exclusively. Sharded: a reader locks only its
    /// thread's shard, so parallel readers do not contend on one lock word.
    store: ShardedLock<Store>,
    /// One past the highest byte written or committed (raised by writes
    /// under the shared lock, set by commit under the exclusive one).
    extent: AtomicU64,
}

/// The file and its mapping.
#[derive(Debug)]
struct Store {
    /// `None` only for a `ReadOnly` resource on a missing file.
    file: Option<File>,
    /// Whether `file` was opened for writing.
    file_writable: bool,
    map: Mapping,
    /// Length of the file, which is also the length of the mapping.
    len: u64,
}

fn io_error(path: &Path, what: &str, error: &io::Error) -> StorageError {
    StorageError::Io(io::Error::new(
        error.kind(),
        format!("{what} {}: {error}", path.display()),
    ))
}

fn open_file(path: &Path, writable: bool) -> StorageResult<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| io_error(path, "cannot open", &e))
}

/// An offset already checked to lie within a mapping (whose length is a `usize`).
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

fn committed(len: u64) -> DriverState {
    let mut available = RangeSet::new();
    if len > 0 {
        available.insert(0..len);
    }
    DriverState {
        final_len: Some(len),
        available,
        is_committed: true,
    }
}

impl Driver for MmapDriver {
    type Options = MmapOptions;

    fn open(opts: MmapOptions) -> StorageResult<(Self, DriverState)> {
        let MmapOptions {
            path,
            initial_len,
            mode,
        } = opts;
        let existing = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let error = io::Error::new(io::ErrorKind::IsADirectory, "is a directory");
                return Err(io_error(&path, "cannot open", &error));
            }
            Ok(meta) => Some(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&path, "cannot inspect", &e)),
        };
        let extent = existing.unwrap_or(0);
        let (store, state) = match (mode, existing) {
            (OpenMode::ReadOnly, None) => (Store::missing(), committed(0)),
            (OpenMode::ReadOnly, Some(len)) => {
                (Store::open_committed(&path, len, false)?, committed(len))
            }
            (OpenMode::Auto | OpenMode::ReadWrite, Some(len)) if len > 0 => {
                let writable = mode == OpenMode::ReadWrite;
                (Store::open_committed(&path, len, writable)?, committed(len))
            }
            (OpenMode::Auto | OpenMode::ReadWrite, _) => {
                let len = initial_len.unwrap_or(DEFAULT_INITIAL_LEN);
                (Store::create(&path, len)?, DriverState::default())
            }
        };
        let driver = Self {
            path,
            mode,
            store: ShardedLock::new(store),
            extent: AtomicU64::new(if state.is_committed { extent } else { 0 }),
        };
        Ok((driver, state))
    }
}

impl Store {
    fn missing() -> Self {
        Self {
            file: None,
            file_writable: false,
            map: Mapping::Empty,
            len: 0,
        }
    }

    fn open_committed(path: &Path, len: u64, writable: bool) -> StorageResult<Self> {
        let file = open_file(path, writable)?;
        let map = Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok(Self {
            file: Some(file),
            file_writable: writable,
            map,
            len,
        })
    }

    fn create(path: &Path, len: u64) -> StorageResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| io_error(parent, "cannot create directory", &e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(path, "cannot create", &e))?;
        space::grow(&file, 0, len).map_err(|e| io_error(path, "cannot size", &e))?;
        let map = Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok(Self {
            file: Some(file),
            file_writable: true,
            map,
            len,
        })
    }

    fn file(&self, path: &Path) -> StorageResult<&File> {
        self.file.as_ref().ok_or_else(|| {
            let error = io::Error::new(io::ErrorKind::NotFound, "no backing file");
            io_error(path, "cannot write", &error)
        })
    }

    /// Reopens the file for writing when it was opened read-only.
    fn make_writable(&mut self, path: &Path) -> StorageResult<()> {
        if !self.file_writable {
            self.file = Some(open_file(path, true)?);
            self.file_writable = true;
        }
        Ok(())
    }

    /// Grows the file to hold `end` bytes (at least doubling it) and maps the
    /// new length, without touching the current mapping: readers go on while
    /// this runs. Install the result with [`Store::install`].
    fn grown(&self, path: &Path, end: u64) -> StorageResult<(Mapping, u64)> {
        let new_len = end.max(self.len.saturating_mul(2)).max(DEFAULT_INITIAL_LEN);
        let file = self.file(path)?;
        space::grow(file, self.len, new_len).map_err(|e| io_error(path, "cannot grow", &e))?;
        // The old mapping stays valid: the file only grew.
        let map =
            Mapping::read_only(file, new_len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok((map, new_len))
    }

    fn install(&mut self, map: Mapping, len: u64) {
        self.map = map;
        self.len = len;
    }

    /// Takes the file now at `path` if it is not the one this store holds
    /// (it was replaced by rename, as `Atomic::write_all` does); says
    /// whether it did.
    #[cfg(unix)]
    fn adopt_replaced(&mut self, path: &Path) -> StorageResult<bool> {
        use std::os::unix::fs::MetadataExt;

        let Some(file) = &self.file else {
            return Ok(false);
        };
        let at_path = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(path, "cannot inspect", &e)),
        };
        let held = file
            .metadata()
            .map_err(|e| io_error(path, "cannot inspect", &e))?;
        if (held.dev(), held.ino()) != (at_path.dev(), at_path.ino()) {
            self.map = Mapping::Empty;
            self.file = Some(open_file(path, self.file_writable)?);
            self.len = at_path.len();
            return Ok(true);
        }
        Ok(false)
    }

    #[cfg(not(unix))]
    fn adopt_replaced(&mut self, _path: &Path) -> StorageResult<bool> {
        Ok(false)
    }
}

impl MmapDriver {
    /// The store, shared. A poisoned lock is taken as is: no code panics
    /// while holding it, and the store is consistent between statements.
    fn read(&self) -> ShardedLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store, exclusively.
    fn write(&self) -> ShardedLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DriverIo for MmapDriver {
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        let mut store = self.write();
        let replaced = store.adopt_replaced(&self.path)?;
        if replaced {
            self.extent.store(store.len, Ordering::Release);
        }
        let target = final_len.unwrap_or_else(|| self.extent.load(Ordering::Acquire));
        // Unmap before the file can shrink: with the exclusive lock held and
        // no mapping left, nothing can touch a page past the new end.
        store.map = Mapping::Empty;
        let file = store.file(&self.path)?;
        let on_disk = file
            .metadata()
            .map_err(|e| io_error(&self.path, "cannot inspect", &e))?
            .len();
        if on_disk != target {
            file.set_len(target)
                .map_err(|e| io_error(&self.path, "cannot truncate", &e))?;
        }
        let map =
            Mapping::read_only(file, target).map_err(|e| io_error(&self.path, "cannot map", &e))?;
        store.install(map, target);
        self.extent.store(target, Ordering::Release);
        Ok(())
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn reactivate(&self) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        self.write().make_writable(&self.path)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let store = self.read();
        let bytes = store.map.bytes();
        let end = effective_len.min(bytes.len() as u64);
        if offset >= end {
            return Ok(0);
        }
        // Both are at most `bytes.len()`, so they fit in a `usize`.
        let (start, end) = (to_index(offset), to_index(end));
        let count = buf.len().min(end - start);
        buf[..count].copy_from_slice(&bytes[start..start + count]);
        Ok(count)
    }

    fn storage_len(&self) -> u64 {
        self.read().len
    }

    fn write_at(&self, offset: u64, data: &[u8], committed: bool) -> StorageResult<()> {
        self.write_bytes(offset, data, committed, Exclusion::Exclusive)
    }

    fn write_fresh(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        self.write_bytes(offset, data, false, Exclusion::Shared)
    }
}

/// Which lock a write of the file holds while the kernel copies its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exclusion {
    /// The bytes may be read right now: keep readers out.
    Exclusive,
    /// No reader reads these bytes until the write returns (`write_fresh`).
    Shared,
}

impl MmapDriver {
    fn write_bytes(
        &self,
        offset: u64,
        data: &[u8],
        committed: bool,
        exclusion: Exclusion,
    ) -> StorageResult<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        if committed && self.mode != OpenMode::ReadWrite {
            return Err(StorageError::Committed);
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        // `Resource` never runs two writes (or a write and a commit) at once,
        // so the store cannot change between the steps below but for
        // readers, who keep reading through every step except the swap of a
        // grown mapping (and the copy of an overwrite).
        let (writable, len) = {
            let store = self.read();
            (store.file_writable, store.len)
        };
        if committed && end > len {
            // A committed file is rewritten in place; growing it needs reactivate.
            return Err(StorageError::Committed);
        }
        if !writable {
            self.write().make_writable(&self.path)?;
        }
        if end > len {
            let (map, new_len) = self.read().grown(&self.path, end)?;
            self.write().install(map, new_len);
        }
        // The bytes go in with pwrite, not through the mapping: a full disk
        // is an error here, never a SIGBUS in a page fault, and the mapping
        // stays read-only.
        let written = match exclusion {
            Exclusion::Exclusive => write_all_at(self.write().file(&self.path)?, data, offset),
            Exclusion::Shared => write_all_at(self.read().file(&self.path)?, data, offset),
        };
        written.map_err(|e| io_error(&self.path, "cannot write", &e))?;
        self.extent.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
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
