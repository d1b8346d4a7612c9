//! [`Inspector`]: a read-only look at a queue directory, for operators and tools (the
//! `diskq` command): it takes no lock and changes no file, so it works while another
//! process has the queue open and writing. It reads `info`, the journal and the chunk
//! files with the same code that `repair` uses (`inspect/`).

use crate::engine::{ACKS, INFO};
use crate::error::{Error, Result};
use crate::format::{ACK_ENTRY_LEN, Info, all_zero};
use crate::inspect::dir::{
    Damage, Journal, acknowledgements, chunk_name, chunk_set_problems, info_of, journal_of,
    scan_chunk,
};
use crate::inspect::journal::{Acknowledged, scan_bytes};
use crate::pause::PAUSED;
use crate::reader::parse_chunk_name;
use crate::repair::DamagedRange;
use crate::storage::{FsStorage, Storage};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod walk;

/// How many times a scan is repeated when the owner changed the files under it.
const ATTEMPTS: usize = 5;
/// How many times `verify` reads the queue at most before it calls it busy.
const VERIFY_READS: usize = 10;
/// Gaps in a listing of chunk files up to this long are looked up file by file.
const MAX_GAP_LOOKUPS: u64 = 4096;

/// A read-only view of a queue directory. Each call reads the files again: a snapshot of
/// that moment, consistent even while the owner appends, checkpoints and deletes chunk
/// files (a chunk deleted under it held only acknowledged items, and is passed over).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
/// q.put(&"job".to_string())?;
/// let s = diskq::Inspector::open(dir.path())?.snapshot()?; // q is still open
/// assert_eq!((s.waiting, s.owner_pid.is_some()), (1, true));
/// assert!(matches!(
///     diskq::Inspector::open(dir.path().join("nothing here")),
///     Err(diskq::Error::NotAQueue { .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Inspector {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
}

/// What [`Inspector::snapshot`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The format version of `info`.
    pub format_version: u32,
    /// Items put and not acknowledged: waiting, delayed or in flight.
    pub waiting: u64,
    /// Of those, items handed out at least once (in flight now, or given back).
    pub delivered: u64,
    /// Of those, items given back with a delay that is not over.
    pub delayed: u64,
    /// Items in the dead-letter queue (`dir/dead`).
    pub dead_letters: u64,
    /// The sequence number of the oldest item not acknowledged, if any.
    pub oldest_seq: Option<u64>,
    /// How long ago the oldest waiting item was put, at least (from the put-time marks
    /// of the last checkpoint; `None` when none covers it).
    pub oldest_age: Option<Duration>,
    /// The next sequence number a put takes (as far as the files show; when the scan
    /// stopped at damage, the one after the last intact record before it).
    pub next_seq: u64,
    /// Bytes of every file in the directory (the dead letters included).
    pub bytes_on_disk: u64,
    /// Files in the directory (the dead letters included).
    pub files: u64,
    /// Chunk files.
    pub chunk_files: u64,
    /// Consumers are paused (`Queue::pause`, or `diskq pause`).
    pub paused: bool,
    /// The process holding the queue open, where the OS tells (`/proc/locks`); `None`
    /// when none does, or the OS does not say.
    pub owner_pid: Option<u32>,
    /// The damage the scan stopped at (file and offset): past it the records'
    /// sequence numbers are unknown, so `waiting`, `delivered`, `delayed`, `oldest_seq`
    /// and `next_seq` count only the records before it. `None` when nothing was left
    /// out. [`Inspector::verify`] lists every damaged range; [`repair`](crate::repair)
    /// salvages the intact records after them.
    pub stopped_at: Option<DamagedRange>,
}

/// What [`Inspector::items`] and [`Inspector::records`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// The items, in order.
    pub items: Vec<RawItem>,
    /// The damage the scan stopped at before it found `limit` items: the records after
    /// it (their sequence numbers unknown) are not listed. `None` when nothing was left
    /// out. As [`Snapshot::stopped_at`].
    pub stopped_at: Option<DamagedRange>,
}

