//! Checkpoints: syncing written data and journaling its ranges, in the
//! background, once [`CHECKPOINT_BYTES`] are pending and at most once per
//! [`CHECKPOINT_INTERVAL`].

use std::{
    fs::File,
    io, mem,
    ops::Range,
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use storage_core::RangeSet;

use crate::{journal::Journal, poison::Poison, sys};

/// Bytes that must be pending before a checkpoint (fdatasync + journal
/// record) is taken: a slow download syncs once per this many bytes, and
/// a crash refetches at most about this much past the last checkpoint.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// The shortest time between the starts of two checkpoints: a fast
/// download (hundreds of MB/s) syncs a few times a second, not once per
/// [`CHECKPOINT_BYTES`]; what it wrote in the last interval is what a
/// crash can make it fetch again.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Ranges written since the last checkpoint, in write order (merged only at
/// the checkpoint, off the writer's path).
#[derive(Debug, Default)]
struct Pending {
    ranges: Vec<Range<u64>>,
    bytes: u64,
    stop: bool,
}

/// Shared between the writer, the checkpoint thread and `sync`.
#[derive(Debug, Default)]
struct Shared {
    /// The journal. Whoever checkpoints (the thread, or `sync` through
    /// [`Flusher::flush`]) holds it from taking the pending ranges until
    /// they are journaled, so a checkpoint never returns while ranges taken
    /// before it are still on their way to the journal. Writers never take
    /// it: a checkpoint's `fdatasync` does not stop them. Locked before
    /// `pending`.
    journal: Mutex<Option<Journal>>,
    /// Guards the pending ranges and the stop flag.
    pending: Mutex<Pending>,
    due: Condvar,
    /// Checkpoints the thread has taken (diagnostics and tests).
    taken: std::sync::atomic::AtomicU64,
}

/// The journal of an active file and the thread that keeps it.
///
/// The writer calls [`record`](Self::record) after each write. Once
/// [`CHECKPOINT_BYTES`] are pending, a background thread (started then, so
/// small files never get one) takes them — no sooner than
/// [`CHECKPOINT_INTERVAL`] after its previous checkpoint began — syncs the
/// file's data (`fdatasync`), and only then appends their ranges to the
/// journal. The writer wakes the thread only when the pending bytes cross
/// the threshold, so a fast writer pays no wake-up per write.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    shared: Arc<Shared>,
    /// The data file (a second handle), to sync.
    data: Arc<File>,
    worker: Option<JoinHandle<()>>,
    /// The handle's failed data sync, if any: then nothing is journaled.
    poison: Poison,
}

/// A handle for checkpointing on the caller's thread (`sync`) without
/// holding the driver's lock of its checkpoints: writers go on recording
/// meanwhile.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    data: Arc<File>,
    poison: Poison,
}

/// Syncs `data`, then journals `ranges` (merged). On a sync error nothing
/// is journaled — not now, not later (`poison`): those ranges are fetched
/// again after a crash.
fn checkpoint(
    data: &File,
    journal: &mut Journal,
    ranges: Vec<Range<u64>>,
    poison: &Poison,
) -> io::Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    poison.sync(|| sys::sync_data(data))?;
    let merged: RangeSet<u64> = ranges.into_iter().collect();
    journal.append(merged.iter())
}

impl Shared {
    /// Everything pending, taken (the caller holds the journal).
    fn take_pending(&self) -> Vec<Range<u64>> {
        let mut pending = self.pending.lock();
        pending.bytes = 0;
        mem::take(&mut pending.ranges)
    }

    /// A checkpoint of what is pending now; says whether there was any.
    fn checkpoint_pending(&self, data: &File, poison: &Poison) -> io::Result<bool> {
        let mut journal = self.journal.lock();
        let Some(journal) = journal.as_mut() else {
            return Err(io::Error::other("the journal was taken"));
        };
        let ranges = self.take_pending();
        let any = !ranges.is_empty();
        checkpoint(data, journal, ranges, poison).map(|()| any)
    }
}

impl Checkpoints {
    pub(crate) fn new(data: File, journal: Journal, poison: Poison) -> Self {
        Self::resume(Arc::new(data), journal, Vec::new(), poison)
    }

