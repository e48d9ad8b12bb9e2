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
    let durable = Arc::new(DurableImage::new(session.path()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let (durable, seen) = (Arc::clone(&durable), Arc::clone(&seen));
        let crash = crashes.path().join("now");
        let (download, replacement, plain) = (
            Arc::clone(&download),
            Arc::clone(&replacement),
            Arc::clone(&plain),
        );
        probe::set(Some(Arc::new(move |event: &Synced<'_>| {
            if CHECKING.get() {
                return;
            }
            if !durable.record(event) {
                return;
            }
            CHECKING.set(true);
            let expected: [&[u8]; 3] = [&download, &replacement, &plain];
            check_crash(&durable, &crash, name, &expected, &mut seen.lock());
            CHECKING.set(false);
        })));
    }
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
