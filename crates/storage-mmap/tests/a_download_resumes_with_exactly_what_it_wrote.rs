//! A download resumes with exactly what it wrote: after a drop, a torn
//! journal, a file cut short from outside, or a process killed mid-download;
//! with one writer per file and a full disk as a clear error.

mod support;

#[cfg(unix)] // Only the Unix-gated test below runs bash.
use std::process::Command;
use std::{fs, path::Path, time::Duration};

use storage_core::{ResourceExt, ResourceStatus, StorageError};
use storage_mmap::{CHECKPOINT_BYTES, MmapResource, OpenMode, fs::journal_path};
use support::{LIMIT, available, pattern, shuffled};

fn open(path: &Path, mode: OpenMode) -> Result<MmapResource, StorageError> {
    support::open_mmap(path, None, mode)
}

/// The expected content of the test file: a pattern by offset.
fn content(len: usize) -> Vec<u8> {
    pattern(77, len)
}

/// Writes whatever is missing, commits, and checks the file is exact.
fn finish_and_check(resource: &MmapResource, path: &Path, expected: &[u8]) {
    let len = expected.len() as u64;
    while let Some(gap) = resource.next_gap(0, len) {
        let range = usize::try_from(gap.start).unwrap()..usize::try_from(gap.end).unwrap();
        resource.write_at(gap.start, &expected[range]).unwrap();
    }
    resource.commit(Some(len)).unwrap();
    assert!(
        fs::read(path).unwrap() == expected,
        "the finished file differs"
    );
    // The journal goes in the background; `sync` waits for it.
    resource.sync().unwrap();
    assert!(
        !journal_path(path).exists(),
        "the journal outlived the commit and its sync"
    );
}

#[test]
fn drop_without_commit_then_reopen_resumes_exactly_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.bin");
    let expected = content(1 << 20);
    {
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, &expected[..1000]).unwrap();
        r.write_at(5000, &expected[5000..9000]).unwrap();
    }
    let r = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert_eq!(available(&r, 1 << 20), vec![0..1000, 5000..9000]);
    let mut buf = vec![0; 4000];
    r.read_at(5000, &mut buf).unwrap();
    assert_eq!(buf, expected[5000..9000]);
    // Holes read as zeros, whatever the file holds there.
    r.read_at(1000, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    finish_and_check(&r, &path, &expected);
}

#[test]
fn commit_then_reopen_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("done.bin");
    open(&path, OpenMode::Auto)
        .unwrap()
        .write_all(b"whole")
        .unwrap();
    assert!(!journal_path(&path).exists());
    let r = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(r.status(), ResourceStatus::Committed { final_len: Some(5) });
}

#[test]
fn a_reactivated_file_is_journaled_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grown.bin");
    let expected = content(300_000);
    open(&path, OpenMode::Auto)
        .unwrap()
        .write_all(&expected[..100_000])
        .unwrap();
    drop({
        let r = open(&path, OpenMode::Auto).unwrap();
        r.reactivate().unwrap();
        assert!(journal_path(&path).exists(), "reactivate starts a journal");
        r.write_at(200_000, &expected[200_000..]).unwrap();
        r
    });
    // Dropped without commit: the committed bytes and the new ones resume.
    let r = open(&path, OpenMode::ReadWrite).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert_eq!(available(&r, 300_000), vec![0..100_000, 200_000..300_000]);
    finish_and_check(&r, &path, &expected);
}

#[test]
fn a_torn_or_corrupt_last_record_resumes_from_the_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.bin");
    let expected = content(64 * 1024);
    drop({
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, &expected[..100]).unwrap();
        r
    });
    drop({
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(200, &expected[200..300]).unwrap();
        r
    });
    let journal = fs::read(journal_path(&path)).unwrap();
    for damage in ["torn", "corrupt"] {
        let mut damaged = journal.clone();
        match damage {
            "torn" => damaged.truncate(journal.len() - 5),
            _ => *damaged.last_mut().unwrap() ^= 0xFF,
        }
        fs::write(journal_path(&path), &damaged).unwrap();
        let r = open(&path, OpenMode::Auto).unwrap();
        assert_eq!(available(&r, 64 * 1024), vec![0..100], "{damage}");
    }
    let r = open(&path, OpenMode::Auto).unwrap();
    finish_and_check(&r, &path, &expected);
}

