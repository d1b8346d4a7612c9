//! What opening a queue makes of the parts recovery found (FORMAT.md §open, step 10 and
//! after): the engine built from them, its `all_synced` state settled, a checkpoint when
//! `info` is stale, and the reserve, pause and byte count in place.

use super::{ChunkLimit, ChunkMeta, Engine, Journal, Writer};
use crate::acks::Acks;
use crate::error::{Error, Result};
use crate::format::{Info, WorkState};
use crate::options::Options;
use crate::reader::{ChunkReader, chunk_path};
use crate::reserve::Reserve;
use crate::retries::Retries;
use crate::storage::{OpenMode, Storage};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

/// What recovery assembled (FORMAT.md §open, steps 3 to 10).
pub(crate) struct Recovered {
    /// The acknowledgement head, and the items acknowledged one by one after it.
    pub(crate) acked: u64,
    pub(crate) singles: BTreeSet<u64>,
    /// Deliveries, attempts and delays.
    pub(crate) work: WorkState,
    pub(crate) chunks: VecDeque<ChunkMeta>,
    pub(crate) writer: Writer,
    /// At the oldest unacknowledged item.
    pub(crate) reader: ChunkReader,
    pub(crate) journal: Journal,
    /// What `info` says (after a restart step 3a synced everything and said so at
    /// `Synced`); `settle_synced_state` completes it.
    pub(crate) all_synced: bool,
}

impl Engine {
    pub(crate) fn build(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        opts: &Options,
        r: Recovered,
    ) -> Engine {
        let Recovered {
            acked,
            singles,
            work,
            chunks,
            writer,
            reader,
            journal,
            all_synced,
        } = r;
        Engine {
            storage: storage.clone(),
            dir: Arc::from(dir),
            chunk_limit: ChunkLimit {
                records: opts.chunk_size.max(1) as u64,
                bytes: opts.chunk_bytes,
            },
            durability: opts.durability,
            journal_limit: opts.journal_limit,
            journal_room: opts.journal_limit,
            chunks,
            writer_chunk: writer.chunk,
            writer_end: writer.written,
            written: writer.first_seq + writer.count,
            writer: Some(writer),
            reader,
            journal: Some(journal),
            pending: Vec::new(),
            pending_count: 0,
            writing: 0,
            pending_callers: 0,
            returning: 0,
            last_sync: std::time::Duration::ZERO,
            spare: Vec::new(),
            pending_fate: None,
            reserve: Reserve::default(),
            marks: crate::marks::Marks::recovered(&work.marks),
            retries: Retries::new(
                opts.clock.clone().unwrap_or_else(crate::clock::system),
                opts.lease,
                work,
            ),
            retry_file: None,
            superseded: Vec::new(),
            queued_bytes: 0,
            paused: false,
            pause_seen_at: crate::clock::coarse_ms(),
            acks: Acks::recovered(acked, singles),
            read: acked,
            poison_flag: Arc::default(),
            checkpoint_wanted: false,
            info_on_disk: None,
            opened_synced: all_synced,
            durable_info_once: false,
        }
    }

    /// Step 10, first: makes `info`'s `all_synced` true only while it is. Below `Synced`,
    /// an `info` that says so is replaced, durably, before anything is written: else a
    /// power loss could keep it over this session's unsynced writes (and journal
    /// truncations), and step 3a would trust them. At `Synced`, in the same boot, after a
    /// session below it (`info` does not say so), every chunk file and the journal are
    /// synced now, so that what this session syncs is not cut after an older unsynced
    /// chunk. `info_all_synced`: what `info` says; `after_restart`: step 3a ran.
    pub(crate) fn settle_synced_state(
        &mut self,
        info_all_synced: bool,
        after_restart: bool,
    ) -> Result<()> {
        if !self.synced() {
            self.durable_info_once = info_all_synced;
            return Ok(());
        }
        if info_all_synced || after_restart {
            return Ok(());
        }
        let (st, dir) = (self.storage.clone(), self.dir.clone());
        for c in &self.chunks {
            if c.no != self.writer_chunk {
                let path = chunk_path(&dir, c.no);
                st.open(&path, OpenMode::Append)
                    .and_then(|mut f| f.sync_data())
                    .map_err(|e| Error::io("sync", &path, e))?;
            }
        }
        self.sync_tail()?;
        st.sync_dir(&dir)
            .map_err(|e| Error::io("sync directory", dir.to_path_buf(), e))?;
        self.opened_synced = true;
        Ok(())
    }

    fn sync_tail(&mut self) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.file
                .sync_data()
                .map_err(|e| Error::io("sync", &w.path, e))?;
        }
        if let Some(j) = self.journal.as_mut() {
            j.file
                .sync_data()
                .map_err(|e| Error::io("sync", &j.path, e))?;
        }
        Ok(())
    }

    /// Step 10, last: a checkpoint when the journal held entries or `info` differs from
    /// what recovery found. A mark that does not describe the chunk as recovered (records
    /// appended after it, a chunk cut below it, a mark ignored) is replaced before
    /// anything is appended: a stale one could otherwise come to match other records
    /// later.
    pub(crate) fn checkpoint_if_stale(&mut self, info: Info) -> Result<()> {
        let w = self.writer.as_ref().expect("writer is home");
        let mark_matches = info.tail_chunk == w.chunk
            && (info.tail_end, info.tail_count, info.tail_last_len)
                == (w.written, w.count, w.last_len);
        let journal_len = self.journal.as_ref().map_or(0, |j| j.len);
        let flags = info.all_synced != (self.synced() && self.opened_synced);
        if journal_len > 0 || info.acked != self.acks.head() || !mark_matches || flags {
            if self.opened_synced && self.synced() {
                // The new `info` will say every byte is synced: the newest chunk and the
                // journal may hold the write a crash cut, never synced (a kill in the
                // same boot), so they are synced first.
                self.sync_tail()?;
            }
            self.checkpoint()
        } else {
            let len = info.encode().len() as u64;
            self.journal_room = crate::engine::checkpoint::journal_room(self.journal_limit, len);
            self.info_on_disk = Some(info);
            Ok(())
        }
    }

    /// After recovery, under the lock: the reserve made (`reserve.rs`), the pause read
    /// (`pause.rs`), and the bytes waiting counted when `max_bytes` bounds them.
    pub(crate) fn ready_to_serve(&mut self, opts: &Options) -> Result<()> {
        let (st, dir) = (self.storage.clone(), self.dir.clone());
        self.reserve = Reserve::ensure(&*st, &dir)?;
        self.paused = crate::pause::recorded(&*st, &dir)?;
        if opts.max_bytes > 0 {
            self.queued_bytes = self.waiting_record_bytes()?;
        }
        Ok(())
    }
}
