//! `ResourceStorageProvider`: a storage provider for the stream-download crate (feature `stream-download`).

use std::{
    io::{self, Read, Seek, SeekFrom, Write},
    sync::Arc,
};

use parking_lot::Mutex;
use stream_download::storage::StorageProvider;

use crate::{ResourceCursor, ResourceExt, ResourceStatus, driver::RangeSet};

/// The ranges this run's writer stored (or, into a committed resource,
/// checked): what the run vouches for. Shared by the reader and the writer
/// of one `into_reader_writer`.
type ThisRun = Arc<Mutex<RangeSet<u64>>>;

/// A [stream-download](https://docs.rs/stream-download/0.24) storage
/// provider backed by a resource: pass it where `TempStorageProvider` or
/// `MemoryStorageProvider` went, and the download lands in an mmap file
/// (kept after the process) or in memory, readable by other readers
/// (a [`ResourceCursor`] on a clone) while it downloads.
///
/// How it answers stream-download's calls:
///
/// - `into_reader_writer(content_length)` declares the content length as
///   the resource's expected length
///   ([`set_expected_len`](ResourceExt::set_expected_len)); a resource that
///   expects or holds another length is an error (`InvalidInput`), which
///   stream-download returns as `StorageCreationFailure`.
/// - The writer writes at its position and, once *its own writes* cover the
///   whole content length, commits the resource (stream-download never
///   says the download finished). Bytes a resumed resource held from an
///   earlier run count for nothing: stream-download downloads from the
///   start on every run, so an earlier run's bytes (perhaps of a file that
///   changed since) are rewritten before the commit, never committed
///   beside this run's. With an unknown length it never commits (see
///   below). A write past the declared length is `InvalidInput` (the stream
///   is longer than it said). The empty `write(&[])`
///   that ends each of stream-download's write loops is `Ok(0)`, in every
///   state. `flush` does nothing (stream-download calls it after each
///   batch; durability is the driver's checkpoints, or `sync`).
/// - The reader never waits: it returns the bytes this run's writer stored
///   at its position (stream-download waits for them itself before it
///   reads), and `Ok(0)` where it stored none — never an earlier run's
///   bytes, nor a committed file's bytes past what this run checked.
/// - A resource already committed (a second run over a finished file): the
///   writer checks each write against the stored bytes (`InvalidData` if
///   they differ) and stores nothing. stream-download downloads from the
///   start on every run, whatever storage holds, so check
///   [`committed_reader`](Self::committed_reader) first and read the file
///   without a download.
///
/// # Examples
///
/// ```
/// use std::io::Read;
///
/// use storage::{CancellationToken, MemResource, ResourceExt, ResourceStorageProvider};
/// use stream_download::storage::StorageProvider;
///
/// let resource = MemResource::new(CancellationToken::new());
/// let provider = ResourceStorageProvider::new(resource.clone());
/// assert!(provider.committed_reader().is_none()); // nothing there yet: download
/// let (mut reader, mut writer) = provider.into_reader_writer(Some(5))?;
/// std::io::Write::write_all(&mut writer, b"hello")?;
/// assert_eq!(resource.len(), Some(5)); // covered, so committed
/// let mut text = String::new();
/// reader.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ResourceStorageProvider<R: ResourceExt + Clone> {
    resource: R,
}

impl<R: ResourceExt + Clone> ResourceStorageProvider<R> {
    /// A provider that stores into `resource`.
    pub fn new(resource: R) -> Self {
        Self { resource }
    }

    /// The resource (clone it for more readers).
    pub fn resource(&self) -> &R {
        &self.resource
    }

    /// A blocking cursor over the resource when it is already committed (a
    /// finished download from an earlier run): read that instead of
    /// starting a download. `None` while it is not complete.
    #[must_use]
    pub fn committed_reader(&self) -> Option<ResourceCursor<R>> {
        matches!(self.resource.status(), ResourceStatus::Committed { .. })
            .then(|| ResourceCursor::new(self.resource.clone()))
    }
}

