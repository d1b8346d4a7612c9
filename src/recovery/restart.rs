//! What `open` does first when the machine restarted since the queue's last checkpoint
//! (FORMAT.md §open, step 3a): a power loss or kernel crash may have kept any subset of
//! the pages not yet synced, so the records and acknowledgements written since the last
//! sync point may be cut, torn out of order or zeroed. This step finds the longest run of
//! intact records from that point, cuts everything after it, makes the result durable
//! and records it in a new `info`; the rest of `open` then finds a directory such as a
//! process crash leaves, and is as strict as ever.
//!
//! In the same boot nothing here runs: the page cache survived, every written byte is
//! there, and damage is damage.

use crate::engine::{ACKS, create_chunk, write_info};
use crate::error::{Error, Result};
use crate::format::{CHUNK_HEADER_LEN, Info, decode_frame, find_frame, is_marked};
use crate::inspect::journal::{self, Acknowledged};
use crate::reader::{ChunkReader, Next, chunk_path, parse_chunk_name};
use crate::storage::{
    OpenMode, Storage, StorageFile, open_if_exists, read_full_at, remove_if_exists,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What `open` found and cut after a restart of the machine (a power loss or kernel
/// crash, or a clean reboot: it cannot tell them apart). Read it with
/// [`Queue::recovery`](crate::Queue::recovery).
///
/// Below [`Durability::Synced`](crate::Durability::Synced) the items and
/// acknowledgements written since the last sync may be lost at a power loss; `open` keeps
/// the longest intact run of items and reports here what it dropped. At `Synced` only a
/// write that had not returned can be cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The machine restarted since the queue last wrote its checkpoint, so `open`
    /// checked everything that was not known to be synced.
    pub after_restart: bool,
    /// The first byte that was not an intact record, where the queue was cut: the chunk
    /// file and the offset. `None` when nothing was cut.
    pub cut_at: Option<(PathBuf, u64)>,
    /// Bytes of chunk files dropped at and after the cut (torn or lost records, and what
    /// followed them; not counting zero bytes reserved after the data).
    pub bytes_dropped: u64,
    /// Chunk files deleted because they came after the cut.
    pub chunks_dropped: u64,
    /// Acknowledgement entries that were not intact and were ignored: the items they
    /// acknowledged, if any, are delivered again.
    pub acks_ignored: u64,
    /// Items acknowledged on disk whose records were lost: they are gone, and the queue
    /// goes on after them.
    pub acknowledged_lost: u64,
    /// Items taken as acknowledged because their chunk file was deleted while the
    /// acknowledgement entries that allowed the deletion were lost (below `Synced`,
    /// a deletion is written after its acknowledgement, but not synced after it).
    pub acknowledged_by_deletion: u64,
    /// `info` was empty or zero bytes (a power loss kept its rename, not its data) and
    /// was rebuilt from the chunk files and the journal: acknowledgements only it held
    /// are lost, so those items are delivered again.
    pub info_rebuilt: bool,
    /// `info` was written without a sync (below `Synced`) and a power loss tore the lists
    /// after its header: the single acknowledgements, attempt counts and delays it held
    /// are lost (those items are delivered again, counted from 1, at once).
    pub info_lists_lost: bool,
}

/// True when the machine may have restarted since `info` was written: its boot differs
/// from this one, or either is unknown. An `info` from before format version 4 records
/// no boot; its queue is opened as a process crash left it.
pub(crate) fn restarted(info: &Info, boot: u128) -> bool {
    info.boot_id
        .is_some_and(|was| was == 0 || boot == 0 || was != boot)
}

/// The acknowledgement state, read leniently: every intact entry counts, wherever it is.
struct Acks {
    acked: u64,
    singles: BTreeSet<u64>,
    /// Deliveries, attempts and delays, from `info` and the journal.
    work: crate::format::WorkState,
    ignored: u64,
    len: u64,
}

fn read_acks(st: &dyn Storage, dir: &Path, info: &Info) -> Result<Acks> {
    let path = dir.join(ACKS);
    let file =
        open_if_exists(st, &path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
    let scan = journal::scan(file.as_deref(), &path)?;
    if let Some((at, value)) = scan.impossible {
        // A checksum cannot vouch for a value no queue reaches: damage.
        return Err(Error::corrupt(
            &path,
            at,
            format!("impossible acknowledged item {value}"),
        ));
    }
    if scan.marked_after && info.all_synced {
        // An append that began once everything before it was synced: the damage before
        // it is in synced entries, which no power loss changes. (Only when the last
        // checkpoint synced the journal's truncation: below `Synced` a truncation can be
        // lost, and marked entries of an earlier session reappear after newer ones.)
        return Err(Error::corrupt(
            &path,
            scan.valid_end,
            "damaged acknowledgement entry before entries written after it was synced",
        ));
    }
    // Every intact entry counts, wherever it is: a torn append can keep a later entry
    // and lose an earlier one.
    let (ignored, len) = (scan.damaged_entries(), scan.len);
    let known = Acknowledged::new(
        info.acked.max(scan.head.unwrap_or(0)),
        info.singles.iter().copied().chain(scan.singles),
    );
    Ok(Acks {
        acked: known.head,
        singles: known.singles,
        work: info
            .work
            .merged(scan.delivered, &scan.attempts, &scan.delays),
        ignored,
        len,
    })
}

/// Below `Synced` a fully acknowledged chunk file is deleted once its acknowledgements
/// are written, not synced, so a power loss can keep the deletion and lose them: the
/// oldest chunk then starts after the head read. Its items before were acknowledged (no
/// deletion is written before), so the head moves there. Returns how far it moved.
fn acknowledged_by_deletion(st: &dyn Storage, dir: &Path, oldest: u64, acks: &mut Acks) -> u64 {
    let Ok(r) = ChunkReader::open(st, dir, oldest) else {
        return 0; // a damaged header: the scan cuts there
    };
    let first = r.header.first_seq;
    if first <= acks.acked {
        return 0;
    }
    let moved = first - acks.acked;
    let known = Acknowledged::new(first, std::mem::take(&mut acks.singles));
    (acks.acked, acks.singles) = (known.head, known.singles);
    moved
}

/// Where the scan of the chunk files stopped.
struct Scan {
    /// Index (in the sorted chunk list) of the last chunk kept.
    last: Option<usize>,
    /// Where its intact records end, and the item after them.
    end: u64,
    tail: u64,
    /// The first byte not kept, if the scan stopped short of the end.
    cut: Option<(usize, u64)>,
}

/// Scans the chunks `chunks[from..]`, from the first record of each (or from `mark` in
/// the first), for the longest run of intact records that continue one another.
fn scan(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    from: usize,
    mark: Option<(u64, u64)>,
) -> Result<Scan> {
    let mut s = Scan {
        last: None,
        end: 0,
        tail: 0,
        cut: None,
    };
    for (i, &no) in chunks.iter().enumerate().skip(from) {
        let mut r = match ChunkReader::open(st, dir, no) {
            Ok(r) => r,
            Err(e) if e.is_corrupt() => {
                s.cut = Some((i, 0));
                return Ok(s);
            }
            Err(e) => return Err(e),
        };
        let mut count = 0;
        if i == from
            && let Some((end, n)) = mark
        {
            r.seek(end);
            count = n;
        } else if s.last.is_some() && r.header.first_seq != s.tail {
            // Records of the chunk before were lost at its end, or this header is.
            s.cut = Some((i, 0));
            return Ok(s);
        }
        loop {
            match r.next()? {
                Next::Frame { len, .. } => {
                    r.advance(len);
                    count += 1;
                }
                Next::End => break,
                Next::Damaged { .. } => {
                    s.cut = Some((i, r.offset()));
                    break;
                }
            }
        }
        s.last = Some(i);
        s.end = r.offset();
        s.tail = r.header.first_seq + count;
        if s.cut.is_some() {
            return Ok(s);
        }
    }
    Ok(s)
}

/// Whether a valid frame with the sync mark starts after offset `from` of the chunk file
/// (FORMAT.md §Records). Frames are followed one to the next; after damage, every byte
/// offset is tried.
fn marked_frame_after(st: &dyn Storage, path: &Path, from: u64) -> Result<bool> {
    let f = st
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let len = f.size().map_err(|e| Error::io("stat", path, e))?;
    let mut rest = vec![0u8; len.saturating_sub(from) as usize];
    let n = read_full_at(&*f, &mut rest, from).map_err(|e| Error::io("read", path, e))?;
    rest.truncate(n);
    let mut at = 1;
    while let Some(found) = find_frame(&rest, at) {
        if is_marked(&rest[found..]) {
            return Ok(true);
        }
        at = match decode_frame(&rest[found..]) {
            Ok((_, len)) => found + len,
            Err(_) => found + 1, // not reached: `find_frame` found a valid frame there
        };
    }
    Ok(false)
}

/// An `info` for a directory whose `info` a power loss left empty or zero (its rename
/// persisted, its data did not; no process crash leaves that): what step 3a needs to
/// rebuild it from the chunk files and the journal, as after a restart from nothing
/// synced.
pub(crate) fn lost_info() -> Info {
    Info {
        head_chunk: None,
        boot_id: Some(0),
        all_synced: false,
        ..Info::new(0, 0)
    }
}

/// Runs FORMAT.md §open step 3a. Returns the new `info` it wrote, and the report.
pub(crate) fn recover(
    st: &dyn Storage,
    dir: &Path,
    info: &Info,
    boot: u128,
    names: &[String],
    sync: bool,
) -> Result<(Info, Recovery)> {
    let mut report = Recovery {
        after_restart: true,
        ..Recovery::default()
    };
    let mut acks = read_acks(st, dir, info)?;
    report.acks_ignored = acks.ignored;
    let mut chunks: Vec<u64> = names.iter().filter_map(|n| parse_chunk_name(n)).collect();
    chunks.sort_unstable();
    if chunks.is_empty() || chunks.windows(2).any(|p| p[1] != p[0] + 1) {
        // No crash leaves a gap, nor a queue without chunks once it has a journal: left
        // for the rest of `open` to report, unchanged.
        return Ok((info.clone(), report));
    }
    if !info.all_synced {
        report.acknowledged_by_deletion = acknowledged_by_deletion(st, dir, chunks[0], &mut acks);
    }
    // Everything before the tail mark was synced when `info` says so; else everything
    // is checked.
    let from = chunks.iter().position(|&c| c == info.tail_chunk);
    let (from, mark) = match from {
        Some(i) if info.all_synced && info.tail_end >= CHUNK_HEADER_LEN as u64 => {
            (i, Some((info.tail_end, info.tail_count)))
        }
        _ => (0, None),
    };
    let found = scan(st, dir, &chunks, from, mark)?;
    refuse_synced_damage(st, dir, &chunks, &found, from)?;
    let (kept, tail) = if found.last.is_none() || found.tail < acks.acked {
        // Acknowledgements reached the disk and the items they cover did not (or no
        // record is intact): those are gone. A new chunk at the head keeps sequence
        // numbers unique; the old ones hold nothing unacknowledged.
        report.acknowledged_lost = acks.acked.saturating_sub(found.tail);
        (
            new_head(st, dir, &chunks, &found, acks.acked, &mut report)?,
            acks.acked,
        )
    } else {
        let keep = cut(st, dir, &chunks, &found, &mut report)?;
        (chunks[..keep].to_vec(), found.tail)
    };
    for &no in &kept[from.min(kept.len() - 1)..] {
        sync_file(st, &chunk_path(dir, no))?;
    }
    acks.singles.retain(|&s| s < tail);
    let (acked, singles) = (acks.acked, &acks.singles);
    acks.work
        .retain_live(tail, |s| s < acked || singles.contains(&s));
    let new = Info {
        acked: acks.acked,
        tail_chunk: *kept.last().expect("not empty"),
        // Not recorded: the rest of `open` reads the newest chunk from its first record.
        tail_end: 0,
        tail_count: 0,
        tail_last_len: 0,
        head_chunk: Some(kept[0]),
        boot_id: Some(boot),
        // Everything is synced now; below `Synced` this session's writes will not be, and
        // an `info` that said so could outlive them.
        all_synced: sync,
        singles: acks.singles.into_iter().collect(),
        work: acks.work,
        unsynced: false,
    };
    write_info(st, dir, &new)?;
    if acks.len > 0 {
        empty_journal(st, dir)?;
    }
    Ok((new, report))
}

/// Cuts the chunk files at the scan's end: truncates the last chunk kept after its
/// intact records, deletes every later one (newest first), and makes both durable.
/// Returns how many chunks are kept.
fn cut(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    found: &Scan,
    report: &mut Recovery,
) -> Result<usize> {
    let Some((at, _)) = found.cut else {
        return Ok(chunks.len());
    };
    report_cut(st, dir, chunks, found, report)?;
    let keep = match found.last {
        Some(last) if last == at => {
            let path = chunk_path(dir, chunks[at]);
            let mut f = st
                .open(&path, OpenMode::Append)
                .map_err(|e| Error::io("open", &path, e))?;
            f.set_len(found.end)
                .map_err(|e| Error::io("truncate", &path, e))?;
            f.sync_data().map_err(|e| Error::io("sync", &path, e))?;
            at + 1
        }
        _ => at,
    };
    // Newest first: a crash in between leaves the chunk numbers without a gap.
    remove_chunks(st, dir, chunks[keep..].iter().rev())?;
    Ok(keep)
}

/// Records where the scan stopped and what is dropped after it: the cut chunk's bytes
/// after its intact records and every later chunk.
fn report_cut(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    found: &Scan,
    report: &mut Recovery,
) -> Result<()> {
    let Some((at, offset)) = found.cut else {
        return Ok(());
    };
    report.cut_at = Some((chunk_path(dir, chunks[at]), offset));
    let from_end = found.last == Some(at);
    for (i, &no) in chunks.iter().enumerate().skip(at) {
        let p = chunk_path(dir, no);
        let f = st
            .open(&p, OpenMode::Read)
            .map_err(|e| Error::io("open", &p, e))?;
        let from = if i == at && from_end { found.end } else { 0 };
        report.bytes_dropped += written_after(&*f, &p, from)?;
        if i > at || !from_end {
            report.chunks_dropped += 1;
        }
    }
    Ok(())
}

/// Replaces every chunk file by a new, empty one starting at the head, `acked`. The new
/// chunk (the next number) is durable before any old one is deleted, and they are
/// deleted oldest first: a crash in between leaves chunks numbered without a gap, which
/// the next `open` (still after a restart: `info` is written last) sorts out the same
/// way. Returns the chunks kept: the new one.
fn new_head(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    found: &Scan,
    acked: u64,
    report: &mut Recovery,
) -> Result<Vec<u64>> {
    report_cut(st, dir, chunks, found, report)?;
    let no = chunks.last().expect("not empty") + 1;
    create_chunk(st, dir, no, acked, true)?;
    remove_chunks(st, dir, chunks.iter())?;
    Ok(vec![no])
}

/// Refuses damage in records a power loss cannot have touched: before a frame with the
/// sync mark, or in the header of a chunk `info` says was synced.
fn refuse_synced_damage(
    st: &dyn Storage,
    dir: &Path,
    chunks: &[u64],
    found: &Scan,
    from: usize,
) -> Result<()> {
    if let Some((i, at)) = found.cut
        && marked_frame_after(st, &chunk_path(dir, chunks[i]), at)?
    {
        // A write that began once everything before it was synced.
        return Err(Error::corrupt(
            chunk_path(dir, chunks[i]),
            at,
            "damaged record before records written after it was synced",
        ));
    }
    if found.last.is_none() && from > 0 {
        return Err(Error::corrupt(
            chunk_path(dir, chunks[from]),
            0,
            "bad chunk header in a chunk that was synced",
        ));
    }
    Ok(())
}

/// Deletes chunk files in the order given, then syncs the directory.
fn remove_chunks<'a>(
    st: &dyn Storage,
    dir: &Path,
    chunks: impl Iterator<Item = &'a u64>,
) -> Result<()> {
    for &no in chunks {
        let p = chunk_path(dir, no);
        remove_if_exists(st, &p).map_err(|e| Error::io("remove", &p, e))?;
    }
    st.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Bytes of the file from `from` up to its last nonzero byte: what was written there,
/// without the zero bytes reserved after it (FORMAT.md §Preallocation).
fn written_after(f: &dyn StorageFile, path: &Path, from: u64) -> Result<u64> {
    let len = f.size().map_err(|e| Error::io("stat", path, e))?;
    let mut rest = vec![0u8; len.saturating_sub(from) as usize];
    let n = read_full_at(f, &mut rest, from).map_err(|e| Error::io("read", path, e))?;
    Ok(rest[..n]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1))
}

fn sync_file(st: &dyn Storage, path: &Path) -> Result<()> {
    let mut f = st
        .open(path, OpenMode::Append)
        .map_err(|e| Error::io("open", path, e))?;
    f.sync_data().map_err(|e| Error::io("sync", path, e))
}

/// Empties the journal once `info` holds its state (synced: new entries go over it).
fn empty_journal(st: &dyn Storage, dir: &Path) -> Result<()> {
    let path = dir.join(ACKS);
    let mut f = st
        .open(&path, OpenMode::Append)
        .map_err(|e| Error::io("open", &path, e))?;
    f.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
    f.sync_data().map_err(|e| Error::io("sync", &path, e))
}
