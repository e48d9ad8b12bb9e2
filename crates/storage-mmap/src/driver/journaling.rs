//! `Journaling`: this handle's journal of an active file — its checkpoints,
//! its identity, its policy and the poison of a failed data sync.

use std::{
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use storage_core::{RangeSet, StorageError, StorageResult};

use crate::{
    checkpoint::{CheckpointPolicy, Checkpoints, Flusher},
    journal::{self, Journal, Replacement},
    mark,
    poison::Poison,
    store::io_error,
    sys,
};

/// The journal of an active file and what keeps it: written ranges become
/// durable and journaled at checkpoints; only the journal this handle made
/// or resumed is ever removed by it.
#[derive(Debug)]
pub(super) struct Journaling {
    /// The journal's path, beside the file.
    path: PathBuf,
    /// When written bytes are checkpointed, for every journal this handle
    /// keeps (a reactivation's too).
    policy: CheckpointPolicy,
    /// The journal of an active file, `None` once committed (and for
    /// read-only resources). Locked after the store when both are; held
    /// only for moments (a writer's record, taking or putting the
    /// checkpoints), never across a sync.
    checkpoints: Mutex<Option<Checkpoints>>,
    /// The identity of this handle's journal (set when it creates or
    /// resumes one): only that journal is ever removed by it, never one
    /// that another download put at the path since.
    id: Mutex<Option<(u64, u64)>>,
    /// A failed data sync of this handle's file, shared with its
    /// checkpoints and its commits' background work (see `poison`).
    poison: Poison,
}

/// An active file's checkpoints, stopped for a replacement.
pub(super) struct Stopped {
    journal: Journal,
    pending: Vec<Range<u64>>,
    /// `None` while the replacement let go of the file (see
    /// [`Stopped::set_file`]).
    data_file: Option<Arc<File>>,
}

impl Stopped {
    /// Gives up the checkpoints' handle of the data file (`None`: a
    /// replacement lets go of it, on a platform that cannot rename over an
    /// open file), or hands them the handle it was opened again with.
    pub(super) fn set_file(&mut self, file: Option<Arc<File>>) {
        self.data_file = file;
    }
}

impl Journaling {
    /// The journal at `path`, kept by `checkpoints` when the file opened
    /// active.
    pub(super) fn new(
        path: PathBuf,
        policy: CheckpointPolicy,
        checkpoints: Option<Checkpoints>,
    ) -> Self {
        let id = checkpoints.as_ref().and_then(Checkpoints::journal_id);
        let poison = checkpoints
            .as_ref()
            .map(Checkpoints::poison)
            .unwrap_or_default();
        Self {
            path,
            policy,
            checkpoints: Mutex::new(checkpoints),
            id: Mutex::new(id),
            poison,
        }
    }

    /// The journal's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The identity of this handle's journal, if it keeps or kept one (the
    /// live one's: a journal removed from outside is made anew by the
    /// checkpoints).
    pub(super) fn id(&self) -> Option<(u64, u64)> {
        let live = self
            .checkpoints
            .lock()
            .as_ref()
            .and_then(Checkpoints::journal_id);
        let mut id = self.id.lock();
        if live.is_some() {
            *id = live;
        }
        *id
    }

    /// The record of a failed data sync of this handle's file.
    pub(super) fn poison(&self) -> &Poison {
        &self.poison
    }

    /// Whether the file is active (a journal is kept).
    pub(super) fn is_active(&self) -> bool {
        self.checkpoints.lock().is_some()
    }

    /// Notes that `range` was written (nothing once committed).
    pub(super) fn record(&self, range: Range<u64>) {
        if let Some(checkpoints) = self.checkpoints.lock().as_ref() {
            checkpoints.record(range);
        }
    }

    /// Appends the download's identity to the journal.
    pub(super) fn record_identity(
        &self,
        expected_len: Option<u64>,
        validator: Option<&str>,
    ) -> StorageResult<()> {
        match self.checkpoints.lock().as_ref() {
            Some(checkpoints) => checkpoints
                .record_identity(expected_len, validator)
                .map_err(|e| io_error(&self.path, "cannot write", e)),
            // Committed or read-only: no download to resume.
            None => Ok(()),
        }
    }

    /// A handle to checkpoint with from `sync`, if the file is active.
    pub(super) fn flusher(&self) -> Option<Flusher> {
        self.checkpoints.lock().as_ref().map(Checkpoints::flusher)
    }

    /// Takes the checkpoints out (a commit hands them to its background
    /// work, which stops them).
    pub(super) fn take(&self) -> Option<Checkpoints> {
        let taken = self.checkpoints.lock().take();
        if let Some(live) = taken.as_ref().and_then(Checkpoints::journal_id) {
            *self.id.lock() = Some(live);
        }
        taken
    }

    /// Stops the checkpoints, if any, with nothing more journaled (a
    /// replacement made the file they kept a new one).
    pub(super) fn stop(&self) {
        if let Some(orphaned) = self.checkpoints.lock().take() {
            drop(orphaned.stop());
        }
    }

    /// The last checkpoint (the drop): what was written becomes durable
    /// and journaled.
    pub(super) fn finish(&mut self) {
        if let Some(checkpoints) = self.checkpoints.get_mut().take() {
            let _ = checkpoints.finish();
        }
    }

    /// Starts a new journal, unless one is kept already (`Ok(false)`).
    /// `open` runs first, under the journal's lock: it gives a handle of
    /// the file to sync and the ranges that hold data. On an error the
    /// journal at the path is the one that was there.
    pub(super) fn start(
        &self,
        open: impl FnOnce(&Poison) -> StorageResult<(Arc<File>, RangeSet<u64>)>,
    ) -> StorageResult<bool> {
        let mut checkpoints = self.checkpoints.lock();
        if checkpoints.is_some() {
            return Ok(false);
        }
        let (data, ranges) = open(&self.poison)?;
        // The last step that can fail: it leaves the journal that was
        // there (none, or an unsynced commit's) when it does.
        let journal = Journal::create(&self.path, ranges.iter())
            .map_err(|e| io_error(&self.path, "cannot write", e))?;
        mark::note_journal(&data);
        *self.id.lock() = journal.id();
        *checkpoints = Some(Checkpoints::new(
            data,
            journal,
            self.poison.clone(),
            self.policy,
        ));
        Ok(true)
    }

    /// A new journal, whole, with no range and no identity, in place of the
    /// old one (a restarted download); on failure the old one goes on.
    pub(super) fn restart(&self) -> StorageResult<()> {
        let mut checkpoints = self.checkpoints.lock();
        let Some(old) = checkpoints.take() else {
            return Ok(());
        };
        let (journal, pending, data) = old.stop();
        match Journal::create(&self.path, std::iter::empty()) {
            Ok(fresh) => {
                mark::note_journal(&data);
                *self.id.lock() = fresh.id();
                *checkpoints = Some(Checkpoints::resume(
                    data,
                    fresh,
                    Vec::new(),
                    self.poison.clone(),
                    self.policy,
                ));
                Ok(())
            }
            Err(e) => {
                if let Some(journal) = journal {
                    *checkpoints = Some(Checkpoints::resume(
                        data,
                        journal,
                        pending,
                        self.poison.clone(),
                        self.policy,
                    ));
                }
                Err(io_error(&self.path, "cannot write", e))
            }
        }
    }

    /// Stops the checkpoints of the active file at `file_path` and marks
    /// the replacement `mark` in its journal; on an error the checkpoints
    /// go on.
    pub(super) fn stop_and_mark(
        &self,
        file_path: &Path,
        mark: Replacement,
    ) -> StorageResult<Stopped> {
        let Some(checkpoints) = self.checkpoints.lock().take() else {
            return Err(StorageError::Failed("the journal went away".into()));
        };
        let (journal, pending, data_file) = checkpoints.stop();
        let Some(mut journal) = journal else {
            return Err(io_error(
                file_path,
                "cannot journal the replacement of",
                std::io::Error::other("the checkpoint thread died"),
            ));
        };
        let marked = journal.mark_replacement(mark);
        let stopped = Stopped {
            journal,
            pending,
            data_file: Some(data_file),
        };
        match marked {
            Ok(()) => Ok(stopped),
            Err(e) => {
                self.resume(stopped);
                Err(io_error(&self.path, "cannot write", e))
            }
        }
    }

    /// Checkpoints again, as before a replacement that did not land (not
    /// when the data file could not be opened again after the replacement
    /// let go of it: the journal stays as it is, for a reopen to resume).
    pub(super) fn resume(&self, stopped: Stopped) {
        let Some(data_file) = stopped.data_file else {
            return;
        };
        *self.checkpoints.lock() = Some(Checkpoints::resume(
            data_file,
            stopped.journal,
            stopped.pending,
            self.poison.clone(),
            self.policy,
        ));
    }

    /// After a replacement: this handle's journal, or the stale one it
    /// marked (`marked`), is stale now and goes, durably; another
    /// download's journal stays.
    pub(super) fn retire(&self, marked: Option<(u64, u64)>) -> StorageResult<()> {
        let own = self.id();
        let removed =
            journal::remove_if_ours(&self.path, |id| id.is_some() && (id == own || id == marked))
                .map_err(|e| io_error(&self.path, "cannot remove", e));
        if removed.is_ok() && sys::entry_id(&self.path) != own {
            *self.id.lock() = None;
        }
        removed
    }
}
