//! The behaviour suite run against `AtomicChunked<MmapResource>`: a
//! download at a temporary path, published by rename at commit, behaves as
//! any resource. (Its own file: the suite's reopens must not meet a lock
//! that a child process, forked by a test beside it, briefly holds.)

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use storage::{
    AtomicChunked, AvailabilityObserver, CancellationToken, MmapOptions, MmapResource, OpenMode,
};
use support::Harness;
use tempfile::TempDir;

/// Opens each download at a new canonical path in one temporary directory.
struct Chunked {
    dir: TempDir,
    files: AtomicUsize,
}

impl Harness for Chunked {
    type R = AtomicChunked<MmapResource>;

    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> Self::R {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let canonical = self.dir.path().join(format!("resource-{n}.bin"));
        AtomicChunked::open(canonical, move |path, _intent| {
            let options = MmapOptions {
                path: path.to_path_buf(),
                // Small, so the suite also exercises growth.
                initial_len: Some(16),
                mode: OpenMode::Auto,
            };
            MmapResource::open_with_observer(cancel.clone(), options, observer.clone())
        })
        .unwrap()
    }

    fn waiters(&self, resource: &Self::R) -> usize {
        resource.inner().waiter_count()
    }
}

storage_core::behaviour_suite!(Chunked {
    dir: tempfile::tempdir().unwrap(),
    files: AtomicUsize::new(0),
});
