//! The behaviour suite run against `MemResource`.

mod support;

use std::sync::Arc;

use storage::{AvailabilityObserver, CancellationToken, MemOptions, MemResource};
use support::Harness;

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

/// `Atomic` delegates every method: the same suite through it.
mod through_atomic {
    use storage::Atomic;

    use super::*;

    struct AtomicMem;

    impl Harness for AtomicMem {
        type R = Atomic<MemResource>;

        fn open(
            &self,
            cancel: CancellationToken,
            observer: Option<Arc<dyn AvailabilityObserver>>,
        ) -> Self::R {
            Atomic::new(Mem.open(cancel, observer))
        }

        fn waiters(&self, resource: &Self::R) -> usize {
            resource.inner().waiter_count()
        }
    }

    storage_core::behaviour_suite!(AtomicMem);
}
