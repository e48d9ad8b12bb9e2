//! `AtomicChunked`: a download written at `<canonical>.tmp` and published
//! whole at commit, what each step leaves on disk, what an open finds after
//! a crash, and what a hostile caller or file system gets (errors, never a
//! partial file at the canonical path).

mod support;

use std::{
    fs,
    io::ErrorKind,
    path::Path,
    sync::{Arc, Barrier, OnceLock},
    thread,
};

use storage::{
    Atomic, AtomicChunked, AvailabilityObserver, CancellationToken, MemResource, MmapOptions,
    MmapResource, OpenIntent, OpenMode, ResourceExt, ResourceStatus, StorageError, WaitOutcome,
};
use support::{
    PendingWait,
    chunked::{
        Opens, claim_of, factory, journal_name, journal_of, names_in, open, open_counted,
        open_when_free, temp_of,
    },
    pattern, within,
};

fn contents(resource: &impl ResourceExt) -> Vec<u8> {
    let mut buf = Vec::new();
    resource.read_into(&mut buf).unwrap();
    buf
}

/// An mmap resource of `path` (no `AtomicChunked`), to build by hand what
/// a crash leaves.
fn plain(path: &Path) -> MmapResource {
    support::open_mmap(path, None, OpenMode::Auto).unwrap()
}

/// An observer that runs `on_commit` in its commit hook.
struct OnCommit(Box<dyn Fn() + Send + Sync>);

impl AvailabilityObserver for OnCommit {
    fn on_commit(&self, _final_len: u64) {
        (self.0)();
    }

    fn on_write(&self, _range: std::ops::Range<u64>) {}
}

fn open_observed(
    canonical: &Path,
    observer: Arc<dyn AvailabilityObserver>,
) -> AtomicChunked<MmapResource> {
    let factory = factory(
        CancellationToken::new(),
        OpenMode::Auto,
        Arc::new(Opens::default()),
        Some(observer),
    );
    AtomicChunked::open(canonical.to_path_buf(), factory).unwrap()
}

#[test]
fn the_canonical_path_is_absent_until_commit_then_whole_durable_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("album").join("01.flac");
    let data = pattern(1, 300_000);
    let (chunked, opens) = open_counted(&canonical).unwrap();
    assert_eq!(chunked.canonical_path(), canonical);
    assert_eq!(chunked.path(), Some(canonical.as_path()));
    let reader = PendingWait::start(&chunked, 0..300_000);
    // Out of order, as a seeking downloader writes.
    chunked.write_at(200_000, &data[200_000..]).unwrap();
    chunked.write_at(0, &data[..100_000]).unwrap();
    assert!(!reader.has_returned());
    chunked.write_at(100_000, &data[100_000..200_000]).unwrap();
    assert_eq!(reader.outcome().unwrap(), WaitOutcome::Ready);
    assert!(!canonical.exists(), "a partial file at the canonical path");
    assert!(temp_of(&canonical).exists());
    assert_eq!(opens.reopen(), 0);
    assert!(format!("{chunked:?}").contains("writing"), "{chunked:?}");

    chunked.commit(Some(300_000)).unwrap();
    assert!(fs::read(&canonical).unwrap() == data);
    assert_eq!(opens.reopen(), 1);
    assert_eq!(
        chunked.status(),
        ResourceStatus::Committed {
            final_len: Some(300_000)
        }
    );
    assert_eq!(chunked.inner().path(), Some(canonical.as_path()));
    assert!(contents(&chunked) == data);
    assert_eq!(
        chunked.wait_range(300_000..300_001).unwrap(),
        WaitOutcome::Eof
    );
    chunked.sync().unwrap();
    assert!(format!("{chunked:?}").contains("published"), "{chunked:?}");
    assert_eq!(names_in(canonical.parent().unwrap()), ["01.flac"]);
    // The reopened file is ReadOnly here, as the factory asked.
    assert!(matches!(
        chunked.write_at(0, b"x"),
        Err(StorageError::ReadOnly)
    ));
}

