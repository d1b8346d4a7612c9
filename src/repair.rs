//! Salvaging a damaged queue directory: [`repair`]. FORMAT.md §Repair is the specification
//! of the algorithm and of what a crash at each step leaves behind.

use crate::engine::{ACKS, CHUNK_BYTES, INFO, INFO_TMP};
use crate::error::{Error, Result};
use crate::format::{ChunkHeader, Info};
use crate::inspect::dir::{Analysis, analyze, chunk_name, list, read, read_existing, scan_chunk};
use crate::reader::parse_chunk_name;
use crate::recovery;
use crate::storage::{FsStorage, OpenMode, Storage, StorageFile};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Subdirectories `<dir>/damaged-<N>` receive the files a repair moves aside.
const DAMAGED_PREFIX: &str = "damaged-";
/// The rebuilt files are staged in the damaged directory under these names
/// (`new-q00000`, `new-acks`, `new-info`) before they are moved into the queue directory.
const STAGED_PREFIX: &str = "new-";
/// Staged chunk data is written in pieces of this size.
const WRITE_BATCH: usize = 256 * 1024;

/// What [`repair`] found and did.
///
/// `Display` gives a lowercase, human-readable summary, one finding per line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The queue directory.
    pub dir: PathBuf,
    /// True when the queue was rebuilt from the salvaged records (and the old files moved
    /// aside); false when it was found healthy and left exactly as it was.
    pub rebuilt: bool,
    /// True when this call completed a repair that an earlier call had started and not
    /// finished (it crashed or was killed). The findings are then those of the files that
    /// earlier call moved aside.
    pub resumed: bool,
    /// Records the queue holds after the repair: `Queue::open` delivers exactly these, in
    /// their original order.
    pub records_salvaged: u64,
    /// Intact records left out because `info` and the `acks` journal show that they were
    /// already acknowledged: before the acknowledgement head, or one by one
    /// (`Delivery::ack`). For a healthy queue that was left alone: acknowledged records
    /// still in its chunk files, which `open` skips as always.
    pub records_acknowledged: u64,
    /// What was known about acknowledgements.
    pub acknowledgements: AckState,
    /// Byte ranges that hold no valid record or structure, in file order. After a rebuild
    /// `file` names the copy moved aside into [`damaged_dir`](Self::damaged_dir).
    pub damaged: Vec<DamagedRange>,
    /// Other findings, as lowercase sentences: missing files, records missing between
    /// chunks, and the like.
    pub problems: Vec<String>,
    /// The queue files moved out of the queue directory, and where each went.
    pub moved: Vec<MovedFile>,
    /// The directory `<dir>/damaged-<N>` holding the moved files, after a rebuild.
    pub damaged_dir: Option<PathBuf>,
}

impl RepairReport {
    /// True when anything was found damaged, missing or inconsistent.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// let report = diskq::repair(dir.path())?;
    /// assert!(!report.found_damage() && !report.rebuilt);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn found_damage(&self) -> bool {
        !self.damaged.is_empty() || !self.problems.is_empty()
    }
}

/// What [`repair`] knew about which items had been acknowledged.
///
/// Besides the acknowledgement head `acked`, the items acknowledged one by one after it
/// (`Delivery::ack`) are known in `Known` (from `info` and the journal) and in `AtLeast`
/// (from the journal); records known to be among them were dropped too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckState {
    /// `info` was readable: every item before `acked` was acknowledged (`info` and the
    /// journal together). Records known to be among them were dropped.
    Known {
        /// The acknowledgement head.
        acked: u64,
    },
    /// `info` was missing or damaged, but the journal had valid entries: every item before
    /// `acked` was acknowledged, at least. Records known to be among those were dropped;
    /// others that were acknowledged may have been kept and will be delivered again.
    AtLeast {
        /// The largest head found in the journal (0 when only single entries were
        /// readable).
        acked: u64,
    },
    /// Neither `info` nor the journal was readable: every intact record was kept, so
    /// records that were already acknowledged will be delivered again.
    Unknown,
}

