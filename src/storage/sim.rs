//! An in-memory file system for tests and fuzzing: fault injection, a crash after the
//! N-th operation, and power loss that forgets what was not synced.
//!
//! Durability model (FORMAT.md §Assumptions): file data is durable once `sync_data`
//! covers it; a name (creation, rename, removal) is durable once its directory is
//! synced. A process crash keeps everything written; a power loss keeps only what is
//! durable, or in the harsher mode also an arbitrary prefix of each file's unsynced
//! appended bytes.
//!
//! [`Crash::PowerLossPages`] is the realistic power loss, as a page cache and a disk
//! behave. The kernel writes dirty pages back in any order, and a disk may persist the
//! pages of one write in any order, so each 4 KiB page changed since the last sync
//! independently keeps its synced version or gets its current one (a later page of a
//! write can survive an earlier one), and the file's length is the synced or the
//! current one, reading zeros where the chosen version has no bytes. Name operations
//! (creations, renames, removals) not yet made durable are journaled in order by ext4
//! (jbd2) and XFS, so a prefix of them survives: a later one never without an earlier
//! one. Names and data are independent: a rename can persist while the renamed file's
//! unsynced data does not, leaving an empty or partly zero file under the new name.
//! Each power loss changes [`Storage::boot_id`]; a process crash keeps it.
//! [`Crash::ProcessKeepingCache`] is a process crash that leaves the durable state as it
//! was, for a kill followed, later in the same boot, by a power loss.

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
    /// The process died, and the machine kept running: like [`Crash::Process`] (the
    /// same boot, every written byte and every name visible, locks released), but what is
    /// durable stays as it was. Each file keeps its synced bytes apart from its current
    /// ones, and the durable names and the name operations not yet durable are carried
    /// over, so that a later power loss ([`Crash::PowerLoss`],
    /// [`Crash::PowerLossPages`]) on the new file system can still lose what was never
    /// synced, before the kill or after it. A kill followed by a power loss: recovery runs
    /// in the same boot, with the page cache intact, and must itself make durable what
    /// its changes (truncations, deletions, a new `info`) rely on.
    ///
    /// [`Crash::Process`] instead makes everything durable, as if the page cache had been
    /// flushed before the next crash.
    ProcessKeepingCache,
    /// Power loss: only synced data and names in synced directories survive.
    PowerLoss,
    /// Power loss that also keeps a prefix (chosen from the seed) of each file's unsynced
    /// appended bytes.
    PowerLossPrefix(u64),
    /// Power loss as page caches and disks behave, decided by the seed (the same seed
    /// gives the same result):
    ///
    /// * Data: each 4096-byte page of a file whose current bytes differ from its synced
    ///   ones keeps its synced version or gets its current one, independently of the
    ///   other pages (dirty pages are written back in any order, and a write in flight
    ///   may persist a later page and not an earlier one). The file's length is the
    ///   synced or the current one; where the version chosen for a page has no bytes
    ///   (past its end), the page reads zeros. Synced bytes that were not overwritten
    ///   never change. Per crash, the chance that a page keeps its synced version is one
    ///   of 0, 1/4, 1/2, 3/4 and 1, so that "nothing persisted" and "everything
    ///   persisted" both come often.
    /// * Names: the durable names (those of directories synced since they changed), with
    ///   a prefix of the name operations not yet durable replayed on top, in the order
    ///   they were made (a metadata journal commits them in order). An operation persists
    ///   independently of the data of the file it names: a rename of an unsynced
    ///   `info.tmp` over `info` can leave `info` empty or partly zero.
    PowerLossPages(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    /// What a power loss leaves of the data.
    synced: Vec<u8>,
}

/// A name operation whose effects are not all durable yet.
#[derive(Debug, Clone)]
struct NameOp {
    /// What the operation did to each name, in order: the inode it names after it, or
    /// `None` when removed. Only names whose directory was not synced since are kept
    /// (a synced directory's durable names already include the effect).
    effects: Vec<(PathBuf, Option<u64>)>,
}

/// The simulated machine's boot id: starts at 1 (0 would mean unknown).
#[derive(Debug, Clone, Copy)]
struct Boot(u128);

impl Default for Boot {
    fn default() -> Boot {
        Boot(1)
    }
}

/// A size of page that the page cache writes back as a whole.
const PAGE: usize = 4096;

