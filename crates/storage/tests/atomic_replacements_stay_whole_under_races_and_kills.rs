//! `Atomic` replacements of a file stay whole under races and kills: clones
//! and other handles replacing at once, opens and readers (in this process
//! or another) beside them, a writer killed at random moments, a download
//! that took the path meanwhile; and a replacement refuses what it cannot
//! finish whole (a failed resource, a journal path that is a FIFO or a
//! symlink), keeps the file's mode, and reopens committed after a commit
//! that kept its journal.

mod support;

#[cfg(unix)] // Only the Unix-gated tests below run a command (mkfifo).
use std::process::Command;
use std::{
    fs,
    path::Path,
    sync::{Arc, Barrier},
    thread,
    time::Duration,
};

use storage::{
    Atomic, CancellationToken, MemResource, MmapResource, OpenMode, ResourceExt, ResourceStatus,
    StorageError, StorageResource,
};
use support::{chunked::names_in, journal_of, pattern, within};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

const CHILD_ENV: &str = "STORAGE_ATOMIC_RACE_CHILD";

/// Starts both replacements at once, on two threads, and waits (bounded)
/// for both to succeed.
fn race_replacements(racers: [(Atomic<MmapResource>, Vec<u8>); 2]) {
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = racers
        .into_iter()
        .map(|(atomic, payload)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                atomic.write_all(&payload)
            })
        })
        .collect();
    for racer in racers {
        within("a racing replacement", move || racer.join().unwrap()).unwrap();
    }
}

#[test]
fn racing_atomic_replacements_on_clones_leave_one_whole_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raced.bin");
    let a = vec![b'A'; 3000];
    let b = vec![b'B'; 1000];
    let atomic = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    for round in 0..300 {
        race_replacements([(atomic.clone(), a.clone()), (atomic.clone(), b.clone())]);
        let on_disk = fs::read(&path).unwrap();
        assert!(
            on_disk == a || on_disk == b,
            "round {round}: {} bytes on disk",
            on_disk.len()
        );
        let mut seen = Vec::new();
        atomic.read_into(&mut seen).unwrap();
        assert!(
            seen == a || seen == b,
            "round {round}: the resource reads {} bytes",
            seen.len()
        );
        assert_eq!(atomic.len(), Some(seen.len() as u64), "round {round}");
    }
    assert_eq!(names_in(dir.path()), vec!["raced.bin".to_owned()]);
}

#[test]
fn racing_replacements_by_two_handles_of_one_path_leave_one_whole_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-handles.bin");
    let a = vec![b'A'; 3000];
    let b = vec![b'B'; 1000];
    fs::write(&path, b"old").unwrap();
    let first = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    let second = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    if !support::renames_over_open_files(dir.path()) {
        // Each handle maps the file the other would rename over: both are
        // refused, and the file is as it was.
        for (atomic, payload) in [(&first, &a), (&second, &b)] {
            let replaced = atomic.write_all(payload);
            assert!(support::refused_as_in_use(&replaced), "{replaced:?}");
        }
        assert_eq!(fs::read(&path).unwrap(), b"old");
        return;
    }
    for round in 0..200 {
        race_replacements([(first.clone(), a.clone()), (second.clone(), b.clone())]);
        let on_disk = fs::read(&path).unwrap();
        assert!(
            on_disk == a || on_disk == b,
            "round {round}: {} bytes on disk",
            on_disk.len()
        );
        // Each handle reads the payload it wrote, whole.
        let mut seen = Vec::new();
        first.read_into(&mut seen).unwrap();
        assert!(seen == a, "round {round}");
        second.read_into(&mut seen).unwrap();
        assert!(seen == b, "round {round}");
    }
}

