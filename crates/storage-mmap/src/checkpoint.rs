//! Checkpoints: syncing written data and journaling its ranges, in the
//! background, on the process's shared workers (`pool`), when a
//! [`CheckpointPolicy`] says they are due: once enough bytes are pending,
//! or once the oldest pending write has waited long enough.

use std::{
    fs::File,
    io, mem,
    ops::Range,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use storage_core::RangeSet;

use crate::{journal::Journal, poison::Poison, pool, sys};

/// Bytes that must be pending before a checkpoint (fdatasync + journal
/// record) is taken at once (the default of [`CheckpointPolicy::bytes`]).
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// The shortest time between the starts of two checkpoints taken for the
/// bytes pending (the default of [`CheckpointPolicy::min_interval`]): a
/// fast download (hundreds of MB/s) syncs a few times a second, not once
/// per [`CHECKPOINT_BYTES`].
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// The longest a write waits for its checkpoint (the default of
/// [`CheckpointPolicy::max_delay`]).
pub const CHECKPOINT_MAX_DELAY: Duration = Duration::from_secs(1);

/// When an active file's written bytes are made durable and journaled (a
/// *checkpoint*: `fdatasync`, then a journal record), which bounds what a
/// kill or a power loss makes a resumed download fetch again.
///
/// A checkpoint falls due when either bound is reached:
///
/// - **bytes**: [`bytes`](Self::bytes) are pending — but no sooner than
///   [`min_interval`](Self::min_interval) after the previous checkpoint
///   began, so a fast download syncs a few times a second, not once per
///   `bytes`;
/// - **time**: the oldest pending write is [`max_delay`](Self::max_delay)
///   old, whatever the rate — so a slow download (a music track at
///   200 KB/s) loses at most about `max_delay` of writing to a kill, at
///   the cost of about one `fdatasync` per `max_delay`.
///
/// A file written and committed within `max_delay` (a small download)
/// takes no checkpoint at all: its commit makes it durable. Nothing is
/// waited for by writers: checkpoints run on the process's background
/// workers, at most four threads for all resources.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use storage_mmap::CheckpointPolicy;
///
/// // A download manager on a slow flash card: fewer syncs, more to refetch.
/// let relaxed = CheckpointPolicy { max_delay: Some(Duration::from_secs(5)), ..CheckpointPolicy::default() };
/// assert_eq!(relaxed.bytes, 8 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Pending bytes that make a checkpoint due. Default:
    /// [`CHECKPOINT_BYTES`] (8 MiB).
    pub bytes: u64,
    /// The shortest time between the starts of two checkpoints made due by
    /// [`bytes`](Self::bytes). Default: [`CHECKPOINT_INTERVAL`] (250 ms).
    pub min_interval: Duration,
    /// The longest a write waits for its checkpoint; `None`: checkpoints by
    /// bytes only (and on `sync` and drop). Default:
    /// `Some(`[`CHECKPOINT_MAX_DELAY`]`)` (1 s).
    pub max_delay: Option<Duration>,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            bytes: CHECKPOINT_BYTES,
            min_interval: CHECKPOINT_INTERVAL,
            max_delay: Some(CHECKPOINT_MAX_DELAY),
        }
    }
}

/// Ranges written since the last checkpoint, in write order (merged only at
/// the checkpoint, off the writer's path).
#[derive(Debug, Default)]
struct Pending {
    ranges: Vec<Range<u64>>,
    bytes: u64,
    /// Stopped: the remainder is the caller of `stop`'s.
    stop: bool,
    /// When this file's next checkpoint is scheduled, if it is.
    due: Option<Instant>,
    /// When the previous checkpoint began.
    previous: Option<Instant>,
}

