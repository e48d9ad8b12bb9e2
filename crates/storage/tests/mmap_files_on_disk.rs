//! What the mmap driver does to files: sizes after each commit form, reopening
//! in each mode, growth, bad paths and offsets, and readers racing a shrinking
//! commit or growth.

mod support;

use std::{
    fs,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use storage::{
    DriverIo, OpenMode, ResourceExt, ResourceStatus, StorageError, WaitOutcome,
    mmap::DEFAULT_INITIAL_LEN,
};
use support::{open_mmap as open, pattern, within};

fn disk_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

#[test]
fn new_files_are_sized_to_initial_len_or_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("default.bin");
    let _a = open(&default, None, OpenMode::Auto).unwrap();
    assert_eq!(disk_len(&default), DEFAULT_INITIAL_LEN);
    assert_eq!(DEFAULT_INITIAL_LEN, 64 * 1024);
    let small = dir.path().join("small.bin");
    let _b = open(&small, Some(16), OpenMode::Auto).unwrap();
    assert_eq!(disk_len(&small), 16);
}

#[test]
fn parent_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/track.bin");
    let r = open(&path, None, OpenMode::Auto).unwrap();
    r.write_all(b"deep").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"deep");
}

#[test]
fn commit_sizes_the_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    // Some(n) shorter than the data: cut to n.
    let cut = dir.path().join("cut.bin");
    let r = open(&cut, None, OpenMode::Auto).unwrap();
    r.write_at(0, &pattern(1, 1000)).unwrap();
    r.commit(Some(600)).unwrap();
    assert_eq!(fs::read(&cut).unwrap(), pattern(1, 1000)[..600]);
    // Some(n) longer than the data: zero-extended to n.
    let long = dir.path().join("long.bin");
    let r = open(&long, Some(16), OpenMode::Auto).unwrap();
    r.write_at(0, b"abc").unwrap();
    r.commit(Some(100_000)).unwrap();
    assert_eq!(disk_len(&long), 100_000);
    // None: cut to the written extent, spare capacity gone.
    let none = dir.path().join("none.bin");
    let r = open(&none, None, OpenMode::Auto).unwrap();
    r.write_at(10, b"xyz").unwrap();
    assert_eq!(disk_len(&none), DEFAULT_INITIAL_LEN);
    r.commit(None).unwrap();
    assert_eq!(fs::read(&none).unwrap(), b"\0\0\0\0\0\0\0\0\0\0xyz");
    // Some(0): an empty file.
    let empty = dir.path().join("empty.bin");
    let r = open(&empty, None, OpenMode::Auto).unwrap();
    r.commit(Some(0)).unwrap();
    assert_eq!(disk_len(&empty), 0);
    assert!(r.is_empty());
}

#[test]
fn read_never_serves_spare_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("spare.bin"), None, OpenMode::Auto).unwrap();
    r.write_at(0, b"12345").unwrap();
    let mut buf = vec![0; 4096];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 5);
    assert_eq!(r.read_at(5, &mut buf).unwrap(), 0);
    assert!(r.driver().storage_len() >= 4096);
}

#[test]
fn auto_reopens_a_committed_file_committed_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auto.bin");
    open(&path, None, OpenMode::Auto)
        .unwrap()
        .write_all(b"hello")
        .unwrap();
    let r = open(&path, None, OpenMode::Auto).unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(5) });
    assert!(r.contains_range(0..5));
    assert_eq!(r.wait_range(0..100).unwrap(), WaitOutcome::Ready);
    assert!(matches!(r.write_at(0, b"j"), Err(StorageError::Committed)));
    // reactivate makes it writable again, keeping the bytes.
    r.reactivate().unwrap();
    r.write_at(5, b" world").unwrap();
    r.commit(None).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"hello world");
}

#[test]
fn auto_opens_an_empty_existing_file_active() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.bin");
    fs::write(&path, b"").unwrap();
    let r = open(&path, None, OpenMode::Auto).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert_eq!(disk_len(&path), DEFAULT_INITIAL_LEN);
}

#[test]
fn read_write_rewrites_a_committed_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.bin");
    fs::write(&path, b"AAAABBBB").unwrap();
    let r = open(&path, None, OpenMode::ReadWrite).unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(8) });
    r.write_at(4, b"CCCC").unwrap();
    let mut buf = [0; 8];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"AAAACCCC");
    assert_eq!(fs::read(&path).unwrap(), b"AAAACCCC");
    // Growing a committed file needs reactivate.
    assert!(matches!(
        r.write_at(6, b"DDDD"),
        Err(StorageError::Committed)
    ));
    assert_eq!(disk_len(&path), 8);
    // A missing file in ReadWrite mode opens as Auto would.
    let fresh = open(&dir.path().join("fresh.bin"), None, OpenMode::ReadWrite).unwrap();
    assert_eq!(fresh.status(), ResourceStatus::Active);
}

