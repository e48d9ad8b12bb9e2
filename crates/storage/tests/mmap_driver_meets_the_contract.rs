//! The behaviour suite run against `MmapResource`, directly and through
//! `StorageResource`.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use storage::{
    AvailabilityObserver, CancellationToken, MmapOptions, MmapResource, OpenMode, StorageResource,
};
use support::Harness;
use tempfile::TempDir;

/// Opens each resource on a new file in one temporary directory.
struct Mmap {
    dir: TempDir,
    files: AtomicUsize,
}

impl Mmap {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            files: AtomicUsize::new(0),
        }
    }

    fn open_mmap(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> MmapResource {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let options = MmapOptions {
            path: self.dir.path().join(format!("resource-{n}.bin")),
            // Small, so the suite also exercises growth.
            initial_len: Some(16),
            mode: OpenMode::Auto,
        };
        MmapResource::open_with_observer(cancel, options, observer).unwrap()
    }
}

impl Harness for Mmap {
    type R = MmapResource;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> MmapResource {
        self.open_mmap(cancel, observer)
    }

    fn waiters(&self, resource: &MmapResource) -> usize {
        resource.waiter_count()
    }
}

/// The same files, seen through the facade's enum.
struct UnifiedMmap(Mmap);

impl Harness for UnifiedMmap {
    type R = StorageResource;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> StorageResource {
        self.0.open_mmap(cancel, observer).into()
    }

    fn waiters(&self, resource: &StorageResource) -> usize {
        resource.waiter_count()
    }
}

storage_core::behaviour_suite!(Mmap::new());

mod through_storage_resource {
    use super::*;

    storage_core::behaviour_suite!(UnifiedMmap(Mmap::new()));
}