/// SplitMix64: deterministic, and good from the first output even for seeds 0, 1, 2...
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `quarters / 4`.
    fn chance(&mut self, quarters: u64) -> bool {
        self.next() % 4 < quarters
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Name operations not yet durable in every directory they touch, oldest first.
    name_log: Vec<NameOp>,
    boot: Boot,
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
        match crash {
            Crash::PowerLossPages(seed) => return s.power_loss_pages(seed),
            Crash::ProcessKeepingCache => return s.process_keeping_cache(),
            _ => {}
        }
        let mut rng = Rng(match crash {
            Crash::PowerLossPrefix(seed) => seed,
            _ => 0,
        });
        let names = match crash {
            Crash::Process => s.names.clone(),
            _ => s.durable_names.clone(),
        };
        let boot = match crash {
            Crash::Process => s.boot,
            _ => Boot(s.boot.0 + 1),
        };
        s.image(names, boot, |i| match crash {
            Crash::PowerLossPrefix(_) => {
                // Some prefix of the changes since the last sync reached the disk: the
                // current bytes up to a point, then what was synced. (Appends change the
                // file only after its old end or over reserved zeros.)
                let same = i
                    .data
                    .iter()
                    .zip(&i.synced)
                    .take_while(|(a, b)| a == b)
                    .count();
                let extra = i.data.len() - same;
                let keep = same + (rng.next() % (extra as u64 + 1)) as usize;
                let mut d = i.data[..keep].to_vec();
                if i.synced.len() > keep {
                    d.extend_from_slice(&i.synced[keep..]);
                }
                d
            }
            Crash::PowerLoss => i.synced.clone(),
            _ => i.data.clone(),
        })
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
        // Durable now, whatever was logged for the name before.
        s.forget_effects(|p| p == path);
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

    /// Records a name operation made in `names`, for a power loss to replay or not.
    fn log_name_op(&mut self, effects: Vec<(PathBuf, Option<u64>)>) {
        self.name_log.push(NameOp { effects });
    }

    /// Drops the logged effects on the names that `durable` selects (now durable), and
    /// the operations left without effects.
    fn forget_effects(&mut self, durable: impl Fn(&Path) -> bool) {
        for op in &mut self.name_log {
            op.effects.retain(|(p, _)| !durable(p));
        }
        self.name_log.retain(|op| !op.effects.is_empty());
    }

    /// What [`Crash::ProcessKeepingCache`] leaves (see there): every file, name and
    /// pending name operation as it is, the durable state apart, the same boot; no
    /// locks, no countdown, no faults, counters from zero.
    fn process_keeping_cache(&self) -> SimStorage {
        // Every inode a name, a durable name or a pending name operation refers to: a
        // later power loss may bring back a name removed since its last dirsync.
        let mut inos: Vec<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .chain(
                self.name_log
                    .iter()
                    .flat_map(|op| op.effects.iter().filter_map(|(_, ino)| ino.as_ref())),
            )
            .copied()
            .collect();
        inos.sort_unstable();
        inos.dedup();
        let inodes = inos
            .into_iter()
            .map(|ino| (ino, self.inodes[&ino].clone()))
            .collect();
        SimStorage {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_ino: self.next_ino,
                names: self.names.clone(),
                durable_names: self.durable_names.clone(),
                name_log: self.name_log.clone(),
                dirs: self.dirs.clone(),
                boot: self.boot,
                ..State::default()
            })),
        }
    }

    /// What [`Crash::PowerLossPages`] leaves (see there).
    fn power_loss_pages(&self, seed: u64) -> SimStorage {
        let mut rng = Rng(seed);
        // The chance, in quarters, that a changed page (or the length) keeps its synced
        // version.
        let keep = rng.next() % 5;
        let n = self.name_log.len() as u64;
        let replayed = match rng.next() % 4 {
            0 => 0,
            1 => n,
            _ => rng.next() % (n + 1),
        };
        let mut names = self.durable_names.clone();
        for op in &self.name_log[..replayed as usize] {
            // One that no longer applies (it removes a name that is absent) is skipped.
            if op
                .effects
                .iter()
                .any(|(p, ino)| ino.is_none() && !names.contains_key(p))
            {
                continue;
            }
            for (p, ino) in &op.effects {
                match ino {
                    Some(ino) => names.insert(p.clone(), *ino),
                    None => names.remove(p),
                };
            }
        }
        self.image(names, Boot(self.boot.0 + 1), |i| {
            torn_pages(&i.data, &i.synced, keep, &mut rng)
        })
    }

    /// A new file system whose files are `names`, each holding what `data_of` gives for
    /// its inode, all of it durable (what a disk holds after a crash), at boot `boot`.
    fn image(
        &self,
        names: BTreeMap<PathBuf, u64>,
        boot: Boot,
        mut data_of: impl FnMut(&Inode) -> Vec<u8>,
    ) -> SimStorage {
        let mut inos: Vec<u64> = names.values().copied().collect();
        inos.sort_unstable();
        inos.dedup();
        let mut inodes = HashMap::new();
        for ino in inos {
            let data = data_of(&self.inodes[&ino]);
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
                next_ino: self.next_ino,
                durable_names: names.clone(),
                names,
                dirs: self.dirs.clone(),
                boot,
                ..State::default()
            })),
        }
    }
}

