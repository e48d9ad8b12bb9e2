//! Durability after a commit, off the writer's path: `commit` publishes at
//! once; the final sync of the file, the journal's removal and the
//! directory sync run on the process's background pool (`pool`), in that
//! order, and `sync()` and the drop wait for them — or do them on their own
//! thread when the pool has not started them yet, so a busy pool never
//! makes a caller wait for other resources' work.
//!
//! Until they finish, the journal is on disk: a crash reopens the file as
//! a resumable download with its journaled (durable) ranges, never as a
//! committed file with bytes that were not on disk. The writer's exclusive
//! lock is released (to a reader's shared lock) only after the journal is
//! gone, so no other writer takes the path before the commit is durable.

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use crossbeam_utils::sync::ShardedLock;
use parking_lot::{Condvar, Mutex};
use storage_core::{StorageError, StorageResult};

use super::{journaling::Journaling, mapped::MappedStore};
use crate::{
    checkpoint::Checkpoints,
    journal, mark,
    poison::Poison,
    pool,
    store::{Store, io_error, is_at_path},
    sys,
};

/// What a commit's durability work needs, detached from the driver so a
/// pool worker can own it.
#[derive(Clone, Debug)]
pub(super) struct Finisher {
    /// The driver's store: its file to sync, its lock to release.
    store: Arc<ShardedLock<Store>>,
    path: PathBuf,
    journal_path: PathBuf,
    /// The identity of this handle's journal: only that one is removed.
    journal_id: Option<(u64, u64)>,
    /// Whether this handle made or kept a journal at all: a committed
    /// mark's settling (`mark.rs`) removes none.
    journal: bool,
    /// A failed data sync of the file: then it is never called durable.
    poison: Poison,
}

/// Why the durability work stopped short.
#[derive(Debug)]
struct Unfinished {
    error: StorageError,
    /// The file's data could not be synced. After a failed `fsync` the
    /// kernel may have dropped the dirty pages and a retry can succeed
    /// without writing them, so this handle never calls the file durable
    /// again: the journal stays, and reopening resumes from it.
    data_lost: bool,
}

impl Finisher {
    /// What the durability work of a commit needs, for `store` and
    /// `journal` as they are now.
    pub(super) fn new(store: &MappedStore, journal: &Journaling) -> Self {
        Self {
            store: store.shared(),
            path: store.path().to_path_buf(),
            journal_path: journal.path().to_path_buf(),
            journal_id: journal.id(),
            journal: true,
            poison: journal.poison().clone(),
        }
    }

    /// The same work for a file with no journal of this handle's (a new
    /// file never checkpointed, a marked file found committed): its data
    /// synced, its mark removed, its directory synced.
    pub(super) fn without_journal(self) -> Self {
        Self {
            journal: false,
            ..self
        }
    }

    /// The file synced (`fdatasync`: its data and the length needed to
    /// read it, as a commit changed it), the journal removed (if it is
    /// this handle's), the directory synced, the lock released to a
    /// reader's. Stops at the first failure, leaving the journal.
    fn finish(&self) -> Result<(), Unfinished> {
        let store = || self.store.read().unwrap_or_else(PoisonError::into_inner);
        let synced = store()
            .file(&self.path)
            .and_then(|file| {
                self.poison
                    .sync(|| sys::sync_data(file))
                    .map_err(|e| io_error(&self.path, "cannot sync", e))
            })
            .map_err(|error| Unfinished {
                error,
                data_lost: true,
            });
        synced?;
        let retryable = |error| Unfinished {
            error,
            data_lost: false,
        };
        let unmark = || {
            store().file(&self.path).and_then(|file| {
                mark::clear(file).map_err(|e| io_error(&self.path, "cannot unmark", e))
            })
        };
        if !self.journal {
            // A marked commit: a journal beside it is an earlier file's,
            // ignored only while the mark stays (`mark.rs`); it goes first,
            // while this file is the one at the path.
            let at_path = store()
                .file(&self.path)
                .and_then(|file| is_at_path(file, &self.path))
                .map_err(retryable)?;
            if at_path {
                journal::remove_if_present(&self.journal_path)
                    .map_err(|e| retryable(io_error(&self.journal_path, "cannot remove", e)))?;
            }
            // A committed mark that cannot go (a reader's handle of a file
            // it does not own, an immutable file) still matches the bytes,
            // durable now: only the next opens' check of it is left.
            if at_path {
                drop(unmark());
            }
            return self.sync_dir_and_release().map_err(retryable);
        }
        // Durable now: the file's mark (`mark.rs`) is not needed any more,
        // and must go before the journal does (a mark left alone would
        // outlive a rewrite's bytes it does not vouch for).
        unmark().map_err(retryable)?;
        let own = self.journal_id;
        let ours = if own.is_some() {
            true
        } else {
            // No identity to go by (a platform without one): the journal
            // is this file's while this file is the one at the path.
            store()
                .file(&self.path)
                .and_then(|file| is_at_path(file, &self.path))
                .map_err(retryable)?
        };
        let is_ours = |id: Option<(u64, u64)>| ours && (own.is_none() || id == own);
        let unlinked = journal::unlink_if_ours(&self.journal_path, is_ours)
            .map_err(|e| io_error(&self.journal_path, "cannot remove", e));
        if let Err(error) = unlinked {
            // The file is whole and durable, but its journal stays (an
            // immutable directory, an append-only journal): it gets the
            // whole file's mark, so a reopen takes the file for the
            // committed one it is instead of a download to fetch again.
            let _ = journal::mark_whole_if_ours(&self.journal_path, is_ours, store().bytes());
            return Err(retryable(error));
        }
        self.sync_dir_and_release().map_err(retryable)
    }

