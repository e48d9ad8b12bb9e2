//! The behaviour suite run through the facade's `StorageResource` enum.

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
