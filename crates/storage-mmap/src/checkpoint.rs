//! Checkpoints: syncing written data and journaling its ranges, in the
//! background, every [`CHECKPOINT_BYTES`] written.

use std::{
    fs::File,
    io, mem,
    ops::Range,
    sync::Arc,
    thread::{self, JoinHandle},
};

use parking_lot::{Condvar, Mutex};
use storage_core::RangeSet;

use crate::{journal::Journal, sys};

/// Bytes written between two checkpoints (fdatasync + journal record).
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// Ranges written since the last checkpoint, in write order (merged only at
/// the checkpoint, off the writer's path).
#[derive(Debug, Default)]
struct Pending {
    ranges: Vec<Range<u64>>,
    bytes: u64,
    stop: bool,
}

/// Shared between the writer and the checkpoint thread.
#[derive(Debug, Default)]
struct Shared {
    /// Guards the pending ranges and the stop flag.
    pending: Mutex<Pending>,
    due: Condvar,
}

/// The journal of an active file and the thread that keeps it.
///
/// The writer calls [`record`](Self::record) after each write. Once
/// [`CHECKPOINT_BYTES`] are pending, a background thread (started then, so
/// small files never get one) takes them, syncs the file's data
/// (`fdatasync`), and only then appends their ranges to the journal.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    shared: Arc<Shared>,
    /// The data file (a second handle), to sync.
    data: Arc<File>,
    /// The journal, here until the thread takes it.
    journal: Option<Journal>,
    worker: Option<JoinHandle<Journal>>,
}

/// Syncs `data`, then journals `ranges` (merged). On a sync error nothing
/// is journaled: those ranges are fetched again after a crash.
fn checkpoint(data: &File, journal: &mut Journal, ranges: Vec<Range<u64>>) -> io::Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    sys::sync_data(data)?;
    let merged: RangeSet<u64> = ranges.into_iter().collect();
    journal.append(merged.iter())
}

impl Checkpoints {
    pub(crate) fn new(data: File, journal: Journal) -> Self {
        Self::resume(Arc::new(data), journal, Vec::new())
    }

    /// Checkpoints again after [`stop`](Self::stop), with `pending` (the
    /// ranges it returned) still to be journaled.
    pub(crate) fn resume(data: Arc<File>, journal: Journal, pending: Vec<Range<u64>>) -> Self {
        let bytes = pending.iter().map(|range| range.end - range.start).sum();
        let shared = Shared {
            pending: Mutex::new(Pending {
                ranges: pending,
                bytes,
                stop: false,
            }),
            due: Condvar::new(),
        };
        Self {
            shared: Arc::new(shared),
            data,
            journal: Some(journal),
            worker: None,
        }
    }

    /// The identity of the journal, while no thread has taken it (right
    /// after it was made).
    pub(crate) fn journal_id(&self) -> Option<(u64, u64)> {
        self.journal.as_ref().and_then(Journal::id)
    }

    /// Notes that `range` was written; wakes (or starts) the checkpoint
    /// thread when enough is pending.
    pub(crate) fn record(&mut self, range: Range<u64>) {
        let due = {
            let mut pending = self.shared.pending.lock();
            pending.bytes += range.end - range.start;
            pending.ranges.push(range);
            pending.bytes >= CHECKPOINT_BYTES
        };
        if !due {
            return;
        }
        if self.worker.is_none()
            && let Some(journal) = self.journal.take()
        {
            match self.spawn(journal) {
                Ok(worker) => self.worker = Some(worker),
                // No thread to be had: checkpoint on the writer's thread.
                Err(mut journal) => {
                    let ranges = {
                        let mut pending = self.shared.pending.lock();
                        pending.bytes = 0;
                        mem::take(&mut pending.ranges)
                    };
                    let _ = checkpoint(&self.data, &mut journal, ranges);
                    self.journal = Some(journal);
                    return;
                }
            }
        }
        self.shared.due.notify_one();
    }

    /// Starts the checkpoint thread, or gives the journal back if no thread
    /// can be started.
    fn spawn(&self, journal: Journal) -> Result<JoinHandle<Journal>, Journal> {
        let (shared, data) = (Arc::clone(&self.shared), Arc::clone(&self.data));
        // The journal travels to the thread through this slot, so it can be
        // taken back when the thread does not start.
        let slot = Arc::new(Mutex::new(Some(journal)));
        let thread_slot = Arc::clone(&slot);
        let spawned = thread::Builder::new()
            .name("storage-checkpoint".into())
            .spawn(move || {
                let Some(mut journal) = thread_slot.lock().take() else {
                    unreachable!("the journal is put in the slot before the thread starts")
                };
                loop {
                    let (ranges, stop) = {
                        let mut pending = shared.pending.lock();
                        while pending.bytes < CHECKPOINT_BYTES && !pending.stop {
                            shared.due.wait(&mut pending);
                        }
                        pending.bytes = 0;
                        (mem::take(&mut pending.ranges), pending.stop)
                    };
                    if stop {
                        // The remainder is the finisher's: hand it back.
                        shared.pending.lock().ranges.extend(ranges);
                        return journal;
                    }
                    let _ = checkpoint(&data, &mut journal, ranges);
                }
            });
        spawned.map_err(|_| {
            slot.lock()
                .take()
                .unwrap_or_else(|| unreachable!("the slot is full until the thread runs"))
        })
    }

    /// Stops the thread and returns the journal (`None` only if the thread
    /// died), whatever is still pending (not yet synced nor journaled), and
    /// the data file.
    pub(crate) fn stop(mut self) -> (Option<Journal>, Vec<Range<u64>>, Arc<File>) {
        self.shared.pending.lock().stop = true;
        self.shared.due.notify_one();
        let journal = match self.worker.take() {
            Some(worker) => worker.join().ok(),
            None => self.journal.take(),
        };
        let pending = mem::take(&mut self.shared.pending.lock().ranges);
        (journal, pending, self.data)
    }

    /// Final checkpoint (on drop): syncs, journals the rest, syncs the journal.
    pub(crate) fn finish(self) -> io::Result<()> {
        let (journal, pending, data) = self.stop();
        let mut journal = journal.ok_or_else(|| io::Error::other("the checkpoint thread died"))?;
        checkpoint(&data, &mut journal, pending)?;
        journal.sync()
    }

    /// A checkpoint now, on the caller's thread (`sync`): everything
    /// written so far becomes durable and journaled. On an error the
    /// unjournaled ranges stay pending for the next checkpoint.
    pub(crate) fn flush(self) -> (Self, io::Result<()>) {
        let (journal, pending, data) = self.stop();
        let Some(mut journal) = journal else {
            let error = io::Error::other("the checkpoint thread died");
            // Nothing to journal with: the ranges are fetched again after a crash.
            return (Self::dead(data), Err(error));
        };
        let result = sys::sync_data(&data).and_then(|()| {
            let merged: RangeSet<u64> = pending.iter().cloned().collect();
            journal.append(merged.iter())?;
            journal.sync()
        });
        let pending = if result.is_ok() { Vec::new() } else { pending };
        (Self::resume(data, journal, pending), result)
    }

    /// Checkpoints that have lost their journal: records are dropped.
    fn dead(data: Arc<File>) -> Self {
        Self {
            shared: Arc::default(),
            data,
            journal: None,
            worker: None,
        }
    }
}
