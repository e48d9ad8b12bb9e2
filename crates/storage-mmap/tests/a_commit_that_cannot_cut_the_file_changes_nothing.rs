//! A commit whose cut of the file fails (an append-only file, `chattr +a`)
//! is refused and changes nothing: the resource stays active, and every
//! byte written still reads back — not `Ok(0)` from a mapping it lost.

#![cfg(target_os = "linux")]

use std::{os::unix::fs::MetadataExt, path::Path, process::Command};

use storage_core::{CancellationToken, ResourceExt, ResourceStatus, testing::pattern};
use storage_mmap::{MmapOptions, MmapResource};

/// `chattr FLAG path`; `false` when this process cannot (not root).
fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn a_commit_of_an_append_only_file_is_refused_and_every_byte_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.flac");
    let resource = MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
    let data = pattern(3, 100_000);
    resource.write_at(0, &data).unwrap();
    // Grown past 100,000 bytes: the commit must cut it.
    assert!(std::fs::metadata(&path).unwrap().len() > 100_000);
    assert_eq!(
        std::fs::metadata(&path).unwrap().uid(),
        0,
        "this test needs root (chattr), as CI runs it"
    );
    assert!(chattr("+a", &path), "chattr +a failed");
    let refused = resource.commit(Some(100_000));
    let status = resource.status();
    let mut back = Vec::new();
    let read = resource.read_into(&mut back);
    assert!(chattr("-a", &path));
    assert!(refused.is_err(), "the cut cannot have happened");
    assert_eq!(status, ResourceStatus::Active);
    assert_eq!(read.unwrap(), 100_000);
    assert!(back == data, "the bytes written read back");
    // Allowed again, the commit goes through.
    resource.commit(Some(100_000)).unwrap();
    back.clear();
    resource.read_into(&mut back).unwrap();
    assert!(back == data);
    drop(resource);
    assert!(std::fs::read(&path).unwrap() == data);
}
