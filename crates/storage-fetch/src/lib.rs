//! Fills a storage resource from a URL: the network half of the `storage`
//! family.
//!
//! [`Fetcher::fetch`] downloads a file over HTTP into any
//! [`ResourceExt`](storage_core::ResourceExt) — a memory or file resource,
//! a cache entry — while readers read it:
//!
//! - **Demand first, with no wiring.** A reader that blocks on a range the
//!   download is not about to reach (a seek) gets that range fetched next,
//!   on a connection of its own: the fetcher listens to the resource's
//!   demand signal ([`ResourceExt::demand`](storage_core::ResourceExt::demand)).
//!   A reader that only caught up with the download front restarts nothing.
//! - **Resume.** Bytes already there are never fetched again: after a
//!   restart, a kill, or with a half-finished cache entry.
//! - **One version.** The remote file's length and validator (`ETag`, else
//!   `Last-Modified`) are kept with the resource; a resume asks with
//!   `If-Range`, and a file that changed on the server is fetched afresh,
//!   never spliced onto the old bytes.
//! - **Servers as they are.** 206 with `Content-Range`, 200 without range
//!   support (read from the start, skipping what is there), an unknown
//!   length (committed at the end of the body), 416, redirects; dropped
//!   connections, stalls and 5xx retried with backoff from where the bytes
//!   stopped; any other 4xx fails the resource, so blocked readers get an
//!   error instead of a hang.
//!
//! When every byte is there the resource is committed. Dropping the
//! future stops the download (the resource stays resumable); cancelling
//! the resource's token stops it too.
//!
//! # Examples
//!
//! ```no_run
//! use storage_core::{CancellationToken, ResourceCursor};
//! use storage_fetch::{FetchOptions, Fetcher};
//! use storage_mmap::{MmapOptions, MmapResource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let track = MmapResource::open(CancellationToken::new(), MmapOptions::new("track.flac"))?;
//! let fetcher = Fetcher::new(FetchOptions::default());
//! let download = tokio::spawn({
//!     let (fetcher, track) = (fetcher.clone(), track.clone());
//!     async move { fetcher.fetch(track, "http://127.0.0.1:8000/track.flac").await }
//! });
//! // A decoder reads (and seeks) meanwhile, on its own thread.
//! let cursor = ResourceCursor::new(track);
//! # drop(cursor);
//! let report = download.await??;
//! println!("{} bytes, {} fetched", report.len, report.fetched);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod fetch;
mod http;
mod request;

use std::{sync::Arc, time::Duration};

/// How a [`Fetcher`] downloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Requests in flight at once for one download: one fills the file in
    /// order, the others serve readers that seek. At least 1. Default: 2.
    pub connections: usize,
    /// Failed attempts in a row (no byte of progress between them) before a
    /// download gives up: the resource is then failed. Default: 5.
    pub retries: u32,
    /// The wait before the first retry; it doubles with each one. Default:
    /// 100 ms.
    pub backoff: Duration,
    /// The longest wait between retries. Default: 5 s.
    pub max_backoff: Duration,
    /// How long a response may send nothing before it counts as stalled
    /// (and is retried from where it stopped). Default: 10 s.
    pub read_timeout: Duration,
    /// How long connecting may take (for a client this crate builds).
    /// Default: 10 s.
    pub connect_timeout: Duration,
    /// The most a reader may be blocked past a request's position and
    /// still count as waiting for bytes that request is about to deliver
    /// (an underrun, which starts no request) rather than seeking. The
    /// window used is what the request delivers in about 250 ms at the
    /// rate it has shown (a new request's cost), at least 64 KiB, at most
    /// this. Default: 512 KiB.
    pub front_window: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            connections: 2,
            retries: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            front_window: 512 * 1024,
        }
    }
}

/// What a finished [`Fetcher::fetch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchReport {
    /// The file's length (the resource is committed at it).
    pub len: u64,
    /// Bytes downloaded and stored by this call.
    pub fetched: u64,
    /// Bytes that were there already (`len - fetched`): never fetched.
    pub skipped: u64,
    /// HTTP requests made.
    pub requests: u32,
    /// Requests that were retries of a failed one.
    pub retries: u32,
    /// Times the remote file had changed and what was there was discarded.
    pub restarts: u32,
}

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The server refused (a 4xx other than 416), or kept failing (5xx)
    /// after every retry. The resource was failed with this reason.
    #[error("{url}: the server answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The network kept failing (connection refused or dropped, a stall
    /// past the read timeout) after every retry. The resource was failed.
    #[error("{url}: {reason} (after {attempts} attempts)")]
    Network {
        /// The URL asked.
        url: String,
        /// The last failure.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server's answers cannot be trusted (a `Content-Range` for
    /// another range, a file that kept changing). The resource was failed.
    #[error("{url}: {reason}")]
    InvalidResponse {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The resource refused (failed, cancelled, a full disk, ...).
    #[error("the resource refused: {0}")]
    Storage(#[from] storage_core::StorageError),
    /// The resource's token was cancelled.
    #[error("the download was cancelled")]
    Cancelled,
}

/// Downloads URLs into resources. Cheap to clone: clones share one
/// `reqwest::Client` (its connection pool) and the options.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    options: Arc<FetchOptions>,
}

impl Fetcher {
    /// A fetcher with a client of its own (rustls, the options' connect
    /// timeout, redirects followed up to 10 times).
    #[must_use]
    pub fn new(options: FetchOptions) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .build()
            .unwrap_or_default();
        Self::with_client(client, options)
    }

    /// A fetcher that uses `client` (its proxy, TLS and header settings).
    #[must_use]
    pub fn with_client(client: reqwest::Client, options: FetchOptions) -> Self {
        Self {
            client,
            options: Arc::new(options),
        }
    }

    /// Fills `resource` from `url` until every byte is there, then commits
    /// it; a resource already committed returns at once, with no request.
    /// Needs a tokio runtime (reqwest's).
    ///
    /// Dropping the future stops the download; the resource stays active
    /// and resumable (a later `fetch` fetches only what is missing).
    ///
    /// # Errors
    ///
    /// [`FetchError`]: the server refused or kept failing, the network kept
    /// failing, the answers could not be trusted (in those cases the
    /// resource is failed, so its blocked readers get an error), the
    /// resource refused, or its token was cancelled.
    pub async fn fetch<R>(&self, resource: R, url: &str) -> Result<FetchReport, FetchError>
    where
        R: storage_core::ResourceExt + Clone + Send + Sync + 'static,
    {
        fetch::Job::new(
            self.client.clone(),
            Arc::clone(&self.options),
            resource,
            url,
        )
        .run()
        .await
    }
}

/// `resource.sync()` on a blocking thread, for async code: what was
/// written or committed before the call becomes durable without blocking
/// a runtime thread.
///
/// # Errors
///
/// What `sync` returns.
pub async fn sync<R>(resource: R) -> storage_core::StorageResult<()>
where
    R: storage_core::ResourceExt + Send + 'static,
{
    tokio::task::spawn_blocking(move || resource.sync())
        .await
        .map_err(|e| storage_core::StorageError::Failed(format!("the sync task died: {e}")))?
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    const fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        const _: () = assert_send_sync::<Fetcher>();
        const _: () = assert_send_sync::<FetchError>();
        const _: () = assert_send_sync::<FetchReport>();
    }
}
