//! The queue's state on disk and in memory, at the level of bytes: the pending frames,
//! the read cursor and its chunks, and the parts kept by concept in modules of their
//! own: the writer (`writer.rs`), acknowledgements (`acks.rs`), deliveries, leases and
//! retries (`retries.rs`, `leases.rs`, `deliver.rs`), checkpoints (`checkpoint.rs`),
//! put times (`marks.rs`), what open makes of recovery's parts (`open.rs`). One `Engine`
//! lives behind the queue's mutex. Appends to the chunk files and the journal are done
//! by a *leader* that borrows the file out of the engine and writes without holding the
//! lock (`commit.rs`); everything else runs under the lock.
//!
//! The engine's fields are private to this module and its children; the rest of the
//! crate reads them through accessors and changes them through methods that keep these
//! true (besides those of `Acks` and `Retries`, written at the top of their modules):
//!
//! - sequence numbers: `acks.head() <= read <= tail() <= accepted()`, where
//!   `accepted() = written + writing + pending_count`: items before `written` are in
//!   chunk files, `writing` are out with a write leader, `pending_count` are in
//!   `pending` (their frames, in order, after the leader's);
//! - `writer` is `None` exactly while a write leader has it out, `journal` while an
//!   acknowledgement leader has it; `writer_chunk` is the back of `chunks` either way
//!   (until a failed write poisons the queue);
//! - the reader is at the record of item `read`, and reads no further in the writer's
//!   chunk than `writer_end`, where the published records end;
//! - `chunks` are the chunk files not yet deleted, oldest first: the front one holds the
//!   oldest unacknowledged item, or only acknowledged ones whose deletion waits (their
//!   acknowledgements not yet journaled, or a removal that failed); a chunk file is
//!   deleted only once every item in it is below the head the journal or `info` holds
//!   (`acks.head_written()`);
//! - an item is in `Acks::out` exactly when it is among `retries`' ready or delayed
//!   items; each item in flight with a lease has a live entry in `retries`' leases,
//!   except while its holder settles it (`Engine::settling`);
//! - once poisoned (a write or sync failed), every call that reads items or changes the
//!   queue fails: memory may not match the disk (`len`, `stats` and the like still
//!   answer);
//! - `queued_bytes` counts the record bytes of the items accepted and not yet gotten,
//!   when `max_bytes` bounds them.

pub(crate) mod checkpoint;
pub(crate) mod commit;
mod deliver;
mod open;

pub(crate) use open::Recovered;

use crate::acks::Acks;
pub(crate) use crate::checkpoint::{write_atomic, write_info};
use crate::error::{Error, Result};
use crate::format::{CHUNK_HEADER_LEN, Info};
use crate::inspect::chain::{self, Break};
use crate::marks::Marks;
pub(crate) use crate::options::CHUNK_BYTES;
use crate::options::Durability;
use crate::reader::{ChunkReader, Next, chunk_path};
use crate::reserve::{RESERVE, Reserve};
use crate::retries::Retries;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::writer::split_frames;
pub(crate) use crate::writer::{Writer, create_chunk, write_frames};
use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Buffered level: pending item bytes are written once they reach this size.
pub(crate) const WRITE_BATCH: usize = 64 * 1024;
/// Buffered level: acknowledgements are journaled once this many are pending.
pub(crate) const ACK_BATCH: u64 = 4096;

pub(crate) const INFO: &str = "info";
/// How often, at most, a queue in use looks for a `paused` file created or removed by
/// another process (`Engine::poll_pause`), in milliseconds; also how long a paused
/// consumer sleeps before it looks again.
pub(crate) const PAUSE_POLL_MS: u64 = 100;
pub(crate) const INFO_TMP: &str = "info.tmp";
pub(crate) const ACKS: &str = "acks";
pub(crate) const LOCK: &str = ".lock";
pub(crate) const SCHEMA: &str = "schema";
pub(crate) const SCHEMA_TMP: &str = "schema.tmp";

/// A writer's chunk this large, every item of which is acknowledged, is left for a new
/// one (and deleted), so that a drained queue keeps no more than this on disk whatever
/// size its chunks reach (`Engine::leave_drained_chunk`).
pub(crate) const DRAINED_CHUNK_BYTES: u64 = 4 << 20;

/// When the writer starts a new chunk: once the current one holds `records` records, or
/// before a record that would take it past `bytes` bytes. A chunk always takes its first
/// record, however large.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkLimit {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// A chunk file between the acknowledgement head and the tail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkMeta {
    pub(crate) no: u64,
    /// Sequence number of its first record, once known (read from its header when the
    /// reader enters it, or set by the writer that created it).
    pub(crate) first_seq: Option<u64>,
}

