//! The claim on a download: an exclusive lock on `<canonical>.tmp.claim`,
//! whose one byte says how far the download got.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use super::files;
use crate::sys::{self, Refused};
use storage_core::{StorageError, StorageResult};

/// How far the download behind a claim got, as its claim file says. This
/// is what the next open reads after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mark {
    /// Downloading (also an empty or unreadable claim file): the temporary
    /// file is resumed from its journal.
    Writing,
    /// A commit began: once the temporary file is committed (it has no
    /// journal), it is whole and durable, and the next open publishes it.
    Committing,
    /// Failed, or dropped unfinished: the next open discards the download.
    Failed,
}

impl Mark {
    fn byte(self) -> u8 {
        match self {
            Self::Writing => b'W',
            Self::Committing => b'C',
            Self::Failed => b'F',
        }
    }

    fn from_byte(byte: Option<u8>) -> Self {
        match byte {
            Some(b'C') => Self::Committing,
            Some(b'F') => Self::Failed,
            _ => Self::Writing,
        }
    }
}

/// How many times a claim is retried when its file is replaced between the
/// open and the lock.
const TRIES: usize = 16;

/// A held claim. Only one exists per temporary path at a time, across
/// processes (an advisory lock, released by the kernel when its process
/// dies). Dropping it removes the claim file if it says
/// [`Mark::Writing`] (any other mark is news for the next open) and the
/// temporary file is gone, then releases the lock;
/// [`release`](Self::release) removes it whatever it says, once the
/// temporary file is gone. A claim file never goes before its temporary
/// file: without it, the next open could not tell the download for this
/// library's own, and would refuse it for good.
#[derive(Debug)]
pub(super) struct Claim {
    /// Holds the lock; its one byte is the mark.
    file: File,
    path: PathBuf,
    /// The temporary file it claims.
    temp: PathBuf,
    mark: Mark,
    /// Whether the temporary file was removed: its name may linger on
    /// Windows while a handle still holds it (delete pending), yet it is
    /// gone for this claim.
    temp_removed: bool,
}

impl Claim {
    /// Claims the download at `temp`.
    ///
    /// # Errors
    ///
    /// `TmpClaimed(temp)` while another claim is held; `Io` when the claim
    /// file cannot be made, locked or read (or is not a regular file).
    pub(super) fn take(temp: &Path) -> StorageResult<Self> {
        let path = files::claim_path(temp);
        for _ in 0..TRIES {
            files::check_regular_or_absent(&path, "cannot claim")?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| StorageError::io("cannot open", &path, e))?;
            // The lock every handle of this crate takes (`sys::try_lock`):
            // on Windows a byte far past the mark, which stays readable.
            match sys::try_lock(&file, sys::Kind::Exclusive) {
                // A file system without locks: downloads cannot be kept
                // apart there, and are not refused (as the mmap driver).
                Ok(()) | Err(Refused::Unsupported) => {}
                Err(Refused::Conflict) => {
                    return Err(StorageError::TmpClaimed(temp.to_path_buf()));
                }
                Err(Refused::Io(e)) => {
                    return Err(StorageError::io("cannot lock", &path, e));
                }
            }
            // The lock must be on the file at the path: a claim released
            // between our open and our lock removed it (and another may be
            // there now).
            if files::is_entry(&file, &path)? {
                let mut claim = Self {
                    file,
                    path,
                    temp: temp.to_path_buf(),
                    mark: Mark::Writing,
                    temp_removed: false,
                };
                claim.mark = claim.read_mark()?;
                return Ok(claim);
            }
        }
        let why = io::Error::new(
            io::ErrorKind::Interrupted,
            format!("replaced {TRIES} times while it was being claimed"),
        );
        Err(StorageError::io("cannot claim", path, why))
    }

    fn read_mark(&mut self) -> StorageResult<Mark> {
        let mut byte = [0];
        let read = (&self.file)
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&self.file).read(&mut byte))
            .map_err(|e| StorageError::io("cannot read", &self.path, e))?;
        Ok(Mark::from_byte((read == 1).then_some(byte[0])))
    }

    /// What the claim file says.
    pub(super) fn mark(&self) -> Mark {
        self.mark
    }

    /// Writes `mark` (one byte, in place: never torn). With `durable`, the
    /// byte and the claim file's name are synced before this returns.
    ///
    /// # Errors
    ///
    /// `Io` when it cannot be written or synced; then [`mark`](Self::mark)
    /// still says what it said.
    pub(super) fn set(&mut self, mark: Mark, durable: bool) -> StorageResult<()> {
        let written = (&self.file)
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&self.file).write_all(&[mark.byte()]))
            .and_then(|()| {
                if durable {
                    sys::sync_data(&self.file)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StorageError::io("cannot write", &self.path, e));
        written?;
        if durable {
            files::sync_dir(&self.path)?;
        }
        self.mark = mark;
        Ok(())
    }

    /// Removes the claim file whatever it says, then releases the lock.
    pub(super) fn release(mut self) {
        self.mark = Mark::Writing;
    }

    /// As [`release`](Self::release), once the caller removed the
    /// temporary file (whose name a handle may keep a while on Windows).
    pub(super) fn release_removed(mut self) {
        self.temp_removed = true;
        self.release();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while the lock is still held (the file and its lock go
        // after this body): a claimer that opened it meanwhile finds it gone
        // once it holds the lock, and starts again. Kept while the
        // temporary file is there (an open that failed on a download a
        // crash left): the next open resumes it.
        if self.mark == Mark::Writing && (self.temp_removed || !files::exists(&self.temp)) {
            let _ = files::remove_if_present(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_the_file_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("a.bin.tmp");
        let claim = Claim::take(&temp).unwrap();
        let err = Claim::take(&temp).unwrap_err();
        assert!(
            matches!(&err, StorageError::TmpClaimed(p) if p == &temp),
            "{err}"
        );
        drop(claim);
        assert!(!files::claim_path(&temp).exists());
        let again = Claim::take(&temp).unwrap();
        assert_eq!(again.mark(), Mark::Writing);
    }

    #[test]
    fn a_mark_other_than_writing_outlives_the_claim_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("b.bin.tmp");
        for mark in [Mark::Committing, Mark::Failed] {
            let mut claim = Claim::take(&temp).unwrap();
            claim.set(mark, true).unwrap();
            drop(claim);
            let claim = Claim::take(&temp).unwrap();
            assert_eq!(claim.mark(), mark);
            claim.release();
            assert!(!files::claim_path(&temp).exists());
        }
        let mut claim = Claim::take(&temp).unwrap();
        claim.set(Mark::Committing, false).unwrap();
        claim.set(Mark::Writing, false).unwrap();
        drop(claim);
        assert!(!files::claim_path(&temp).exists());
    }

    #[test]
    fn a_claim_outlives_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("d.bin.tmp");
        let claim = Claim::take(&temp).unwrap();
        std::fs::write(&temp, b"a download").unwrap();
        drop(claim);
        assert!(files::claim_path(&temp).exists(), "dropped before its file");
        let claim = Claim::take(&temp).unwrap();
        claim.release();
        assert!(
            files::claim_path(&temp).exists(),
            "released before its file"
        );
        std::fs::remove_file(&temp).unwrap();
        Claim::take(&temp).unwrap().release();
        assert!(!files::claim_path(&temp).exists());
    }

    #[test]
    fn a_claim_file_that_is_not_a_regular_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("c.bin.tmp");
        std::fs::create_dir(files::claim_path(&temp)).unwrap();
        let err = Claim::take(&temp).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::InvalidInput), "{err}");
        assert!(files::claim_path(&temp).is_dir());
    }
}