/// Shared between the writer, the pool's workers and `sync`.
#[derive(Debug)]
struct Shared {
    /// Itself, to schedule a retry from a worker.
    me: Weak<Shared>,
    /// The journal. Whoever checkpoints (a worker, or `sync` through
    /// [`Flusher::flush`]) holds it from taking the pending ranges until
    /// they are journaled, so a checkpoint never returns while ranges taken
    /// before it are still on their way to the journal. Writers never take
    /// it: a checkpoint's `fdatasync` does not stop them. Locked before
    /// `pending`.
    journal: Mutex<Option<Journal>>,
    /// Guards the pending ranges, the schedule and the stop flag.
    pending: Mutex<Pending>,
    /// The data file (a second handle), to sync.
    data: Arc<File>,
    /// The handle's failed data sync, if any: then nothing is journaled.
    poison: Poison,
    policy: CheckpointPolicy,
    /// Checkpoints the workers have taken (diagnostics and tests).
    taken: std::sync::atomic::AtomicU64,
}

/// The journal of an active file and its checkpoints.
///
/// The writer calls [`record`](Self::record) after each write; when the
/// [`CheckpointPolicy`] makes a checkpoint due, it is scheduled on the
/// process's background workers (`pool`), which sync the file's data
/// (`fdatasync`) and only then append the ranges to the journal. The
/// writer looks at the clock only when its write makes the pending ranges
/// non-empty or crosses the byte bound: no wake-up, no clock per write.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    shared: Arc<Shared>,
}

/// A handle for checkpointing on the caller's thread (`sync`) without
/// holding the driver's lock of its checkpoints: writers go on recording
/// meanwhile.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
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
    // A new file's journal is provisional: its name is made durable before
    // the data it will name is synced.
    journal.make_name_durable()?;
    poison.sync(|| sys::sync_data(data))?;
    let merged: RangeSet<u64> = ranges.into_iter().collect();
    journal.append(merged.iter())
}

impl Shared {
    /// Everything pending, taken (the caller holds the journal); a
    /// checkpoint begins now.
    fn take_pending(&self) -> Vec<Range<u64>> {
        let mut pending = self.pending.lock();
        pending.bytes = 0;
        pending.due = None;
        pending.previous = Some(Instant::now());
        mem::take(&mut pending.ranges)
    }

    /// A checkpoint of what is pending now; says whether there was any
    /// (none once stopped: the journal is the stopper's). Ranges it could
    /// not journal are pending again, ahead of those written since: the
    /// next checkpoint, `sync` or the drop journals them or says why not.
    fn checkpoint_pending(&self) -> io::Result<bool> {
        let mut journal = self.journal.lock();
        let Some(journal) = journal.as_mut() else {
            return Ok(false);
        };
        let ranges = self.take_pending();
        let any = !ranges.is_empty();
        match checkpoint(&self.data, journal, ranges.clone(), &self.poison) {
            Ok(()) => Ok(any),
            Err(e) => {
                self.put_back(ranges);
                Err(e)
            }
        }
    }

    /// Ranges a checkpoint took but could not journal, pending again ahead
    /// of what was written since; says when to try again (within the
    /// policy's delay), if sooner than scheduled. The caller holds the
    /// journal.
    fn put_back(&self, ranges: Vec<Range<u64>>) -> Option<Instant> {
        if ranges.is_empty() {
            return None;
        }
        let mut pending = self.pending.lock();
        pending.bytes += ranges
            .iter()
            .map(|range| range.end - range.start)
            .sum::<u64>();
        pending.ranges.splice(0..0, ranges);
        let at = self
            .policy
            .max_delay
            .and_then(|delay| Instant::now().checked_add(delay))
            .filter(|&at| pending.due.is_none_or(|due| at < due));
        if at.is_some() {
            pending.due = at;
        }
        at
    }
}

impl Shared {
    /// Has the pool run this file's checkpoint at `at` (the caller set
    /// `due`). With no thread to be had (or 0 allowed), the checkpoint runs
    /// on the caller's thread if it is due now or `by_bytes` made it due
    /// (the byte bound is what keeps a fast download's loss small); a
    /// checkpoint due later by time only waits for the next write that
    /// crosses the byte bound, `sync` or the drop — a write never pays a
    /// sync for the time bound.
    fn schedule(self: &Arc<Self>, at: Instant, by_bytes: bool) {
        let task = Arc::downgrade(self) as Weak<dyn pool::Task>;
        if pool::schedule(task, at).is_err() && (by_bytes || at <= Instant::now()) {
            let _ = self.checkpoint_pending();
        }
    }
}

