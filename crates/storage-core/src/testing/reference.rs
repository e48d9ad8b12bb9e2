//! `ReferenceDriver`: the smallest driver that passes the behaviour suite.

use std::{io, ops::Range};

use parking_lot::Mutex;

use crate::{
    DefaultOpen, DownloadRecord, Driver, DriverIo, DriverState, RangeSet, Resource, StorageError,
    StorageResult, WriteKind,
};

/// A driver over one `Vec<u8>` behind a mutex: the least a driver must do
/// to meet the contract, to read as an example when writing one. It has no
/// performance goal (every call takes the one lock).
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, ResourceExt, WaitOutcome, testing::ReferenceResource};
///
/// let resource = ReferenceResource::new(CancellationToken::new());
/// resource.write_at(0, b"hello")?;
/// assert_eq!(resource.wait_range(0..5)?, WaitOutcome::Ready);
/// # Ok::<(), storage_core::StorageError>(())
/// ```
#[derive(Debug, Default)]
pub struct ReferenceDriver {
    /// The bytes; their length is the end of the highest write (or the
    /// committed length).
    bytes: Mutex<Vec<u8>>,
}

/// A resource on the reference driver.
pub type ReferenceResource = Resource<ReferenceDriver>;

fn too_big(len: u64) -> StorageError {
    StorageError::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("reference driver: {len} bytes do not fit in memory"),
    ))
}

/// Resizes `bytes` to `len`, an error instead of an abort when it cannot.
fn resize(bytes: &mut Vec<u8>, len: u64) -> StorageResult<()> {
    let target = usize::try_from(len).map_err(|_| too_big(len))?;
    if target > bytes.len() {
        bytes
            .try_reserve(target - bytes.len())
            .map_err(|_| too_big(len))?;
    }
    bytes.resize(target, 0);
    Ok(())
}

impl DriverIo for ReferenceDriver {
    const FRESH_WRITES: bool = false;

    type Staged<'a> = Vec<u8>;

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let bytes = self.bytes.lock();
        let end = usize::try_from(effective_len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= end {
            return Ok(0);
        }
        let count = buf.len().min(end - start);
        buf[..count].copy_from_slice(&bytes[start..start + count]);
        Ok(count)
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        if let WriteKind::Committed { .. } = kind {
            return Err(StorageError::Committed);
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        let mut bytes = self.bytes.lock();
        if end > bytes.len() as u64 {
            resize(&mut bytes, end)?;
        }
        // Fits: the buffer now holds `end` bytes.
        let start = usize::try_from(offset).map_err(|_| too_big(end))?;
        bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()> {
        let mut bytes = self.bytes.lock();
        // A restarted download leaves its old bytes in the holes.
        for hole in holes {
            let len = bytes.len() as u64;
            let (start, end) = (hole.start.min(len), hole.end.min(len));
            // Both within the buffer, so they fit in a `usize`.
            let index = |at: u64| usize::try_from(at).unwrap_or(usize::MAX);
            bytes[index(start)..index(end)].fill(0);
        }
        match final_len {
            Some(len) => resize(&mut bytes, len),
            None => Ok(()),
        }
    }

    fn reactivate(&self, _available: &RangeSet<u64>) -> StorageResult<()> {
        Ok(())
    }

    fn stage(&self, data: &[u8], _durable: bool) -> StorageResult<Vec<u8>> {
        let mut staged = Vec::new();
        staged
            .try_reserve_exact(data.len())
            .map_err(|_| too_big(data.len() as u64))?;
        staged.extend_from_slice(data);
        Ok(staged)
    }

    fn publish(&self, staged: Vec<u8>) {
        *self.bytes.lock() = staged;
    }

    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        if record == DownloadRecord::Restarted {
            // Nothing is written any more: the old bytes go.
            self.bytes.lock().clear();
        }
        Ok(())
    }
}

impl Driver for ReferenceDriver {
    type Options = ();

    fn open((): ()) -> StorageResult<(Self, DriverState)> {
        Ok(Self::open_default())
    }
}

impl DefaultOpen for ReferenceDriver {
    fn open_default() -> (Self, DriverState) {
        (Self::default(), DriverState::default())
    }
}