#[test]
fn drop_before_commit_removes_the_temporary_file_its_journal_and_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("abandoned.bin");
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, &pattern(2, 100_000)).unwrap();
    chunked.sync().unwrap();
    let clone = chunked.clone();
    let journal = journal_name("abandoned.bin.tmp");
    assert_eq!(
        names_in(dir.path()),
        [
            "abandoned.bin.tmp",
            "abandoned.bin.tmp.claim",
            journal.as_str()
        ]
    );
    drop(chunked);
    assert!(temp_of(&canonical).exists(), "a clone still downloads");
    drop(clone);
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
    // Nothing to resume: a new download starts empty.
    let again = open(&canonical).unwrap();
    assert_eq!(again.next_gap(0, 10), Some(0..10));
}

#[test]
fn a_failed_download_is_refused_commit_keeps_its_bytes_for_reactivate_and_goes_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("failed.bin");
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, b"abc").unwrap();
    chunked.fail("bad checksum".into());
    let err = chunked.commit(Some(3)).unwrap_err();
    assert!(matches!(&err, StorageError::Failed(why) if why == "bad checksum"));
    assert!(!canonical.exists());
    assert_eq!(fs::read(claim_of(&canonical)).unwrap(), b"F");
    // Another download of the path waits for this one to go.
    assert!(matches!(open(&canonical), Err(StorageError::TmpClaimed(_))));
    chunked.reactivate().unwrap();
    assert!(chunked.contains_range(0..3));
    assert_eq!(fs::read(claim_of(&canonical)).unwrap(), b"W");
    chunked.write_at(3, b"d").unwrap();
    chunked.fail("gave up".into());
    drop(chunked);
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn a_second_download_of_the_same_path_is_refused_at_once_and_the_first_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("contested.bin");
    let data = pattern(3, 50_000);
    let first = open(&canonical).unwrap();
    first.write_at(0, &data[..25_000]).unwrap();
    let second = within("a second open on another thread", {
        let canonical = canonical.clone();
        move || open(&canonical).map(|_| ())
    });
    let err = second.unwrap_err();
    assert!(
        matches!(&err, StorageError::TmpClaimed(p) if p == &temp_of(&canonical)),
        "{err}"
    );
    assert!(
        err.to_string().contains("claimed by another download"),
        "{err}"
    );
    first.write_at(25_000, &data[25_000..]).unwrap();
    first.commit(Some(50_000)).unwrap();
    assert!(fs::read(&canonical).unwrap() == data);
    // Published: the path is free for the next download, which replaces
    // the file only when it commits in turn.
    let next = open(&canonical).unwrap();
    next.write_at(0, b"v2").unwrap();
    assert!(fs::read(&canonical).unwrap() == data);
    if !support::renames_over_open_files(dir.path()) {
        // The first maps the file, which this platform does not rename
        // over: refused and unchanged until the first lets go.
        let refused = next.commit(Some(2));
        assert!(support::refused_as_in_use(&refused), "{refused:?}");
        assert!(fs::read(&canonical).unwrap() == data);
        assert!(contents(&first) == data);
        drop(first);
        next.commit(Some(2)).unwrap();
        assert_eq!(fs::read(&canonical).unwrap(), b"v2");
        return;
    }
    next.commit(Some(2)).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"v2");
    assert!(contents(&first) == data, "the first keeps its own file");
}

#[test]
fn two_threads_committing_publish_once() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("raced.bin");
    let data = pattern(4, 70_000);
    let (chunked, opens) = open_counted(&canonical).unwrap();
    chunked.write_at(0, &data).unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let committers: Vec<_> = (0..4)
        .map(|_| {
            let (chunked, barrier) = (chunked.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                chunked.commit(Some(70_000))
            })
        })
        .collect();
    for committer in committers {
        within("a commit", move || committer.join().unwrap()).unwrap();
    }
    assert_eq!(opens.reopen(), 1);
    assert!(fs::read(&canonical).unwrap() == data);
    assert_eq!(names_in(dir.path()), ["raced.bin"]);
}

