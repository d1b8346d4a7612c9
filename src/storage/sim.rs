//! An in-memory file system for tests and fuzzing: fault injection, a crash after the
//! N-th operation, and power loss that forgets what was not synced.
//!
//! Durability model (FORMAT.md §Assumptions): file data is durable once `sync_data`
//! covers it; a name (creation, rename, removal) is durable once its directory is
//! synced. A process crash keeps everything written; a power loss keeps only what is
//! durable, or in the harsher mode also an arbitrary prefix of each file's unsynced
//! appended bytes.

use super::{OpenMode, Storage, StorageFile};
use parking_lot::Mutex;
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds of operation, for counting and for aiming faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Creating or opening a file.
    Open,
    /// `StorageFile::append`.
    Write,
    /// `StorageFile::set_len`.
    SetLen,
    /// `StorageFile::sync_data`.
    Sync,
    /// `Storage::rename`.
    Rename,
    /// `Storage::remove`.
    Remove,
    /// `Storage::sync_dir`.
    SyncDir,
    /// `StorageFile::read_at` and `Storage::read_all`.
    Read,
    /// `Storage::list`.
    List,
}

impl Op {
    /// Operations that change what is on disk; the crash countdown counts these.
    fn mutates(self) -> bool {
        !matches!(self, Op::Read | Op::Open | Op::List)
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this raw OS error (e.g. `libc` ENOSPC = 28, EIO = 5).
    Errno(i32),
    /// A write that stores only its first `n` bytes, then fails with ENOSPC.
    Short(usize),
    /// The operation panics, as a bug in storage code would: no caller may wait for ever.
    Panic,
}

/// What survives a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process died: everything handed to the OS survives.
    Process,
    /// Power loss: only synced data and names in synced directories survive.
    PowerLoss,
    /// Power loss that also keeps a prefix (chosen from the seed) of each file's unsynced
    /// appended bytes.
    PowerLossPrefix(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    /// What a power loss leaves of the data.
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: Vec<PathBuf>,
    locks: Vec<PathBuf>,
    /// Mutating operations done so far.
    ops: u64,
    /// After this many mutating operations, every operation fails.
    crash_after: Option<u64>,
    /// The operation that crosses `crash_after` writes half its bytes.
    tear_last_write: bool,
    crashed: bool,
    faults: Vec<(Op, u64, Fault)>,
    /// Writes to hold up, so that tests can widen a race window.
    delays: Vec<(u64, std::time::Duration)>,
    /// How long every `sync_data` takes (a slow disk), with the file system unlocked.
    sync_pause: std::time::Duration,
    counts: HashMap<Op, u64>,
}

/// The in-memory file system. Clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EEXIST: i32 = 17;
const ENOSPC: i32 = 28;

impl SimStorage {
    /// An empty file system.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// Every operation after `n` mutating operations fails, as if the process stopped
    /// there; with `tear`, the write that would be operation `n + 1` stores half of its
    /// bytes first.
    pub fn crash_after(&self, n: u64, tear: bool) {
        let mut s = self.state.lock();
        s.crash_after = Some(n);
        s.tear_last_write = tear;
    }

    /// Makes the `skip`-th next operation of kind `op` (0 = the very next) fail with
    /// `fault`.
    pub fn inject(&self, op: Op, skip: u64, fault: Fault) {
        let mut s = self.state.lock();
        let base = s.counts.get(&op).copied().unwrap_or(0);
        s.faults.push((op, base + skip, fault));
    }

    /// Drops the injected faults that have not fired yet.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Makes the `skip`-th next write (0 = the very next) sleep for `pause` before it
    /// stores anything, with the file system unlocked: a slow disk, to widen races
    /// between a write in flight and other threads.
    pub fn delay_write(&self, skip: u64, pause: std::time::Duration) {
        let mut s = self.state.lock();
        let base = s.counts.get(&Op::Write).copied().unwrap_or(0);
        s.delays.push((base + skip, pause));
    }

    /// Makes every later `sync_data` sleep for `pause` before it syncs, with the file
    /// system unlocked: a disk whose flushes take that long.
    pub fn slow_sync(&self, pause: std::time::Duration) {
        self.state.lock().sync_pause = pause;
    }

