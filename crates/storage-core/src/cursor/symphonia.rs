//! `ResourceCursor` as a symphonia `MediaSource` (feature `symphonia`).

use symphonia_core::io::MediaSource;

use super::ResourceCursor;
use crate::ResourceExt;

/// A cursor is a symphonia source: `MediaSourceStream::new(Box::new(cursor),
/// Default::default())`.
///
/// - `is_seekable` is `true`: a seek only moves the position, and a read
///   there waits for its bytes.
/// - `byte_len` is [`ResourceExt::expected_len`]: the final length once
///   committed with one, else the length declared with
///   [`set_expected_len`](ResourceExt::set_expected_len) (declare the
///   `Content-Length` as soon as it is known). Before either, it is `None`,
///   and the readers that need a length to seek (FLAC's binary search,
///   MP3's coarse seek) answer the seek with `SeekErrorKind::Unseekable` at
///   once, while reading, probing and the seeks that need no length (WAV,
///   MP3's accurate seek) work: no read waits for a length, and
///   `SeekFrom::End` is `Unsupported` at once, never a wait for the end of
///   the download.
/// - Symphonia takes every read error as fatal (a failed probe, a lost
///   packet), so the cursor's reads retry an [`interrupt`](ResourceExt::interrupt)
///   (the default, [`Interrupts::Retry`](crate::Interrupts::Retry)) and
///   should not have a timeout. To stop a decode blocked in a read, cancel
///   the resource's token (or `fail` it): the read returns the error and
///   symphonia stops with `Error::IoError`.
///
/// # Examples
///
/// ```
/// use storage_core::{ResourceCursor, ResourceExt};
/// use symphonia_core::io::{MediaSource, MediaSourceStream};
/// # use storage_core::testing::ReferenceResource;
/// # let resource = ReferenceResource::new(storage_core::CancellationToken::new());
/// resource.set_expected_len(44)?; // from the Content-Length
/// let cursor = ResourceCursor::new(resource.clone());
/// assert_eq!(cursor.byte_len(), Some(44));
/// let stream = MediaSourceStream::new(Box::new(cursor), Default::default());
/// assert!(stream.is_seekable());
/// # Ok::<(), storage_core::StorageError>(())
/// ```
impl<R: ResourceExt> MediaSource for ResourceCursor<R> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.resource.expected_len()
    }
}
