//! The behaviour suite run through the facade's `StorageResource` enum, over
//! memory and over files.

mod support;

use std::sync::Arc;

use storage::{AvailabilityObserver, CancellationToken, MemOptions, MemResource, StorageResource};
use support::Harness;

struct UnifiedMem;

impl Harness for UnifiedMem {
    type R = StorageResource;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> StorageResource {
        MemResource::open_with_observer(cancel, MemOptions::default(), observer)
            .unwrap()
            .into()
    }

    fn waiters(&self, resource: &StorageResource) -> usize {
        resource.waiter_count()
    }
}

storage_core::behaviour_suite!(UnifiedMem);

/// The same suite over mmap files.
#[cfg(feature = "mmap")]
mod over_files {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use storage::{MmapOptions, MmapResource, OpenMode};
    use tempfile::TempDir;

    use super::*;

    /// Opens each resource on a new file in one temporary directory.
    struct UnifiedMmap {
        dir: TempDir,
        files: AtomicUsize,
    }

    impl UnifiedMmap {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                files: AtomicUsize::new(0),
            }
        }
    }

    impl Harness for UnifiedMmap {
        type R = StorageResource;

        fn open(
            &self,
            cancel: CancellationToken,
            observer: Option<Arc<dyn AvailabilityObserver>>,
        ) -> StorageResource {
            let n = self.files.fetch_add(1, Ordering::Relaxed);
            let options = MmapOptions {
                path: self.dir.path().join(format!("resource-{n}.bin")),
                // Small, so the suite also exercises growth.
                initial_len: Some(16),
                mode: OpenMode::Auto,
            };
            MmapResource::open_with_observer(cancel, options, observer)
                .unwrap()
                .into()
        }

        fn waiters(&self, resource: &StorageResource) -> usize {
            resource.waiter_count()
        }
    }

    storage_core::behaviour_suite!(UnifiedMmap::new());
}