#[test]
fn read_only_opens_an_unfinished_file_with_its_ranges_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.bin");
    drop({
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, b"partial").unwrap();
        r
    });
    let r = open(&path, OpenMode::ReadOnly).unwrap();
    assert_eq!(r.status(), ResourceStatus::Active);
    assert!(r.contains_range(0..7));
    assert!(matches!(r.write_at(7, b"x"), Err(StorageError::ReadOnly)));
    assert!(matches!(r.commit(Some(7)), Err(StorageError::ReadOnly)));
    // A reader maps the file: a writer, whose commit may shrink it, waits
    // for the reader to go.
    let err = open(&path, OpenMode::Auto).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    drop(r);
    let writer = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
    writer.write_at(7, b" more").unwrap();
}

#[test]
fn a_file_shortened_while_closed_resumes_with_what_remains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.bin");
    drop({
        let r = open(&path, OpenMode::Auto).unwrap();
        r.write_at(0, &content(200_000)).unwrap();
        r
    });
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(50_000)
        .unwrap();
    let r = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(available(&r, 200_000), vec![0..50_000]);
}

// Truncates a file that is mapped, which Windows refuses (ERROR_USER_MAPPED_FILE): the hazard cannot arise there.
#[cfg(unix)]
#[test]
fn a_file_truncated_under_a_committed_mapping_is_refused_on_reactivate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.bin");
    open(&path, OpenMode::Auto)
        .unwrap()
        .write_all(&content(1 << 20))
        .unwrap();
    let r = open(&path, OpenMode::Auto).unwrap();
    // Someone else cuts the file (reading past 100 now would be SIGBUS).
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let err = r.reactivate().unwrap_err();
    assert!(err.to_string().contains("truncated from outside"), "{err}");
}

#[test]
fn a_second_writer_in_this_process_is_refused_and_the_first_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-writer.bin");
    let first = open(&path, OpenMode::Auto).unwrap();
    first.write_at(0, b"first").unwrap();
    for mode in [OpenMode::Auto, OpenMode::ReadWrite] {
        let err = open(&path, mode).unwrap_err();
        assert!(
            matches!(&err, StorageError::Locked { path: p } if p == &path),
            "{err}"
        );
    }
    let second = std::thread::spawn({
        let path = path.clone();
        move || open(&path, OpenMode::Auto).map(|_| ())
    });
    assert!(matches!(
        second.join().unwrap(),
        Err(StorageError::Locked { .. })
    ));
    first.write_at(5, b" still").unwrap();
    let mut buf = [0; 11];
    first.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"first still");
    drop(first);
    let resumed = open(&path, OpenMode::Auto).unwrap();
    assert!(resumed.contains_range(0..11));
}

const CHILD_ENV: &str = "STORAGE_RESUME_CHILD";

/// In the child: holds the file open for writing until killed.
#[test]
fn child_holding_the_file() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    r.write_at(0, b"child's bytes").unwrap();
    println!("ready");
    std::thread::sleep(LIMIT * 3);
}

#[test]
fn a_second_writer_in_another_process_is_refused_until_the_first_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-processes.bin");
    let mut child =
        support::spawn_ready_child("child_holding_the_file", CHILD_ENV, path.to_str().unwrap());
    let err = open(&path, OpenMode::Auto).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock died with the process; the next opener resumes.
    let resumed = open(&path, OpenMode::Auto).unwrap();
    assert_eq!(resumed.status(), ResourceStatus::Active);
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "8 MiB fits any usize this runs on"
)]
const KILL_LEN: usize = 3 * CHECKPOINT_BYTES as usize + 123_457;
const KILL_CHUNK: usize = 64 * 1024;

