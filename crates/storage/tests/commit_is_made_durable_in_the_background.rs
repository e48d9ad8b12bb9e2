//! `commit` publishes at once and makes the file durable in the background:
//! processes killed right after it returns, or while the background sync
//! runs, reopen either committed and whole or resumable with only true
//! bytes; a drop waits for the background; `sync` waits for it too.

mod support;

use std::{fs, path::Path, time::Duration};

use storage::{
    MmapResource, OpenMode, ResourceExt, ResourceStatus, StorageError, mmap::CHECKPOINT_BYTES,
};
use support::{LIMIT, pattern, shuffled};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

use support::journal_of;

#[allow(
    clippy::cast_possible_truncation,
    reason = "8 MiB fits any usize this runs on"
)]
const LEN: usize = 3 * CHECKPOINT_BYTES as usize + 123_457;
const CHUNK: usize = 64 * 1024;
const CHILD_ENV: &str = "STORAGE_BACKGROUND_SYNC_CHILD";

fn content() -> Vec<u8> {
    pattern(63, LEN)
}

/// In the child: downloads the whole file out of order as fast as it can
/// and commits. Says "ready" at the start (`start`) or right after `commit`
/// returns (`commit`), then waits to be killed.
#[test]
fn child_downloading_and_committing() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = arg.split('|');
    let (path, seed, when) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let expected = content();
    let r = open(Path::new(path), OpenMode::Auto).unwrap();
    if when == "start" {
        println!("ready");
    }
    let chunks = LEN.div_ceil(CHUNK);
    for i in shuffled(chunks, seed.parse().unwrap()) {
        let end = ((i + 1) * CHUNK).min(LEN);
        r.write_at((i * CHUNK) as u64, &expected[i * CHUNK..end])
            .unwrap();
    }
    r.commit(Some(LEN as u64)).unwrap();
    if when == "commit" {
        println!("ready");
    }
    std::thread::sleep(LIMIT * 3); // the parent kills it
}

#[test]
fn a_process_killed_after_commit_or_during_its_background_sync_reopens_whole_or_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let expected = content();
    let (mut committed, mut resumable) = (0, 0);
    for round in 0..24u64 {
        let path = dir.path().join(format!("killed-{round}.bin"));
        // Even rounds: killed right after `commit` returned (the background
        // sync has just started, or not even that). Odd rounds: at a random
        // moment of the download, its commit or its sync.
        let when = if round % 2 == 0 { "commit" } else { "start" };
        let arg = format!("{}|{round}|{when}", path.display());
        let mut child =
            support::spawn_ready_child("child_downloading_and_committing", CHILD_ENV, &arg);
        let delay = if when == "commit" {
            u64::from(pattern(round, 1)[0] % 4)
        } else {
            u64::from(pattern(round, 1)[0])
        };
        support::sleep_for(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();

        let r = open(&path, OpenMode::Auto).unwrap();
        match r.status() {
            ResourceStatus::Committed { final_len } => {
                committed += 1;
                assert_eq!(final_len, Some(LEN as u64), "round {round}");
                assert!(
                    !journal_of(&path).exists(),
                    "round {round}: committed with a journal beside it"
                );
                assert!(
                    fs::read(&path).unwrap() == expected,
                    "round {round}: a committed file with wrong bytes"
                );
            }
            ResourceStatus::Active => {
                resumable += 1;
                support::assert_available_bytes_are(&r, &expected, &format!("round {round}"));
            }
            other => panic!("round {round}: reopened as {other:?}"),
        }
    }
    println!("reopened committed: {committed}, resumable: {resumable}");
}

#[test]
fn dropping_right_after_commit_leaves_no_journal_and_a_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.bin");
    let expected = content();
    {
        let r = open(&path, OpenMode::Auto).unwrap();
        for (i, chunk) in expected.chunks(CHUNK).enumerate() {
            r.write_at((i * CHUNK) as u64, chunk).unwrap();
        }
        r.commit(Some(LEN as u64)).unwrap();
        // Dropped without `sync`: the drop waits for the background.
    }
    assert!(!journal_of(&path).exists(), "the journal outlived the drop");
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(LEN as u64)
        }
    );
    assert!(fs::read(&path).unwrap() == expected);
}

#[test]
fn sync_after_commit_removes_the_journal_and_hands_the_file_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synced.bin");
    let expected = content();
    let r = open(&path, OpenMode::Auto).unwrap();
    for (i, chunk) in expected.chunks(CHUNK).enumerate().rev() {
        r.write_at((i * CHUNK) as u64, chunk).unwrap();
    }
    r.commit(Some(LEN as u64)).unwrap();
    // Readers of this handle see the committed file at once.
    let mut tail = [0; 7];
    assert_eq!(r.read_at(LEN as u64 - 7, &mut tail).unwrap(), 7);
    assert_eq!(tail, expected[LEN - 7..]);
    r.sync().unwrap();
    assert!(!journal_of(&path).exists());
    // The writer's lock went with the journal: another handle may read.
    let reader = open(&path, OpenMode::ReadOnly).unwrap();
    assert_eq!(reader.len(), Some(LEN as u64));
    // A second sync has nothing left to do, and says so.
    r.sync().unwrap();
}

#[test]
fn a_commit_cut_short_by_a_reactivate_or_a_replacement_waits_for_its_sync_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.bin");
    let expected = content();
    let r = open(&path, OpenMode::Auto).unwrap();
    r.write_at(0, &expected).unwrap();
    r.commit(Some(LEN as u64)).unwrap();
    // Right away, before the background is done: the new journal must not
    // be removed by the old commit's sync.
    r.reactivate().unwrap();
    r.write_at(0, b"new head").unwrap();
    drop(r);
    let resumed = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(resumed.status(), ResourceStatus::Active);
    assert!(resumed.contains_range(0..LEN as u64));
    let mut head = [0; 8];
    resumed.read_at(0, &mut head).unwrap();
    assert_eq!(&head, b"new head");

    resumed.commit(Some(LEN as u64)).unwrap();
    resumed.replace_all(b"replaced", true).unwrap();
    resumed.sync().unwrap();
    drop(resumed);
    assert!(!journal_of(&path).exists());
    assert_eq!(fs::read(&path).unwrap(), b"replaced");
}