#[test]
fn a_complete_download_killed_before_its_rename_is_published_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("almost.bin");
    let data = pattern(5, 90_000);
    // What a kill between the commit and the rename leaves: a committed
    // temporary file (no journal) and a claim that says a commit began.
    plain(&temp_of(&canonical)).write_all(&data).unwrap();
    fs::write(claim_of(&canonical), b"C").unwrap();
    let (chunked, opens) = open_counted(&canonical).unwrap();
    assert_eq!(
        chunked.status(),
        ResourceStatus::Committed {
            final_len: Some(90_000)
        }
    );
    assert_eq!(opens.reopen(), 1);
    assert!(fs::read(&canonical).unwrap() == data);
    assert!(contents(&chunked) == data);
    assert_eq!(names_in(dir.path()), ["almost.bin"]);
}

#[test]
fn an_open_that_fails_on_a_download_a_crash_left_keeps_it_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("crashed.bin");
    // What a kill mid-download leaves: the file, its journal, the claim.
    drop({
        let download = plain(&temp_of(&canonical));
        download.write_at(0, b"durable bytes").unwrap();
        download
    });
    fs::write(claim_of(&canonical), b"W").unwrap();
    let failing = AtomicChunked::<MmapResource>::open(canonical.clone(), |_, _| {
        Err(StorageError::io(
            "cannot open",
            "nowhere",
            std::io::Error::other("the disk is not ready"),
        ))
    });
    assert!(failing.is_err());
    assert!(
        claim_of(&canonical).exists(),
        "the claim went, the download stayed"
    );
    let resumed = open(&canonical).unwrap();
    assert_eq!(resumed.status(), ResourceStatus::Active);
    assert_eq!(support::available(&resumed, 1 << 20), vec![0..13]);
}

#[test]
fn a_committing_mark_with_the_journal_still_there_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("resumed.bin");
    // Killed after the mark, before the commit removed the journal.
    drop({
        let download = plain(&temp_of(&canonical));
        download.write_at(1000, b"durable bytes").unwrap();
        download
    });
    fs::write(claim_of(&canonical), b"C").unwrap();
    let chunked = open(&canonical).unwrap();
    assert_eq!(chunked.status(), ResourceStatus::Active);
    assert_eq!(support::available(&chunked, 1 << 20), vec![1000..1013]);
    assert!(!canonical.exists());
    assert_eq!(fs::read(claim_of(&canonical)).unwrap(), b"W");
}

#[test]
fn what_nobody_vouched_for_at_the_temporary_path_is_never_published() {
    let dir = tempfile::tempdir().unwrap();
    for (name, leftover) in [
        // A partial file with no journal, as `kithara-storage` leaves one
        // after a kill.
        ("seed.bin", &b"half a download"[..]),
        // An empty file: `kithara-storage`'s claim, made before anything is
        // written.
        ("empty.bin", b""),
        // Another program's file that happens to have the name.
        ("report", b"someone's report"),
    ] {
        // No claim beside it: not ours. Refused, and left as it was.
        let canonical = dir.path().join(name);
        fs::write(temp_of(&canonical), leftover).unwrap();
        let err = open(&canonical).unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(ErrorKind::AlreadyExists),
            "{name}: {err}"
        );
        assert_eq!(fs::read(temp_of(&canonical)).unwrap(), leftover, "{name}");
        assert!(!claim_of(&canonical).exists(), "{name}");
        assert!(!canonical.exists(), "{name}");
        // Once its owner removes it, the path downloads.
        fs::remove_file(temp_of(&canonical)).unwrap();
        let chunked = open(&canonical).unwrap();
        assert_eq!(chunked.status(), ResourceStatus::Active, "{name}");
    }
    // A committed download whose claim says it was still being written
    // (a crash while a published file restarted): discarded.
    let canonical = dir.path().join("restarted.bin");
    drop({
        let download = plain(&temp_of(&canonical));
        download
            .write_at(0, b"nobody said this was complete")
            .unwrap();
        download.commit(Some(29)).unwrap();
        download
    });
    fs::write(claim_of(&canonical), b"W").unwrap();
    let chunked = open(&canonical).unwrap();
    assert_eq!(chunked.next_gap(0, 100), Some(0..100));
    assert!(!canonical.exists());
    drop(chunked);
    // A journaled download whose claim says it failed: discarded too.
    let canonical = dir.path().join("failed.bin");
    drop({
        let download = plain(&temp_of(&canonical));
        download.write_at(0, b"bytes of a failed download").unwrap();
        download
    });
    fs::write(claim_of(&canonical), b"F").unwrap();
    let chunked = open(&canonical).unwrap();
    assert_eq!(chunked.next_gap(0, 100), Some(0..100));
}

