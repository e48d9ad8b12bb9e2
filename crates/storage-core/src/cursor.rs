//! `ResourceCursor`: `std::io::Read + Seek` over any resource, for decoders.

use std::{
    io::{self, Read, Seek, SeekFrom},
    time::Duration,
};

use crate::{ResourceExt, StorageError, WaitOutcome};

/// A `Read + Seek` view of a resource that is still being written: hand it
/// to a decoder (symphonia, hound, a parser of your own).
///
/// - `read` waits until at least one byte at the position is available, then
///   returns the bytes available from there without a gap (up to the
///   buffer's length): it never waits for the whole buffer. `Ok(0)` means the
///   committed end.
/// - Failure, cancellation and (with [`with_timeout`](Self::with_timeout))
///   an expired wait become an `io::Error` whose inner error is the
///   [`StorageError`] (`error.get_ref()` and downcast): kinds `Other`,
///   `Other` and `TimedOut`.
/// - An [`interrupt`](ResourceExt::interrupt) of the resource while `read`
///   waits surfaces as `ErrorKind::Interrupted`. Note that std's read loops
///   (`read_exact`, `read_to_end`, `io::copy`) retry `Interrupted` at once
///   and go back to waiting; call `read` directly to see it.
/// - `SeekFrom::End` needs the final length: while it is unknown (not
///   committed, or committed without a length) it is `ErrorKind::Unsupported`
///   at once, never a wait for the whole download. Seeking past the end is
///   allowed, as with a file; reads there return `Ok(0)` once committed.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Seek, SeekFrom};
///
/// use storage_core::{ResourceCursor, ResourceExt};
/// # use storage_core::testing::ReferenceResource;
/// # let resource = ReferenceResource::new(storage_core::CancellationToken::new());
/// resource.write_all(b"RIFF....WAVE")?;
/// let mut cursor = ResourceCursor::new(resource);
/// cursor.seek(SeekFrom::Start(8))?;
/// let mut form = [0; 4];
/// cursor.read_exact(&mut form)?;
/// assert_eq!(&form, b"WAVE");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ResourceCursor<R: ResourceExt> {
    resource: R,
    position: u64,
    timeout: Option<Duration>,
}

/// The `io::Error` carrying `error`, with the kind a reader expects.
fn io_error(error: StorageError) -> io::Error {
    let kind = match &error {
        StorageError::Io(inner) => inner.kind(),
        StorageError::TimedOut => io::ErrorKind::TimedOut,
        StorageError::InvalidRange { .. } => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}

impl<R: ResourceExt> ResourceCursor<R> {
    /// A cursor at position 0 whose reads wait as long as it takes.
    pub fn new(resource: R) -> Self {
        Self {
            resource,
            position: 0,
            timeout: None,
        }
    }

    /// A cursor whose reads give up after `timeout` with
    /// `ErrorKind::TimedOut` (an underrun becomes silence, not a frozen
    /// thread).
    pub fn with_timeout(resource: R, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::new(resource)
        }
    }

    /// The position of the next read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The resource.
    pub fn get_ref(&self) -> &R {
        &self.resource
    }

    /// Gives the resource back.
    pub fn into_inner(self) -> R {
        self.resource
    }

    fn wait_for_one_byte(&self) -> Result<WaitOutcome, StorageError> {
        let range = self.position..self.position + 1;
        match self.timeout {
            Some(timeout) => self.resource.wait_range_timeout(range, timeout),
            None => self.resource.wait_range(range),
        }
    }
}

impl<R: ResourceExt> Read for ResourceCursor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position == u64::MAX {
            return Ok(0);
        }
        match self.wait_for_one_byte().map_err(io_error)? {
            WaitOutcome::Eof => return Ok(0),
            WaitOutcome::Interrupted => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the resource's waiters were interrupted",
                ));
            }
            WaitOutcome::Ready => {}
        }
        let limit = self.position.saturating_add(buf.len() as u64);
        let available_end = self
            .resource
            .next_gap(self.position, limit)
            .map_or(limit, |gap| gap.start);
        // At least one byte is available, and at most `buf.len()`.
        let want = usize::try_from(available_end - self.position)
            .unwrap_or(buf.len())
            .clamp(1, buf.len());
        let count = self
            .resource
            .read_at(self.position, &mut buf[..want])
            .map_err(io_error)?;
        self.position += count as u64;
        Ok(count)
    }
}

impl<R: ResourceExt> Seek for ResourceCursor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(offset) => {
                self.position = offset;
                return Ok(offset);
            }
            SeekFrom::Current(delta) => (self.position, delta),
            SeekFrom::End(delta) => {
                let Some(len) = self.resource.len() else {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "SeekFrom::End on a resource whose length is not known yet",
                    ));
                };
                (len, delta)
            }
        };
        let position = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek to {base} {delta:+} is outside 0..=u64::MAX"),
            )
        })?;
        self.position = position;
        Ok(position)
    }
}
