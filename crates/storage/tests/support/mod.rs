//! Shared test support: harnesses that open a fresh resource of each driver,
//! bounded waits, a recording observer, and the behaviour suite.

#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

pub use storage_core::testing::*;

use std::{
    ops::Range,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use storage::{AvailabilityObserver, CancellationToken, ResourceExt, StorageResult, WaitOutcome};

/// Starts this test binary again as a child that runs only `test`, with
/// the environment variable `key=value`, and waits (at most [`LIMIT`])
/// until the child prints a line ending in "ready". The child's test reads
/// the variable and does nothing when it is absent.
pub fn spawn_ready_child(test: &str, key: &str, value: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(key, value)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let ready = stdout
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with("ready"));
        let _ = tx.send(ready);
    });
    if rx.recv_timeout(LIMIT) != Ok(true) {
        let _ = child.kill();
        panic!("the child `{test}` never got ready");
    }
    child
}

/// Sleeps until `delay` has passed since now, in 1 ms steps.
pub fn sleep_for(delay: Duration) {
    let started = Instant::now();
    while started.elapsed() < delay {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Opens `path` as an mmap resource with a fresh token.
#[cfg(feature = "mmap")]
pub fn open_mmap(
    path: &std::path::Path,
    initial_len: Option<u64>,
    mode: storage::OpenMode,
) -> StorageResult<storage::MmapResource> {
    storage::MmapResource::open(
        CancellationToken::new(),
        storage::MmapOptions {
            path: path.to_path_buf(),
            initial_len,
            mode,
        },
    )
}

/// Runs `op` until it is not refused with `Locked`, for at most [`LIMIT`].
/// For a step that follows the drop of every other handle of a file: a
/// child process that a test running beside it forked in that instant
/// holds a copy of every open file (and its lock) until it execs.
pub fn retry_locked<T>(
    mut op: impl FnMut() -> storage::StorageResult<T>,
) -> storage::StorageResult<T> {
    let deadline = Instant::now() + LIMIT;
    loop {
        match op() {
            Err(storage::StorageError::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The available ranges of `resource` within `0..len`, in order.
pub fn available(resource: &impl ResourceExt, len: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < len {
        let gap = resource.next_gap(at, len).unwrap_or(len..len);
        if gap.start > at {
            ranges.push(at..gap.start);
        }
        at = gap.end;
    }
    ranges
}