#[test]
fn commit_refuses_a_directory_at_the_canonical_path_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("in-the-way");
    fs::create_dir(&canonical).unwrap();
    fs::write(canonical.join("keep.txt"), b"mine").unwrap();
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, b"data").unwrap();
    let err = chunked.commit(Some(4)).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::IsADirectory), "{err}");
    assert_eq!(chunked.status(), ResourceStatus::Active);
    assert_eq!(fs::read(claim_of(&canonical)).unwrap_or_default(), b"");
    assert_eq!(fs::read(canonical.join("keep.txt")).unwrap(), b"mine");
    chunked.write_at(4, b" and more").unwrap();
    fs::remove_dir_all(&canonical).unwrap();
    chunked.commit(Some(13)).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"data and more");
}

#[test]
fn a_publication_that_fails_after_the_commit_is_finished_by_the_next_commit_or_open() {
    let dir = tempfile::tempdir().unwrap();
    for finish_by in ["commit", "open"] {
        let canonical = dir.path().join(format!("finished-by-{finish_by}.bin"));
        // A directory appears at the canonical path while the download
        // commits: the rename is refused after the commit.
        let in_the_way = canonical.clone();
        let observer = Arc::new(OnCommit(Box::new(move || {
            let _ = fs::create_dir(&in_the_way);
        })));
        let chunked = open_observed(&canonical, observer);
        chunked.write_at(0, b"complete").unwrap();
        let err = chunked.commit(Some(8)).unwrap_err();
        assert_eq!(err.io_kind(), Some(ErrorKind::IsADirectory), "{err}");
        assert_eq!(
            chunked.status(),
            ResourceStatus::Committed { final_len: Some(8) }
        );
        assert_eq!(fs::read(temp_of(&canonical)).unwrap(), b"complete");
        assert_eq!(fs::read(claim_of(&canonical)).unwrap(), b"C");
        // Committed but not published: still claimed (a second download
        // would otherwise publish it under this one's feet).
        assert!(matches!(open(&canonical), Err(StorageError::TmpClaimed(_))));
        fs::remove_dir(&canonical).unwrap();
        if finish_by == "commit" {
            chunked.commit(Some(8)).unwrap();
            assert_eq!(contents(&chunked), b"complete");
        } else {
            // Dropped: the complete download is kept, and published by
            // the next open.
            drop(chunked);
            assert!(!canonical.exists());
            // (A child forked beside this test may hold the claim an instant.)
            let reopened = open_when_free(&canonical).unwrap();
            assert_eq!(
                reopened.status(),
                ResourceStatus::Committed { final_len: Some(8) }
            );
        }
        assert_eq!(fs::read(&canonical).unwrap(), b"complete");
        assert!(!temp_of(&canonical).exists());
        assert!(!claim_of(&canonical).exists());
    }
}