impl pool::Task for Shared {
    /// A scheduled checkpoint: taken if it is (still) due — a checkpoint
    /// that `sync` took meanwhile, or a schedule moved earlier, leaves a
    /// stale entry in the pool that finds nothing to do.
    fn run(&self) {
        {
            let pending = self.pending.lock();
            if pending.stop || pending.due.is_none_or(|at| at > Instant::now()) {
                return;
            }
        }
        // A failure poisons the handle: `sync` and the commit report it;
        // nothing is journaled any more.
        match self.checkpoint_pending() {
            Ok(true) => {
                self.taken
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                self.taken
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // The ranges are pending again (`checkpoint_pending`); tried
                // again within the policy's delay (not here and now: a
                // worker never spins on a failing disk).
                let due = self.pending.lock().due;
                if let Some(at) = due {
                    let task = Weak::clone(&self.me) as Weak<dyn pool::Task>;
                    let _ = pool::schedule(task, at);
                }
            }
        }
    }
}

impl Checkpoints {
    pub(crate) fn new(
        data: Arc<File>,
        journal: Journal,
        poison: Poison,
        policy: CheckpointPolicy,
    ) -> Self {
        Self::resume(data, journal, Vec::new(), poison, policy)
    }

    /// Checkpoints again after [`stop`](Self::stop), with `pending` (the
    /// ranges it returned) still to be journaled.
    pub(crate) fn resume(
        data: Arc<File>,
        mut journal: Journal,
        pending: Vec<Range<u64>>,
        poison: Poison,
        policy: CheckpointPolicy,
    ) -> Self {
        journal.set_owner(sys::file_id(&data));
        let checkpoints = Self {
            shared: Arc::new_cyclic(|me| Shared {
                me: Weak::clone(me),
                journal: Mutex::new(Some(journal)),
                pending: Mutex::new(Pending::default()),
                data,
                poison,
                policy,
                taken: 0.into(),
            }),
        };
        for range in pending {
            checkpoints.record(range);
        }
        checkpoints
    }

    /// Appends (and syncs) the download's identity to the journal, waiting
    /// for a checkpoint under way.
    pub(crate) fn record_identity(
        &self,
        expected_len: Option<u64>,
        validator: Option<&str>,
    ) -> io::Result<()> {
        match self.shared.journal.lock().as_mut() {
            Some(journal) => journal.record_identity(expected_len, validator),
            None => Err(io::Error::other("the journal was lost")),
        }
    }

    /// The identity of the journal.
    pub(crate) fn journal_id(&self) -> Option<(u64, u64)> {
        self.shared.journal.lock().as_ref().and_then(Journal::id)
    }

    /// Notes that `range` was written; schedules a checkpoint when this
    /// write makes one due sooner than scheduled (see [`CheckpointPolicy`]).
    pub(crate) fn record(&self, range: Range<u64>) {
        let policy = &self.shared.policy;
        let due = {
            let mut pending = self.shared.pending.lock();
            let before = pending.bytes;
            pending.bytes += range.end - range.start;
            pending.ranges.push(range);
            let first = pending.ranges.len() == 1;
            let crossed = pending.bytes >= policy.bytes && before < policy.bytes;
            if !first && !crossed {
                return;
            }
            let now = Instant::now();
            let by_time = policy
                .max_delay
                .filter(|_| first)
                .and_then(|delay| now.checked_add(delay));
            let by_bytes = crossed.then(|| {
                pending
                    .previous
                    .and_then(|at| at.checked_add(policy.min_interval))
                    .map_or(now, |at| at.max(now))
            });
            let Some(at) = by_time.into_iter().chain(by_bytes).min() else {
                return;
            };
            if pending.due.is_some_and(|due| due <= at) && !crossed {
                return;
            }
            pending.due = Some(pending.due.map_or(at, |due| due.min(at)));
            (at, crossed)
        };
        self.shared.schedule(due.0, due.1);
    }

