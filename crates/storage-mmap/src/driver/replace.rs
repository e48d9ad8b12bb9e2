//! Whole-file replacement: a temporary file, renamed over the path, then installed.

use std::{
    fs::{self, File},
    io::Write,
    path::Path,
};

use crossbeam_utils::sync::ShardedLockWriteGuard;
use storage_core::{StorageError, StorageResult};

use super::{
    durability::{Durability, Finisher},
    journaling::{Journaling, Stopped},
    mapped::MappedStore,
};
use crate::{
    journal::{self, Replacement},
    map::Mapping,
    store::{Held, Store, io_error, is_at_path, lock, open_locked},
    sys,
};

/// A shared lock on the file now at `path` (if any), held while it is
/// replaced: a writer of it elsewhere refuses the replacement (`Locked`),
/// and no other handle can start writing it until the rename is done (it
/// then finds the file replaced and refuses).
fn guard_current(path: &Path) -> StorageResult<Option<File>> {
    match open_locked(path, Held::Shared, |path| {
        File::open(path).map_err(|e| io_error(path, "cannot open", e))
    }) {
        Ok(file) => Ok(Some(file)),
        // Nothing at the path (or it went while we looked): nothing to guard.
        Err(StorageError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A replacement renamed into place but not yet installed: the new file,
/// mapped, and what finishing it needs. Holds the driver's lifecycle lock
/// from [`MmapDriver`](crate::MmapDriver)'s `stage` to its `publish`.
pub struct MmapStaged<'a> {
    _lifecycle: parking_lot::MutexGuard<'a, ()>,
    /// The store, write-locked, when this handle let go of its own file for
    /// the rename (see `let_go_and_rename`): readers wait until `publish`.
    held_store: Option<ShardedLockWriteGuard<'a, Store>>,
    file: File,
    map: Mapping,
    len: u64,
    /// The shared lock on the file that was at the path, if this handle's
    /// writer lock did not guard it.
    guard: Option<File>,
    /// This handle's active file's checkpoints, stopped.
    stopped: Option<Stopped>,
    /// The stale journal the replacement marked, if any.
    marked: Option<(u64, u64)>,
    /// Whether the journals' removal must be durable now.
    must_sync: bool,
}

impl std::fmt::Debug for MmapStaged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapStaged")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl MmapStaged<'_> {
    /// Installs the replacement as the driver's file: readers read it from
    /// here on. Then the journals it made stale go.
    pub(super) fn publish(
        self,
        store: &MappedStore,
        journal: &Journaling,
        durability: &Durability,
    ) {
        let Self {
            _lifecycle,
            held_store,
            file,
            map,
            len,
            guard,
            stopped,
            marked,
            must_sync,
        } = self;
        store.install_replacement(held_store, file, map, len);
        // A new file: an earlier file's failed sync, or the durability its
        // commit still owed, no longer applies (the stale journal goes below).
        journal.poison().clear();
        durability.clear();
        // An orphaned download's checkpoints (its file was deleted from
        // outside) have nothing more to do.
        journal.stop();
        drop(guard);
        drop(stopped);
        retire_journals(store, journal, durability, marked, must_sync);
    }
}

/// Everything of a replacement that can fail: the new file written beside
/// the old one, mapped, and renamed over the path (the commit point). A
/// crash at any instant leaves the old file or the new one at the path. An
/// active file first marks the replacement in its journal, so a crash
/// between the rename and the journal's removal is recognised on reopening
/// (see `journal`). The last commit's durability work is done (the caller
/// waited for it under `lifecycle`).
pub(super) fn stage<'a>(
    lifecycle: parking_lot::MutexGuard<'a, ()>,
    mapped: &'a MappedStore,
    journal: &Journaling,
    data: &[u8],
    durable: bool,
) -> StorageResult<MmapStaged<'a>> {
    let path = mapped.path();
    let len = data.len() as u64;
    let active = journal.is_active();
    let (owns_path, permissions) = {
        let store = mapped.read();
        let permissions = store
            .backing()
            .and_then(|file| file.metadata().ok())
            .map(|meta| meta.permissions());
        // This handle's writer lock guards the path only while its file is
        // the one there (not deleted or replaced from outside).
        let at_path = match store.backing() {
            Some(file) => is_at_path(file, path)?,
            None => false,
        };
        (store.is_exclusive() && at_path, permissions)
    };
    let mut guard = if owns_path {
        None
    } else {
        guard_current(path)?
    };

    let (temp, map) = write_beside(
        path,
        data,
        permissions.or_else(|| {
            let meta = guard.as_ref()?.metadata().ok()?;
            Some(meta.permissions())
        }),
    )?;

    let mark = Replacement {
        len,
        crc: crc32fast::hash(data),
    };
    let mut stopped = if active && owns_path {
        Some(journal.stop_and_mark(path, mark)?)
    } else {
        None
    };
    let renamed = rename_into_place(
        mapped,
        journal.path(),
        (temp, map),
        (&mut guard, &mut stopped),
        owns_path,
        mark,
    );
    let (file, map, marked, held_store) = match renamed {
        Ok(renamed) => renamed,
        Err(e) => {
            // The old file stays; a mark names contents that are not at
            // the path, so reopening ignores it.
            if let Some(stopped) = stopped {
                journal.resume(stopped);
            }
            return Err(e);
        }
    };
    Ok(MmapStaged {
        _lifecycle: lifecycle,
        held_store,
        file,
        map,
        len,
        guard,
        must_sync: durable || active || marked.is_some(),
        stopped,
        marked,
    })
}

