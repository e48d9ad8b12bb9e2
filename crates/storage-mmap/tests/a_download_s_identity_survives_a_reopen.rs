//! What a downloader declares about an unfinished download — its expected
//! length and the remote file's validator — is kept in the journal: a
//! reopen (after a drop, or a crash) has them before any network, and a
//! `restart` forgets them with the bytes, for a reopen too.

use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use storage_mmap::{MmapOptions, MmapResource};

fn open(path: &std::path::Path) -> MmapResource {
    MmapResource::open(CancellationToken::new(), MmapOptions::new(path)).unwrap()
}

#[test]
fn the_expected_length_and_the_validator_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.flac");
    let r = open(&path);
    r.set_validator("\"etag-1\"").unwrap();
    r.set_expected_len(100_000).unwrap();
    r.write_at(0, &[3; 4096]).unwrap();
    drop(r);
    let resumed = open(&path);
    assert_eq!(resumed.status(), ResourceStatus::Active);
    assert_eq!(resumed.expected_len(), Some(100_000));
    assert_eq!(resumed.validator().as_deref(), Some("\"etag-1\""));
    assert!(resumed.contains_range(0..4096));
    // A new validator replaces the old one, for the next reopen too.
    resumed
        .set_validator("Wed, 21 Oct 2026 07:28:00 GMT")
        .unwrap();
    drop(resumed);
    let again = open(&path);
    assert_eq!(
        again.validator().as_deref(),
        Some("Wed, 21 Oct 2026 07:28:00 GMT")
    );
    // Committed: the journal goes, and with it the identity.
    again.write_at(4096, &vec![4; 100_000 - 4096]).unwrap();
    again.commit(None).unwrap();
    drop(again);
    let whole = open(&path);
    assert_eq!(
        whole.status(),
        ResourceStatus::Committed {
            final_len: Some(100_000)
        }
    );
}

#[test]
fn a_restart_forgets_the_bytes_and_the_identity_for_a_reopen_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changed.bin");
    let r = open(&path);
    r.set_validator("\"old\"").unwrap();
    r.set_expected_len(50_000).unwrap();
    r.write_at(0, &vec![1; 20_000]).unwrap();
    r.sync().unwrap();
    r.restart().unwrap();
    r.write_at(0, &[2; 100]).unwrap();
    drop(r);
    let reopened = open(&path);
    assert_eq!(reopened.status(), ResourceStatus::Active);
    assert_eq!(reopened.expected_len(), None);
    assert_eq!(reopened.validator(), None);
    assert!(reopened.contains_range(0..100));
    assert!(
        !reopened.contains_range(100..101),
        "a byte of the old version came back"
    );
    let mut buf = [0; 100];
    reopened.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [2; 100]);
}

#[test]
fn a_restarted_download_committed_short_reopens_with_only_its_new_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restarted.flac");
    let r = open(&path);
    r.write_at(0, &vec![0xAB; 100_000]).unwrap();
    r.sync().unwrap();
    r.restart().unwrap();
    r.write_at(0, b"0123456789").unwrap();
    r.commit(None).unwrap();
    r.sync().unwrap();
    drop(r);
    let reopened = open(&path);
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(10)
        }
    );
    let mut all = Vec::new();
    reopened.read_into(&mut all).unwrap();
    assert_eq!(all, b"0123456789");
}
