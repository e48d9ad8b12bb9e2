//! The behaviour suite run against `MemResource`.

use std::sync::Arc;

use storage_core::{AvailabilityObserver, CancellationToken, testing::Harness};
use storage_mem::{MemOptions, MemResource};

struct Mem;

impl Harness for Mem {
    type R = MemResource;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> MemResource {
        MemResource::open_with_observer(cancel, MemOptions::default(), observer).unwrap()
    }

    fn waiters(&self, resource: &MemResource) -> usize {
        resource.waiter_count()
    }
}

storage_core::behaviour_suite!(Mem);
