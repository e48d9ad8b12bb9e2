//! Power loss, simulated: a SIGKILL keeps the page cache, so kill tests
//! cannot see a wrong order of syncs. Here every sync of the crate (the
//! `sys::sync_*` seam) updates a *durable image*: a file's contents when
//! it is synced, a directory's names when it is synced. At every sync point
//! of a streaming session, the test "loses power": it builds a directory
//! from the durable image alone (a file whose name was made durable but
//! whose data never was comes back empty), opens it, and checks that no
//! byte reported available is wrong and no committed file is partial.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, testing::pattern};

use crate::{
    CHECKPOINT_BYTES, MmapOptions, MmapResource, OpenMode,
    durable::DurableImage,
    sys::{Synced, probe},
};

/// What the crash points saw.
#[derive(Default)]
struct Seen {
    points: usize,
    absent: usize,
    active: usize,
    committed: usize,
    failures: Vec<String>,
}

thread_local! {
    /// Set while this thread runs a crash check: its own syncs are not the
    /// session's.
    static CHECKING: Cell<bool> = const { Cell::new(false) };
}

/// Loses power now: rebuilds the directory from `durable` under `crash`
/// and checks what opening it reports.
fn check_crash(
    durable: &DurableImage,
    crash: &Path,
    name: &str,
    expected: &[&[u8]],
    seen: &mut Seen,
) {
    durable.rebuild(crash);
    seen.points += 1;
    let path = crash.join(name);
    if !path.exists() {
        seen.absent += 1;
        return;
    }
    let options = MmapOptions {
        path,
        initial_len: None,
        mode: OpenMode::ReadOnly,
    };
    let resource = match MmapResource::open(CancellationToken::new(), options) {
        Ok(resource) => resource,
        Err(e) => {
            seen.failures
                .push(format!("point {}: open failed: {e}", seen.points));
            return;
        }
    };
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    if let ResourceStatus::Committed { .. } = resource.status() {
        seen.committed += 1;
        if !expected.contains(&all.as_slice()) {
            seen.failures.push(format!(
                "point {}: committed with {} bytes, not a whole expected file",
                seen.points,
                all.len()
            ));
        }
    } else {
        seen.active += 1;
        let download = expected[0];
        let mut from = 0;
        let end = all.len() as u64;
        while from < end {
            let gap = resource.next_gap(from, end).unwrap_or(end..end);
            let (start, stop) = (
                usize::try_from(from).unwrap(),
                usize::try_from(gap.start).unwrap(),
            );
            if stop > download.len() || all[start..stop] != download[start..stop] {
                seen.failures.push(format!(
                    "point {}: bytes {start}..{stop} reported available are wrong",
                    seen.points
                ));
                break;
            }
            from = gap.end;
        }
    }
}

/// Checks the file `name` of `session` at every sync point from now on
/// (until `probe::set(None)`), against the whole files in `expected`
/// (the first is the download whose bytes an active reopen must match).
fn check_every_sync_point(
    session: &Path,
    crashes: &Path,
    name: &'static str,
    expected: Vec<Arc<Vec<u8>>>,
) -> Arc<Mutex<Seen>> {
    let durable = Arc::new(DurableImage::new(session));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let crash = crashes.join("now");
    let recorded = Arc::clone(&seen);
    probe::set(Some(Arc::new(move |event: &Synced<'_>| {
        if CHECKING.get() {
            return;
        }
        if !durable.record(event) {
            return;
        }
        CHECKING.set(true);
        let expected: Vec<&[u8]> = expected.iter().map(|bytes| bytes.as_slice()).collect();
        check_crash(&durable, &crash, name, &expected, &mut recorded.lock());
        CHECKING.set(false);
    })));
    seen
}

