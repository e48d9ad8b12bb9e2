//! Child processes for kill tests, and the retry a reopen beside them needs.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::LIMIT;
use crate::{StorageError, StorageResult};

/// Starts this test binary again as a child that runs only `test`, with
/// the environment variable `key=value`, and waits (at most [`LIMIT`])
/// until the child prints a line ending in "ready". The child's test reads
/// the variable and does nothing when it is absent.
///
/// # Panics
///
/// When the child cannot start or never says "ready" in time (it is killed).
#[must_use]
pub fn spawn_ready_child(test: &str, key: &str, value: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(key, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child test process");
    let stdout = BufReader::new(child.stdout.take().expect("a piped stdout"));
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

/// Runs `op` until it is not refused with `Locked`, for at most [`LIMIT`].
/// For a step that follows the drop of every other handle of a file: a
/// child process that a test running beside it spawned in that instant
/// holds a copy of every open file (and its lock) until it execs.
///
/// # Errors
///
/// What `op` last returned.
pub fn retry_locked<T>(mut op: impl FnMut() -> StorageResult<T>) -> StorageResult<T> {
    let deadline = Instant::now() + LIMIT;
    loop {
        match op() {
            Err(StorageError::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}
