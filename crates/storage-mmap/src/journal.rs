//! The resume journal: which ranges of an active file are durable on disk.
//!
//! Beside each active file `NAME` lies `NAME.storage-journal`: an 8-byte
//! magic, then records `[payload length: u32][crc32 of payload: u32]
//! [payload: (start: u64, end: u64)*]`, little-endian. A record is appended
//! only after the data of its ranges was synced (`fdatasync`), so the journal
//! never claims a byte that is not on disk. Reading stops at the first record
//! whose length or checksum does not hold: a torn or corrupt tail is
//! ignored, never trusted.
//!
//! A journal is born whole: its magic and first record are written to
//! `NAME.storage-journal.tmp`, synced, and renamed into place, so a crash
//! never leaves an empty journal that would turn a complete file into an
//! empty download.
//!
//! One other record exists: a *replacement mark* (payload `REPLACED`, the
//! new length and the crc32 of the new contents, 24 bytes), appended and
//! synced before an active file is replaced whole by rename. If a crash
//! leaves the journal beside a file that matches the mark, the replacement
//! landed and the journal is stale.
//!
//! And an *identity* record (payload `IDENTITY`, the expected length
//! (`u64::MAX` for none), the validator's length (`u32`) and its UTF-8
//! bytes), appended and synced when a download declares what it downloads
//! (`set_expected_len`, `set_validator`); the last one read wins.
//!
//! A handle removes a journal only by its identity (`remove_if_ours`,
//! checked under the directory lock): never one that another download put
//! at the path since.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    ops::Range,
    path::{Path, PathBuf},
};

use storage_core::RangeSet;

const MAGIC: &[u8; 8] = b"STJRNL01";
const RECORD_HEADER: usize = 8;
const RANGE_BYTES: usize = 16;

/// Where the journal of the file at `path` lives.
pub(crate) fn path_for(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".storage-journal");
    path.with_file_name(name)
}

/// Where a journal is written before it is renamed into place.
pub(crate) fn temp_path_for(journal_path: &Path) -> PathBuf {
    let mut name = journal_path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    journal_path.with_file_name(name)
}

const REPLACED: &[u8; 8] = b"REPLACED";
const IDENTITY: &[u8; 8] = b"IDENTITY";
const NO_LENGTH: u64 = u64::MAX;
const MARK_BYTES: usize = 24;

/// A replacement announced in a journal: the new contents' length and crc32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replacement {
    pub len: u64,
    pub crc: u32,
}

/// What a journal on disk says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Contents {
    /// The ranges of every valid record.
    pub ranges: RangeSet<u64>,
    /// Length of the valid prefix (magic and whole, checked records).
    pub valid_len: u64,
    /// Every replacement mark, in order (replacements racing on one path
    /// may each have marked it before one of them landed).
    pub replacements: Vec<Replacement>,
    /// The download's expected length, from the last identity record.
    pub expected_len: Option<u64>,
    /// The download's validator, from the last identity record.
    pub validator: Option<String>,
}

/// The payload of an identity record.
fn encode_identity(expected_len: Option<u64>, validator: Option<&str>) -> Vec<u8> {
    let validator = validator.unwrap_or_default().as_bytes();
    let mut payload = Vec::with_capacity(8 + 8 + 4 + validator.len());
    payload.extend_from_slice(IDENTITY);
    payload.extend_from_slice(&expected_len.unwrap_or(NO_LENGTH).to_le_bytes());
    payload.extend_from_slice(&u32::try_from(validator.len()).unwrap_or(0).to_le_bytes());
    if u32::try_from(validator.len()).is_ok() {
        payload.extend_from_slice(validator);
    }
    payload
}

/// Parses an identity payload; `None` when it is not one.
fn decode_identity(payload: &[u8]) -> Option<(Option<u64>, Option<String>)> {
    let rest = payload.strip_prefix(IDENTITY)?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let (size, validator) = rest.split_first_chunk::<4>()?;
    if usize::try_from(u32::from_le_bytes(*size)).ok()? != validator.len() {
        return None;
    }
    let len = u64::from_le_bytes(*len);
    let validator = std::str::from_utf8(validator).ok()?;
    Some((
        (len != NO_LENGTH).then_some(len),
        (!validator.is_empty()).then(|| validator.to_owned()),
    ))
}

