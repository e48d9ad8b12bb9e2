//! `Store`: the file handle, its advisory lock and its read-only mapping.

use std::{
    fs::{self, File, OpenOptions},
    io,
    path::Path,
    sync::Arc,
};

use storage_core::{StorageError, StorageResult};

use crate::{
    map::Mapping,
    space::{self, DEFAULT_INITIAL_LEN},
    sys::{self, Refused},
};

/// The advisory lock a store holds on its file.
///
/// Every store that maps a file holds a lock on it: shared while it only
/// reads (committed, read-only), exclusive while it writes (active, or a
/// rewrite in place). Anything that could shrink or rewrite the file under
/// another mapping needs the exclusive lock, so it is refused while another
/// handle — in this process or another — maps the file. Locks belong to the
/// open file description: two opens of one path in one process exclude each
/// other as two processes do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    Nothing,
    Shared,
    Exclusive,
}

/// What a store that let go of its file needs to open it again
/// ([`Store::let_go`], [`Store::take_back`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LetGo {
    id: Option<(u64, u64)>,
    held: Held,
    writable: bool,
}

/// The file and its mapping (guarded by the driver's sharded lock).
#[derive(Debug)]
pub(crate) struct Store {
    /// `None` only for a `ReadOnly` resource on a missing file.
    file: Option<Arc<File>>,
    /// Whether `file` was opened for writing.
    file_writable: bool,
    /// The lock `file` holds.
    held: Held,
    map: Mapping,
    /// Length of the file, which is also the length of the mapping.
    len: u64,
}

/// A `StorageError::Io` that names the operation and the path.
/// Creates `dir` and its missing ancestors, and makes each new one's name
/// durable (a sync of the directory that holds it): else a power loss
/// after a `sync()` could take the new file with its directory. Costs
/// nothing when `dir` exists.
fn create_dirs(dir: &Path) -> StorageResult<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.is_dir())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create directory", e))?;
    // Outermost first: each directory's own entry, in the one above it.
    for created in missing.iter().rev() {
        sys::sync_dir(created)
            .map_err(|e| io_error(created, "cannot sync the directory that holds", e))?;
    }
    Ok(())
}

pub(crate) fn io_error(path: &Path, what: &'static str, error: io::Error) -> StorageError {
    StorageError::io(what, path, error)
}

/// A store without a file (a read-only resource of a missing path).
fn no_file(path: &Path) -> StorageError {
    let error = io::Error::new(io::ErrorKind::NotFound, "no backing file");
    io_error(path, "cannot write", error)
}

fn open_file(path: &Path, writable: bool) -> StorageResult<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| io_error(path, "cannot open", e))
}

/// How an existing file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    /// For writing if the file allows it (a committed file, which may be
    /// reactivated or rewritten later), else for reading.
    PreferWrite,
    Write,
}

/// Opens `path` as `access` asks; says whether the handle can write.
fn open_with(path: &Path, access: Access) -> StorageResult<(File, bool)> {
    if access == Access::Write {
        return Ok((open_file(path, true)?, true));
    }
    if access == Access::PreferWrite {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) => {}
            Err(e) => return Err(io_error(path, "cannot open", e)),
        }
    }
    Ok((open_file(path, false)?, false))
}

/// Takes `kind` of advisory lock on `file` without waiting (converting the
/// lock `file` holds, if any).
pub(crate) fn lock(file: &File, path: &Path, kind: Held) -> StorageResult<()> {
    let kind = match kind {
        Held::Nothing => sys::Kind::Unlock,
        Held::Shared => sys::Kind::Shared,
        Held::Exclusive => sys::Kind::Exclusive,
    };
    match sys::try_lock(file, kind) {
        // A file system without locks: handles cannot be kept apart there,
        // and are not refused (see the README).
        Ok(()) | Err(Refused::Unsupported) => Ok(()),
        Err(Refused::Conflict) => Err(StorageError::Locked {
            path: path.to_path_buf(),
        }),
        Err(Refused::Io(e)) => Err(io_error(path, "cannot lock", e)),
    }
}

/// Whether two handles are of the same file.
fn same_file(a: &File, b: &File, path: &Path) -> StorageResult<bool> {
    for file in [a, b] {
        file.metadata()
            .map_err(|e| io_error(path, "cannot inspect", e))?;
    }
    Ok(sys::same_id(sys::file_id(a), sys::file_id(b)).unwrap_or(true))
}
/// How many times an open retries when the path is replaced between the
/// open and the lock.
const OPEN_TRIES: usize = 16;

