//! One range request of a download: its answer checked against what the
//! download knows of the remote file, its body stored where the resource
//! lacks bytes.

use std::{
    ops::Range,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use reqwest::header;
use storage_core::{ResourceExt, StorageError};

use crate::{
    fetch::{Context, Finished},
    http::{self, Answer, Head},
};

/// One range request, from `start` to `end` (or the end of the body): its
/// answer checked against what the download knows, its body written into
/// the resource where bytes are missing, up to `limit`.
pub(crate) async fn request<R: ResourceExt>(
    context: &Context<R>,
    start: u64,
    end: Option<u64>,
    front: &AtomicU64,
    limit: &AtomicU64,
) -> Finished {
    let failed = |reason: String, progressed: bool, status: Option<u16>| Finished::Failed {
        front: front.load(Ordering::Acquire),
        progressed,
        reason,
        status,
    };
    let validator = context.identity.lock().validator.clone();
    let mut builder = context
        .client
        .get(&context.url)
        .header(header::RANGE, http::range_header(start, end));
    // A resume asks for the same version only (a weak ETag cannot).
    if let Some(validator) = validator.filter(|v| !v.starts_with("W/")) {
        builder = builder.header(header::IF_RANGE, validator);
    }
    context.requests.fetch_add(1, Ordering::Relaxed);
    let sent = tokio::time::timeout(context.options.read_timeout, builder.send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        // A redirect loop or too many: not a passing fault.
        Ok(Err(error)) if error.is_redirect() => {
            return Finished::Invalid(format!("redirects: {error}"));
        }
        Ok(Err(error)) => return failed(error.to_string(), false, None),
        Err(_) => return failed("no answer within the read timeout".into(), false, None),
    };
    let head = match http::answer(&response, start) {
        Ok(Answer::Body(head)) => head,
        Ok(Answer::NotSatisfiable { total }) => {
            return Finished::NotSatisfiable {
                asked: start,
                total,
            };
        }
        Ok(Answer::Retry(status)) => {
            return failed(
                format!("the server answered {status}"),
                false,
                Some(status.as_u16()),
            );
        }
        Ok(Answer::Refused(status)) => return Finished::Refused(status.as_u16()),
        Err(reason) => return Finished::Invalid(reason),
    };
    if let Err(finished) = check_identity(context, &head) {
        return finished;
    }
    read_body(context, response, head.start, start, front, limit).await
}

/// Reads the body of `response` (whose first byte is at `at`), storing the
/// bytes from `start` up to `limit` that the resource lacks.
async fn read_body<R: ResourceExt>(
    context: &Context<R>,
    mut response: reqwest::Response,
    mut at: u64,
    start: u64,
    front: &AtomicU64,
    limit: &AtomicU64,
) -> Finished {
    let failed = |reason: String, progressed: bool| Finished::Failed {
        front: front.load(Ordering::Acquire),
        progressed,
        reason,
        status: None,
    };
    let mut progressed = false;
    // Small chunks are gathered (contiguous, up to `BATCH`) and stored in
    // one write: fewer calls into the resource for the same bytes. A batch
    // waits at most `BATCH_WAIT` for the next chunk, so readers at the
    // front see bytes as they come.
    let mut batch = Batch::default();
    loop {
        let next = if batch.bytes.is_empty() {
            Some(tokio::time::timeout(context.options.read_timeout, response.chunk()).await)
        } else {
            tokio::select! {
                chunk = tokio::time::timeout(context.options.read_timeout, response.chunk()) => Some(chunk),
                () = tokio::time::sleep(BATCH_WAIT) => None,
            }
        };
        let Some(chunk) = next else {
            // The next chunk is late: store what is gathered meanwhile.
            if let Err(error) = batch.store(context, front, &mut progressed) {
                return Finished::Storage(error);
            }
            continue;
        };
        let bytes = match chunk {
            Ok(Ok(Some(bytes))) => bytes,
            ended => {
                if let Err(error) = batch.store(context, front, &mut progressed) {
                    return Finished::Storage(error);
                }
                return match ended {
                    Ok(Ok(_)) => Finished::Done {
                        eof: true,
                        end: at,
                        progressed,
                    },
                    Ok(Err(error)) => failed(error.to_string(), progressed),
                    Err(_) => failed(
                        format!("nothing received for {:?}", context.options.read_timeout),
                        progressed,
                    ),
                };
            }
        };
        let chunk_end = at + bytes.len() as u64;
        let stop = limit.load(Ordering::Acquire);
        let (lo, hi) = (at.max(start), chunk_end.min(stop));
        if lo < hi {
            let part = &bytes
                [usize::try_from(lo - at).unwrap_or(0)..usize::try_from(hi - at).unwrap_or(0)];
            if batch.end() != Some(lo) || batch.bytes.len() + part.len() > BATCH {
                if let Err(error) = batch.store(context, front, &mut progressed) {
                    return Finished::Storage(error);
                }
                // Another request (or a writer) filled the rest meanwhile.
                if context.resource.next_gap(lo, stop).is_none() {
                    return Finished::Done {
                        eof: false,
                        end: lo,
                        progressed,
                    };
                }
            }
            if batch.bytes.is_empty() {
                batch.start = lo;
            }
            batch.bytes.extend_from_slice(part);
        }
        at = chunk_end;
        if at >= stop {
            if let Err(error) = batch.store(context, front, &mut progressed) {
                return Finished::Storage(error);
            }
            return Finished::Done {
                eof: false,
                end: at,
                progressed,
            };
        }
    }
}

/// The most bytes gathered before they are stored.
const BATCH: usize = 256 * 1024;

/// The longest gathered bytes wait for the next chunk before they are
/// stored anyway.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// Contiguous bytes of a body gathered for one write.
#[derive(Default)]
struct Batch {
    start: u64,
    bytes: Vec<u8>,
}

impl Batch {
    /// Where the gathered bytes end, if there are any.
    fn end(&self) -> Option<u64> {
        (!self.bytes.is_empty()).then(|| self.start + self.bytes.len() as u64)
    }

    /// Stores what is gathered (the parts the resource lacks) and moves
    /// the request's front past it.
    fn store<R: ResourceExt>(
        &mut self,
        context: &Context<R>,
        front: &AtomicU64,
        progressed: &mut bool,
    ) -> Result<(), StorageError> {
        let Some(end) = self.end() else {
            return Ok(());
        };
        let stored = store_missing(&context.resource, &self.bytes, self.start, self.start..end)?;
        context.fetched.fetch_add(stored, Ordering::Relaxed);
        *progressed |= stored > 0;
        front.store(end, Ordering::Release);
        self.bytes.clear();
        Ok(())
    }
}

/// Checks a response against what the download knows of the remote file,
/// and records what it learns (the length, the validator) with the
/// resource. `Err` when the file changed or the resource refused.
fn check_identity<R: ResourceExt>(context: &Context<R>, head: &Head) -> Result<(), Finished> {
    let mut identity = context.identity.lock();
    if let Some(ours) = &identity.validator {
        match &head.validator {
            Some(theirs) if theirs != ours => {
                return Err(Finished::Changed(format!(
                    "the validator changed ({ours} → {theirs})"
                )));
            }
            // A whole file (200: an `If-Range` that did not match, or a
            // server without ranges) with nothing to compare: it cannot be
            // told from a changed file, so it is taken for one. A 206 to
            // an `If-Range` is the same version by the server's word.
            None if !head.partial => {
                return Err(Finished::Changed(
                    "a whole-file answer without a validator to compare".into(),
                ));
            }
            _ => {}
        }
    }
    if let (Some(ours), Some(theirs)) = (identity.len, head.total)
        && ours != theirs
    {
        return Err(Finished::Changed(format!(
            "the length changed ({ours} → {theirs})"
        )));
    }
    if head.partial {
        identity.ranges.get_or_insert(true);
    } else {
        // A 200 to a range request: the server ignores ranges.
        identity.ranges = Some(false);
    }
    if identity.validator.is_none()
        && let Some(validator) = &head.validator
    {
        context
            .resource
            .set_validator(validator)
            .map_err(Finished::Storage)?;
        identity.validator = Some(validator.clone());
    }
    if identity.len.is_none()
        && let Some(total) = head.total
    {
        match context.resource.set_expected_len(total) {
            Ok(()) => identity.len = Some(total),
            // Bytes past it, or another length declared: not this file.
            Err(StorageError::PastExpectedLen { .. } | StorageError::LengthMismatch { .. }) => {
                return Err(Finished::Changed(
                    "the resource holds another length".into(),
                ));
            }
            Err(error) => return Err(Finished::Storage(error)),
        }
    }
    Ok(())
}

/// Writes the bytes of `wanted` (within the chunk `bytes` at `at`) that the
/// resource lacks; the count written.
fn store_missing<R: ResourceExt>(
    resource: &R,
    bytes: &[u8],
    at: u64,
    wanted: Range<u64>,
) -> Result<u64, StorageError> {
    let mut stored = 0;
    let mut from = wanted.start;
    while let Some(gap) = resource.next_gap(from, wanted.end) {
        let (lo, hi) = (gap.start, gap.end.min(wanted.end));
        let slice =
            &bytes[usize::try_from(lo - at).unwrap_or(0)..usize::try_from(hi - at).unwrap_or(0)];
        resource.write_at(lo, slice)?;
        stored += hi - lo;
        from = hi;
        if from >= wanted.end {
            break;
        }
    }
    Ok(stored)
}