#[test]
fn a_reopen_that_fails_after_the_rename_leaves_the_whole_file_serving_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("reopen.bin");
    let reopens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&reopens);
    let chunked = AtomicChunked::open(canonical.clone(), move |path, intent| {
        if intent == OpenIntent::Reopen
            && count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            return Err(StorageError::Failed("no file handles left".into()));
        }
        MmapResource::open(CancellationToken::new(), MmapOptions::new(path))
    })
    .unwrap();
    chunked.write_at(0, b"whole").unwrap();
    let err = chunked.commit(Some(5)).unwrap_err();
    assert!(matches!(err, StorageError::Failed(_)), "{err}");
    assert_eq!(fs::read(&canonical).unwrap(), b"whole");
    assert_eq!(
        chunked.status(),
        ResourceStatus::Committed { final_len: Some(5) }
    );
    assert_eq!(contents(&chunked), b"whole");
    assert!(!claim_of(&canonical).exists(), "the path is free");
    chunked.commit(Some(5)).unwrap();
    assert_eq!(reopens.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(chunked.inner().path(), Some(canonical.as_path()));
    assert_eq!(contents(&chunked), b"whole");
}

#[test]
fn a_fail_while_a_commit_reopens_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("raced-fail.bin");
    let (reopening_tx, reopening) = std::sync::mpsc::channel();
    let (go_on, go_on_rx) = std::sync::mpsc::channel::<()>();
    let go_on_rx = parking_lot::Mutex::new(go_on_rx);
    let chunked = AtomicChunked::open(canonical.clone(), move |path, intent| {
        if intent == OpenIntent::Reopen {
            reopening_tx.send(()).unwrap();
            go_on_rx.lock().recv_timeout(support::LIMIT).unwrap();
        }
        MmapResource::open(CancellationToken::new(), MmapOptions::new(path))
    })
    .unwrap();
    chunked.write_at(0, b"whole").unwrap();
    let committer = thread::spawn({
        let chunked = chunked.clone();
        move || chunked.commit(Some(5))
    });
    // Renamed, and reopening: now the download fails.
    reopening.recv_timeout(support::LIMIT).unwrap();
    let failer = thread::spawn({
        let chunked = chunked.clone();
        move || chunked.fail("late news".into())
    });
    support::wait_for_count("the failure reached the resource", 1, || {
        usize::from(matches!(
            chunked.inner().status(),
            ResourceStatus::Failed(_)
        ))
    });
    go_on.send(()).unwrap();
    within("the commit", move || committer.join().unwrap()).unwrap();
    within("the fail", move || failer.join().unwrap());
    assert_eq!(chunked.status(), ResourceStatus::Failed("late news".into()));
    assert_eq!(fs::read(&canonical).unwrap(), b"whole");
}

#[cfg(unix)] // Symlinks need a privilege on Windows.
#[test]
fn a_symlink_at_the_canonical_path_is_replaced_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, b"not yours").unwrap();
    let canonical = dir.path().join("link.bin");
    std::os::unix::fs::symlink(&victim, &canonical).unwrap();
    let chunked = open(&canonical).unwrap();
    chunked.write_all(b"download").unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"not yours");
    assert!(fs::symlink_metadata(&canonical).unwrap().is_file());
    assert_eq!(fs::read(&canonical).unwrap(), b"download");
}

#[cfg(unix)] // Symlinks need a privilege on Windows.
#[test]
fn a_temporary_file_replaced_from_outside_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, b"not yours").unwrap();
    let canonical = dir.path().join("swapped.bin");
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, b"download").unwrap();
    let temp = temp_of(&canonical);
    fs::remove_file(&temp).unwrap();
    std::os::unix::fs::symlink(&victim, &temp).unwrap();
    let err = chunked.commit(Some(8)).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::InvalidData), "{err}");
    assert!(!canonical.exists());
    assert_eq!(fs::read(&victim).unwrap(), b"not yours");
    assert!(fs::symlink_metadata(&temp).unwrap().is_symlink());
}

