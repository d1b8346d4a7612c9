//! Whether consumers are paused (`Queue::pause`), recorded in the directory as the
//! `paused` file (FORMAT.md §paused): an empty file, present while paused.

use crate::error::{Error, Result};
use crate::storage::{OpenMode, Storage, remove_if_exists};
use std::path::Path;

pub(crate) const PAUSED: &str = "paused";

/// Whether the `paused` file is there (read at open: one `openat`).
pub(crate) fn recorded(st: &dyn Storage, dir: &Path) -> Result<bool> {
    let path = dir.join(PAUSED);
    st.read_all(&path)
        .map(|f| f.is_some())
        .map_err(|e| Error::io("read", &path, e))
}

/// Creates or removes the `paused` file; with `durable`, syncs the directory, so that a
/// power loss keeps the change.
pub(crate) fn record(st: &dyn Storage, dir: &Path, paused: bool, durable: bool) -> Result<()> {
    let path = dir.join(PAUSED);
    if paused {
        st.open(&path, OpenMode::Truncate)
            .map_err(|e| Error::write("create", &path, e))?;
    } else {
        remove_if_exists(st, &path).map_err(|e| Error::io("remove", &path, e))?;
    }
    if durable {
        st.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(())
}