#[test]
fn a_handle_whose_file_was_replaced_refuses_to_reactivate_the_old_one() {
    // Another handle replaced the file by rename: reactivating the old,
    // unlinked file would journal its ranges beside the new file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replaced.bin");
    fs::write(&path, [1u8; 100]).unwrap();
    let stale = open(&path, OpenMode::Auto).unwrap();
    let replacer = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    let outcome = replacer.write_all(&[2u8; 50]);
    if !support::renames_over_open_files(dir.path()) {
        // The stale handle maps the file: the replacement is refused and
        // changes nothing.
        assert!(support::refused_as_in_use(&outcome), "{outcome:?}");
        drop((stale, replacer));
        assert_eq!(fs::read(&path).unwrap(), [1u8; 100]);
        assert!(!journal_of(&path).exists());
        return;
    }
    outcome.unwrap();
    assert!(stale.reactivate().is_err());
    let mut buf = [0; 100];
    assert_eq!(stale.read_at(0, &mut buf).unwrap(), 100);
    assert_eq!(buf, [1; 100], "the old handle keeps reading its own file");
    drop((stale, replacer));
    assert_eq!(fs::read(&path).unwrap(), [2u8; 50]);
    assert!(!journal_of(&path).exists());
}

/// In the child: replaces the file over and over, alternately plain and durable.
#[test]
fn child_replacing_in_a_loop() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let payloads = [pattern(31, 200_000), pattern(32, 70_000)];
    let atomic = Atomic::new(open(Path::new(&path), OpenMode::Auto).unwrap());
    println!("ready");
    for i in 0.. {
        if i % 4 < 2 {
            atomic.write_all(&payloads[i % 2]).unwrap();
        } else {
            atomic.write_all_durable(&payloads[i % 2]).unwrap();
        }
    }
}

#[test]
fn an_atomic_writer_killed_at_random_moments_reopens_committed_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replaced.bin");
    let payloads = [pattern(31, 200_000), pattern(32, 70_000)];
    fs::write(&path, &payloads[0]).unwrap();
    for round in 0..40u64 {
        let mut child = support::spawn_ready_child(
            "child_replacing_in_a_loop",
            CHILD_ENV,
            path.to_str().unwrap(),
        );
        support::sleep_for(Duration::from_micros(u64::from(pattern(round, 2)[1]) * 60));
        child.kill().unwrap();
        child.wait().unwrap();
        let reopened = open(&path, OpenMode::Auto).unwrap();
        let status = reopened.status();
        assert!(
            matches!(status, ResourceStatus::Committed { .. }),
            "round {round}: reopened {status:?}"
        );
        let mut all = Vec::new();
        reopened.read_into(&mut all).unwrap();
        assert!(
            all == payloads[0] || all == payloads[1],
            "round {round}: {} bytes",
            all.len()
        );
    }
}

fn a_failed_resource_refuses_a_replacement<R: ResourceExt>(resource: R, what: &str) {
    let atomic = Atomic::new(resource);
    atomic.write_all(b"before").unwrap();
    atomic.fail("upstream broke".into());
    let err = atomic.write_all(b"after").unwrap_err();
    assert!(matches!(err, StorageError::Failed(_)), "{what}: {err}");
    let err = atomic.write_all_durable(b"after").unwrap_err();
    assert!(matches!(err, StorageError::Failed(_)), "{what}: {err}");
    assert_eq!(
        atomic.status(),
        ResourceStatus::Failed("upstream broke".into()),
        "{what}"
    );
    if let Some(path) = atomic.path() {
        assert_eq!(fs::read(path).unwrap(), b"before", "{what}");
    }
    // An explicit reactivate clears the failure; then it replaces.
    atomic.reactivate().unwrap();
    atomic.write_all(b"after").unwrap();
    let mut seen = Vec::new();
    atomic.read_into(&mut seen).unwrap();
    assert_eq!(seen, b"after", "{what}");
}

#[test]
fn a_failed_resource_refuses_an_atomic_replacement_on_both_drivers() {
    let dir = tempfile::tempdir().unwrap();
    a_failed_resource_refuses_a_replacement(MemResource::new(CancellationToken::new()), "mem");
    a_failed_resource_refuses_a_replacement(
        open(&dir.path().join("failed.bin"), OpenMode::Auto).unwrap(),
        "mmap",
    );
    a_failed_resource_refuses_a_replacement(
        StorageResource::from(open(&dir.path().join("failed2.bin"), OpenMode::Auto).unwrap()),
        "StorageResource",
    );
}

