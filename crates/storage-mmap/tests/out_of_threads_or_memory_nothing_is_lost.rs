//! A process out of threads or address space: the background work (a
//! commit's syncs, checkpoints) runs on the caller's thread, an open whose
//! mapping cannot be made is a clear error that leaves nothing behind, and
//! every byte written and committed is on disk, as with threads.
//!
//! The child runs under an address-space limit (`RLIMIT_AS`) a little above
//! what it uses: a thread's stack (2 MiB) cannot be mapped, small files can.
//! Setting the number of background threads to 0 gives the same degraded
//! path on purpose, in a second child.
#![cfg(target_os = "linux")] // `RLIMIT_AS` and /proc/self/{status,task}

mod support;

use std::{path::Path, process::Command};

use storage_core::{ResourceExt, ResourceStatus};
use storage_mmap::OpenMode;
use support::within;

const CHILD: &str = "STORAGE_OUT_OF_THREADS_CHILD";
const COMMITTED_LEN: usize = 100 * 1024;
const PARTIAL_LEN: usize = 10 * 1024;

fn byte(i: usize) -> u8 {
    u8::try_from(i * 7 % 251).unwrap()
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(byte).collect()
}

/// This process's address space in bytes (`VmSize`).
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    kib * 1024
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// What the child does once out of threads (or with 0 background threads):
/// commits and syncs one file, leaves one unfinished, and tries to open one
/// too large to map. Prints `done` when every step did what it should.
fn download_without_threads(dir: &Path, expect_out_of_memory: bool) {
    let before = threads();
    let committed = support::open_mmap(&dir.join("committed.bin"), None, OpenMode::Auto).unwrap();
    committed.write_at(0, &content(COMMITTED_LEN)).unwrap();
    committed.commit(Some(COMMITTED_LEN as u64)).unwrap();
    committed.sync().unwrap();
    drop(committed);

    let partial = support::open_mmap(&dir.join("partial.bin"), None, OpenMode::Auto).unwrap();
    partial.write_at(0, &content(PARTIAL_LEN)).unwrap();
    partial.sync().unwrap();
    drop(partial);

    // Dropped right after its commit: the drop finishes the commit itself.
    let dropped = support::open_mmap(&dir.join("dropped.bin"), None, OpenMode::Auto).unwrap();
    dropped.write_at(0, &content(PARTIAL_LEN)).unwrap();
    dropped.commit(Some(PARTIAL_LEN as u64)).unwrap();
    drop(dropped);

    if expect_out_of_memory {
        let huge = dir.join("huge.bin");
        let error = support::open_mmap(&huge, Some(256 << 20), OpenMode::Auto)
            .expect_err("a 256 MiB mapping under the limit");
        assert!(
            error.to_string().contains("huge.bin"),
            "the error names no path: {error}"
        );
        assert!(!huge.exists(), "the failed open left its file");
        assert!(
            !storage_mmap::fs::journal_path(&huge).exists(),
            "the failed open left a journal"
        );
    }
    assert_eq!(threads(), before, "a thread was started");
    println!("\nchild: done");
}

#[test]
fn child_out_of_threads() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
    if std::env::var("STORAGE_ZERO_THREADS").is_ok() {
        storage_mmap::set_background_threads(0);
        assert_eq!(storage_mmap::background_threads(), 0);
        download_without_threads(dir, false);
        return;
    }
    let limit = address_space() + (1 << 20);
    let limit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_AS, &raw const limit) };
    assert_eq!(set, 0, "setrlimit failed");
    assert!(
        std::thread::Builder::new().spawn(|| ()).is_err(),
        "the limit does not stop a thread: the test proves nothing"
    );
    download_without_threads(dir, true);
}

fn run_child(zero_threads: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = within("the child without threads", move || {
        let mut child = Command::new(exe);
        child
            .args(["--exact", "child_out_of_threads", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD, dir.path())
            .env_remove("RUST_MIN_STACK");
        if zero_threads {
            child.env("STORAGE_ZERO_THREADS", "1");
        }
        child.output().map(|output| (output, dir))
    });
    let (output, dir) = output.unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let complained = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.lines().any(|line| line == "child: done"),
        "the child failed: {said}\n{complained}"
    );
    dir
}

fn check_files(dir: &Path) {
    let committed = support::open_mmap(&dir.join("committed.bin"), None, OpenMode::Auto).unwrap();
    assert_eq!(
        committed.status(),
        ResourceStatus::Committed {
            final_len: Some(COMMITTED_LEN as u64)
        }
    );
    let mut bytes = Vec::new();
    committed.read_into(&mut bytes).unwrap();
    assert!(bytes == content(COMMITTED_LEN), "committed bytes differ");
    assert!(!storage_mmap::fs::journal_path(&dir.join("committed.bin")).exists());

    let dropped = std::fs::read(dir.join("dropped.bin")).unwrap();
    assert!(
        dropped == content(PARTIAL_LEN),
        "the dropped commit differs"
    );
    assert!(!storage_mmap::fs::journal_path(&dir.join("dropped.bin")).exists());

    let partial = support::open_mmap(&dir.join("partial.bin"), None, OpenMode::Auto).unwrap();
    assert_eq!(partial.status(), ResourceStatus::Active);
    assert!(partial.contains_range(0..PARTIAL_LEN as u64));
    let mut buf = vec![0; PARTIAL_LEN];
    assert_eq!(partial.read_at(0, &mut buf).unwrap(), PARTIAL_LEN);
    assert!(buf == content(PARTIAL_LEN), "resumed bytes differ");
}

#[test]
fn out_of_threads_and_address_space_the_work_runs_inline_and_nothing_is_lost() {
    let dir = run_child(false);
    check_files(dir.path());
}

#[test]
fn with_no_background_threads_the_work_runs_inline_and_nothing_is_lost() {
    let dir = run_child(true);
    check_files(dir.path());
}

/// This process's background workers (threads named `storage-background`).
fn background_workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        // The kernel keeps 15 bytes of a thread's name.
        .filter(|name| name.trim() == "storage-backgro")
        .count()
}

/// In a child of its own (the bound is the process's): a checkpoint
/// scheduled an hour ahead, its resource dropped, then 0 threads — no
/// worker stays to wait for it.
#[test]
fn child_setting_zero_threads() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let resource = storage_mmap::MmapResource::open(
        storage_core::CancellationToken::new(),
        storage_mmap::MmapOptions::new(Path::new(&dir).join("later.bin")).checkpoints(
            storage_mmap::CheckpointPolicy {
                max_delay: Some(std::time::Duration::from_secs(3600)),
                ..storage_mmap::CheckpointPolicy::default()
            },
        ),
    )
    .unwrap();
    resource.write_at(0, b"x").unwrap();
    // A new thread takes its name once it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while background_workers() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no worker to wait for the checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(resource);
    storage_mmap::set_background_threads(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while background_workers() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a worker waits for a task whose resource is gone"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!("\nchild: done");
}

#[test]
fn set_to_zero_threads_no_worker_stays_for_a_later_task() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = within("the child setting 0 threads", move || {
        Command::new(exe)
            .args(["--exact", "child_setting_zero_threads", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD, dir.path())
            .output()
    })
    .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.lines().any(|line| line == "child: done"),
        "the child failed: {said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