/// A waiting item, as [`Inspector::items`] reads it: its bytes as stored (the encoded
/// item; decode them with the item type, or show them).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawItem {
    /// The item's sequence number.
    pub seq: u64,
    /// The stored payload.
    pub payload: Vec<u8>,
    /// Milliseconds since the Unix epoch at or after which it was put, where recorded.
    pub put_at_ms: Option<u64>,
    /// Deliveries so far, as of the last checkpoint.
    pub attempts: u32,
}

/// What [`Inspector::verify`] found. `healthy()` when there is nothing to report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// Byte ranges that hold no valid record or structure, with the file and offset.
    pub damage: Vec<DamagedRange>,
    /// Other inconsistencies (missing chunk files, a broken chain, ...).
    pub problems: Vec<String>,
    /// Records read and checked.
    pub records: u64,
    /// Another process held the queue open: a record being written at the end of the
    /// newest chunk is not counted as damage.
    pub live: bool,
}

impl Verification {
    /// Nothing to report: `Queue::open` would accept the directory and deliver every
    /// record.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// assert!(diskq::Inspector::open(dir.path())?.verify()?.healthy());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn healthy(&self) -> bool {
        self.damage.is_empty() && self.problems.is_empty()
    }

    /// What this read found that one of the `earlier` ones found too, alike.
    fn seen_also_in(mut self, earlier: &[Verification]) -> Verification {
        self.damage
            .retain(|d| earlier.iter().any(|e| e.damage.contains(d)));
        self.problems
            .retain(|p| earlier.iter().any(|e| e.problems.contains(p)));
        self
    }
}

/// One consistent reading of the acknowledgement state: `info` and the journal.
struct State {
    /// The format version of `info` (0 when it is missing or unreadable).
    version: u32,
    info: Option<Info>,
    acked: Acknowledged,
    damaged: Vec<Damage>,
    problems: Vec<String>,
}