    /// Stops the checkpoints (waiting for one under way) and returns the
    /// journal (`None` only if it was lost), whatever is still pending (not
    /// yet synced nor journaled), and the data file.
    pub(crate) fn stop(self) -> (Option<Journal>, Vec<Range<u64>>, Arc<File>) {
        self.shared.pending.lock().stop = true;
        let journal = self.shared.journal.lock().take();
        let pending = mem::take(&mut self.shared.pending.lock().ranges);
        (journal, pending, Arc::clone(&self.shared.data))
    }

    /// Stops the checkpoints if their journal was never made (a new file
    /// marked unfinished, not checkpointed yet: `mark.rs`), so that none is
    /// made now; says whether it did. Never waits for a checkpoint under
    /// way (its journal is being made, or is): then it does nothing.
    pub(crate) fn stop_if_unborn(&self) -> bool {
        let Some(mut journal) = self.shared.journal.try_lock() else {
            return false;
        };
        if journal.as_ref().is_none_or(Journal::is_born) {
            return false;
        }
        let mut pending = self.shared.pending.lock();
        pending.stop = true;
        pending.ranges.clear();
        *journal = None;
        true
    }

    /// Final checkpoint (on drop): syncs, journals the rest, syncs the journal.
    pub(crate) fn finish(self) -> io::Result<()> {
        let poison = self.shared.poison.clone();
        let (journal, pending, data) = self.stop();
        let mut journal = journal.ok_or_else(|| io::Error::other("the journal was lost"))?;
        checkpoint(&data, &mut journal, pending, &poison)?;
        journal.sync()
    }

    /// A handle to checkpoint with from `sync`, on its own thread, while
    /// writers go on recording (see [`Flusher::flush`]).
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The handle's record of a failed data sync.
    pub(crate) fn poison(&self) -> Poison {
        self.shared.poison.clone()
    }
}

