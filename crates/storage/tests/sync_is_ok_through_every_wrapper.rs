//! `sync()` answers at once in memory and passes through every wrapper the
//! facade adds (`Atomic`, `StorageResource`) to the file underneath.

mod support;

use std::path::Path;

use storage::{
    Atomic, CancellationToken, MemResource, MmapResource, OpenMode, ResourceExt, StorageError,
    StorageResource,
};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

use support::journal_of;

#[test]
fn sync_is_ok_at_once_in_memory_and_through_every_wrapper() {
    let mem = MemResource::new(CancellationToken::new());
    mem.write_at(0, b"x").unwrap();
    mem.sync().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrapped = Atomic::new(StorageResource::from(
        open(&dir.path().join("wrapped.bin"), OpenMode::Auto).unwrap(),
    ));
    wrapped.write_at(0, b"abc").unwrap();
    wrapped.sync().unwrap();
    wrapped.commit(Some(3)).unwrap();
    wrapped.sync().unwrap();
    assert!(!journal_of(&dir.path().join("wrapped.bin")).exists());
}
