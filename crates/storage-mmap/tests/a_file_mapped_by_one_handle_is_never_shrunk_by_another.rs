//! A file mapped by one handle is never shrunk by another (a read of a cut
//! page would be SIGBUS): a reactivate or a rewrite in place is refused
//! while another handle, or another process, maps the file; an active writer
//! keeps other handles out; two handles upgrading at once are both refused;
//! and opens racing such a writer never see holes as committed.

mod support;

use std::{
    fs,
    path::Path,
    sync::{Arc, Barrier},
    thread,
};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{MmapResource, OpenMode};
use support::{available, pattern, within};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

#[test]
fn a_handle_that_maps_the_file_keeps_other_handles_from_shrinking_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    fs::write(&path, pattern(3, 1 << 20)).unwrap();
    for mode in [OpenMode::Auto, OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let reader = open(&path, mode).unwrap();
        let writer = open(&path, OpenMode::Auto).unwrap();
        let err = writer.reactivate().unwrap_err();
        assert!(
            matches!(err, StorageError::Locked { .. }),
            "{mode:?}: {err}"
        );
        assert_eq!(
            writer.status(),
            ResourceStatus::Committed {
                final_len: Some(1 << 20)
            }
        );
        let mut buf = [0; 16];
        assert_eq!(reader.read_at((1 << 20) - 16, &mut buf).unwrap(), 16);
        drop(reader);
        // Alone, it may.
        support::retry_locked(|| writer.reactivate()).unwrap();
        writer.commit(Some(1 << 20)).unwrap();
    }
}

#[test]
fn a_read_write_rewrite_in_place_is_refused_while_another_handle_maps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rewrite.bin");
    fs::write(&path, [1u8; 4096]).unwrap();
    let reader = open(&path, OpenMode::ReadOnly).unwrap();
    let writer = open(&path, OpenMode::ReadWrite).unwrap();
    let err = writer.write_at(0, &[2; 16]).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    let mut buf = [0; 16];
    reader.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [1; 16]);
    drop(reader);
    support::retry_locked(|| writer.write_at(0, &[2; 16])).unwrap();
    assert_eq!(fs::read(&path).unwrap()[..16], [2; 16]);
}

#[test]
fn an_active_writer_keeps_readers_of_other_handles_out_and_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("active.bin");
    let writer = open(&path, OpenMode::Auto).unwrap();
    writer.write_at(0, &[1; 100]).unwrap();
    for mode in [OpenMode::Auto, OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open(&path, mode).unwrap_err();
        assert!(
            matches!(err, StorageError::Locked { .. }),
            "{mode:?}: {err}"
        );
    }
    writer.commit(Some(100)).unwrap();
    // The writer's lock goes once the commit is durable (`sync` waits).
    writer.sync().unwrap();
    let reader = open(&path, OpenMode::ReadOnly).unwrap();
    assert_eq!(reader.len(), Some(100));
}

