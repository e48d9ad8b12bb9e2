//! `AtomicChunked` across processes: a child downloading files is killed
//! (SIGKILL) at random instants (mid-download, mid-commit, mid-rename); the
//! canonical path is always absent or whole, and the next open resumes or
//! publishes exactly what was durable. One download per path across
//! processes; a failed download is never resumed.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use storage::{
    AtomicChunked, AvailabilityObserver, CancellationToken, OpenMode, ResourceExt, ResourceStatus,
    StorageError,
};
use support::{
    LIMIT, available,
    chunked::{Opens, claim_of, factory, journal_of, open, open_when_free, temp_of},
    pattern, shuffled,
};

const CHILD_ENV: &str = "STORAGE_CHUNKED_CHILD";

const FILE_LEN: usize = 256 * 1024;
const CHUNK: usize = 16 * 1024;

fn content(file: u64) -> Vec<u8> {
    pattern(1000 + file, FILE_LEN)
}

fn canonical(dir: &Path, file: u64) -> PathBuf {
    dir.join(format!("file-{file}.bin"))
}

/// Slows the commit down between the download's commit and its rename,
/// so that kills land there too.
struct SlowCommit;

impl AvailabilityObserver for SlowCommit {
    fn on_commit(&self, _final_len: u64) {
        std::thread::sleep(Duration::from_millis(20));
    }

    fn on_write(&self, _range: std::ops::Range<u64>) {}
}

/// In the child: downloads `file-0.bin`, `file-1.bin`, … one after the
/// other, each out of order with a sync every four chunks, then commits it.
#[test]
fn child_downloading_files() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let Some(dir) = arg.strip_prefix("files|") else {
        return;
    };
    println!("ready");
    for file in 0.. {
        let observer: Arc<dyn AvailabilityObserver> = Arc::new(SlowCommit);
        let factory = factory(
            CancellationToken::new(),
            OpenMode::ReadOnly,
            Arc::new(Opens::default()),
            Some(observer),
        );
        let chunked = AtomicChunked::open(canonical(Path::new(dir), file), factory).unwrap();
        let expected = content(file);
        for (n, chunk) in shuffled(FILE_LEN / CHUNK, file).into_iter().enumerate() {
            let at = chunk * CHUNK;
            chunked
                .write_at(at as u64, &expected[at..at + CHUNK])
                .unwrap();
            if n % 4 == 3 {
                chunked.sync().unwrap();
            }
            if n % 2 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        chunked.commit(Some(FILE_LEN as u64)).unwrap();
    }
}

/// What a kill left of one file, looked at before anything reopens it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    Nothing,
    /// An empty `<canonical>.tmp` (killed as the file was being created).
    Starting,
    /// `<canonical>.tmp` and its journal (or its unfinished mark): killed
    /// mid-download.
    Downloading,
    /// A committed `<canonical>.tmp`, no journal, the claim saying
    /// `Committing`: killed between the commit and the rename.
    CommittedNotRenamed,
    /// Only the canonical file.
    Published,
}

fn left(canonical: &Path) -> Left {
    let temp = temp_of(canonical);
    let unfinished =
        journal_of(&temp).exists() || storage_mmap::fs::unfinished_by_mark(&temp).unwrap_or(false);
    if temp.exists() && unfinished {
        Left::Downloading
    } else if temp.exists() && fs::metadata(&temp).unwrap().len() == 0 {
        Left::Starting
    } else if temp.exists() {
        assert_eq!(
            fs::read(claim_of(canonical)).unwrap(),
            b"C",
            "a temporary file neither unfinished nor marked committing by its claim"
        );
        Left::CommittedNotRenamed
    } else if canonical.exists() {
        Left::Published
    } else {
        Left::Nothing
    }
}

/// Reopens the download of file `file`, checks every byte it says it has,
/// finishes it, and checks the published file. Returns the bytes resumed.
fn resume_and_finish(dir: &Path, file: u64, round: u64) -> u64 {
    let canonical = canonical(dir, file);
    let expected = content(file);
    let chunked = open_when_free(&canonical).unwrap();
    if chunked.status() != ResourceStatus::Active {
        assert_eq!(
            chunked.status(),
            ResourceStatus::Committed {
                final_len: Some(FILE_LEN as u64)
            },
            "round {round}, file {file}"
        );
        assert!(fs::read(&canonical).unwrap() == expected);
        return FILE_LEN as u64;
    }
    let held = support::assert_available_bytes_are(
        &chunked,
        &expected,
        &format!("round {round}, file {file}: resumed"),
    );
    while let Some(gap) = chunked.next_gap(0, FILE_LEN as u64) {
        let (start, end) = (
            usize::try_from(gap.start).unwrap(),
            usize::try_from(gap.end).unwrap(),
        );
        chunked.write_at(gap.start, &expected[start..end]).unwrap();
    }
    chunked.commit(Some(FILE_LEN as u64)).unwrap();
    assert!(
        fs::read(&canonical).unwrap() == expected,
        "round {round}, file {file}: the published file differs"
    );
    held
}