impl Flusher {
    /// A checkpoint now, on the caller's thread (`sync`): everything
    /// recorded before the call becomes durable and journaled. It waits
    /// for a checkpoint of a worker that is under way (which journals
    /// what it took first), never for writers, and writers never wait for
    /// it. After a failed data sync (this one or an earlier one) nothing is
    /// journaled any more. The caller keeps the checkpoints from being
    /// stopped meanwhile (the driver's lifecycle lock).
    pub(crate) fn flush(&self) -> io::Result<()> {
        let shared = &self.shared;
        let mut guard = shared.journal.lock();
        let Some(journal) = guard.as_mut() else {
            return Err(io::Error::other("the journal was lost"));
        };
        let ranges = shared.take_pending();
        // `sync` asks for durability: a new file's provisional journal is
        // made durable first (before the data it names).
        let result = journal
            .make_name_durable()
            .and_then(|()| shared.poison.sync(|| sys::sync_data(&shared.data)))
            .and_then(|()| {
                let merged: RangeSet<u64> = ranges.iter().cloned().collect();
                journal.append(merged.iter())?;
                journal.sync()
            });
        if result.is_err() {
            // Still pending, ahead of what was written since, and due
            // again within the policy's delay.
            let due = shared.put_back(ranges);
            // Unlocked first: with no worker to be had, the checkpoint runs
            // here and takes the journal.
            drop(guard);
            if let Some(at) = due {
                shared.schedule(at, false);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::Ordering, thread};

    use super::*;

    /// Checkpoints of an empty data file, with their directory.
    fn fresh(policy: CheckpointPolicy) -> (tempfile::TempDir, Checkpoints) {
        let dir = tempfile::tempdir().unwrap();
        let data = File::create(dir.path().join("data")).unwrap();
        let journal = Journal::create(
            &dir.path().join("journal"),
            std::iter::empty::<&Range<u64>>(),
        )
        .unwrap();
        let checkpoints = Checkpoints::new(Arc::new(data), journal, Poison::default(), policy);
        (dir, checkpoints)
    }

    /// With no background thread, a write never pays a sync for the time
    /// bound: only crossing the byte bound checkpoints on its thread.
    #[test]
    fn without_a_worker_only_the_byte_bound_checkpoints_on_the_writer_s_thread() {
        use std::sync::atomic::AtomicUsize;

        use crate::sys::{self, Synced};

        let _exclusive = crate::sys::probe::EXCLUSIVE.lock();
        let (dir, checkpoints) = fresh(CheckpointPolicy {
            bytes: 64 * 1024,
            min_interval: Duration::ZERO,
            max_delay: Some(Duration::from_secs(1)),
        });
        let data_id = sys::entry_id(&dir.path().join("data"));
        let syncs = Arc::new(AtomicUsize::new(0));
        {
            let syncs = Arc::clone(&syncs);
            crate::sys::probe::set(Some(Arc::new(move |event: &Synced<'_>| {
                if let Synced::File(file) = event
                    && sys::file_id(file) == data_id
                {
                    syncs.fetch_add(1, Ordering::SeqCst);
                }
            })));
        }
        crate::pool::testing::NO_WORKER.set(true);
        // 60 writes of 1 KiB: due by time (in a second), not by bytes.
        for i in 0..60u64 {
            checkpoints.record(i * 1024..(i + 1) * 1024);
        }
        let by_time = syncs.load(Ordering::SeqCst);
        // Crossing the byte bound: one checkpoint, here.
        checkpoints.record(60 * 1024..70 * 1024);
        let by_bytes = syncs.load(Ordering::SeqCst);
        crate::pool::testing::NO_WORKER.set(false);
        crate::sys::probe::set(None);
        assert!(
            by_time <= 1,
            "{by_time} syncs for 60 small writes without a worker"
        );
        assert_eq!(by_bytes, by_time + 1, "the byte bound made no checkpoint");
        assert_eq!(journaled(&dir), 70 * 1024);
    }

    fn journaled(dir: &tempfile::TempDir) -> u64 {
        let contents = crate::journal::read(&dir.path().join("journal"))
            .unwrap()
            .unwrap();
        contents.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Waits (at most 10 s) until `checkpoints` took `n` checkpoints.
    fn wait_for(checkpoints: &Checkpoints, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoints.shared.taken.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the due checkpoint never ran");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_fast_writer_gets_at_most_one_checkpoint_per_interval() {
        let (dir, checkpoints) = fresh(CheckpointPolicy::default());
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
        // Whatever no worker took is still there for the last one.
        checkpoints.finish().unwrap();
        assert_eq!(
            journaled(&dir),
            offset,
            "every recorded range is journaled in the end"
        );
    }

    #[test]
    fn with_bytes_only_a_slow_writer_is_checkpointed_once_enough_is_pending() {
        let policy = CheckpointPolicy {
            max_delay: None,
            ..CheckpointPolicy::default()
        };
        let (_dir, checkpoints) = fresh(policy);
        let step = CHECKPOINT_BYTES / 4;
        for i in 0..3 {
            checkpoints.record(i * step..(i + 1) * step);
        }
        assert_eq!(
            checkpoints.shared.pending.lock().due,
            None,
            "nothing due below the bytes"
        );
        checkpoints.record(3 * step..4 * step);
        wait_for(&checkpoints, 1);
    }

    #[test]
    fn a_trickle_is_checkpointed_within_the_delay() {
        let delay = Duration::from_millis(300);
        let policy = CheckpointPolicy {
            max_delay: Some(delay),
            ..CheckpointPolicy::default()
        };
        let (dir, checkpoints) = fresh(policy);
        let started = Instant::now();
        checkpoints.record(0..1000);
        checkpoints.record(5000..6000);
        wait_for(&checkpoints, 1);
        assert!(
            started.elapsed() >= delay,
            "taken before its delay: {:?}",
            started.elapsed()
        );
        assert_eq!(journaled(&dir), 2000);
        // The next write is due a delay after it, not at once.
        let again = Instant::now();
        checkpoints.record(9000..9100);
        wait_for(&checkpoints, 2);
        assert!(again.elapsed() >= delay);
        assert_eq!(journaled(&dir), 2100);
    }
}
