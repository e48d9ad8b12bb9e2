//! A new file's state, stored with the file itself (an extended attribute)
//! instead of a journal beside it: what lets a small download cost no disk
//! sync, and no second file, until someone asks for durability.
//!
//! A file created by this driver is marked [`Mark::Unfinished`] before it is
//! given a length. A commit made before any checkpoint replaces that with
//! [`Mark::Committed`] — the committed length and the CRC-32 of the bytes —
//! and syncs nothing: the drop returns at once. The first sync of the file
//! (`sync()`, a rewrite in place) makes its data durable, then removes the
//! mark, then syncs the directory. The first checkpoint of an unfinished
//! file makes a journal (born whole and durable) and marks the file
//! [`Mark::Journaled`]: the journal decides from then on, as for every
//! journaled file; the mark goes when that journal goes (after the file's
//! data sync). A journal beside a file marked `Unfinished` or `Committed`
//! is an earlier file's, and is ignored: so a new file's open looks up no
//! journal name.
//!
//! Opening a file with no journal beside it (or another file's):
//! - no mark: committed (every file not made by this driver);
//! - `Unfinished`, or `Journaled` (its journal deleted): an unfinished
//!   download with nothing durable;
//! - `Committed` whose length and CRC match the bytes: committed — the
//!   bytes are whole, in the page cache or on disk; after a power loss the
//!   mark may survive bytes that did not, and then they do not match;
//! - `Committed` that does not match, or a value this crate did not write:
//!   an unfinished download with nothing durable (fetched again), never a
//!   committed file with bytes it did not have.
//!
//! Why the mark needs no sync: it is set before the file has a length (the
//! journaling file systems keep a file's metadata changes in the order they
//! were made, so a power loss cannot keep the length and lose the mark
//! before it), and the committed mark vouches for its bytes by their CRC.
//! Where extended attributes cannot be set (Windows, a file system without
//! them), a new file keeps a journal from its creation, as before.

use std::{
    fs::File,
    io,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::sys;

/// Whether new files are marked instead of journaled (see
/// [`set_unsynced_small_commits`]); on by default.
static NEW_FILES_MARKED: AtomicBool = AtomicBool::new(true);

/// Whether a small new file (≤ 8 MiB, never checkpointed) is committed and
/// dropped without a disk sync, and without a journal beside it: the file
/// carries a *mark* (an extended attribute) that says it is unfinished,
/// then, at the commit, its length and CRC-32. Its first `sync()` makes it
/// durable (one data sync, one directory sync) and removes the mark. An
/// open that finds a committed mark checks the bytes against it: a file
/// whose bytes a power loss did not keep reopens unfinished with nothing
/// available, never committed. Process-wide; on by default. Off: every new
/// file keeps a journal from its creation and its commit is made durable
/// in the background (the drop waits for it), as before marks.
///
/// Every open reads marks whatever this says (a file marked by another
/// process is read right). Where marks cannot be kept (Windows, a file
/// system without extended attributes), new files keep a journal as when
/// this is off.
pub fn set_unsynced_small_commits(enabled: bool) {
    NEW_FILES_MARKED.store(enabled, Ordering::Relaxed);
}

/// Whether small new files are committed without a sync (see
/// [`set_unsynced_small_commits`]).
#[must_use]
pub fn unsynced_small_commits() -> bool {
    NEW_FILES_MARKED.load(Ordering::Relaxed)
}

/// Whether a new file is to be marked.
pub(crate) fn new_files_marked() -> bool {
    unsynced_small_commits()
}

/// The state a mark records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Created, not committed: nothing in it is vouched for.
    Unfinished,
    /// Committed to `len` bytes whose CRC-32 is `crc`, not yet synced.
    Committed { len: u64, crc: u32 },
    /// Its journal is made: the journal decides. A journal found beside a
    /// file marked otherwise is not its own (left by an earlier file of
    /// that name) and is ignored.
    Journaled,
}

