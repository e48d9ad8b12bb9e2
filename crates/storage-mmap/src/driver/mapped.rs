//! `MappedStore`: the file and its mapping behind the driver's sharded
//! lock, with the written extent: what readers read, and the writes that
//! never change a byte a reader reads at that moment.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        Arc, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use storage_core::{StorageError, StorageResult};

use crate::{
    map::Mapping,
    store::{Store, io_error},
    sys::{self, write_all_at},
};

/// The driver's file: the store (file handle, lock, mapping) and how far
/// it has been written.
#[derive(Debug)]
pub(super) struct MappedStore {
    /// The backing file's path.
    path: PathBuf,
    /// Guards the file handle and the mapping: readers and fresh writes
    /// share it; overwrites, the swap of a grown mapping, commit and
    /// reactivate hold it exclusively. Sharded: a reader locks only its
    /// thread's shard, so parallel readers do not contend on one lock word.
    /// Shared with the thread that makes a commit durable (`durability`).
    store: Arc<ShardedLock<Store>>,
    /// One past the highest byte written or committed (raised by writes
    /// under the shared lock, set by commit under the exclusive one).
    extent: AtomicU64,
}

/// Which lock a write of the file holds while the kernel copies its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Exclusion {
    /// The bytes may be read right now: keep readers out.
    Exclusive,
    /// No reader reads these bytes until the write returns (a fresh write).
    Shared,
}

