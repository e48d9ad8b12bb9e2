//! The memory driver's hot paths allocate nothing: `read_at` of a
//! committed resource, and `wait_range` / `contains_range` of a range
//! already written. `stats_alloc` counts the allocations around them
//! (process-wide: this binary runs one test, so nothing else allocates
//! meanwhile), and this crate writes no allocator of its own.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use storage_core::{CancellationToken, ResourceExt, WaitOutcome};
use storage_mem::{MemOptions, MemResource};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations_during(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

fn hot_paths_allocate_nothing(resource: &impl ResourceExt, len: u64) {
    let mut buf = vec![0u8; 4096];
    // Warm up: thread-local registrations of the locks happen once per thread.
    resource.read_at(0, &mut buf).unwrap();
    resource.wait_range(0..1).unwrap();
    let count = allocations_during(|| {
        for i in 0..1000u64 {
            let at = (i * 7919) % (len - 4096);
            assert_eq!(resource.read_at(at, &mut buf).unwrap(), 4096);
            assert_eq!(
                resource.wait_range(at..at + 4096).unwrap(),
                WaitOutcome::Ready
            );
            assert!(resource.contains_range(at..at + 4096));
        }
    });
    assert_eq!(count, 0, "{count} allocations on the hot paths");
}

/// One test in this binary: the counter is process-wide.
#[test]
fn committed_memory_reads_and_covered_waits_do_not_allocate() {
    // The counter counts.
    let count = allocations_during(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(count, 1);

    let resource = MemResource::open(
        CancellationToken::new(),
        MemOptions {
            initial_data: Some(vec![5u8; 1 << 20]),
            capacity: 0,
        },
    )
    .unwrap();
    hot_paths_allocate_nothing(&resource, 1 << 20);
}