/// The first byte of an encoded mark.
const UNFINISHED: u8 = b'U';
const COMMITTED: u8 = b'C';
const JOURNALED: u8 = b'J';

impl Mark {
    /// The committed mark of `contents`.
    pub(crate) fn of(contents: &[u8]) -> Self {
        Self::Committed {
            len: contents.len() as u64,
            crc: crc32fast::hash(contents),
        }
    }

    fn encode(self) -> Vec<u8> {
        match self {
            Self::Unfinished => vec![UNFINISHED],
            Self::Journaled => vec![JOURNALED],
            Self::Committed { len, crc } => {
                let mut bytes = vec![COMMITTED];
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&crc.to_le_bytes());
                bytes
            }
        }
    }

    /// A stored value; anything this crate did not write reads as
    /// `Unfinished` (vouches for nothing).
    fn decode(bytes: &[u8]) -> Self {
        match bytes {
            [JOURNALED] => Self::Journaled,
            [COMMITTED, rest @ ..] if rest.len() == 12 => {
                let (len, crc) = rest.split_at(8);
                match (len.try_into(), crc.try_into()) {
                    (Ok(len), Ok(crc)) => Self::Committed {
                        len: u64::from_le_bytes(len),
                        crc: u32::from_le_bytes(crc),
                    },
                    _ => Self::Unfinished,
                }
            }
            _ => Self::Unfinished,
        }
    }

    /// Whether `contents` are what this mark vouches for. The length is
    /// compared first, and no mark vouches for more than a marked commit
    /// can hold: a stale or forged mark on a large file costs no read.
    pub(crate) fn vouches_for(self, contents: &[u8]) -> bool {
        match self {
            Self::Committed { len, .. } => {
                len == contents.len() as u64
                    && len <= crate::driver::MARKED_COMMIT_MAX
                    && self == Self::of(contents)
            }
            Self::Unfinished | Self::Journaled => false,
        }
    }

    /// Whether a journal beside a file with this mark is the file's own.
    pub(crate) fn owns_a_journal(mark: Option<Self>) -> bool {
        matches!(mark, None | Some(Self::Journaled))
    }
}

/// `file`'s mark, if it has one.
pub(crate) fn read(file: &File) -> io::Result<Option<Mark>> {
    Ok(sys::read_mark(file)?.map(|bytes| Mark::decode(&bytes)))
}

/// Marks `file` (no sync). `Unsupported` where marks cannot be kept.
pub(crate) fn set(file: &File, mark: Mark) -> io::Result<()> {
    sys::set_mark(file, &mark.encode())
}

/// Marks `file` journaled if it carries another mark: called once a
/// journal of it is made, so that journal is taken for its own. A failure
/// is left alone: the journal is then ignored at a reopen (its ranges are
/// fetched again; nothing is vouched for wrongly).
pub(crate) fn note_journal(file: &File) {
    if matches!(
        read(file),
        Ok(Some(Mark::Unfinished | Mark::Committed { .. }))
    ) {
        let _ = set(file, Mark::Journaled);
    }
}

/// Removes `file`'s mark, if any: only once its data is durable (else a
/// power loss could keep the file, unvouched, with bytes it did not have).
pub(crate) fn clear(file: &File) -> io::Result<()> {
    sys::clear_mark(file)
}

/// Whether the file at `path` is marked unfinished, or carries a committed
/// mark its bytes do not match (`false` when there is no file, or no
/// mark): a download of the mmap driver whose journal is not made yet.
pub(crate) fn unfinished_at(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match read(&file)? {
        None => Ok(false),
        Some(Mark::Unfinished | Mark::Journaled) => Ok(true),
        Some(mark @ Mark::Committed { len, .. }) => {
            if file.metadata()?.len() != len || len > crate::driver::MARKED_COMMIT_MAX {
                return Ok(true);
            }
            let mut contents = Vec::new();
            io::Read::read_to_end(&mut &file, &mut contents)?;
            Ok(!mark.vouches_for(&contents))
        }
    }
}