/// Readers of one handle race another handle that tries, again and again,
/// to reactivate and shrink the file. A shrink under the reader's mapping
/// would kill the process with SIGBUS: every one is refused while the
/// reader maps the file.
#[test]
fn readers_survive_another_handle_trying_to_shrink_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.bin");
    let data = pattern(9, 256 * 1024);
    fs::write(&path, &data).unwrap();
    let reader = open(&path, OpenMode::ReadOnly).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let (reader, stop, data) = (reader.clone(), Arc::clone(&stop), data.clone());
        thread::spawn(move || {
            let mut buf = vec![0; 4096];
            let mut reads = 0u64;
            // At least one read, however the threads are scheduled.
            while reads == 0 || !stop.load(std::sync::atomic::Ordering::Acquire) {
                let at = data.len() - 4096;
                assert_eq!(reader.read_at(at as u64, &mut buf).unwrap(), 4096);
                assert!(buf == data[at..]);
                reads += 1;
            }
            reads
        })
    };
    let mut refused = 0;
    for _ in 0..200 {
        let other = open(&path, OpenMode::Auto).unwrap();
        if other.reactivate().is_ok() {
            other.commit(Some(10)).unwrap();
        } else {
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let reads = within("the reader", move || reading.join().unwrap());
    assert_eq!(refused, 200);
    assert!(reads > 0);
    assert_eq!(fs::read(&path).unwrap().len(), data.len());
}

#[test]
fn two_handles_reactivating_at_once_are_both_refused() {
    // Each maps the file; each upgrade must be refused while the other's
    // shared lock stands, and a refused upgrade must keep its own.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.bin");
    fs::write(&path, pattern(81, 64 * 1024)).unwrap();
    for round in 0..1000 {
        let a = open(&path, OpenMode::Auto).unwrap();
        let b = open(&path, OpenMode::Auto).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|r| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    r.reactivate()
                })
            })
            .collect();
        for racer in racers {
            let result = within("a reactivate", move || racer.join().unwrap());
            assert!(
                matches!(result, Err(StorageError::Locked { .. })),
                "round {round}: {result:?}"
            );
        }
        // Both still hold their locks: a third handle cannot shrink the file.
        let c = open(&path, OpenMode::Auto).unwrap();
        assert!(c.reactivate().is_err(), "round {round}");
    }
}

#[cfg(unix)] // A file made unwritable with chattr (support::Protected, Unix only).
#[test]
fn a_handle_opened_for_reading_only_can_reactivate_once_the_file_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("was-frozen.bin");
    fs::write(&path, pattern(91, 4096)).unwrap();
    let frozen = support::Protected::new(&path, support::Forbid::Write);
    let r = open(&path, OpenMode::Auto).unwrap();
    assert!(r.reactivate().is_err(), "not writable yet");
    drop(frozen);
    // Its own old handle's lock must not stand in its way.
    r.reactivate().unwrap();
    r.write_at(4096, b"more").unwrap();
    r.commit(None).unwrap();
    r.sync().unwrap();
    let rw = {
        let frozen = support::Protected::new(&path, support::Forbid::Write);
        let rw = open(&path, OpenMode::ReadWrite).unwrap();
        drop(frozen);
        rw
    };
    drop(r);
    support::retry_locked(|| rw.write_at(0, b"in place")).unwrap();
    assert_eq!(&fs::read(&path).unwrap()[..8], b"in place");
}

#[test]
fn opens_racing_a_writer_that_reactivates_and_drops_never_see_holes_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let original = pattern(92, 4096);
    for round in 0..60 {
        let path = dir.path().join(format!("growing-{round}.bin"));
        fs::write(&path, &original).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut grown = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) && grown < 20 {
                    let Ok(r) = open(&path, OpenMode::Auto) else {
                        continue;
                    };
                    if r.reactivate().is_ok() {
                        r.write_at(65_526 + grown, &[7; 10]).unwrap();
                        grown += 1;
                    }
                }
            })
        };
        for opened in 0..100 {
            let mode = if opened % 2 == 0 {
                OpenMode::Auto
            } else {
                OpenMode::ReadOnly
            };
            let Ok(r) = open(&path, mode) else { continue };
            match r.status() {
                ResourceStatus::Committed { final_len } => {
                    let mut all = Vec::new();
                    r.read_into(&mut all).unwrap();
                    assert_eq!(final_len, Some(4096), "round {round}: committed with holes");
                    assert!(all == original, "round {round}");
                }
                _ => {
                    for range in available(&r, 1 << 20) {
                        let mut buf = vec![0; usize::try_from(range.end - range.start).unwrap()];
                        r.read_at(range.start, &mut buf).unwrap();
                        for (i, byte) in buf.iter().enumerate() {
                            let at = usize::try_from(range.start).unwrap() + i;
                            let expected = if at < 4096 { original[at] } else { 7 };
                            assert_eq!(*byte, expected, "round {round}: byte {at}");
                        }
                    }
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        within("the writer", move || writer.join().unwrap());
    }
}
