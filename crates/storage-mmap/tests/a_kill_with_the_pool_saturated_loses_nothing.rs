//! Many downloads at once keep the process's few background threads busy:
//! checkpoints and commit finishings wait in the pool's queue. A process
//! killed at any instant of that — before a file's first checkpoint, while
//! its checkpoints queue, during a pooled finish or while it waits behind
//! others' — reopens every file committed and whole, or resumable with
//! only true bytes; never a committed file with a wrong byte.

mod support;

use std::{path::Path, time::Duration};

use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use storage_mmap::{CheckpointPolicy, MmapOptions, MmapResource, OpenMode, fs::journal_path};
use support::{LIMIT, pattern, shuffled};

const CHILD_ENV: &str = "STORAGE_SATURATED_POOL_CHILD";
/// Files downloaded at once: many more than the pool's threads.
const FILES: usize = 24;
const CHUNK: usize = 16 * 1024;

fn len_of(file: usize) -> usize {
    // From one chunk (no checkpoint before the commit) to 40 chunks.
    CHUNK * (1 + file * 39 / FILES) + file * 11
}

fn content(file: usize) -> Vec<u8> {
    pattern(file as u64 + 1000, len_of(file))
}

fn open(path: &Path) -> MmapResource {
    MmapResource::open(
        CancellationToken::new(),
        MmapOptions {
            path: path.to_path_buf(),
            initial_len: None,
            mode: OpenMode::Auto,
        }
        // A checkpoint falls due every 64 KiB: dozens queue in the pool.
        .checkpoints(CheckpointPolicy {
            bytes: 64 * 1024,
            min_interval: Duration::ZERO,
            max_delay: Some(Duration::from_millis(5)),
        }),
    )
    .unwrap()
}

/// In the child: every file downloaded out of order on its own thread,
/// interleaved with the others, then committed; even files dropped at once,
/// odd ones synced. Says "ready" at once, then works until killed (or done).
#[test]
fn child_downloading_many_files_at_once() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, seed) = arg.split_once('|').unwrap();
    let seed: u64 = seed.parse().unwrap();
    println!("ready");
    std::thread::scope(|scope| {
        for file in 0..FILES {
            let path = Path::new(dir).join(format!("{file}.bin"));
            scope.spawn(move || {
                let expected = content(file);
                let r = open(&path);
                let chunks = expected.len().div_ceil(CHUNK);
                for i in shuffled(chunks, seed + file as u64) {
                    let end = ((i + 1) * CHUNK).min(expected.len());
                    r.write_at((i * CHUNK) as u64, &expected[i * CHUNK..end])
                        .unwrap();
                }
                r.commit(Some(expected.len() as u64)).unwrap();
                if file % 2 == 1 {
                    r.sync().unwrap();
                }
            });
        }
    });
    std::thread::sleep(LIMIT * 3); // the parent kills it
}

#[test]
fn a_process_killed_while_the_pool_is_saturated_reopens_every_file_whole_or_resumable() {
    let (mut committed, mut resumable, mut absent) = (0, 0, 0);
    for round in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let arg = format!("{}|{round}", dir.path().display());
        let mut child =
            support::spawn_ready_child("child_downloading_many_files_at_once", CHILD_ENV, &arg);
        // From at once (nothing checkpointed yet) to after most commits.
        let delay = 10 + u64::from(pattern(round, 1)[0]) % 250;
        support::sleep_for(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();

        for file in 0..FILES {
            let what = format!("round {round}, file {file}");
            let path = dir.path().join(format!("{file}.bin"));
            if !path.exists() {
                absent += 1;
                continue;
            }
            let expected = content(file);
            let r = open(&path);
            match r.status() {
                ResourceStatus::Committed { final_len } => {
                    committed += 1;
                    assert_eq!(final_len, Some(expected.len() as u64), "{what}");
                    assert!(!journal_path(&path).exists(), "{what}: a journal stays");
                    let mut bytes = Vec::new();
                    r.read_into(&mut bytes).unwrap();
                    assert!(
                        bytes == expected,
                        "{what}: a committed file with wrong bytes"
                    );
                }
                ResourceStatus::Active => {
                    resumable += 1;
                    support::assert_available_bytes_are(&r, &expected, &what);
                }
                other => panic!("{what}: reopened as {other:?}"),
            }
        }
    }
    println!("committed: {committed}, resumable: {resumable}, absent: {absent}");
    assert!(
        resumable > 0,
        "no kill found a download unfinished: the test saw no saturated pool"
    );
}
