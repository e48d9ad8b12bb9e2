//! `Store`: the file handle, its lock and its read-only mapping.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io,
    path::Path,
};

use storage_core::{StorageError, StorageResult};

use crate::{driver::DEFAULT_INITIAL_LEN, map::Mapping, space};

/// The file and its mapping (guarded by the driver's sharded lock).
#[derive(Debug)]
pub(crate) struct Store {
    /// `None` only for a `ReadOnly` resource on a missing file.
    pub(crate) file: Option<File>,
    /// Whether `file` was opened for writing.
    pub(crate) file_writable: bool,
    /// Whether `file` holds the exclusive lock (while active).
    pub(crate) locked: bool,
    pub(crate) map: Mapping,
    /// Length of the file, which is also the length of the mapping.
    pub(crate) len: u64,
}

/// A `StorageError::Io` that names the operation and the path.
pub(crate) fn io_error(path: &Path, what: &str, error: &io::Error) -> StorageError {
    StorageError::Io(io::Error::new(
        error.kind(),
        format!("{what} {}: {error}", path.display()),
    ))
}

pub(crate) fn open_file(path: &Path, writable: bool) -> StorageResult<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| io_error(path, "cannot open", &e))
}

/// Takes the exclusive advisory lock of `file` without waiting.
fn lock(file: &File, path: &Path) -> StorageResult<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: path.to_path_buf(),
        }),
        // A file system without locks: one writer per file cannot be
        // enforced there, and is not refused.
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        Err(TryLockError::Error(e)) => Err(io_error(path, "cannot lock", &e)),
    }
}

impl Store {
    pub(crate) fn missing() -> Self {
        Self {
            file: None,
            file_writable: false,
            locked: false,
            map: Mapping::Empty,
            len: 0,
        }
    }

    /// An existing file of `len` bytes, mapped read-only; locked when
    /// `lock_it` (an active writer resuming it).
    pub(crate) fn open_existing(
        path: &Path,
        len: u64,
        writable: bool,
        lock_it: bool,
    ) -> StorageResult<Self> {
        let file = open_file(path, writable)?;
        if lock_it {
            lock(&file, path)?;
        }
        let map = Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok(Self {
            file: Some(file),
            file_writable: writable,
            locked: lock_it,
            map,
            len,
        })
    }

    /// Creates (or takes up an empty) file, locks it, lets `before_growth`
    /// run (the journal is created there, before the file can look like a
    /// committed one), then sizes it to `len`.
    pub(crate) fn create(
        path: &Path,
        len: u64,
        before_growth: impl FnOnce() -> StorageResult<()>,
    ) -> StorageResult<Self> {
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
        lock(&file, path)?;
        before_growth()?;
        space::grow(&file, 0, len).map_err(|e| io_error(path, "cannot size", &e))?;
        let map = Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok(Self {
            file: Some(file),
            file_writable: true,
            locked: true,
            map,
            len,
        })
    }

    pub(crate) fn file(&self, path: &Path) -> StorageResult<&File> {
        self.file.as_ref().ok_or_else(|| {
            let error = io::Error::new(io::ErrorKind::NotFound, "no backing file");
            io_error(path, "cannot write", &error)
        })
    }

    /// Reopens the file for writing when it was opened read-only.
    pub(crate) fn make_writable(&mut self, path: &Path) -> StorageResult<()> {
        if !self.file_writable {
            self.file = Some(open_file(path, true)?);
            self.file_writable = true;
            self.locked = false;
        }
        Ok(())
    }

    /// Takes the exclusive lock (reactivate), after checking that nobody
    /// truncated the file under the mapping.
    pub(crate) fn lock_for_writing(&mut self, path: &Path) -> StorageResult<()> {
        let file = self.file(path)?;
        let on_disk = file
            .metadata()
            .map_err(|e| io_error(path, "cannot inspect", &e))?
            .len();
        if on_disk < self.len {
            let error = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "truncated from outside: {on_disk} bytes on disk, {} mapped",
                    self.len
                ),
            );
            return Err(io_error(path, "cannot reactivate", &error));
        }
        if !self.locked {
            lock(file, path)?;
            self.locked = true;
        }
        Ok(())
    }

    /// Releases the exclusive lock (commit).
    pub(crate) fn unlock(&mut self) {
        if self.locked
            && let Some(file) = &self.file
        {
            let _ = file.unlock();
        }
        self.locked = false;
    }

    /// Grows the file to hold `end` bytes (at least doubling it) and maps the
    /// new length, without touching the current mapping: readers go on while
    /// this runs. Install the result with [`Store::install`].
    pub(crate) fn grown(&self, path: &Path, end: u64) -> StorageResult<(Mapping, u64)> {
        let new_len = end.max(self.len.saturating_mul(2)).max(DEFAULT_INITIAL_LEN);
        let file = self.file(path)?;
        space::grow(file, self.len, new_len).map_err(|e| io_error(path, "cannot grow", &e))?;
        // The old mapping stays valid: the file only grew.
        let map =
            Mapping::read_only(file, new_len).map_err(|e| io_error(path, "cannot map", &e))?;
        Ok((map, new_len))
    }

    pub(crate) fn install(&mut self, map: Mapping, len: u64) {
        self.map = map;
        self.len = len;
    }

    /// Takes the file now at `path` if it is not the one this store holds
    /// (it was replaced by rename, as `Atomic::write_all` does); says
    /// whether it did.
    #[cfg(unix)]
    pub(crate) fn adopt_replaced(&mut self, path: &Path) -> StorageResult<bool> {
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
        if (held.dev(), held.ino()) == (at_path.dev(), at_path.ino()) {
            return Ok(false);
        }
        self.map = Mapping::Empty;
        self.unlock();
        self.file = Some(open_file(path, self.file_writable)?);
        self.len = at_path.len();
        Ok(true)
    }

    #[cfg(not(unix))]
    pub(crate) fn adopt_replaced(&mut self, _path: &Path) -> StorageResult<bool> {
        Ok(false)
    }
}
