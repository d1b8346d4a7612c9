//! The queue's state on disk and in memory, at the level of bytes: appending frames,
//! reading them back in order, acknowledging, checkpointing. One `Engine` lives behind
//! the queue's mutex; nothing here blocks on anything but I/O.

use crate::error::{Error, Result};
use crate::format::{AckEntry, CHUNK_HEADER_LEN, ChunkHeader, Info};
use crate::options::Durability;
use crate::reader::{ChunkReader, Next, chunk_path};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Buffered level: pending item bytes are written once they reach this size.
const WRITE_BATCH: usize = 64 * 1024;
/// Buffered level: acknowledgements are journaled once this many are pending.
const ACK_BATCH: u64 = 4096;
/// The journal is folded into `info` (a checkpoint) once it reaches this size, which
/// bounds what recovery reads.
pub(crate) const JOURNAL_LIMIT: u64 = 64 * 1024;

pub(crate) const INFO: &str = "info";
pub(crate) const INFO_TMP: &str = "info.tmp";
pub(crate) const ACKS: &str = "acks";
pub(crate) const LOCK: &str = ".lock";

/// A chunk file between the acknowledgement head and the tail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkMeta {
    pub(crate) no: u64,
    /// Sequence number of its first record, once known (read from its header when the
    /// reader enters it, or set by the writer that created it).
    pub(crate) first_seq: Option<u64>,
}

/// The chunk being appended to.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) chunk: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) first_seq: u64,
    /// Records in the chunk, pending ones included.
    pub(crate) count: u64,
    /// Bytes handed to the OS (header included).
    pub(crate) written: u64,
    /// Frames not yet written (buffered level only).
    pub(crate) pending: Vec<u8>,
}

/// The append-only acknowledgement journal.
#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) len: u64,
    /// Acknowledgements not yet journaled (buffered level only).
    pub(crate) pending: u64,
}

#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    pub(crate) chunk_size: u64,
    pub(crate) durability: Durability,
    pub(crate) journal_limit: u64,
    /// Chunk files, oldest first; the front holds the oldest unacknowledged item (or is
    /// the writer's chunk), the back is the writer's chunk.
    pub(crate) chunks: VecDeque<ChunkMeta>,
    pub(crate) writer: Writer,
    pub(crate) reader: ChunkReader,
    pub(crate) journal: Journal,
    /// Items acknowledged ever: the sequence number of the oldest unacknowledged item.
    pub(crate) acked: u64,
    /// Sequence number of the next item `get` returns.
    pub(crate) read: u64,
    pub(crate) poisoned: bool,
}

/// Where an item came from, for error messages.
pub(crate) struct Peeked {
    pub(crate) payload: Range<usize>,
    pub(crate) len: usize,
}

impl Engine {
    /// Sequence number the next `put` gets.
    pub(crate) fn tail(&self) -> u64 {
        self.writer.first_seq + self.writer.count
    }

    /// Items waiting to be gotten.
    pub(crate) fn len(&self) -> u64 {
        self.tail() - self.read
    }

    /// Items put and not yet acknowledged.
    pub(crate) fn unfinished(&self) -> u64 {
        self.tail() - self.acked
    }

    /// Items gotten and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.read - self.acked
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Marks the queue failed: after a failed write or sync nothing in memory can be
    /// trusted to match the disk, so every later call says to reopen.
    fn poison(&mut self, e: Error) -> Error {
        self.poisoned = true;
        e
    }

    fn synced(&self) -> bool {
        self.durability == Durability::Synced
    }

