//! `Mapping`: the mapped view of the file, and the only `unsafe` in the workspace.

use std::{fs::File, io};

use memmap2::{Mmap, MmapMut, MmapOptions};

/// The current view of the file: none (length 0), read-only, or read-write.
#[derive(Debug, Default)]
pub(crate) enum Mapping {
    /// Nothing mapped (an empty file, or between an unmap and a remap).
    #[default]
    Empty,
    /// Mapped read-only (committed).
    ReadOnly(Mmap),
    /// Mapped read-write (active, or a `ReadWrite` rewrite).
    ReadWrite(MmapMut),
}

fn map_len(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("{len} bytes do not fit in this platform's address space"),
        )
    })
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read-only (`Empty` when `len` is 0).
    pub(crate) fn read_only(file: &File, len: u64) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self::Empty);
        }
        let len = map_len(len)?;
        // SAFETY: the file is at least `len` bytes long (the caller sized it
        // under the driver's exclusive lock) and the driver never shrinks it
        // while this mapping is alive: truncation first replaces the mapping
        // under the exclusive lock. All access goes through `&[u8]` borrowed
        // from the driver's `RwLock`, so this process never writes a byte
        // while reading it. Changes by other processes are the hazard the
        // `MmapDriver` type documents.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(Self::ReadOnly(map))
    }

    /// Maps the first `len` bytes of `file` read-write (`Empty` when `len` is 0).
    pub(crate) fn read_write(file: &File, len: u64) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self::Empty);
        }
        let len = map_len(len)?;
        // SAFETY: as for `read_only`; in addition, writes go through the
        // `&mut [u8]` of the driver's exclusive write guard, so no reader of
        // this process can observe a byte while it is written.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
        Ok(Self::ReadWrite(map))
    }

    /// The mapped bytes (empty when nothing is mapped).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::ReadOnly(map) => map,
            Self::ReadWrite(map) => map,
        }
    }

    /// The mapped bytes for writing, when mapped read-write.
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match self {
            Self::ReadWrite(map) => Some(map),
            Self::Empty | Self::ReadOnly(_) => None,
        }
    }

    /// Faults in the pages of `offset..offset + len` for writing, so the copy
    /// that follows (under the exclusive lock) takes no page fault, and the
    /// kernel's dirty-page throttling, if any, happens while readers still
    /// read. Best effort: where the kernel lacks `MADV_POPULATE_WRITE` the
    /// copy faults the pages itself.
    pub(crate) fn prefault_for_write(&self, offset: usize, len: usize) {
        #[cfg(target_os = "linux")]
        if let Self::ReadWrite(map) = self {
            let _ = map.advise_range(memmap2::Advice::PopulateWrite, offset, len);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }

    pub(crate) fn is_writable(&self) -> bool {
        matches!(self, Self::ReadWrite(_))
    }
}
