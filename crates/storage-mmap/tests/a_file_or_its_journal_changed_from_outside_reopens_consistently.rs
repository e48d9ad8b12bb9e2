//! A file or its journal changed from outside (the journal deleted, bytes
//! written into a hole, a torn journal temporary left behind, the file
//! deleted or renamed over) reopens consistently: each handle commits and
//! removes only its own journal, and no byte the journal does not vouch for
//! is served.

mod support;

use std::{fs, path::Path};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{MmapResource, OpenMode, fs::journal_path};
#[cfg(unix)] // Only the Unix-gated tests below use them.
use support::{available, pattern};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

#[test]
fn commit_with_the_journal_deleted_from_outside_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-journal.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &[3; 1000]).unwrap();
    // Checkpointed: a journal is made (a new file has none before).
    r.sync().unwrap();
    fs::remove_file(journal_path(&path)).unwrap();
    r.commit(Some(1000)).unwrap();
    assert_eq!(
        r.status(),
        ResourceStatus::Committed {
            final_len: Some(1000)
        }
    );
    drop(r);
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(reopened.len(), Some(1000));
}

#[test]
fn read_into_and_read_at_agree_on_holes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &[1; 10]).unwrap();
    r.write_at(20, &[2; 10]).unwrap();
    drop(r);
    // Bytes in the hole that the journal does not vouch for.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(10)).unwrap();
        file.write_all(&[0xEE; 10]).unwrap();
    }
    let reopened = open(&path, OpenMode::Auto).unwrap();
    let mut via_read_at = vec![0xFF; 30];
    assert_eq!(reopened.read_at(0, &mut via_read_at).unwrap(), 30);
    let mut via_read_into = Vec::new();
    assert_eq!(reopened.read_into(&mut via_read_into).unwrap(), 30);
    assert_eq!(via_read_into, via_read_at);
    assert_eq!(via_read_at[10..20], [0; 10]);
}

#[test]
fn an_open_of_a_committed_file_removes_a_leftover_journal_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("done.bin");
    fs::write(&path, b"done").unwrap();
    let mut temp = journal_path(&path).into_os_string();
    temp.push(".tmp");
    fs::write(&temp, b"STJRNL01 torn").unwrap();
    drop(open(&path, OpenMode::ReadOnly).unwrap());
    assert!(Path::new(&temp).exists(), "a reader changes nothing");
    drop(open(&path, OpenMode::Auto).unwrap());
    assert!(!Path::new(&temp).exists());
}

// A file deleted while a handle holds it keeps its name on Windows (delete pending): no new download can take the path there.
#[cfg(unix)]
#[test]
fn a_commit_by_a_handle_whose_file_was_deleted_leaves_the_new_downloads_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deleted.bin");
    let a = open(&path, OpenMode::Auto).unwrap();
    a.write_at(0, &[b'A'; 3000]).unwrap();
    fs::remove_file(&path).unwrap();
    let b = open(&path, OpenMode::Auto).unwrap();
    b.write_at(0, &[b'B'; 1000]).unwrap();
    b.sync().unwrap();
    a.commit(Some(3000)).unwrap();
    assert!(
        journal_path(&path).exists(),
        "the new download's journal was removed"
    );
    drop(a);
    assert!(journal_path(&path).exists(), "the orphan's drop removed it");
    drop(b);
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(reopened.status(), ResourceStatus::Active);
    assert_eq!(available(&reopened, 1 << 20), vec![0..1000]);
}

// Renames over a file a handle holds, which Windows refuses without POSIX-semantics renames (Wine): the case cannot arise there.
#[cfg(unix)]
#[test]
fn a_writer_whose_file_was_renamed_over_from_outside_removes_its_own_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("renamed-over.bin");
    let writer = open(&path, OpenMode::Auto).unwrap();
    writer.write_at(0, &[1; 1000]).unwrap();
    // Another program puts a whole file over the path.
    let whole = dir.path().join("whole.bin");
    fs::write(&whole, pattern(101, 5000)).unwrap();
    fs::rename(&whole, &path).unwrap();
    writer.commit(Some(1000)).unwrap();
    writer.sync().unwrap();
    drop(writer);
    assert!(
        !journal_path(&path).exists(),
        "the writer's own journal lingers"
    );
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(5000)
        }
    );
}

/// The journal of an unfinished download deleted from outside (before its
/// first checkpoint — a provisional one where the file cannot be marked —
/// or after a sync): the drop makes a new one, so the
/// file reopens unfinished with only true bytes — never committed with
/// bytes nobody wrote.
#[cfg(unix)] // Windows makes no journal anew: a removed name lingers there
#[test]
fn an_unfinished_download_whose_journal_was_deleted_reopens_unfinished() {
    for sync_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal-deleted.bin");
        let expected = support::pattern(41, 1000);
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, &expected).unwrap();
        if sync_first {
            r.sync().unwrap();
            fs::remove_file(journal_path(&path)).unwrap();
        } else {
            // A new file has no journal before its first checkpoint where
            // its mark says it is unfinished; a provisional one elsewhere.
            let _ = fs::remove_file(journal_path(&path));
        }
        drop(r);
        let reopened = open(&path, OpenMode::Auto).unwrap();
        assert_eq!(
            reopened.status(),
            ResourceStatus::Active,
            "synced first: {sync_first}"
        );
        support::assert_available_bytes_are(&reopened, &expected, "the reopen");
    }
}
