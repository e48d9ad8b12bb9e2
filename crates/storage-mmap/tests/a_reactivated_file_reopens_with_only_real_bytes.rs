//! A committed file that is reactivated, rewritten or grown, then dropped or
//! killed, reopens with only the bytes really written: holes stay holes,
//! bytes rewritten in place are durable before the journal vouches for them,
//! and a read-only handle refuses to reactivate an unfinished file.

mod support;

use std::{fs, path::Path, time::Duration};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{MmapResource, OpenMode};
use support::{assert_available_bytes_are, available, pattern};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

const CHILD_ENV: &str = "STORAGE_REACTIVATE_CHILD";

// Every open that follows the drop of the file's other handles retries a
// `Locked`: a child that a test beside it spawns holds a copy of every open
// file (and its lock) until it execs (`retry_locked`).

#[test]
fn holes_stay_holes_after_commit_none_reactivate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holes.bin");
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &[1; 10]).unwrap();
    r.write_at(100, &[2; 10]).unwrap();
    r.commit(None).unwrap();
    r.reactivate().unwrap();
    drop(r);

    let reopened = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
    assert_eq!(reopened.status(), ResourceStatus::Active);
    assert!(!reopened.contains_range(10..100));
    assert_eq!(reopened.next_gap(0, 110), Some(10..100));
    assert!(reopened.contains_range(0..10));
    assert!(reopened.contains_range(100..110));
    assert_eq!(
        reopened
            .wait_range_timeout(10..100, Duration::from_millis(20))
            .unwrap_err()
            .to_string(),
        StorageError::TimedOut.to_string()
    );
}

#[test]
fn a_rewrite_in_place_after_commit_is_durable_before_reactivate_journals_it() {
    // ReadWrite rewrites a committed file in place; reactivate then journals
    // those bytes as durable, so it must sync them first. Checked through
    // what reopening reports and reads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rewritten.bin");
    fs::write(&path, [7u8; 64]).unwrap();
    let r = open(&path, OpenMode::ReadWrite).unwrap();
    r.write_at(8, &[9; 8]).unwrap();
    r.reactivate().unwrap();
    r.write_at(64, &[5; 16]).unwrap();
    drop(r);
    let reopened = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
    let mut expected = vec![7u8; 80];
    expected[8..16].fill(9);
    expected[64..].fill(5);
    assert_eq!(available(&reopened, 80), vec![0..80]);
    assert_available_bytes_are(&reopened, &expected, "rewrite in place");
}

/// In the child: reactivates, writes scattered ranges and commits with
/// `None`, over and over, until killed.
#[test]
fn child_reactivating_in_a_loop() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let expected = pattern(21, 1 << 20);
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    println!("ready");
    for round in 0usize.. {
        r.reactivate().unwrap();
        // Leave holes: every other 16 KiB block of this round's window.
        let base = (round % 8) * 128 * 1024;
        for block in (0..8).step_by(2) {
            let at = base + block * 16 * 1024;
            r.write_at(at as u64, &expected[at..at + 16 * 1024])
                .unwrap();
        }
        r.commit(None).unwrap();
    }
}

#[test]
fn a_reactivating_writer_killed_at_random_moments_reopens_with_only_real_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let expected = pattern(21, 1 << 20);
    let mut seen_states = Vec::new();
    for round in 0..24u64 {
        let path = dir.path().join(format!("reactivated-{round}.bin"));
        // A committed file with holes to start from.
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, &expected[..4096]).unwrap();
        r.commit(None).unwrap();
        drop(r);
        let mut child = support::spawn_ready_child(
            "child_reactivating_in_a_loop",
            CHILD_ENV,
            path.to_str().unwrap(),
        );
        support::sleep_for(Duration::from_micros(u64::from(pattern(round, 2)[1]) * 100));
        child.kill().unwrap();
        child.wait().unwrap();
        let reopened = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
        let status = reopened.status();
        if status == ResourceStatus::Active {
            assert_available_bytes_are(&reopened, &expected, &format!("round {round}"));
            assert!(
                reopened.contains_range(0..4096),
                "round {round}: the first commit was lost"
            );
        } else {
            // Committed with None: whatever was written, holes as zeros.
            let mut all = Vec::new();
            reopened.read_into(&mut all).unwrap();
            for (at, byte) in all.iter().enumerate() {
                assert!(
                    *byte == 0 || *byte == expected[at],
                    "round {round}: byte {at}"
                );
            }
        }
        seen_states.push(status);
    }
    println!("states: {seen_states:?}");
}

#[test]
fn reactivating_a_read_only_handle_of_an_unfinished_file_says_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unfinished.bin");
    drop({
        let r = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
        r.write_at(0, b"part").unwrap();
        r
    });
    let r = support::retry_locked(|| open(&path, OpenMode::ReadOnly)).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(matches!(r.reactivate(), Err(StorageError::ReadOnly)));
}