fn u64_at(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(
        bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default(),
    )
}

/// Parses journal bytes: the valid records, stopping at the first bad one.
fn parse(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return contents;
    }
    let mut at = MAGIC.len();
    contents.valid_len = at as u64;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // Checked: a corrupt length may be anything up to `u32::MAX`.
        let payload_end = (at + RECORD_HEADER).checked_add(len);
        let Some(payload) = payload_end.and_then(|end| bytes.get(at + RECORD_HEADER..end)) else {
            break; // torn: the record is cut short
        };
        if crc32fast::hash(payload) != crc {
            break; // corrupt
        }
        if let Some((expected_len, validator)) = decode_identity(payload) {
            contents.expected_len = expected_len;
            contents.validator = validator;
        } else if len == MARK_BYTES && payload.starts_with(REPLACED) {
            contents.replacements.push(Replacement {
                len: u64_at(&payload[8..]),
                crc: u32::try_from(u64_at(&payload[16..]) & u64::from(u32::MAX)).unwrap_or(0),
            });
        } else if len.is_multiple_of(RANGE_BYTES) {
            for pair in payload.chunks_exact(RANGE_BYTES) {
                let (start, end) = (u64_at(pair), u64_at(&pair[8..]));
                if start < end {
                    contents.ranges.insert(start..end);
                }
            }
        } else {
            break; // corrupt
        }
        at += RECORD_HEADER + len;
        contents.valid_len = at as u64;
    }
    contents
}

/// Opens the existing journal at `path` with `options`, refusing what is
/// not a regular file there (a FIFO would block the caller for good, a
/// symlink would send the journal's writes elsewhere): the entry itself is
/// checked, and opened without following a link and without blocking.
/// `Ok(None)` when there is none.
fn open_existing(path: &Path, options: &mut OpenOptions) -> io::Result<Option<File>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the journal is not a regular file (a link, a directory, a FIFO, ...)",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    sys::no_follow_no_block(options);
    match options.open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the journal at `path`: `None` when there is none.
pub(crate) fn read(path: &Path) -> io::Result<Option<Contents>> {
    use std::io::Read;

    let Some(mut file) = open_existing(path, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(parse(&bytes)))
}

/// One record's bytes.
pub(crate) fn encode<'a>(ranges: impl Iterator<Item = &'a Range<u64>>) -> Vec<u8> {
    let mut payload = Vec::new();
    for range in ranges {
        payload.extend_from_slice(&range.start.to_le_bytes());
        payload.extend_from_slice(&range.end.to_le_bytes());
    }
    frame(&payload)
}

/// A replacement mark's bytes.
pub(crate) fn encode_mark(mark: Replacement) -> Vec<u8> {
    let mut payload = REPLACED.to_vec();
    payload.extend_from_slice(&mark.len.to_le_bytes());
    payload.extend_from_slice(&u64::from(mark.crc).to_le_bytes());
    frame(&payload)
}

/// `payload` with its record header.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    // Records hold the ranges of a few MiB of writes: far below 4 GiB.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// A journal, appended to. It holds no descriptor between records: each
/// append or sync opens the file for that moment (a resource keeps one
/// descriptor, its data file's), checking that it is still this journal.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    /// The journal file's identity (see [`Journal::id`]).
    id: Option<(u64, u64)>,
    /// Whether the journal's name (and first record) are known durable: a
    /// provisional journal's are not until its first range is recorded.
    name_durable: bool,
    /// The length of its valid records: the next record is written here.
    len: u64,
    /// A record's write failed partway: its torn bytes are cut off before
    /// the next one (else every later record would follow them, unread).
    torn: bool,
    /// Whether the journal file exists: a new file marked unfinished
    /// (`mark.rs`) has none until something is to be journaled, which
    /// makes it whole and durable first.
    born: bool,
    /// When the journal file was made (where the file system says): with
    /// `id`, what tells it from a later journal at its name that was given
    /// its freed inode number (a journal is not held open between records).
    born_at: Option<std::time::SystemTime>,
    /// The identity of the data file this journal is of (set by its
    /// checkpoints): a journal is made anew, or born, only while that very
    /// file is at its name — never beside another file put there since
    /// (its own download's journal would be written over).
    owner: Option<(u64, u64)>,
}