/// Opens the file at `path` with `open` and takes `held` on it, making
/// sure the lock is on the file that is at the path *after* the lock was
/// taken: a rename between the open and the lock would leave the lock on a
/// file nobody will find again, and every decision made under it (the
/// journal read, a truncation, a removal) would be about the wrong file.
pub(crate) fn open_locked<T: AsFile>(
    path: &Path,
    held: Held,
    open: impl Fn(&Path) -> StorageResult<T>,
) -> StorageResult<T> {
    for _ in 0..OPEN_TRIES {
        let opened = open(path)?;
        // A writer's check and its lock are one step against renames.
        let _name = (held == Held::Exclusive).then(|| sys::dir_lock(path));
        lock(opened.as_file(), path, held)?;
        if is_at_path(opened.as_file(), path)? {
            return Ok(opened);
        }
        // Replaced meanwhile: this handle (and its lock) goes; try again.
    }
    let why = format!("replaced {OPEN_TRIES} times while it was being opened");
    Err(refused(
        path,
        io::ErrorKind::Interrupted,
        why,
        "cannot open",
    ))
}

/// What [`open_locked`] opens: a file, or a file with a note.
pub(crate) trait AsFile {
    fn as_file(&self) -> &File;
}

impl AsFile for File {
    fn as_file(&self) -> &File {
        self
    }
}

impl AsFile for (File, bool) {
    fn as_file(&self) -> &File {
        &self.0
    }
}

/// Whether `file` is the file now at `path` (not replaced by a rename).
pub(crate) fn is_at_path(file: &File, path: &Path) -> StorageResult<bool> {
    let at_path = match sys::path_id(path) {
        Ok(id) => id,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path, "cannot inspect", e)),
    };
    file.metadata()
        .map_err(|e| io_error(path, "cannot inspect", e))?;
    Ok(sys::same_id(sys::file_id(file), at_path).unwrap_or(true))
}
fn refused(path: &Path, kind: io::ErrorKind, why: String, what: &'static str) -> StorageError {
    io_error(path, what, io::Error::new(kind, why))
}

impl Store {
    pub(crate) fn missing() -> Self {
        Self {
            file: None,
            file_writable: false,
            held: Held::Nothing,
            map: Mapping::Empty,
            len: 0,
        }
    }

