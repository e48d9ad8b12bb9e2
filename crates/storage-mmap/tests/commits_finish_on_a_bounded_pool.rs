//! Commits are made durable on the process's few background threads, not
//! on a thread each: committing hundreds of files in a loop runs at most
//! the pool's threads beside the caller's, and every commit still ends
//! durable (its journal gone once `sync` returns).

use storage_core::{CancellationToken, ResourceExt};
use storage_mmap::{MmapOptions, MmapResource, OpenMode, fs::journal_path};

/// The pool's most threads (`pool::MAX_WORKERS`).
const POOL_THREADS: usize = 4;

/// The byte file `i` is filled with.
fn byte(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

#[test]
fn three_hundred_commits_run_on_at_most_the_pool_s_threads() {
    let dir = tempfile::tempdir().unwrap();
    let before = threads();
    let resources: Vec<_> = (0..300)
        .map(|i: usize| {
            let resource = MmapResource::open(
                CancellationToken::new(),
                MmapOptions {
                    path: dir.path().join(format!("{i}.bin")),
                    initial_len: None,
                    mode: OpenMode::Auto,
                },
            )
            .unwrap();
            resource.write_at(0, &[byte(i); 4096]).unwrap();
            resource
        })
        .collect();
    let mut most = threads();
    for resource in &resources {
        resource.commit(Some(4096)).unwrap();
        most = most.max(threads());
    }
    if before > 0 {
        assert!(
            most <= before + POOL_THREADS,
            "{most} threads while committing, {before} before: a thread per commit?"
        );
    }
    for (i, resource) in resources.iter().enumerate() {
        resource.sync().unwrap();
        let path = dir.path().join(format!("{i}.bin"));
        assert!(
            !journal_path(&path).exists(),
            "{i}: journal left after sync"
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![byte(i); 4096]);
    }
}
