//! `Mapping`: the mapped view of the file, and the `unsafe` call that maps it.

use std::{fs::File, io};

use memmap2::{Mmap, MmapOptions};

/// The current view of the file: none (length 0) or read-only. Bytes are
/// written with `pwrite`, never through a mapping.
#[derive(Debug, Default)]
pub(crate) enum Mapping {
    /// Nothing mapped (an empty file, or between an unmap and a remap).
    #[default]
    Empty,
    /// Mapped read-only.
    ReadOnly(Mmap),
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
        // SAFETY: the file is at least `len` bytes long (the caller sized it)
        // and no reader touches a page that a truncation removes: the
        // driver cuts its file only under its exclusive lock (a commit, in
        // `driver.rs`), and installs the new mapping before releasing it
        // (the old one dropped before the cut where the platform cannot cut
        // a mapped file). The mapping is read-only; the driver writes with
        // pwrite, and never a byte a reader may read at that moment:
        // overwrites hold the exclusive lock, and fresh writes
        // (`Exclusion::Shared` in `mapped.rs`) target bytes that `Resource`
        // does not let any reader read until the write returns. Changes by
        // other processes are the hazard `MmapDriver` documents.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(Self::ReadOnly(map))
    }

    /// The mapped bytes (empty when nothing is mapped).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::ReadOnly(map) => map,
        }
    }
}
