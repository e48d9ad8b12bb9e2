//! Shared test support: harnesses that open a fresh resource of each driver,
//! bounded waits, a recording observer, and the behaviour suite.

#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

pub mod extensions;
pub mod suite;

use std::{
    ops::Range,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use storage::{AvailabilityObserver, CancellationToken, ResourceExt, StorageResult, WaitOutcome};

/// How long any wait in a test may take before it counts as a deadlock.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Opens fresh resources of one driver for the behaviour suite.
pub trait Harness {
    /// The resource type under test.
    type R: ResourceExt + Clone;
    /// Opens an empty, active resource.
    fn open(
        &self,
        cancel: CancellationToken,
        observer: Option<Arc<dyn AvailabilityObserver>>,
    ) -> Self::R;
    /// Threads blocked in `wait_range` on `resource` right now.
    fn waiters(&self, resource: &Self::R) -> usize;

    /// An empty, active resource with a fresh token and no observer.
    fn fresh(&self) -> Self::R {
        self.open(CancellationToken::new(), None)
    }
}

/// Runs `f` on its own thread and returns its result, failing the test if it
/// takes longer than [`LIMIT`] (a deadlock is a red test, not a hung run).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result within {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// A `wait_range` running on another thread.
pub struct PendingWait {
    rx: mpsc::Receiver<StorageResult<WaitOutcome>>,
}

impl PendingWait {
    /// Starts `resource.wait_range(range)` on a new thread.
    pub fn start<R: ResourceExt + Clone>(resource: &R, range: Range<u64>) -> Self {
        let resource = resource.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(resource.wait_range(range));
        });
        Self { rx }
    }

    /// The outcome, failing the test after [`LIMIT`].
    pub fn outcome(self) -> StorageResult<WaitOutcome> {
        self.rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("waiter did not return within {LIMIT:?}: {e}"))
    }

    /// Whether the waiter has returned yet (without waiting).
    pub fn has_returned(&self) -> bool {
        !matches!(self.rx.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

/// Blocks until `count()` reaches `expected`, failing after [`LIMIT`].
pub fn wait_for_count(what: &str, expected: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + LIMIT;
    while count() != expected {
        assert!(
            Instant::now() < deadline,
            "{what}: still {} after {LIMIT:?}, expected {expected}",
            count()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What an observer heard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    Write(Range<u64>),
    Commit(u64),
}

/// Records every call; optionally calls back into a resource from inside the
/// hook to prove no lock of the resource is held there.
#[derive(Default)]
pub struct RecordingObserver {
    pub heard: Mutex<Vec<Heard>>,
    pub call_back: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl RecordingObserver {
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().clone()
    }

    fn call_back(&self) {
        if let Some(call_back) = &*self.call_back.lock() {
            call_back();
        }
    }
}

impl AvailabilityObserver for RecordingObserver {
    fn on_commit(&self, final_len: u64) {
        self.call_back();
        self.heard.lock().push(Heard::Commit(final_len));
    }

    fn on_write(&self, range: Range<u64>) {
        self.call_back();
        self.heard.lock().push(Heard::Write(range));
    }
}

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

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A deterministic shuffle of `0..n` (Fisher–Yates on xorshift).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        order.swap(i, j);
    }
    order
}
