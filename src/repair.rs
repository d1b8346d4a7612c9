//! Salvaging a damaged queue directory: [`repair`]. FORMAT.md §Repair is the specification
//! of the algorithm and of what a crash at each step leaves behind.

use crate::engine::{ACKS, CHUNK_BYTES, INFO, INFO_TMP, LOCK};
use crate::error::{Error, Result};
use crate::format::{
    ACK_ENTRY_LEN, CHUNK_HEADER_LEN, ChunkHeader, FrameCrc, Info, all_zero, find_frame,
};
use crate::inspect::{chain, journal};
use crate::reader::{describe, parse_chunk_name};
use crate::storage::{FsStorage, OpenMode, Storage, StorageFile};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::ops::Range;
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
    pub fn is_known(&self) -> bool {
        matches!(self, AckState::Known { .. })
    }

    /// The acknowledgement head that was used, if any.
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
    let lock_path = dir.join(LOCK);
    let _lock = st
        .try_lock(&lock_path)
        .map_err(|e| Error::io("lock", &lock_path, e))?
        .ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })?;

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

fn chunk_name(no: u64) -> String {
    format!("q{no:05}")
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

fn list(st: &dyn Storage, dir: &Path, op: &'static str) -> Result<Vec<String>> {
    st.list(dir).map_err(|e| Error::io(op, dir, e))
}

fn read(st: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    st.read_all(path).map_err(|e| Error::io("read", path, e))
}

fn read_existing(st: &dyn Storage, path: &Path) -> Result<Vec<u8>> {
    read(st, path)?.ok_or_else(|| {
        Error::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::NotFound, "the file vanished during repair"),
        )
    })
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

/// Damage found in a file of the directory analyzed.
#[derive(Debug)]
struct Damage {
    name: String,
    offset: u64,
    len: u64,
    detail: String,
}

/// What the files of a queue directory hold. Only reads.
#[derive(Debug)]
struct Analysis {
    info: Option<Info>,
    ack: AckState,
    /// The items `ack` and the single acknowledgements show acknowledged.
    acknowledged: Acknowledged,
    /// Chunk numbers present, ascending.
    chunks: Vec<u64>,
    /// Records to keep and records dropped as acknowledged.
    kept: u64,
    dropped: u64,
    /// The most valid records found in one chunk file.
    largest_chunk: u64,
    damaged: Vec<Damage>,
    problems: Vec<String>,
    /// Queue files present, in the order they are listed in reports.
    originals: Vec<String>,
}

impl Analysis {
    /// `open` would accept the directory as it is and deliver every record.
    fn healthy(&self) -> bool {
        self.info.is_some() && self.damaged.is_empty() && self.problems.is_empty()
    }

    /// The damage as reported: each file under the name it has now.
    fn damaged_ranges(&self, dir: &Path, moved: &[MovedFile]) -> Vec<DamagedRange> {
        self.damaged
            .iter()
            .map(|d| {
                let from = dir.join(&d.name);
                let file = moved
                    .iter()
                    .find(|m| m.from == from)
                    .map_or(from, |m| m.to.clone());
                DamagedRange {
                    file,
                    offset: d.offset,
                    len: d.len,
                    detail: d.detail.clone(),
                }
            })
            .collect()
    }
}

/// The records of one chunk file.
#[derive(Debug)]
struct ChunkScan {
    /// A valid header naming this chunk.
    header: Option<ChunkHeader>,
    /// Every valid frame, in file order.
    frames: Vec<Range<usize>>,
    /// How many leading frames come before any damage in the record area: their sequence
    /// numbers are `first_seq + index`.
    intact: usize,
    /// (offset, length, detail) of each damaged range, the header included.
    damage: Vec<(u64, u64, String)>,
}

impl ChunkScan {
    fn seq(&self, i: usize) -> Option<u64> {
        let h = self.header?;
        (i < self.intact).then_some(h.first_seq + i as u64)
    }

    /// The sequence number following the chunk's last record, when it is known.
    fn end_seq(&self) -> Option<u64> {
        (self.intact == self.frames.len() && self.damage.is_empty())
            .then(|| self.header.map(|h| h.first_seq + self.frames.len() as u64))
            .flatten()
    }

    /// Whether the record at `i` is known to be acknowledged: its sequence number is known
    /// and below the head or among the singles.
    fn acknowledged(&self, i: usize, acks: &Acknowledged) -> bool {
        self.seq(i).is_some_and(|s| acks.contains(s))
    }
}

