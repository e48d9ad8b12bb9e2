//! What a response says about the remote file: its total length, its
//! validator, the range it carries; and the request for a range.

use reqwest::{
    Response, StatusCode,
    header::{self, HeaderMap},
};

/// The remote file as one response describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The offset of the body's first byte.
    pub start: u64,
    /// The file's total length, when the response says.
    pub total: Option<u64>,
    /// `ETag`, else `Last-Modified`.
    pub validator: Option<String>,
    /// A 206: the server serves ranges (a 200 answers from the start).
    pub partial: bool,
}

/// How the server answered a range request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A body to read (206, or 200 from the start).
    Body(Head),
    /// 416: nothing at the start asked for; the total, when said.
    NotSatisfiable { total: Option<u64> },
    /// Worth asking again (5xx, 408, 429).
    Retry(StatusCode),
    /// Refused for good (other 4xx, 3xx that were not followed, ...).
    Refused(StatusCode),
}

/// The validator of a response: a strong or weak `ETag`, else
/// `Last-Modified`.
fn validator(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ETAG)
        .or_else(|| headers.get(header::LAST_MODIFIED))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A `Content-Range`: the range it carries (`START..=END`, none in a 416)
/// and the total length (none for `*`).
pub(crate) type ContentRange = (Option<(u64, u64)>, Option<u64>);

/// Parses `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`), or
/// `bytes */TOTAL` (a 416).
pub(crate) fn content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (start, end) = r.split_once('-')?;
            let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if end < start || total.is_some_and(|total| end >= total) {
                return None;
            }
            Some((start, end))
        }
    };
    Some((range, total))
}

/// What `response` says, for a request of bytes from `asked`; `Err` with a
/// reason when it contradicts itself (a 206 without a usable
/// `Content-Range`, or one for another start).
pub(crate) fn answer(response: &Response, asked: u64) -> Result<Answer, String> {
    let status = response.status();
    let headers = response.headers();
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|value| value.to_str().ok());
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let Some((Some((start, _)), total)) = range.and_then(content_range) else {
                return Err(format!("a 206 without a usable Content-Range ({range:?})"));
            };
            if start != asked {
                return Err(format!(
                    "asked for bytes from {asked}, got them from {start}"
                ));
            }
            Ok(Answer::Body(Head {
                start,
                total,
                validator: validator(headers),
                partial: true,
            }))
        }
        StatusCode::OK => Ok(Answer::Body(Head {
            start: 0,
            total: response.content_length(),
            validator: validator(headers),
            partial: false,
        })),
        StatusCode::RANGE_NOT_SATISFIABLE => Ok(Answer::NotSatisfiable {
            total: range.and_then(content_range).and_then(|(_, total)| total),
        }),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Ok(Answer::Retry(status)),
        status if status.is_server_error() => Ok(Answer::Retry(status)),
        status => Ok(Answer::Refused(status)),
    }
}

/// The `Range` header for `start..end` (`end` exclusive; open-ended when
/// `None`).
pub(crate) fn range_header(start: u64, end: Option<u64>) -> String {
    match end {
        Some(end) => format!("bytes={start}-{}", end.saturating_sub(1)),
        None => format!("bytes={start}-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_and_nonsense_is_refused() {
        assert_eq!(
            content_range("bytes 0-99/1000"),
            Some((Some((0, 99)), Some(1000)))
        );
        assert_eq!(content_range("bytes 5-9/*"), Some((Some((5, 9)), None)));
        assert_eq!(content_range("bytes */1000"), Some((None, Some(1000))));
        for bad in [
            "",
            "bytes",
            "bytes 9-5/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes a-b/c",
            "bytes 0-1",
            "bytes 18446744073709551615-1/2",
        ] {
            assert_eq!(content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_headers_are_inclusive() {
        assert_eq!(range_header(0, None), "bytes=0-");
        assert_eq!(range_header(100, Some(200)), "bytes=100-199");
    }
}
