//! `AsyncResourceCursor`: `tokio::io::AsyncRead + AsyncSeek` over a resource (feature `tokio`).

use std::{
    fmt,
    future::Future,
    io::{self, SeekFrom},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use super::{Interrupts, read_available, seek_target};
use crate::{ResourceExt, StorageResult, WaitOutcome};

/// A wait of the cursor's, owning its handle of the resource.
type PendingWait = Pin<Box<dyn Future<Output = StorageResult<WaitOutcome>> + Send>>;

/// The async twin of [`ResourceCursor`](crate::ResourceCursor): a
/// `tokio::io::AsyncRead + AsyncSeek` over a resource that is still being
/// written, for async code (`tokio::io::copy`, an HTTP body, an async
/// decoder).
///
/// A read that must wait registers the task's waker through
/// [`ResourceExt::wait_range_async`] and returns `Pending`: no blocking call
/// on the runtime's thread, no thread per read. Otherwise it behaves as the
/// blocking cursor: it returns the bytes available without a gap from the
/// position (at least one), nothing at the end (the final or expected
/// length), an `io::Error` carrying the [`StorageError`](crate::StorageError)
/// on failure or cancellation, and retries an interrupt unless built with
/// [`Interrupts::Report`]. Seeks are checked as the blocking cursor's are
/// (`SeekFrom::End` needs a known length; no seek past a known end) and
/// complete at once.
///
/// The pending wait lives in the cursor: a read future dropped while it
/// waits (a `tokio::time::timeout`) leaves it registered for the next read
/// at that position; a seek or dropping the cursor deregisters it. Needs a
/// resource handle it can clone (every resource type here is one).
///
/// # Examples
///
/// ```
/// use storage_core::{AsyncResourceCursor, ResourceExt};
/// use tokio::io::AsyncReadExt;
/// # use storage_core::testing::ReferenceResource;
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// # runtime.block_on(async {
/// let resource = ReferenceResource::new(storage_core::CancellationToken::new());
/// let writer = resource.clone();
/// std::thread::spawn(move || writer.write_all(b"downloaded later"));
/// let mut text = String::new();
/// AsyncResourceCursor::new(resource).read_to_string(&mut text).await?;
/// assert_eq!(text, "downloaded later");
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncResourceCursor<R: ResourceExt + Clone> {
    resource: R,
    position: u64,
    interrupts: Interrupts,
    /// The wait for the byte at `position`, while a read is pending.
    pending: Option<PendingWait>,
}

impl<R: ResourceExt + Clone> fmt::Debug for AsyncResourceCursor<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResourceCursor")
            .field("position", &self.position)
            .field("interrupts", &self.interrupts)
            .field("waiting", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: ResourceExt + Clone> AsyncResourceCursor<R> {
    /// A cursor at position 0.
    pub fn new(resource: R) -> Self {
        Self {
            resource,
            position: 0,
            interrupts: Interrupts::Retry,
            pending: None,
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

    /// Gives the resource back (a pending wait is dropped, deregistered).
    pub fn into_inner(self) -> R {
        self.resource
    }

    /// Polls until the byte at the position is available (`Ok(true)`) or
    /// the end is reached (`Ok(false)`).
    fn poll_one_byte(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let range = self.position..self.position + 1;
        loop {
            let pending = match &mut self.pending {
                Some(pending) => pending,
                None if self.resource.contains_range(range.clone()) => {
                    return Poll::Ready(Ok(true));
                }
                None => {
                    let resource = self.resource.clone();
                    let range = range.clone();
                    self.pending.insert(Box::pin(
                        async move { resource.wait_range_async(range).await },
                    ))
                }
            };
            let Poll::Ready(outcome) = pending.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            self.pending = None;
            match outcome? {
                WaitOutcome::Ready => return Poll::Ready(Ok(true)),
                WaitOutcome::Eof => return Poll::Ready(Ok(false)),
                WaitOutcome::Interrupted if self.interrupts == Interrupts::Report => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the resource's waiters were interrupted",
                    )));
                }
                WaitOutcome::Interrupted => {}
            }
        }
    }
}

impl<R: ResourceExt + Clone + Unpin> AsyncRead for AsyncResourceCursor<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.position == u64::MAX {
            return Poll::Ready(Ok(()));
        }
        match this.poll_one_byte(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(false)) => Poll::Ready(Ok(())),
            Poll::Ready(Ok(true)) => {
                let count =
                    read_available(&this.resource, this.position, buf.initialize_unfilled())?;
                buf.advance(count);
                this.position += count as u64;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<R: ResourceExt + Clone + Unpin> AsyncSeek for AsyncResourceCursor<R> {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        this.position = seek_target(&this.resource, this.position, to)?;
        // A wait for the old position is moot: dropping it deregisters it.
        this.pending = None;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}
