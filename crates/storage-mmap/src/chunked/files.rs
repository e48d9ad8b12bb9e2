//! The file work of `AtomicChunked`: the names beside the canonical path, the
//! checks made before a file is trusted or replaced, rename and syncs (the
//! driver's own names, removal and platform calls come from `fs` and
//! `sys`).

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
};

use storage_core::{StorageError, StorageResult};

pub(super) use crate::fs::{remove_download, remove_if_present};
use crate::{fs::journal_path, sys};

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// `<canonical>.tmp`: the download's file, in the canonical path's own
/// directory, so that the rename that publishes it is atomic.
///
/// # Errors
///
/// `Io` (`InvalidInput`) when `canonical` has no file name (`/`, `a/..`).
pub(super) fn temp_path(canonical: &Path) -> StorageResult<PathBuf> {
    if canonical.file_name().is_none() {
        let why = io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name");
        return Err(StorageError::io("cannot download to", canonical, why));
    }
    Ok(suffixed(canonical, ".tmp"))
}

/// Whether anything (a link included) is at `path`.
pub(super) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// `<temp>.claim`: the file whose lock is the claim on a download.
/// `Err` when something is at `temp` with no claim file beside it. This
/// library makes the claim before the temporary file and removes it after,
/// so such a file is not one of its downloads (another program's file, or
/// one left by `kithara-storage`, which claims a download by the file's
/// existence): it is left alone, never taken over or deleted.
pub(super) fn check_ours_or_absent(temp: &Path) -> StorageResult<()> {
    if exists(temp) && !exists(&claim_path(temp)) {
        let why = io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists without a claim beside it, so it is not a download of this library: \
             it is left alone (remove it, or download to another path)",
        );
        return Err(StorageError::io("cannot download to", temp, why));
    }
    Ok(())
}

pub(super) fn claim_path(temp: &Path) -> PathBuf {
    suffixed(temp, ".claim")
}

/// Creates the directory that will hold `path`.
pub(super) fn create_parent(path: &Path) -> StorageResult<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::create_dir_all(parent)
            .map_err(|e| StorageError::io("cannot create directory", parent, e)),
        None => Ok(()),
    }
}

/// Refuses what lies at `path` unless it is a regular file or nothing. The
/// entry itself is looked at (a symlink is not followed, a FIFO not opened).
pub(super) fn check_regular_or_absent(path: &Path, op: &'static str) -> StorageResult<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(_) => {
            let why = io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a directory, a symlink, a FIFO, ...): left as it is",
            );
            Err(StorageError::io(op, path, why))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("cannot inspect", path, e)),
    }
}

/// Refuses to publish over a directory, or over an unfinished download of
/// the mmap driver (its journal lies beside the path): that file belongs to
/// another writer, and its journal would describe our file after the rename.
/// A symlink at the path is replaced itself, never followed.
pub(super) fn check_publishable(canonical: &Path) -> StorageResult<()> {
    match fs::symlink_metadata(canonical) {
        Ok(meta) if meta.is_dir() => {
            let why = io::Error::new(io::ErrorKind::IsADirectory, "a directory is in the way");
            return Err(StorageError::io("cannot publish to", canonical, why));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("cannot inspect", canonical, e)),
    }
    let marked = crate::mark::unfinished_at(canonical)
        .map_err(|e| StorageError::io("cannot inspect", canonical, e))?;
    match fs::symlink_metadata(journal_path(canonical)) {
        Ok(_) => {
            let why = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an unfinished download of that file is there (its journal lies beside it)",
            );
            Err(StorageError::io("cannot publish to", canonical, why))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && marked => {
            let why = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an unfinished download of that file is there (its mark says so)",
            );
            Err(StorageError::io("cannot publish to", canonical, why))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(
            "cannot inspect",
            journal_path(canonical),
            e,
        )),
    }
}

/// Refuses to publish `temp` unless it is still a regular file (not a
/// symlink put there from outside) of the committed length, when known.
pub(super) fn check_download(temp: &Path, len: Option<u64>) -> StorageResult<()> {
    let meta =
        fs::symlink_metadata(temp).map_err(|e| StorageError::io("cannot inspect", temp, e))?;
    let whole = meta.file_type().is_file() && len.is_none_or(|len| meta.len() == len);
    if whole {
        return Ok(());
    }
    let why = io::Error::new(
        io::ErrorKind::InvalidData,
        "replaced or changed from outside since it was downloaded: not published",
    );
    Err(StorageError::io("cannot publish", temp, why))
}

/// Makes the contents and length of the file at `path` durable (for a
/// resource whose own `sync` has nothing to do).
pub(super) fn sync_file(path: &Path) -> StorageResult<()> {
    crate::fs::sync_file(path).map_err(|e| StorageError::io("cannot sync", path, e))
}

/// Renames `from` over `to` (the entry at `to` is replaced, not followed).
/// Where the platform cannot rename over a file that a handle holds open
/// or mapped (Windows without POSIX-semantics renames), that refusal is an
/// `Io` error of kind `ResourceBusy`, and nothing changed.
pub(super) fn rename(from: &Path, to: &Path) -> StorageResult<()> {
    sys::rename_over(from, to).map_err(|e| {
        let e = if sys::in_use(&e) {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "another handle holds it open or mapped, and this system cannot rename over \
                     such a file ({e})"
                ),
            )
        } else {
            e
        };
        StorageError::io("cannot rename the download to", to, e)
    })
}

/// Makes the names in the directory holding `path` durable.
pub(super) fn sync_dir(path: &Path) -> StorageResult<()> {
    sys::sync_dir(path).map_err(|e| {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        StorageError::io("cannot sync directory", dir, e)
    })
}

/// Whether `file` is the entry now at `path` (not removed or replaced since
/// it was opened, and not reached through a symlink); `true` where the
/// platform cannot tell.
pub(super) fn is_entry(file: &File, path: &Path) -> StorageResult<bool> {
    let entry = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_symlink() => return Ok(false),
        Ok(_) => sys::entry_id(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StorageError::io("cannot inspect", path, e)),
    };
    Ok(sys::same_id(sys::file_id(file), entry).unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_are_named_beside_the_canonical_path() {
        let temp = temp_path(Path::new("music/album/01.flac")).unwrap();
        assert_eq!(temp, Path::new("music/album/01.flac.tmp"));
        assert_eq!(
            claim_path(&temp),
            Path::new("music/album/01.flac.tmp.claim")
        );
        assert_eq!(
            journal_path(&temp),
            Path::new("music/album/01.flac.tmp.storage-journal")
        );
        assert!(temp_path(Path::new("/")).is_err());
        assert!(temp_path(Path::new("a/..")).is_err());
    }
}