    /// Checkpoints again after [`stop`](Self::stop), with `pending` (the
    /// ranges it returned) still to be journaled.
    pub(crate) fn resume(
        data: Arc<File>,
        journal: Journal,
        pending: Vec<Range<u64>>,
        poison: Poison,
    ) -> Self {
        let bytes = pending.iter().map(|range| range.end - range.start).sum();
        let shared = Shared {
            journal: Mutex::new(Some(journal)),
            pending: Mutex::new(Pending {
                ranges: pending,
                bytes,
                stop: false,
            }),
            due: Condvar::new(),
            taken: 0.into(),
        };
        Self {
            shared: Arc::new(shared),
            data,
            worker: None,
            poison,
        }
    }

    /// The identity of the journal.
    pub(crate) fn journal_id(&self) -> Option<(u64, u64)> {
        self.shared.journal.lock().as_ref().and_then(Journal::id)
    }

    /// Notes that `range` was written; wakes (or starts) the checkpoint
    /// thread when enough is pending.
    pub(crate) fn record(&mut self, range: Range<u64>) {
        let due = {
            let mut pending = self.shared.pending.lock();
            let before = pending.bytes;
            pending.bytes += range.end - range.start;
            pending.ranges.push(range);
            // Only the crossing wakes the thread (it then waits out the
            // interval by itself); past it, writes just add — unless there
            // is no thread yet (ranges left pending by a failed `sync`).
            pending.bytes >= CHECKPOINT_BYTES
                && (before < CHECKPOINT_BYTES || self.worker.is_none())
        };
        if !due {
            return;
        }
        if self.worker.is_none() {
            let Ok(worker) = self.spawn() else {
                // No thread to be had: checkpoint on the writer's thread.
                let _ = self.shared.checkpoint_pending(&self.data, &self.poison);
                return;
            };
            self.worker = Some(worker);
        }
        self.shared.due.notify_one();
    }