    /// An existing file of `len` bytes, mapped read-only, holding `held`
    /// (exclusive for an active writer resuming it, shared otherwise).
    ///
    /// The length is the opened file's, read under the lock: the path may
    /// have been replaced by rename since the caller looked at it.
    pub(crate) fn open_existing(path: &Path, access: Access, held: Held) -> StorageResult<Self> {
        let (file, file_writable) = open_locked(path, held, |path| open_with(path, access))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(path, "cannot inspect", e))?;
        if !meta.is_file() {
            let error = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error(path, "cannot open", error));
        }
        let len = meta.len();
        let map = Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", e))?;
        Ok(Self {
            file: Some(Arc::new(file)),
            file_writable,
            held,
            map,
            len,
        })
    }

    /// Creates (or takes up an empty) file, locks it, lets `before_growth`
    /// run (the journal is created there, before the file can look like a
    /// committed one), then sizes it to `len`. On an error after the lock
    /// was taken, `undo_growth` runs (it removes the journal) and a file
    /// this call created is removed: the directory is left as it was found.
    pub(crate) fn create(
        path: &Path,
        len: u64,
        before_growth: impl FnOnce(&File) -> StorageResult<()>,
        undo_growth: impl FnOnce(),
    ) -> StorageResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dirs(parent)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let (file, created) = match options.clone().create_new(true).open(path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                options
                    .open(path)
                    .map_err(|e| io_error(path, "cannot open", e))?,
                false,
            ),
            Err(e) => return Err(io_error(path, "cannot create", e)),
        };
        lock(&file, path, Held::Exclusive)?;
        // Ours now: whatever fails from here on is undone.
        let made = (|| {
            let meta = file
                .metadata()
                .map_err(|e| io_error(path, "cannot inspect", e))?;
            if meta.len() > 0 || !is_at_path(&file, path)? {
                // Another opener filled or replaced it between our look and our lock.
                return Err(StorageError::Locked {
                    path: path.to_path_buf(),
                });
            }
            before_growth(&file)?;
            space::grow(&file, 0, len).map_err(|e| io_error(path, "cannot size", e))?;
            Mapping::read_only(&file, len).map_err(|e| io_error(path, "cannot map", e))
        })();
        match made {
            Ok(map) => Ok(Self {
                file: Some(Arc::new(file)),
                file_writable: true,
                held: Held::Exclusive,
                map,
                len,
            }),
            Err(e) => {
                if !matches!(e, StorageError::Locked { .. }) {
                    undo_growth();
                    let _ = file.set_len(0);
                    if created {
                        let _ = fs::remove_file(path);
                    }
                }
                Err(e)
            }
        }
    }

    pub(crate) fn file(&self, path: &Path) -> StorageResult<&File> {
        self.file.as_deref().ok_or_else(|| no_file(path))
    }

    /// Takes the exclusive lock for a change that other mappings must not
    /// see (reactivate, a rewrite in place), with a handle that can write:
    /// `Locked` while another handle maps the file. Refuses a file that is
    /// no longer the one at the path (replaced by rename: writing it would
    /// write a file nobody will find) or that is shorter than the mapping
    /// (truncated from outside). On an error the store holds what it held.
    pub(crate) fn acquire_exclusive(&mut self, path: &Path) -> StorageResult<()> {
        if !self.file_writable {
            // A handle that can write takes over: it takes a shared lock
            // beside the old handle's, so the file is never without one,
            // then the old handle goes.
            let writable = open_file(path, true)?;
            if !same_file(self.file(path)?, &writable, path)? {
                let why = "replaced since it was opened (reopen the path)".to_owned();
                return Err(refused(path, io::ErrorKind::NotFound, why, "cannot write"));
            }
            lock(&writable, path, Held::Shared)?;
            // The mapping keeps the old open file description alive, and
            // with it the old handle's lock, which would refuse this
            // handle's upgrade below: let go of it explicitly.
            let _ = lock(self.file(path)?, path, Held::Nothing);
            self.file = Some(Arc::new(writable));
            self.file_writable = true;
            self.held = Held::Shared;
        }
        if self.held != Held::Exclusive {
            // A refused upgrade keeps the shared lock (see `lock`).
            lock(self.file(path)?, path, Held::Exclusive)?;
        }
        self.held = Held::Exclusive;
        // Checked under the directory lock: a replacement's rename cannot
        // land between this check and the journal this writer creates next
        // (the replacement re-checks its guard under the same lock).
        let _name = sys::dir_lock(path);
        if let Err(e) = self.check_still_ours(path) {
            self.release_to_shared(path);
            return Err(e);
        }
        Ok(())
    }

    fn check_still_ours(&self, path: &Path) -> StorageResult<()> {
        let file = self.file(path)?;
        if !is_at_path(file, path)? {
            let why = "replaced since it was opened (reopen the path)".to_owned();
            return Err(refused(path, io::ErrorKind::NotFound, why, "cannot write"));
        }
        let on_disk = file
            .metadata()
            .map_err(|e| io_error(path, "cannot inspect", e))?
            .len();
        if on_disk < self.len {
            let why = format!(
                "truncated from outside: {on_disk} bytes on disk, {} mapped",
                self.len
            );
            return Err(refused(
                path,
                io::ErrorKind::InvalidData,
                why,
                "cannot write",
            ));
        }
        Ok(())
    }

    /// Goes back to the shared lock of a reader (commit, the end of a
    /// rewrite in place). Atomic where OFD locks exist (Linux); elsewhere,
    /// if another handle takes the file in between, this one holds no lock.
    pub(crate) fn release_to_shared(&mut self, path: &Path) {
        if self.held == Held::Exclusive
            && let Some(file) = &self.file
        {
            self.held = if lock(file, path, Held::Shared).is_ok() {
                Held::Shared
            } else {
                Held::Nothing
            };
        }
    }

    /// Grows the file to hold `end` bytes (at least doubling it) and maps the
    /// new length, without touching the current mapping: readers go on while
    /// this runs. Install the result with [`Store::install`].
    /// When the doubled size does not fit (a nearly full disk, a file size
    /// limit), the exact size `end` is tried before refusing.
    pub(crate) fn grown(&self, path: &Path, end: u64) -> StorageResult<(Mapping, u64)> {
        let doubled = end.max(self.len.saturating_mul(2)).max(DEFAULT_INITIAL_LEN);
        let file = self.file(path)?;
        let new_len = match space::grow(file, self.len, doubled) {
            Ok(()) => doubled,
            Err(_) if doubled > end => {
                space::grow(file, self.len, end).map_err(|e| io_error(path, "cannot grow", e))?;
                end
            }
            Err(e) => return Err(io_error(path, "cannot grow", e)),
        };
        // The old mapping stays valid: the file only grew.
        let map = Mapping::read_only(file, new_len).map_err(|e| io_error(path, "cannot map", e))?;
        Ok((map, new_len))
    }

    pub(crate) fn install(&mut self, map: Mapping, len: u64) {
        self.map = map;
        self.len = len;
    }

    /// Drops the mapping, before a cut where the platform cannot cut a
    /// mapped file (the length stays until [`Store::install`]).
    pub(crate) fn unmap(&mut self) {
        self.map = Mapping::Empty;
    }

    /// Lets go of the file and its mapping (the handle closes, and its lock
    /// with it, once no clone of it lives), where the platform cannot
    /// rename over a file that a handle holds; what [`Store::take_back`]
    /// needs to open it again should the rename still be refused. The
    /// store holds no file meanwhile: the caller keeps it write-locked.
    pub(crate) fn let_go(&mut self) -> Option<LetGo> {
        let file = self.file.take()?;
        self.map = Mapping::Empty;
        let let_go = LetGo {
            id: sys::file_id(&file),
            held: std::mem::replace(&mut self.held, Held::Nothing),
            writable: self.file_writable,
        };
        drop(file);
        Some(let_go)
    }

    /// Opens the file at `path` again after [`Store::let_go`]: the same
    /// access, lock and mapping. Refused (the store keeps no file) when
    /// another file is at the path now, or another handle took the lock
    /// meanwhile.
    pub(crate) fn take_back(&mut self, path: &Path, let_go: LetGo) -> StorageResult<()> {
        let access = if let_go.writable {
            Access::Write
        } else {
            Access::Read
        };
        let (file, writable) = open_locked(path, let_go.held, |path| open_with(path, access))?;
        if sys::same_id(sys::file_id(&file), let_go.id) == Some(false) {
            let why = "replaced while this handle had let go of it".to_owned();
            return Err(refused(path, io::ErrorKind::NotFound, why, "cannot open"));
        }
        let map =
            Mapping::read_only(&file, self.len).map_err(|e| io_error(path, "cannot map", e))?;
        self.file = Some(Arc::new(file));
        self.file_writable = writable;
        self.held = let_go.held;
        self.map = map;
        Ok(())
    }

    /// Takes up `file`, renamed over the path with a shared lock on it
    /// and mapped as `map` (`len` bytes): a replacement.
    pub(crate) fn take_up(&mut self, file: File, map: Mapping, len: u64) {
        self.file = Some(Arc::new(file));
        self.file_writable = true;
        self.held = Held::Shared;
        self.install(map, len);
    }

    /// The file's length, which is also the mapping's.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// Whether the file was opened for writing.
    pub(crate) fn is_writable(&self) -> bool {
        self.file_writable
    }

    /// Whether the store holds the exclusive lock of a writer.
    pub(crate) fn is_exclusive(&self) -> bool {
        self.held == Held::Exclusive
    }

    /// The file, if there is one (see [`Store::file`] for an error
    /// without one).
    pub(crate) fn backing(&self) -> Option<&File> {
        self.file.as_deref()
    }

    /// The file, shared: the one descriptor a resource holds, for the
    /// checkpoints and a sync to use beside the store.
    pub(crate) fn shared_file(&self, path: &Path) -> StorageResult<Arc<File>> {
        self.file.clone().ok_or_else(|| no_file(path))
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use parking_lot::Mutex;

    use super::*;
    use crate::sys::{Synced, probe};

    /// Directories an open creates are made durable in the directory that
    /// holds each (else a power loss after a `sync()` could take the new
    /// file with them); an existing directory costs no sync.
    #[test]
    fn directories_an_open_creates_are_synced_where_they_are_named() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let root = tempfile::tempdir().unwrap();
        let synced = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
        {
            let synced = Arc::clone(&synced);
            probe::set(Some(Arc::new(move |event: &Synced<'_>| {
                if let Synced::Dir(dir) = event {
                    synced.lock().push(dir.to_path_buf());
                }
            })));
        }
        let deep = root.path().join("new_a/new_b");
        create_dirs(&deep).unwrap();
        let first = synced.lock().clone();
        create_dirs(&deep).unwrap();
        probe::set(None);
        assert!(deep.is_dir());
        assert_eq!(
            first,
            vec![root.path().to_path_buf(), root.path().join("new_a")],
            "each new directory's entry, outermost first"
        );
        assert_eq!(
            synced.lock().len(),
            2,
            "an existing directory was synced again"
        );
    }
}