use crate::sys;
pub(crate) use crate::sys::sync_dir;

/// A journal's temporary file, made anew: whatever was at its name (a
/// leftover, or a link put there from outside) is removed first, and the
/// file is created exclusively, so a write never follows a link out of the
/// directory.
fn create_temp(temp: &Path) -> io::Result<File> {
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).open(temp)
}

impl Journal {
    /// Creates (or replaces) the journal at `path` with `ranges` as its
    /// first record, in one step: written to a temporary name, synced, and
    /// renamed into place. Once this returns, a crash leaves exactly this
    /// journal; on an error, the journal that was there (or none) is left.
    pub(crate) fn create<'a>(
        path: &Path,
        ranges: impl Iterator<Item = &'a Range<u64>>,
    ) -> io::Result<Self> {
        let temp = temp_path_for(path);
        let written = (|| {
            let mut file = create_temp(&temp)?;
            let mut bytes = MAGIC.to_vec();
            let mut ranges = ranges.peekable();
            if ranges.peek().is_some() {
                bytes.extend(encode(ranges));
            }
            file.write_all(&bytes)?;
            sys::sync_all(&file)?;
            // Under the directory lock: a handle that checks whose journal
            // is at the path before it removes it never sees this rename
            // land in between.
            let _name = sys::dir_lock(path);
            fs::rename(&temp, path)?;
            Ok((file, bytes.len() as u64))
        })();
        let (file, len) = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        if let Err(e) = sync_dir(path) {
            // Not durable: take it back rather than leave a journal a power
            // loss may lose or keep.
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(Self::of(path, &file, len))
    }

    /// Creates (or replaces) the journal of a new file at `path`, with no
    /// range, *provisionally*: written to a temporary name and renamed into
    /// place like [`Journal::create`], but nothing is synced. A new file
    /// costs no disk sync until something is to be made durable: the first
    /// range recorded (a checkpoint) syncs the journal and its directory
    /// before the data it names (see [`Journal::make_name_durable`]), and a
    /// commit's background work syncs the file before it removes the
    /// journal.
    ///
    /// Why no sync is needed before: the caller created its data file empty
    /// and holds it locked, and gives it a length only after this returns.
    /// A crash can then leave the journal without a file (ignored, replaced
    /// by the next download), both (an unfinished download with nothing
    /// journaled), neither, or an empty file (a new file) — never the data
    /// file with data and without this journal: the file's length is set
    /// after the journal's name, and a file system that keeps one keeps the
    /// other (the names and lengths of one directory reach the disk in the
    /// order they were made on the journaling file systems, and a directory
    /// sync — the only way this crate makes a name durable — takes both);
    /// the first sync of the data file comes after the journal's name is
    /// durable (a file system that makes a file's name durable with its
    /// `fsync`, as btrfs does, cannot keep the file without the journal).
    pub(crate) fn create_provisional(path: &Path) -> io::Result<Self> {
        let temp = temp_path_for(path);
        let written = (|| {
            let mut file = create_temp(&temp)?;
            file.write_all(MAGIC)?;
            // Under the directory lock, as in `create`.
            let _name = sys::dir_lock(path);
            fs::rename(&temp, path)?;
            Ok(file)
        })();
        match written {
            Ok(file) => Ok(Self {
                name_durable: false,
                ..Self::of(path, &file, MAGIC.len() as u64)
            }),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// The journal of a new file marked unfinished (`mark.rs`), not yet
    /// made: no file exists until the first record, which creates it
    /// whole and durable ([`Journal::create`]) before it is written.
    pub(crate) fn unborn(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            id: None,
            name_durable: false,
            len: MAGIC.len() as u64,
            torn: false,
            born: false,
            born_at: None,
            owner: None,
        }
    }

    /// Makes an unborn journal, whole and durable — while its data file
    /// is still there (not for a download removed meanwhile).
    fn be_born(&mut self) -> io::Result<()> {
        let owner = self.owner_file()?;
        self.remake()?;
        // The file says this journal is its own (a journal beside a file
        // still marked unfinished is taken for an earlier file's).
        crate::mark::note_journal(&owner);
        Ok(())
    }

    /// Records the identity of the data file this journal is of.
    pub(crate) fn set_owner(&mut self, owner: Option<(u64, u64)>) {
        self.owner = owner;
    }

    /// The data file at this journal's owner name, if it is this journal's
    /// own (the identity recorded, where one was); else `NotFound`.
    fn owner_file(&self) -> io::Result<File> {
        let gone = || io::Error::new(io::ErrorKind::NotFound, "the file of this journal is gone");
        let file = crate::fs::journal_owner(&self.path)
            .and_then(|name| File::open(name).ok())
            .ok_or_else(gone)?;
        if self.owner.is_some() && sys::file_id(&file) != self.owner {
            return Err(gone());
        }
        Ok(file)
    }

    /// This journal made anew, empty and whole, keeping whose it is.
    fn remake(&mut self) -> io::Result<()> {
        let owner = self.owner;
        *self = Self::create(&self.path, std::iter::empty())?;
        self.owner = owner;
        Ok(())
    }

    /// Whether the journal file was ever made (see [`Journal::unborn`]).
    pub(crate) fn is_born(&self) -> bool {
        self.born
    }

    /// Makes the journal's name and first record durable, once (a no-op
    /// for a journal created whole): before the first range is recorded,
    /// so no range is journaled, and no data synced, while a power loss
    /// could keep the data file without its journal. An unborn journal is
    /// made, whole and durable.
    pub(crate) fn make_name_durable(&mut self) -> io::Result<()> {
        if !self.born {
            self.be_born()?;
            return Ok(());
        }
        if self.name_durable {
            return Ok(());
        }
        let file = self.open_or_recreate()?;
        sys::sync_all(&file)?;
        sync_dir(&self.path)?;
        self.name_durable = true;
        Ok(())
    }

    fn of(path: &Path, file: &File, len: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            id: sys::file_id(file),
            name_durable: true,
            len,
            torn: false,
            born: true,
            born_at: sys::birth(file),
            owner: None,
        }
    }

    /// Writes one record after the valid ones (cutting a torn one off
    /// first); on a failure partway the torn bytes are cut off now, or
    /// before the next record.
    fn write_record(&mut self, file: &File, record: &[u8]) -> io::Result<()> {
        if self.torn {
            file.set_len(self.len)?;
            self.torn = false;
        }
        match sys::write_all_at(file, record, self.len) {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.torn = file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    /// The journal file, opened to write records; if it is gone (removed,
    /// or replaced, from outside) while its file is still there, a new
    /// empty journal, born whole, takes its place: the file stays marked
    /// unfinished (a missing journal would make it look committed), and
    /// what the lost one held is only fetched again.
    fn open_or_recreate(&mut self) -> io::Result<File> {
        if !self.born {
            self.be_born()?;
            return self.open();
        }
        match self.open() {
            // Not when the download went with it (its file removed, or
            // another file at its name since: that one's journal stays).
            // Not on Windows, where a removed file's name lingers while a
            // handle holds it: a download removed whole would get a
            // journal back (a journal deleted from outside there leaves
            // the file looking committed, as before; the mmap README says).
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && sys::REMOVED_NAMES_GO_AT_ONCE
                    && self.owner_file().is_ok() =>
            {
                self.remake()?;
                self.open()
            }
            opened => opened,
        }
    }

    /// The journal file, opened to write records, if it is still this
    /// journal.
    fn open(&self) -> io::Result<File> {
        let file = OpenOptions::new().write(true).open(&self.path)?;
        // Where the identity could not be read, the path is trusted.
        let id = sys::file_id(&file);
        let born_at = || sys::birth(&file);
        if (self.id.is_some() && id != self.id)
            || (self.born_at.is_some() && born_at() != self.born_at)
        {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the journal was replaced from outside",
            ));
        }
        Ok(file)
    }

    /// Opens an existing journal to append after its valid prefix (a torn
    /// tail is cut off first, so later records stay reachable).
    pub(crate) fn resume(path: &Path, contents: &Contents) -> io::Result<Self> {
        if contents.valid_len < MAGIC.len() as u64 {
            // No valid magic: start over, keeping what the caller learned.
            return Self::create(path, contents.ranges.iter());
        }
        let file = open_existing(path, OpenOptions::new().write(true))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the journal went away"))?;
        file.set_len(contents.valid_len)?;
        // Perhaps a provisional journal of a process that died before its
        // first checkpoint: its name is made durable before a range is
        // added to it.
        Ok(Self {
            name_durable: false,
            ..Self::of(path, &file, contents.valid_len)
        })
    }

    /// Appends one record with `ranges` (nothing when there are none).
    pub(crate) fn append<'a>(
        &mut self,
        ranges: impl Iterator<Item = &'a Range<u64>>,
    ) -> io::Result<()> {
        let mut ranges = ranges.peekable();
        if ranges.peek().is_none() {
            return Ok(());
        }
        let file = self.open_or_recreate()?;
        self.write_record(&file, &encode(ranges))
    }

    /// The journal file's identity, to tell it from another journal later
    /// put at its path.
    pub(crate) fn id(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// Appends an identity record and makes it durable.
    pub(crate) fn record_identity(
        &mut self,
        expected_len: Option<u64>,
        validator: Option<&str>,
    ) -> io::Result<()> {
        let file = self.open_or_recreate()?;
        self.write_record(&file, &frame(&encode_identity(expected_len, validator)))?;
        sys::sync_data(&file)
    }

    /// Appends a replacement mark and makes it durable.
    pub(crate) fn mark_replacement(&mut self, mark: Replacement) -> io::Result<()> {
        let file = self.open_or_recreate()?;
        self.write_record(&file, &encode_mark(mark))?;
        sys::sync_data(&file)
    }

    /// Makes the appended records durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if !self.born {
            // Nothing appended: the file's mark says what there is.
            return Ok(());
        }
        let file = self.open_or_recreate()?;
        sys::sync_data(&file)
    }
}

