//! `set_unsynced_small_commits(true)`: small new files committed and
//! dropped with no disk sync, vouched for by their marks. A child process
//! writes files — some committed and dropped, some committed and held,
//! some left unfinished, one mid-write — and is killed; every file then
//! reopens committed and whole, or unfinished with no byte it did not have.

#![cfg(unix)] // Marks are extended attributes: Windows keeps journals instead.

mod support;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use storage_core::{ResourceExt, ResourceStatus, testing::pattern};
use storage_mmap::{OpenMode, fs::journal_path, set_unsynced_small_commits};

const CHILD: &str = "STORAGE_UNSYNCED_COMMIT_CHILD";
const FILES: u64 = 40;

fn data(i: u64) -> Vec<u8> {
    pattern(i, usize::try_from(1_000 + i * 3_001).unwrap())
}

/// In the child: file `i` is committed and dropped (`i % 4 == 0`),
/// committed and held (1), written and held unfinished (2), or written
/// halfway (3); then it says so and keeps writing until killed.
#[test]
fn child_writes_small_files() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    set_unsynced_small_commits(true);
    let dir = Path::new(&dir);
    let mut held = Vec::new();
    for i in 0..FILES {
        let r = support::open_mmap(&dir.join(format!("{i}.ts")), None, OpenMode::Auto).unwrap();
        let bytes = data(i);
        match i % 4 {
            0 | 1 => {
                r.write_at(0, &bytes).unwrap();
                r.commit(Some(bytes.len() as u64)).unwrap();
            }
            2 => r.write_at(0, &bytes).unwrap(),
            _ => r.write_at(0, &bytes[..bytes.len() / 2]).unwrap(),
        }
        if i % 4 != 0 {
            held.push(r);
        }
    }
    println!("ready");
    // Killed while it goes on making files.
    for i in FILES.. {
        let r = support::open_mmap(&dir.join(format!("{i}.ts")), None, OpenMode::Auto).unwrap();
        let bytes = data(i % FILES);
        r.write_at(0, &bytes).unwrap();
        r.commit(Some(bytes.len() as u64)).unwrap();
    }
}

#[test]
fn small_files_committed_without_a_sync_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writes_small_files", "--nocapture"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the child never got ready");
        match lines.next() {
            Some(Ok(line)) if line.contains("ready") => break,
            Some(_) => {}
            None => panic!("the child ended before it was ready"),
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut committed, mut unfinished) = (0, 0);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".storage-journal") {
            // An unfinished file checkpointed by the timer on a slow machine.
            continue;
        }
        let Some(i) = name.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
            panic!("an unexpected file: {name}");
        };
        let expected = data(i % FILES);
        let r = support::open_mmap(&path, None, OpenMode::Auto).unwrap();
        let mut all = Vec::new();
        r.read_into(&mut all).unwrap();
        if let ResourceStatus::Committed { .. } = r.status() {
            committed += 1;
            assert!(all == expected, "{name}: committed with wrong bytes");
            assert!(i >= FILES || i % 4 < 2, "{name} was never committed");
        } else {
            unfinished += 1;
            assert!(
                i >= FILES || i % 4 >= 2,
                "{name} was committed before the kill"
            );
            // Only true bytes, if any, are said to be there.
            let len = expected.len() as u64;
            let mut from = 0;
            while from < len {
                let gap = r.next_gap(from, len).unwrap_or(len..len);
                let start = usize::try_from(from).unwrap();
                let stop = usize::try_from(gap.start).unwrap().min(all.len());
                assert!(
                    all[start.min(stop)..stop] == expected[start.min(stop)..stop],
                    "{name}"
                );
                from = gap.end;
            }
        }
        assert!(
            !journal_path(&path).exists() || i % 4 >= 2 || i >= FILES,
            "{name}: a committed small file left a journal"
        );
    }
    assert!(committed >= FILES / 2, "{committed} committed");
    assert!(unfinished >= FILES / 2, "{unfinished} unfinished");
}