    /// Operations of kind `op` done (or attempted) so far.
    pub fn count(&self, op: Op) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Mutating operations done so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// True once the crash countdown has run out.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// A new file system holding what `crash` leaves of this one. Locks are released.
    pub fn after_crash(&self, crash: Crash) -> SimStorage {
        let s = self.state.lock();
        let mut rng = match crash {
            Crash::PowerLossPrefix(seed) => seed | 1,
            _ => 1,
        };
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let names = match crash {
            Crash::Process => s.names.clone(),
            _ => s.durable_names.clone(),
        };
        let mut inodes = HashMap::new();
        for &ino in names.values() {
            let i = &s.inodes[&ino];
            let data = match crash {
                Crash::Process => i.data.clone(),
                Crash::PowerLoss => i.synced.clone(),
                Crash::PowerLossPrefix(_) => {
                    // Some prefix of the changes since the last sync reached the disk:
                    // the current bytes up to a point, then what was synced. (Appends
                    // change the file only after its old end or over reserved zeros.)
                    let same = i
                        .data
                        .iter()
                        .zip(&i.synced)
                        .take_while(|(a, b)| a == b)
                        .count();
                    let extra = i.data.len() - same;
                    let keep = same + (next() % (extra as u64 + 1)) as usize;
                    let mut d = i.data[..keep].to_vec();
                    if i.synced.len() > keep {
                        d.extend_from_slice(&i.synced[keep..]);
                    }
                    d
                }
            };
            inodes.insert(
                ino,
                Inode {
                    synced: data.clone(),
                    data,
                },
            );
        }
        SimStorage {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_ino: s.next_ino,
                durable_names: names.clone(),
                names,
                dirs: s.dirs.clone(),
                ..State::default()
            })),
        }
    }

    /// The current contents of a file, if it exists.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        s.names.get(path).map(|ino| s.inodes[ino].data.clone())
    }

    /// Creates or replaces a file with durable contents (for building test directories).
    pub fn put_file(&self, path: &Path, data: &[u8]) {
        let mut s = self.state.lock();
        let ino = s.next_ino;
        s.next_ino += 1;
        s.inodes.insert(
            ino,
            Inode {
                data: data.to_vec(),
                synced: data.to_vec(),
            },
        );
        s.names.insert(path.to_path_buf(), ino);
        s.durable_names.insert(path.to_path_buf(), ino);
        if let Some(parent) = path.parent()
            && !s.dirs.iter().any(|d| d == parent)
        {
            s.dirs.push(parent.to_path_buf());
        }
    }

    /// Names of the files under `dir`.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        self.state
            .lock()
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect()
    }
}

impl State {
    /// Counts an operation and decides whether it fails: `Ok(None)` to proceed,
    /// `Ok(Some(n))` for a write that stores only `n` bytes then fails, `Err` to fail.
    fn begin(&mut self, op: Op) -> io::Result<Option<usize>> {
        if self.crashed {
            return Err(io::Error::other("simulated crash: the process is gone"));
        }
        let nth = {
            let c = self.counts.entry(op).or_insert(0);
            *c += 1;
            *c - 1
        };
        if op.mutates() {
            if self.crash_after.is_some_and(|n| self.ops >= n) {
                self.crashed = true;
                if op == Op::Write && self.tear_last_write {
                    return Ok(Some(usize::MAX)); // half, decided by the caller
                }
                return Err(io::Error::other("simulated crash: the process is gone"));
            }
            self.ops += 1;
        }
        if let Some(i) = self.faults.iter().position(|f| f.0 == op && f.1 == nth) {
            let (_, _, fault) = self.faults.remove(i);
            return match fault {
                Fault::Errno(code) => Err(errno(code)),
                Fault::Short(n) => Ok(Some(n)),
                Fault::Panic => panic!("injected panic in {op:?}"),
            };
        }
        Ok(None)
    }

