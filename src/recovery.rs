//! What opening a queue does: lock, read `info` and the journal, scan and repair the torn
//! tail, drop consumed chunks, and place the reader at the oldest unacknowledged item.
//! FORMAT.md §Recovery is the specification.

use crate::engine::{
    ACKS, ChunkLimit, ChunkMeta, Engine, INFO, INFO_TMP, Journal, LOCK, Writer, create_chunk,
    write_info,
};
use crate::error::{Error, Result};
use crate::format::{ACK_ENTRY_LEN, AckEntry, CHUNK_HEADER_LEN, FRAME_HEADER_LEN, Info, MAX_SEQ};
use crate::options::{Durability, Options};
use crate::reader::{ChunkReader, Next, chunk_path, parse_chunk_name};
use crate::restart::{self, Recovery};
use crate::storage::{OpenMode, Storage, StorageFile, read_full_at};
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

/// Holds the directory lock for as long as it lives.
pub(crate) type LockGuard = Box<dyn Any + Send + Sync>;

pub(crate) fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    opts: &Options,
) -> Result<(Engine, LockGuard)> {
    let st = &*storage;
    let sync = opts.durability == Durability::Synced;
    let lock_path = dir.join(LOCK);
    // The directory is created when the lock file cannot be: an existing queue (the usual
    // case) costs no `mkdir` and `stat`.
    let lock = match st.try_lock(&lock_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            st.create_dir_all(dir)
                .map_err(|e| Error::io("create queue directory", dir, e))?;
            st.try_lock(&lock_path)
        }
        locked => locked,
    };
    let lock = lock
        .map_err(|e| Error::io("lock", &lock_path, e))?
        .ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })?;

    let info_path = dir.join(INFO);
    // The directory is listed only when `info` does not say where the chunks are.
    let mut listed: Option<Vec<String>> = None;
    let boot = st.boot_id();
    let mut recovered = Recovery::default();
    let (info, info_len) = match st
        .read_all(&info_path)
        .map_err(|e| Error::io("read", &info_path, e))?
    {
        Some(b) => {
            let info =
                Info::decode(&b).map_err(|e| Error::corrupt(&info_path, 0, e.to_string()))?;
            if info.acked >= MAX_SEQ {
                return Err(Error::corrupt(
                    &info_path,
                    16,
                    format!("impossible acknowledged count {}", info.acked),
                ));
            }
            if let Some(head) = info.head_chunk
                && head > info.tail_chunk
            {
                return Err(Error::corrupt(
                    &info_path,
                    52,
                    format!(
                        "the oldest chunk, q{head:05}, is after the newest, q{:05}",
                        info.tail_chunk
                    ),
                ));
            }
            if restart::restarted(&info, boot) {
                let names = list(st, dir)?;
                let (info, report) = restart::recover(st, dir, &info, boot, &names)?;
                recovered = report;
                let len = info.encode().len() as u64;
                (info, len)
            } else {
                (info, b.len() as u64)
            }
        }
        None => {
            let names = list(st, dir)?;
            if names
                .iter()
                .any(|n| n == ACKS || parse_chunk_name(n).is_some())
            {
                return Err(Error::MissingInfo {
                    path: dir.to_path_buf(),
                });
            }
            // A new queue. info first: a crash before the chunk exists leaves a state
            // that the `chunks.is_empty()` case below completes. Its tail mark is that
            // of the empty chunk created next.
            let info = Info {
                tail_end: CHUNK_HEADER_LEN as u64,
                boot_id: Some(boot),
                all_synced: true,
                ..Info::new(0, 0)
            };
            write_info(st, dir, &info, sync)?;
            listed = Some(names);
            (info, 0)
        }
    };

    let journal_path = dir.join(ACKS);
    // Opened once, to be read now and appended to later.
    let jfile = match st.open(&journal_path, OpenMode::Append) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("open", &journal_path, e)),
    };
    let mut jfile = jfile;
    let journal = read_journal(jfile.as_deref(), &journal_path)?;
    let journal_valid_len = journal.valid_len;
    let mut acked = info.acked.max(journal.head.unwrap_or(0));
    if let Some(i) = info.singles.iter().position(|&s| s >= MAX_SEQ) {
        // The singles end just before the CRC, in every version.
        let at = info_len - 4 - 8 * (info.singles.len() - i) as u64;
        return Err(Error::corrupt(
            &info_path,
            at,
            format!("impossible acknowledged item {}", info.singles[i]),
        ));
    }
    // Items acknowledged one by one: those the head has reached are absorbed into it.
    let mut singles: BTreeSet<u64> = info.singles.iter().copied().collect();
    singles.extend(journal.singles);
    singles.retain(|&s| s >= acked);
    while singles.remove(&acked) {
        acked += 1;
    }

    // The chunk files: found from info's head and tail chunks, or listed. Without a
    // journal (created right after the first chunk), the queue's creation may have
    // been interrupted, which the listing below tells apart from a lost chunk.
    let journal_exists = jfile.is_some();
    let probed = match (info.head_chunk, &listed) {
        (Some(head), None) if journal_exists => find_chunks(st, dir, head, info.tail_chunk)?,
        _ => None,
    };
    let (mut chunks, mut oldest_file, newest_file) = match probed {
        Some(found) => (found.chunks, found.oldest, Some(found.newest)),
        None => {
            let names = match listed {
                Some(names) => names,
                None => list(st, dir)?,
            };
            if names.iter().any(|n| n == INFO_TMP) {
                // A leftover of an interrupted checkpoint; the old info is intact. Not
                // looked for without a listing: the next checkpoint replaces it. (A new
                // queue's info was written through it since the listing: NotFound.)
                let tmp = dir.join(INFO_TMP);
                match st.remove(&tmp) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("remove", &tmp, e));
                    }
                    _ => {}
                }
            }
            let mut chunks: Vec<u64> = names.iter().filter_map(|n| parse_chunk_name(n)).collect();
            chunks.sort_unstable();
            (chunks, None, None)
        }
    };

    if chunks.is_empty() {
        // Only a creation interrupted between writing info and creating q00000 leaves no
        // chunk file; the journal is created after q00000, so its presence means a chunk
        // file was lost.
        if acked != 0 || info.tail_chunk != 0 || journal_exists {
            return Err(Error::corrupt(
                chunk_path(dir, info.tail_chunk),
                0,
                "the chunk file is missing: the directory holds no chunk files, but info records this one",
            ));
        }
        create_chunk(st, dir, 0, 0, sync)?;
        chunks.push(0);
    }
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
    let newest = *chunks.last().expect("not empty");
    if newest < info.tail_chunk {
        return Err(Error::corrupt(
            chunk_path(dir, info.tail_chunk),
            0,
            format!(
                "the chunk file is missing: info records it, but the newest chunk file is q{newest:05}"
            ),
        ));
    }

    // Where the newest chunk's records stood at the last checkpoint, if it recorded that.
    let mark = (info.tail_end != 0).then_some(TailMark {
        chunk: info.tail_chunk,
        end: info.tail_end,
        count: info.tail_count,
        last_len: info.tail_last_len,
    });
    let (writer, tail_first) = recover_tail(st, dir, &mut chunks, newest_file, acked, sync, mark)?;
    let tail = writer.first_seq + writer.count;

    // Headers are read where open acts on them: the two newest chunks (the tail) and the
    // oldest ones (deleted below once acknowledged), so that opening costs the same
    // whatever the number of chunks. Each pair read must form a chain: each chunk starts
    // after the one before it (a chunk that is not the newest is never empty). A header
    // that breaks it could otherwise hide records or get a chunk with unacknowledged
    // records deleted. The chunks in between the reader checks as it reaches them: each
    // must start exactly where the one before it ended.
    let mut firsts = Firsts::new(st, dir, chunks.len(), tail_first);
    if chunks.len() >= 2 {
        let i = chunks.len() - 2;
        firsts.check_chain(&chunks, i)?;
    }

    // The chunk before an empty newest chunk must end where the newest begins. The reader
    // checks this for every other chunk on leaving it, but it never leaves this one while
    // the newest is empty. (Damage in it is left for the reader to report.)
    if chunks.len() >= 2 && tail == tail_first {
        let i = chunks.len() - 2;
        let first = firsts.get(&chunks, i)?;
        let mut r = ChunkReader::open(st, dir, chunks[i])?;
        let mut records = 0u64;
        while let Next::Frame { len, .. } = r.next()? {
            r.advance(len);
            records += 1;
        }
        if first + records > tail_first {
            return Err(Error::corrupt(
                &r.path,
                r.offset(),
                format!(
                    "the chunk holds items {} to {} but the next chunk starts at item {tail_first}",
                    first,
                    first + records
                ),
            ));
        }
    }

    // Drop chunks whose every item is acknowledged (a crash came between the journal
    // entry and the unlink), then check the oldest chunk still holds the head. A chunk is
    // deleted only when its own records end where the next chunk starts.
    // The oldest chunk, found open by `find_chunks` (unless the tail's recovery deleted
    // chunks down to it: then a new file may have its number).
    // What justifies a deletion, `info` and the journal as read, may not be durable
    // (a crash below `Synced`, or entries of a write cut by a power loss): made so first.
    let mut durable = Durable(false);
    let mut head = match oldest_file.take() {
        Some((no, f)) if chunks.len() >= 2 && chunks[0] == no => {
            ChunkReader::on(f, chunk_path(dir, no), no)?
        }
        _ => ChunkReader::open(st, dir, chunks[0])?,
    };
    while chunks.len() >= 2 && acked >= firsts.get(&chunks, 1)? {
        let mut records = 0u64;
        loop {
            match head.next()? {
                Next::Frame { len, .. } => {
                    head.advance(len);
                    records += 1;
                }
                Next::End => break,
                Next::Damaged { detail } => {
                    return Err(Error::corrupt(&head.path, head.offset(), detail));
                }
            }
        }
        let (first, next) = (head.header.first_seq, firsts.get(&chunks, 1)?);
        if first + records != next {
            return Err(Error::corrupt(
                &head.path,
                head.offset(),
                format!(
                    "the chunk holds items {} to {} but the next chunk starts at item {}",
                    first,
                    first + records,
                    next
                ),
            ));
        }
        durable.ensure(st, dir, jfile.as_deref_mut(), &journal_path)?;
        let p = chunk_path(dir, chunks[0]);
        st.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
        chunks.remove(0);
        firsts.remove_oldest();
        head = ChunkReader::open(st, dir, chunks[0])?;
    }
    if chunks.len() >= 2 {
        firsts.known(0, head.header.first_seq);
        firsts.check_chain(&chunks, 0)?;
    }
    if head.header.first_seq > acked {
        return Err(Error::corrupt(
            &head.path,
            0,
            format!(
                "the oldest chunk starts at item {} but items from {acked} on were never acknowledged: chunk files were removed",
                head.header.first_seq
            ),
        ));
    }

    let mut engine_writer = writer;
    if chunks.len() == 1 && acked > tail {
        // Acknowledgements reached disk but some of the items they cover did not (power
        // loss below the synced level). Those items are acknowledged and gone; start a new
        // chunk at the acknowledged position so sequence numbers stay unique.
        let old = chunks[0];
        durable.ensure(st, dir, jfile.as_deref_mut(), &journal_path)?;
        // The new chunk is durable before the old one goes (`create_chunk` syncs only at
        // `Synced`): a power loss must not leave neither.
        engine_writer = create_chunk(st, dir, old + 1, acked, true)?;
        let p = chunk_path(dir, old);
        st.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
        chunks = vec![old + 1];
        head = ChunkReader::open(st, dir, chunks[0])?;
    }

    // Single acknowledgements of items that are not there (lost with a power loss below
    // the synced level) mean nothing.
    let tail = engine_writer.first_seq + engine_writer.count;
    singles.retain(|&s| s < tail);

    // Skip the acknowledged items of the head chunk, checking each record on the way.
    for _ in head.header.first_seq..acked {
        match head.next()? {
            Next::Frame { len, .. } => head.advance(len),
            Next::Damaged { detail } => {
                return Err(Error::corrupt(&head.path, head.offset(), detail));
            }
            Next::End => {
                return Err(Error::corrupt(
                    &head.path,
                    head.offset(),
                    format!(
                        "the chunk ends before item {acked}, which info and the journal place in it"
                    ),
                ));
            }
        }
    }

    let mut meta: VecDeque<ChunkMeta> = chunks
        .iter()
        .map(|&no| ChunkMeta {
            no,
            first_seq: None,
        })
        .collect();
    // Headers read above (chained, so consistent) need not be read again: the reader
    // and `delete_acked_chunks` ask for where the second oldest chunk starts.
    for (m, first) in meta.iter_mut().zip(&firsts.known) {
        m.first_seq = *first;
    }
    meta[0].first_seq = Some(head.header.first_seq);
    meta.back_mut().expect("not empty").first_seq = Some(engine_writer.first_seq);

    let mut jfile = match jfile {
        Some(f) => f,
        None => {
            let f = st
                .open(&journal_path, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", &journal_path, e))?;
            // At every level: entries synced into a file whose name is not durable
            // would vanish with it at a power loss (below `Synced`, the journal is
            // synced before a chunk deletion relies on it).
            st.sync_dir(dir)
                .map_err(|e| Error::io("sync directory", dir, e))?;
            f
        }
    };
    let jlen = jfile
        .size()
        .map_err(|e| Error::io("stat", &journal_path, e))?;
    if jlen != journal_valid_len {
        jfile
            .set_len(journal_valid_len)
            .map_err(|e| Error::io("truncate", &journal_path, e))?;
        if opts.durability == Durability::Synced {
            // Durable before new entries go over the cut bytes.
            jfile
                .sync_data()
                .map_err(|e| Error::io("sync", &journal_path, e))?;
        }
    }

    let mut engine = Engine {
        storage: storage.clone(),
        dir: Arc::from(dir),
        chunk_limit: ChunkLimit {
            records: opts.chunk_size.max(1) as u64,
            bytes: opts.chunk_bytes,
        },
        durability: opts.durability,
        journal_limit: opts.journal_limit,
        chunks: meta,
        writer_chunk: engine_writer.chunk,
        writer_end: engine_writer.written,
        written: engine_writer.first_seq + engine_writer.count,
        writer: Some(engine_writer),
        reader: head,
        journal: Some(Journal {
            path: journal_path,
            file: jfile,
            len: journal_valid_len,
            // Known only once synced: a new journal, and the checkpoint below, are.
            all_synced: journal_valid_len == 0 && sync,
        }),
        pending: Vec::new(),
        pending_count: 0,
        writing: 0,
        pending_callers: 0,
        returning: 0,
        last_sync: std::time::Duration::ZERO,
        spare: Vec::new(),
        acked,
        skip_ahead: singles.len() as u64,
        singles,
        singles_unwritten: Vec::new(),
        ack_gen: 0,
        ack_gen_written: 0,
        acked_written: acked,
        // Set by the checkpoint below, or to what `info` holds.
        acked_durable: 0,
        acked_in_info: 0,
        journal_synced: false,
        read: acked,
        poison_flag: Arc::default(),
        checkpoint_wanted: false,
        info_on_disk: None,
        boot_id: boot,
        // Same boot: as `info` says. After a restart `recover` synced everything.
        opened_synced: info.all_synced,
        recovered,
    };
    // A mark that does not describe the chunk as recovered (records appended after it,
    // a chunk cut below it, a mark ignored) is replaced before anything is appended: a
    // stale one could otherwise come to match other records later.
    let w = engine.writer.as_ref().expect("writer is home");
    let mark_matches = info.tail_chunk == w.chunk
        && (info.tail_end, info.tail_count, info.tail_last_len) == (w.written, w.count, w.last_len);
    if journal_valid_len > 0 || info.acked != acked || !mark_matches {
        engine.checkpoint()?;
    } else {
        // `info` holds the whole state; it is made durable before a deletion relies on it.
        engine.acked_in_info = info.acked;
        engine.info_on_disk = Some(info);
    }
    Ok((engine, lock))
}