/// The append-only acknowledgement journal.
#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) len: u64,
    /// Every byte of the journal is synced: the next synced append marks its first entry
    /// (FORMAT.md §acks, sync mark).
    pub(crate) all_synced: bool,
}

#[derive(Debug)]
pub(crate) struct Engine {
    storage: Arc<dyn Storage>,
    dir: Arc<Path>,
    chunk_limit: ChunkLimit,
    durability: Durability,
    journal_limit: u64,
    /// The journal length that wants a checkpoint (`journal_room`).
    journal_room: u64,
    /// Chunk files, oldest first; the front holds the oldest unacknowledged item (or is
    /// the writer's chunk), the back is the writer's chunk.
    chunks: VecDeque<ChunkMeta>,
    /// `None` while a write leader has it out.
    writer: Option<Writer>,
    /// The writer's chunk number, also while it is out.
    writer_chunk: u64,
    /// Where the published records of the writer's chunk end (a byte offset): the reader
    /// reads no further in that chunk, so it never reads the reserved zeros after them
    /// (FORMAT.md §Preallocation), nor a frame being written.
    writer_end: u64,
    reader: ChunkReader,
    /// `None` while an acknowledgement leader has it out.
    journal: Option<Journal>,
    /// Frames accepted and not yet written, in sequence order.
    pending: Vec<u8>,
    pending_count: u64,
    /// Frames a write leader has taken out of `pending` and not yet published: still
    /// accepted, not yet written.
    writing: u64,
    /// Group commit at the synced level (`commit::gather`): calls with a frame in
    /// `pending`, callers of the last synced batch not yet back with another call, and
    /// how long that batch's write and sync took.
    pending_callers: u64,
    returning: u64,
    last_sync: std::time::Duration,
    /// A cleared buffer kept for the next `pending`.
    spare: Vec<u8>,
    /// Items written to chunk files: the sequence number after the last of them.
    written: u64,
    /// What is acknowledged, and what of it is journaled (`acks.rs`). At `Synced` the
    /// journaled head is durable; below, a power loss may keep a chunk's deletion and
    /// lose the entry that allowed it, which recovery after a restart recognizes
    /// (FORMAT.md §open, step 3a).
    acks: Acks,
    /// Sequence number of the next item `get` returns.
    read: u64,
    /// Set after a failed write: every later call says to reopen. Shared with puts that
    /// do not take the lock (`intake.rs`).
    poison_flag: Arc<AtomicBool>,
    /// A checkpoint is due (after a rollover, or a full journal) when both files are home.
    checkpoint_wanted: bool,
    /// Every record and entry on disk was durable when the queue was opened (recorded
    /// so in `info`, or made so by recovery after a restart).
    opened_synced: bool,
    /// The next checkpoint syncs `info` (and the directory) whatever the level: set by
    /// open below `Synced` over an `info` that says `all_synced` (FORMAT.md §open,
    /// step 10).
    durable_info_once: bool,
    /// What `info` holds on disk, when known (read at open or written since): a
    /// checkpoint that would write the same, with an empty journal, writes nothing.
    info_on_disk: Option<Info>,
    /// What becomes of the frames in `pending`, for the callers waiting on them; made by
    /// the first caller that waits (`fate`).
    pending_fate: Option<Arc<Fate>>,
    /// Gets wait as if the queue were empty (`Queue::pause`; the `paused` file).
    paused: bool,
    /// When the `paused` file was last looked at (`clock::coarse_ms`): another process
    /// (`diskq pause`) may create or remove it.
    pause_seen_at: u64,
    /// Bytes of the records accepted and not yet gotten (`Options::max_bytes`). Open
    /// counts the ones on disk only when a byte bound is set.
    queued_bytes: u64,
    /// Space kept back for draining a full disk, and whether puts must wait for room
    /// (`reserve.rs`).
    reserve: Reserve,
    /// Items given back, delayed or leased, and attempt counts (`retries.rs`).
    retries: Retries,
    /// The chunk file last read to deliver an item again (`deliver.rs`).
    retry_file: Option<(u64, Box<dyn StorageFile>)>,
    /// (copy, original) of `nack_after`s at `Buffered` whose copy a full disk kept
    /// pending: the original, being settled, is acknowledged once its copy is written
    /// (`Engine::supersede`).
    superseded: Vec<(u64, u64)>,
    /// When items were written (`marks.rs`).
    marks: Marks,
}

