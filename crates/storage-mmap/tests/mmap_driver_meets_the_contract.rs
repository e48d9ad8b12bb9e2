//! The behaviour suite run against `MmapResource`.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use storage_core::{AvailabilityObserver, CancellationToken, testing::Harness};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};
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

storage_core::behaviour_suite!(Mmap::new());