/// In the child: maps a committed file read-only and reads it until killed.
#[test]
fn child_reading_a_committed_file() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let r = open(Path::new(&path), OpenMode::ReadOnly).unwrap();
    println!("mapped: ready");
    let mut buf = vec![0; 4096];
    loop {
        r.read_at(r.len().unwrap() - 4096, &mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_reader_in_another_process_keeps_this_one_from_shrinking_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cross-process.bin");
    fs::write(&path, pattern(71, 1 << 20)).unwrap();
    let mut child = support::spawn_ready_child(
        "child_reading_a_committed_file",
        CHILD_ENV,
        path.to_str().unwrap(),
    );
    let r = open(&path, OpenMode::Auto).unwrap();
    let err = r.reactivate().unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    // Replacing by rename is allowed: the child keeps its own file.
    let replaced = Atomic::new(r.clone()).write_all(b"short");
    if !support::renames_over_open_files(dir.path()) {
        // Not where the child's mapping keeps the file from being renamed
        // over: refused, and the file is as it was.
        assert!(support::refused_as_in_use(&replaced), "{replaced:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(fs::read(&path).unwrap(), pattern(71, 1 << 20));
        return;
    }
    replaced.unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the reader died");
    child.kill().unwrap();
    child.wait().unwrap();
    // This process's handle maps the new file: a second one may not shrink it.
    let fresh = open(&path, OpenMode::Auto).unwrap();
    assert!(matches!(
        fresh.reactivate(),
        Err(StorageError::Locked { .. })
    ));
    drop(r);
    support::retry_locked(|| fresh.reactivate()).unwrap();
    fresh.commit(Some(2)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"sh");
}

#[test]
fn opens_racing_a_replacement_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopened.bin");
    let (a, b) = (vec![b'a'; 1000], vec![b'b'; 3000]);
    let writer = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    writer.write_all(&a).unwrap();
    // Where a file that another handle maps cannot be renamed over, a
    // replacement that meets an open is refused (and changes nothing).
    let may_be_refused = !support::renames_over_open_files(dir.path());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replacer = {
        let (writer, stop, a, b) = (writer.clone(), Arc::clone(&stop), a.clone(), b.clone());
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                for payload in [&b, &a] {
                    let replaced = writer.write_all(payload);
                    if !(may_be_refused && support::refused_as_in_use(&replaced)) {
                        replaced.unwrap();
                    }
                }
            }
        })
    };
    for opened in 0..3000 {
        let mode = if opened % 2 == 0 {
            OpenMode::Auto
        } else {
            OpenMode::ReadOnly
        };
        let r = open(&path, mode).unwrap();
        let mut seen = Vec::new();
        r.read_into(&mut seen).unwrap();
        assert!(
            seen == a || seen == b,
            "open {opened}: {} bytes",
            seen.len()
        );
        assert_eq!(r.len(), Some(seen.len() as u64), "open {opened}");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    within("the replacer", move || replacer.join().unwrap());
}

#[cfg(unix)] // A journal pinned with chattr (support::Protected, Unix only).
#[test]
fn a_replacement_after_a_commit_that_kept_its_journal_reopens_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept-journal.bin");
    let r = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    r.write_at(0, &[b'o'; 4096]).unwrap();
    r.write_at(8192, &[b'o'; 4096]).unwrap();
    r.sync().unwrap();
    let pinned = support::Protected::new(&journal_of(&path), support::Forbid::Unlink);
    r.commit(None).unwrap();
    assert!(r.sync().is_err(), "the journal could not go");
    r.write_all(&vec![b'n'; 20_000]).unwrap();
    drop(r);
    drop(pinned);
    let reopened = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(
        reopened.status(),
        ResourceStatus::Committed {
            final_len: Some(20_000)
        }
    );
    let mut all = Vec::new();
    reopened.read_into(&mut all).unwrap();
    assert!(all == vec![b'n'; 20_000]);
}

#[cfg(unix)] // Unix file modes.
#[test]
fn a_replacement_keeps_the_file_mode_whoever_makes_it() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let mode_of = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    // The writer of a fresh file.
    let path = dir.path().join("fresh.bin");
    let fresh = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fresh.write_all(b"v1").unwrap();
    assert_eq!(mode_of(&path), 0o644);
    // A reactivated one.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    fresh.reactivate().unwrap();
    fresh.write_all(b"v2").unwrap();
    assert_eq!(mode_of(&path), 0o640);
    // A committed one.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
    fresh.write_all(b"v3").unwrap();
    assert_eq!(mode_of(&path), 0o604);
}

