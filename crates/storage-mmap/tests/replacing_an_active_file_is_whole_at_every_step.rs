//! Replacing an active file (`replace_all` of a download) is whole at every
//! step: a crash before the rename resumes the old download, one after it
//! reopens the new file committed, and a reader racing it sees either the
//! download or the replacement, never a mix.

mod support;

use std::{fs, path::Path, thread};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{MmapResource, OpenMode, fs::journal_path};
use support::{assert_available_bytes_are, available, pattern, within};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

/// A replacement of an active file, stopped between its steps. The journal
/// gets a second name while the replacement runs (what its handle writes
/// lands under both; the replacement removes only the first), then is put
/// back beside the old or the new file: the states a crash before or after
/// the rename leaves.
fn replace_with_the_journal_aside(path: &Path, old: &[u8], new: &[u8]) -> Vec<u8> {
    let r = open(path, OpenMode::Auto).unwrap();
    r.write_at(0, &old[..1000]).unwrap();
    r.write_at(2000, &old[2000..3000]).unwrap();
    r.sync().unwrap();
    let aside = path.with_extension("journal-aside");
    fs::hard_link(journal_path(path), &aside).unwrap();
    r.replace_all(new, false).unwrap();
    drop(r);
    fs::read(&aside).unwrap()
}

#[test]
fn a_crash_after_the_rename_of_an_active_file_reopens_committed_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("active-replaced.bin");
    let (old, new) = (pattern(61, 3000), pattern(62, 1500));
    let journal = replace_with_the_journal_aside(&path, &old, &new);
    fs::write(journal_path(&path), journal).unwrap();
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(1500)
        }
    );
    let mut all = Vec::new();
    reopened.read_into(&mut all).unwrap();
    assert!(all == new);
    assert!(
        !journal_path(&path).exists(),
        "the stale journal was removed"
    );
}

#[test]
fn a_crash_before_the_rename_of_an_active_file_resumes_the_old_download() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("active-kept.bin");
    let (old, new) = (pattern(63, 3000), pattern(64, 1500));
    // The old file as it was before the rename, with the journal that
    // already holds the mark.
    let before = dir.path().join("before.bin");
    {
        let r = open(&before, OpenMode::Auto).unwrap();
        r.write_at(0, &old[..1000]).unwrap();
        r.write_at(2000, &old[2000..3000]).unwrap();
    }
    fs::remove_file(journal_path(&before)).unwrap();
    let journal = replace_with_the_journal_aside(&path, &old, &new);
    fs::rename(&before, &path).unwrap();
    fs::write(journal_path(&path), journal).unwrap();
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(reopened.status(), ResourceStatus::Active);
    assert_eq!(available(&reopened, 3000), vec![0..1000, 2000..3000]);
    assert_available_bytes_are(&reopened, &old, "the old download");
}

#[test]
fn a_reader_racing_the_replacement_of_an_active_file_with_holes_sees_no_mix() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..300 {
        let r = open(
            &dir.path().join(format!("holes-{round}.bin")),
            OpenMode::Auto,
        )
        .unwrap();
        r.write_at(0, &[b'o'; 4096]).unwrap();
        r.write_at(8192, &[b'o'; 4096]).unwrap();
        let reader = {
            let r = r.clone();
            thread::spawn(move || {
                let mut buf = vec![0; 12288];
                for _ in 0..50 {
                    let n = r.read_at(0, &mut buf).unwrap();
                    assert_eq!(n, 12288);
                    let old = buf[..4096].iter().all(|&x| x == b'o')
                        && buf[4096..8192].iter().all(|&x| x == 0)
                        && buf[8192..].iter().all(|&x| x == b'o');
                    let new = buf.iter().all(|&x| x == b'n');
                    assert!(old || new, "a read mixed the download and its replacement");
                }
            })
        };
        r.replace_all(&[b'n'; 12288], false).unwrap();
        within("the reader", move || reader.join().unwrap());
    }
}