    fn ino(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| errno(ENOENT))
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.names.contains_key(dir) {
            return Err(errno(EEXIST));
        }
        if !s.dirs.iter().any(|d| d == dir) {
            s.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let mut s = self.state.lock();
        // As creating the lock file in a missing directory fails.
        if !path.parent().is_some_and(|d| s.dirs.iter().any(|x| x == d)) {
            return Err(errno(ENOENT));
        }
        if s.locks.iter().any(|p| p == path) {
            return Ok(None);
        }
        s.locks.push(path.to_path_buf());
        Ok(Some(Box::new(LockGuard {
            storage: self.clone(),
            path: path.to_path_buf(),
        })))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        {
            let mut s = self.state.lock();
            s.begin(Op::List)?;
            if !s.dirs.iter().any(|d| d == dir) {
                return Err(errno(ENOENT));
            }
        }
        Ok(self.files(dir))
    }

    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let mut s = self.state.lock();
        s.begin(Op::Read)?;
        Ok(s.names.get(path).map(|ino| s.inodes[ino].data.clone()))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut s = self.state.lock();
        s.begin(Op::Open)?;
        let exists = s.names.get(path).copied();
        let ino = match (mode, exists) {
            (OpenMode::Read | OpenMode::Append, Some(ino)) => ino,
            (OpenMode::Read | OpenMode::Append, None) => return Err(errno(ENOENT)),
            (OpenMode::CreateNew, Some(_)) => return Err(errno(EEXIST)),
            (OpenMode::Truncate, Some(ino)) => {
                s.inodes.get_mut(&ino).expect("inode").data.clear();
                ino
            }
            (OpenMode::CreateNew | OpenMode::Truncate, None) => {
                let ino = s.next_ino;
                s.next_ino += 1;
                s.inodes.insert(ino, Inode::default());
                s.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        // Appending handles reserve space after their data as `FsStorage` does.
        let tail = matches!(mode, OpenMode::Append | OpenMode::CreateNew)
            .then(|| s.inodes[&ino].data.len() as u64);
        Ok(Box::new(SimFile {
            storage: self.clone(),
            ino,
            tail,
            appended: false,
            synced: false,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.begin(Op::Rename)?;
        let ino = s.ino(from)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.begin(Op::Remove)?;
        s.ino(path)?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.begin(Op::SyncDir)?;
        let s = &mut *s;
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in &s.names {
            if p.parent() == Some(dir) {
                s.durable_names.insert(p.clone(), *ino);
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct LockGuard {
    storage: SimStorage,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.storage.state.lock().locks.retain(|p| p != &self.path);
    }
}

/// How far an appending [`SimFile`] grows its file ahead of the data: small, so that
/// tests cross the reserved space's end often.
const SIM_RESERVE: usize = 256;

#[derive(Debug)]
struct SimFile {
    storage: SimStorage,
    ino: u64,
    /// For appending handles, where the data ends; like `FsStorage`, the file then
    /// holds up to [`SIM_RESERVE`] zero bytes after it, until trimmed.
    tail: Option<u64>,
    /// Whether this handle appended before: like `FsStorage`, the first append of a
    /// handle reserves nothing.
    appended: bool,
    /// Whether this handle was synced: its first sync gives back the reserve (as
    /// `FsStorage` unmaps it); later appends reserve again (`FsStorage` writes zeros
    /// there, without a mapping).
    synced: bool,
}

impl Drop for SimFile {
    /// Trims the reserved bytes, as `FsStorage` does; not after a crash (the process is
    /// gone) and not counted as an operation: a crash just before it leaves the same
    /// records.
    fn drop(&mut self) {
        let Some(t) = self.tail else { return };
        let mut s = self.storage.state.lock();
        if s.crashed {
            return;
        }
        if let Some(inode) = s.inodes.get_mut(&self.ino)
            && inode.data.len() > t as usize
        {
            inode.data.truncate(t as usize);
        }
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.storage.state.lock();
        s.begin(Op::Read)?;
        let data = &s.inodes[&self.ino].data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.storage.state.lock();
        let nth = s.counts.get(&Op::Write).copied().unwrap_or(0);
        if let Some(i) = s.delays.iter().position(|d| d.0 == nth) {
            let (_, pause) = s.delays.remove(i);
            drop(s);
            std::thread::sleep(pause);
            s = self.storage.state.lock();
        }
        let short = s.begin(Op::Write)?;
        let data = &mut s.inodes.get_mut(&self.ino).expect("inode").data;
        let at = self.tail.map_or(data.len(), |t| t as usize);
        let (n, res) = match short {
            None => (buf.len(), Ok(())),
            Some(usize::MAX) => (buf.len() / 2, Err(errno(ENOSPC))),
            Some(n) => (n.min(buf.len()), Err(errno(ENOSPC))),
        };
        // Written over the reserved zero bytes; past them, the file grows (as `pwrite`
        // does) and, if the write completed, reserves more (FsStorage's new window).
        let end = at + n;
        let overlap = end.min(data.len()).saturating_sub(at);
        data[at..at + overlap].copy_from_slice(&buf[..overlap]);
        data.extend_from_slice(&buf[overlap..n]);
        let first = !std::mem::replace(&mut self.appended, true);
        if let Some(t) = &mut self.tail {
            *t = end as u64;
            if res.is_ok() && overlap < n && !first {
                data.resize(end + SIM_RESERVE, 0);
            }
        }
        res
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.storage.state.lock();
        if s.begin(Op::SetLen)?.is_some() {
            return Err(errno(EIO));
        }
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        inode.data.resize(len as usize, 0);
        if let Some(t) = &mut self.tail {
            *t = len;
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        match self.tail {
            Some(t) => Ok(t),
            None => Ok(self.storage.state.lock().inodes[&self.ino].data.len() as u64),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let pause = self.storage.state.lock().sync_pause;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let mut s = self.storage.state.lock();
        if s.begin(Op::Sync)?.is_some() {
            return Err(errno(EIO));
        }
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        // Like `FsStorage`: a handle's first sync gives back its reserve.
        if let Some(t) = self.tail
            && !self.synced
        {
            self.synced = true;
            inode.data.truncate(t as usize);
        }
        inode.synced = inode.data.clone();
        Ok(())
    }
}