#[test]
fn read_only_serves_existing_files_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.bin");
    fs::write(&path, b"frozen").unwrap();
    let r = open(&path, None, OpenMode::ReadOnly).unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(6) });
    let mut buf = Vec::new();
    r.read_into(&mut buf).unwrap();
    assert_eq!(buf, b"frozen");
    assert!(matches!(r.write_at(0, b"x"), Err(StorageError::ReadOnly)));
    assert!(matches!(r.reactivate(), Err(StorageError::ReadOnly)));
    assert_eq!(fs::read(&path).unwrap(), b"frozen");

    let missing = dir.path().join("missing/ro.bin");
    let r = open(&missing, None, OpenMode::ReadOnly).unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(0) });
    assert!(r.is_empty());
    assert_eq!(r.wait_range(0..1).unwrap(), WaitOutcome::Eof);
    assert!(matches!(r.write_at(0, b"x"), Err(StorageError::ReadOnly)));
    assert!(!missing.exists() && !missing.parent().unwrap().exists());
}

#[test]
fn growth_from_16_bytes_to_several_mib_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.bin");
    let r = open(&path, Some(16), OpenMode::Auto).unwrap();
    let source = pattern(9, 6 << 20);
    let mut at = 0;
    let mut chunk = 7;
    let mut last_len = r.driver().storage_len();
    assert_eq!(last_len, 16);
    while at < source.len() {
        let end = (at + chunk).min(source.len());
        r.write_at(at as u64, &source[at..end]).unwrap();
        let len = r.driver().storage_len();
        if len != last_len {
            assert!(len >= 2 * last_len, "grew from {last_len} to only {len}");
            last_len = len;
        }
        at = end;
        chunk = chunk * 3 / 2 + 1;
    }
    let mut back = vec![0; source.len()];
    assert_eq!(r.read_at(0, &mut back).unwrap(), source.len());
    assert!(back == source, "bytes differ after growth");
    r.commit(Some(source.len() as u64)).unwrap();
    assert!(
        fs::read(&path).unwrap() == source,
        "file differs after commit"
    );
}

#[test]
fn a_directory_as_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [OpenMode::Auto, OpenMode::ReadWrite, OpenMode::ReadOnly] {
        let err = open(dir.path(), None, mode).unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn an_unwritable_place_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    // A path below a regular file, and one in /proc (refused even to root).
    for path in [
        file.join("sub/track.bin"),
        Path::new("/proc/storage-test/track.bin").into(),
    ] {
        let err = open(&path, None, OpenMode::Auto).unwrap_err();
        assert!(
            matches!(err, StorageError::Io(_)),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn a_write_at_one_tib_works_sparsely_or_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("sparse.bin"), None, OpenMode::Auto).unwrap();
    r.write_at(0, b"head").unwrap();
    match r.write_at(1 << 40, b"tail") {
        Ok(()) => assert!(r.contains_range((1 << 40)..(1 << 40) + 4)),
        Err(err) => {
            assert!(matches!(err, StorageError::Io(_)), "{err}");
            assert!(!r.contains_range((1 << 40)..(1 << 40) + 4));
        }
    }
    let mut buf = [0; 4];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"head");
    r.write_at(4, b"more").unwrap();
    assert_eq!(r.wait_range(0..8).unwrap(), WaitOutcome::Ready);
}

/// Readers hammer `read_at` near the end while the writer commits to a
/// shorter length: a read of a truncated page would be SIGBUS, which kills
/// the test binary.
#[test]
fn readers_survive_a_commit_that_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..40u64 {
        let path = dir.path().join(format!("shrink-{round}.bin"));
        let r = open(&path, None, OpenMode::Auto).unwrap();
        let len = 1 << 20;
        r.write_at(0, &pattern(round, len)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|i| {
                let (r, stop) = (r.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut buf = vec![0; 8192];
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads < 100 {
                        let at = (len as u64 - 8192 * (reads % 64 + 1)) + i;
                        r.read_at(at, &mut buf).unwrap();
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        r.commit(Some(4096 + round * 1000)).unwrap();
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(within("reader", move || reader.join().unwrap()) >= 100);
        }
        assert_eq!(disk_len(&path), 4096 + round * 1000);
    }
}

#[test]
fn readers_see_every_byte_while_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("growing.bin"), Some(16), OpenMode::Auto).unwrap();
    let source = Arc::new(pattern(3, 8 << 20));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (r, source) = (r.clone(), Arc::clone(&source));
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                let mut at = 0;
                while at < source.len() {
                    let want = (at + buf.len()).min(source.len());
                    assert_eq!(
                        r.wait_range(at as u64..want as u64).unwrap(),
                        WaitOutcome::Ready
                    );
                    let n = r.read_at(at as u64, &mut buf[..want - at]).unwrap();
                    assert_eq!(n, want - at);
                    assert!(buf[..n] == source[at..want], "bytes differ at {at}");
                    at = want;
                }
            })
        })
        .collect();
    for chunk in source.chunks(10_000).enumerate() {
        r.write_at((chunk.0 * 10_000) as u64, chunk.1).unwrap();
    }
    for reader in readers {
        within("reader", move || reader.join().unwrap());
    }
}
