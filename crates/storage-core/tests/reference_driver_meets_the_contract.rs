//! The behaviour suite run against the reference driver, as a driver in
//! another crate would run it: one `Harness` and one macro call.

use std::sync::Arc;

use storage_core::{
    AvailabilityObserver, CancellationToken, Resource,
    testing::{Harness, ReferenceDriver, ReferenceResource},
};

struct Reference;

impl Harness for Reference {
    type R = ReferenceResource;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> ReferenceResource {
        Resource::<ReferenceDriver>::open_with_observer(cancel, (), observer).unwrap()
    }

    fn waiters(&self, resource: &ReferenceResource) -> usize {
        resource.waiter_count()
    }
}

storage_core::behaviour_suite!(Reference);