    /// The journal's removal, and the file's own name (a new download's,
    /// or a replacement's rename), in one directory sync; then a reader's
    /// lock.
    fn sync_dir_and_release(&self) -> StorageResult<()> {
        sys::sync_dir(&self.path)
            .map_err(|e| io_error(&self.path, "cannot sync the directory of", e))?;
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .release_to_shared(&self.path);
        Ok(())
    }
}

/// Where the last commit's durability stands.
#[derive(Debug, Default)]
enum Phase {
    /// Nothing is owed (no commit, or a durable one).
    #[default]
    Settled,
    /// A commit vouched for by the file's mark (`mark.rs`), not synced:
    /// nothing runs until someone asks for durability (`sync`, a rewrite
    /// in place); the drop leaves it so.
    Deferred,
    /// The pool is finishing a commit (or has it queued).
    Running(Arc<Job>),
    /// A commit's last steps failed where a retry is sound (the journal's
    /// removal, the directory sync): `report` is the error still to be
    /// returned by `sync`; later calls try again.
    Retry { report: Option<StorageError> },
    /// The file's data could not be synced (see [`Unfinished::data_lost`]):
    /// every `sync` says so; the journal stays.
    Lost {
        path: Option<PathBuf>,
        kind: io::ErrorKind,
        message: String,
    },
}

/// A commit's durability work, handed to the pool.
struct Work {
    checkpoints: Option<Checkpoints>,
    finisher: Finisher,
}

impl Work {
    fn run(self) -> Result<(), Unfinished> {
        if let Some(checkpoints) = self.checkpoints {
            drop(checkpoints.stop());
        }
        self.finisher.finish()
    }
}