impl Inspector {
    /// A view of the queue in `dir`. Reads nothing yet.
    ///
    /// # Errors
    /// [`Error::NotAQueue`] when `dir` does not exist, is not a directory, or holds
    /// neither `info` nor a chunk file; [`Error::Io`] when it cannot be listed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// let i = diskq::Inspector::open(dir.path())?;
    /// assert_eq!(i.snapshot()?.waiting, 0);
    /// let empty = tempfile::tempdir()?;
    /// let e = diskq::Inspector::open(empty.path()).unwrap_err();
    /// assert!(matches!(e, diskq::Error::NotAQueue { .. }), "{e}");
    /// assert!(e.to_string().contains("is not a diskq queue directory"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Inspector> {
        Inspector::open_with(Arc::new(FsStorage), dir.as_ref())
    }

    /// [`open`](Self::open) on another [`Storage`] (tests).
    #[cfg(feature = "__testing")]
    #[doc(hidden)]
    pub fn open_on(storage: Arc<dyn Storage>, dir: impl AsRef<Path>) -> Result<Inspector> {
        Inspector::open_with(storage, dir.as_ref())
    }

    fn open_with(storage: Arc<dyn Storage>, dir: &Path) -> Result<Inspector> {
        let dir = dir.to_path_buf();
        let not_a_queue = |reason| Error::NotAQueue {
            path: dir.clone(),
            reason,
        };
        let names = match storage.list(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(not_a_queue("it does not exist"));
            }
            Err(e) if e.kind() == ErrorKind::NotADirectory => {
                return Err(not_a_queue("it is not a directory"));
            }
            Err(e) => return Err(Error::io("list queue directory", &dir, e)),
        };
        if !names
            .iter()
            .any(|n| n == INFO || parse_chunk_name(n).is_some())
        {
            return Err(not_a_queue(
                "it holds neither an info file nor a chunk file",
            ));
        }
        Ok(Inspector { dir, storage })
    }

    /// The process that has the queue open, where the OS tells (`/proc/locks`); `None`
    /// when none has (or the OS does not say). No file of the queue is read.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// let i = diskq::Inspector::open(dir.path())?;
    /// assert_eq!(i.owner_pid(), Some(std::process::id()));
    /// drop(q);
    /// assert_eq!(i.owner_pid(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owner_pid(&self) -> Option<u32> {
        owner_pid(&self.dir)
    }

    /// The directory looked at.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// assert_eq!(diskq::Inspector::open(dir.path())?.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The item type recorded when the queue was created ([`Options::schema`]: by
    /// default the Rust type's name); `None` for a queue made before format version 4.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// diskq::Options::new().schema("jobs/v1").open::<u32>(dir.path())?;
    /// let tag = diskq::Inspector::open(dir.path())?.schema()?;
    /// assert_eq!(tag.as_deref(), Some("jobs/v1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Corrupt`] when it is damaged.
    ///
    /// [`Options::schema`]: crate::Options::schema
    pub fn schema(&self) -> Result<Option<String>> {
        let path = self.dir.join(crate::engine::SCHEMA);
        let Some(b) = self.read(&path)? else {
            return Ok(None);
        };
        crate::format::schema::decode(&b)
            .map(Some)
            .map_err(|e| Error::corrupt(&path, 0, format!("bad schema file: {e}")))
    }

    /// A file's bytes; `None` when there is no such file.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        self.storage
            .read_all(path)
            .map_err(|e| Error::io("read", path, e))
    }

    /// Reads the journal, then `info`: in that order the two agree, however the owner
    /// checkpoints meanwhile. A checkpoint replaces `info` before it empties the journal,
    /// so an `info` read after the journal holds everything the entries of an emptied
    /// journal held (and entries are absolute: older ones take nothing back). The other
    /// way round, a checkpoint in between paired the old `info` with a journal that
    /// lacks what the new one took in. `live`: see [`journal`](Self::journal).
    fn state(&self, live: bool) -> Result<State> {
        let (mut damaged, mut problems) = (Vec::new(), Vec::new());
        let journal = self.journal(live, &mut damaged)?;
        let bytes = self.read(&self.dir.join(INFO))?;
        let info = info_of(bytes.as_deref(), &mut damaged, &mut problems);
        let (_, acked) = acknowledgements(info.as_ref(), journal);
        let version = match (&info, bytes.as_deref().and_then(|b| b.get(8..12))) {
            (Some(_), Some(v)) => u32::from_le_bytes(v.try_into().expect("4 bytes")),
            _ => 0,
        };
        Ok(State {
            version,
            info,
            acked,
            damaged,
            problems,
        })
    }

    /// The journal, read in one go: read in blocks and checked between them, it was read
    /// over milliseconds, and zeros reserved after the data, read before the owner's
    /// appends filled them, came before entries read after: damage that is not there.
    /// With `live` (another process has the queue open), a damaged range at the end, no
    /// longer than a pair of units and followed by nothing but zeros, is an entry being
    /// copied in, not damage (as a record at the end of the newest chunk).
    fn journal(&self, live: bool, damaged: &mut Vec<Damage>) -> Result<Journal> {
        let path = self.dir.join(ACKS);
        let bytes = self.read(&path)?;
        let mut scan = scan_bytes(bytes.as_deref(), &path)?;
        if live
            && let (Some(b), Some(r)) = (&bytes, scan.damaged.last())
            && r.end - r.start <= 2 * ACK_ENTRY_LEN as u64
            && all_zero(&b[r.end as usize..])
        {
            scan.damaged.pop();
        }
        Ok(journal_of(scan, damaged))
    }

    /// The chunk files present, ascending.
    fn chunks(&self) -> Result<Vec<u64>> {
        let names = self
            .storage
            .list(&self.dir)
            .map_err(|e| Error::io("list queue directory", &self.dir, e))?;
        let mut chunks: Vec<u64> = names.iter().filter_map(|n| parse_chunk_name(n)).collect();
        chunks.sort_unstable();
        // A listing made while the owner creates and deletes chunk files may leave some
        // out (readdir under concurrent change): a gap is looked up file by file, and only
        // a file that is really not there stays missing.
        let mut found = Vec::new();
        for pair in chunks.windows(2) {
            let gap = pair[0] + 1..pair[1];
            if gap.end - gap.start <= MAX_GAP_LOOKUPS {
                found.extend(gap.filter(|&no| self.dir.join(chunk_name(no)).exists()));
            }
        }
        if !found.is_empty() {
            chunks.extend(found);
            chunks.sort_unstable();
        }
        Ok(chunks)
    }

    /// A chunk file's bytes; `None` when the owner deleted it meanwhile (every item in it
    /// was acknowledged).
    fn chunk_bytes(&self, no: u64) -> Result<Option<Vec<u8>>> {
        self.read(&self.dir.join(chunk_name(no)))
    }

    /// Counts and sizes of the queue as its files show them now.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2, 3])?;
    /// q.get()?;
    /// q.task_done()?;
    /// drop(q);
    /// let s = diskq::Inspector::open(dir.path())?.snapshot()?;
    /// assert_eq!((s.waiting, s.oldest_seq, s.next_seq, s.owner_pid), (2, Some(1), 3, None));
    /// // A flipped byte in item 2's record: the counts stop before it, and say so.
    /// let chunk = dir.path().join("q00000");
    /// let mut bytes = std::fs::read(&chunk)?;
    /// bytes[28 + 2 * 12 + 8] ^= 1; // header 28 bytes, records of 12
    /// std::fs::write(&chunk, bytes)?;
    /// let s = diskq::Inspector::open(dir.path())?.snapshot()?;
    /// assert_eq!((s.waiting, s.stopped_at.map(|d| d.offset)), (1, Some(52)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read. Damage is not an error here: the
    /// records before it are counted, and [`Snapshot::stopped_at`] says where it is.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.again_while_damaged(|| self.snapshot_once(), |s| s.stopped_at.is_some())
    }

    fn snapshot_once(&self) -> Result<Snapshot> {
        let state = self.state(false)?;
        let (mut waiting, mut delivered, mut delayed, mut oldest) = (0, 0, 0, None);
        let work = state.info.as_ref().map(|i| &i.work);
        let delivered_below = work.map_or(0, |w| w.delivered);
        let now = now_ms();
        // Counted as the records are met, so that `delayed` stays a part of `waiting`.
        let due_later: BTreeSet<u64> = work.map_or_else(BTreeSet::new, |w| {
            let later = w.delays.iter().filter(|&&(_, due)| due > now);
            later.map(|&(seq, _)| seq).collect()
        });
        let walked = self.each_record(Some(&state), 0, |seq, _| {
            waiting += 1;
            delivered += u64::from(seq < delivered_below);
            delayed += u64::from(due_later.contains(&seq));
            oldest.get_or_insert(seq);
            true
        })?;
        let oldest_age = oldest.and_then(|seq| {
            let marks = work.map_or(&[][..], |w| &w.marks[..]);
            let ms = marks.iter().rev().find(|&&(s, _)| s <= seq)?.1;
            Some(Duration::from_millis(now.saturating_sub(ms)))
        });
        let (bytes_on_disk, files) = disk_usage(&self.dir);
        let dead = self.dir.join(crate::dead_letters::DEAD);
        let dead_letters = match Inspector::open_with(self.storage.clone(), &dead) {
            Ok(dead) => dead.snapshot()?.waiting,
            Err(Error::NotAQueue { .. }) => 0, // none yet
            Err(e) => return Err(e),
        };
        Ok(Snapshot {
            format_version: state.version,
            waiting,
            delivered,
            delayed,
            dead_letters,
            oldest_seq: oldest,
            oldest_age,
            next_seq: walked.next_seq,
            bytes_on_disk,
            files,
            chunk_files: walked.chunk_files,
            paused: self.dir.join(PAUSED).exists(),
            owner_pid: owner_pid(&self.dir),
            stopped_at: walked.stopped_at,
        })
    }

    /// Up to `limit` waiting items from sequence number `from` on, in order, not taken.
    /// At damage that hides items asked for, the listing stops and
    /// [`Listing::stopped_at`] says where.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&["a".to_string(), "b".to_string(), "c".to_string()])?;
    /// let listed = diskq::Inspector::open(dir.path())?.items(1, 10)?;
    /// let seqs: Vec<u64> = listed.items.iter().map(|i| i.seq).collect();
    /// assert_eq!((seqs, listed.stopped_at), (vec![1, 2], None));
    /// assert_eq!(bincode::deserialize::<String>(&listed.items[0].payload)?, "b");
    /// assert_eq!(q.len(), 3); // nothing taken
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read.
    pub fn items(&self, from: u64, limit: usize) -> Result<Listing> {
        let read = || {
            let state = self.state(false)?;
            let work = state.info.as_ref().map(|i| &i.work);
            let work = work.cloned().unwrap_or_default();
            self.list(Some(&state), from, limit, |seq| {
                let attempts = match work.attempts.binary_search_by_key(&seq, |&(s, _)| s) {
                    Ok(i) => work.attempts[i].1,
                    Err(_) => u32::from(seq < work.delivered),
                };
                let mark = work.marks.iter().rev().find(|&&(s, _)| s <= seq);
                (mark.map(|m| m.1), attempts)
            })
        };
        self.again_while_damaged(read, |l| l.stopped_at.is_some())
    }

    /// Up to `limit` records from sequence number `from` on, in order, whether or not
    /// they were gotten and acknowledged since: what the chunk files still hold (a chunk
    /// is deleted once every item in it is acknowledged). For following a queue
    /// (`diskq tail`), where an item taken at once must still be seen. Stops at damage
    /// as [`items`](Self::items) does.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// q.get()?;
    /// q.task_done()?; // item 0 is acknowledged, its record still there
    /// let i = diskq::Inspector::open(dir.path())?;
    /// assert_eq!(i.records(0, 10)?.items.len(), 2);
    /// assert_eq!(i.items(0, 10)?.items.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read.
    pub fn records(&self, from: u64, limit: usize) -> Result<Listing> {
        let read = || self.list(None, from, limit, |_| (None, 0));
        self.again_while_damaged(read, |l| l.stopped_at.is_some())
    }

    /// Up to `limit` records from `from` on (the waiting ones with `state`); `about`
    /// gives a record's put time and attempts.
    fn list(
        &self,
        state: Option<&State>,
        from: u64,
        limit: usize,
        about: impl Fn(u64) -> (Option<u64>, u32),
    ) -> Result<Listing> {
        let mut items = Vec::new();
        if limit == 0 {
            let stopped_at = None;
            return Ok(Listing { items, stopped_at });
        }
        let walked = self.each_record(state, from, |seq, payload| {
            let (put_at_ms, attempts) = about(seq);
            let payload = payload.to_vec();
            items.push(RawItem {
                seq,
                payload,
                put_at_ms,
                attempts,
            });
            items.len() < limit
        })?;
        let stopped_at = walked.stopped_at;
        Ok(Listing { items, stopped_at })
    }

    /// Reads every file and checks every checksum, chain and journal entry, with the
    /// scan that `repair` uses; reports each problem with file and offset. A problem is
    /// reported only when a second read finds it again, alike: on a queue another process
    /// writes, a read that overlapped a change of the files can show damage that is not
    /// there. A record or journal entry being written at the end of its file is not
    /// damage.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&7)?;
    /// drop(q);
    /// let v = diskq::Inspector::open(dir.path())?.verify()?;
    /// assert!(v.healthy() && v.records == 1);
    /// // A flipped byte in the record:
    /// let chunk = dir.path().join("q00000");
    /// let mut bytes = std::fs::read(&chunk)?;
    /// bytes[36] ^= 1; // in the payload of the record at offset 28
    /// std::fs::write(&chunk, bytes)?;
    /// let v = diskq::Inspector::open(dir.path())?.verify()?;
    /// assert_eq!((v.damage.len(), v.damage[0].offset), (1, 28));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read; [`Error::Busy`] when the files changed
    /// under every one of many reads, so that no two agreed (not damage: try again).
    pub fn verify(&self) -> Result<Verification> {
        let mut earlier = Vec::new();
        for n in 0..VERIFY_READS {
            let v = self.verify_once()?;
            if v.healthy() {
                return Ok(v);
            }
            // What a read made of a change seen half-way (zeros reserved after the data
            // beside bytes appended after them, a journal emptied by a checkpoint) is
            // somewhere else in any other read, as the owner's end has moved; real
            // damage stays where it is.
            let seen_twice = v.clone().seen_also_in(&earlier);
            if !seen_twice.healthy() {
                return Ok(seen_twice);
            }
            earlier.push(v);
            std::thread::sleep(Duration::from_millis(10 << n.min(3)));
        }
        Err(Error::Busy {
            path: self.dir.clone(),
            reads: VERIFY_READS,
        })
    }

    fn verify_once(&self) -> Result<Verification> {
        let live = owner_pid(&self.dir).is_some();
        let mut state = self.state(live)?;
        let chunks = self.chunks()?;
        let mut records = 0;
        let mut prev_end: Option<(u64, u64)> = None;
        // The chunks read, which the set is judged by: a listed chunk the owner deleted
        // meanwhile was acknowledged, and the owner deletes the oldest first, so a chunk
        // missing above one that was still there to be read is a hole, and one missing
        // below all of them was deleted (a listing under heavy churn leaves many gaps).
        let mut read = Vec::with_capacity(chunks.len());
        for (idx, &no) in chunks.iter().enumerate() {
            let Some(bytes) = self.chunk_bytes(no)? else {
                continue; // deleted by the owner: every item in it was acknowledged
            };
            read.push(no);
            let scan = scan_chunk(&bytes, no);
            records += scan.frames.len() as u64;
            let newest = idx + 1 == chunks.len();
            for (offset, len, detail) in scan.damage {
                // A record being copied in at the end of the newest chunk.
                if live && newest && offset + len == bytes.len() as u64 {
                    continue;
                }
                state.damaged.push(Damage {
                    name: chunk_name(no),
                    offset,
                    len,
                    detail,
                });
            }
            if let (Some((pno, pend)), Some(h)) = (prev_end, scan.header)
                && pno + 1 == no
                && let Err(b) = crate::inspect::chain::check(pend, h.first_seq)
            {
                state
                    .problems
                    .push(b.between(&chunk_name(pno), &chunk_name(no)));
            }
            prev_end = scan.header.map(|h| (no, h.first_seq + scan.intact as u64));
        }
        chunk_set_problems(&read, state.info.as_ref(), &mut state.problems);
        let damage = state
            .damaged
            .into_iter()
            .map(|d| DamagedRange {
                file: self.dir.join(&d.name),
                offset: d.offset,
                len: d.len,
                detail: d.detail,
            })
            .collect();
        Ok(Verification {
            damage,
            problems: state.problems,
            records,
            live,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bytes and files under `dir`, subdirectories included.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => {
                let (b, f) = disk_usage(&entry.path());
                bytes += b;
                files += f;
            }
            Ok(m) => {
                bytes += m.len();
                files += 1;
            }
            Err(_) => {} // deleted meanwhile
        }
    }
    (bytes, files)
}

/// The process holding the flock on `dir/.lock`, from `/proc/locks`: `Some(pid)`, or
/// `None` when no process holds it (or the OS does not say).
fn owner_pid(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join(crate::engine::LOCK)).ok()?;
    let (ino, d) = (meta.ino(), meta.dev());
    // Linux's encoding of a device number (glibc's `major` and `minor`).
    let dev = (
        ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff),
        (d & 0xff) | ((d >> 12) & !0xff),
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": pid, then major:minor:inode.
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK" || *f == "POSIX")?;
        let pid: u32 = fields.get(at + 3)?.parse().ok()?;
        let mut id = fields.get(at + 4)?.split(':');
        let major = u64::from_str_radix(id.next()?, 16).ok()?;
        let minor = u64::from_str_radix(id.next()?, 16).ok()?;
        let inode: u64 = id.next()?.parse().ok()?;
        (inode == ino && (major, minor) == dev).then_some(pid)
    })
}
