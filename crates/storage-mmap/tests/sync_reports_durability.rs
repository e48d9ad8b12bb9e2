//! `sync()`: what was written becomes durable and journaled; a commit whose
//! last steps failed still commits, and `sync()` reports and retries them.

mod support;

use std::path::Path;

use storage_core::{ResourceExt, ResourceStatus, StorageError};
#[cfg(unix)] // Only the Unix-gated tests below name the journal.
use storage_mmap::fs::journal_path;
use storage_mmap::{MmapResource, OpenMode};
use support::pattern;

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

const CHILD_ENV: &str = "STORAGE_SYNC_CHILD";

/// In the child: writes three small ranges (far below a checkpoint), syncs,
/// and is killed without a chance to drop.
#[test]
fn child_syncing_then_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let data = pattern(51, 300_000);
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    r.write_at(0, &data[..100_000]).unwrap();
    r.write_at(200_000, &data[200_000..]).unwrap();
    r.sync().unwrap();
    // Written after the sync: not promised, so not checked.
    r.write_at(100_000, &data[100_000..150_000]).unwrap();
    println!("synced: ready");
    std::thread::sleep(support::LIMIT * 3);
}

#[test]
fn sync_on_an_active_file_makes_what_was_written_resumable_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synced.bin");
    let mut child = support::spawn_ready_child(
        "child_syncing_then_killed",
        CHILD_ENV,
        path.to_str().unwrap(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let data = pattern(51, 300_000);
    let r = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(r.contains_range(0..100_000));
    assert!(r.contains_range(200_000..300_000));
    let mut buf = vec![0; 100_000];
    r.read_at(200_000, &mut buf).unwrap();
    assert!(buf == data[200_000..]);
    r.read_at(0, &mut buf).unwrap();
    assert!(buf == data[..100_000]);
}

#[cfg(unix)] // A journal pinned with chattr (support::Protected, Unix only).
#[test]
fn a_commit_whose_journal_cannot_be_removed_commits_and_sync_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &[4; 5000]).unwrap();
    // Checkpointed: a journal is made (a new file has none before).
    r.sync().unwrap();
    let journal = journal_path(&path);
    let pinned = support::Protected::new(&journal, support::Forbid::Unlink);

    r.commit(Some(5000)).unwrap();
    assert_eq!(
        r.status(),
        ResourceStatus::Committed {
            final_len: Some(5000)
        }
    );
    let err = r.sync().unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    // Still the writer until the commit is durable: no second handle.
    assert!(open(&path, OpenMode::Auto).is_err());

    drop(pinned);
    r.sync().unwrap();
    assert!(!journal.exists());
    // Now a reader's lock: another handle may read it.
    let reader = support::retry_locked(|| open(&path, OpenMode::ReadOnly)).unwrap();
    assert_eq!(reader.len(), Some(5000));
}

/// The row "`sync()` `Err` after `commit`, the journal's removal failed":
/// the data is durable, and the journal left behind carries the whole
/// file's mark, so a reopen (after a crash, or this drop) finds the file
/// committed and whole, not a download to fetch again.
#[cfg(unix)] // A journal pinned with chattr (support::Protected, Unix only).
#[test]
fn a_commit_whose_journal_cannot_be_removed_reopens_committed_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    let data = support::pattern(3, 5000);
    r.write_at(0, &data).unwrap();
    // Checkpointed: a journal is made (a new file has none before).
    r.sync().unwrap();
    let journal = journal_path(&path);
    let pinned = support::Protected::new(&journal, support::Forbid::Unlink);
    r.commit(Some(5000)).unwrap();
    assert!(r.sync().is_err());
    drop(r);
    assert!(journal.exists(), "the journal could not go");
    drop(pinned);
    let reopened = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(5000)
        }
    );
    let mut all = Vec::new();
    reopened.read_into(&mut all).unwrap();
    assert!(all == data);
    assert!(!journal.exists(), "the writer's reopen removed it");
}

#[cfg(unix)] // A journal pinned with chattr (support::Protected, Unix only).
#[test]
fn dropping_a_resource_finishes_an_unsynced_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &[4; 5000]).unwrap();
    // Checkpointed: a journal is made (a new file has none before).
    r.sync().unwrap();
    let journal = journal_path(&path);
    let pinned = support::Protected::new(&journal, support::Forbid::Unlink);
    r.commit(Some(5000)).unwrap();
    assert!(r.sync().is_err());
    drop(pinned);
    drop(r);
    assert!(!journal.exists(), "the drop removed the journal");
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(5000)
        }
    );
}