/// One commit's work on the pool, and how it ended. Whoever comes first
/// runs it: a pool worker, or a thread that must wait for it (`join`).
pub(super) struct Job {
    /// The work, until someone takes it to run.
    work: Mutex<Option<Work>>,
    /// How it ended, once it has; signalled by `done`.
    result: Mutex<Option<Result<(), Unfinished>>>,
    done: Condvar,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Job {
    /// Runs the work if nobody has taken it, and keeps its result.
    fn run_here(&self) -> bool {
        let Some(work) = self.work.lock().take() else {
            return false;
        };
        // Caught: a panic must not leave `join` waiting for ever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run()))
            .unwrap_or_else(|_| {
                Err(Unfinished {
                    error: StorageError::Failed("the commit's sync panicked".into()),
                    data_lost: false,
                })
            });
        *self.result.lock() = Some(result);
        self.done.notify_all();
        true
    }

    /// The work's result: run here if the pool has not started it, else
    /// waited for.
    fn join(&self) -> Result<(), Unfinished> {
        self.run_here();
        let mut result = self.result.lock();
        loop {
            if let Some(result) = result.take() {
                return result;
            }
            self.done.wait(&mut result);
        }
    }
}

impl pool::Task for Job {
    fn run(&self) {
        self.run_here();
    }
}

/// The durability owed by the last commit, and by a replacement's rename;
/// locked after the driver's writer-side calls (which `Resource`
/// serialises), never while waiting for the store.
#[derive(Debug, Default)]
pub(super) struct Durability {
    /// Guards the phase. Held across a retry's I/O in `settle` and
    /// `finish_on_drop`: only `sync`, the drop and the driver's
    /// writer-side calls take it, and all of them wait for that work anyway.
    phase: Mutex<Phase>,
    /// A replacement that was not made durable renamed a file over the
    /// path: the next `sync` syncs the directory too (after the file), so
    /// that the rename survives a power loss as `sync` promises. Not the
    /// phase: that work is also finished by the drop, which would make
    /// every non-durable replacement durable (and slow) at the last
    /// handle's drop.
    rename_owed: AtomicBool,
}

impl Durability {
    /// Runs `finisher` in the background, after stopping `checkpoints` (their
    /// pending ranges are covered by the final sync). Without a thread to be
    /// had, it runs here.
    pub(super) fn start(&self, checkpoints: Option<Checkpoints>, finisher: Finisher) {
        let job = Arc::new(Job {
            work: Mutex::new(Some(Work {
                checkpoints,
                finisher,
            })),
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        let task = Arc::downgrade(&job) as std::sync::Weak<dyn pool::Task>;
        let phase = match pool::schedule(task, Instant::now()) {
            Ok(()) => Phase::Running(job),
            Err(pool::NoWorker) => Self::phase_of(job.join()),
        };
        *self.phase.lock() = phase;
    }

    fn phase_of(result: Result<(), Unfinished>) -> Phase {
        match result {
            Ok(()) => Phase::Settled,
            Err(Unfinished {
                error,
                data_lost: false,
            }) => Phase::Retry {
                report: Some(error),
            },
            Err(Unfinished {
                error,
                data_lost: true,
            }) => Phase::Lost {
                path: error.io_failure().map(|f| f.path().to_path_buf()),
                kind: error.io_kind().unwrap_or(io::ErrorKind::Other),
                message: error
                    .io_failure()
                    .map_or_else(|| error.to_string(), |f| f.os_error().to_string()),
            },
        }
    }

    /// Waits for the background work, if any, and records how it ended.
    pub(super) fn wait(&self) {
        let mut phase = self.phase.lock();
        if !matches!(*phase, Phase::Running(_)) {
            return;
        }
        if let Phase::Running(job) = std::mem::take(&mut *phase) {
            *phase = Self::phase_of(job.join());
        }
    }

    /// Whether a commit is still owed durability (running, or failed): the
    /// writer's lock and the journal must stay. Never waits. A deferred
    /// commit keeps neither (its mark vouches for it).
    pub(super) fn owed(&self) -> bool {
        !matches!(*self.phase.lock(), Phase::Settled | Phase::Deferred)
    }

    /// A commit whose durability waits until asked for (see
    /// [`Phase::Deferred`]).
    pub(super) fn defer(&self) {
        *self.phase.lock() = Phase::Deferred;
    }

    /// Whether a commit's durability waits until asked for.
    pub(super) fn is_deferred(&self) -> bool {
        matches!(*self.phase.lock(), Phase::Deferred)
    }

    /// Waits, then: `Ok` when nothing is owed; the background error, once;
    /// else one more try of `finisher` (never after a failed data sync).
    pub(super) fn settle(&self, finisher: impl FnOnce() -> Finisher) -> StorageResult<()> {
        self.wait();
        let mut phase = self.phase.lock();
        if matches!(*phase, Phase::Deferred) {
            *phase = match finisher().without_journal().finish() {
                Ok(()) => Phase::Settled,
                // Reported now; the next call tries again.
                Err(Unfinished {
                    error,
                    data_lost: false,
                }) => {
                    *phase = Phase::Deferred;
                    return Err(error);
                }
                Err(lost) => Self::phase_of(Err(lost)),
            };
        } else if let Phase::Retry { report } = &mut *phase {
            if let Some(error) = report.take() {
                return Err(error);
            }
            *phase = match finisher().finish() {
                Ok(()) => Phase::Settled,
                // Reported now; the next call tries again.
                Err(Unfinished {
                    error,
                    data_lost: false,
                }) => return Err(error),
                Err(lost) => Self::phase_of(Err(lost)),
            };
        }
        match &*phase {
            Phase::Lost {
                path,
                kind,
                message,
            } => {
                let why = format!(
                    "{message}; bytes written since the last checkpoint may not be on disk \
                     (reopen the path to resume from its journal)"
                );
                let error = io::Error::new(*kind, why);
                Err(match path {
                    Some(path) => io_error(path, "cannot make durable", error),
                    None => StorageError::Io(error),
                })
            }
            _ => Ok(()),
        }
    }

    /// The drop's last chance: waits, then tries once more whatever can
    /// be retried (its error has nobody left to be reported to).
    pub(super) fn finish_on_drop(&self, finisher: impl FnOnce() -> Finisher) {
        self.wait();
        let mut phase = self.phase.lock();
        if let Phase::Retry { .. } = &*phase {
            *phase = Self::phase_of(finisher().finish());
        }
    }

    /// Runs `finisher` here and now (a durable replacement), keeping a
    /// failure for `sync`.
    pub(super) fn finish_now(&self, finisher: &Finisher) {
        *self.phase.lock() = Self::phase_of(finisher.finish());
    }

    /// A replacement's inline step that failed: `sync` reports and retries it.
    pub(super) fn set_retry(&self, report: Option<StorageError>) {
        *self.phase.lock() = Phase::Retry { report };
    }

    /// Nothing is owed any more (a new journal supersedes the commit's).
    pub(super) fn clear(&self) {
        *self.phase.lock() = Phase::Settled;
    }

    /// A rename is owed a directory sync by the next `sync`.
    pub(super) fn owe_rename(&self) {
        self.rename_owed.store(true, Ordering::Release);
    }

    /// Whether a rename was owed a directory sync; it is not any more.
    pub(super) fn take_owed_rename(&self) -> bool {
        self.rename_owed.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
pub(in crate::driver) mod tests {
    use storage_core::{CancellationToken, ResourceExt, ResourceStatus, testing::pattern};

    use crate::{MmapOptions, MmapResource, OpenMode, journal, sys::probe};

    fn open(path: &std::path::Path) -> MmapResource {
        open_in(path, OpenMode::Auto)
    }

    /// Opens `path` in `mode` (for this crate's tests).
    pub(in crate::driver) fn open_in(path: &std::path::Path, mode: OpenMode) -> MmapResource {
        MmapResource::open(
            CancellationToken::new(),
            MmapOptions {
                path: path.to_path_buf(),
                initial_len: None,
                mode,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_failed_data_sync_is_reported_by_every_sync_and_the_file_stays_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dying.bin");
        let data = pattern(5, 300_000);
        let r = open(&path);
        r.write_at(0, &data[..100_000]).unwrap();
        r.sync().unwrap(); // journaled: durable
        r.write_at(100_000, &data[100_000..]).unwrap();
        let failing = probe::fail_syncs_of(&path, None);

        // Published at once, whatever the disk does later.
        r.commit(Some(300_000)).unwrap();
        assert_eq!(
            r.status(),
            ResourceStatus::Committed {
                final_len: Some(300_000)
            }
        );
        let mut back = vec![0; 300_000];
        assert_eq!(r.read_at(0, &mut back).unwrap(), 300_000);
        assert!(back == data);
        // Never "durable" after the disk lost a write: not on the first
        // sync, not on a retry, not after a drop.
        for attempt in 0..3 {
            let err = r.sync().unwrap_err();
            assert!(
                err.to_string().contains("may not be on disk"),
                "attempt {attempt}: {err}"
            );
        }
        drop(r);
        assert!(journal::path_for(&path).exists(), "the journal stays");
        let reopened = open(&path);
        assert_eq!(reopened.status(), ResourceStatus::Active);
        assert!(reopened.contains_range(0..100_000));
        assert!(
            !reopened.contains_range(100_000..100_001),
            "bytes whose sync failed are fetched again"
        );
        drop(reopened);
        drop(failing); // before the file goes and its inode is reused
    }

    /// The row "`sync()` `Err` after `commit`, the journal was removed but
    /// the directory sync failed": a reopen finds the file committed and
    /// whole; the next `sync` retries the directory sync and says `Ok`.
    #[test]
    fn a_commit_whose_directory_sync_failed_reopens_committed_and_whole() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named.bin");
        let data = pattern(6, 70_000);
        let r = open(&path);
        r.write_at(0, &data).unwrap();
        let failing = probe::fail_syncs_of(dir.path(), Some(1));
        r.commit(Some(70_000)).unwrap();
        let err = r.sync().unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        assert!(!journal::path_for(&path).exists(), "the journal went");
        // A crash now: what a reopen by another handle finds (this one
        // still holds the file; a copy stands in for the file after it).
        let copy = dir.path().join("copy.bin");
        std::fs::copy(&path, &copy).unwrap();
        let reopened = open(&copy);
        assert_eq!(
            reopened.status(),
            ResourceStatus::Committed {
                final_len: Some(70_000)
            }
        );
        drop(reopened);
        // The retry syncs the directory.
        r.sync().unwrap();
        drop(r);
        drop(failing);
        let reopened = open(&path);
        assert_eq!(
            reopened.status(),
            ResourceStatus::Committed {
                final_len: Some(70_000)
            }
        );
    }

    /// The row "`sync()` `Err` after `commit` whose own work had
    /// succeeded" (a rewrite in place whose sync failed): the file reopens
    /// committed and whole, never as a download.
    #[test]
    fn a_failed_sync_of_a_rewrite_in_place_leaves_a_committed_file() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.bin");
        std::fs::write(&path, pattern(7, 8_000)).unwrap();
        let r = open_in(&path, OpenMode::ReadWrite);
        r.write_at(100, b"rewritten").unwrap();
        let failing = probe::fail_syncs_of(&path, Some(1));
        assert!(r.sync().is_err());
        drop(r);
        drop(failing);
        assert!(!journal::path_for(&path).exists());
        let reopened = open(&path);
        assert_eq!(
            reopened.status(),
            ResourceStatus::Committed {
                final_len: Some(8_000)
            }
        );
        let mut back = vec![0; 9];
        reopened.read_at(100, &mut back).unwrap();
        assert_eq!(&back, b"rewritten");
    }

    /// Polls `done` for up to 10 s.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Reopens `path` and checks it resumes Active with `durable` and
    /// nothing past `claimed_end`.
    fn reopens_with_only(path: &std::path::Path, durable: std::ops::Range<u64>, lost: u64) {
        let reopened = open(path);
        assert_eq!(reopened.status(), ResourceStatus::Active);
        assert!(reopened.contains_range(durable.clone()), "{durable:?} lost");
        assert!(
            !reopened.contains_range(lost..lost + 1),
            "byte {lost}, whose sync failed, reported available"
        );
    }

    #[test]
    fn a_checkpoint_that_failed_in_the_background_is_never_followed_by_a_durable_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint-failed.bin");
        let len = usize::try_from(crate::CHECKPOINT_BYTES).unwrap() * 2;
        let data = pattern(6, len);
        let r = open(&path);
        r.write_at(0, &data[..100_000]).unwrap();
        r.sync().unwrap();
        // The checkpoint thread's sync fails once (and the kernel would
        // report it only once): the disk may have lost those bytes.
        let failing = probe::fail_syncs_of(&path, Some(1));
        r.write_at(100_000, &data[100_000..]).unwrap();
        eventually("the background checkpoint ran", || {
            failing.remaining() == Some(0)
        });
        r.commit(Some(len as u64)).unwrap();
        let err = r.sync().unwrap_err();
        assert!(err.to_string().contains("earlier sync"), "{err}");
        assert!(r.sync().is_err(), "still not durable on a second try");
        drop(r);
        assert!(journal::path_for(&path).exists(), "the journal stays");
        reopens_with_only(&path, 0..100_000, 100_000);
        drop(failing);
    }

    #[test]
    fn a_failed_sync_of_an_active_file_is_reported_by_every_later_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flush-failed.bin");
        let data = pattern(7, 400_000);
        let r = open(&path);
        r.write_at(0, &data[..100_000]).unwrap();
        r.sync().unwrap();
        let failing = probe::fail_syncs_of(&path, Some(1));
        r.write_at(100_000, &data[100_000..]).unwrap();
        assert!(r.sync().is_err());
        // The disk is fine again, but what it failed to write may be gone.
        assert!(r.sync().is_err(), "a retry claimed the lost bytes durable");
        r.commit(Some(400_000)).unwrap();
        assert!(r.sync().is_err());
        drop(r);
        reopens_with_only(&path, 0..100_000, 100_000);
        drop(failing);
    }

    #[test]
    fn a_commit_whose_sync_failed_cannot_be_reactivated_into_a_journal_of_lost_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reactivate-after-loss.bin");
        let data = pattern(8, 300_000);
        let r = open(&path);
        r.write_at(0, &data[..100_000]).unwrap();
        r.sync().unwrap();
        r.write_at(100_000, &data[100_000..]).unwrap();
        let failing = probe::fail_syncs_of(&path, Some(1));
        r.commit(Some(300_000)).unwrap();
        assert!(r.sync().is_err());
        let err = r.reactivate().unwrap_err();
        assert!(err.to_string().contains("earlier sync"), "{err}");
        assert!(r.sync().is_err());
        drop(r);
        reopens_with_only(&path, 0..100_000, 100_000);
        drop(failing);
    }

    #[test]
    fn a_replacement_starts_a_new_file_with_clean_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replaced-after-loss.bin");
        let r = open(&path);
        r.write_at(0, &[1; 5000]).unwrap();
        let failing = probe::fail_syncs_of(&path, Some(1));
        assert!(r.sync().is_err());
        r.replace_all(b"a new file", true).unwrap();
        r.sync().unwrap();
        drop(r);
        assert!(!journal::path_for(&path).exists());
        let reopened = open(&path);
        assert_eq!(
            reopened.status(),
            ResourceStatus::Committed {
                final_len: Some(10)
            }
        );
        drop(reopened);
        drop(failing);
    }

