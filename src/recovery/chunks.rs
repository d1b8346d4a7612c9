//! FORMAT.md §open, steps 5 and 7: finding the chunk files, and the checks that chain
//! them (each starts where the one before it ends).

use super::{Error, Result};
use crate::engine::INFO_TMP;
use crate::format::MAX_SEQ;
use crate::inspect::chain::{self, Break};
use crate::reader::{ChunkReader, Next, chunk_path, parse_chunk_name};
use crate::storage::{OpenMode, Storage, StorageFile, open_if_exists, remove_if_exists};
use std::collections::VecDeque;
use std::path::Path;

/// Names of the entries of the queue directory.
pub(super) fn list(st: &dyn Storage, dir: &Path) -> Result<Vec<String>> {
    st.list(dir)
        .map_err(|e| Error::io("list queue directory", dir, e))
}

/// How many missing chunk files `find_chunks` passes below the oldest before it lists
/// the directory instead (FORMAT.md §open, step 5).
const MAX_PROBES: u64 = 64;
/// A queue whose `info` spans this many chunks or more is listed.
const MAX_PROBED_CHUNKS: u64 = 1 << 16;

/// Chunk files found by `find_chunks`.
pub(super) struct Found {
    /// Their numbers, oldest to newest.
    pub(super) chunks: Vec<u64>,
    /// The oldest, open, if it is not the newest.
    pub(super) oldest: OldestFile,
    /// The newest, open for appending.
    pub(super) newest: Box<dyn StorageFile>,
}

/// The chunk files, found without listing the directory (which costs ext4 more than
/// the rest of opening a queue; FORMAT.md §open, step 5): the newest is `info`'s
/// `tail_chunk` or the last of the files that follow it without a gap, and the oldest
/// the first file that exists from its `head_chunk`, a lower bound of the oldest, on.
/// The numbers in between are taken to exist: a missing one is reported when its header
/// is read (at open for the two oldest and the two newest, else by the reader).
///
/// `None`: list instead. That is when the newest found is missing, or the number after
/// the one after it exists: chunks can be deleted, acknowledged, before a checkpoint
/// records the chunks started after them, and a real gap is for the listing to report.
/// Also when `info` spans too many chunks, or too many are missing below the oldest.
pub(super) fn find_chunks(
    st: &dyn Storage,
    dir: &Path,
    head: u64,
    tail: u64,
) -> Result<Option<Found>> {
    let open = |no: u64, mode: OpenMode| -> Result<Option<Box<dyn StorageFile>>> {
        let path = chunk_path(dir, no);
        open_if_exists(st, &path, mode).map_err(|e| Error::io("open", &path, e))
    };
    let exists = |no: u64| Ok::<bool, Error>(open(no, OpenMode::Read)?.is_some());
    // (No chunk number reaches `MAX_SEQ`: a chunk holds at least one item. Listing
    // reports such an info.)
    if tail - head >= MAX_PROBED_CHUNKS || tail >= MAX_SEQ {
        return Ok(None);
    }
    let mut newest = tail;
    // Chunks started after the last checkpoint (a crash before it recorded them).
    while exists(newest + 1)? {
        newest += 1;
        if newest - head >= MAX_PROBED_CHUNKS {
            return Ok(None);
        }
    }
    if exists(newest + 2)? {
        return Ok(None);
    }
    let Some(newest_file) = open(newest, OpenMode::Append)? else {
        return Ok(None);
    };
    // Chunks deleted since the checkpoint, once acknowledged, are missing below.
    let mut oldest = head;
    let mut oldest_file = None;
    while oldest < newest {
        if oldest - head >= MAX_PROBES {
            return Ok(None);
        }
        if let Some(f) = open(oldest, OpenMode::Read)? {
            oldest_file = Some((oldest, f));
            break;
        }
        oldest += 1;
    }
    Ok(Some(Found {
        chunks: (oldest..=newest).collect(),
        oldest: oldest_file,
        newest: newest_file,
    }))
}

/// The oldest chunk file, when `find_chunks` opened it on the way.
pub(super) type OldestFile = Option<(u64, Box<dyn StorageFile>)>;

