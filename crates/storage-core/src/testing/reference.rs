//! `ReferenceDriver`: the smallest driver that passes the behaviour suite.

use std::{io, path::Path};

use parking_lot::Mutex;

use crate::{DefaultOpen, Driver, DriverIo, DriverState, Resource, StorageError, StorageResult};

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
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        match final_len {
            Some(len) => resize(&mut self.bytes.lock(), len),
            None => Ok(()),
        }
    }

    fn path(&self) -> Option<&Path> {
        None
    }

    fn reactivate(&self) -> StorageResult<()> {
        Ok(())
    }

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

    fn storage_len(&self) -> u64 {
        self.bytes.lock().len() as u64
    }

    fn write_at(&self, offset: u64, data: &[u8], committed: bool) -> StorageResult<()> {
        if committed {
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