/// What became of a batch of frames, for the callers that wait on it: unknown while it
/// is pending or being written, then the sequence number after the last item written.
/// Items from there on were not stored (the disk was full) and their numbers go to the
/// next items put, so a caller asks its batch's fate, never `written` alone.
#[derive(Debug)]
pub(crate) struct Fate(AtomicU64);

impl Fate {
    const UNKNOWN: u64 = u64::MAX;

    /// `None` while unknown; else whether item `seq` of the batch was stored.
    pub(crate) fn stored(&self, seq: u64) -> Option<bool> {
        self.end().map(|end| seq < end)
    }

    /// Once settled, the sequence number after the last item stored.
    pub(crate) fn end(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Acquire)).filter(|&end| end != Fate::UNKNOWN)
    }

    fn settle(&self, written: u64) {
        self.0.store(written, Ordering::Release);
    }
}

/// Where an item came from, for error messages.
pub(crate) struct Peeked {
    pub(crate) payload: Range<usize>,
    pub(crate) len: usize,
}

/// Read access for the queue's parts outside the engine; every change goes through a
/// method that keeps the invariants above.
impl Engine {
    #[inline]
    pub(crate) fn read(&self) -> u64 {
        self.read
    }

    #[inline]
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn writer_chunk(&self) -> u64 {
        self.writer_chunk
    }

    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub(crate) fn dir(&self) -> &Arc<Path> {
        &self.dir
    }

    #[inline]
    pub(crate) fn paused(&self) -> bool {
        self.paused
    }

    #[inline]
    pub(crate) fn acks(&self) -> &Acks {
        &self.acks
    }

    #[inline]
    pub(crate) fn retries(&self) -> &Retries {
        &self.retries
    }

    pub(crate) fn marks(&self) -> &Marks {
        &self.marks
    }

    /// Where the reader is: its chunk and the offset of its next record.
    pub(crate) fn reader_at(&self) -> (u64, u64) {
        (self.reader.chunk, self.reader.offset())
    }

    /// Whether no write leader has the writer out.
    #[inline]
    pub(crate) fn writer_is_home(&self) -> bool {
        self.writer.is_some()
    }

    /// Whether no acknowledgement leader has the journal out.
    #[inline]
    pub(crate) fn journal_is_home(&self) -> bool {
        self.journal.is_some()
    }

    /// Bytes of frames accepted and not yet written.
    #[inline]
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    #[inline]
    pub(crate) fn pending_count(&self) -> u64 {
        self.pending_count
    }

    #[inline]
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// Looks at the `paused` file again once `PAUSE_POLL_MS` passed since the last
    /// look, so that a pause or resume from another process (`diskq pause`) takes
    /// effect: a coarse clock read (no system call) per get, a file lookup at most ten
    /// times a second. Returns true when that resumed the queue (its waiters must look
    /// again). An unreadable file changes nothing.
    #[inline]
    pub(crate) fn poll_pause(&mut self) -> bool {
        let t = crate::clock::coarse_monotonic();
        // The next delivery's lease starts from this reading (see `Retries::note_now`).
        self.retries.note_now(t);
        let now = t.as_millis() as u64;
        if now.wrapping_sub(self.pause_seen_at) < PAUSE_POLL_MS {
            return false;
        }
        self.pause_seen_at = now;
        self.reread_pause()
    }

    #[cold]
    fn reread_pause(&mut self) -> bool {
        let Ok(on_disk) = crate::pause::recorded(&*self.storage, &self.dir) else {
            return false;
        };
        let resumed = self.paused && !on_disk;
        self.paused = on_disk;
        resumed
    }

    /// Pauses or resumes gets, recording it on disk (`pause.rs`) first. The file is
    /// looked at first: another process may have changed it since the last poll, and a
    /// `resume` must remove a pause it has not seen yet.
    pub(crate) fn set_paused(&mut self, paused: bool) -> Result<()> {
        self.reread_pause();
        if self.paused != paused {
            crate::pause::record(&*self.storage, &self.dir, paused, self.synced())?;
            self.paused = paused;
        }
        Ok(())
    }

    /// A call that changed what the journal must record besides acknowledgements.
    /// Returns the call's generation.
    pub(crate) fn note_call(&mut self) -> u64 {
        self.acks.note_call()
    }

    /// The poison flag, shared with puts that do not take the lock.
    pub(crate) fn poison_flag(&self) -> Arc<AtomicBool> {
        self.poison_flag.clone()
    }

