//! The memory driver's hot paths allocate nothing: `read_at` of a
//! committed resource, and `wait_range` / `contains_range` of a range
//! already written. `stats_alloc` counts the allocations around them
//! (process-wide: this binary runs one test, so nothing else allocates
//! meanwhile), and this crate writes no allocator of its own.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use storage_core::{CancellationToken, testing::assert_hot_paths_allocate_nothing};
use storage_mem::{MemOptions, MemResource};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations_during(f: &mut dyn FnMut()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

/// One test in this binary: the counter is process-wide.
#[test]
fn committed_memory_reads_and_covered_waits_do_not_allocate() {
    // The counter counts.
    let count = allocations_during(&mut || {
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
    assert_hot_paths_allocate_nothing(&resource, 1 << 20, |f| allocations_during(f));
}