    /// Appends one complete frame.
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<()> {
        self.check()?;
        if self.writer.count >= self.chunk_size {
            self.rollover()?;
        }
        if self.durability == Durability::Buffered {
            self.writer.pending.extend_from_slice(frame);
            self.writer.count += 1;
            if self.writer.pending.len() >= WRITE_BATCH {
                self.flush_pending()?;
            }
            return Ok(());
        }
        let w = &mut self.writer;
        let res = w.file.append(frame).and_then(|()| {
            if self.durability == Durability::Synced {
                w.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let e = Error::io("append to", &self.writer.path, e);
            return Err(self.poison(e));
        }
        self.writer.count += 1;
        self.writer.written += frame.len() as u64;
        Ok(())
    }

    /// Writes buffered frames and acknowledgements.
    fn flush_pending(&mut self) -> Result<()> {
        if !self.writer.pending.is_empty() {
            let w = &mut self.writer;
            if let Err(e) = w.file.append(&w.pending) {
                let e = Error::io("append to", &self.writer.path, e);
                return Err(self.poison(e));
            }
            w.written += w.pending.len() as u64;
            w.pending.clear();
        }
        if self.journal.pending > 0 {
            self.journal_ack()?;
        }
        Ok(())
    }

    /// Starts the next chunk file once the writer's is full.
    fn rollover(&mut self) -> Result<()> {
        self.flush_pending()?;
        let chunk = self.writer.chunk + 1;
        let first_seq = self.tail();
        let writer = create_chunk(&*self.storage, &self.dir, chunk, first_seq, self.synced())
            .map_err(|e| self.poison(e))?;
        self.writer = writer;
        self.chunks.push_back(ChunkMeta {
            no: chunk,
            first_seq: Some(first_seq),
        });
        // Records the new tail in info, so that a lost newest chunk file is noticed.
        self.checkpoint()
    }

    /// Finds the next record without consuming it.
    pub(crate) fn peek(&mut self) -> Result<Peeked> {
        self.check()?;
        debug_assert!(self.read < self.tail());
        loop {
            if self.reader.chunk < self.writer.chunk {
                if self.next_chunk_first() == Some(self.read) {
                    self.enter(self.reader.chunk + 1)?;
                    continue;
                }
            } else if !self.writer.pending.is_empty() && self.reader.offset() >= self.writer.written
            {
                self.flush_pending()?;
            }
            match self.reader.next()? {
                Next::Frame { payload, len } => return Ok(Peeked { payload, len }),
                Next::Damaged { detail } => {
                    return Err(Error::corrupt(
                        &self.reader.path,
                        self.reader.offset(),
                        detail,
                    ));
                }
                Next::End => {
                    if self.reader.chunk >= self.writer.chunk {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            format!(
                                "the file ends before item {}, which was written (was it truncated while open?)",
                                self.read
                            ),
                        ));
                    }
                    if let Some(first) = self.next_chunk_first() {
                        return Err(Error::corrupt(
                            &self.reader.path,
                            self.reader.offset(),
                            format!(
                                "the chunk ends at item {} but the next chunk starts at item {first}: records are missing",
                                self.read
                            ),
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
    }

    fn next_chunk_first(&self) -> Option<u64> {
        let idx = (self.reader.chunk + 1).checked_sub(self.chunks.front()?.no)?;
        self.chunks.get(idx as usize)?.first_seq
    }

    /// Moves the reader into chunk `no`, checking that it continues where the last ended.
    fn enter(&mut self, no: u64) -> Result<()> {
        let r = ChunkReader::open(&*self.storage, &self.dir, no)?;
        if r.header.first_seq > self.read {
            // The chunk being left lacks its last records: it was cut short.
            return Err(Error::corrupt(
                &self.reader.path,
                self.reader.offset(),
                format!(
                    "the chunk ends at item {} but the next chunk starts at item {}: records are missing here (the file was cut short?)",
                    self.read, r.header.first_seq
                ),
            ));
        }
        if r.header.first_seq < self.read {
            return Err(Error::corrupt(
                &r.path,
                0,
                format!(
                    "the chunk starts at item {} but the previous chunk ends at item {}",
                    r.header.first_seq, self.read
                ),
            ));
        }
        if let Some(idx) = no.checked_sub(self.chunks[0].no)
            && let Some(meta) = self.chunks.get_mut(idx as usize)
        {
            meta.first_seq = Some(r.header.first_seq);
        }
        self.reader = r;
        Ok(())
    }

    /// Acknowledges the `n` oldest gotten items.
    pub(crate) fn ack(&mut self, n: u64) -> Result<()> {
        self.check()?;
        if n > self.in_flight() {
            return Err(Error::NothingToAcknowledge);
        }
        if n == 0 {
            return Ok(());
        }
        self.acked += n;
        if self.durability == Durability::Buffered {
            self.journal.pending += n;
            if self.journal.pending >= ACK_BATCH {
                self.journal_ack()?;
            }
        } else {
            self.journal_ack()?;
        }
        self.delete_acked_chunks(false)?;
        if self.journal.len >= self.journal_limit {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn journal_ack(&mut self) -> Result<()> {
        let entry = AckEntry { acked: self.acked }.encode();
        let synced = self.synced();
        let j = &mut self.journal;
        let res = j
            .file
            .append(&entry)
            .and_then(|()| if synced { j.file.sync_data() } else { Ok(()) });
        if let Err(e) = res {
            let e = Error::io("append to", &self.journal.path, e);
            return Err(self.poison(e));
        }
        self.journal.len += entry.len() as u64;
        self.journal.pending = 0;
        Ok(())
    }

    /// Deletes chunk files all of whose items are acknowledged. The writer's chunk stays.
    /// Where the next chunk begins is known once the reader has entered it; with `probe`,
    /// an unknown start is read from its header (one open), which checkpoints do so that
    /// `close` leaves no fully acknowledged chunk behind.
    fn delete_acked_chunks(&mut self, probe: bool) -> Result<()> {
        while self.chunks.len() >= 2 {
            let next_first = match self.chunks[1].first_seq {
                Some(f) => f,
                None if probe => {
                    match ChunkReader::open(&*self.storage, &self.dir, self.chunks[1].no) {
                        Ok(r) => {
                            self.chunks[1].first_seq = Some(r.header.first_seq);
                            r.header.first_seq
                        }
                        // The reader reports damage when it gets there.
                        Err(_) => return Ok(()),
                    }
                }
                None => return Ok(()),
            };
            if self.acked < next_first {
                return Ok(());
            }
            // The acknowledgements must be on disk before the chunk is gone: recovery
            // takes a missing chunk with unacknowledged items for lost data.
            if self.journal.pending > 0 {
                self.journal_ack()?;
            }
            let path = chunk_path(&self.dir, self.chunks[0].no);
            match self.storage.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Not fatal: the file is retried at the next acknowledgement and
                // removed by recovery at the latest.
                Err(_) => return Ok(()),
            }
            self.chunks.pop_front();
        }
        Ok(())
    }

    /// Writes buffered data and acknowledgements to the OS.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.check()?;
        self.flush_pending()
    }

    /// Folds the journal into a new `info`: write everything pending, replace `info`
    /// atomically, then empty the journal. A crash between the last two steps leaves
    /// journal entries no newer than `info`, which recovery's maximum ignores.
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        self.check()?;
        self.flush_pending()?;
        let info = Info {
            acked: self.acked,
            tail_chunk: self.writer.chunk,
        };
        if let Err(e) = write_info(&*self.storage, &self.dir, &info, self.synced()) {
            return Err(self.poison(e));
        }
        if let Err(e) = self.journal.file.set_len(0) {
            let e = Error::io("truncate", &self.journal.path, e);
            return Err(self.poison(e));
        }
        self.journal.len = 0;
        self.delete_acked_chunks(true)
    }
}

/// Replaces `<dir>/info` atomically: temporary file, (sync), rename, (sync directory).
pub(crate) fn write_info(storage: &dyn Storage, dir: &Path, info: &Info, sync: bool) -> Result<()> {
    let tmp = dir.join(INFO_TMP);
    let path = dir.join(INFO);
    let mut f = storage
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.append(&info.encode())
        .map_err(|e| Error::io("write", &tmp, e))?;
    if sync {
        f.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
    }
    drop(f);
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io("rename over", &path, e))?;
    if sync {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(())
}

/// Creates chunk file `chunk` holding only its header.
pub(crate) fn create_chunk(
    storage: &dyn Storage,
    dir: &Path,
    chunk: u64,
    first_seq: u64,
    sync: bool,
) -> Result<Writer> {
    let path = chunk_path(dir, chunk);
    let mut file = storage
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &path, e))?;
    let header = ChunkHeader { chunk, first_seq }.encode();
    file.append(&header)
        .map_err(|e| Error::io("write", &path, e))?;
    if sync {
        file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(Writer {
        chunk,
        path,
        file,
        first_seq,
        count: 0,
        written: CHUNK_HEADER_LEN as u64,
        pending: Vec::new(),
    })
}
