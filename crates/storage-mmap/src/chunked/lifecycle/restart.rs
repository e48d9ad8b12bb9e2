//! Downloads that start again from a state that is not a plain download:
//! `reactivate` (of a failed download, or of a published file, whose bytes
//! are copied into a new download) and whole replacement.

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom},
    path::Path,
    sync::Arc,
};

use storage_core::{ResourceExt, ResourceStatus, StorageError, StorageResult};

use super::{Lifecycle, Shared, is_committed, open_temp};
use crate::chunked::{
    claim::{Claim, Mark},
    files,
};

/// How much of a file is copied at a time when a download restarts.
const COPY_CHUNK: usize = 1 << 20;

/// Where the bytes of a restarted download come from.
enum Source<'a, R> {
    /// The resource that served them.
    Resource(&'a R),
    /// The published file itself (its resource failed, and refuses reads).
    File(fs::File, &'a Path),
}

impl<R: ResourceExt> Source<'_, R> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> StorageResult<usize> {
        match self {
            Self::Resource(resource) => resource.read_at(offset, buf),
            Self::File(file, path) => file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| file.read(buf))
                .map_err(|e| StorageError::io("cannot read", *path, e)),
        }
    }
}

/// Writes into `target` the bytes `source` holds at the ranges `coverage`
/// has available.
fn copy_available<R: ResourceExt>(
    mut source: Source<'_, R>,
    coverage: &R,
    target: &R,
) -> StorageResult<()> {
    let mut buf = vec![0; COPY_CHUNK];
    let mut at = 0u64;
    loop {
        let count = source.read_at(at, &mut buf)?;
        if count == 0 {
            return Ok(());
        }
        let end = at
            .checked_add(count as u64)
            .ok_or_else(|| StorageError::overflow(at))?;
        let mut from = at;
        while from < end {
            let gap = coverage.next_gap(from, end).unwrap_or(end..end);
            if gap.start > from {
                let slice = index(from - at)..index(gap.start.min(end) - at);
                target.write_at(from, &buf[slice])?;
            }
            if gap.end <= from {
                break;
            }
            from = gap.end;
        }
        at = end;
    }
}

/// An offset inside the copy buffer (at most [`COPY_CHUNK`]).
fn index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl<R: ResourceExt> Shared<R> {
    pub(in crate::chunked) fn reactivate(&self) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return Err(self.reentered("cannot reactivate"));
        };
        match &mut *lifecycle {
            Lifecycle::Passthrough => self.served().reactivate(),
            Lifecycle::Writing(claim) => {
                let was = claim.mark();
                if was != Mark::Writing {
                    claim.set(Mark::Writing, was == Mark::Failed)?;
                }
                let reactivated = self.served().reactivate();
                if reactivated.is_err() {
                    let _ = claim.set(was, was == Mark::Failed);
                }
                reactivated
            }
            Lifecycle::Published(_) => {
                let claim = self.restart()?;
                *lifecycle = Lifecycle::Writing(claim);
                Ok(())
            }
        }
    }

    /// Reactivates a published file without touching it: a new download
    /// starts with its bytes and ranges, and replaces it at the next
    /// commit (the canonical path keeps the whole old file until then).
    fn restart(&self) -> StorageResult<Claim> {
        let old = self.served();
        let source = match old.status() {
            // Read from the published file itself (a reopen through the
            // factory could take an empty file for a new download); `old`
            // still knows which ranges were there.
            ResourceStatus::Failed(_) => Source::File(
                fs::File::open(&self.canonical)
                    .map_err(|e| StorageError::io("cannot open", &self.canonical, e))?,
                &self.canonical,
            ),
            _ => Source::Resource(&*old),
        };
        let (claim, fresh) = self.fresh_download()?;
        if let Err(e) = copy_available(source, &*old, &fresh) {
            drop(fresh);
            let _ = files::remove_download(&self.temp);
            return Err(e);
        }
        drop(self.install(Arc::new(fresh)));
        Ok(claim)
    }

    /// Claims the temporary path and opens an empty download there (a
    /// leftover of an earlier download of this path is superseded).
    fn fresh_download(&self) -> StorageResult<(Claim, R)> {
        let mut claim = Claim::take(&self.temp)?;
        files::check_regular_or_absent(&self.temp, "cannot open")?;
        files::remove_download(&self.temp)?;
        if claim.mark() != Mark::Writing {
            claim.set(Mark::Writing, true)?;
        }
        let fresh = open_temp(self.factory()?, &self.temp)?;
        let empty = fresh.next_gap(0, u64::MAX) == Some(0..u64::MAX);
        if is_committed(&fresh) || !empty {
            drop(fresh);
            let _ = files::remove_download(&self.temp);
            let why = io::Error::new(
                io::ErrorKind::InvalidData,
                "the factory did not open a new, empty download",
            );
            return Err(StorageError::io("cannot download to", &self.temp, why));
        }
        Ok((claim, fresh))
    }

    pub(in crate::chunked) fn replace_all(&self, data: &[u8], durable: bool) -> StorageResult<()> {
        let guard = self.lifecycle.lock();
        let Ok(mut lifecycle) = guard.try_borrow_mut() else {
            return Err(self.reentered("cannot replace"));
        };
        match &*lifecycle {
            Lifecycle::Passthrough => self.served().replace_all(data, durable),
            Lifecycle::Writing(_) => {
                let download = self.served();
                self.publish(&mut lifecycle, &download, |d| d.replace_all(data, durable))
            }
            Lifecycle::Published(_) => {
                if let ResourceStatus::Failed(reason) = self.served().status() {
                    return Err(StorageError::Failed(reason));
                }
                // A new download, published over the old file: the
                // canonical path holds the old file or the new, whole.
                let (claim, fresh) = self.fresh_download()?;
                let fresh = Arc::new(fresh);
                let mut replacing = Lifecycle::Writing(claim);
                let replaced = self.publish(&mut replacing, &fresh, |d| {
                    d.write_at(0, data)?;
                    d.commit(Some(data.len() as u64))
                });
                match replacing {
                    Lifecycle::Writing(claim) => {
                        // Not renamed: the old file stays; the new one goes.
                        drop(fresh);
                        if files::remove_download(&self.temp).is_ok() {
                            claim.release_removed();
                        }
                    }
                    published => *lifecycle = published,
                }
                replaced
            }
        }
    }
}
