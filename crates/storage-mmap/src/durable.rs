//! A power loss, simulated: what the disk would hold if the power went now.
//! Every sync of this crate goes through one seam (`sys::sync_data`,
//! `sync_all`, `sync_dir`), and a [`DurableImage`] fed from it keeps a
//! file's contents as of its last sync and a directory's names as of its
//! last sync. [`DurableImage::rebuild`] writes that state out: a file
//! whose name was made durable but whose data never was comes back empty.
//! Used by this crate's power-loss test, and (feature `testing`) by the
//! crates built on it (`fs::testing`).

use std::{
    collections::HashMap,
    fs::{self, File},
    path::{Path, PathBuf},
};

use parking_lot::Mutex;

use crate::sys::{self, Synced};

/// A file's identity: its device and inode, and its birth time (inode
/// numbers are reused once a file is deleted, as a replaced file's is).
type FileKey = (Option<(u64, u64)>, Option<std::time::SystemTime>);

fn key_of(meta: &fs::Metadata) -> FileKey {
    (Some(sys::meta_id(meta)), meta.created().ok())
}

/// What survives a power loss in one directory.
#[derive(Debug)]
pub struct DurableImage {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Contents of each file as of its last sync.
    images: HashMap<FileKey, Vec<u8>>,
    /// Names of the directory as of its last sync.
    names: HashMap<String, FileKey>,
    /// The state mark (`mark.rs`) of each file as of the last sync of
    /// anything: a mark is metadata, which the journaling file systems
    /// make durable in order, with the first sync after it.
    marks: HashMap<FileKey, Vec<u8>>,
}

/// The marks of the files of `dir` now.
fn marks_of(dir: &Path) -> HashMap<FileKey, Vec<u8>> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = File::open(entry.path()).ok()?;
            let mark = sys::read_mark(&file).ok()??;
            Some((key_of(&file.metadata().ok()?), mark))
        })
        .collect()
}

/// What `file` holds now (some files are opened for writing only).
fn contents(file: &File) -> Vec<u8> {
    sys::contents_of(file)
}

fn names_of(dir: &Path) -> HashMap<String, FileKey> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            Some((name, key_of(&entry.metadata().ok()?)))
        })
        .collect()
}

impl DurableImage {
    /// An image of `dir` in which nothing is durable yet.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes in a sync; says whether it concerns this image (a file's data,
    /// or this directory's names).
    pub(crate) fn record(&self, event: &Synced<'_>) -> bool {
        let mut state = self.state.lock();
        let concerned = self.take_in(&mut state, event);
        if concerned {
            state.marks = marks_of(&self.dir);
        }
        concerned
    }

    fn take_in(&self, state: &mut State, event: &Synced<'_>) -> bool {
        match event {
            Synced::File(file) => {
                if let Ok(meta) = file.metadata() {
                    state.images.insert(key_of(&meta), contents(file));
                }
                true
            }
            Synced::Dir(synced) if *synced == self.dir.as_path() => {
                state.names = names_of(&self.dir);
                true
            }
            Synced::Dir(_) => false,
        }
    }

    /// Writes into `into` (emptied first) the directory as a power loss now
    /// would leave it.
    ///
    /// # Panics
    ///
    /// When `into` cannot be written (a test's own directory).
    pub fn rebuild(&self, into: &Path) {
        let _ = fs::remove_dir_all(into);
        fs::create_dir_all(into).expect("the crash directory");
        let state = self.state.lock();
        for (file, key) in &state.names {
            let bytes = state.images.get(key).map_or(&[][..], Vec::as_slice);
            let path = into.join(file);
            fs::write(&path, bytes).expect("a file of the crash directory");
            if let Some(mark) = state.marks.get(key) {
                let file = File::open(&path).expect("a file of the crash directory");
                sys::set_mark(&file, mark).expect("a mark in the crash directory");
            }
        }
    }
}
