//! The only code that touches files. Everything else reaches the file system through
//! [`Storage`], so that tests can put a fault-injecting implementation behind the queue.
//!
//! Not part of the API: public (and hidden from the docs) only with the feature
//! `__testing`, so that the test suite and the fuzz targets can open a queue on
//! `SimStorage`.

mod anchored;
mod fs;
#[cfg(any(test, feature = "__testing"))]
mod sim;

pub use fs::FsStorage;
#[cfg(any(test, feature = "__testing"))]
pub use sim::{Crash, Fault, Op, SimStorage};

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and append (writes go to the end).
    Append,
    /// A new file that must not exist yet, read and append.
    CreateNew,
    /// Create or truncate, write only (temporary files).
    Truncate,
}

/// A directory of files. Object-safe so the queue can hold `Arc<dyn Storage>`: one
/// virtual call per syscall is nothing next to the syscall.
pub trait Storage: Send + Sync + Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing; `NotFound` when its
    /// directory is). `Ok(None)` when another holder has it. The lock lasts as long as the
    /// returned guard.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;
    /// Names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whole contents of a small file; `Ok(None)` when it does not exist.
    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// An identifier of the current boot of the machine (of its kernel). It changes when
    /// the machine restarts, so a queue that records it when it writes can tell on the
    /// next open whether a power loss or a kernel crash could have happened since: then
    /// what it had not synced may be lost or torn. Equal values mean the page cache
    /// survived, so everything written before (synced or not) is still there.
    ///
    /// 0 means unknown (no source of boot ids here): assume a restart may have
    /// happened. Callers treat 0 as equal to nothing, itself included.
    fn boot_id(&self) -> u128;
    /// This storage bound to the existing directory `dir`: what it does to paths under
    /// `dir` from then on happens in the directory `dir` names now, wherever it is later
    /// renamed to (a handle and the `*at` system calls), never in another directory
    /// that takes the path. The queue calls it once, at open.
    fn anchor(self: Arc<Self>, dir: &Path) -> io::Result<Arc<dyn Storage>>;
    /// Makes `path` a file of at least `len` bytes whose blocks are allocated (zero bytes
    /// written, not a hole), so that deleting it frees that much space; an existing file
    /// that long is left as it is. Only its size matters, never its bytes. A full disk is
    /// this call's error, and may leave the file shorter.
    fn reserve_space(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Bytes an unprivileged writer may still allocate on the file system of the
    /// anchored directory (`statvfs`); `None` when unknown.
    fn available(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    /// Whether the directory this storage is anchored to was deleted since. `false`
    /// when it is not anchored.
    fn deleted(&self) -> io::Result<bool> {
        Ok(false)
    }
}

/// An open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads at `offset`; returns the count read (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// `fdatasync`: the file's data (and its length) on stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Opens `path`; `Ok(None)` when it does not exist.
pub(crate) fn open_if_exists(
    st: &dyn Storage,
    path: &Path,
    mode: OpenMode,
) -> io::Result<Option<Box<dyn StorageFile>>> {
    match st.open(path, mode) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `path`; a file already gone is not an error.
pub(crate) fn remove_if_exists(st: &dyn Storage, path: &Path) -> io::Result<()> {
    match st.remove(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads until `buf` is full or the file ends; returns the count read.
pub(crate) fn read_full_at(f: &dyn StorageFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
