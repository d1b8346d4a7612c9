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

/// Pauses the consumers of the queue in `dir` from outside it (the `diskq pause`
/// command): creates the `paused` file, synced. A `Queue` that has the directory open
/// notices within a second, and its gets then wait as if it were empty; puts go on. No
/// lock is taken: it works on a queue in use.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
/// q.put(&1)?;
/// diskq::pause(dir.path())?;
/// std::thread::sleep(std::time::Duration::from_millis(150));
/// assert!(q.get_nowait().unwrap_err().is_empty());
/// diskq::resume(dir.path())?;
/// std::thread::sleep(std::time::Duration::from_millis(150));
/// assert_eq!(q.get_nowait()?, 1);
/// assert!(diskq::pause(dir.path().join("missing")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::NotAQueue`] when `dir` is not a queue directory; [`Error::Io`] when the file
/// cannot be created or the directory synced.
pub fn pause(dir: impl AsRef<Path>) -> Result<()> {
    set_from_outside(dir.as_ref(), true)
}

/// Lets the consumers of the queue in `dir` go on after [`pause`]: removes the `paused`
/// file, synced. A `Queue` that has the directory open notices within a second.
///
/// # Errors
/// Those of [`pause`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// drop(diskq::Queue::<u32>::open(dir.path())?);
/// diskq::pause(dir.path())?;
/// diskq::resume(dir.path())?;
/// assert!(!diskq::Inspector::open(dir.path())?.snapshot()?.paused);
/// assert!(diskq::resume(dir.path().join("missing")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resume(dir: impl AsRef<Path>) -> Result<()> {
    set_from_outside(dir.as_ref(), false)
}

fn set_from_outside(dir: &Path, paused: bool) -> Result<()> {
    crate::Inspector::open(dir)?;
    record(&crate::storage::FsStorage, dir, paused, true)
}