    /// The reserve's flag that puts must ask for room first.
    pub(crate) fn reserve_short_flag(&self) -> Arc<AtomicBool> {
        self.reserve.short_flag()
    }
}

impl Engine {
    /// Sequence number after the last item `get` may return: written items, and at the
    /// buffered level also pending ones (a `get` writes them first).
    pub(crate) fn tail(&self) -> u64 {
        if self.durability == Durability::Buffered {
            self.accepted()
        } else {
            self.written
        }
    }

    /// Sequence number after the last item accepted by a `put`.
    pub(crate) fn accepted(&self) -> u64 {
        self.written + self.writing + self.pending_count
    }

    /// Items accepted and not yet gotten: what `max_size` bounds.
    pub(crate) fn queued(&self) -> u64 {
        // Items waiting out a delay recovered at open are not waiting, as in `len`.
        (self.accepted() - self.read - self.acks.skip_ahead()).saturating_sub(self.retries.ahead())
    }

    /// Items waiting to be gotten: not yet delivered (but not those waiting out a delay
    /// recovered at open), and given back.
    pub(crate) fn len(&self) -> u64 {
        (self.tail() - self.read - self.acks.skip_ahead()).saturating_sub(self.retries.ahead())
            + self.retries.ready()
    }

    /// Items put (or being put) and not yet acknowledged.
    pub(crate) fn unfinished(&self) -> u64 {
        self.acks.unfinished(self.accepted())
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.poisoned() {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Marks the queue failed: after a failed write or sync nothing in memory can be
    /// trusted to match the disk, so every later call says to reopen.
    pub(crate) fn poison(&mut self, e: Error) -> Error {
        self.set_poisoned();
        e
    }

    pub(crate) fn set_poisoned(&mut self) {
        self.poison_flag.store(true, Ordering::Relaxed);
    }

    pub(crate) fn poisoned(&self) -> bool {
        self.poison_flag.load(Ordering::Relaxed)
    }

    pub(crate) fn synced(&self) -> bool {
        self.durability == Durability::Synced
    }

    /// Accepts a frame for writing; returns its sequence number.
    pub(crate) fn enqueue(&mut self, frame: &[u8]) -> Result<u64> {
        self.enqueue_many(frame, 1)
    }

    /// As [`enqueue_many`](Self::enqueue_many), but when nothing is pending `frames`
    /// becomes the pending buffer (and `frames` is left with the old, empty one): a
    /// batch is not copied.
    pub(crate) fn enqueue_vec(&mut self, frames: &mut Vec<u8>, n: u64) -> Result<u64> {
        if !self.pending.is_empty() {
            return self.enqueue_many(frames, n);
        }
        self.check()?;
        self.queued_bytes += frames.len() as u64;
        std::mem::swap(&mut self.pending, frames);
        self.pending_count += n;
        Ok(self.accepted() - 1)
    }

    /// The fate of the frames now pending (a caller that waits for its frame holds it).
    pub(crate) fn fate(&mut self) -> Arc<Fate> {
        self.pending_fate
            .get_or_insert_with(|| Arc::new(Fate(AtomicU64::new(Fate::UNKNOWN))))
            .clone()
    }

    /// Settles the fate of a batch that was just written (`res`), wholly or, on a full
    /// disk, in part. Any other failure poisons the queue and leaves the fate unknown:
    /// the outcome of those puts is unknown too, and their callers find the queue
    /// poisoned.
    pub(crate) fn settle(&self, fate: Option<Arc<Fate>>, res: &Result<()>) {
        if let Some(f) = fate
            && res.as_ref().map_or_else(Error::is_no_space, |()| true)
        {
            f.settle(self.written);
        }
    }

    /// Before a put: [`Error::NoSpace`] while the disk has no room for what the queue
    /// keeps back for draining, or buffered items still wait for room. Puts then fail
    /// without storing anything, so that they cannot take the space acknowledgements
    /// need; each tries to make room first (`Reserve::restore`).
    pub(crate) fn room_for_puts(&mut self) -> Result<()> {
        if !self.reserve.short() {
            return Ok(());
        }
        if !self.reserve.restore(&*self.storage, &self.dir, true)? {
            return Err(self.no_space("keep back room for draining in", RESERVE));
        }
        if self.reserve.stuck() {
            if self.writer.is_none() {
                return Err(self.no_space("append to", ""));
            }
            self.write_pending_locked()?;
        }
        Ok(())
    }

    /// [`Error::NoSpace`] for a call that did not itself see the failed write: `op` on
    /// file `name` of the queue (the directory itself when empty).
    pub(crate) fn no_space(&self, op: &'static str, name: &str) -> Error {
        Error::NoSpace {
            op,
            path: self.dir.join(name),
            source: std::io::ErrorKind::StorageFull.into(),
        }
    }

    /// Accepts `n` frames for writing; returns the sequence number of the last.
    pub(crate) fn enqueue_many(&mut self, frames: &[u8], n: u64) -> Result<u64> {
        self.check()?;
        self.queued_bytes += frames.len() as u64;
        self.pending.extend_from_slice(frames);
        self.pending_count += n;
        Ok(self.accepted() - 1)
    }

    /// The reader's next record, not looking past the published end of the writer's
    /// chunk.
    fn reader_next(&mut self) -> Result<Next> {
        let limit = (self.reader.chunk == self.writer_chunk).then_some(self.writer_end);
        self.reader.set_limit(limit);
        self.reader.next()
    }

    /// Finds the next record without consuming it.
    pub(crate) fn peek(&mut self) -> Result<Peeked> {
        self.check()?;
        debug_assert!(self.read < self.written);
        loop {
            let next_first = self.next_chunk_first_read()?;
            if let Some(first) = next_first
                && let Err(b @ Break::Overlap { .. }) = chain::check(self.read, first)
            {
                return Err(Error::corrupt(
                    chunk_path(&self.dir, self.reader.chunk + 1),
                    0,
                    b.to_string(),
                ));
            }
            if next_first == Some(self.read) {
                // The chunk must end here: a record after the point where the next chunk
                // starts is not one diskq wrote, and skipping it would later delete it.
                match self.reader_next()? {
                    Next::End => {}
                    Next::Frame { .. } | Next::Damaged { .. } => {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            format!(
                                "the chunk holds records after item {}, where the next chunk starts",
                                self.read
                            ),
                        ));
                    }
                }
                self.enter(self.reader.chunk + 1)?;
                continue;
            }
            match self.reader_next()? {
                Next::Frame { payload, len } => {
                    // In the writer's chunk the last written item must be the last record
                    // before the published end: the count recovery took from `info`'s
                    // tail mark is checked here, before an item it misnumbers is returned.
                    if self.reader.chunk == self.writer_chunk
                        && (self.reader.offset() + len as u64 == self.writer_end)
                            != (self.read + 1 == self.written)
                    {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            format!(
                                "the record of item {} does not fit the chunk's recorded end (offset {}, before item {}): info's tail mark does not match the chunk",
                                self.read, self.writer_end, self.written
                            ),
                        ));
                    }
                    return Ok(Peeked { payload, len });
                }
                Next::Damaged { detail } => {
                    return Err(Error::corrupt(
                        &self.reader.path,
                        self.reader.offset(),
                        detail,
                    ));
                }
                Next::End => {
                    if self.reader.chunk >= self.writer_chunk {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            format!(
                                "the file ends before item {}, which was written (was it truncated while open?)",
                                self.read
                            ),
                        ));
                    }
                    if let Some(first) = self.next_chunk_first()
                        && let Err(b) = chain::check(self.read, first)
                    {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            b.to_string(),
                        ));
                    }
                    self.enter(self.reader.chunk + 1)?;
                }
            }
        }
    }

    pub(crate) fn payload(&self, p: &Peeked) -> &[u8] {
        self.reader.payload(p.payload.clone())
    }

    /// Where the peeked record is, for error messages.
    pub(crate) fn location(&self) -> (&Path, u64) {
        (&self.reader.path, self.reader.offset())
    }

    /// Consumes the peeked record.
    pub(crate) fn advance(&mut self, p: Peeked) {
        self.reader.advance(p.len);
        self.read += 1;
        self.queued_bytes = self.queued_bytes.saturating_sub(p.len as u64);
    }

    /// Bytes of the records from the reader to the end of the written ones, from the
    /// chunk files' sizes (`Options::max_bytes` at open): a full chunk ends at its last
    /// record, so only a chunk that a power loss left with zeros after its records
    /// counts a little more than it holds.
    pub(crate) fn waiting_record_bytes(&self) -> Result<u64> {
        let header = CHUNK_HEADER_LEN as u64;
        let mut bytes = 0;
        for c in self.chunks.iter().filter(|c| c.no >= self.reader.chunk) {
            let end = if c.no == self.writer_chunk {
                self.writer_end
            } else {
                let path = chunk_path(&self.dir, c.no);
                let f = self
                    .storage
                    .open(&path, OpenMode::Read)
                    .map_err(|e| Error::io("open", &path, e))?;
                f.size().map_err(|e| Error::io("stat", &path, e))?
            };
            let start = if c.no == self.reader.chunk {
                self.reader.offset()
            } else {
                header
            };
            bytes += end.saturating_sub(start);
        }
        let skipped = if self.acks.skip_ahead() > 0 {
            self.skipped_record_bytes()
        } else {
            0
        };
        Ok((bytes + self.pending.len() as u64).saturating_sub(skipped))
    }

    /// Bytes of the records after the reader that gets will skip (acknowledged one by one
    /// before a reopen), read from the files: they are not waiting. Best effort: damage
    /// or a failed read ends the count (gets report it), leaving the bound a little
    /// stricter until they pass.
    fn skipped_record_bytes(&self) -> u64 {
        let Ok(mut r) = ChunkReader::open(&*self.storage, &self.dir, self.reader.chunk) else {
            return 0;
        };
        r.seek(self.reader.offset());
        let (mut seq, mut left, mut bytes) = (self.read, self.acks.skip_ahead(), 0);
        while left > 0 && seq < self.written {
            let Ok(Next::Frame { len, .. }) = self.next_record(&mut r, seq) else {
                break;
            };
            if self.acks.skips(seq) {
                (bytes, left) = (bytes + len as u64, left - 1);
            }
            r.advance(len);
            seq += 1;
        }
        bytes
    }

    /// The next record for a reader of its own (`browse`, the count above), at item
    /// `seq`: read no further than the published end in the writer's chunk, and on into
    /// the next chunk, which must continue at `seq`, at the end of any other.
    pub(crate) fn next_record(&self, r: &mut ChunkReader, seq: u64) -> Result<Next> {
        loop {
            r.set_limit((r.chunk == self.writer_chunk).then_some(self.writer_end));
            match r.next()? {
                Next::End if r.chunk < self.writer_chunk => {
                    let next = ChunkReader::open(&*self.storage, &self.dir, r.chunk + 1)?;
                    if let Err(b) = chain::check(seq, next.header.first_seq) {
                        return Err(Error::corrupt(&next.path, 0, b.to_string()));
                    }
                    *r = next;
                }
                other => return Ok(other),
            }
        }
    }

    fn next_chunk_first(&self) -> Option<u64> {
        let idx = (self.reader.chunk + 1).checked_sub(self.chunks.front()?.no)?;
        self.chunks.get(idx as usize)?.first_seq
    }

    /// Where the chunk after the reader's starts, reading that chunk's header if it is not
    /// known yet (`open` reads only the headers it acts on); `None` in the writer's chunk.
    /// The reader must know where its chunk ends before it delivers a record from it: a
    /// record past that point is not one diskq wrote, and delivering it would give an
    /// item under another item's number.
    fn next_chunk_first_read(&mut self) -> Result<Option<u64>> {
        if self.reader.chunk >= self.writer_chunk {
            return Ok(None);
        }
        if let Some(first) = self.next_chunk_first() {
            return Ok(Some(first));
        }
        let no = self.reader.chunk + 1;
        let first = ChunkReader::open(&*self.storage, &self.dir, no)?
            .header
            .first_seq;
        self.record_first(no, first);
        Ok(Some(first))
    }

    /// Records where chunk `no` starts, once its header has been read.
    fn record_first(&mut self, no: u64, first: u64) {
        if let Some(idx) = no.checked_sub(self.chunks[0].no)
            && let Some(meta) = self.chunks.get_mut(idx as usize)
        {
            meta.first_seq = Some(first);
        }
    }

    /// Moves the reader into chunk `no`, checking that it continues where the last ended.
    fn enter(&mut self, no: u64) -> Result<()> {
        let r = ChunkReader::open(&*self.storage, &self.dir, no)?;
        match chain::check(self.read, r.header.first_seq) {
            Ok(()) => {}
            // The chunk being left lacks its last records: it was cut short.
            Err(b @ Break::Missing { .. }) => {
                return Err(Error::corrupt(
                    &self.reader.path,
                    self.reader.offset(),
                    format!("{b} (the file was cut short?)"),
                ));
            }
            Err(b @ Break::Overlap { .. }) => {
                return Err(Error::corrupt(&r.path, 0, b.to_string()));
            }
        }
        self.record_first(no, r.header.first_seq);
        self.reader = r;
        Ok(())
    }

    /// Acknowledges the `n` oldest gotten, unacknowledged items in memory; a leader
    /// journals them. Returns the generation to wait for.
    pub(crate) fn ack(&mut self, n: u64) -> Result<u64> {
        self.ack_oldest(n)
    }

    /// Skips records acknowledged one by one before a reopen; true when it skipped one.
    pub(crate) fn skip_acknowledged(&mut self) -> Result<bool> {
        if !self.acks.skips(self.read) {
            return Ok(false);
        }
        let p = self.peek()?;
        // Not `advance`: a skipped record was never counted in `queued_bytes`.
        self.reader.advance(p.len);
        self.read += 1;
        self.acks.skipped(self.read);
        Ok(true)
    }

    /// Deletes chunk files all of whose items are acknowledged. The writer's chunk stays.
    /// Where the next chunk begins is known once the reader has entered it, which checks
    /// that this chunk ends exactly there. With `probe` (checkpoints, so that `close`
    /// leaves no fully acknowledged chunk behind), a reader that has read everything of
    /// this chunk moves on now; a header alone never vouches for another file.
    pub(crate) fn delete_acked_chunks(&mut self, probe: bool) {
        while self.chunks.len() >= 2 {
            if let Some(next_first) = self.chunks[1].first_seq
                && self.acks.head_written() < next_first
            {
                // Not deletable yet, whatever the probe below would find: skip its read
                // (up to 256 KiB, at every checkpoint of a queue with a backlog).
                return;
            }
            if self.reader.chunk == self.chunks[0].no {
                // The reader has not yet checked that this chunk ends where the next
                // begins (it does so on leaving it).
                if !probe {
                    return;
                }
                let at_end = matches!(self.reader_next(), Ok(Next::End));
                // Any damage is reported by the reader when a get gets there.
                if !at_end || self.enter(self.chunks[1].no).is_err() {
                    return;
                }
            }
            let Some(next_first) = self.chunks[1].first_seq else {
                return;
            };
            // Only acknowledgements on disk count: in the same boot, recovery takes a
            // missing chunk with unacknowledged items for lost data.
            if self.acks.head_written() < next_first {
                return;
            }
            let path = chunk_path(&self.dir, self.chunks[0].no);
            match self.storage.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Not fatal: the file is retried at the next acknowledgement and
                // removed by recovery at the latest.
                Err(_) => return,
            }
            self.chunks.pop_front();
            if !self.reserve.present() {
                // Room came free: keep draining's share back first (best effort; puts
                // wait for it).
                let _ = self.reserve.restore(&*self.storage, &self.dir, false);
            }
        }
    }

    /// Writes pending frames while holding the lock (checkpoints, close). The writer
    /// must be home.
    pub(crate) fn write_pending_locked(&mut self) -> Result<()> {
        if self.pending_count == 0 {
            return Ok(());
        }
        // The spare buffer takes its place, as in `commit::lead_writes_until`: an empty
        // one made the next put allocate (W2 at `Buffered`, where a consumer that runs
        // dry writes what is pending: 1.085x, median of 8 pairs of runs alternated).
        let spare = std::mem::take(&mut self.spare);
        let batch = std::mem::replace(&mut self.pending, spare);
        let n = std::mem::take(&mut self.pending_count);
        let fate = self.pending_fate.take();
        // Their callers are not waited for by a gathering leader (`commit::gather`).
        self.pending_callers = 0;
        let res = self.write_locked(&batch, n);
        self.settle(fate, &res);
        self.recycle(batch);
        res
    }

    /// Writes `n` frames, `batch`, after the accepted ones while holding the lock. Nothing
    /// may be pending, and the writer must be home.
    pub(crate) fn write_locked(&mut self, batch: &[u8], n: u64) -> Result<()> {
        debug_assert_eq!(self.pending_count, 0);
        let (limit, sync) = (self.chunk_limit, self.synced());
        // Written in place, not taken out and put back: the move after the write copied
        // the writer with 16-byte loads of the counts it had just stored 8 bytes at a
        // time, a stall the CPU cannot forward (about 4% of a 64-byte put's time).
        let (storage, dir) = (&*self.storage, &self.dir);
        let w = self.writer.as_mut().expect("writer is home");
        let mut started = Vec::new();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_frames(storage, dir, w, batch, limit, sync, &mut started)
        }));
        match res {
            Ok(res) => self.batch_written(batch, n, started, res),
            Err(panic) => {
                // The writer is home, so nobody waits for it: poison (the file's state is
                // unknown), and let the panic go on.
                self.set_poisoned();
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Keeps a written batch's buffer for the next batch, if it is the larger one.
    pub(crate) fn recycle(&mut self, mut batch: Vec<u8>) {
        batch.clear();
        if batch.capacity() > self.spare.capacity() {
            self.spare = batch;
        }
    }

    /// Takes the writer back from a batch write of `n` frames, `batch`, registering the
    /// chunks it `started`. A full disk (`NoSpace`) leaves the frames before the failed
    /// append written; the rest were not stored (see `unstored`).
    pub(crate) fn writer_home(
        &mut self,
        w: Writer,
        batch: &[u8],
        n: u64,
        started: Vec<ChunkMeta>,
        res: Result<()>,
    ) -> Result<()> {
        self.writer = Some(w);
        self.batch_written(batch, n, started, res)
    }

    /// After a batch write of `n` frames, `batch`, with the writer home: as
    /// [`writer_home`](Self::writer_home).
    fn batch_written(
        &mut self,
        batch: &[u8],
        n: u64,
        started: Vec<ChunkMeta>,
        res: Result<()>,
    ) -> Result<()> {
        let w = self.writer.as_ref().expect("writer is home");
        let (chunk, end, stored) = (w.chunk, w.written, w.first_seq + w.count - self.written);
        self.writer_chunk = chunk;
        if res.is_ok() && started.is_empty() && self.reader.chunk == chunk {
            // A reader that has read up to where this batch begins takes it from
            // memory instead of reading it back from the file.
            let at = end - batch.len() as u64;
            self.reader.feed(at, batch);
        }
        let no_space = matches!(&res, Err(e) if e.is_no_space());
        if res.is_ok() || no_space {
            self.writer_end = end;
            if !started.is_empty() {
                // Record the new newest chunk in info, so that losing it is noticed.
                self.checkpoint_wanted = true;
                // Only here: an empty `extend` still cost 4% of a 64-byte put.
                self.chunks.extend(started);
            }
            if stored > 0 {
                let ms = self.retries.clock().coarse_wall_ms();
                self.marks.note(self.written, ms);
            }
            self.written += stored;
            if !self.superseded.is_empty() {
                self.settle_superseded();
            }
        }
        self.writing = 0;
        match res {
            Ok(()) => {
                if self.reserve.stuck() {
                    self.reserve.set_stuck(false);
                }
                Ok(())
            }
            Err(e) if no_space => {
                self.unstored(batch, stored, n);
                Err(e)
            }
            Err(e) => {
                // Nothing more is written once poisoned; the batch's items still count
                // as accepted, so `len` does not drop under callers' feet.
                self.pending_count += n;
                Err(self.poison(e))
            }
        }
    }

    /// After a batch of `n` frames of which only the first `stored` reached the disk,
    /// which was full. At the buffered level the puts of the rest returned long ago: they
    /// stay pending, in front of the later ones, and puts are refused until they are
    /// written. At the other levels every frame not written is dropped, the pending
    /// ones too (they would be numbered after a gap), and their puts fail with the error.
    fn unstored(&mut self, batch: &[u8], stored: u64, n: u64) {
        let (at, _, _) = split_frames(batch, stored, u64::MAX, true);
        if self.durability == Durability::Buffered {
            let mut rest = batch[at..].to_vec();
            rest.extend_from_slice(&self.pending);
            self.pending = rest;
            self.pending_count += n - stored;
            self.reserve.set_stuck(true);
            return;
        }
        let dropped = (batch.len() - at + self.pending.len()) as u64;
        self.queued_bytes = self.queued_bytes.saturating_sub(dropped);
        self.pending.clear();
        self.pending_count = 0;
        self.pending_callers = 0;
        let fate = self.pending_fate.take();
        self.settle(fate, &Ok(()));
    }
}

/// [`Error::DirectoryDeleted`] when the queue's directory was deleted (one `fstat`).
pub(crate) fn check_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    match storage.deleted() {
        Ok(false) => Ok(()),
        Ok(true) => Err(Error::DirectoryDeleted { path: dir.into() }),
        Err(e) => Err(Error::io("check queue directory", dir, e)),
    }
}

/// The error of creating `path`: a file cannot be created in a deleted directory
/// (`ENOENT`), which is said so.
pub(crate) fn create_error(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    e: std::io::Error,
) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound
        && let Err(gone @ Error::DirectoryDeleted { .. }) = check_dir(storage, dir)
    {
        return gone;
    }
    Error::write("create", path, e)
}