    /// Starts the checkpoint thread.
    fn spawn(&self) -> io::Result<JoinHandle<()>> {
        let (shared, data) = (Arc::clone(&self.shared), Arc::clone(&self.data));
        let poison = self.poison.clone();
        thread::Builder::new()
            .name("storage-checkpoint".into())
            .spawn(move || {
                // When the previous checkpoint began (none yet: the first
                // is due as soon as enough is pending).
                let mut previous: Option<Instant> = None;
                loop {
                    {
                        let mut pending = shared.pending.lock();
                        loop {
                            if pending.stop {
                                // The remainder is the finisher's.
                                return;
                            }
                            if pending.bytes < CHECKPOINT_BYTES {
                                shared.due.wait(&mut pending);
                                continue;
                            }
                            let due_at =
                                previous.and_then(|at| at.checked_add(CHECKPOINT_INTERVAL));
                            match due_at {
                                Some(at) if Instant::now() < at => {
                                    shared.due.wait_until(&mut pending, at);
                                }
                                _ => break,
                            }
                        }
                    }
                    previous = Some(Instant::now());
                    // A failure poisons the handle: `sync` and the commit
                    // report it; nothing is journaled any more. What a
                    // `sync` took meanwhile is its to journal.
                    if let Ok(true) | Err(_) = shared.checkpoint_pending(&data, &poison) {
                        shared
                            .taken
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
    }

    /// Stops the thread and returns the journal (`None` only if the thread
    /// died), whatever is still pending (not yet synced nor journaled), and
    /// the data file.
    pub(crate) fn stop(mut self) -> (Option<Journal>, Vec<Range<u64>>, Arc<File>) {
        self.shared.pending.lock().stop = true;
        self.shared.due.notify_one();
        let died = self
            .worker
            .take()
            .is_some_and(|worker| worker.join().is_err());
        // A thread that died may have left the journal half appended to.
        let journal = self.shared.journal.lock().take().filter(|_| !died);
        let pending = self.shared.take_pending();
        (journal, pending, self.data)
    }

    /// Final checkpoint (on drop): syncs, journals the rest, syncs the journal.
    pub(crate) fn finish(self) -> io::Result<()> {
        let poison = self.poison.clone();
        let (journal, pending, data) = self.stop();
        let mut journal = journal.ok_or_else(|| io::Error::other("the checkpoint thread died"))?;
        checkpoint(&data, &mut journal, pending, &poison)?;
        journal.sync()
    }

    /// A handle to checkpoint with from `sync`, on its own thread, while
    /// writers go on recording (see [`Flusher::flush`]).
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher {
            shared: Arc::clone(&self.shared),
            data: Arc::clone(&self.data),
            poison: self.poison.clone(),
        }
    }

    /// The handle's record of a failed data sync.
    pub(crate) fn poison(&self) -> Poison {
        self.poison.clone()
    }
}

impl Flusher {
    /// A checkpoint now, on the caller's thread (`sync`): everything
    /// recorded before the call becomes durable and journaled. It waits
    /// for a checkpoint of the thread that is under way (which journals
    /// what it took first), never for writers, and writers never wait for
    /// it. After a failed data sync (this one or an earlier one) nothing is
    /// journaled any more. The caller keeps the checkpoints from being
    /// stopped meanwhile (the driver's lifecycle lock).
    pub(crate) fn flush(&self) -> io::Result<()> {
        let mut journal = self.shared.journal.lock();
        let Some(journal) = journal.as_mut() else {
            return Err(io::Error::other("the checkpoint thread died"));
        };
        let ranges = self.shared.take_pending();
        let result = self
            .poison
            .sync(|| sys::sync_data(&self.data))
            .and_then(|()| {
                let merged: RangeSet<u64> = ranges.iter().cloned().collect();
                journal.append(merged.iter())?;
                journal.sync()
            });
        if result.is_err() {
            // Still pending, ahead of what was written since.
            let mut pending = self.shared.pending.lock();
            pending.bytes += ranges
                .iter()
                .map(|range| range.end - range.start)
                .sum::<u64>();
            pending.ranges.splice(0..0, ranges);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// Checkpoints of an empty data file, with their directory.
    fn fresh() -> (tempfile::TempDir, Checkpoints) {
        let dir = tempfile::tempdir().unwrap();
        let data = File::create(dir.path().join("data")).unwrap();
        let journal = Journal::create(
            &dir.path().join("journal"),
            std::iter::empty::<&Range<u64>>(),
        )
        .unwrap();
        (dir, Checkpoints::new(data, journal, Poison::default()))
    }

    #[test]
    fn a_fast_writer_gets_at_most_one_checkpoint_per_interval() {
        let (dir, mut checkpoints) = fresh();
        // 8 MiB "written" every millisecond: 8 GB/s, for three intervals.
        let started = Instant::now();
        let mut offset = 0;
        while started.elapsed() < CHECKPOINT_INTERVAL * 3 {
            checkpoints.record(offset..offset + CHECKPOINT_BYTES);
            offset += CHECKPOINT_BYTES;
            thread::sleep(Duration::from_millis(1));
        }
        let elapsed = started.elapsed();
        let taken = checkpoints.shared.taken.load(Ordering::Relaxed);
        let allowed = 1 + elapsed.as_millis() / CHECKPOINT_INTERVAL.as_millis();
        assert!(
            u128::from(taken) <= allowed,
            "{taken} checkpoints in {elapsed:?}: more than one per interval"
        );
        assert!(taken >= 1, "no checkpoint at all in {elapsed:?}");
        // Whatever the thread did not take is still there for the last one.
        checkpoints.finish().unwrap();
        let contents = crate::journal::read(&dir.path().join("journal"))
            .unwrap()
            .unwrap();
        let journaled: u64 = contents.ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(
            journaled, offset,
            "every recorded range is journaled in the end"
        );
    }

    #[test]
    fn a_slow_writer_is_checkpointed_once_enough_is_pending() {
        let (_dir, mut checkpoints) = fresh();
        let step = CHECKPOINT_BYTES / 4;
        for i in 0..3 {
            checkpoints.record(i * step..(i + 1) * step);
        }
        assert!(
            checkpoints.worker.is_none(),
            "no thread below the threshold"
        );
        checkpoints.record(3 * step..4 * step);
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoints.shared.taken.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the due checkpoint never ran");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