/// In the child: downloads the file out of order, slowly, never commits.
#[test]
fn child_streaming_writes() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, seed) = arg.split_once('|').unwrap();
    let expected = content(KILL_LEN);
    let r = open(Path::new(path), OpenMode::Auto).unwrap();
    println!("ready");
    let chunks = KILL_LEN.div_ceil(KILL_CHUNK);
    for (n, i) in shuffled(chunks, seed.parse().unwrap())
        .into_iter()
        .enumerate()
    {
        let end = ((i + 1) * KILL_CHUNK).min(KILL_LEN);
        r.write_at((i * KILL_CHUNK) as u64, &expected[i * KILL_CHUNK..end])
            .unwrap();
        if n % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(LIMIT * 3); // never commits; the parent kills it
}

#[test]
fn a_download_killed_at_random_moments_resumes_with_only_real_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let expected = content(KILL_LEN);
    let mut resumed_bytes = Vec::new();
    for round in 0..20u64 {
        let path = dir.path().join(format!("killed-{round}.bin"));
        let arg = format!("{}|{round}", path.display());
        let mut child = support::spawn_ready_child("child_streaming_writes", CHILD_ENV, &arg);
        // A random moment of the download: 0..~250 ms after it started.
        support::sleep_for(Duration::from_millis(u64::from(pattern(round, 1)[0])));
        child.kill().unwrap();
        child.wait().unwrap();

        let r = open(&path, OpenMode::Auto).unwrap();
        assert_eq!(r.status(), ResourceStatus::Active, "round {round}");
        let held = support::assert_available_bytes_are(&r, &expected, &format!("round {round}"));
        resumed_bytes.push(held);
        finish_and_check(&r, &path, &expected);
    }
    println!("bytes resumed per round: {resumed_bytes:?}");
}

/// A killed download leaves bytes it wrote after its last checkpoint in
/// the file, outside every journaled range. Committed as it stands (its
/// holes zero-filled), the resumed file must read zeros in every hole, not
/// those bytes: they were never recorded as written.
#[test]
fn a_killed_download_committed_with_its_holes_reads_zeros_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let expected = content(KILL_LEN);
    let mut stray_rounds = 0;
    for round in 0..8u64 {
        let path = dir.path().join(format!("holes-{round}.bin"));
        let arg = format!("{}|{round}", path.display());
        let mut child = support::spawn_ready_child("child_streaming_writes", CHILD_ENV, &arg);
        support::sleep_for(Duration::from_millis(u64::from(pattern(round + 40, 1)[0])));
        child.kill().unwrap();
        child.wait().unwrap();

        let before = fs::read(&path).unwrap();
        let r = open(&path, OpenMode::Auto).unwrap();
        let held = available(&r, KILL_LEN as u64);
        let mut holes = Vec::new();
        let mut at = 0;
        while let Some(hole) = r.next_gap(at, KILL_LEN as u64) {
            at = hole.end;
            holes.push(hole);
        }
        let stray = holes.iter().any(|hole| {
            let (start, end) = (
                usize::try_from(hole.start).unwrap(),
                usize::try_from(hole.end).unwrap(),
            );
            before
                .get(start..end.min(before.len()))
                .is_some_and(|bytes| bytes.iter().any(|&b| b != 0))
        });
        stray_rounds += usize::from(stray);
        r.commit(Some(KILL_LEN as u64)).unwrap();
        let after = fs::read(&path).unwrap();
        assert_eq!(after.len(), KILL_LEN, "round {round}");
        for hole in &holes {
            let (start, end) = (
                usize::try_from(hole.start).unwrap(),
                usize::try_from(hole.end).unwrap(),
            );
            assert!(
                after[start..end].iter().all(|&b| b == 0),
                "round {round}: hole {hole:?} shows bytes"
            );
        }
        for range in &held {
            let (start, end) = (
                usize::try_from(range.start).unwrap(),
                usize::try_from(range.end).unwrap(),
            );
            assert!(
                after[start..end] == expected[start..end],
                "round {round}: {range:?}"
            );
        }
    }
    println!("rounds whose holes held unjournaled bytes: {stray_rounds} of 8");
}