    /// Counts the syncs of `dir` (other tests run beside this one) while
    /// `during` runs. (Hold [`probe::EXCLUSIVE`].)
    fn directory_syncs_during(dir: &std::path::Path, during: impl FnOnce()) -> usize {
        use std::sync::Arc;

        use parking_lot::Mutex;

        use crate::sys::Synced;

        let synced_dir = Arc::new(Mutex::new(0));
        let (seen, ours) = (Arc::clone(&synced_dir), dir.to_path_buf());
        probe::set(Some(Arc::new(move |event: &Synced<'_>| {
            if matches!(event, Synced::Dir(d) if *d == ours.as_path()) {
                *seen.lock() += 1;
            }
        })));
        during();
        probe::set(None);
        *synced_dir.lock()
    }

    #[test]
    fn a_durable_replacement_syncs_the_directory_after_its_rename() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replaced.bin");
        let r = open(&path);
        r.write_all(b"old contents").unwrap();
        r.sync().unwrap();
        assert!(!journal::path_for(&path).exists());
        // The rename is a change of the directory: durable only once the
        // directory is synced (no journal was there to remove).
        let synced = directory_syncs_during(dir.path(), || {
            r.replace_all(b"new", true).unwrap();
        });
        assert!(synced >= 1, "the rename was never made durable");
    }

    #[test]
    fn a_sync_after_a_replacement_that_was_not_durable_makes_its_rename_durable() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replaced-later.bin");
        let r = open(&path);
        r.write_all(b"old contents").unwrap();
        r.sync().unwrap();
        let replaced = directory_syncs_during(dir.path(), || {
            r.replace_all(b"new", false).unwrap();
        });
        assert_eq!(replaced, 0, "a replacement not asked to be durable synced");
        // `sync` promises what was written before it: the rename too.
        let synced = directory_syncs_during(dir.path(), || r.sync().unwrap());
        assert!(synced >= 1, "sync returned with the rename not durable");
        let again = directory_syncs_during(dir.path(), || r.sync().unwrap());
        assert_eq!(again, 0, "owed once, synced once");
    }

    #[test]
    fn a_rename_owed_to_a_sync_that_failed_is_synced_by_the_next_one() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owed.bin");
        let r = open(&path);
        r.write_all(b"old contents").unwrap();
        r.sync().unwrap();
        r.replace_all(b"new", false).unwrap();
        // The directory's sync fails once: the rename is still owed.
        {
            let failing = probe::fail_syncs_of(dir.path(), Some(1));
            assert!(r.sync().is_err(), "a failed directory sync reported Ok");
            assert_eq!(failing.remaining(), Some(0), "the directory sync was tried");
        }
        let retried = directory_syncs_during(dir.path(), || r.sync().unwrap());
        assert!(
            retried >= 1,
            "the rename owed to the failed sync was dropped"
        );
        assert_eq!(directory_syncs_during(dir.path(), || r.sync().unwrap()), 0);
        // The new file's sync fails: the directory is not synced after it,
        // and, the file poisoned, no later sync calls anything durable.
        r.replace_all(b"newer", false).unwrap();
        {
            let _failing = probe::fail_syncs_of(&path, Some(1));
            let skipped = directory_syncs_during(dir.path(), || assert!(r.sync().is_err()));
            assert_eq!(skipped, 0, "the directory was synced after its file failed");
        }
        assert!(r.sync().is_err(), "a sync after a failed one reported Ok");
    }

    #[test]
    fn a_failed_sync_of_a_file_replaced_meanwhile_does_not_poison_the_new_file() {
        use std::time::Duration;

        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replaced-while-synced.bin");
        let r = open_in(&path, OpenMode::ReadWrite);
        r.write_all(&[1; 4096]).unwrap();
        r.sync().unwrap();
        // The committed file's next sync begins, then waits while the file
        // is replaced, then fails (a dying disk under the old file).
        let (hook, syncing, release) = sync_holder(&path);
        probe::set_before(Some(hook));
        let failing = probe::fail_syncs_of(&path, Some(1));
        r.write_at(0, &[2; 16]).unwrap();
        let syncer = {
            let r = r.clone();
            std::thread::spawn(move || r.sync())
        };
        let began = syncing.recv_timeout(Duration::from_secs(10));
        let replaced = r.replace_all(b"new contents", false);
        drop(release);
        let old_sync = syncer.join().unwrap();
        probe::set_before(None);
        began.expect("the old file's sync began");
        if !crate::fs::renames_over_open_files(dir.path()).unwrap() {
            // The sync holds the old file open, which this platform does
            // not rename over: refused, and the file is as it was.
            assert!(
                matches!(&replaced, Err(storage_core::StorageError::Io(e)) if e.kind() == std::io::ErrorKind::ResourceBusy),
                "{replaced:?}"
            );
            drop(failing);
            let mut back = vec![0; 64];
            assert_eq!(r.read_at(0, &mut back).unwrap(), 64);
            assert_eq!(back[..16], [2; 16]);
            return;
        }
        replaced.unwrap();
        assert!(old_sync.is_err(), "the old file's failed sync is reported");
        assert_eq!(failing.remaining(), Some(0));
        drop(failing);
        r.sync()
            .expect("the new file's syncs were poisoned by the old file's failure");
        let mut back = vec![0; 64];
        let n = r.read_at(0, &mut back).unwrap();
        assert_eq!(&back[..n], b"new contents");
    }

    /// A slow disk for `path`: each sync of its data lasts until the test
    /// sends on the returned sender; the receiver hears when one begins.
    /// (Hold [`probe::EXCLUSIVE`]; `probe::set(None)` when done.)
    fn hold_syncs_of(
        path: &std::path::Path,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (hook, syncing, release) = sync_holder(path);
        probe::set(Some(hook));
        (syncing, release)
    }

    /// A probe hook that holds each sync of `path`'s file (as it is now)
    /// until the test sends on the returned sender; the receiver hears
    /// when one is held.
    fn sync_holder(
        path: &std::path::Path,
    ) -> (
        probe::Hook,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        use std::{
            sync::{Arc, mpsc},
            time::Duration,
        };

        use parking_lot::Mutex;

        use crate::sys::{self, Synced};

        let data_id = sys::entry_id(path).unwrap();
        let (entered, syncing) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let hook: probe::Hook = Arc::new(move |event: &Synced<'_>| {
            if let Synced::File(file) = event
                && sys::file_id(file) == Some(data_id)
            {
                let _ = entered.send(());
                let _ = released.lock().recv_timeout(Duration::from_secs(30));
            }
        });
        (hook, syncing, release)
    }

    /// Runs `write` while a sync of `r` is held on the disk: `Err` when
    /// the write did not finish within 10 s.
    fn write_during_a_held_sync(
        r: &MmapResource,
        path: &std::path::Path,
        write: impl FnOnce(MmapResource) -> storage_core::StorageResult<()> + Send + 'static,
    ) -> Result<(), &'static str> {
        use std::time::{Duration, Instant};

        let (syncing, release) = hold_syncs_of(path);
        let syncer = {
            let r = r.clone();
            std::thread::spawn(move || r.sync())
        };
        syncing
            .recv_timeout(Duration::from_secs(10))
            .expect("the sync reached the disk");
        let writer = {
            let r = r.clone();
            std::thread::spawn(move || write(r))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stalled = false;
        while !writer.is_finished() {
            if Instant::now() > deadline {
                stalled = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Let the sync finish either way, so a failure does not hang.
        release.send(()).unwrap();
        writer.join().unwrap().unwrap();
        syncer.join().unwrap().unwrap();
        probe::set(None);
        if stalled {
            Err("a write waited for a sync of the disk")
        } else {
            Ok(())
        }
    }

    #[test]
    fn a_sync_under_way_does_not_stop_writers() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow-disk.bin");
        let r = open(&path);
        r.write_at(0, &[1; 4096]).unwrap();
        write_during_a_held_sync(&r, &path, |r| r.write_at(4096, &[2; 4096])).unwrap();
        let mut back = [0; 8192];
        assert_eq!(r.read_at(0, &mut back).unwrap(), 8192);
        assert!(back[..4096].iter().all(|&b| b == 1) && back[4096..].iter().all(|&b| b == 2));
    }

    #[test]
    fn a_sync_under_way_does_not_stop_a_rewrite_in_place() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow-disk-rw.bin");
        let r = open_in(&path, OpenMode::ReadWrite);
        r.write_all(&[1; 8192]).unwrap();
        r.sync().unwrap();
        // A rewrite in place: the next sync has its bytes to sync.
        r.write_at(0, &[1; 16]).unwrap();
        write_during_a_held_sync(&r, &path, |r| r.write_at(100, &[3; 16])).unwrap();
        let mut back = [0; 8192];
        assert_eq!(r.read_at(0, &mut back).unwrap(), 8192);
        assert!(back[100..116].iter().all(|&b| b == 3));
        assert!(back[..100].iter().chain(&back[116..]).all(|&b| b == 1));
    }

    /// Item 3 of the scale work: a new small file costs no sync before its
    /// commit (its journal is provisional), and `sync()` after the commit
    /// costs one data sync and one directory sync — no journal sync, no
    /// second data sync.
    #[test]
    fn a_new_small_file_costs_one_data_sync_and_one_directory_sync() {
        use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};

        use crate::sys::{self, Synced};

        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.ts");
        let (data, dirs, others) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let r = open(&path);
        let data_id = sys::entry_id(&path);
        {
            let (data, dirs, others) = (Arc::clone(&data), Arc::clone(&dirs), Arc::clone(&others));
            let dir = dir.path().to_path_buf();
            probe::set(Some(Arc::new(move |event: &Synced<'_>| match event {
                Synced::File(file) => {
                    if sys::file_id(file) == data_id {
                        data.fetch_add(1, Ordering::SeqCst);
                    } else {
                        others.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Synced::Dir(synced) if *synced == dir.as_path() => {
                    dirs.fetch_add(1, Ordering::SeqCst);
                }
                Synced::Dir(_) => {}
            })));
        }
        r.write_at(0, &pattern(5, 100 * 1024)).unwrap();
        r.commit(Some(100 * 1024)).unwrap();
        r.sync().unwrap();
        r.sync().unwrap(); // nothing more to make durable
        drop(r);
        probe::set(None);
        let counts = (
            data.load(Ordering::SeqCst),
            dirs.load(Ordering::SeqCst),
            others.load(Ordering::SeqCst),
        );
        assert_eq!(
            counts,
            (1, 1, 0),
            "(data syncs, directory syncs, journal syncs)"
        );
        assert!(!journal::path_for(&path).exists());
    }

    /// A checkpoint that fails in the background (here its journal's
    /// directory sync) leaves its ranges pending: the next `sync()`
    /// journals them, and a reopen finds them.
    #[test]
    fn ranges_of_a_failed_background_checkpoint_are_journaled_by_the_next_sync() {
        use crate::CheckpointPolicy;

        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failing-checkpoint.bin");
        let failing = probe::fail_syncs_of(dir.path(), Some(1));
        let r = MmapResource::open(
            CancellationToken::new(),
            MmapOptions::new(&path).checkpoints(CheckpointPolicy {
                bytes: 1,
                ..CheckpointPolicy::default()
            }),
        )
        .unwrap();
        r.write_at(0, &[7; 1000]).unwrap();
        eventually("the background checkpoint failed", || {
            failing.remaining() == Some(0)
        });
        r.sync().unwrap();
        drop(r);
        drop(failing);
        let reopened = open(&path);
        assert_eq!(reopened.status(), ResourceStatus::Active);
        assert!(
            reopened.contains_range(0..1000),
            "bytes synced by `sync()` lost: the failed checkpoint dropped them"
        );
    }

    #[test]
    fn every_sync_journals_what_was_written_before_it_while_writes_and_checkpoints_go_on() {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };

        use parking_lot::Mutex;
        use storage_core::{RangeSet, testing::shuffled};

        const BLOCK: usize = 16 * 1024;
        // 64 MiB, with a sync every few milliseconds: the checkpoint
        // thread takes its ranges between them, a few times a second.
        const BLOCKS: usize = 4096;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synced-while-written.bin");
        let r = open(&path);
        let written = Arc::new(Mutex::new(RangeSet::new()));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (r, written, done) = (r.clone(), Arc::clone(&written), Arc::clone(&done));
            std::thread::spawn(move || {
                let block = [0x5a; BLOCK];
                for i in shuffled(BLOCKS, 7) {
                    let at = (i * BLOCK) as u64;
                    r.write_at(at, &block).unwrap();
                    written.lock().insert(at..at + BLOCK as u64);
                }
                done.store(true, Ordering::Release);
            })
        };
        let journal_path = journal::path_for(&path);
        let mut syncs = 0;
        while !done.load(Ordering::Acquire) || syncs < 3 {
            std::thread::sleep(std::time::Duration::from_millis(3));
            let before = written.lock().clone();
            r.sync().unwrap();
            syncs += 1;
            let journaled = journal::read(&journal_path).unwrap().unwrap().ranges;
            for range in before.iter() {
                assert!(
                    journaled.gaps(range).next().is_none(),
                    "sync {syncs} returned with {range:?}, written before it, not journaled"
                );
            }
        }
        writer.join().unwrap();
        let len = (BLOCK * BLOCKS) as u64;
        r.commit(Some(len)).unwrap();
        r.sync().unwrap();
        assert!(!journal_path.exists(), "the commit's sync left the journal");
        let mut back = vec![0; usize::try_from(len).unwrap()];
        assert_eq!(r.read_at(0, &mut back).unwrap(), back.len());
        assert!(back.iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn syncs_racing_commits_and_reactivations_each_return_ok_and_leave_a_whole_file() {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("committed-while-synced.bin");
        let r = open(&path);
        let done = Arc::new(AtomicBool::new(false));
        let syncer = {
            let (r, done) = (r.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut syncs = 0u32;
                while !done.load(Ordering::Acquire) {
                    r.sync().unwrap();
                    syncs += 1;
                }
                syncs
            })
        };
        let data = pattern(3, 64 * 1024);
        for round in 0..40 {
            let at = round * 1024;
            r.write_at(at as u64, &data[at..at + 1024]).unwrap();
            r.commit(Some(at as u64 + 1024)).unwrap();
            if round < 39 {
                r.reactivate().unwrap();
            }
        }
        done.store(true, Ordering::Release);
        assert!(syncer.join().unwrap() > 0);
        r.sync().unwrap();
        assert!(!journal::path_for(&path).exists());
        drop(r);
        let reopened = open(&path);
        assert_eq!(
            reopened.status(),
            ResourceStatus::Committed {
                final_len: Some(40 * 1024)
            }
        );
        let mut back = vec![0; 40 * 1024];
        assert_eq!(reopened.read_at(0, &mut back).unwrap(), back.len());
        assert!(back[..] == data[..40 * 1024]);
    }
}