#[cfg(unix)] // FIFOs and symlinks are made with Unix calls.
#[test]
fn odd_things_at_the_temporary_path_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.bin");
    fs::write(&elsewhere, b"precious").unwrap();
    for odd in ["directory", "symlink", "fifo"] {
        let canonical = dir.path().join(format!("{odd}.bin"));
        let temp = temp_of(&canonical);
        match odd {
            "directory" => fs::create_dir(&temp).unwrap(),
            "symlink" => std::os::unix::fs::symlink(&elsewhere, &temp).unwrap(),
            _ => assert!(
                std::process::Command::new("mkfifo")
                    .arg(&temp)
                    .status()
                    .unwrap()
                    .success()
            ),
        }
        let err = within("an open beside a FIFO", {
            let canonical = canonical.clone();
            move || open(&canonical).map(|_| ())
        })
        .unwrap_err();
        assert_eq!(err.io_kind(), Some(ErrorKind::InvalidInput), "{odd}: {err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(fs::symlink_metadata(&temp).is_ok(), "{odd} removed");
        assert!(!claim_of(&canonical).exists(), "{odd}: claim left");
    }
    assert_eq!(fs::read(&elsewhere).unwrap(), b"precious");
}

#[test]
fn an_unfinished_mmap_download_at_the_canonical_path_is_not_published_over() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("busy.bin");
    let other = plain(&canonical);
    other.write_at(0, b"another writer's bytes").unwrap();
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, b"mine").unwrap();
    let err = chunked.commit(Some(4)).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::AlreadyExists), "{err}");
    assert_eq!(chunked.status(), ResourceStatus::Active);
    other.commit(None).unwrap();
    // Its journal goes once the commit is durable (`sync` waits for it);
    // until then the path is still that writer's.
    other.sync().unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"another writer's bytes");
    if !support::renames_over_open_files(dir.path()) {
        // That writer still maps its file, which this platform does not
        // rename over: refused and unchanged until it lets go.
        let refused = chunked.commit(Some(4));
        assert!(support::refused_as_in_use(&refused), "{refused:?}");
        assert_eq!(fs::read(&canonical).unwrap(), b"another writer's bytes");
        drop(other);
    }
    chunked.commit(Some(4)).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"mine");
}

#[test]
fn a_factory_that_does_not_open_a_writable_file_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("factory.bin");
    let memory = AtomicChunked::open(canonical.clone(), |_, _| {
        Ok(MemResource::new(CancellationToken::new()))
    })
    .unwrap_err();
    assert_eq!(memory.io_kind(), Some(ErrorKind::InvalidInput), "{memory}");
    let elsewhere = dir.path().join("elsewhere.bin");
    let wrong_path = AtomicChunked::open(canonical.clone(), move |_, _| {
        MmapResource::open(CancellationToken::new(), MmapOptions::new(&elsewhere))
    })
    .unwrap_err();
    assert_eq!(wrong_path.io_kind(), Some(ErrorKind::InvalidInput));
    let read_only = AtomicChunked::open(canonical.clone(), |path, _| {
        let options = MmapOptions {
            path: path.to_path_buf(),
            initial_len: None,
            mode: OpenMode::ReadOnly,
        };
        MmapResource::open(CancellationToken::new(), options)
    })
    .unwrap_err();
    assert!(read_only.to_string().contains("committed"), "{read_only}");
    assert!(!canonical.exists());
    assert!(!claim_of(&canonical).exists());
}

#[test]
fn paths_without_a_file_name_or_with_one_too_long_are_errors() {
    let err = open(Path::new("/")).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::InvalidInput), "{err}");
    let dir = tempfile::tempdir().unwrap();
    // Fits as a name, but not with ".tmp.claim" after it.
    let canonical = dir.path().join("n".repeat(250));
    let err = open(&canonical).unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn reactivate_after_publication_downloads_again_aside_and_the_file_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("grown.bin");
    let chunked = open(&canonical).unwrap();
    chunked.write_all(b"first part").unwrap();
    chunked.reactivate().unwrap();
    assert_eq!(chunked.status(), ResourceStatus::Active);
    assert!(chunked.contains_range(0..10));
    assert!(matches!(open(&canonical), Err(StorageError::TmpClaimed(_))));
    chunked.write_at(10, b", second part").unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"first part");
    chunked.commit(Some(23)).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"first part, second part");
    // Failed after its publication: the bytes come from the file itself.
    chunked.fail("re-check".into());
    chunked.reactivate().unwrap();
    assert!(chunked.contains_range(0..23));
    assert_eq!(contents(&chunked), b"first part, second part");
    chunked.commit(None).unwrap();
    assert_eq!(names_in(dir.path()), ["grown.bin"]);
}