/// After a replacement: this handle's journal, or the stale one it marked,
/// is stale now and goes (durably when `durable`); another download's
/// journal stays. A failure is kept for `sync`, and the mark still says
/// the replacement landed.
fn retire_journals(
    store: &MappedStore,
    journal: &Journaling,
    durability: &Durability,
    marked: Option<(u64, u64)>,
    durable: bool,
) {
    match journal.retire(marked) {
        Err(e) => durability.set_retry(Some(e)),
        Ok(()) if durable => durability.finish_now(&Finisher::new(store, journal)),
        // Not durable now; durable at the next `sync`.
        Ok(()) => durability.owe_rename(),
    }
}

/// The file of a temporary that was renamed away (nothing is left at its
/// name to clean up).
fn renamed(temp: tempfile::NamedTempFile) -> File {
    let (file, mut temp_path) = temp.into_parts();
    temp_path.disable_cleanup(true);
    file
}

/// After a rename over the path was refused because a handle holds the
/// file there (`refused`, on a platform without POSIX-semantics renames):
/// lets go of what this handle holds there — the guard, and the store's own
/// file and mapping when that file is the one at the path — and renames
/// again. Returns the store, write-locked (readers wait, with no file to
/// read, until the replacement is installed). When the rename is refused
/// again, another handle holds the file: the store's file is opened again
/// (the same lock, the same mapping) and the error says so.
fn let_go_and_rename<'a>(
    mapped: &'a MappedStore,
    temp: &tempfile::NamedTempFile,
    (guard, stopped): (&mut Option<File>, &mut Option<Stopped>),
    refused: &std::io::Error,
) -> StorageResult<ShardedLockWriteGuard<'a, Store>> {
    let path = mapped.path();
    let mut store = mapped.write();
    let at_path = match store.backing() {
        Some(file) => is_at_path(file, path)?,
        None => false,
    };
    if guard.is_none() && !at_path {
        return Err(in_use_elsewhere(path, refused));
    }
    drop(guard.take());
    let let_go = if at_path {
        // The stopped checkpoints' handle too: the file must close.
        if let Some(stopped) = stopped.as_mut() {
            stopped.set_file(None);
        }
        store.let_go()
    } else {
        None
    };
    match sys::rename_over(temp.path(), path) {
        Ok(()) => Ok(store),
        Err(e) => {
            if let Some(let_go) = let_go {
                store.take_back(path, let_go)?;
                if let Some(stopped) = stopped.as_mut() {
                    stopped.set_file(store.shared_file(path).ok());
                }
            }
            if sys::in_use(&e) {
                Err(in_use_elsewhere(path, &e))
            } else {
                Err(io_error(path, "cannot rename over", e))
            }
        }
    }
}

/// The error of a replacement refused because another handle holds the
/// file open or mapped, on a platform that cannot rename over such a file.
fn in_use_elsewhere(path: &Path, cause: &std::io::Error) -> StorageError {
    let why = std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        format!(
            "another handle holds it open or mapped, and this system cannot rename over such a \
             file ({cause})"
        ),
    );
    io_error(path, "cannot replace", why)
}

