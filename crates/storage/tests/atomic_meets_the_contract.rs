//! `Atomic` delegates every method: the behaviour suite run through it,
//! over `MemResource`.

mod support;

use std::sync::Arc;

use storage::{Atomic, AvailabilityObserver, CancellationToken, MemOptions, MemResource};
use support::Harness;

struct AtomicMem;

impl Harness for AtomicMem {
    type R = Atomic<MemResource>;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> Self::R {
        Atomic::new(
            MemResource::open_with_observer(cancel, MemOptions::default(), observer).unwrap(),
        )
    }

    fn waiters(&self, resource: &Self::R) -> usize {
        resource.inner().waiter_count()
    }
}

storage_core::behaviour_suite!(AtomicMem);
