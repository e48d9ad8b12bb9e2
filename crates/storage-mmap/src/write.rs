//! Writes of the file: fresh bytes beside readers, overwrites, growth, and
//! rewrites in place of a committed `ReadWrite` file.

use std::sync::atomic::Ordering;

use storage_core::{StorageError, StorageResult};

use crate::{
    MmapDriver, OpenMode,
    driver::Exclusion,
    store::{Held, io_error},
    sys::write_all_at,
};

impl MmapDriver {
    pub(crate) fn write_bytes(
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
        if committed {
            return self.rewrite_in_place(offset, data);
        }
        // `Resource` never runs two writes (or a write and a commit) at once,
        // so the store cannot change between the steps below but for
        // readers, who keep reading through every step except the swap of a
        // grown mapping (and the copy of an overwrite).
        let (writable, len) = {
            let store = self.read();
            (store.file_writable, store.len)
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
        if let Some(checkpoints) = self.checkpoints.lock().as_mut() {
            checkpoints.record(offset..end);
        }
        Ok(())
    }

    /// A write into a committed `ReadWrite` file, within its length: under
    /// the exclusive lock, so no other handle maps the file meanwhile.
    fn rewrite_in_place(&self, offset: u64, data: &[u8]) -> StorageResult<()> {
        let _lifecycle = self.lifecycle.lock();
        // After the commit's background work, which may release the lock.
        self.durability.wait();
        let mut store = self.write();
        if offset + data.len() as u64 > store.len {
            // A committed file is rewritten in place; growing it needs reactivate.
            return Err(StorageError::Committed);
        }
        let was_exclusive = store.held == Held::Exclusive;
        store.acquire_exclusive(&self.path)?;
        let written = write_all_at(store.file(&self.path)?, data, offset)
            .map_err(|e| io_error(&self.path, "cannot write", e));
        if !was_exclusive {
            store.release_to_shared(&self.path);
        }
        written
    }
}