/// Appends a replacement mark to the journal at `path`, if there is one,
/// and makes it durable; says whether there was one. For a journal no
/// checkpoint thread appends to (a commit that could not remove it).
pub(crate) fn mark_existing(path: &Path, mark: Replacement) -> io::Result<bool> {
    let Some(mut file) = open_existing(path, OpenOptions::new().append(true))? else {
        return Ok(false);
    };
    file.write_all(&encode_mark(mark))?;
    sys::sync_data(&file)?;
    Ok(true)
}

/// Removes the file at `path`; a missing one is no error.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the journal at `path`, durably, when its identity passes
/// `is_ours` (checked under the directory lock, so no rename by a handle
/// of this library swaps it in between). One already gone is no error;
/// another's journal stays.
pub(crate) fn remove_if_ours(
    path: &Path,
    is_ours: impl Fn(Option<(u64, u64)>) -> bool,
) -> io::Result<()> {
    if unlink_if_ours(path, is_ours)? {
        sync_dir(path)?;
    }
    Ok(())
}

/// As [`remove_if_ours`], without the directory sync; whether it removed one.
pub(crate) fn unlink_if_ours(
    path: &Path,
    is_ours: impl Fn(Option<(u64, u64)>) -> bool,
) -> io::Result<bool> {
    let _name = sys::dir_lock(path);
    let at_path = sys::entry_id(path);
    if at_path.is_none() || !is_ours(at_path) {
        return Ok(false);
    }
    remove_if_present(path)?;
    Ok(true)
}