/// What a power loss leaves of a file that holds `data` and had `synced` on disk: per
/// [`PAGE`], the synced or the current version (with probability `keep / 4` the synced
/// one) where they differ, zeros past the chosen version's end; the synced or the
/// current length, likewise.
fn torn_pages(data: &[u8], synced: &[u8], keep: u64, rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(keep) {
        synced.len()
    } else {
        data.len()
    };
    let page = |v: &[u8], p: usize| -> Vec<u8> {
        let start = (p * PAGE).min(v.len());
        v[start..((p + 1) * PAGE).min(v.len())].to_vec()
    };
    let mut out = vec![0; len];
    for p in 0..data.len().max(synced.len()).div_ceil(PAGE) {
        let (current, old) = (page(data, p), page(synced, p));
        let chosen = if current == old || rng.chance(keep) {
            old
        } else {
            current
        };
        let start = (p * PAGE).min(len);
        let end = (start + chosen.len()).min(len);
        out[start..end].copy_from_slice(&chosen[..end - start]);
    }
    out
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
                s.log_name_op(vec![(path.to_path_buf(), Some(ino))]);
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
        s.log_name_op(vec![
            (from.to_path_buf(), None),
            (to.to_path_buf(), Some(ino)),
        ]);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.begin(Op::Remove)?;
        s.ino(path)?;
        s.names.remove(path);
        s.log_name_op(vec![(path.to_path_buf(), None)]);
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
        s.forget_effects(|p| p.parent() == Some(dir));
        Ok(())
    }

    fn boot_id(&self) -> u128 {
        self.state.lock().boot.0
    }

    /// The simulated disk never fills by itself (full disks are injected faults), so
    /// space kept back is never needed: nothing is written.
    fn reserve_space(&self, _path: &Path, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// Room for anything: the simulated disk fills only by injected faults. (Unknown
    /// would make the queue retry its reserve by the clock, and replays depend on time.)
    fn available(&self) -> io::Result<Option<u64>> {
        Ok(Some(u64::MAX))
    }

    /// The simulated directories are never renamed or deleted behind the queue's back,
    /// so paths name them well enough; a missing one is `NotFound`, as on a real one.
    fn anchor(self: Arc<Self>, dir: &Path) -> io::Result<Arc<dyn Storage>> {
        if !self.state.lock().dirs.iter().any(|d| d == dir) {
            return Err(errno(ENOENT));
        }
        Ok(self)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const SEEDS: u64 = 2000;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// Bytes that are never zero, different per offset.
    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(salt) | 1)
            .collect()
    }

    fn names(st: &SimStorage, dir: &str) -> BTreeSet<String> {
        st.files(Path::new(dir)).into_iter().collect()
    }

    #[test]
    fn pages_keep_synced_bytes_and_tear_a_write_out_of_order() {
        let st = SimStorage::new();
        st.create_dir_all(Path::new("/q")).unwrap();
        let mut f = st.open(&p("/q/f"), OpenMode::CreateNew).unwrap();
        let synced = pattern(10_000, 3);
        f.append(&synced).unwrap();
        f.sync_data().unwrap();
        st.sync_dir(Path::new("/q")).unwrap();
        // One write of several pages, not synced (the page with the synced end is dirty).
        f.append(&pattern(20_000, 5)).unwrap();
        let current = st.file(&p("/q/f")).unwrap();
        assert!(current.len() >= 30_000);
        let pages = current.len().div_ceil(PAGE);
        let (mut nothing, mut everything, mut out_of_order, mut zeros_within) =
            (false, false, false, false);
        for seed in 0..SEEDS {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            let got = after.file(&p("/q/f")).expect("durable name");
            assert_eq!(
                got,
                st.after_crash(Crash::PowerLossPages(seed))
                    .file(&p("/q/f"))
                    .unwrap()
            );
            assert!(got.len() == synced.len() || got.len() == current.len());
            assert_eq!(
                got[..synced.len()],
                synced[..],
                "seed {seed}: synced bytes changed"
            );
            // Each page past the synced ones: all current bytes or all zeros (nothing was
            // synced there), the page with the synced end: synced then current or zeros.
            let mut persisted = Vec::new();
            for pg in 0..pages {
                let r = pg * PAGE..((pg + 1) * PAGE).min(got.len());
                if r.start >= got.len() || r.end <= synced.len() {
                    continue;
                }
                let from = r.start.max(synced.len());
                let all_current = got[from..r.end] == current[from..r.end];
                let all_zero = got[from..r.end].iter().all(|&b| b == 0);
                assert!(all_current || all_zero, "seed {seed}: page {pg} mixed");
                // The synced end's page: zeros only after the synced end, so a persisted
                // page is told by its bytes (pattern bytes are never zero).
                persisted.push((pg, all_current && !all_zero));
            }
            nothing |= got == synced;
            everything |= got == current;
            zeros_within |= got.len() == current.len() && persisted.iter().any(|&(_, k)| !k);
            out_of_order |= persisted
                .iter()
                .any(|&(a, ka)| !ka && persisted.iter().any(|&(b, kb)| kb && b > a));
        }
        assert!(nothing, "no seed persisted nothing");
        assert!(everything, "no seed persisted everything");
        assert!(
            zeros_within,
            "no seed left zero pages within the current length"
        );
        assert!(
            out_of_order,
            "no seed persisted a later page without an earlier one"
        );
    }

    #[test]
    fn pages_is_power_loss_or_process_crash_for_clean_files() {
        let st = SimStorage::new();
        st.put_file(&p("/q/a"), &pattern(9000, 1));
        for seed in 0..100 {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            assert_eq!(after.file(&p("/q/a")).unwrap(), pattern(9000, 1));
        }
    }

    /// A truncated file comes back at its old or its new length; what a page keeps is its
    /// synced or its current version, never another.
    #[test]
    fn pages_of_a_shrunk_file() {
        let st = SimStorage::new();
        st.put_file(&p("/q/a"), &pattern(9000, 1));
        let mut f = st.open(&p("/q/a"), OpenMode::Append).unwrap();
        f.set_len(5000).unwrap();
        let old = pattern(9000, 1);
        let mut current = old[..5000].to_vec();
        current.resize(9000, 0); // pages read zeros past the current end
        let (mut long, mut short, mut mixed) = (false, false, false);
        for seed in 0..SEEDS {
            let got = st
                .after_crash(Crash::PowerLossPages(seed))
                .file(&p("/q/a"))
                .unwrap();
            assert!(got.len() == 9000 || got.len() == 5000);
            let mut versions = Vec::new();
            for pg in 0..got.len().div_ceil(PAGE) {
                let r = pg * PAGE..((pg + 1) * PAGE).min(got.len());
                let (is_old, is_new) = (
                    got[r.clone()] == old[r.clone()],
                    got[r.clone()] == current[r],
                );
                assert!(
                    is_old || is_new,
                    "seed {seed}: page {pg} is neither version"
                );
                versions.push((is_old, is_new));
            }
            assert_eq!(versions[0], (true, true), "clean page changed");
            long |= got.len() == 9000;
            short |= got.len() == 5000;
            mixed |=
                got.len() == 9000 && versions[1] == (false, true) && versions[2] == (true, false);
        }
        assert!(long && short && mixed);
        assert!(long && short);
    }

    /// The bug users hit: `info.tmp` written and renamed over `info` without a sync of
    /// its data; the rename persists, the data does not.
    #[test]
    fn rename_persists_without_the_renamed_data() {
        for sync_data in [false, true] {
            let st = SimStorage::new();
            let old = pattern(100, 9);
            let new = pattern(150, 4);
            st.put_file(&p("/q/info"), &old);
            let mut f = st.open(&p("/q/info.tmp"), OpenMode::Truncate).unwrap();
            f.append(&new).unwrap();
            if sync_data {
                f.sync_data().unwrap();
            }
            drop(f);
            st.rename(&p("/q/info.tmp"), &p("/q/info")).unwrap();
            let mut seen = BTreeSet::new();
            for seed in 0..SEEDS {
                let after = st.after_crash(Crash::PowerLossPages(seed));
                let info = after.file(&p("/q/info")).expect("info never vanishes");
                let tmp = after.file(&p("/q/info.tmp"));
                let state = if info == old {
                    // Not renamed: the temporary file was created or not.
                    match tmp {
                        None => "nothing",
                        Some(t) => {
                            assert!(t.is_empty() || t == new || t.iter().all(|&b| b == 0));
                            "created"
                        }
                    }
                } else {
                    assert!(tmp.is_none(), "seed {seed}: renamed but info.tmp left");
                    if info == new {
                        "renamed"
                    } else {
                        assert!(!sync_data, "seed {seed}: synced data lost: {info:?}");
                        assert!(
                            info.is_empty() || (info.len() == 150 && info.iter().all(|&b| b == 0)),
                            "seed {seed}: {info:?}"
                        );
                        if info.is_empty() {
                            "renamed, empty"
                        } else {
                            "renamed, zeros"
                        }
                    }
                };
                seen.insert(state);
            }
            let mut want = BTreeSet::from(["nothing", "created", "renamed"]);
            if !sync_data {
                want.extend(["renamed, empty", "renamed, zeros"]);
            }
            assert_eq!(seen, want, "sync_data: {sync_data}");
        }
    }

    #[test]
    fn name_operations_persist_as_a_prefix() {
        let st = SimStorage::new();
        st.put_file(&p("/q/a"), b"a");
        st.put_file(&p("/q/b"), b"b");
        st.rename(&p("/q/a"), &p("/q/c")).unwrap();
        st.remove(&p("/q/b")).unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            let got = names(&after, "/q");
            let got: Vec<&str> = got.iter().map(String::as_str).collect();
            assert!(
                matches!(got[..], ["a", "b"] | ["b", "c"] | ["c"]),
                "seed {seed}: {got:?}"
            );
            if let Some(c) = after.file(&p("/q/c")) {
                assert_eq!(c, b"a");
            }
            seen.insert(got.join(","));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        // Once the directory is synced, everything stays.
        st.sync_dir(Path::new("/q")).unwrap();
        assert!(st.state.lock().name_log.is_empty());
        for seed in 0..100 {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            assert_eq!(names(&after, "/q"), BTreeSet::from(["c".to_string()]));
        }
    }

    /// A rename across directories of which one is synced: the synced one's names stay as
    /// synced (a later removal there is not undone by replaying the rename).
    #[test]
    fn synced_directory_is_not_replayed_over() {
        let st = SimStorage::new();
        st.put_file(&p("/d1/a"), b"a");
        st.create_dir_all(Path::new("/d2")).unwrap();
        st.rename(&p("/d1/a"), &p("/d2/b")).unwrap();
        st.sync_dir(Path::new("/d2")).unwrap();
        st.remove(&p("/d2/b")).unwrap();
        st.sync_dir(Path::new("/d2")).unwrap();
        assert_eq!(
            st.state.lock().name_log.len(),
            1,
            "the rename's removal in /d1"
        );
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            assert!(names(&after, "/d2").is_empty(), "seed {seed}");
            seen.insert(names(&after, "/d1").len());
        }
        assert_eq!(seen, BTreeSet::from([0, 1]));
    }

    #[test]
    fn existing_crashes_are_unchanged_by_the_log() {
        let st = SimStorage::new();
        st.put_file(&p("/q/a"), b"a");
        st.rename(&p("/q/a"), &p("/q/c")).unwrap();
        for crash in [Crash::PowerLoss, Crash::PowerLossPrefix(7)] {
            assert_eq!(
                names(&st.after_crash(crash), "/q"),
                BTreeSet::from(["a".to_string()])
            );
        }
        assert_eq!(
            names(&st.after_crash(Crash::Process), "/q"),
            BTreeSet::from(["c".to_string()])
        );
    }

    /// A kill keeps the page cache: everything written is visible in the same boot, and a
    /// later power loss still loses what was never synced, data and names.
    #[test]
    fn process_keeping_cache_then_power_loss() {
        let st = SimStorage::new();
        st.put_file(&p("/q/old"), b"old");
        let mut f = st.open(&p("/q/synced"), OpenMode::CreateNew).unwrap();
        f.append(b"synced").unwrap();
        f.sync_data().unwrap();
        st.sync_dir(Path::new("/q")).unwrap();
        f.append(b" and not").unwrap(); // written, never synced
        let mut g = st.open(&p("/q/unsynced"), OpenMode::CreateNew).unwrap();
        g.append(b"unsynced").unwrap(); // neither its data nor its name is durable
        st.remove(&p("/q/old")).unwrap(); // not durable either
        let _lock = st.try_lock(&p("/q/.lock")).unwrap().expect("lock");
        st.crash_after(st.ops(), false);
        assert!(f.append(b"after the kill").is_err());
        assert!(st.crashed());

        let killed = st.after_crash(Crash::ProcessKeepingCache);
        assert_eq!(killed.boot_id(), st.boot_id(), "a kill keeps the boot");
        assert!(!killed.crashed());
        assert!(
            killed.try_lock(&p("/q/.lock")).unwrap().is_some(),
            "lock released"
        );
        assert_eq!(
            names(&killed, "/q"),
            BTreeSet::from(["synced".to_string(), "unsynced".to_string()])
        );
        // (The kill does not trim the appending handles' reserve: zeros follow.)
        let synced = killed.file(&p("/q/synced")).unwrap();
        assert!(synced.starts_with(b"synced and not"), "{synced:?}");
        assert!(synced[14..].iter().all(|&b| b == 0));
        assert!(
            killed
                .file(&p("/q/unsynced"))
                .unwrap()
                .starts_with(b"unsynced")
        );
        // `Process` makes it all durable; `ProcessKeepingCache` does not.
        let flushed = st.after_crash(Crash::Process).after_crash(Crash::PowerLoss);
        assert!(flushed.file(&p("/q/unsynced")).is_some());

        let lost = killed.after_crash(Crash::PowerLoss);
        assert_eq!(lost.boot_id(), st.boot_id() + 1, "a power loss changes it");
        assert_eq!(
            names(&lost, "/q"),
            BTreeSet::from(["old".to_string(), "synced".to_string()])
        );
        assert_eq!(lost.file(&p("/q/synced")).unwrap(), b"synced");
        assert_eq!(lost.file(&p("/q/old")).unwrap(), b"old");
        for seed in 0..SEEDS {
            let after = killed.after_crash(Crash::PowerLossPages(seed));
            assert_eq!(after.boot_id(), st.boot_id() + 1);
            let got = after.file(&p("/q/synced")).unwrap();
            assert!(got.starts_with(b"synced"), "seed {seed}: synced bytes lost");
            if let Some(u) = after.file(&p("/q/unsynced")) {
                assert!(u.is_empty() || u.starts_with(b"unsynced") || u.iter().all(|&b| b == 0));
            }
        }

        // Writes and syncs made after the kill, in the same boot, are as on any file
        // system: what recovery syncs survives the power loss, the rest may not.
        let mut h = killed.open(&p("/q/unsynced"), OpenMode::Append).unwrap();
        h.sync_data().unwrap();
        drop(h);
        killed.sync_dir(Path::new("/q")).unwrap();
        let after = killed.after_crash(Crash::PowerLoss);
        assert_eq!(
            names(&after, "/q"),
            BTreeSet::from(["synced".to_string(), "unsynced".to_string()])
        );
        assert_eq!(after.file(&p("/q/unsynced")).unwrap(), b"unsynced");
        assert_eq!(after.file(&p("/q/synced")).unwrap(), b"synced");
    }

    #[test]
    fn boot_id_changes_on_power_loss_only() {
        let st = SimStorage::new();
        assert_eq!(st.boot_id(), 1);
        assert_eq!(st.clone().boot_id(), 1);
        let st = st.after_crash(Crash::Process);
        assert_eq!(st.boot_id(), 1);
        let st = st.after_crash(Crash::ProcessKeepingCache);
        assert_eq!(st.boot_id(), 1);
        let st = st.after_crash(Crash::PowerLoss);
        assert_eq!(st.boot_id(), 2);
        let st = st.after_crash(Crash::PowerLossPrefix(3));
        assert_eq!(st.boot_id(), 3);
        let st = st.after_crash(Crash::PowerLossPages(3));
        assert_eq!(st.boot_id(), 4);
        assert_eq!(st.after_crash(Crash::Process).boot_id(), 4);
    }
}