/// The new contents in a temporary file beside `path`, with `permissions`,
/// synced, locked shared and mapped: everything that can fail before the
/// rename. The file is deleted if anything fails.
///
/// The data is synced even for a replacement that is not durable: the
/// rename may become durable without this library syncing the directory
/// (another file's directory sync, the file system's own journal), and a
/// power loss then must find the new file whole at the path, not empty.
/// Only the directory sync (which makes the new name itself durable) is
/// left to a durable replacement or a later `sync`.
fn write_beside(
    path: &Path,
    data: &[u8],
    permissions: Option<fs::Permissions>,
) -> StorageResult<(tempfile::NamedTempFile, Mapping)> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let context = |what: &'static str, e: std::io::Error| io_error(path, what, e);
    fs::create_dir_all(dir).map_err(|e| context("cannot create the directory of", e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| context("cannot create a temporary file beside", e))?;
    if let Some(permissions) = permissions {
        // The new file keeps the old one's permissions (best effort).
        let _ = fs::set_permissions(temp.path(), permissions);
    }
    temp.write_all(data)
        .map_err(|e| context("cannot write the replacement of", e))?;
    sys::sync_data(temp.as_file()).map_err(|e| context("cannot sync the replacement of", e))?;
    lock(temp.as_file(), path, Held::Shared)?;
    let len = data.len() as u64;
    let map = Mapping::read_only(temp.as_file(), len).map_err(|e| context("cannot map", e))?;
    Ok((temp, map))
}

/// A replacement at the path: its file, its mapping, the identity of the
/// journal it marked, if any, and the store held from the rename on when
/// this handle had to let go of its own file for it (readers wait until
/// the replacement is installed).
type Renamed<'a> = (
    File,
    Mapping,
    Option<(u64, u64)>,
    Option<ShardedLockWriteGuard<'a, Store>>,
);

/// Renames `temp` over the path. Right before, under the directory lock
/// (so no other rename of this library lands in between), it checks again
/// what guards the path: this handle's own writer lock while its file is
/// still there, or a shared lock on the file that is there now — taken
/// again if the path changed during the write (a writer of the new file
/// refuses us: `Locked`). An empty path is renamed over only if it still is
/// (a download that took it meanwhile is guarded on the next try). When
/// `mark_idle`, a journal found there (stale under the guard: a commit that
/// could not remove it, or one a crash left) first gets the mark, after the
/// bytes it names are durable. Returns the renamed file, its mapping and
/// the identity of the journal it marked, if any.
///
/// Where the platform refuses to rename over a file that a handle holds
/// open or mapped (Windows without POSIX-semantics renames: Wine, FAT,
/// Windows before 10 1709), this handle lets go of what it holds there
/// (its guard, and its own file and mapping, with the store's write lock
/// held until [`MmapStaged::publish`]) and renames again; when another
/// handle still holds the file, its own file is opened again and the error
/// says the file is in use elsewhere: nothing changed.
#[allow(
    clippy::too_many_arguments,
    reason = "the state of one replacement, passed once"
)]
fn rename_into_place<'a>(
    mapped: &'a MappedStore,
    journal_path: &Path,
    (mut temp, map): (tempfile::NamedTempFile, Mapping),
    (guard, stopped): (&mut Option<File>, &mut Option<Stopped>),
    owns_path: bool,
    mark: Replacement,
) -> StorageResult<Renamed<'a>> {
    let path = mapped.path();
    let mark_idle = stopped.is_none();
    let mut marked = None;
    for _ in 0..16 {
        let _name = sys::dir_lock(path);
        let ours = owns_path
            && match mapped.read().backing() {
                Some(file) => is_at_path(file, path)?,
                None => false,
            };
        if !ours {
            let still = match guard.as_ref() {
                Some(file) => is_at_path(file, path)?,
                None => false,
            };
            if !still {
                *guard = guard_current(path)?;
            }
        }
        if mark_idle && journal_path.exists() {
            // The bytes the mark names are durable (`write_beside`).
            journal::mark_existing(journal_path, mark)
                .map_err(|e| io_error(journal_path, "cannot write", e))?;
            marked = sys::entry_id(journal_path);
        }
        if ours || guard.is_some() {
            return match sys::rename_over(temp.path(), path) {
                Ok(()) => Ok((renamed(temp), map, marked, None)),
                Err(e) if sys::in_use(&e) => {
                    let store = let_go_and_rename(mapped, &temp, (guard, stopped), &e)?;
                    Ok((renamed(temp), map, marked, Some(store)))
                }
                Err(e) => Err(io_error(path, "cannot rename over", e)),
            };
        }
        match temp.persist_noclobber(path) {
            Ok(file) => return Ok((file, map, marked, None)),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => temp = e.file,
            Err(e) => return Err(io_error(path, "cannot rename over", e.error)),
        }
    }
    let why = "its path kept being taken and freed while it was being replaced";
    Err(io_error(
        path,
        "cannot rename over",
        std::io::Error::new(std::io::ErrorKind::Interrupted, why),
    ))
}
