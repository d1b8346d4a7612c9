//! The read-only scan of a whole queue directory: what `info`, the journal and every
//! chunk file hold, where they are damaged, and which records are acknowledged.
//! `repair` plans its rebuild from it (FORMAT.md §Repair, step 3), and the coming
//! `verify` command reports it; nothing here changes a file. The journal and the chunk
//! chain are read and checked by the same code as `open`'s (`journal.rs`, `chain.rs`).

use super::journal::{Acknowledged, JournalScan};
use super::{chain, journal};
use crate::engine::{ACKS, INFO, INFO_TMP};
use crate::error::{Error, Result};
use crate::format::{
    ACK_ENTRY_LEN, CHUNK_HEADER_LEN, ChunkHeader, FrameCrc, INFO_HEADER_LEN, Info, InfoRead,
    all_zero, find_frame,
};
use crate::reader::{describe, parse_chunk_name};
use crate::repair::{AckState, DamagedRange, MovedFile};
use crate::storage::{OpenMode, Storage, open_if_exists};
use std::io;
use std::ops::Range;
use std::path::Path;

pub(crate) fn chunk_name(no: u64) -> String {
    format!("q{no:05}")
}

pub(crate) fn list(st: &dyn Storage, dir: &Path, op: &'static str) -> Result<Vec<String>> {
    st.list(dir).map_err(|e| Error::io(op, dir, e))
}

pub(crate) fn read(st: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    st.read_all(path).map_err(|e| Error::io("read", path, e))
}

pub(crate) fn read_existing(st: &dyn Storage, path: &Path) -> Result<Vec<u8>> {
    read(st, path)?.ok_or_else(|| {
        Error::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::NotFound, "the file vanished during repair"),
        )
    })
}

/// Damage found in a file of the directory analyzed.
#[derive(Debug)]
pub(crate) struct Damage {
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) detail: String,
}

/// What the files of a queue directory hold. Only reads.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub(crate) info: Option<Info>,
    pub(crate) ack: AckState,
    /// The items `ack` and the single acknowledgements show acknowledged.
    pub(crate) acknowledged: Acknowledged,
    /// Chunk numbers present, ascending.
    pub(crate) chunks: Vec<u64>,
    /// Records to keep and records dropped as acknowledged.
    pub(crate) kept: u64,
    pub(crate) dropped: u64,
    /// The most valid records found in one chunk file.
    pub(crate) largest_chunk: u64,
    pub(crate) damaged: Vec<Damage>,
    pub(crate) problems: Vec<String>,
    /// Queue files present, in the order they are listed in reports.
    pub(crate) originals: Vec<String>,
}

impl Analysis {
    /// `open` would accept the directory as it is and deliver every record.
    pub(crate) fn healthy(&self) -> bool {
        self.info.is_some() && self.damaged.is_empty() && self.problems.is_empty()
    }

