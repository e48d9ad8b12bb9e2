//! The in-memory driver: a `Vec<u8>` that grows on write.
//!
//! [`MemResource`] behaves like a file-backed resource without a file: for
//! tests, wasm, and small assets that need not survive the process. Bytes
//! live in one buffer behind a reader-writer lock, so concurrent `read_at`
//! calls run in parallel and only writes take it exclusively.

#![forbid(unsafe_code)]

use std::{io, ops::Range, path::Path};

use parking_lot::RwLock;
use storage_core::{
    DefaultOpen, Driver, DriverIo, DriverState, RangeSet, Resource, StorageError, StorageResult,
};

/// Options for opening a [`MemResource`].
///
/// # Examples
///
/// ```
/// use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
/// use storage_mem::{MemOptions, MemResource};
///
/// let preloaded = MemResource::open(
///     CancellationToken::new(),
///     MemOptions { initial_data: Some(b"#EXTM3U".to_vec()), ..MemOptions::default() },
/// )?;
/// assert_eq!(preloaded.status(), ResourceStatus::Committed { final_len: Some(7) });
/// # Ok::<(), storage_core::StorageError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemOptions {
    /// Contents to start with; the resource then opens committed with this
    /// length. `None` opens an empty, active resource.
    pub initial_data: Option<Vec<u8>>,
    /// Bytes to reserve up front (a hint that saves regrowth when the size
    /// is known); 0 grows on demand.
    pub capacity: usize,
}

/// The in-memory driver behind [`MemResource`].
#[derive(Debug, Default)]
pub struct MemDriver {
    /// The bytes; its length is the end of the highest write (or the
    /// committed length).
    bytes: RwLock<Vec<u8>>,
}

/// A resource held in memory.
pub type MemResource = Resource<MemDriver>;

fn out_of_memory(what: &str, bytes: u64) -> StorageError {
    StorageError::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("memory resource: cannot {what} to {bytes} bytes"),
    ))
}

/// Resizes `bytes` to `len`, reporting allocation failure instead of aborting.
fn resize(bytes: &mut Vec<u8>, len: u64) -> StorageResult<()> {
    let target = usize::try_from(len).map_err(|_| out_of_memory("grow", len))?;
    if target > bytes.len() {
        bytes
            .try_reserve(target - bytes.len())
            .map_err(|_| out_of_memory("grow", len))?;
    }
    bytes.resize(target, 0);
    Ok(())
}

impl Driver for MemDriver {
    type Options = MemOptions;

    fn open(opts: MemOptions) -> StorageResult<(Self, DriverState)> {
        let Some(data) = opts.initial_data else {
            let mut bytes = Vec::new();
            bytes
                .try_reserve_exact(opts.capacity)
                .map_err(|_| out_of_memory("reserve", opts.capacity as u64))?;
            return Ok((Self::with_bytes(bytes), DriverState::default()));
        };
        let len = data.len() as u64;
        let mut available = RangeSet::new();
        if len > 0 {
            available.insert(0..len);
        }
        let state = DriverState {
            final_len: Some(len),
            available,
            is_committed: true,
        };
        Ok((Self::with_bytes(data), state))
    }
}

impl DefaultOpen for MemDriver {
    fn open_default() -> (Self, DriverState) {
        (Self::default(), DriverState::default())
    }
}

impl MemDriver {
    fn with_bytes(bytes: Vec<u8>) -> Self {
        Self {
            bytes: RwLock::new(bytes),
        }
    }
}

impl DriverIo for MemDriver {
    fn commit(&self, final_len: Option<u64>) -> StorageResult<()> {
        if let Some(len) = final_len {
            resize(&mut self.bytes.write(), len)?;
        }
        Ok(())
    }

    fn path(&self) -> Option<&Path> {
        None
    }

    fn reactivate(&self) -> StorageResult<()> {
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let bytes = self.bytes.read();
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

    fn replace_all(
        &self,
        data: &[u8],
        _durable: bool,
        publish: &mut dyn FnMut(),
    ) -> StorageResult<()> {
        // Built aside, swapped in and published under the lock: no reader
        // reads while the bytes and the resource's state change.
        let mut fresh = Vec::new();
        fresh
            .try_reserve_exact(data.len())
            .map_err(|_| out_of_memory("grow", data.len() as u64))?;
        fresh.extend_from_slice(data);
        let mut bytes = self.bytes.write();
        *bytes = fresh;
        publish();
        Ok(())
    }

    fn storage_len(&self) -> u64 {
        self.bytes.read().capacity() as u64
    }

    fn write_at(&self, offset: u64, data: &[u8], committed: bool) -> StorageResult<()> {
        if committed {
            return Err(StorageError::Committed);
        }
        if data.is_empty() {
            return Ok(());
        }
        let Range { start, end } = offset..offset + data.len() as u64;
        let mut bytes = self.bytes.write();
        if end > bytes.len() as u64 {
            resize(&mut bytes, end)?;
        }
        // Both fit: `end` was just made to fit in the buffer.
        let start = usize::try_from(start).map_err(|_| out_of_memory("grow", end))?;
        bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grows_and_read_clips_to_the_effective_length() {
        let driver = MemDriver::default();
        driver.write_at(4, b"abcd", false).unwrap();
        let mut buf = [0xFF; 8];
        assert_eq!(driver.read_at(0, &mut buf, 8).unwrap(), 8);
        assert_eq!(&buf, b"\0\0\0\0abcd");
        assert_eq!(driver.read_at(0, &mut buf, 6).unwrap(), 6);
        assert_eq!(driver.read_at(6, &mut buf, 100).unwrap(), 2);
        assert_eq!(driver.read_at(u64::MAX, &mut buf, u64::MAX).unwrap(), 0);
    }

    #[test]
    fn commit_cuts_or_extends_to_the_final_length() {
        let driver = MemDriver::default();
        driver.write_at(0, b"abcdef", false).unwrap();
        driver.commit(Some(3)).unwrap();
        let mut buf = [0; 8];
        assert_eq!(driver.read_at(0, &mut buf, u64::MAX).unwrap(), 3);
        driver.commit(Some(5)).unwrap();
        assert_eq!(driver.read_at(0, &mut buf, u64::MAX).unwrap(), 5);
        assert_eq!(&buf[..5], b"abc\0\0");
    }

    #[test]
    fn committed_writes_are_refused() {
        let driver = MemDriver::default();
        assert!(matches!(
            driver.write_at(0, b"x", true),
            Err(StorageError::Committed)
        ));
    }

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        let driver = MemDriver::default();
        let err = driver.write_at(1 << 50, b"x", false).unwrap_err();
        assert!(
            matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory),
            "{err}"
        );
        let err = MemDriver::open(MemOptions {
            initial_data: None,
            capacity: usize::MAX / 2,
        })
        .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
    }
}

/// This crate's README examples (the page the registry shows), compiled
/// and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
