//! `Atomic`: whole-file replacement, visible through reads and on disk, with
//! no temporary file left behind, and whole after a crash at any instant.

mod support;

use std::{fs, path::Path, time::Duration};

use storage::{
    Atomic, CancellationToken, MemResource, MmapOptions, MmapResource, OpenMode, ResourceExt,
    ResourceStatus, StorageError, StorageResource,
};
use support::pattern;

fn open(path: &Path, mode: OpenMode) -> MmapResource {
    support::open_mmap(path, None, mode).unwrap()
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &str) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != keep)
        .collect()
}

fn contents(resource: &(impl ResourceExt + ?Sized)) -> Vec<u8> {
    let mut buf = Vec::new();
    resource.read_into(&mut buf).unwrap();
    buf
}

#[test]
fn replacement_is_visible_through_reads_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.bin");
    let atomic = Atomic::new(open(&path, OpenMode::Auto));
    atomic.write_all(b"first version").unwrap();
    assert_eq!(contents(&atomic), b"first version");
    assert_eq!(fs::read(&path).unwrap(), b"first version");
    for data in [&b"second version, longer than the first"[..], b"third", b""] {
        atomic.write_all(data).unwrap();
        assert_eq!(contents(&atomic), data);
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(
            atomic.status(),
            ResourceStatus::Committed {
                final_len: Some(data.len() as u64)
            }
        );
        assert!(atomic.contains_range(0..data.len() as u64));
        assert!(!atomic.contains_range(0..data.len() as u64 + 1));
    }
    assert_eq!(leftovers(dir.path(), "index.bin"), Vec::<String>::new());
}

#[test]
fn durable_replacement_also_works_through_storage_resource() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.bin");
    let atomic = Atomic::new(StorageResource::from(open(&path, OpenMode::ReadWrite)));
    let data = pattern(5, 100_000);
    atomic.write_all_durable(&data).unwrap();
    assert!(contents(&atomic) == data);
    assert!(fs::read(&path).unwrap() == data);
    assert_eq!(atomic.path(), Some(path.as_path()));
    assert_eq!(leftovers(dir.path(), "key.bin"), Vec::<String>::new());
}

#[test]
fn an_existing_committed_file_is_replaced_and_reopens_with_the_new_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("playlist.m3u8");
    fs::write(&path, b"old playlist").unwrap();
    let atomic = Atomic::new(open(&path, OpenMode::Auto));
    assert_eq!(contents(&atomic), b"old playlist");
    atomic.write_all(b"new").unwrap();
    assert_eq!(contents(&atomic), b"new");
    assert_eq!(contents(&open(&path, OpenMode::Auto)), b"new");
}

#[test]
fn a_refused_replacement_leaves_the_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frozen.bin");
    fs::write(&path, b"keep me").unwrap();
    let atomic = Atomic::new(open(&path, OpenMode::ReadOnly));
    assert!(matches!(
        atomic.write_all(b"nope"),
        Err(StorageError::ReadOnly)
    ));
    assert_eq!(fs::read(&path).unwrap(), b"keep me");
    assert_eq!(leftovers(dir.path(), "frozen.bin"), Vec::<String>::new());

    let cancel = CancellationToken::new();
    let path = dir.path().join("cancelled.bin");
    let atomic = Atomic::new(MmapResource::open(cancel.clone(), MmapOptions::new(&path)).unwrap());
    atomic.write_all(b"v1").unwrap();
    cancel.cancel();
    assert!(matches!(
        atomic.write_all(b"v2"),
        Err(StorageError::Cancelled)
    ));
    assert_eq!(fs::read(&path).unwrap(), b"v1");
    assert_eq!(leftovers(dir.path(), "frozen.bin").len(), 1);
}

#[test]
fn on_memory_it_is_reactivate_and_write_all() {
    let atomic = Atomic::new(MemResource::new(CancellationToken::new()));
    atomic.write_all(b"one").unwrap();
    atomic.write_all(b"two, longer").unwrap();
    assert_eq!(contents(&atomic), b"two, longer");
    assert_eq!(atomic.len(), Some(11));
    atomic.write_all_durable(b"3").unwrap();
    assert_eq!(contents(&atomic), b"3");
}

#[test]
fn box_dyn_resource_ext_compiles_for_every_resource_type() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<Box<dyn ResourceExt>> = vec![
        Box::new(MemResource::new(CancellationToken::new())),
        Box::new(open(&dir.path().join("a.bin"), OpenMode::Auto)),
        Box::new(StorageResource::from(MemResource::new(
            CancellationToken::new(),
        ))),
        Box::new(Atomic::new(open(&dir.path().join("b.bin"), OpenMode::Auto))),
    ];
    for resource in &all {
        resource.write_all(b"same").unwrap();
        assert_eq!(contents(resource.as_ref()), b"same");
    }
}

const CHILD_ENV: &str = "STORAGE_ATOMIC_CRASH_CHILD";

/// The two payloads the child alternates between; different lengths so a
/// mix would show.
fn payloads() -> [Vec<u8>; 2] {
    [pattern(11, 300_000), pattern(12, 170_000)]
}

/// In the child: replace the file with the two payloads, alternately, with
/// `write_all` and `write_all_durable`, until killed.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // only does something when started by the crash test
    };
    let atomic = Atomic::new(open(Path::new(&path), OpenMode::Auto));
    let payloads = payloads();
    println!("ready");
    for i in 0.. {
        // Alternate the plain and the durable replacement too.
        if i % 4 < 2 {
            atomic.write_all(&payloads[i % 2]).unwrap();
        } else {
            atomic.write_all_durable(&payloads[i % 2]).unwrap();
        }
    }
}

/// Kills a child in the middle of replacements at random moments: the file is
/// always exactly one payload.
#[test]
fn a_crash_at_any_instant_leaves_one_whole_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.bin");
    let payloads = payloads();
    fs::write(&path, &payloads[0]).unwrap();
    for round in 0..20u64 {
        let mut child =
            support::spawn_ready_child("crash_child_writer", CHILD_ENV, path.to_str().unwrap());
        // Kill it 0..20 ms into its replacements.
        support::sleep_for(Duration::from_micros(u64::from(pattern(round, 2)[1]) * 80));
        child.kill().unwrap();
        child.wait().unwrap();
        let on_disk = fs::read(&path).unwrap();
        assert!(
            on_disk == payloads[0] || on_disk == payloads[1],
            "round {round}: file of {} bytes is neither payload",
            on_disk.len()
        );
    }
}