    /// The damage as reported: each file under the name it has now.
    pub(crate) fn damaged_ranges(&self, dir: &Path, moved: &[MovedFile]) -> Vec<DamagedRange> {
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
pub(crate) struct ChunkScan {
    /// A valid header naming this chunk.
    pub(crate) header: Option<ChunkHeader>,
    /// Every valid frame, in file order.
    pub(crate) frames: Vec<Range<usize>>,
    /// How many leading frames come before any damage in the record area: their sequence
    /// numbers are `first_seq + index`.
    pub(crate) intact: usize,
    /// (offset, length, detail) of each damaged range, the header included.
    pub(crate) damage: Vec<(u64, u64, String)>,
}

impl ChunkScan {
    pub(crate) fn seq(&self, i: usize) -> Option<u64> {
        let h = self.header?;
        (i < self.intact).then_some(h.first_seq + i as u64)
    }

    /// The sequence number following the chunk's last record, when it is known.
    pub(crate) fn end_seq(&self) -> Option<u64> {
        (self.intact == self.frames.len() && self.damage.is_empty())
            .then(|| self.header.map(|h| h.first_seq + self.frames.len() as u64))
            .flatten()
    }

    /// Whether the record at `i` is known to be acknowledged: its sequence number is known
    /// and below the head or among the singles.
    pub(crate) fn acknowledged(&self, i: usize, acks: &Acknowledged) -> bool {
        self.seq(i).is_some_and(|s| acks.contains(s))
    }
}

pub(crate) fn scan_chunk(bytes: &[u8], no: u64) -> ChunkScan {
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
            Ok(h) if h.first_seq >= crate::format::MAX_SEQ => {
                damage.push((
                    0,
                    CHUNK_HEADER_LEN as u64,
                    format!(
                        "the header gives an impossible first sequence number {}; the sequence numbers of its records are unknown",
                        h.first_seq
                    ),
                ));
                None
            }
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

pub(crate) fn analyze(st: &dyn Storage, dir: &Path) -> Result<Analysis> {
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
pub(crate) fn read_info(
    st: &dyn Storage,
    dir: &Path,
    damaged: &mut Vec<Damage>,
    problems: &mut Vec<String>,
) -> Result<Option<Info>> {
    let bytes = read(st, &dir.join(INFO))?;
    Ok(info_of(bytes.as_deref(), damaged, problems))
}

/// [`read_info`] of `info`'s bytes, read before (`None`: there is no `info`).
pub(crate) fn info_of(
    bytes: Option<&[u8]>,
    damaged: &mut Vec<Damage>,
    problems: &mut Vec<String>,
) -> Option<Info> {
    match bytes {
        None => {
            problems.push("info is missing".to_string());
            None
        }
        Some([]) => {
            problems.push("info is empty".to_string());
            None
        }
        Some(b) => match Info::read(b) {
            Ok(InfoRead::Whole(info)) => Some(info),
            Ok(InfoRead::HeaderOnly(info, e)) => {
                let len = b.len().saturating_sub(INFO_HEADER_LEN) as u64;
                if info.unsynced {
                    // A power loss may explain it (whether one did, `open` knows by the
                    // boot): the header alone is kept, as `open` keeps it.
                    problems.push(format!(
                        "info: its lists after the header ({len} bytes, written unsynced) \
                         are torn or damaged: {e}"
                    ));
                    Some(info)
                } else {
                    damaged.push(Damage {
                        name: INFO.to_string(),
                        offset: INFO_HEADER_LEN as u64,
                        len,
                        detail: format!("bad info lists: {e}"),
                    });
                    None
                }
            }
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
    }
}

/// The valid entries of the `acks` journal, wherever they are (FORMAT.md §Repair, step 3).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The largest head entry.
    pub(crate) head: Option<u64>,
    /// Every single entry.
    pub(crate) singles: Vec<u64>,
}

/// Reads every valid entry of the journal; the invalid ones are recorded as damaged
/// ranges (an entry whose CRC holds but whose value no queue writes among them).
pub(crate) fn read_journal(
    st: &dyn Storage,
    dir: &Path,
    damaged: &mut Vec<Damage>,
) -> Result<Journal> {
    let path = dir.join(ACKS);
    let file =
        open_if_exists(st, &path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
    let scan = journal::scan(file.as_deref(), &path)?;
    Ok(journal_of(scan, damaged))
}

/// The entries `scan` found; its invalid ranges recorded as damaged.
pub(crate) fn journal_of(scan: JournalScan, damaged: &mut Vec<Damage>) -> Journal {
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
    Journal {
        head: scan.head,
        singles: scan.singles,
    }
}

/// What `info` and the journal tell of acknowledgements. Every valid entry is evidence:
/// entries are absolute (a head entry never overstates the head) and an item once
/// acknowledged stays so, so a single entry counts even when `info` is unreadable.
pub(crate) fn acknowledgements(info: Option<&Info>, journal: Journal) -> (AckState, Acknowledged) {
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
pub(crate) fn chunk_set_problems(chunks: &[u64], info: Option<&Info>, problems: &mut Vec<String>) {
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
pub(crate) struct Counts {
    pub(crate) kept: u64,
    pub(crate) dropped: u64,
    pub(crate) largest_chunk: u64,
}

/// Scans every chunk file: records its damage, and the records missing between chunks
/// or before the oldest; counts the records kept and dropped as acknowledged.
pub(crate) fn scan_chunks(
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