#[test]
fn write_all_after_publication_replaces_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("index.bin");
    let chunked = Atomic::new(open(&canonical).unwrap());
    chunked.write_all(b"version one").unwrap();
    if !support::renames_over_open_files(dir.path()) {
        // The published file is held by this resource, which this platform
        // does not rename over: refused, and the file is as it was.
        let refused = chunked.write_all(b"two");
        assert!(support::refused_as_in_use(&refused), "{refused:?}");
        assert_eq!(fs::read(&canonical).unwrap(), b"version one");
        assert_eq!(contents(&chunked), b"version one");
        return;
    }
    chunked.write_all(b"two").unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"two");
    assert_eq!(contents(&chunked), b"two");
    chunked.write_all_durable(b"version three").unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"version three");
    assert_eq!(names_in(dir.path()), ["index.bin"]);
}

#[test]
fn commit_without_a_length_keeps_its_meaning_after_the_publication() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("unknown-length.bin");
    let (chunked, opens) = open_counted(&canonical).unwrap();
    chunked.write_at(0, b"abcd").unwrap();
    chunked.write_at(8, b"efgh").unwrap();
    chunked.commit(None).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"abcd\0\0\0\0efgh");
    assert_eq!(chunked.len(), None);
    assert_eq!(chunked.wait_range(4..8).unwrap(), WaitOutcome::Eof);
    assert_eq!(opens.reopen(), 0, "a reopen would take the hole for data");
}

#[test]
fn an_observer_calling_commit_from_its_hook_gets_an_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("reentrant.bin");
    let handle: Arc<OnceLock<AtomicChunked<MmapResource>>> = Arc::new(OnceLock::new());
    let answers = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let observer = Arc::new(OnCommit(Box::new({
        let (handle, answers) = (Arc::clone(&handle), Arc::clone(&answers));
        move || {
            if let Some(chunked) = handle.get() {
                answers
                    .lock()
                    .push(chunked.commit(None).map_err(|e| e.io_kind()));
                answers
                    .lock()
                    .push(chunked.reactivate().map_err(|e| e.io_kind()));
                chunked.fail("from the hook".into());
            }
        }
    })));
    let chunked = open_observed(&canonical, observer);
    handle.set(chunked.clone()).unwrap();
    chunked.write_at(0, b"data").unwrap();
    let result = within("a commit whose hook calls back", {
        let chunked = chunked.clone();
        move || chunked.commit(Some(4))
    });
    assert_eq!(
        *answers.lock(),
        [
            Err(Some(ErrorKind::Deadlock)),
            Err(Some(ErrorKind::Deadlock))
        ]
    );
    // The hook failed the download inside the commit: nothing published.
    assert!(matches!(result, Err(StorageError::Failed(_))), "{result:?}");
    assert!(!canonical.exists());
    assert_eq!(fs::read(claim_of(&canonical)).unwrap(), b"F");
}

#[test]
fn passthrough_has_no_temporary_file_and_answers_the_canonical_path() {
    let memory = MemResource::new(CancellationToken::new());
    let chunked = AtomicChunked::passthrough(memory, "virtual/segment.ts".into());
    chunked.write_at(0, b"in memory").unwrap();
    chunked.commit(Some(9)).unwrap();
    assert_eq!(contents(&chunked), b"in memory");
    assert_eq!(chunked.path(), Some(Path::new("virtual/segment.ts")));
    assert!(!Path::new("virtual").exists());
    chunked.reactivate().unwrap();
    chunked.write_all(b"again").unwrap();
    assert_eq!(contents(&chunked), b"again");
}

