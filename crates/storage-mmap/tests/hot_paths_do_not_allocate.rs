//! The mmap driver's hot paths allocate nothing: `read_at` of a committed
//! resource, and `wait_range` / `contains_range` of a range already
//! written. A counting global allocator counts this thread's allocations
//! around them. (It lives in `storage-mmap`, the one crate allowed
//! `unsafe`: a global allocator is an `unsafe impl`. The memory driver's
//! test counts with `stats_alloc` instead.)

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use storage_core::{CancellationToken, ResourceExt, testing::assert_hot_paths_allocate_nothing};
use storage_mmap::{MmapOptions, MmapResource};

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter
// is a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: &mut dyn FnMut()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn committed_mmap_reads_and_covered_waits_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions::new(dir.path().join("hot.bin")),
    )
    .unwrap();
    resource.write_all(&vec![5u8; 1 << 20]).unwrap();
    assert_hot_paths_allocate_nothing(&resource, 1 << 20, |f| allocations_during(f));
}

#[test]
fn an_active_mmap_resource_with_a_written_prefix_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions::new(dir.path().join("active.bin")),
    )
    .unwrap();
    resource.write_at(0, &vec![5u8; 1 << 20]).unwrap();
    assert_hot_paths_allocate_nothing(&resource, 1 << 20, |f| allocations_during(f));
}

#[test]
fn the_counter_counts() {
    let count = allocations_during(&mut || {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(count, 1);
}