#[test]
fn a_power_loss_at_any_sync_point_leaves_only_true_bytes() {
    let _exclusive = probe::EXCLUSIVE.lock();
    let session = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    let name = "track.bin";
    let len = usize::try_from(2 * CHECKPOINT_BYTES).unwrap() + 123_457;
    let download = Arc::new(pattern(7, len));
    let replacement = Arc::new(pattern(8, 300_000));
    let plain = Arc::new(pattern(9, 200_000));
    let seen = check_every_sync_point(
        session.path(),
        crashes.path(),
        name,
        vec![
            Arc::clone(&download),
            Arc::clone(&replacement),
            Arc::clone(&plain),
        ],
    );
    let path: PathBuf = session.path().join(name);
    // The session: an out-of-order download with checkpoints, a sync, a
    // commit and its sync, a drop; then a durable replacement and a plain
    // one.
    {
        let resource =
            MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
        let chunk = 64 * 1024;
        let chunks = len.div_ceil(chunk);
        let order = storage_core::testing::shuffled(chunks, 3);
        // Most of it (checkpoints run in the background), a sync, then the
        // rest (less than a checkpoint: only the sync makes it durable),
        // and a sync again.
        let (first, rest) = order.split_at(chunks * 3 / 5);
        for part in [first, rest] {
            for &i in part {
                let end = ((i + 1) * chunk).min(len);
                resource
                    .write_at((i * chunk) as u64, &download[i * chunk..end])
                    .unwrap();
            }
            resource.sync().unwrap();
        }
        resource.commit(Some(len as u64)).unwrap();
        resource.sync().unwrap();
    }
    {
        let resource =
            MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
        resource.replace_all(&replacement, true).unwrap();
        // A plain (not durable) replacement, then the directory synced by
        // someone else (another file's sync, or the file system's own
        // journal): the new name is durable, so its data must be too.
        resource.replace_all(&plain, false).unwrap();
        crate::sys::sync_dir(&path).unwrap();
    }
    probe::set(None);
    let seen = seen.lock();
    println!(
        "{} crash points: {} with no file, {} active, {} committed",
        seen.points, seen.absent, seen.active, seen.committed
    );
    assert!(seen.failures.is_empty(), "{:#?}", seen.failures);
    assert!(seen.points >= 8, "only {} sync points", seen.points);
    assert!(seen.active > 0 && seen.committed > 0);
}

/// A new small file costs no sync until it is committed, its journal only
/// provisional (where the file cannot be marked): a neighbour in the same
/// directory that syncs the directory meanwhile makes the new file's name
/// durable with its journal's, and a power loss at any point reopens the
/// new file unfinished (with only true bytes) or committed and whole —
/// never committed with a wrong byte.
#[test]
fn a_new_file_s_provisional_journal_survives_a_neighbour_s_directory_sync() {
    crate::sys::probe::NO_MARKS.set(true);
    let seen = new_file_beside_a_neighbour();
    crate::sys::probe::NO_MARKS.set(false);
    assert!(
        seen.active > 0 && seen.committed > 0,
        "the file was never seen unfinished and committed"
    );
}

/// The same with the new file marked (`mark.rs`): no journal, no sync
/// until `sync()`. A crash image holds the file's bytes as of its last
/// sync (none before `sync()`) and its mark as of the last sync of
/// anything: an unfinished or committed mark that vouches for none of
/// them, and the file reopens unfinished (without the marks in the image,
/// it reopened committed with 0 bytes).
#[test]
fn a_new_marked_file_survives_a_neighbour_s_directory_sync() {
    let seen = new_file_beside_a_neighbour();
    assert!(
        seen.active > 0 && seen.committed > 0,
        "the file was never seen unfinished and committed"
    );
}

/// A new file written, committed and synced while a neighbour syncs the
/// directory between its steps, crashed at every sync point.
fn new_file_beside_a_neighbour() -> Seen {
    let _exclusive = probe::EXCLUSIVE.lock();
    let session = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    let name = "segment.bin";
    let download = Arc::new(pattern(11, 100 * 1024));
    let seen = check_every_sync_point(
        session.path(),
        crashes.path(),
        name,
        vec![Arc::clone(&download)],
    );
    let path = session.path().join(name);
    let neighbour = |i: u64| {
        let other = MmapResource::open(
            CancellationToken::new(),
            MmapOptions::new(session.path().join(format!("neighbour-{i}.bin"))),
        )
        .unwrap();
        other.write_all(&pattern(20 + i, 5000)).unwrap();
        other.sync().unwrap();
    };
    {
        let resource =
            MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
        neighbour(0);
        resource.write_at(0, &download[..60_000]).unwrap();
        neighbour(1);
        resource.write_at(60_000, &download[60_000..]).unwrap();
        resource.commit(Some(download.len() as u64)).unwrap();
        neighbour(2);
        resource.sync().unwrap();
    }
    probe::set(None);
    let seen = std::mem::take(&mut *seen.lock());
    println!(
        "{} crash points: {} with no file, {} active, {} committed",
        seen.points, seen.absent, seen.active, seen.committed
    );
    assert!(seen.failures.is_empty(), "{:#?}", seen.failures);
    seen
}