// A file removed while a handle holds it keeps its name on Windows (delete
// pending until the last handle closes): no download can take the path there.
#[cfg(unix)]
#[test]
fn a_replacement_does_not_rename_over_a_download_that_took_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.bin");
    fs::write(&path, b"old").unwrap();
    let atomic = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    fs::remove_file(&path).unwrap();
    let download = open(&path, OpenMode::Auto).unwrap();
    download.write_at(0, &[7; 4000]).unwrap();
    let err = atomic.write_all(&[9; 100]).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    download.commit(Some(4000)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), vec![7; 4000]);
}

#[cfg(unix)] // FIFOs and symlinks are made with Unix calls.
#[test]
fn a_journal_path_that_is_not_a_regular_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo.bin");
    fs::write(&path, b"committed").unwrap();
    let status = Command::new("mkfifo")
        .arg(journal_of(&path))
        .status()
        .unwrap();
    assert!(status.success());
    for mode in [OpenMode::ReadOnly, OpenMode::Auto] {
        let path = path.clone();
        let opened = within("an open beside a FIFO journal", move || {
            open(&path, mode).map(drop)
        });
        assert!(opened.is_err(), "{mode:?}");
    }
    fs::remove_file(journal_of(&path)).unwrap();
    let atomic = Atomic::new(open(&path, OpenMode::Auto).unwrap());
    Command::new("mkfifo")
        .arg(journal_of(&path))
        .status()
        .unwrap();
    let replaced = within("a replacement beside a FIFO journal", move || {
        atomic.write_all(b"new").map(|()| atomic)
    });
    assert!(replaced.is_err());
    assert_eq!(fs::read(&path).unwrap(), b"committed");

    // A symlink there sends nothing through it.
    fs::remove_file(journal_of(&path)).unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"STJRNL01").unwrap();
    std::os::unix::fs::symlink(&target, journal_of(&path)).unwrap();
    assert!(open(&path, OpenMode::Auto).is_err());
    // A replacement meeting it refuses rather than mark the target.
    assert!(
        Atomic::new(open_after_removing_link(&path))
            .write_all(b"x")
            .is_err()
    );
    assert_eq!(fs::read(&path).unwrap(), b"committed");
    assert_eq!(fs::read(&target).unwrap(), b"STJRNL01");
}

/// Opens `path` after taking away the symlink at its journal path, and
/// puts the link back, so the handle meets it when it replaces.
#[cfg(unix)] // Symlinks need a privilege on Windows.
fn open_after_removing_link(path: &Path) -> MmapResource {
    let link = journal_of(path);
    let target = fs::read_link(&link).unwrap();
    fs::remove_file(&link).unwrap();
    let r = open(path, OpenMode::Auto).unwrap();
    std::os::unix::fs::symlink(target, &link).unwrap();
    r
}

#[test]
fn a_long_replacement_never_lands_on_a_writer_that_took_the_path_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.bin");
    fs::write(&path, b"old").unwrap();
    for round in 0..4u64 {
        let slow = Atomic::new(open(&path, OpenMode::Auto).unwrap());
        let big = Arc::new(pattern(round, 64 << 20));
        let replacing = {
            let big = Arc::clone(&big);
            thread::spawn(move || slow.write_all(&big))
        };
        // Meanwhile: another handle replaces the file, and a third starts
        // writing the new one.
        support::sleep_for(Duration::from_millis(5 + 10 * round));
        let _ = Atomic::new(support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap())
            .write_all(b"short");
        let writer = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
        let took = writer.reactivate().is_ok();
        if took {
            writer.write_at(0, &[5; 100]).unwrap();
        }
        let slow_result = within("the long replacement", move || replacing.join().unwrap());
        if took {
            writer.commit(Some(100)).unwrap();
            let mut own = Vec::new();
            writer.read_into(&mut own).unwrap();
            let on_disk = fs::read(&path).unwrap();
            assert!(
                on_disk == own,
                "round {round}: the writer committed {} bytes but the path holds {} (the long replacement: {slow_result:?})",
                own.len(),
                on_disk.len()
            );
        }
        drop(writer);
    }
}