impl AckState {
    /// True for [`AckState::Known`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// assert!(diskq::repair(dir.path())?.acknowledgements.is_known());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_known(&self) -> bool {
        matches!(self, AckState::Known { .. })
    }

    /// The acknowledgement head that was used, if any.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// q.get()?;
    /// q.task_done()?;
    /// drop(q);
    /// assert_eq!(diskq::repair(dir.path())?.acknowledgements.acked(), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acked(&self) -> Option<u64> {
        match *self {
            AckState::Known { acked } | AckState::AtLeast { acked } => Some(acked),
            AckState::Unknown => None,
        }
    }
}

/// A byte range of a file that held no valid record or structure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedRange {
    /// The file holding the bytes (after a rebuild, its copy in the damaged directory).
    pub file: PathBuf,
    /// Offset of the first damaged byte.
    pub offset: u64,
    /// Number of damaged bytes.
    pub len: u64,
    /// What was wrong there.
    pub detail: String,
}

/// A file moved out of the queue directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MovedFile {
    /// Where it was.
    pub from: PathBuf,
    /// Where it is now.
    pub to: PathBuf,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        if self.rebuilt {
            write!(
                f,
                "repaired queue {dir}{}: {} record{} salvaged, {} dropped as already acknowledged",
                if self.resumed {
                    " (finishing an interrupted repair)"
                } else {
                    ""
                },
                self.records_salvaged,
                plural(self.records_salvaged),
                self.records_acknowledged,
            )?;
        } else {
            write!(
                f,
                "queue {dir} is healthy: {} record{} waiting, nothing damaged; nothing was changed",
                self.records_salvaged,
                plural(self.records_salvaged),
            )?;
        }
        match self.acknowledgements {
            AckState::Known { acked } => write!(
                f,
                "\nacknowledgement state: known (every item before {acked} acknowledged, and \
                 those acknowledged out of order after it)"
            )?,
            AckState::AtLeast { acked } => write!(
                f,
                "\nacknowledgement state: partly known (info unreadable; the journal shows at \
                 least every item before {acked} acknowledged, and some out of order): some \
                 acknowledged records may have been kept and will be delivered again"
            )?,
            AckState::Unknown => f.write_str(
                "\nacknowledgement state: unknown (no readable info or journal): every intact \
                 record was kept, so acknowledged ones will be delivered again",
            )?,
        }
        for d in &self.damaged {
            write!(
                f,
                "\ndamaged: {} bytes {}..{} ({} byte{}): {}",
                d.file.display(),
                d.offset,
                d.offset + d.len,
                d.len,
                plural(d.len),
                d.detail
            )?;
        }
        for p in &self.problems {
            write!(f, "\nproblem: {p}")?;
        }
        if let Some(to) = &self.damaged_dir {
            write!(f, "\nmoved aside to {}:", to.display())?;
            if self.moved.is_empty() {
                f.write_str(" nothing")?;
            }
            for m in &self.moved {
                let name = m.to.file_name().unwrap_or_default().to_string_lossy();
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Salvages every intact record of a damaged queue directory, in order, and rebuilds a
/// valid queue of them in the same directory. Nothing is deleted: the old files are moved
/// into a new subdirectory `<dir>/damaged-<N>` (`N` the first number not in use).
///
/// * Every chunk file `qNNNNN` is read in number order. Within a chunk, every record whose
///   frame and CRC are valid is kept; at damage, the scan resumes at the next byte offset
///   where a valid frame starts, and the bytes in between are reported as a
///   [`DamagedRange`]. A chunk whose header is damaged is still scanned from offset 28.
/// * `info` and the `acks` journal, where readable, say which items were already
///   acknowledged; a record is dropped when its sequence number is known (its chunk header
///   is valid and no damage precedes it in the chunk) and below the acknowledgement head
///   or among the items acknowledged one by one (`Delivery::ack`). Records whose
///   sequence number is unknown are kept: at least once, never lost. With neither `info`
///   nor a journal entry readable, every intact record is kept and
///   [`RepairReport::acknowledgements`] says so.
/// * The salvaged records are written as a fresh queue: chunk files numbered from
///   `q00000` holding as many records each as the largest old chunk did (a guess at the old
///   `chunk_size`, which is not stored on disk; `open` applies its own setting from the
///   next put on) and, like the writer's, never past 64 MiB but for a chunk's first
///   record; a new `info`, an empty `acks`. `Queue::open` afterwards delivers
///   exactly the salvaged records, in order.
/// * A queue that is healthy (valid `info` and journal, every record and header intact,
///   no chunk or record missing) is left exactly as it is, and the report says so.
///
/// The new files are built inside the damaged directory first and moved in last, so a
/// crash at any point leaves a state that running `repair` again completes; do that before
/// opening the queue. FORMAT.md §Repair lists the steps and what a crash at each leaves.
///
/// Repair reads one chunk file at a time into memory. It cannot check that payloads
/// deserialize as the queue's item type; a record that does not still gives
/// [`Error::Decode`] at `get`.
///
/// ```
/// use diskq::{Queue, repair};
/// # let dir = tempfile::tempdir()?;
/// let q: Queue<String> = Queue::open(dir.path())?;
/// for word in ["alpha", "beta", "gamma"] {
///     q.put(&word.to_string())?;
/// }
/// q.close()?;
///
/// // Damage the payload of "beta": the chunk header is 28 bytes, each record has an
/// // 8-byte frame header, and "alpha" serializes to 13 bytes.
/// let chunk = dir.path().join("q00000");
/// let mut bytes = std::fs::read(&chunk)?;
/// bytes[28 + (8 + 13) + 8 + 9] ^= 0xff;
/// std::fs::write(&chunk, bytes)?;
/// let q: Queue<String> = Queue::open(dir.path())?;
/// assert_eq!(q.get_nowait()?, "alpha");
/// assert!(q.get_nowait().unwrap_err().is_corrupt());
/// drop(q);
///
/// let report = repair(dir.path())?;
/// println!("{report}");
/// assert_eq!(report.records_salvaged, 2);
/// assert_eq!(report.damaged.len(), 1);
/// // The damaged range is all of "beta"'s record: 8 + 12 bytes from offset 28 + 21.
/// assert_eq!((report.damaged[0].offset, report.damaged[0].len), (49, 20));
/// // The damaged bytes are kept, in the copy moved aside.
/// assert!(report.damaged[0].file.starts_with(dir.path().join("damaged-0")));
///
/// let q: Queue<String> = Queue::open(dir.path())?;
/// assert_eq!(q.get()?, "alpha");
/// assert_eq!(q.get()?, "gamma");
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Locked`] when a `Queue` has the directory open; [`Error::Io`] when the
/// directory does not exist, holds no queue files (nothing is changed then), or a file
/// cannot be read, written or renamed. Every read happens before the first change, so an
/// unreadable file stops the repair with nothing changed.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport> {
    repair_on(Arc::new(FsStorage), dir.as_ref())
}

/// [`repair`] on another [`Storage`] (tests, fuzzing).
#[cfg_attr(not(feature = "__testing"), allow(unreachable_pub))]
#[doc(hidden)]
pub fn repair_on(storage: Arc<dyn Storage>, dir: &Path) -> Result<RepairReport> {
    let st = &*storage;
    // Look before taking the lock, which creates `.lock`: a mistyped path is refused
    // without leaving anything behind.
    let names = list(st, dir, "list queue directory")?;
    let looks_like_queue = names
        .iter()
        .any(|n| is_queue_file(n) || parse_damaged_name(n).is_some())
        || matches!(probe(st, &damaged_path(dir, 0)), Probe::Dir(_));
    if !looks_like_queue {
        return Err(nothing_to_repair(dir));
    }
    // From here on through the directory's handle, as an open queue works: a repair
    // never acts on another directory given the path.
    let storage = recovery::anchor(storage, dir)?;
    let st = &*storage;
    let _lock = recovery::lock(st, dir)?;

    let resumed = resume_interrupted(st, dir)?;
    let found = analyze(st, dir)?;
    if found.originals.is_empty() {
        return Err(nothing_to_repair(dir));
    }
    if found.healthy() {
        return Ok(match resumed {
            None => RepairReport {
                dir: dir.to_path_buf(),
                rebuilt: false,
                resumed: false,
                records_salvaged: found.kept,
                records_acknowledged: found.dropped,
                acknowledgements: found.ack,
                damaged: Vec::new(),
                problems: Vec::new(),
                moved: Vec::new(),
                damaged_dir: None,
            },
            Some(d) => {
                // The findings of the interrupted run are those of the files it moved
                // aside; they are read again from there.
                let old = analyze(st, &d)?;
                RepairReport {
                    dir: dir.to_path_buf(),
                    rebuilt: true,
                    resumed: true,
                    records_salvaged: found.kept,
                    records_acknowledged: old.dropped,
                    acknowledgements: old.ack,
                    damaged: old.damaged_ranges(&d, &[]),
                    problems: old.problems,
                    moved: old
                        .originals
                        .iter()
                        .map(|n| MovedFile {
                            from: dir.join(n),
                            to: d.join(n),
                        })
                        .collect(),
                    damaged_dir: Some(d),
                }
            }
        });
    }

    let d = pick_damaged_dir(st, dir)?;
    let built = build(st, dir, &d, &found)?;
    let moved = commit(st, dir, &d, built.tail_chunk)?;
    Ok(RepairReport {
        dir: dir.to_path_buf(),
        rebuilt: true,
        resumed: resumed.is_some(),
        records_salvaged: built.kept,
        records_acknowledged: built.dropped,
        acknowledgements: found.ack,
        damaged: found.damaged_ranges(dir, &moved),
        problems: found.problems,
        moved,
        damaged_dir: Some(d),
    })
}

fn nothing_to_repair(dir: &Path) -> Error {
    Error::io(
        "find queue files in",
        dir,
        io::Error::new(
            io::ErrorKind::NotFound,
            "the directory holds no info, acks or chunk files, so there is nothing to repair; \
             nothing was changed",
        ),
    )
}

/// `info`, `info.tmp`, `acks` and the chunk files: what a repair moves aside.
fn is_queue_file(name: &str) -> bool {
    matches!(name, INFO | INFO_TMP | ACKS) || parse_chunk_name(name).is_some()
}

fn staged(name: &str) -> String {
    format!("{STAGED_PREFIX}{name}")
}

fn damaged_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{DAMAGED_PREFIX}{n}"))
}

fn parse_damaged_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(DAMAGED_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn rename(st: &dyn Storage, from: &Path, to: &Path) -> Result<()> {
    st.rename(from, to)
        .map_err(|e| Error::io("rename", from, e))
}

fn sync_dir(st: &dyn Storage, dir: &Path) -> Result<()> {
    st.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}

enum Probe {
    Missing,
    Dir(Vec<String>),
    /// Exists but cannot be listed (a file, no permission).
    Other,
}

fn probe(st: &dyn Storage, path: &Path) -> Probe {
    match st.list(path) {
        Ok(names) => Probe::Dir(names),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Missing,
        Err(_) => Probe::Other,
    }
}

/// Numbers of the existing `damaged-<N>` directories: those the listing shows, and those
/// found by probing from 0 (a storage whose listing leaves out directories).
fn damaged_dirs(st: &dyn Storage, dir: &Path) -> Result<BTreeSet<u64>> {
    let mut found: BTreeSet<u64> = list(st, dir, "list queue directory")?
        .iter()
        .filter_map(|n| parse_damaged_name(n))
        .collect();
    let mut n = 0;
    while !matches!(probe(st, &damaged_path(dir, n)), Probe::Missing) {
        found.insert(n);
        n += 1;
    }
    Ok(found)
}

/// The first `damaged-<N>` that does not exist (created) or is empty (left by a repair
/// that crashed before it staged anything).
fn pick_damaged_dir(st: &dyn Storage, dir: &Path) -> Result<PathBuf> {
    for n in 0.. {
        let d = damaged_path(dir, n);
        match probe(st, &d) {
            Probe::Missing => {
                st.create_dir_all(&d)
                    .map_err(|e| Error::io("create directory", &d, e))?;
                sync_dir(st, dir)?;
                return Ok(d);
            }
            Probe::Dir(names) if names.is_empty() => return Ok(d),
            _ => {}
        }
    }
    unreachable!("u64 range exhausted")
}

/// Finishes a repair that an earlier call left unfinished, and deletes the staged files of
/// one that crashed before its staging was complete (they are copies; the originals had
/// not been touched). Returns the damaged directory of a finished repair.
fn resume_interrupted(st: &dyn Storage, dir: &Path) -> Result<Option<PathBuf>> {
    let mut complete = Vec::new();
    for n in damaged_dirs(st, dir)? {
        let d = damaged_path(dir, n);
        let Probe::Dir(names) = probe(st, &d) else {
            continue;
        };
        let staged_names: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(STAGED_PREFIX))
            .collect();
        if staged_names.is_empty() {
            continue;
        }
        // `new-info` is written last and is the mark of a complete staging.
        let marker = read(st, &d.join(staged(INFO)))?.and_then(|b| Info::decode(&b).ok());
        match marker {
            Some(info) => complete.push((d, info)),
            None => {
                for name in staged_names {
                    let p = d.join(name);
                    st.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
                }
                sync_dir(st, &d)?;
            }
        }
    }
    match complete.len() {
        0 => Ok(None),
        1 => {
            let (d, info) = complete.pop().expect("one");
            commit(st, dir, &d, info.tail_chunk)?;
            Ok(Some(d))
        }
        _ => Err(Error::corrupt(
            complete[1].0.join(staged(INFO)),
            0,
            format!(
                "more than one interrupted repair is staged ({} and {}); diskq never leaves \
                 two, so the directory was changed by hand. Move one of them away",
                complete[0].0.display(),
                complete[1].0.display()
            ),
        )),
    }
}

/// What the staging wrote.
struct Built {
    tail_chunk: u64,
    kept: u64,
    dropped: u64,
}

/// Writes the rebuilt queue into `d` under staged names: chunk files, an empty journal,
/// and `new-info` last, each synced, so that a valid `new-info` means a complete staging.
fn build(st: &dyn Storage, dir: &Path, d: &Path, found: &Analysis) -> Result<Built> {
    let mut out = Staging::new(st, d, found.largest_chunk.max(1))?;
    let (mut kept, mut dropped) = (0, 0);
    for &no in &found.chunks {
        let bytes = read_existing(st, &dir.join(chunk_name(no)))?;
        let scan = scan_chunk(&bytes, no);
        for (i, r) in scan.frames.iter().enumerate() {
            if scan.acknowledged(i, &found.acknowledged) {
                dropped += 1;
            } else {
                out.push(&bytes[r.clone()])?;
                kept += 1;
            }
        }
    }
    let tail_chunk = out.finish()?;

    let acks = d.join(staged(ACKS));
    let mut f = st
        .open(&acks, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &acks, e))?;
    f.sync_data().map_err(|e| Error::io("sync", &acks, e))?;
    drop(f);
    sync_dir(st, d)?;

    let info = d.join(staged(INFO));
    let mut f = st
        .open(&info, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &info, e))?;
    // Acked 0 and no singles: the records acknowledged (before the head or one by one)
    // were dropped above, and the rebuilt queue numbers its items from 0.
    // Every staged file is synced: the boot and `all_synced` let the first `open` after
    // a restart skip the check of unsynced records (FORMAT.md §open, step 3a).
    let new_info = Info {
        boot_id: Some(st.boot_id()),
        all_synced: true,
        ..Info::new(0, tail_chunk)
    };
    f.append(&new_info.encode())
        .map_err(|e| Error::io("write", &info, e))?;
    f.sync_data().map_err(|e| Error::io("sync", &info, e))?;
    drop(f);
    sync_dir(st, d)?;
    Ok(Built {
        tail_chunk,
        kept,
        dropped,
    })
}

/// The staged chunk files being written: numbered from 0, sequence numbers from 0.
struct Staging<'a> {
    st: &'a dyn Storage,
    d: &'a Path,
    chunk_size: u64,
    no: u64,
    /// Sequence number of the next record.
    seq: u64,
    /// Records in the current chunk.
    count: u64,
    /// Bytes of the current chunk already appended (`buf` holds the rest).
    written: u64,
    path: PathBuf,
    file: Box<dyn StorageFile>,
    buf: Vec<u8>,
}

impl<'a> Staging<'a> {
    fn new(st: &'a dyn Storage, d: &'a Path, chunk_size: u64) -> Result<Staging<'a>> {
        let (path, file, buf) = Self::create(st, d, 0, 0)?;
        Ok(Staging {
            st,
            d,
            chunk_size,
            no: 0,
            seq: 0,
            count: 0,
            written: 0,
            path,
            file,
            buf,
        })
    }

    fn create(
        st: &dyn Storage,
        d: &Path,
        no: u64,
        first_seq: u64,
    ) -> Result<(PathBuf, Box<dyn StorageFile>, Vec<u8>)> {
        let path = d.join(staged(&chunk_name(no))); // canonical once renamed
        let file = st
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create", &path, e))?;
        let header = ChunkHeader {
            chunk: no,
            first_seq,
        }
        .encode();
        Ok((path, file, header.to_vec()))
    }

    fn push(&mut self, frame: &[u8]) -> Result<()> {
        // The writer's limits (FORMAT.md §Chunks): the old count, and never past 64 MiB
        // but for a chunk's first record.
        let bytes = self.written + self.buf.len() as u64;
        let too_big = self.count > 0 && bytes + frame.len() as u64 > CHUNK_BYTES;
        if self.count >= self.chunk_size || too_big {
            self.close()?;
            self.no += 1;
            (self.path, self.file, self.buf) = Self::create(self.st, self.d, self.no, self.seq)?;
            self.count = 0;
            self.written = 0;
        }
        self.buf.extend_from_slice(frame);
        self.count += 1;
        self.seq += 1;
        if self.buf.len() >= WRITE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file
                .append(&self.buf)
                .map_err(|e| Error::io("write", &self.path, e))?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    /// Closes the last chunk; returns its number.
    fn finish(mut self) -> Result<u64> {
        self.close()?;
        Ok(self.no)
    }
}

/// Swaps the staged queue in: the old `info`, `info.tmp` and `acks` out and the new `acks`
/// in; the old chunk files out; the new chunk files in; the new `info` in last. Each step
/// is skipped when the staged files show it done, so this also finishes an interrupted
/// call. Returns the files it moved aside.
fn commit(st: &dyn Storage, dir: &Path, d: &Path, tail_chunk: u64) -> Result<Vec<MovedFile>> {
    let in_d: BTreeSet<String> = list(st, d, "list directory")?.into_iter().collect();
    let mut c = Commit {
        st,
        dir,
        d,
        taken: in_d.clone(),
        present: list(st, dir, "list queue directory")?.into_iter().collect(),
        moved: Vec::new(),
    };

    // 1. While `new-acks` is staged, no `acks`, `info` or `info.tmp` in the directory is new.
    if in_d.contains(&staged(ACKS)) {
        for name in [INFO, INFO_TMP, ACKS] {
            if c.present.contains(name) {
                c.move_aside(name)?;
            }
        }
        c.sync()?;
        c.move_in(ACKS)?;
    }

    // 2. While every new chunk is staged, every chunk file in the directory is old.
    let new_chunks: Vec<String> = (0..=tail_chunk).map(chunk_name).collect();
    if new_chunks.iter().all(|n| in_d.contains(&staged(n))) {
        let mut old: Vec<u64> = c
            .present
            .iter()
            .filter_map(|n| parse_chunk_name(n))
            .collect();
        old.sort_unstable();
        for no in old {
            c.move_aside(&chunk_name(no))?;
        }
        c.sync()?;
    }

    // 3. The new chunks in.
    for n in &new_chunks {
        if in_d.contains(&staged(n)) {
            c.move_in(n)?;
        }
    }

    // 4. The new info in: from here on the directory is the rebuilt queue.
    c.move_in(INFO)?;
    Ok(c.moved)
}

/// The renames of [`commit`], never over an existing file.
struct Commit<'a> {
    st: &'a dyn Storage,
    dir: &'a Path,
    d: &'a Path,
    /// Names in `d`.
    taken: BTreeSet<String>,
    /// Names in `dir`.
    present: BTreeSet<String>,
    moved: Vec<MovedFile>,
}

impl Commit<'_> {
    /// Moves `dir/name` into `d`, under a name not taken there (`name`, else `name.1`,
    /// ...).
    fn move_aside(&mut self, name: &str) -> Result<()> {
        let mut target = name.to_string();
        let mut i = 0;
        while self.taken.contains(&target) {
            i += 1;
            target = format!("{name}.{i}");
        }
        let from = self.dir.join(name);
        let to = self.d.join(&target);
        rename(self.st, &from, &to)?;
        self.present.remove(name);
        self.taken.insert(target);
        self.moved.push(MovedFile { from, to });
        Ok(())
    }

    /// Moves the staged `d/new-<name>` to `dir/name`, durably. A file already there (a
    /// name that a power loss kept in both directories, or one put there by hand) is
    /// moved aside first, durably, so that no rename replaces a file.
    fn move_in(&mut self, name: &str) -> Result<()> {
        if self.present.contains(name) {
            self.move_aside(name)?;
            self.sync()?;
        }
        let from = self.d.join(staged(name));
        rename(self.st, &from, &self.dir.join(name))?;
        self.taken.remove(&staged(name));
        self.present.insert(name.to_string());
        // The new name first: a power loss between the two syncs may leave the file under
        // both names (handled above), never under none.
        sync_dir(self.st, self.dir)?;
        sync_dir(self.st, self.d)
    }

    /// Makes the moves aside so far durable: the new names (in `d`) first, so that a
    /// power loss between the two syncs may leave a file under both names, never none.
    fn sync(&self) -> Result<()> {
        sync_dir(self.st, self.d)?;
        sync_dir(self.st, self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::seal_frame;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 8];
        f.extend_from_slice(payload);
        seal_frame(&mut f);
        f
    }

    #[test]
    fn scan_resynchronizes_after_damage() {
        let mut b = ChunkHeader {
            chunk: 3,
            first_seq: 10,
        }
        .encode()
        .to_vec();
        b.extend(frame(b"one"));
        let bad = b.len();
        b.extend(frame(b"two"));
        b[bad + 9] ^= 1;
        b.extend(frame(b"three"));
        b.extend(b"\xff\xff");
        let s = scan_chunk(&b, 3);
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.intact, 1);
        assert_eq!((s.seq(0), s.seq(1)), (Some(10), None));
        assert_eq!(s.damage.len(), 2);
        assert_eq!((s.damage[0].0, s.damage[0].1), (bad as u64, 11));
        assert_eq!(s.damage[1].1, 2);
        assert_eq!(s.end_seq(), None);
        // Wrong chunk number: header not trusted.
        let s = scan_chunk(&b, 4);
        assert!(s.header.is_none());
        assert_eq!(s.seq(0), None);
    }

    #[test]
    fn damaged_dir_names() {
        assert_eq!(parse_damaged_name("damaged-0"), Some(0));
        assert_eq!(parse_damaged_name("damaged-12"), Some(12));
        assert_eq!(parse_damaged_name("damaged-"), None);
        assert_eq!(parse_damaged_name("damaged-x"), None);
        assert!(is_queue_file("q00001") && is_queue_file("info.tmp"));
        assert!(!is_queue_file(".lock") && !is_queue_file("new-info"));
    }
}