#[test]
fn every_step_leaves_exactly_the_files_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("f.bin");
    let chunked = open(&canonical).unwrap();
    let journal = journal_name("f.bin.tmp");
    let temp = temp_of(&canonical);
    // A new download is unfinished by its journal, or by its mark where the
    // file system keeps marks (then the journal comes with a checkpoint).
    let unfinished = |names: &[&str]| {
        let mut names: Vec<String> = names.iter().map(ToString::to_string).collect();
        if !storage_mmap::fs::unfinished_by_mark(&temp).unwrap() {
            names.push(journal.clone());
        }
        names
    };
    assert_eq!(
        names_in(dir.path()),
        unfinished(&["f.bin.tmp", "f.bin.tmp.claim"])
    );
    chunked.write_at(0, b"x").unwrap();
    assert!(journal_of(&temp).exists() || storage_mmap::fs::unfinished_by_mark(&temp).unwrap());
    chunked.commit(Some(1)).unwrap();
    assert_eq!(names_in(dir.path()), ["f.bin"]);
    chunked.reactivate().unwrap();
    assert_eq!(
        names_in(dir.path()),
        unfinished(&["f.bin", "f.bin.tmp", "f.bin.tmp.claim"])
    );
    drop(chunked);
    assert_eq!(names_in(dir.path()), ["f.bin"]);
    assert!(!journal_of(&canonical).exists());
}

#[test]
fn write_all_after_the_publication_publishes_a_new_file_and_never_writes_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("rewritten.bin");
    let chunked = open(&canonical).unwrap();
    chunked.write_at(0, b"old contents").unwrap();
    chunked.commit(Some(12)).unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"old contents");
    if !support::renames_over_open_files(dir.path()) {
        // The published file is held by this resource, which this platform
        // does not rename over: refused, and the file is as it was.
        let refused = chunked.write_all(b"new");
        assert!(support::refused_as_in_use(&refused), "{refused:?}");
        assert_eq!(fs::read(&canonical).unwrap(), b"old contents");
        assert_eq!(contents(&chunked), b"old contents");
        return;
    }
    // Shorter than the old contents: no old tail may survive.
    chunked.write_all(b"new").unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"new");
    assert_eq!(contents(&chunked), b"new");
    assert_eq!(
        chunked.status(),
        ResourceStatus::Committed { final_len: Some(3) }
    );
    // Through a factory that reopens read-write: still a new file.
    let canonical = dir.path().join("rewritten-rw.bin");
    let factory = factory(
        CancellationToken::new(),
        OpenMode::ReadWrite,
        Arc::new(Opens::default()),
        None,
    );
    let chunked = AtomicChunked::open(canonical.clone(), factory).unwrap();
    chunked.write_at(0, b"old contents").unwrap();
    chunked.commit(Some(12)).unwrap();
    chunked.write_all(b"new").unwrap();
    assert_eq!(fs::read(&canonical).unwrap(), b"new");
}

#[test]
fn a_factory_that_panics_on_the_reopen_leaves_a_publication_that_commit_finishes() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("panicky.bin");
    let armed = Arc::new(AtomicBool::new(true));
    let inner = factory(
        CancellationToken::new(),
        OpenMode::Auto,
        Arc::new(Opens::default()),
        None,
    );
    let trigger = Arc::clone(&armed);
    let chunked = AtomicChunked::open(canonical.clone(), move |path: &Path, intent| {
        assert!(
            !(intent == OpenIntent::Reopen && trigger.load(Ordering::SeqCst)),
            "the factory fails on the reopen"
        );
        inner(path, intent)
    })
    .unwrap();
    chunked.write_at(0, b"published").unwrap();
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chunked.commit(Some(9))));
    assert!(panicked.is_err());
    // Renamed before the panic: whole at the canonical path.
    assert_eq!(fs::read(&canonical).unwrap(), b"published");
    armed.store(false, Ordering::SeqCst);
    chunked.commit(Some(9)).unwrap();
    assert_eq!(
        chunked.status(),
        ResourceStatus::Committed { final_len: Some(9) }
    );
    assert_eq!(contents(&chunked), b"published");
    drop(chunked);
    assert_eq!(
        names_in(dir.path()),
        vec!["panicky.bin".to_owned()],
        "nothing but the published file is left"
    );
}