/// The chunk numbers of a listing (made now if `names` is `None`), sorted. A leftover
/// `info.tmp` of an interrupted checkpoint is deleted (the old `info` is intact); it is
/// not looked for without a listing: the next checkpoint replaces it.
pub(super) fn listed(st: &dyn Storage, dir: &Path, names: Option<Vec<String>>) -> Result<Vec<u64>> {
    let names = match names {
        Some(names) => names,
        None => list(st, dir)?,
    };
    if names.iter().any(|n| n == INFO_TMP) {
        // (A new queue's info was written through it since the listing: NotFound.)
        let tmp = dir.join(INFO_TMP);
        remove_if_exists(st, &tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let mut chunks: Vec<u64> = names.iter().filter_map(|n| parse_chunk_name(n)).collect();
    chunks.sort_unstable();
    Ok(chunks)
}

/// The chunk numbers are consecutive and reach `info`'s newest chunk.
pub(super) fn check_numbers(dir: &Path, chunks: &[u64], tail_chunk: u64) -> Result<()> {
    for pair in chunks.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::corrupt(
                chunk_path(dir, pair[0] + 1),
                0,
                format!(
                    "the chunk file is missing between q{:05} and q{:05}",
                    pair[0], pair[1]
                ),
            ));
        }
    }
    let newest = chunks.last().copied().unwrap_or(0);
    if newest < tail_chunk {
        return Err(Error::corrupt(
            chunk_path(dir, tail_chunk),
            0,
            format!(
                "the chunk file is missing: info records it, but the newest chunk file is q{newest:05}"
            ),
        ));
    }
    Ok(())
}

/// Counts the intact records from the reader's offset, stopping at the first that is not.
pub(super) fn count_intact(r: &mut ChunkReader) -> Result<u64> {
    let mut records = 0u64;
    while let Next::Frame { len, .. } = r.next()? {
        r.advance(len);
        records += 1;
    }
    Ok(records)
}

/// Counts the records from the reader's offset to the end; damage is an error.
pub(super) fn count_records(r: &mut ChunkReader) -> Result<u64> {
    let mut records = 0u64;
    loop {
        match r.next()? {
            Next::Frame { len, .. } => {
                r.advance(len);
                records += 1;
            }
            Next::End => return Ok(records),
            Next::Damaged { detail } => {
                return Err(Error::corrupt(&r.path, r.offset(), detail));
            }
        }
    }
}

/// A chunk's `records` from item `first` end where the next chunk starts (`next`), or,
/// unless `exact`, before it: a chain of chunks never overlaps nor, when exact, leaves a
/// gap. A header cannot vouch for another file's records.
pub(super) fn ends_before(
    r: &ChunkReader,
    first: u64,
    records: u64,
    next: u64,
    exact: bool,
) -> Result<()> {
    match chain::check(first + records, next) {
        Err(b @ Break::Overlap { .. }) => Err(Error::corrupt(&r.path, r.offset(), b.to_string())),
        Err(b @ Break::Missing { .. }) if exact => {
            Err(Error::corrupt(&r.path, r.offset(), b.to_string()))
        }
        _ => Ok(()),
    }
}

/// Makes the acknowledgements recovery read durable, once, before the first chunk file
/// it deletes: the journal's entries (synced) and `info`'s rename (the directory).
pub(super) struct Durable(pub(super) bool);

impl Durable {
    pub(super) fn ensure(
        &mut self,
        st: &dyn Storage,
        dir: &Path,
        journal: Option<&mut (dyn StorageFile + 'static)>,
        journal_path: &Path,
    ) -> Result<()> {
        if self.0 {
            return Ok(());
        }
        if let Some(j) = journal {
            j.sync_data()
                .map_err(|e| Error::io("sync", journal_path, e))?;
        }
        st.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
        self.0 = true;
        Ok(())
    }
}

/// The `first_seq` of chunk headers, read when first asked for.
pub(super) struct Firsts<'a> {
    st: &'a dyn Storage,
    dir: &'a Path,
    /// By position in the chunk list; the newest is known from the tail's recovery.
    pub(super) known: VecDeque<Option<u64>>,
}

impl<'a> Firsts<'a> {
    pub(super) fn new(
        st: &'a dyn Storage,
        dir: &'a Path,
        chunks: usize,
        newest: u64,
    ) -> Firsts<'a> {
        let mut known: VecDeque<Option<u64>> = std::iter::repeat_n(None, chunks).collect();
        *known.back_mut().expect("at least one chunk") = Some(newest);
        Firsts { st, dir, known }
    }

    /// The first item of `chunks[i]`.
    pub(super) fn get(&mut self, chunks: &[u64], i: usize) -> Result<u64> {
        if let Some(first) = self.known[i] {
            return Ok(first);
        }
        let first = ChunkReader::open(self.st, self.dir, chunks[i])?
            .header
            .first_seq;
        self.known[i] = Some(first);
        Ok(first)
    }

    /// `chunks[i + 1]` must start after `chunks[i]`.
    pub(super) fn check_chain(&mut self, chunks: &[u64], i: usize) -> Result<()> {
        let (a, b) = (self.get(chunks, i)?, self.get(chunks, i + 1)?);
        if b <= a {
            return Err(Error::corrupt(
                chunk_path(self.dir, chunks[i + 1]),
                16,
                format!(
                    "the chunk claims to start at item {b}, but the chunk before it starts at item {a}"
                ),
            ));
        }
        Ok(())
    }

    /// Records a header read elsewhere.
    pub(super) fn known(&mut self, i: usize, first: u64) {
        self.known[i] = Some(first);
    }

    pub(super) fn remove_oldest(&mut self) {
        self.known.pop_front();
    }
}
