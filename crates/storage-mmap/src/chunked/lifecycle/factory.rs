//! The factory's two calls, and the checks on what they give: a resource of
//! the path given, writable for a download, committed with the length
//! published for a reopen.

use std::{io, path::Path, sync::Arc};

use storage_core::{ResourceExt, ResourceStatus, StorageError, StorageResult};

use super::{Factory, Pending, Shared};
use crate::OpenIntent;

pub(super) fn is_committed(resource: &impl ResourceExt) -> bool {
    matches!(resource.status(), ResourceStatus::Committed { .. })
}

/// Refuses a resource that is not of the file at `expected`.
pub(super) fn check_path(resource: &impl ResourceExt, expected: &Path) -> StorageResult<()> {
    if resource.path() == Some(expected) {
        return Ok(());
    }
    let opened = resource
        .path()
        .map_or_else(|| "no file".to_owned(), |p| p.display().to_string());
    let why = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the factory opened {opened}: it must open the file at the path it is given \
             (a memory resource takes `AtomicChunked::passthrough`)"
        ),
    );
    Err(StorageError::io("cannot download to", expected, why))
}

/// Opens the temporary file through `factory`. Another writer's lock on it
/// is another download's claim.
pub(super) fn open_temp<R: ResourceExt>(factory: &Factory<R>, temp: &Path) -> StorageResult<R> {
    let resource = factory(temp, OpenIntent::Fresh).map_err(|e| match e {
        StorageError::Locked { path } if path == temp => StorageError::TmpClaimed(path),
        other => other,
    })?;
    check_path(&resource, temp)?;
    Ok(resource)
}

impl<R: ResourceExt> Shared<R> {
    pub(super) fn factory(&self) -> StorageResult<&Factory<R>> {
        self.factory.as_deref().ok_or_else(|| {
            let why = io::Error::new(io::ErrorKind::Unsupported, "a passthrough has no factory");
            StorageError::io("cannot open", &self.canonical, why)
        })
    }

    pub(super) fn reopen(&self, pending: &mut Pending) -> StorageResult<()> {
        let Some(len) = pending.reopen else {
            return Ok(());
        };
        // An error of the factory is retried by the next commit.
        let reopened = self.factory()?(&self.canonical, OpenIntent::Reopen)?;
        pending.reopen = None;
        check_path(&reopened, &self.canonical)?;
        let status = reopened.status();
        if status
            != (ResourceStatus::Committed {
                final_len: Some(len),
            })
        {
            let why = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the factory reopened it as {status:?}, not as the committed file of {len} \
                     bytes: the committed download goes on serving"
                ),
            );
            return Err(StorageError::io("cannot reopen", &self.canonical, why));
        }
        drop(self.install(Arc::new(reopened)));
        Ok(())
    }
}