/// In the child (under `ulimit -f`): writes past the limit.
// The child of a test run under bash `ulimit -f`, which is Unix only.
#[cfg(unix)]
#[test]
fn child_with_a_file_size_limit() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let r = open(Path::new(&path), OpenMode::Auto).unwrap();
    let first = content(1 << 20);
    r.write_at(0, &first).unwrap();
    let err = r.write_at(8 << 20, &first).unwrap_err();
    assert!(
        matches!(&err, StorageError::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge),
        "{err}"
    );
    let mut back = vec![0; first.len()];
    assert_eq!(r.read_at(0, &mut back).unwrap(), first.len());
    assert!(back == first);
    assert!(r.contains_range(0..1 << 20));
    assert!(!r.contains_range(8 << 20..(8 << 20) + 1));
    r.write_at(1 << 20, b"still writable below the limit")
        .unwrap();
    println!("disk full handled: ready");
}

// Runs bash with `ulimit -f` (a file size limit standing in for a full disk): Unix only.
#[cfg(unix)]
#[test]
fn a_full_disk_is_an_error_and_earlier_bytes_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.bin");
    // RLIMIT_FSIZE of 4 MiB, SIGXFSZ ignored: writes past it fail as on a
    // full disk.
    let output = Command::new("bash")
        .args([
            "-c",
            "ulimit -f 4096 && trap '' XFSZ && exec \"$0\" --exact child_with_a_file_size_limit --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("disk full handled"), "{stdout}");
}

/// Random writes with drops and reopens between them: after every reopen
/// exactly the written ranges are available, with the written bytes.
#[test]
fn random_sessions_resume_exactly_what_they_wrote() {
    use proptest::{collection::vec, prelude::*, test_runner::TestRunner};

    const SPAN: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let session = vec((0..SPAN - 1, 1..20_000u64), 1..12);
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&vec(session, 1..5), |sessions| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("sessions-{case}.bin"));
        let mut model = vec![None::<u8>; usize::try_from(SPAN).unwrap()];
        for (n, writes) in sessions.into_iter().enumerate() {
            // Another test of this binary may be spawning a child right
            // now: until it execs, the child shares this process's open
            // files, and with them the dropped handle's lock.
            let r = support::retry_locked(|| open(&path, OpenMode::Auto)).unwrap();
            let expected: RangeSetModel = model.iter().map(Option::is_some).collect();
            prop_assert_eq!(available(&r, SPAN), expected.ranges(), "session {}", n);
            // Written bytes read back; holes read as zeros.
            let mut all = vec![0xEE; model.len()];
            let n = r.read_at(0, &mut all).unwrap();
            for (i, byte) in model.iter().enumerate() {
                let got = if i < n { all[i] } else { 0 };
                prop_assert_eq!(got, byte.unwrap_or(0), "byte {}", i);
            }
            for (at, len) in writes {
                let end = (at + len).min(SPAN);
                let data = pattern(at ^ len ^ n as u64, usize::try_from(end - at).unwrap());
                r.write_at(at, &data).unwrap();
                for (i, byte) in data.into_iter().enumerate() {
                    model[usize::try_from(at).unwrap() + i] = Some(byte);
                }
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// Which bytes are written, as the ranges `available` reports.
struct RangeSetModel(Vec<bool>);

impl FromIterator<bool> for RangeSetModel {
    fn from_iter<I: IntoIterator<Item = bool>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl RangeSetModel {
    fn ranges(&self) -> Vec<std::ops::Range<u64>> {
        let mut ranges = Vec::new();
        let mut start = None;
        for (i, &set) in self.0.iter().chain(std::iter::once(&false)).enumerate() {
            match (set, start) {
                (true, None) => start = Some(i as u64),
                (false, Some(from)) => {
                    ranges.push(from..i as u64);
                    start = None;
                }
                _ => {}
            }
        }
        ranges
    }
}