fn scan_chunk(bytes: &[u8], no: u64) -> ChunkScan {
    let mut damage = Vec::new();
    let header = if bytes.len() < CHUNK_HEADER_LEN {
        if !bytes.is_empty() {
            damage.push((
                0,
                bytes.len() as u64,
                format!(
                    "the chunk header is cut short ({} of its {CHUNK_HEADER_LEN} bytes)",
                    bytes.len()
                ),
            ));
        }
        None
    } else {
        match ChunkHeader::decode(&bytes[..CHUNK_HEADER_LEN]) {
            Ok(h) if h.chunk == no => Some(h),
            Ok(h) => {
                damage.push((
                    0,
                    CHUNK_HEADER_LEN as u64,
                    format!(
                        "the header names chunk {} (file renamed?); the sequence numbers of its records are unknown",
                        h.chunk
                    ),
                ));
                None
            }
            Err(e) => {
                damage.push((
                    0,
                    CHUNK_HEADER_LEN as u64,
                    format!(
                        "bad chunk header: {e}; the sequence numbers of its records are unknown"
                    ),
                ));
                None
            }
        }
    };
    let mut frames = Vec::new();
    let mut intact = 0;
    let mut clean = true;
    let mut off = CHUNK_HEADER_LEN;
    let mut crc = FrameCrc::new();
    while off < bytes.len() {
        if all_zero(&bytes[off..]) {
            break; // space reserved after the last record: the end (FORMAT.md §Preallocation)
        }
        match crc.decode(&bytes[off..]) {
            Ok((_, len)) => {
                frames.push(off..off + len);
                if clean {
                    intact += 1;
                }
                off += len;
            }
            Err(e) => {
                clean = false;
                let next = find_frame(bytes, off + 1);
                let end = next.unwrap_or(bytes.len());
                let detail = match next {
                    Some(p) => format!(
                        "{}; the next valid record starts at offset {p}",
                        describe(e)
                    ),
                    None => format!("{}; no valid record follows", describe(e)),
                };
                damage.push((off as u64, (end - off) as u64, detail));
                off = end;
            }
        }
    }
    ChunkScan {
        header,
        frames,
        intact,
        damage,
    }
}

fn analyze(st: &dyn Storage, dir: &Path) -> Result<Analysis> {
    let names = list(st, dir, "list queue directory")?;
    let mut chunks: Vec<u64> = names.iter().filter_map(|n| parse_chunk_name(n)).collect();
    chunks.sort_unstable();
    let mut originals: Vec<String> = [INFO, INFO_TMP, ACKS]
        .into_iter()
        .filter(|n| names.iter().any(|m| m == n))
        .map(str::to_string)
        .collect();
    originals.extend(chunks.iter().map(|&no| chunk_name(no)));

    let mut damaged = Vec::new();
    let mut problems = Vec::new();
    let info = read_info(st, dir, &mut damaged, &mut problems)?;
    let journal = read_journal(st, dir, &mut damaged)?;
    let (ack, acknowledged) = acknowledgements(info.as_ref(), journal);
    chunk_set_problems(&chunks, info.as_ref(), &mut problems);
    let counts = scan_chunks(
        st,
        dir,
        &chunks,
        ack,
        &acknowledged,
        &mut damaged,
        &mut problems,
    )?;

    Ok(Analysis {
        info,
        ack,
        acknowledged,
        chunks,
        kept: counts.kept,
        dropped: counts.dropped,
        largest_chunk: counts.largest_chunk,
        damaged,
        problems,
        originals,
    })
}

/// `info`, when it is valid; a missing, empty or invalid one is recorded.
fn read_info(
    st: &dyn Storage,
    dir: &Path,
    damaged: &mut Vec<Damage>,
    problems: &mut Vec<String>,
) -> Result<Option<Info>> {
    Ok(match read(st, &dir.join(INFO))? {
        None => {
            problems.push("info is missing".to_string());
            None
        }
        Some(b) if b.is_empty() => {
            problems.push("info is empty".to_string());
            None
        }
        Some(b) => match Info::decode(&b) {
            Ok(info) => Some(info),
            Err(e) => {
                damaged.push(Damage {
                    name: INFO.to_string(),
                    offset: 0,
                    len: b.len() as u64,
                    detail: format!("bad info: {e}"),
                });
                None
            }
        },
    })
}

/// The valid entries of the `acks` journal, wherever they are (FORMAT.md §Repair, step 3).
#[derive(Debug, Default)]
struct Journal {
    /// The largest head entry.
    head: Option<u64>,
    /// Every single entry.
    singles: Vec<u64>,
}

/// Reads every valid entry of the journal; the invalid ones are recorded as damaged
/// ranges (an entry whose CRC holds but whose value no queue writes among them).
fn read_journal(st: &dyn Storage, dir: &Path, damaged: &mut Vec<Damage>) -> Result<Journal> {
    let path = dir.join(ACKS);
    let file = match st.open(&path, OpenMode::Read) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let scan = journal::scan(file.as_deref(), &path)?;
    for r in &scan.damaged {
        let cut = r.end == scan.len && r.end - r.start < ACK_ENTRY_LEN as u64;
        damaged.push(Damage {
            name: ACKS.to_string(),
            offset: r.start,
            len: r.end - r.start,
            detail: if cut {
                "a cut acknowledgement entry".to_string()
            } else {
                "damaged acknowledgement entries".to_string()
            },
        });
    }
    Ok(Journal {
        head: scan.head,
        singles: scan.singles,
    })
}

