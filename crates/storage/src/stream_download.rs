//! `ResourceStorageProvider`: a storage provider for the stream-download crate (feature `stream-download`).

use std::io::{self, Read, Seek, SeekFrom, Write};

use stream_download::storage::StorageProvider;

use crate::{ResourceCursor, ResourceExt, ResourceStatus};

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
/// - The writer writes at its position and, once the whole content length
///   is covered, commits the resource (stream-download never says the
///   download finished). With an unknown length it never commits: call
///   `commit(None)` when `StreamDownload::handle().wait_for_completion()`
///   returns, if the resource should be complete. The empty `write(&[])`
///   that ends each of stream-download's write loops is `Ok(0)`, in every
///   state. `flush` does nothing (stream-download calls it after each
///   batch; durability is the driver's checkpoints, or `sync`).
/// - The reader never waits: it returns the bytes available at its
///   position (stream-download waits for them itself before it reads), and
///   `Ok(0)` where none are.
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
            // Nothing to write (an empty file, or one complete but not
            // committed): done already.
            if self.resource.contains_range(0..len) {
                self.resource.commit(Some(len))?;
            }
        }
        let reader = ResourceStorageReader {
            cursor: ResourceCursor::new(self.resource.clone()),
        };
        let writer = ResourceStorageWriter {
            resource: self.resource,
            position: 0,
        };
        Ok((reader, writer))
    }
}

/// The reader half: `Read + Seek` that never waits (see
/// [`ResourceStorageProvider`]).
#[derive(Debug)]
pub struct ResourceStorageReader<R: ResourceExt + Clone> {
    cursor: ResourceCursor<R>,
}

impl<R: ResourceExt + Clone> Read for ResourceStorageReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.cursor.position();
        let there = position
            .checked_add(1)
            .is_some_and(|end| self.cursor.get_ref().contains_range(position..end));
        if buf.is_empty() || !there {
            return Ok(0);
        }
        // At least one byte is there: the cursor's read does not wait.
        self.cursor.read(buf)
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
        if let ResourceStatus::Committed { .. } = self.resource.status() {
            self.matches_committed(buf)?;
        } else {
            self.resource.write_at(self.position, buf)?;
            if let Some(len) = self.resource.expected_len()
                && self.resource.contains_range(0..len)
            {
                // The whole content is there: done (a no-op if another
                // writer committed first).
                self.resource.commit(Some(len))?;
            }
        }
        self.position += buf.len() as u64;
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