/// Appends to the journal at `path`, if `is_ours`, the mark of the whole
/// file `contents` (length and crc32): a reopen that finds the file
/// matching it opens it committed (as after a replacement). Only for a
/// file whose data is durable.
pub(crate) fn mark_whole_if_ours(
    path: &Path,
    is_ours: impl Fn(Option<(u64, u64)>) -> bool,
    contents: &[u8],
) -> io::Result<bool> {
    let mark = Replacement {
        len: contents.len() as u64,
        crc: crc32fast::hash(contents),
    };
    let _name = sys::dir_lock(path);
    if !is_ours(sys::entry_id(path)) {
        return Ok(false);
    }
    mark_existing(path, mark)
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "records of one range are what the tests write"
)]
mod tests {
    use super::*;

    #[test]
    fn the_last_identity_record_wins_and_ranges_stay() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(encode([0..10].iter()));
        bytes.extend(frame(&encode_identity(Some(1000), Some("\"v1\""))));
        bytes.extend(encode([20..30].iter()));
        bytes.extend(frame(&encode_identity(Some(2000), Some("\"v2\""))));
        let contents = parse(&bytes);
        assert_eq!(contents.expected_len, Some(2000));
        assert_eq!(contents.validator.as_deref(), Some("\"v2\""));
        assert_eq!(
            contents.ranges.iter().cloned().collect::<Vec<_>>(),
            [0..10, 20..30]
        );
        let none = frame(&encode_identity(None, None));
        let mut bytes = MAGIC.to_vec();
        bytes.extend(none);
        let contents = parse(&bytes);
        assert_eq!((contents.expected_len, contents.validator), (None, None));
        assert_eq!(contents.valid_len, bytes.len() as u64);
    }

    fn journal_of(records: &[&[Range<u64>]]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for record in records {
            bytes.extend(encode(record.iter()));
        }
        bytes
    }

    fn set(ranges: &[Range<u64>]) -> RangeSet<u64> {
        ranges.iter().cloned().collect()
    }

    #[test]
    fn records_round_trip() {
        let bytes = journal_of(&[&[0..10, 20..30], &[10..20]]);
        let contents = parse(&bytes);
        assert_eq!(contents.ranges, set(&[0..30]));
        assert_eq!(contents.valid_len, bytes.len() as u64);
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let bytes = journal_of(&[&[0..10], &[50..60]]);
        for cut in 1..24 {
            let contents = parse(&bytes[..bytes.len() - cut]);
            assert_eq!(contents.ranges, set(&[0..10]), "cut {cut}");
        }
    }

    #[test]
    fn a_corrupt_record_and_everything_after_it_are_ignored() {
        let mut bytes = journal_of(&[&[0..10], &[50..60], &[70..80]]);
        let second_payload = MAGIC.len() + RECORD_HEADER + 16 + RECORD_HEADER + 3;
        bytes[second_payload] ^= 0x40;
        assert_eq!(parse(&bytes).ranges, set(&[0..10]));
    }

    #[test]
    fn a_bad_magic_trusts_nothing() {
        let mut bytes = journal_of(&[&[0..10]]);
        bytes[0] = b'X';
        assert_eq!(parse(&bytes), Contents::default());
        assert_eq!(parse(b""), Contents::default());
    }

    #[test]
    fn a_replacement_mark_is_read_and_ranges_around_it_stay() {
        let mut bytes = journal_of(&[&[0..10]]);
        let mark = Replacement {
            len: 1234,
            crc: 0xDEAD_BEEF,
        };
        bytes.extend(encode_mark(mark));
        bytes.extend(encode([20..30].iter()));
        let contents = parse(&bytes);
        assert_eq!(contents.replacements, vec![mark]);
        assert_eq!(contents.ranges, set(&[0..10, 20..30]));
        // A torn mark is ignored, like any torn record.
        let torn = journal_of(&[&[0..10]]).len() + 10;
        assert_eq!(parse(&bytes[..torn]).replacements, Vec::new());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let contents = parse(&bytes);
            proptest::prop_assert!(contents.valid_len <= bytes.len() as u64);
            // With the magic in front, still no panic, and nothing past
            // the valid prefix counts.
            let mut journal = MAGIC.to_vec();
            journal.extend_from_slice(&bytes);
            let contents = parse(&journal);
            let valid = usize::try_from(contents.valid_len).unwrap();
            proptest::prop_assert_eq!(parse(&journal[..valid]), contents);
        }

        #[test]
        fn any_prefix_of_a_valid_journal_names_a_subset_of_its_ranges(
            records in proptest::collection::vec(
                proptest::collection::vec((0u64..1_000, 1u64..100), 1..4), 0..6),
            cut in proptest::num::usize::ANY,
        ) {
            let ranges: Vec<Vec<Range<u64>>> = records
                .iter()
                .map(|record| record.iter().map(|&(start, len)| start..start + len).collect())
                .collect();
            let mut bytes = MAGIC.to_vec();
            for record in &ranges {
                bytes.extend(encode(record.iter()));
            }
            let whole = parse(&bytes).ranges;
            let prefix = parse(&bytes[..cut % (bytes.len() + 1)]).ranges;
            for range in prefix.iter() {
                proptest::prop_assert!(
                    whole.overlapping(range).any(|r| r.start <= range.start && r.end >= range.end),
                    "{range:?} is not in the whole journal"
                );
            }
        }
    }

    #[test]
    fn a_record_cut_short_is_cut_off_so_later_records_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.storage-journal");
        let mut journal = Journal::create_provisional(&path).unwrap();
        journal.append([0..10].iter()).unwrap();
        // A full disk: the next record is stored in part, then fails.
        crate::sys::probe::cut_next_write_of(&path, 5);
        assert!(journal.append([100..200].iter()).is_err());
        journal.append([20..30].iter()).unwrap();
        journal.record_identity(Some(500), Some("v1")).unwrap();
        let contents = read(&path).unwrap().unwrap();
        assert_eq!(contents.ranges, set(&[0..10, 20..30]));
        assert_eq!(contents.expected_len, Some(500));
        assert_eq!(fs::metadata(&path).unwrap().len(), contents.valid_len);
    }

    #[cfg(unix)] // Windows makes no journal anew (`REMOVED_NAMES_GO_AT_ONCE`)
    #[test]
    fn a_journal_removed_from_outside_is_made_anew_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.storage-journal");
        fs::write(dir.path().join("gone"), b"its file").unwrap();
        let mut journal = Journal::create(&path, [0..10].iter()).unwrap();
        fs::remove_file(&path).unwrap();
        journal.sync().unwrap();
        assert_eq!(read(&path).unwrap().unwrap().ranges, set(&[]));
        journal.append([20..30].iter()).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().ranges, set(&[20..30]));
        // The download removed whole (its file too): no journal comes back.
        fs::remove_file(dir.path().join("gone")).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(journal.sync().is_err());
        assert!(!path.exists());
    }

    #[test]
    fn create_writes_the_first_record_in_one_step_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.storage-journal");
        let journal = Journal::create(&path, [0..10, 20..30].iter()).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().ranges, set(&[0..10, 20..30]));
        assert!(!temp_path_for(&path).exists());
        drop(journal);
        remove_if_present(&path).unwrap();
        // Where the journal cannot be renamed into place, nothing is left.
        fs::create_dir(&path).unwrap();
        fs::write(path.join("occupied"), b"").unwrap();
        assert!(Journal::create(&path, [0..10].iter()).is_err());
        assert!(!temp_path_for(&path).exists());
    }

    #[test]
    fn resume_cuts_the_torn_tail_so_new_records_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.storage-journal");
        let mut bytes = journal_of(&[&[0..10]]);
        bytes.extend_from_slice(&[1, 2, 3]); // a torn record
        fs::write(&path, &bytes).unwrap();
        let contents = read(&path).unwrap().unwrap();
        let mut journal = Journal::resume(&path, &contents).unwrap();
        journal.append([20..30].iter()).unwrap();
        journal.sync().unwrap();
        assert_eq!(read(&path).unwrap().unwrap().ranges, set(&[0..10, 20..30]));
        drop(journal);
        remove_if_present(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }
}
