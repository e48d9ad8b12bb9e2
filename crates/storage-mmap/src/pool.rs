//! The process's background workers: the checkpoints of every active file
//! and the durability work of every commit run here, on a few threads
//! shared by all resources, in the order they fall due.
//!
//! A task is scheduled for an instant; the earliest due runs first (a slow
//! disk under one resource delays the others by at most the time its
//! workers are busy, never by its whole queue). Threads start when work is
//! due and no worker is free, up to [`background_threads`] (4 unless the
//! application chose otherwise with [`set_background_threads`]), and end
//! after [`IDLE_EXIT`] without work: a process that stops downloading keeps
//! no thread of this crate. With 0 threads (or none to be had), the work is
//! done on the caller's thread.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

/// The most threads the pool runs at once unless the application chooses.
pub const DEFAULT_BACKGROUND_THREADS: usize = 4;

/// The most threads [`set_background_threads`] accepts.
pub const MAX_BACKGROUND_THREADS: usize = 64;

/// The most threads the pool runs at once (see [`set_background_threads`]).
static MAX_WORKERS: AtomicUsize = AtomicUsize::new(DEFAULT_BACKGROUND_THREADS);

/// Sets the most threads this process's background work (every mmap
/// resource's checkpoints and the durability work of its commits) runs on
/// at once, for the whole process; `0` runs that work on the caller's
/// thread (a checkpoint on the writer's, a commit's syncs in `commit`
/// itself). Values above [`MAX_BACKGROUND_THREADS`] are taken as it.
///
/// Lowering it takes effect as the threads in excess finish their task:
/// none is interrupted, and the queue is drained before the last one ends.
/// Every promise of `sync()`, the drop and a crash holds for any value.
///
/// # Examples
///
/// ```
/// storage_mmap::set_background_threads(2);
/// assert_eq!(storage_mmap::background_threads(), 2);
/// # storage_mmap::set_background_threads(storage_mmap::DEFAULT_BACKGROUND_THREADS);
/// ```
pub fn set_background_threads(threads: usize) {
    MAX_WORKERS.store(threads.min(MAX_BACKGROUND_THREADS), Ordering::Relaxed);
    // Idle workers above the new bound end now.
    POOL.changed.notify_all();
}

/// The most threads the background pool runs at once (see
/// [`set_background_threads`]).
#[must_use]
pub fn background_threads() -> usize {
    MAX_WORKERS.load(Ordering::Relaxed)
}

/// How long a worker waits without work before its thread ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// Work the pool runs when it falls due. It is held weakly: a task whose
/// owner is gone is skipped.
pub(crate) trait Task: Send + Sync {
    /// Runs the task on a worker thread.
    fn run(&self);
}

/// The schedule, under [`Pool::queue`].
struct Queue {
    /// Tasks by due instant (and a sequence number, for ties).
    due: BTreeMap<(Instant, u64), Weak<dyn Task>>,
    sequence: u64,
    /// Worker threads alive.
    workers: usize,
    /// Workers waiting for work.
    idle: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    /// Signalled when a task is scheduled earlier than every other one.
    changed: Condvar,
}

static POOL: Pool = Pool {
    queue: Mutex::new(Queue {
        due: BTreeMap::new(),
        sequence: 0,
        workers: 0,
        idle: 0,
    }),
    changed: Condvar::new(),
};

/// The pool could start no thread and has none: the caller does the work
/// itself.
#[derive(Debug)]
pub(crate) struct NoWorker;

/// Schedules `task` to run at `at` (or as soon as a worker is free, if that
/// has passed).
///
/// # Errors
///
/// [`NoWorker`] when the pool has no thread and cannot start one (the
/// process is out of threads or memory): nothing was scheduled.
pub(crate) fn schedule(task: Weak<dyn Task>, at: Instant) -> Result<(), NoWorker> {
    #[cfg(test)]
    if testing::NO_WORKER.get() {
        return Err(NoWorker);
    }
    let mut queue = POOL.queue.lock();
    let first = queue
        .due
        .first_key_value()
        .is_none_or(|(key, _)| at < key.0);
    let sequence = queue.sequence;
    queue.sequence += 1;
    queue.due.insert((at, sequence), task);
    if queue.idle == 0 && queue.workers < background_threads() && spawn_worker().is_ok() {
        queue.workers += 1;
    }
    if queue.workers == 0 {
        // None allowed (0 threads), or none to be had.
        queue.due.remove(&(at, sequence));
        return Err(NoWorker);
    }
    if first {
        // An idle worker may be waiting for a later instant.
        POOL.changed.notify_all();
    }
    Ok(())
}