#[test]
fn downloads_killed_at_random_instants_leave_no_partial_file_and_resume() {
    const MIN_ROUNDS: u64 = 20;
    const MAX_ROUNDS: u64 = 80;
    let root = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let mut resumed = Vec::new();
    for round in 0..MAX_ROUNDS {
        let dir = root.path().join(format!("round-{round}"));
        let arg = format!("files|{}", dir.display());
        let mut child = support::spawn_ready_child("child_downloading_files", CHILD_ENV, &arg);
        // A random instant: 0..~250 ms into the downloads.
        support::sleep_for(Duration::from_millis(u64::from(pattern(round, 1)[0])));
        child.kill().unwrap();
        child.wait().unwrap();

        // A round downloads a handful of files at most.
        let last = (0..1000)
            .take_while(|&file| {
                let canonical = canonical(&dir, file);
                canonical.exists() || temp_of(&canonical).exists()
            })
            .last();
        let last = last.unwrap_or(0);
        for file in 0..last {
            let canonical = canonical(&dir, file);
            assert!(
                fs::read(&canonical).unwrap() == content(file),
                "round {round}"
            );
            assert!(!temp_of(&canonical).exists(), "round {round}");
        }
        let canonical = canonical(&dir, last);
        // Whatever the instant: no file, or the whole one.
        if canonical.exists() {
            assert!(
                fs::read(&canonical).unwrap() == content(last),
                "round {round}: a partial or wrong file at {}",
                canonical.display()
            );
        }
        let state = left(&canonical);
        seen.push(state);
        let bytes = resume_and_finish(&dir, last, round);
        if state == Left::Downloading {
            resumed.push(bytes);
        }
        let downloading = seen.contains(&Left::Downloading) && resumed.iter().any(|&b| b > 0);
        if round + 1 >= MIN_ROUNDS && downloading && seen.contains(&Left::CommittedNotRenamed) {
            break;
        }
    }
    println!("left by each kill: {seen:?}; bytes resumed: {resumed:?}");
    assert!(
        seen.contains(&Left::CommittedNotRenamed),
        "no kill landed between a commit and its rename in {} rounds",
        seen.len()
    );
    assert!(
        resumed.iter().any(|&b| b > 0),
        "no kill left a download with durable bytes to resume"
    );
}

/// In the child: holds a download open (with durable bytes) until killed;
/// fails it first when asked.
#[test]
fn child_holding_a_download() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let Some((what, path)) = arg.split_once('|') else {
        return;
    };
    if what != "hold" && what != "fail" {
        return;
    }
    let chunked = open(Path::new(path)).unwrap();
    chunked.write_at(0, &content(7)[..100_000]).unwrap();
    chunked.sync().unwrap();
    if what == "fail" {
        chunked.fail("the server sent garbage".into());
    }
    println!("ready");
    std::thread::sleep(LIMIT * 3);
}

#[test]
fn a_second_download_in_another_process_is_refused_until_the_first_dies_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("shared.bin");
    let mut child = support::spawn_ready_child(
        "child_holding_a_download",
        CHILD_ENV,
        &format!("hold|{}", canonical.display()),
    );
    let err = open(&canonical).unwrap_err();
    assert!(
        matches!(&err, StorageError::TmpClaimed(p) if p == &temp_of(&canonical)),
        "{err}"
    );
    // Refused without touching the first one's download.
    assert!(journal_of(&temp_of(&canonical)).exists());
    assert!(!canonical.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let chunked = open_when_free(&canonical).unwrap();
    assert_eq!(chunked.status(), ResourceStatus::Active);
    assert_eq!(available(&chunked, FILE_LEN as u64), vec![0..100_000]);
    let mut buf = vec![0; 100_000];
    chunked.read_at(0, &mut buf).unwrap();
    assert!(buf == content(7)[..100_000]);
}

#[test]
fn a_failed_download_whose_process_dies_is_discarded_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("garbage.bin");
    let mut child = support::spawn_ready_child(
        "child_holding_a_download",
        CHILD_ENV,
        &format!("fail|{}", canonical.display()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(temp_of(&canonical).exists(), "the kill skipped the drop");
    let chunked = open_when_free(&canonical).unwrap();
    assert_eq!(chunked.status(), ResourceStatus::Active);
    assert_eq!(chunked.next_gap(0, 100), Some(0..100));
    assert!(!canonical.exists());
}