impl<R: ResourceExt + Clone> StorageProvider for ResourceStorageProvider<R> {
    type Reader = ResourceStorageReader<R>;
    type Writer = ResourceStorageWriter<R>;

    fn into_reader_writer(
        self,
        content_length: Option<u64>,
    ) -> io::Result<(Self::Reader, Self::Writer)> {
        if let Some(len) = content_length {
            self.resource.set_expected_len(len)?;
            // Nothing to write: done already.
            if len == 0 {
                self.resource.commit(Some(0))?;
            }
        }
        let this_run = ThisRun::default();
        let reader = ResourceStorageReader {
            cursor: ResourceCursor::new(self.resource.clone()),
            this_run: Arc::clone(&this_run),
        };
        let writer = ResourceStorageWriter {
            resource: self.resource,
            position: 0,
            this_run,
        };
        Ok((reader, writer))
    }
}

/// The reader half: `Read + Seek` that never waits (see
/// [`ResourceStorageProvider`]).
#[derive(Debug)]
pub struct ResourceStorageReader<R: ResourceExt + Clone> {
    cursor: ResourceCursor<R>,
    this_run: ThisRun,
}

impl<R: ResourceExt + Clone> Read for ResourceStorageReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.cursor.position();
        // As far as this run stored contiguously from the position.
        let stored = self
            .this_run
            .lock()
            .get(&position)
            .map_or(0, |range| range.end - position);
        let want = usize::try_from(stored).map_or(buf.len(), |stored| stored.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        // Those bytes are there: the cursor's read does not wait.
        self.cursor.read(&mut buf[..want])
    }
}

impl<R: ResourceExt + Clone> Seek for ResourceStorageReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.cursor.seek(to)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.cursor.position())
    }
}

/// The writer half: `Write + Seek` into the resource (see
/// [`ResourceStorageProvider`]).
#[derive(Debug)]
pub struct ResourceStorageWriter<R: ResourceExt + Clone> {
    resource: R,
    position: u64,
    this_run: ThisRun,
}

impl<R: ResourceExt + Clone> ResourceStorageWriter<R> {
    /// Checks `buf` against the committed bytes at the position.
    fn matches_committed(&self, buf: &[u8]) -> io::Result<()> {
        let mut stored = vec![0; buf.len()];
        let count = self.resource.read_at(self.position, &mut stored)?;
        if stored[..count] == *buf {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the download differs from the committed resource at {}..{}",
                    self.position,
                    self.position + buf.len() as u64
                ),
            ))
        }
    }
}

impl<R: ResourceExt + Clone> Write for ResourceStorageWriter<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // stream-download ends each write loop with an empty write.
        if buf.is_empty() {
            return Ok(0);
        }
        let end = self
            .position
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let expected = self.resource.expected_len();
        if let Some(len) = expected.filter(|&len| end > len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the stream is longer than its declared length {len}: a write at {}..{end}",
                    self.position
                ),
            ));
        }
        if let ResourceStatus::Committed { .. } = self.resource.status() {
            self.matches_committed(buf)?;
            self.this_run.lock().insert(self.position..end);
        } else {
            self.resource.write_at(self.position, buf)?;
            let complete = {
                let mut this_run = self.this_run.lock();
                this_run.insert(self.position..end);
                expected.filter(|&len| {
                    this_run
                        .get(&0)
                        .is_some_and(|first| first.start == 0 && first.end >= len)
                })
            };
            if let Some(len) = complete {
                // This run wrote the whole content: done (a no-op if
                // another writer committed first).
                self.resource.commit(Some(len))?;
            }
        }
        self.position = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: ResourceExt + Clone> Seek for ResourceStorageWriter<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut cursor = ResourceCursor::new(self.resource.clone());
        cursor.seek(SeekFrom::Start(self.position))?;
        self.position = cursor.seek(to)?;
        Ok(self.position)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
