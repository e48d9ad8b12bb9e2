//! `AsyncResourceCursor` (feature `tokio`): a copy of a resource being
//! downloaded equals the source with the writer on the same single-thread
//! runtime (so a read never blocks the thread); a seek while a read waits;
//! cancellation; a cursor dropped mid-read deregisters its waiter.

use std::{
    io::{self, SeekFrom},
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use storage::{
    AsyncResourceCursor, CancellationToken, Interrupts, MemResource, MmapOptions, MmapResource,
    ResourceExt, StorageError,
};
use storage_core::testing::{LIMIT, pattern, shuffled};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// One poll of a read into `buf`: `Some(count)` when it completed.
fn poll_read_once(
    cursor: &mut AsyncResourceCursor<MemResource>,
    buf: &mut [u8],
) -> Option<io::Result<usize>> {
    let mut read_buf = ReadBuf::new(buf);
    match Pin::new(cursor).poll_read(&mut Context::from_waker(Waker::noop()), &mut read_buf) {
        Poll::Ready(result) => Some(result.map(|()| read_buf.filled().len())),
        Poll::Pending => None,
    }
}

fn storage_error(error: &io::Error) -> &StorageError {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<StorageError>())
        .unwrap_or_else(|| panic!("no StorageError in {error:?}"))
}

#[test]
fn a_copy_of_a_download_on_the_same_thread_equals_the_source() {
    const CHUNK: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let source = pattern(7, CHUNK * 40 + 999);
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions::new(dir.path().join("copy")),
    )
    .unwrap();
    let copied = runtime().block_on(async {
        // The downloader is a task on this one thread: a read that blocked
        // the thread would starve it, and the copy would never end.
        let writer = resource.clone();
        let data = source.clone();
        let download = tokio::spawn(async move {
            writer.set_expected_len(data.len() as u64).unwrap();
            for (n, i) in shuffled(data.len().div_ceil(CHUNK), 3)
                .into_iter()
                .enumerate()
            {
                let end = ((i + 1) * CHUNK).min(data.len());
                writer
                    .write_at((i * CHUNK) as u64, &data[i * CHUNK..end])
                    .unwrap();
                if n % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            writer.commit(None).unwrap();
        });
        let mut out = Vec::new();
        let mut cursor = AsyncResourceCursor::new(resource.clone());
        tokio::time::timeout(LIMIT, tokio::io::copy(&mut cursor, &mut out))
            .await
            .expect("the copy did not end")
            .unwrap();
        download.await.unwrap();
        out
    });
    assert!(copied == source, "the copy differs from the source");
    assert_eq!(resource.waiter_count(), 0);
}

#[test]
fn a_seek_while_a_read_waits_moves_the_wait() {
    let resource = MemResource::new(CancellationToken::new());
    let mut cursor = AsyncResourceCursor::new(resource.clone());
    let mut buf = [0; 16];
    assert!(poll_read_once(&mut cursor, &mut buf).is_none());
    assert_eq!(resource.waiter_count(), 1);
    runtime().block_on(async {
        assert_eq!(cursor.seek(SeekFrom::Start(100)).await.unwrap(), 100);
    });
    assert_eq!(resource.waiter_count(), 0, "the old wait stays registered");
    assert!(poll_read_once(&mut cursor, &mut buf).is_none());
    resource.write_at(0, b"not these").unwrap();
    resource.write_at(100, b"these").unwrap();
    assert_eq!(poll_read_once(&mut cursor, &mut buf).unwrap().unwrap(), 5);
    assert_eq!(&buf[..5], b"these");
    assert_eq!(cursor.position(), 105);
}

#[test]
fn cancellation_ends_a_pending_read_with_the_storage_error() {
    let cancel = CancellationToken::new();
    let resource = MemResource::new(cancel.clone());
    let result = runtime().block_on(async {
        let reader = tokio::spawn(async move {
            let mut buf = [0; 8];
            AsyncResourceCursor::new(resource).read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
        tokio::time::timeout(LIMIT, reader).await.unwrap().unwrap()
    });
    let error = result.unwrap_err();
    assert!(matches!(storage_error(&error), StorageError::Cancelled));
}

#[test]
fn a_cursor_dropped_mid_read_deregisters_its_waiter() {
    let resource = MemResource::new(CancellationToken::new());
    let mut cursor = AsyncResourceCursor::new(resource.clone());
    assert!(poll_read_once(&mut cursor, &mut [0; 4]).is_none());
    assert_eq!(resource.waiter_count(), 1);
    drop(cursor);
    assert_eq!(resource.waiter_count(), 0);
    // A read future dropped by a timeout leaves the wait in the cursor,
    // for the next read at that position.
    let mut cursor = AsyncResourceCursor::new(resource.clone());
    runtime().block_on(async {
        let mut buf = [0; 4];
        let timed = tokio::time::timeout(Duration::from_millis(5), cursor.read(&mut buf)).await;
        assert!(timed.is_err());
    });
    assert_eq!(resource.waiter_count(), 1);
    resource.write_at(0, b"late").unwrap();
    let mut buf = [0; 4];
    assert_eq!(poll_read_once(&mut cursor, &mut buf).unwrap().unwrap(), 4);
    assert_eq!(resource.waiter_count(), 0);
}

#[test]
fn interrupts_are_retried_unless_reported() {
    let resource = MemResource::new(CancellationToken::new());
    let mut retrying = AsyncResourceCursor::new(resource.clone());
    let mut reporting = AsyncResourceCursor::new(resource.clone()).interrupts(Interrupts::Report);
    assert!(poll_read_once(&mut retrying, &mut [0; 4]).is_none());
    assert!(poll_read_once(&mut reporting, &mut [0; 4]).is_none());
    resource.interrupt();
    assert!(
        poll_read_once(&mut retrying, &mut [0; 4]).is_none(),
        "waits again"
    );
    let error = poll_read_once(&mut reporting, &mut [0; 4])
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::Interrupted);
    assert_eq!(resource.waiter_count(), 1);
}

#[test]
fn seeks_are_checked_against_the_known_end() {
    let resource = MemResource::new(CancellationToken::new());
    let mut cursor = AsyncResourceCursor::new(resource.clone());
    runtime().block_on(async {
        let error = cursor.seek(SeekFrom::End(0)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        resource.set_expected_len(10).unwrap();
        assert_eq!(cursor.seek(SeekFrom::End(-2)).await.unwrap(), 8);
        let error = cursor.seek(SeekFrom::Current(3)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(cursor.position(), 8);
        resource.write_at(0, b"0123456789").unwrap();
        let mut rest = Vec::new();
        // Ends at the expected length, before any commit.
        cursor.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"89");
    });
}
