//! `ResourceCursor`: `std::io::Read + Seek` over any resource, for decoders.

use std::{
    io::{self, Read, Seek, SeekFrom},
    time::{Duration, Instant},
};

use crate::{ResourceExt, StorageError, WaitOutcome};

#[cfg(feature = "symphonia")]
mod symphonia;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "tokio")]
pub use self::tokio::AsyncResourceCursor;

/// What a cursor's read does when the resource's waiters are interrupted
/// ([`ResourceExt::interrupt`]) while it waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interrupts {
    /// Wait again, as std's read loops do with `ErrorKind::Interrupted`
    /// (the default). A decoder that takes every read error as fatal
    /// (symphonia) then never sees one.
    #[default]
    Retry,
    /// Return `ErrorKind::Interrupted`, for a caller that interrupts its own
    /// reader to make it do something else (a seek) at once.
    Report,
}

/// A `Read + Seek` view of a resource that is still being written: hand it
/// to a decoder (symphonia, hound, a parser of your own).
///
/// - `read` waits until at least one byte at the position is available, then
///   returns the bytes available from there without a gap (up to the
///   buffer's length): it never waits for the whole buffer. `Ok(0)` means the
///   end: the committed length, or the expected one
///   ([`ResourceExt::set_expected_len`]).
/// - Failure, cancellation and (with [`with_timeout`](Self::with_timeout))
///   an expired wait become an `io::Error` whose inner error is the
///   [`StorageError`] (`error.get_ref()` and downcast; the kinds are those of
///   `From<StorageError> for io::Error`): `Other`, `Other` and `TimedOut`.
///   To stop a reader blocked in `read`, cancel the resource's token or
///   `fail` it.
/// - An [`interrupt`](ResourceExt::interrupt) of the resource while `read`
///   waits is retried: the read waits again (see [`Interrupts`]; with
///   [`Interrupts::Report`] it surfaces as `ErrorKind::Interrupted`).
/// - The end is [`ResourceExt::expected_len`]: the final length once
///   committed with one, else the expected length. `SeekFrom::End` needs
///   it: while it is unknown it is `ErrorKind::Unsupported` at once, never
///   a wait for the whole download. A seek past a known end is
///   `ErrorKind::InvalidInput` (no byte can ever be there; the position
///   stays where it was); while the end is unknown, any position is
///   accepted and a read there waits for its byte.
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
    interrupts: Interrupts,
}

impl<R: ResourceExt> ResourceCursor<R> {
    /// A cursor at position 0 whose reads wait as long as it takes.
    pub fn new(resource: R) -> Self {
        Self {
            resource,
            position: 0,
            timeout: None,
            interrupts: Interrupts::Retry,
        }
    }

    /// A cursor whose reads give up after `timeout` with
    /// `ErrorKind::TimedOut` (an underrun becomes an error, not a frozen
    /// thread). The timeout holds for the whole read, retried interrupts
    /// included. Not for symphonia: it drops the packet (or the whole
    /// probe) that a read error hits; stop it by cancelling instead.
    pub fn with_timeout(resource: R, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::new(resource)
        }
    }

    /// Sets what a read does when the waiters are interrupted.
    #[must_use]
    pub fn interrupts(mut self, interrupts: Interrupts) -> Self {
        self.interrupts = interrupts;
        self
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

    /// Waits until `deadline` (`None`: as long as it takes) for the byte at
    /// the position, telling the demand signal that the whole read (`len`
    /// bytes, clipped to the known end) is wanted.
    fn wait_for_read(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WaitOutcome, StorageError> {
        // The common case, lock-free: the byte is there.
        if self
            .resource
            .contains_range(self.position..self.position.saturating_add(1))
        {
            return Ok(WaitOutcome::Ready);
        }
        let end = self.position.saturating_add((len as u64).max(1));
        let end = self
            .resource
            .expected_len()
            .map_or(end, |known| end.min(known.max(self.position + 1)));
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        self.resource.wait_first_byte(self.position..end, timeout)
    }
}

/// Reads into `buf` the bytes of `resource` available without a gap from
/// `position`, once at least one is (the caller waited): the count.
pub(crate) fn read_available(
    resource: &impl ResourceExt,
    position: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let limit = position.saturating_add(buf.len() as u64);
    let available_end = resource
        .next_gap(position, limit)
        .map_or(limit, |gap| gap.start);
    // At least one byte is available, and at most `buf.len()`.
    let want = usize::try_from(available_end.saturating_sub(position))
        .unwrap_or(buf.len())
        .clamp(1, buf.len());
    Ok(resource.read_at(position, &mut buf[..want])?)
}

/// The position `to` names from `position`, checked against the resource's
/// known end (see [`ResourceCursor`]).
pub(crate) fn seek_target(
    resource: &impl ResourceExt,
    position: u64,
    to: SeekFrom,
) -> io::Result<u64> {
    let end = resource.expected_len();
    let (base, delta) = match to {
        SeekFrom::Start(offset) => (offset, 0),
        SeekFrom::Current(delta) => (position, delta),
        SeekFrom::End(delta) => {
            let Some(len) = end else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "SeekFrom::End on a resource whose length is not known yet",
                ));
            };
            (len, delta)
        }
    };
    let target = base.checked_add_signed(delta).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("seek to {base} {delta:+} is outside 0..=u64::MAX"),
        )
    })?;
    if let Some(end) = end
        && target > end
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("seek to {target}, past the end of the resource ({end} bytes)"),
        ));
    }
    Ok(target)
}

impl<R: ResourceExt> Read for ResourceCursor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position == u64::MAX {
            return Ok(0);
        }
        // One deadline for the whole read: retried interrupts do not extend it.
        let deadline = self
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            match self.wait_for_read(buf.len(), deadline)? {
                WaitOutcome::Eof => return Ok(0),
                WaitOutcome::Interrupted => {
                    if self.interrupts == Interrupts::Report {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "the resource's waiters were interrupted",
                        ));
                    }
                }
                WaitOutcome::Ready => break,
            }
        }
        let count = read_available(&self.resource, self.position, buf)?;
        self.position += count as u64;
        Ok(count)
    }
}

impl<R: ResourceExt> Seek for ResourceCursor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = seek_target(&self.resource, self.position, to)?;
        Ok(self.position)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
