//! The test build's fault injection, the `probe` the sync, write and
//! reservation seams of `sys` ask: a hook that sees every sync (the
//! power-loss tests' durable image), syncs that fail for chosen files, a
//! write cut short, and a file system without hole punching or with a
//! capacity of a test's choosing. Outside tests, `sys` has a probe that
//! does nothing.

use std::sync::Arc;

use parking_lot::Mutex;

pub(crate) type Hook = Arc<dyn Fn(&super::Synced<'_>) + Send + Sync>;

/// The hook of the running power-loss test (one at a time: the tests
/// that set it hold [`EXCLUSIVE`]).
static HOOK: Mutex<Option<Hook>> = Mutex::new(None);
/// Held by a test that sets the hook, so no other test's syncs reach it.
pub(crate) static EXCLUSIVE: Mutex<()> = Mutex::new(());

pub(crate) fn set(hook: Option<Hook>) {
    *HOOK.lock() = hook;
}

/// A hook called as a file's data sync begins, before it may fail
/// (same rules as [`set`]'s).
static BEFORE: Mutex<Option<Hook>> = Mutex::new(None);

pub(crate) fn set_before(hook: Option<Hook>) {
    *BEFORE.lock() = hook;
}

pub(crate) fn synced(event: &super::Synced<'_>) {
    #[cfg(all(unix, feature = "testing"))]
    crate::fs::testing::synced(event);
    let hook = HOOK.lock().clone();
    if let Some(hook) = hook {
        hook(event);
    }
}

/// Files (device, inode) whose syncs fail, as a dying disk's would:
/// the next `n` syncs, or (`None`) every one; each with the serial number
/// of its guard (inode numbers are reused: a guard that outlives its file
/// may share an identity with another test's file, and must neither take
/// that one's failures away nor hide them).
static FAILING: Mutex<Vec<(FileId, Option<usize>, u64)>> = Mutex::new(Vec::new());

/// The serial number of the next [`FailingSyncs`].
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A file's device and inode.
type FileId = (u64, u64);

/// Makes syncs of the file at `path` fail — the next `times` of them,
/// or every one — until the guard drops (drop it before the file goes:
/// its inode number is reused).
pub(crate) fn fail_syncs_of(path: &std::path::Path, times: Option<usize>) -> FailingSyncs {
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(id) = super::entry_id(path) {
        FAILING.lock().push((id, times, serial));
    }
    FailingSyncs(serial)
}

/// Keeps a file's syncs failing while it lives.
pub(crate) struct FailingSyncs(u64);

impl FailingSyncs {
    /// How many of the planned failures are still to come.
    pub(crate) fn remaining(&self) -> Option<usize> {
        FAILING
            .lock()
            .iter()
            .find(|(_, _, serial)| *serial == self.0)
            .and_then(|(_, times, _)| *times)
    }
}

impl Drop for FailingSyncs {
    fn drop(&mut self) {
        FAILING.lock().retain(|(_, _, serial)| *serial != self.0);
    }
}

pub(crate) fn may_fail(file: &std::fs::File) -> std::io::Result<()> {
    let before = BEFORE.lock().clone();
    if let Some(before) = before {
        before(&super::Synced::File(file));
    }
    may_fail_id(super::file_id(file))
}

/// As `may_fail`, for the sync of directory `dir` (set up with
/// `fail_syncs_of(dir, ..)`).
pub(crate) fn may_fail_dir(dir: &std::path::Path) -> std::io::Result<()> {
    may_fail_id(super::entry_id(dir))
}

thread_local! {
    /// Set by a test: this thread's file system cannot punch holes.
    pub(crate) static NO_PUNCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn no_punch() -> bool {
    NO_PUNCH.get()
}

thread_local! {
    /// Set by a test: this thread's file system keeps no extended
    /// attributes (a new file then keeps a journal from its creation).
    pub(crate) static NO_MARKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn marks_refused() -> bool {
    NO_MARKS.get()
}

thread_local! {
    /// Set by a test: this thread's file system reports this capacity
    /// and has no `fallocate`.
    pub(crate) static SPACE: std::cell::Cell<Option<super::Space>> =
        const { std::cell::Cell::new(None) };
}

pub(crate) fn space() -> Option<super::Space> {
    SPACE.get()
}

/// Files whose next write stores only its first bytes and then fails.
static CUT_WRITES: Mutex<Vec<(FileId, usize)>> = Mutex::new(Vec::new());

/// Makes the next write of the file at `path` store its first `stored`
/// bytes (at most) and then fail, as a disk that dies mid-write.
pub(crate) fn cut_next_write_of(path: &std::path::Path, stored: usize) {
    if let Some(id) = super::entry_id(path) {
        CUT_WRITES.lock().push((id, stored));
    }
}

/// How many of `len` bytes the write about to run stores before it
/// fails (`None`: it does not fail).
pub(crate) fn cut_write(file: &std::fs::File, len: usize) -> Option<usize> {
    let mut cuts = CUT_WRITES.lock();
    if cuts.is_empty() {
        return None;
    }
    let id = super::file_id(file)?;
    let at = cuts.iter().position(|(cut, _)| *cut == id)?;
    Some(cuts.swap_remove(at).1.min(len))
}

fn may_fail_id(id: Option<FileId>) -> std::io::Result<()> {
    let Some(id) = id else {
        return Ok(());
    };
    let mut failing = FAILING.lock();
    // The first planned failure still to come (an exhausted one, left by a
    // guard whose file went and whose inode was reused, does not hide it).
    let planned = failing
        .iter_mut()
        .find(|(failing_id, left, _)| *failing_id == id && *left != Some(0));
    let fails = match planned {
        Some((_, None, _)) => true,
        Some((_, Some(left), _)) => {
            *left -= 1;
            true
        }
        None => false,
    };
    if fails {
        return Err(std::io::Error::other("injected: the disk lost the write"));
    }
    Ok(())
}