/// Starts a worker thread (in the test build, fails while a test says the
/// process is out of threads).
fn spawn_worker() -> std::io::Result<()> {
    #[cfg(test)]
    if testing::REFUSE_THREADS.load(Ordering::SeqCst) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "no thread (a test's fault)",
        ));
    }
    thread::Builder::new()
        .name("storage-background".into())
        .spawn(work)
        .map(drop)
}

/// A worker: runs due tasks until it has waited [`IDLE_EXIT`] for one, or
/// until the pool has more threads than it may (then with the queue empty
/// if it is the last one).
fn work() {
    loop {
        let task = {
            let mut queue = POOL.queue.lock();
            loop {
                let limit = background_threads();
                let now = Instant::now();
                let next = queue.due.first_key_value().map(|(key, _)| key.0);
                // Above the bound: a worker ends, the last one (with 0
                // allowed) once nothing is due now — a task due later is
                // its owner's to run (at its next write, `sync` or drop).
                if queue.workers > limit && (limit > 0 || next.is_none_or(|at| at > now)) {
                    queue.workers -= 1;
                    return;
                }
                match next {
                    Some(at) if at <= now => {
                        break queue.due.pop_first().map(|(_, task)| task);
                    }
                    next => {
                        queue.idle += 1;
                        let until = next.map_or(now + IDLE_EXIT, |at| at.min(now + IDLE_EXIT));
                        let timed_out = POOL.changed.wait_until(&mut queue, until).timed_out();
                        queue.idle -= 1;
                        if timed_out && next.is_none_or(|at| at > until) {
                            // Idle for a while: tasks whose owner is gone
                            // keep no thread waiting for their instant.
                            queue.due.retain(|_, task| task.strong_count() > 0);
                            if queue.due.is_empty() {
                                queue.workers -= 1;
                                return;
                            }
                        }
                    }
                }
            }
        };
        if let Some(task) = task.and_then(|task| task.upgrade()) {
            run(&task);
        }
    }
}

/// Runs `task`; a panic in it ends neither the worker nor the pool.
fn run(task: &Arc<dyn Task>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run()));
}

/// Worker threads alive now (tests and diagnostics).
#[cfg(test)]
pub(crate) fn workers() -> usize {
    POOL.queue.lock().workers
}

/// The unit tests' fault: a process out of threads.
#[cfg(test)]
pub(crate) mod testing {
    use std::{cell::Cell, sync::atomic::AtomicBool};

    /// While set, no worker thread can be started.
    pub(crate) static REFUSE_THREADS: AtomicBool = AtomicBool::new(false);

    thread_local! {
        /// While set, this thread's scheduling finds no worker (as with 0
        /// threads), without changing the pool for other tests.
        pub(crate) static NO_WORKER: Cell<bool> = const { Cell::new(false) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Count(Arc<AtomicUsize>);

    impl Task for Count {
        fn run(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        (Arc::new(Count(Arc::clone(&count))), count)
    }

    #[test]
    fn tasks_run_when_due_in_order_and_dropped_ones_are_skipped() {
        let ((early, early_runs), (late, late_runs)) = (task(), task());
        let (dropped, dropped_runs) = task();
        let now = Instant::now();
        let weak = |task: &Arc<Count>| Arc::downgrade(task) as Weak<dyn Task>;
        schedule(weak(&late), now + Duration::from_millis(300)).unwrap();
        schedule(weak(&dropped), now + Duration::from_millis(100)).unwrap();
        schedule(weak(&early), now + Duration::from_millis(20)).unwrap();
        drop(dropped);
        let deadline = now + Duration::from_secs(30);
        while early_runs.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the early task never ran");
            thread::sleep(Duration::from_millis(1));
        }
        // The late task waits for its instant, even with the early one done.
        if now.elapsed() < Duration::from_millis(250) {
            assert_eq!(late_runs.load(Ordering::SeqCst), 0);
        }
        while late_runs.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the late task never ran");
            thread::sleep(Duration::from_millis(1));
        }
        assert!(now.elapsed() >= Duration::from_millis(300));
        assert_eq!(dropped_runs.load(Ordering::SeqCst), 0, "its owner was gone");
        assert_eq!(
            (
                early_runs.load(Ordering::SeqCst),
                late_runs.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        assert!(workers() <= DEFAULT_BACKGROUND_THREADS);
        drop((early, late));
    }
}