/// An offset already checked to lie within a mapping (whose length is a `usize`).
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl MappedStore {
    /// `store` at `path`, written up to `extent`.
    pub(super) fn new(path: PathBuf, store: Store, extent: u64) -> Self {
        Self {
            path,
            store: Arc::new(store.into()),
            extent: extent.into(),
        }
    }

    /// The backing file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The store, shared. A poisoned lock is taken as is: no code panics
    /// while holding it, and the store is consistent between statements.
    pub(super) fn read(&self) -> ShardedLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store, exclusively.
    pub(super) fn write(&self) -> ShardedLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's lock itself, for a commit's background work.
    pub(super) fn shared(&self) -> Arc<ShardedLock<Store>> {
        Arc::clone(&self.store)
    }

    /// One past the highest byte written or committed.
    pub(super) fn extent(&self) -> u64 {
        self.extent.load(Ordering::Acquire)
    }

    /// Sets the extent to a commit's (or a replacement's) length.
    pub(super) fn set_extent(&self, len: u64) {
        self.extent.store(len, Ordering::Release);
    }

    /// Copies the bytes at `offset`, up to `effective_len`, into `buf`.
    pub(super) fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> usize {
        let store = self.read();
        let bytes = store.bytes();
        let end = effective_len.min(bytes.len() as u64);
        if offset >= end {
            // Past the mapping: the end, or a read that a shrinking commit
            // overtook (`Resource` sees the rewrite and reads again).
            return 0;
        }
        // Both are at most `bytes.len()`, so they fit in a `usize`.
        let (start, end) = (to_index(offset), to_index(end));
        let count = buf.len().min(end - start);
        buf[..count].copy_from_slice(&bytes[start..start + count]);
        count
    }

    /// Writes `data` (not empty) at `offset` of an active file, growing it
    /// first when it passes the end, and raises the extent. Returns the
    /// end of the written range.
    pub(super) fn write_active(
        &self,
        offset: u64,
        data: &[u8],
        exclusion: Exclusion,
    ) -> StorageResult<u64> {
        let end = offset + data.len() as u64;
        // `Resource` never runs two writes (or a write and a commit) at once,
        // so the store cannot change between the steps below but for
        // readers, who keep reading through every step except the swap of a
        // grown mapping (and the copy of an overwrite).
        let (writable, len) = {
            let store = self.read();
            (store.is_writable(), store.len())
        };
        if !writable {
            // Only an active store writes here, and it opened its file for writing.
            return Err(StorageError::Committed);
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
        written.map_err(|e| io_error(&self.path, "cannot write", e))?;
        self.extent.fetch_max(end, Ordering::AcqRel);
        Ok(end)
    }

    /// Makes `range` (a hole: no reader reads it) read as zeros, when this
    /// handle writes its file.
    pub(super) fn zero_range(&self, range: Range<u64>) -> StorageResult<()> {
        let store = self.read();
        if !store.is_writable() {
            // Nothing is written through this handle; the commit refuses.
            return Ok(());
        }
        // Readers never read a hole (`Resource` zero-fills them), so the
        // shared lock is enough. Punching frees the blocks growth reserved:
        // a later rewrite there may find the disk full, and says so.
        sys::zero_range(store.file(&self.path)?, range)
            .map_err(|e| io_error(&self.path, "cannot zero a hole of", e))
    }

    /// A write into a committed `ReadWrite` file, within its length: under
    /// the exclusive lock, so no other handle maps the file meanwhile.
    pub(super) fn rewrite_in_place(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        let mut store = self.write();
        if offset + data.len() as u64 > store.len() {
            // A committed file is rewritten in place; growing it needs reactivate.
            return Err(StorageError::Committed);
        }
        let was_exclusive = store.is_exclusive();
        store.acquire_exclusive(&self.path)?;
        let written = write_all_at(store.file(&self.path)?, data, offset)
            .map_err(|e| io_error(&self.path, "cannot write", e));
        if !was_exclusive {
            store.release_to_shared(&self.path);
        }
        written
    }

    /// Installs a replacement's file, renamed over the path and mapped
    /// (`len` bytes): readers read it from here on.
    /// Installs a replacement, through `held` when the caller holds the
    /// store already (it let go of its file for the rename).
    pub(super) fn install_replacement(
        &self,
        held: Option<ShardedLockWriteGuard<'_, Store>>,
        file: std::fs::File,
        map: Mapping,
        len: u64,
    ) {
        let mut store = held.unwrap_or_else(|| self.write());
        store.take_up(file, map, len);
        drop(store);
        self.set_extent(len);
    }
}

#[cfg(test)]
mod tests {
    use storage_core::{ResourceExt, StorageError, testing::pattern};

    use crate::{MmapResource, OpenMode, driver::durability::tests::open_in, sys::probe};

    /// A new file `name` in a directory of its own, opened `Auto`.
    fn fresh(name: &str) -> (tempfile::TempDir, std::path::PathBuf, MmapResource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let r = open_in(&path, OpenMode::Auto);
        (dir, path, r)
    }

    fn read(r: &MmapResource, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut buf = vec![0xAA; range.len()];
        assert_eq!(r.read_at(range.start as u64, &mut buf).unwrap(), buf.len());
        buf
    }

    #[test]
    fn a_write_that_fails_partway_leaves_no_byte_for_a_commit_to_show() {
        let data = pattern(9, 200_000);
        let (_dir, path, r) = fresh("dying.bin");
        r.write_at(0, &data[..10_000]).unwrap();
        r.write_at(50_000, &data[50_000..60_000]).unwrap();

        // A fresh write (into a hole) and one across written bytes and
        // holes each store their first bytes, then the disk fails them.
        probe::cut_next_write_of(&path, 30_000);
        let err = r.write_at(100_000, &data[100_000..150_000]).unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        probe::cut_next_write_of(&path, 45_000);
        let err = r.write_at(5_000, &data[5_000..65_000]).unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert!(!r.contains_range(100_000..100_001));
        assert!(!r.contains_range(10_000..10_001));

        // Committed with its holes: they read as zeros, the written bytes
        // as written (a failed overwrite of available bytes may leave them
        // old or new, as `pwrite` does; these were the same).
        r.commit(Some(200_000)).unwrap();
        assert!(read(&r, 10_000..50_000).iter().all(|&b| b == 0));
        assert!(read(&r, 60_000..200_000).iter().all(|&b| b == 0));
        assert_eq!(read(&r, 0..10_000), data[..10_000]);
        assert_eq!(read(&r, 50_000..60_000), data[50_000..60_000]);
        r.sync().unwrap();
        drop(r);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[100_000..150_000].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_failed_rewrite_into_a_hole_of_a_committed_file_leaves_it_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holes.bin");
        let r = open_in(&path, OpenMode::ReadWrite);
        r.write_at(0, &[1; 1000]).unwrap();
        r.write_at(500_000, &[1; 1000]).unwrap();
        r.commit(None).unwrap(); // holes stay holes
        probe::cut_next_write_of(&path, 50_000);
        r.write_at(100_000, &vec![9; 100_000]).unwrap_err();
        r.sync().unwrap();
        drop(r);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[1000..500_000].iter().all(|&b| b == 0));
        let r = open_in(&path, OpenMode::ReadWrite);
        assert!(read(&r, 1000..500_000).iter().all(|&b| b == 0));
    }

    // Cuts a file that is mapped, which Windows refuses (ERROR_USER_MAPPED_FILE): the case cannot arise there.
    #[cfg(unix)]
    #[test]
    fn a_commit_of_a_file_cut_from_outside_is_refused() {
        let (_dir, path, r) = fresh("cut.bin");
        r.write_at(0, &vec![7; 20_000]).unwrap();
        r.write_at(40_000, &vec![7; 20_000]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(30_000)
            .unwrap();
        let err = r.commit(Some(65_536)).unwrap_err();
        assert!(
            matches!(&err, StorageError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData),
            "{err}"
        );
        assert!(err.to_string().contains("truncated from outside"), "{err}");
        assert_eq!(r.status(), storage_core::ResourceStatus::Active);
        // Cut below what a commit keeps: that commit loses nothing.
        r.commit(Some(10_000)).unwrap();
        assert_eq!(read(&r, 0..10_000), vec![7; 10_000]);
    }

    /// A fresh download's holes hold nothing but zeros: its commit zeroes
    /// none of them (punching each would cost a syscall, and free the blocks
    /// growth reserved).
    #[test]
    #[cfg(unix)] // Counts the file's blocks (`st_blocks`), which Windows' std does not report.
    fn a_clean_sparse_commit_zeroes_no_hole() {
        use std::os::unix::fs::MetadataExt;

        let (_dir, path, r) = fresh("sparse.bin");
        for at in (0..64u64).map(|i| i * 65_536) {
            r.write_at(at, &[1]).unwrap();
        }
        // Written back first: the file system allocates its own blocks (an
        // extent tree) at write-back, which the commit's sync would do.
        r.sync().unwrap();
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        r.commit(Some(64 * 65_536)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().blocks(), blocks);
        assert!(read(&r, 1..65_536).iter().all(|&b| b == 0));
    }

    #[test]
    fn a_write_retried_after_a_failure_partway_lands_whole() {
        let data = pattern(3, 100_000);
        let (_dir, path, r) = fresh("retried.bin");
        probe::cut_next_write_of(&path, 1_000);
        r.write_at(0, &data).unwrap_err();
        r.write_at(0, &data).unwrap();
        r.commit(None).unwrap();
        assert_eq!(read(&r, 0..100_000), data);
    }
}