/// The items known to be acknowledged: every item before `head`, and `singles` after it.
/// Empty when neither `info` nor the journal is readable.
#[derive(Debug, Default)]
struct Acknowledged {
    head: u64,
    singles: BTreeSet<u64>,
}

impl Acknowledged {
    /// The head absorbs the singles it reaches, as at `open` (FORMAT.md §State).
    fn new(mut head: u64, singles: impl IntoIterator<Item = u64>) -> Acknowledged {
        let mut singles: BTreeSet<u64> = singles.into_iter().filter(|&s| s >= head).collect();
        while head < u64::MAX && singles.remove(&head) {
            head += 1;
        }
        Acknowledged { head, singles }
    }

    fn contains(&self, seq: u64) -> bool {
        seq < self.head || self.singles.contains(&seq)
    }
}

/// What `info` and the journal tell of acknowledgements. Every valid entry is evidence:
/// entries are absolute (a head entry never overstates the head) and an item once
/// acknowledged stays so, so a single entry counts even when `info` is unreadable.
fn acknowledgements(info: Option<&Info>, journal: Journal) -> (AckState, Acknowledged) {
    match info {
        Some(info) => {
            let head = info.acked.max(journal.head.unwrap_or(0));
            let singles = info.singles.iter().copied().chain(journal.singles);
            let known = Acknowledged::new(head, singles);
            (AckState::Known { acked: known.head }, known)
        }
        None if journal.head.is_some() || !journal.singles.is_empty() => {
            let known = Acknowledged::new(journal.head.unwrap_or(0), journal.singles);
            (AckState::AtLeast { acked: known.head }, known)
        }
        None => (AckState::Unknown, Acknowledged::default()),
    }
}

/// Records chunk files missing between the oldest and the newest, or after the newest one
/// `info` names, and chunk files older than the oldest one it names.
fn chunk_set_problems(chunks: &[u64], info: Option<&Info>, problems: &mut Vec<String>) {
    match (chunks.last(), info) {
        (None, _) => problems.push("the directory holds no chunk files".to_string()),
        (Some(&newest), Some(info)) if newest < info.tail_chunk => problems.push(format!(
            "chunk files after {} are missing: info records {} as the newest",
            chunk_name(newest),
            chunk_name(info.tail_chunk)
        )),
        _ => {}
    }
    if let (Some(&oldest), Some(head)) = (chunks.first(), info.and_then(|i| i.head_chunk))
        && oldest < head
    {
        // open would not look at the chunks before `head`.
        problems.push(format!(
            "chunk file {} is older than {}, which info records as the oldest",
            chunk_name(oldest),
            chunk_name(head)
        ));
    }
    for pair in chunks.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b == a + 2 {
            problems.push(format!("chunk file {} is missing", chunk_name(a + 1)));
        } else if b > a + 2 {
            problems.push(format!(
                "chunk files {} to {} are missing",
                chunk_name(a + 1),
                chunk_name(b - 1)
            ));
        }
    }
}

/// The records of the chunk files, counted.
struct Counts {
    kept: u64,
    dropped: u64,
    largest_chunk: u64,
}

/// Scans every chunk file: records its damage, and the records missing between chunks
/// or before the oldest; counts the records kept and dropped as acknowledged.
fn scan_chunks(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    ack: AckState,
    acknowledged: &Acknowledged,
    damaged: &mut Vec<Damage>,
    problems: &mut Vec<String>,
) -> Result<Counts> {
    let mut counts = Counts {
        kept: 0,
        dropped: 0,
        largest_chunk: 0,
    };
    let mut prev: Option<(u64, Option<u64>)> = None;
    for (idx, &no) in chunks.iter().enumerate() {
        let name = chunk_name(no);
        let bytes = read_existing(st, &dir.join(&name))?;
        let scan = scan_chunk(&bytes, no);
        if bytes.is_empty() {
            problems.push(format!("{name} is empty (its creation was interrupted)"));
        }
        for (offset, len, detail) in &scan.damage {
            damaged.push(Damage {
                name: name.clone(),
                offset: *offset,
                len: *len,
                detail: detail.clone(),
            });
        }
        counts.largest_chunk = counts.largest_chunk.max(scan.frames.len() as u64);
        for i in 0..scan.frames.len() {
            if scan.acknowledged(i, acknowledged) {
                counts.dropped += 1;
            } else {
                counts.kept += 1;
            }
        }
        if let (Some((pno, Some(pend))), Some(h)) = (prev, scan.header)
            && pno + 1 == no
            && let Err(b) = chain::check(pend, h.first_seq)
        {
            problems.push(b.between(&chunk_name(pno), &name));
        }
        if idx == 0
            && let (AckState::Known { acked }, Some(h)) = (ack, scan.header)
            && h.first_seq > acked
        {
            problems.push(format!(
                "items {acked} to {} are missing: they were never acknowledged, but the oldest \
                 chunk file {name} starts at item {}",
                h.first_seq - 1,
                h.first_seq
            ));
        }
        prev = Some((no, scan.end_seq()));
    }
    Ok(counts)
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
