//! Races on either driver show only written bytes: reads racing a
//! shrinking commit, readers racing whole replacements (the old contents or
//! the new, whole), and writes racing a failure of a committed resource
//! (none lands). Each check runs on the memory and the file driver.

mod support;

use std::{
    path::Path,
    sync::{Arc, Barrier},
    thread,
};

use storage::{CancellationToken, MemResource, MmapResource, OpenMode, ResourceExt, StorageError};
use support::within;

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

/// With `hole`, byte 0..10 is never written, so reads take the path that
/// zero-fills holes rather than the lock-free prefix path.
fn reads_racing_a_shrinking_commit<R: ResourceExt + Clone>(fresh: impl Fn() -> R, hole: bool) {
    for round in 0..400 {
        let r = fresh();
        let start: usize = if hole { 10 } else { 0 };
        r.write_at(start as u64, &[0xAB; 100][start..]).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let reader = {
            let (r, barrier) = (r.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut buf = [0u8; 60];
                for _ in 0..2000 {
                    let n = r.read_at(40, &mut buf).unwrap();
                    assert!(n == 60 || n == 10, "round {round}: {n} bytes");
                    assert!(
                        buf[..n].iter().all(|&b| b == 0xAB),
                        "round {round}: a read of {n} bytes returned bytes never written"
                    );
                }
            })
        };
        barrier.wait();
        r.commit(Some(50)).unwrap();
        within("the reader", move || reader.join().unwrap());
    }
}

#[test]
fn reads_racing_a_shrinking_commit_return_only_written_bytes_in_memory() {
    for hole in [false, true] {
        reads_racing_a_shrinking_commit(|| MemResource::new(CancellationToken::new()), hole);
    }
}

#[test]
fn reads_racing_a_shrinking_commit_return_only_written_bytes_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicU64::new(0);
    for hole in [false, true] {
        reads_racing_a_shrinking_commit(
            || {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                open(&dir.path().join(format!("shrunk-{n}.bin")), OpenMode::Auto).unwrap()
            },
            hole,
        );
    }
}

fn readers_never_see_two_contents<R: ResourceExt + Clone>(r: &R, what: &str) {
    let (a, b) = (vec![b'a'; 1000], vec![b'b'; 3000]);
    r.replace_all(&a, false).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replacer = {
        let (r, stop, a, b) = (r.clone(), Arc::clone(&stop), a.clone(), b.clone());
        thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                r.replace_all(&b, false).unwrap();
                r.replace_all(&a, false).unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let mut whole = Vec::new();
    let mut buf = vec![0; 3000];
    let started = std::time::Instant::now();
    for read in 0..20_000 {
        r.read_into(&mut whole).unwrap();
        assert!(
            whole == a || whole == b,
            "{what}: read_into {read}: {} bytes",
            whole.len()
        );
        let n = r.read_at(0, &mut buf).unwrap();
        assert!(
            (n == 1000 && buf[..n] == a[..]) || (n == 3000 && buf[..n] == b[..]),
            "{what}: read_at {read}: {n} bytes"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let rounds = within("the replacer", move || replacer.join().unwrap());
    println!(
        "{what}: 2000 reads in {:?}, {rounds} replacement rounds",
        started.elapsed()
    );
    assert!(rounds > 0, "{what}");
}

#[test]
fn readers_racing_replacements_see_the_old_contents_or_the_new_whole() {
    let dir = tempfile::tempdir().unwrap();
    readers_never_see_two_contents(&MemResource::new(CancellationToken::new()), "mem");
    readers_never_see_two_contents(
        &open(&dir.path().join("mixed.bin"), OpenMode::Auto).unwrap(),
        "mmap",
    );
}

/// Rounds of `write_at` racing `fail` on a committed resource: no write may
/// land, neither inside the committed bytes nor past the committed end.
fn writes_racing_a_failure_never_land_in_a_committed_resource<R: ResourceExt + Clone>(
    fresh: impl Fn(usize) -> R,
    rounds: usize,
) {
    let start = Arc::new(Barrier::new(2));
    for round in 0..rounds {
        let r = fresh(round);
        r.write_at(0, &[1; 4096]).unwrap();
        if round % 2 == 0 {
            r.commit(Some(4096)).unwrap();
        } else {
            r.commit(None).unwrap();
        }
        let writer = {
            let (r, start) = (r.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                // Inside the committed bytes and past them.
                (0..20).find_map(|i| {
                    let at = if i % 2 == 0 { 0 } else { 8192 };
                    r.write_at(at, &[2; 16]).ok().map(|()| at)
                })
            })
        };
        start.wait();
        r.fail("the network went away".into());
        let landed = writer.join().unwrap();
        assert_eq!(landed, None, "round {round}: a write landed after commit");
        // The bytes the failure keeps, for `reactivate`.
        r.reactivate().unwrap();
        let mut back = [0; 16];
        assert_eq!(r.read_at(0, &mut back).unwrap(), 16);
        assert_eq!(back, [1; 16], "round {round}: the committed bytes changed");
        assert!(!r.contains_range(4096..4097), "round {round}: past the end");
    }
}

#[test]
fn writes_racing_a_failure_never_land_in_a_committed_memory_resource() {
    writes_racing_a_failure_never_land_in_a_committed_resource(
        |_| MemResource::new(CancellationToken::new()),
        4000,
    );
}

#[test]
fn writes_racing_a_failure_never_land_in_a_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    writes_racing_a_failure_never_land_in_a_committed_resource(
        |round| {
            open(
                &dir.path().join(format!("committed-{round}.bin")),
                OpenMode::Auto,
            )
            .unwrap()
        },
        400,
    );
}