/// Makes the acknowledgements recovery read durable, once, before the first chunk file
/// it deletes: the journal's entries (synced) and `info`'s rename (the directory).
struct Durable(bool);

impl Durable {
    fn ensure(
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

/// Names of the entries of the queue directory.
fn list(st: &dyn Storage, dir: &Path) -> Result<Vec<String>> {
    st.list(dir)
        .map_err(|e| Error::io("list queue directory", dir, e))
}

/// How many missing chunk files `find_chunks` passes below the oldest before it lists
/// the directory instead (FORMAT.md §open, step 5).
const MAX_PROBES: u64 = 64;
/// A queue whose `info` spans this many chunks or more is listed.
const MAX_PROBED_CHUNKS: u64 = 1 << 16;

/// Chunk files found by `find_chunks`.
struct Found {
    /// Their numbers, oldest to newest.
    chunks: Vec<u64>,
    /// The oldest, open, if it is not the newest.
    oldest: Option<(u64, Box<dyn StorageFile>)>,
    /// The newest, open for appending.
    newest: Box<dyn StorageFile>,
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
fn find_chunks(st: &dyn Storage, dir: &Path, head: u64, tail: u64) -> Result<Option<Found>> {
    let open = |no: u64, mode: OpenMode| -> Result<Option<Box<dyn StorageFile>>> {
        let path = chunk_path(dir, no);
        match st.open(&path, mode) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", &path, e)),
        }
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

/// Reads the journal: the largest acknowledged count in it and the length of its valid
/// prefix. A damaged entry followed by a valid one is corruption; damage at the end is a
/// torn append and is cut off.
fn read_journal(file: Option<&dyn StorageFile>, path: &Path) -> Result<JournalState> {
    let mut state = JournalState {
        head: None,
        singles: Vec::new(),
        valid_len: 0,
    };
    let Some(file) = file else {
        return Ok(state);
    };
    let len = file.size().map_err(|e| Error::io("stat", path, e))?;
    if len == 0 {
        // The common case after a clean close (a checkpoint empties the journal).
        return Ok(state);
    }
    // Read in blocks of whole entries, so that an `acks` file of any size (damage, or
    // not diskq's) costs a bounded buffer, not an allocation of its size.
    let mut entries = JournalEntries::new(file, path, len);
    while let Some((at, e)) = entries.next()? {
        match AckEntry::decode(e) {
            Some(entry) if entry.seq() >= MAX_SEQ => {
                return Err(Error::corrupt(
                    path,
                    at,
                    format!("impossible acknowledged item {}", entry.seq()),
                ));
            }
            Some(AckEntry::Head(acked)) => state.head = state.head.max(Some(acked)),
            Some(AckEntry::Single(seq)) => state.singles.push(seq),
            None => {
                while let Some((_, later)) = entries.next()? {
                    if later.len() == ACK_ENTRY_LEN && AckEntry::decode(later).is_some() {
                        return Err(Error::corrupt(
                            path,
                            at,
                            "damaged acknowledgement entry followed by valid ones",
                        ));
                    }
                }
                state.valid_len = at;
                return Ok(state);
            }
        }
    }
    state.valid_len = entries.at;
    Ok(state)
}

/// The journal's entries in file order, with their offsets; the last may be short (cut).
pub(crate) struct JournalEntries<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    /// Bytes of `buf` read from the file, and the next entry's index in `buf`.
    filled: usize,
    pos: usize,
    /// File offset after the last entry returned.
    at: u64,
}

impl<'a> JournalEntries<'a> {
    /// `len`: the file's size when opened, which bounds the first block (it may grow:
    /// reading goes on to the end of the file).
    pub(crate) fn new(file: &'a dyn StorageFile, path: &'a Path, len: u64) -> JournalEntries<'a> {
        let block = ACK_ENTRY_LEN * 4096;
        let rounded = len.div_ceil(ACK_ENTRY_LEN as u64) * ACK_ENTRY_LEN as u64;
        JournalEntries {
            file,
            path,
            buf: vec![0; (rounded.max(ACK_ENTRY_LEN as u64) as usize).min(block)],
            buf_at: 0,
            filled: 0,
            pos: 0,
            at: 0,
        }
    }

    pub(crate) fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        if self.pos >= self.filled {
            self.buf_at += self.filled as u64;
            self.filled = read_full_at(self.file, &mut self.buf, self.buf_at)
                .map_err(|e| Error::io("read", self.path, e))?;
            self.pos = 0;
            if self.filled == 0 {
                return Ok(None);
            }
        }
        let start = self.pos;
        self.pos = (start + ACK_ENTRY_LEN).min(self.filled);
        let at = self.buf_at + start as u64;
        self.at = self.buf_at + self.pos as u64;
        Ok(Some((at, &self.buf[start..self.pos])))
    }
}

/// What the journal holds.
struct JournalState {
    /// The largest head entry.
    head: Option<u64>,
    /// Single acknowledgements.
    singles: Vec<u64>,
    /// Length of the valid prefix.
    valid_len: u64,
}

/// Opens the newest chunk for appending: repairs a header torn at creation, keeps every
/// complete record and cuts a torn last record. Returns the writer and the chunk's first
/// sequence number.
/// `info`'s record of the newest chunk at its checkpoint: `count` records end at `end`,
/// the last of them `last_len` bytes long.
#[derive(Debug, Clone, Copy)]
struct TailMark {
    chunk: u64,
    end: u64,
    count: u64,
    last_len: u32,
}

impl TailMark {
    /// Whether the mark can describe chunk `no`, a file of `len` bytes: a frame takes at
    /// least its header, which bounds the count, and the last frame lies within the
    /// records.
    fn believable(&self, no: u64, len: u64) -> bool {
        let header = CHUNK_HEADER_LEN as u64;
        let frame = FRAME_HEADER_LEN as u64;
        let last = u64::from(self.last_len);
        self.chunk == no
            && self.end >= header
            && self.end <= len
            && if self.count == 0 {
                self.end == header && last == 0
            } else {
                last >= frame
                    && last <= self.end - header
                    && self.count <= (self.end - header) / frame
            }
    }
}

/// Reads frames from the reader's offset until the records end or a frame is not valid;
/// returns how many were valid, the length of the last of them (0 if none) and what is
/// wrong with the first invalid one. The reader is left at the end of the last valid
/// frame.
fn scan_frames(r: &mut ChunkReader) -> Result<(u64, u32, Option<String>)> {
    let (mut records, mut last_len) = (0, 0);
    loop {
        match r.next()? {
            Next::Frame { len, .. } => {
                r.advance(len);
                records += 1;
                last_len = len as u32;
            }
            Next::End => return Ok((records, last_len, None)),
            Next::Damaged { detail } => return Ok((records, last_len, Some(detail))),
        }
    }
}

/// Recovers the newest chunk (`newest`: its file, if already open): drops one whose
/// header was never written, cuts a torn last write, and returns the writer placed after
/// its last record, with the chunk's first item.
fn recover_tail(
    st: &dyn Storage,
    dir: &Path,
    chunks: &mut Vec<u64>,
    mut newest: Option<Box<dyn StorageFile>>,
    acked: u64,
    sync: bool,
    mark: Option<TailMark>,
) -> Result<(Writer, u64)> {
    loop {
        let no = *chunks.last().expect("not empty");
        let path = chunk_path(dir, no);
        let file = match newest.take() {
            Some(f) => f,
            None => st
                .open(&path, OpenMode::Append)
                .map_err(|e| Error::io("open", &path, e))?,
        };
        let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
        if len < CHUNK_HEADER_LEN as u64 {
            // Created but its header not (fully) written: it holds no records.
            drop(file);
            st.remove(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            if chunks.len() == 1 {
                let w = create_chunk(st, dir, no, acked, sync)?;
                return Ok((w, acked));
            }
            chunks.pop();
            continue;
        }
        // Read through the writer's handle: one open of the file, not two.
        let mut r = ChunkReader::on(file, path.clone(), no)?;
        r.expect_len(len);
        // From the checkpoint's mark if it is this chunk's, believable, and its bytes are
        // still there, else from the first record. A power loss below the synced level can
        // leave the file shorter than the mark, or keep its size and lose its last blocks
        // (zeros): the mark's last record then is not a valid frame and ends in zeros.
        // Not a valid frame, but not zeros either, is damage, which `get` reports. Damage
        // after the mark is looked at again from the first record, so that a cut is only
        // ever made on a boundary found by reading every frame before it.
        let mut found = None;
        if let Some(m) = mark.filter(|m| m.believable(no, len)) {
            let confirmed = m.count == 0 || {
                r.seek(m.end - u64::from(m.last_len));
                let valid = matches!(
                    r.next()?,
                    Next::Frame { len, .. } if len as u64 == u64::from(m.last_len)
                );
                valid || !r.zeros_before(m.end, FRAME_HEADER_LEN)?
            };
            if confirmed {
                r.seek(m.end);
                let (records, last_len, damage) = scan_frames(&mut r)?;
                if damage.is_none() {
                    let last_len = if records == 0 { m.last_len } else { last_len };
                    found = Some((m.count + records, r.offset(), last_len));
                }
            }
            if found.is_none() {
                r = ChunkReader::on(r.into_file(), path.clone(), no)?;
            }
        }
        let (count, end, last_len) = match found {
            Some(found) => found,
            None => {
                let (records, last_len, damage) = scan_frames(&mut r)?;
                if let Some(detail) = damage
                    && r.valid_frame_follows()?
                {
                    return Err(Error::corrupt(
                        &path,
                        r.offset(),
                        format!(
                            "{detail}, and valid records follow it: this is damage, not an interrupted write"
                        ),
                    ));
                }
                (records, r.offset(), last_len)
            }
        };
        let first_seq = r.header.first_seq;
        let mut file = r.into_file();
        if end < len {
            // A torn last write: cut it so the next append starts on a frame boundary.
            file.set_len(end)
                .map_err(|e| Error::io("truncate", &path, e))?;
            if sync {
                file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
            }
        }
        return Ok((
            Writer {
                chunk: no,
                path,
                file,
                first_seq,
                count,
                written: end,
                last_len,
                // Not known here: the first synced write then proves nothing, its sync
                // does.
                all_synced: false,
            },
            first_seq,
        ));
    }
}

/// The `first_seq` of chunk headers, read when first asked for.
struct Firsts<'a> {
    st: &'a dyn Storage,
    dir: &'a Path,
    /// By position in the chunk list; the newest is known from the tail's recovery.
    known: VecDeque<Option<u64>>,
}

impl<'a> Firsts<'a> {
    fn new(st: &'a dyn Storage, dir: &'a Path, chunks: usize, newest: u64) -> Firsts<'a> {
        let mut known: VecDeque<Option<u64>> = std::iter::repeat_n(None, chunks).collect();
        *known.back_mut().expect("at least one chunk") = Some(newest);
        Firsts { st, dir, known }
    }

    /// The first item of `chunks[i]`.
    fn get(&mut self, chunks: &[u64], i: usize) -> Result<u64> {
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
    fn check_chain(&mut self, chunks: &[u64], i: usize) -> Result<()> {
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
    fn known(&mut self, i: usize, first: u64) {
        self.known[i] = Some(first);
    }

    fn remove_oldest(&mut self) {
        self.known.pop_front();
    }
}