#[cfg(test)]
#[cfg(unix)] // Marks are extended attributes: Windows keeps none (journals instead).
mod tests {
    use super::*;

    #[test]
    fn marks_read_back_as_written_and_strangers_vouch_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"bytes").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(read(&file).unwrap(), None);
        set(&file, Mark::Unfinished).unwrap();
        assert_eq!(read(&file).unwrap(), Some(Mark::Unfinished));
        set(&file, Mark::of(b"bytes")).unwrap();
        let mark = read(&file).unwrap().unwrap();
        assert!(mark.vouches_for(b"bytes"));
        assert!(!mark.vouches_for(b"bytez"));
        assert!(!mark.vouches_for(b"byte"));
        clear(&file).unwrap();
        clear(&file).unwrap();
        assert_eq!(read(&file).unwrap(), None);
        for stranger in [&b""[..], b"C", b"C0123", b"X123456789012", b"U", b"J0"] {
            assert_eq!(Mark::decode(stranger), Mark::Unfinished, "{stranger:?}");
        }
        set(&file, Mark::Journaled).unwrap();
        assert_eq!(read(&file).unwrap(), Some(Mark::Journaled));
        assert!(!Mark::Journaled.vouches_for(b"bytes"));
    }

    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use storage_core::{ResourceExt, ResourceStatus, testing::pattern};

    use crate::{
        MmapResource, OpenMode, journal,
        sys::{Synced, probe},
    };

    fn open(path: &Path, mode: OpenMode) -> MmapResource {
        MmapResource::open(
            storage_core::CancellationToken::new(),
            crate::MmapOptions {
                path: path.to_path_buf(),
                initial_len: None,
                mode,
            },
        )
        .unwrap()
    }

    fn mark_of(path: &Path) -> Option<Mark> {
        read(&File::open(path).unwrap()).unwrap()
    }

    /// Runs `body`, counting the syncs of the files of `dir` and of `dir`
    /// itself: (file syncs, directory syncs).
    fn syncs_in(dir: &Path, body: impl FnOnce()) -> (usize, usize) {
        let (files, dirs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        {
            let (files, dirs, dir) = (Arc::clone(&files), Arc::clone(&dirs), dir.to_path_buf());
            probe::set(Some(Arc::new(move |event: &Synced<'_>| match event {
                // Only this test's files (other tests sync theirs meanwhile).
                Synced::File(file)
                    if std::fs::read_dir(&dir).unwrap().flatten().any(|entry| {
                        crate::sys::entry_id(&entry.path()) == crate::sys::file_id(file)
                    }) =>
                {
                    files.fetch_add(1, Ordering::SeqCst);
                }
                Synced::Dir(synced) if *synced == dir.as_path() => {
                    dirs.fetch_add(1, Ordering::SeqCst);
                }
                Synced::File(_) | Synced::Dir(_) => {}
            })));
        }
        body();
        probe::set(None);
        (files.load(Ordering::SeqCst), dirs.load(Ordering::SeqCst))
    }

    fn committed(r: &MmapResource, len: u64) -> bool {
        r.status()
            == ResourceStatus::Committed {
                final_len: Some(len),
            }
    }

    #[test]
    fn a_small_new_file_costs_no_sync_and_no_journal_until_a_sync_asks() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.ts");
        let data = pattern(1, 100 * 1024);
        let counts = syncs_in(dir.path(), || {
            let r = open(&path, OpenMode::Auto);
            assert_eq!(mark_of(&path), Some(Mark::Unfinished));
            r.write_at(0, &data).unwrap();
            r.commit(Some(data.len() as u64)).unwrap();
            assert!(!journal::path_for(&path).exists());
        });
        assert_eq!(counts, (0, 0), "(file syncs, directory syncs)");
        assert_eq!(mark_of(&path), Some(Mark::of(&data)));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "one file"
        );

        // Another handle finds it committed and whole; its `sync` makes it
        // durable with one data sync and one directory sync, then unmarks it.
        let r = open(&path, OpenMode::Auto);
        assert!(committed(&r, data.len() as u64));
        let mut back = Vec::new();
        r.read_into(&mut back).unwrap();
        assert!(back == data);
        let counts = syncs_in(dir.path(), || r.sync().unwrap());
        assert_eq!(counts, (1, 1));
        assert_eq!(mark_of(&path), None);
        assert_eq!(syncs_in(dir.path(), || r.sync().unwrap()), (0, 0));
    }

    /// A journal left at the path by an earlier file (its data file
    /// deleted from outside, or a download that died as it began) is not a
    /// new file's: the new file's mark says so, and no lookup of it is paid
    /// at the open. The new file reopens as what it is.
    #[test]
    fn an_earlier_file_s_journal_is_not_a_new_file_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.ts");
        let stale = journal::path_for(&path);
        drop(journal::Journal::create(&stale, std::iter::once(&(0..4000))).unwrap());
        let data = pattern(9, 5000);
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &data).unwrap();
        r.commit(Some(5000)).unwrap();
        drop(r);
        let reopened = open(&path, OpenMode::ReadOnly);
        assert!(committed(&reopened, 5000), "{:?}", reopened.status());
        drop(reopened);
        // Unfinished (what a kill leaves: the new file still marked
        // unfinished, the stale journal beside it), the stale journal's
        // ranges are not taken either.
        let path = dir.path().join("unfinished.ts");
        std::fs::write(&path, pattern(11, 5000)).unwrap();
        set(&File::open(&path).unwrap(), Mark::Unfinished).unwrap();
        drop(
            journal::Journal::create(&journal::path_for(&path), std::iter::once(&(0..4000)))
                .unwrap(),
        );
        let reader = open(&path, OpenMode::ReadOnly);
        assert_eq!(reader.status(), ResourceStatus::Active);
        assert_eq!(reader.next_gap(0, 5000), Some(0..5000));
        drop(reader);
        let writer = open(&path, OpenMode::Auto);
        assert_eq!(writer.next_gap(0, 5000), Some(0..5000));
        assert!(!journal::path_for(&path).exists(), "the writer removed it");
    }

    /// Found by a hostile probe: an earlier file's journal, ignored while
    /// the new file is marked, took over once a `sync()` removed the mark
    /// (a committed file reopened partial). The sync removes it first.
    #[test]
    fn a_sync_removes_an_earlier_file_s_journal_before_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reused.ts");
        let data = pattern(12, 12_288);
        let earlier = open(&path, OpenMode::Auto);
        earlier.write_at(0, &data[..8192]).unwrap();
        earlier.sync().unwrap();
        drop(earlier);
        std::fs::remove_file(&path).unwrap(); // its journal stays
        assert!(journal::path_for(&path).exists());
        for reader_syncs in [false, true] {
            let _ = std::fs::remove_file(&path);
            if reader_syncs {
                drop(
                    journal::Journal::create(
                        &journal::path_for(&path),
                        std::iter::once(&(0..8192)),
                    )
                    .unwrap(),
                );
            }
            let r = open(&path, OpenMode::Auto);
            r.write_at(0, &data).unwrap();
            r.commit(None).unwrap();
            if reader_syncs {
                drop(r);
                open(&path, OpenMode::ReadOnly).sync().unwrap();
            } else {
                r.sync().unwrap();
                drop(r);
            }
            let reopened = open(&path, OpenMode::ReadOnly);
            assert!(
                committed(&reopened, 12_288),
                "{reader_syncs}: {:?}",
                reopened.status()
            );
            assert!(!journal::path_for(&path).exists());
        }
    }

    /// Found by a hostile probe: a live handle whose file was removed made
    /// its journal anew at the path — over the journal of the download put
    /// there since — or marked that other file journaled. Neither now: its
    /// sync says its journal is gone.
    #[test]
    fn a_handle_of_a_removed_file_leaves_the_new_download_s_journal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken.bin");
        for earlier_synced in [true, false] {
            let a = open(&path, OpenMode::Auto);
            a.write_at(0, &[b'A'; 4096]).unwrap();
            if earlier_synced {
                a.sync().unwrap();
            }
            crate::fs::remove_download(&path).unwrap();
            let b = open(&path, OpenMode::Auto);
            b.write_at(0, &[b'B'; 4096]).unwrap();
            b.sync().unwrap();
            a.write_at(8192, &[b'A'; 4096]).unwrap();
            let synced = a.sync();
            assert!(
                synced.is_err(),
                "{earlier_synced}: the journal of a file gone: {synced:?}, A's file {:?}, B's {:?}, journal {:?}",
                a.path().map(crate::sys::entry_id),
                crate::sys::entry_id(&path),
                crate::sys::entry_id(&journal::path_for(&path)),
            );
            drop(a);
            drop(b);
            let reopened = open(&path, OpenMode::ReadOnly);
            assert!(reopened.contains_range(0..4096), "{earlier_synced}");
            assert!(!reopened.contains_range(8192..8193), "{earlier_synced}");
            let mut back = vec![0; 4096];
            reopened.read_at(0, &mut back).unwrap();
            assert!(back.iter().all(|&b| b == b'B'));
            drop(reopened);
            crate::fs::remove_download(&path).unwrap();
        }
    }

    /// Found by a hostile probe: a link planted at a journal's temporary
    /// name had its target overwritten by the journal. The temporary is made
    /// exclusively now (the link removed first).
    #[test]
    fn a_link_at_the_journal_s_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, journal::temp_path_for(&journal::path_for(&path)))
            .unwrap();
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, b"bytes").unwrap();
        r.sync().unwrap();
        drop(r);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let journal = std::fs::symlink_metadata(journal::path_for(&path)).unwrap();
        assert!(journal.is_file());
        let reopened = open(&path, OpenMode::Auto);
        assert!(reopened.contains_range(0..5));
    }

    /// The first checkpoint of a marked file makes its journal and marks
    /// the file journaled: the journal decides from then on.
    #[test]
    fn a_checkpointed_marked_file_resumes_from_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("track.flac");
        let data = pattern(10, 50_000);
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &data[..30_000]).unwrap();
        r.sync().unwrap();
        assert_eq!(mark_of(&path), Some(Mark::Journaled));
        assert!(journal::path_for(&path).exists());
        drop(r);
        let resumed = open(&path, OpenMode::Auto);
        assert_eq!(resumed.status(), ResourceStatus::Active);
        assert!(resumed.contains_range(0..30_000));
        resumed.write_at(30_000, &data[30_000..]).unwrap();
        resumed.commit(Some(50_000)).unwrap();
        resumed.sync().unwrap();
        assert_eq!(mark_of(&path), None);
        assert!(!journal::path_for(&path).exists());
    }

    /// A reader's `sync` makes a marked commit durable too (found by a
    /// hostile probe: it said `Ok` and left the mark, syncing nothing).
    #[test]
    fn a_reader_s_sync_makes_a_marked_commit_durable() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("art.jpg");
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &pattern(8, 3000)).unwrap();
        r.commit(Some(3000)).unwrap();
        drop(r);
        let reader = open(&path, OpenMode::ReadOnly);
        assert_eq!(syncs_in(dir.path(), || reader.sync().unwrap()), (1, 1));
        assert_eq!(mark_of(&path), None);
        assert!(committed(&reader, 3000));
    }

    /// A committed mark whose length is not the file's, or larger than a
    /// marked commit can be, vouches for nothing without a read of the file
    /// (found by a hostile probe: a 4 GiB file with a stale mark took 14 s
    /// to open).
    #[test]
    fn a_mark_of_another_length_costs_no_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.bin");
        let file = File::create(&path).unwrap();
        file.set_len(64 << 30).unwrap(); // sparse: a read would take minutes
        set(&file, Mark::Committed { len: 0, crc: 0 }).unwrap();
        let huge = Mark::Committed {
            len: 64 << 30,
            crc: 0,
        };
        let started = std::time::Instant::now();
        let reader = open(&path, OpenMode::ReadOnly);
        assert_eq!(reader.status(), ResourceStatus::Active);
        set(&file, huge).unwrap();
        assert!(unfinished_at(&path).unwrap());
        drop(reader);
        let reader = open(&path, OpenMode::ReadOnly);
        assert_eq!(reader.status(), ResourceStatus::Active);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the file was read"
        );
    }

    #[test]
    fn a_commit_synced_by_its_writer_is_unmarked() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cover.jpg");
        let data = pattern(2, 5000);
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &data).unwrap();
        r.commit(Some(5000)).unwrap();
        assert_eq!(syncs_in(dir.path(), || r.sync().unwrap()), (1, 1));
        assert_eq!(mark_of(&path), None);
        drop(r);
        assert!(committed(&open(&path, OpenMode::ReadOnly), 5000));
    }

    /// What a power loss does to a marked file whose bytes never reached
    /// the disk (the mark did): bytes that differ from what the mark vouches
    /// for, or a file cut short or left empty. It reopens unfinished with
    /// nothing available — never committed — and is fetched again.
    #[test]
    fn a_marked_file_whose_bytes_did_not_survive_reopens_unfinished_and_empty() {
        use std::os::unix::fs::FileExt;

        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3, 20_000);
        let lose = |what: &str, file: &File| match what {
            "zeros" => file.write_all_at(&[0; 4096], 8192).unwrap(),
            "cut" => file.set_len(10_000).unwrap(),
            _ => file.set_len(0).unwrap(),
        };
        for what in ["zeros", "cut", "empty"] {
            let path = dir.path().join(what);
            let r = open(&path, OpenMode::Auto);
            r.write_at(0, &data).unwrap();
            r.commit(Some(20_000)).unwrap();
            drop(r);
            lose(
                what,
                &std::fs::OpenOptions::new().write(true).open(&path).unwrap(),
            );
            for mode in [OpenMode::ReadOnly, OpenMode::Auto] {
                let reopened = open(&path, mode);
                assert_eq!(reopened.status(), ResourceStatus::Active, "{what} {mode:?}");
                assert_eq!(reopened.next_gap(0, 20_000), Some(0..20_000), "{what}");
            }
            // Fetched again, and committed whole.
            let again = open(&path, OpenMode::Auto);
            again.write_at(0, &data).unwrap();
            again.commit(Some(20_000)).unwrap();
            drop(again);
            let reopened = open(&path, OpenMode::ReadOnly);
            assert!(committed(&reopened, 20_000), "{what}");
            let mut back = Vec::new();
            reopened.read_into(&mut back).unwrap();
            assert!(back == data, "{what}");
        }
    }

    /// A file killed before its commit (the process gone, its mark left):
    /// unfinished, with nothing vouched for.
    #[test]
    fn a_file_left_unfinished_reopens_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.bin");
        std::fs::write(&path, pattern(4, 3000)).unwrap();
        set(&File::open(&path).unwrap(), Mark::Unfinished).unwrap();
        let reader = open(&path, OpenMode::ReadOnly);
        assert_eq!(reader.status(), ResourceStatus::Active);
        assert_eq!(reader.next_gap(0, 3000), Some(0..3000));
        drop(reader);
        let writer = open(&path, OpenMode::Auto);
        assert_eq!(writer.status(), ResourceStatus::Active);
        assert_eq!(writer.next_gap(0, 3000), Some(0..3000));
    }

    /// A rewrite in place (`ReadWrite`) of a marked file makes the commit
    /// durable and drops the mark first: a mark never vouches for bytes
    /// that a rewrite then changed (they would no longer match it, and the
    /// file would be fetched again after a crash).
    #[test]
    fn a_rewrite_in_place_settles_the_mark_first() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.bin");
        let data = pattern(5, 8000);
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &data).unwrap();
        r.commit(Some(8000)).unwrap();
        drop(r);
        let r = open(&path, OpenMode::ReadWrite);
        let counts = syncs_in(dir.path(), || r.write_at(100, b"rewritten").unwrap());
        assert_eq!(counts, (1, 1), "the commit made durable before the rewrite");
        assert_eq!(mark_of(&path), None);
        drop(r);
        let reopened = open(&path, OpenMode::ReadOnly);
        assert!(committed(&reopened, 8000));
        let mut back = vec![0; 9];
        reopened.read_at(100, &mut back).unwrap();
        assert_eq!(&back, b"rewritten");
    }

    /// A rewrite refused anyway (past the end: that needs `reactivate`)
    /// settles nothing (found by a hostile probe: it synced the file first).
    #[test]
    fn a_refused_rewrite_syncs_nothing() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.bin");
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &pattern(13, 3000)).unwrap();
        r.commit(Some(3000)).unwrap();
        drop(r);
        let r = open(&path, OpenMode::ReadWrite);
        let counts = syncs_in(dir.path(), || {
            assert!(matches!(
                r.write_at(2999, b"xx"),
                Err(storage_core::StorageError::Committed)
            ));
        });
        assert_eq!(counts, (0, 0));
        assert!(matches!(mark_of(&path), Some(Mark::Committed { .. })));
    }

    /// A reactivated marked file is journaled again (its data synced
    /// first); its next commit goes the journaled way and unmarks it.
    #[test]
    fn a_reactivated_marked_file_is_journaled_and_unmarked_by_its_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grows.bin");
        let data = pattern(6, 12_000);
        let r = open(&path, OpenMode::Auto);
        r.write_at(0, &data[..6000]).unwrap();
        r.commit(Some(6000)).unwrap();
        r.reactivate().unwrap();
        assert!(journal::path_for(&path).exists());
        r.write_at(6000, &data[6000..]).unwrap();
        r.commit(Some(12_000)).unwrap();
        r.sync().unwrap();
        assert_eq!(mark_of(&path), None);
        assert!(!journal::path_for(&path).exists());
        drop(r);
        let reopened = open(&path, OpenMode::ReadOnly);
        assert!(committed(&reopened, 12_000));
    }

    /// Where a file cannot be marked, a new file keeps a provisional
    /// journal from its creation, as before marks; its commit is made
    /// durable in the background and the drop waits for it.
    #[test]
    fn without_marks_a_new_file_keeps_a_journal_and_its_drop_makes_it_durable() {
        let _exclusive = probe::EXCLUSIVE.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fat32.bin");
        probe::NO_MARKS.set(true);
        let counts = syncs_in(dir.path(), || {
            let r = open(&path, OpenMode::Auto);
            assert!(journal::path_for(&path).exists());
            assert_eq!(mark_of(&path), None);
            r.write_at(0, &pattern(7, 5000)).unwrap();
            r.commit(Some(5000)).unwrap();
        });
        probe::NO_MARKS.set(false);
        assert_eq!(counts, (1, 1), "the drop made the commit durable");
        assert!(!journal::path_for(&path).exists());
        assert!(committed(&open(&path, OpenMode::ReadOnly), 5000));
    }

    /// A file larger than a mark vouches for goes the journaled way.
    #[test]
    fn a_large_commit_is_journaled_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.bin");
        let r = open(&path, OpenMode::Auto);
        let len = crate::driver::MARKED_COMMIT_MAX + 1;
        r.write_at(len - 1, &[1]).unwrap();
        r.commit(Some(len)).unwrap();
        drop(r);
        assert_eq!(mark_of(&path), None);
        let reopened = open(&path, OpenMode::ReadOnly);
        assert!(committed(&reopened, len));
    }
}
