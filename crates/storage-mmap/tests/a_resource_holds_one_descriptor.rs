//! An open resource holds one file descriptor, whatever its state (its
//! journal is opened only for the moment a checkpoint or a record needs
//! it), and a dropped one holds none. Out of descriptors, an open is a
//! clear error and every resource already open goes on whole.
#![cfg(target_os = "linux")] // counts descriptors in /proc/self/fd; `ulimit` through sh

mod support;

use std::{path::Path, process::Command};

use storage_core::{ResourceExt, StorageError};
use storage_mmap::{CheckpointPolicy, MmapOptions, MmapResource, OpenMode};
use support::within;

/// Descriptors of this process open on files in `dir` (other tests'
/// descriptors, pipes among them, do not count).
fn descriptors_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn open(path: &Path) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, OpenMode::Auto)
}

#[test]
fn fifty_active_resources_hold_fifty_descriptors_and_none_once_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let resources: Vec<_> = (0..50)
        .map(|i| {
            let resource = MmapResource::open(
                storage_core::CancellationToken::new(),
                MmapOptions {
                    path: dir.path().join(format!("{i}.bin")),
                    initial_len: None,
                    mode: OpenMode::Auto,
                }
                // A checkpoint for every write: the journal is written to.
                .checkpoints(CheckpointPolicy {
                    bytes: 1,
                    ..CheckpointPolicy::default()
                }),
            )
            .unwrap();
            resource.write_at(0, &[1; 4096]).unwrap();
            resource.set_expected_len(8192).unwrap();
            resource.write_at(4096, &[2; 100]).unwrap();
            resource.sync().unwrap();
            resource
        })
        .collect();
    let held = descriptors_in(dir.path());
    assert!(held <= 50, "50 active resources hold {held} descriptors");
    for resource in resources.iter().take(25) {
        resource.write_at(4196, &[3; 3996]).unwrap();
        resource.commit(Some(8192)).unwrap();
        resource.sync().unwrap();
    }
    let held = descriptors_in(dir.path());
    assert!(held <= 50, "25 committed, 25 active: {held} descriptors");
    drop(resources);
    assert_eq!(
        descriptors_in(dir.path()),
        0,
        "descriptors left by dropped resources"
    );
}

const CHILD: &str = "STORAGE_ONE_DESCRIPTOR_CHILD";

/// In a child under `ulimit -n 48`: opens resources until the process is
/// out of descriptors, then writes, commits and syncs every one it has.
#[test]
fn child_out_of_descriptors() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
    let mut opened = Vec::new();
    let error = loop {
        match open(&dir.join(format!("{}.bin", opened.len()))) {
            Ok(resource) => {
                resource.write_at(0, b"kept").unwrap();
                opened.push(resource);
            }
            Err(e) => break e,
        }
        assert!(opened.len() < 1000, "no limit reached");
    };
    assert!(
        error.to_string().contains("Too many open files"),
        "not a clear error: {error}"
    );
    assert!(opened.len() >= 30, "only {} opened under 48", opened.len());
    // A sync needs a descriptor for a moment (the directory's): with none
    // left at all (an open that needs only its file's took the last) it
    // says so, and loses nothing.
    let first = &opened[0];
    first.commit(Some(4)).unwrap();
    if let Err(error) = first.sync() {
        assert!(
            error.to_string().contains("Too many open files"),
            "not a clear error: {error}"
        );
    }
    // One let go: every other one is committed and made durable.
    drop(opened.pop());
    for resource in &opened {
        resource.commit(Some(4)).unwrap();
        resource.sync().unwrap();
    }
    println!("opened {}", opened.len());
}

#[test]
fn out_of_descriptors_an_open_is_refused_and_the_open_ones_go_on_whole() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = within("the child under ulimit -n 48", move || {
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 48 && exec \"$0\" --exact child_out_of_descriptors --nocapture")
            .arg(exe)
            .env(CHILD, dir.path())
            .output()
            .map(|output| (output, dir))
    });
    let (output, dir) = output.unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child failed: {said}");
    let opened: usize = said
        .lines()
        .find_map(|line| line.strip_prefix("opened "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the child says how many it opened");
    for i in 0..opened {
        let path = dir.path().join(format!("{i}.bin"));
        assert_eq!(std::fs::read(&path).unwrap(), b"kept", "{i}");
        assert!(
            !storage_mmap::fs::journal_path(&path).exists(),
            "{i}: journal left"
        );
    }
}
