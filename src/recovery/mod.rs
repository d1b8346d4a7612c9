//! What opening a queue does: FORMAT.md §open, one named function per step. Lock, read
//! `info` (after a restart, cut what a power loss tore: `restart.rs`), read the journal,
//! find the chunk files, recover the newest chunk's tail, check the chain at both ends
//! and drop consumed chunks, and place the reader at the oldest unacknowledged item.

mod chunks;
mod journal;
mod restart;
mod tail;

pub use restart::Recovery;

use crate::engine::{
    ACKS, ChunkMeta, Engine, INFO, Journal, LOCK, Recovered, SCHEMA, SCHEMA_TMP, Writer,
    create_chunk, write_atomic, write_info,
};
use crate::error::{Error, Result};
use crate::format::{
    CHUNK_HEADER_LEN, INFO_HEADER_LEN, Info, InfoRead, MAX_SEQ, WorkState, lost_first_sector,
    schema,
};
use crate::inspect::journal::Acknowledged;
use crate::options::{Durability, Options};
use crate::reader::{ChunkReader, Next, chunk_path, parse_chunk_name};
use crate::reserve::Reserve;
use crate::storage::{OpenMode, Storage, StorageFile, open_if_exists};
use chunks::{Durable, Firsts, OldestFile};
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Holds the directory lock for as long as it lives.
pub(crate) type LockGuard = Box<dyn Any + Send + Sync>;

pub(crate) fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    opts: &Options,
    schema: &str,
) -> Result<(Engine, LockGuard, Recovery)> {
    let storage = anchor(storage, dir)?;
    let st = &*storage;
    let lock = lock(st, dir)?; // step 1 (step 2: `info.tmp` is left alone)
    // On a full disk the reserve makes room for what opening writes (`reserve.rs`). An
    // open that failed part way is retried as a reopen after a crash would be.
    let mut reserve = Reserve::present_if_any();
    let (mut engine, recovered) =
        reserve.with_room(st, dir, || open_locked(&storage, dir, opts, schema))?;
    engine.ready_to_serve(opts)?;
    Ok((engine, lock, recovered))
}

/// Steps 3 to 10, under the lock.
fn open_locked(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    opts: &Options,
    schema: &str,
) -> Result<(Engine, Recovery)> {
    let st = &**storage;
    let sync = opts.durability == Durability::Synced;
    let boot = st.boot_id();
    let start = read_info(st, dir, boot, sync)?; // steps 3 and 3a
    check_schema(st, dir, schema)?; // step 3b
    let mut r = Recovering::new(st, dir, sync)?;
    let journal_len = r.merge_acks(&start)?; // step 4
    let (newest_file, mut oldest_file) = r.locate_chunks(&start)?; // step 5
    let mark = tail::mark_of(&start.info);
    let (mut writer, tail_first) =
        tail::recover_tail(st, dir, &mut r.chunks, newest_file, r.acked, sync, mark)?; // 6
    let mut firsts = Firsts::new(st, dir, r.chunks.len(), tail_first);
    r.check_newest(&mut firsts, writer.first_seq + writer.count, tail_first)?; // step 7
    let mut head = r.drop_consumed(&mut firsts, oldest_file.take())?;
    if let Some((w, h)) = r.restart_at_head(writer.first_seq + writer.count)? {
        (writer, head) = (w, h); // step 8
    }
    r.skip_acknowledged(&mut head, writer.first_seq + writer.count)?; // step 9
    let journal = r.ready_journal(journal_len)?; // step 10
    let meta = chunk_meta(&r.chunks, &firsts, head.header.first_seq, writer.first_seq);
    let parts = Recovered {
        acked: r.acked,
        singles: std::mem::take(&mut r.singles),
        work: std::mem::take(&mut r.work),
        chunks: meta,
        writer,
        reader: head,
        journal,
        all_synced: start.info.all_synced,
    };
    let mut engine = Engine::build(storage, dir, opts, parts);
    engine.settle_synced_state(start.info.all_synced, start.recovered.after_restart)?; // 10
    engine.checkpoint_if_stale(start.info)?;
    Ok((engine, start.recovered))
}

/// Holds the directory open, creating it first if it is missing: from here on the queue
/// reaches its files through that handle (`Storage::anchor`), so that it never writes into
/// another directory given its path later. An existing queue (the usual case) costs no
/// `mkdir` and `stat`.
pub(crate) fn anchor(storage: Arc<dyn Storage>, dir: &Path) -> Result<Arc<dyn Storage>> {
    let anchored = match storage.clone().anchor(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            storage
                .create_dir_all(dir)
                .map_err(|e| Error::io("create queue directory", dir, e))?;
            storage.anchor(dir)
        }
        anchored => anchored,
    };
    anchored.map_err(|e| Error::io("open queue directory", dir, e))
}

/// Step 1: takes the flock on `.lock`.
pub(crate) fn lock(st: &dyn Storage, dir: &Path) -> Result<LockGuard> {
    let lock_path = dir.join(LOCK);
    st.try_lock(&lock_path)
        .map_err(|e| Error::io("lock", &lock_path, e))?
        .ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })
}

/// What steps 3 and 3a found: `info` (as read, or as step 3a or a new queue wrote it),
/// the directory's listing if one was made, and the restart report.
struct Start {
    info: Info,
    listed: Option<Vec<String>>,
    recovered: Recovery,
}

/// Step 3: reads and checks `info`; a missing one makes a new queue (when nothing else is
/// there) or is `MissingInfo`. Step 3a runs after a restart.
fn read_info(st: &dyn Storage, dir: &Path, boot: u128, sync: bool) -> Result<Start> {
    let info_path = dir.join(INFO);
    let Some(b) = st
        .read_all(&info_path)
        .map_err(|e| Error::io("read", &info_path, e))?
    else {
        return new_queue(st, dir, boot, sync);
    };
    let (info, lists_lost) = match Info::read(&b) {
        Ok(InfoRead::Whole(info)) => (info, false),
        // Written unsynced, and the machine restarted since: a power loss kept the header
        // (one sector, written whole) and tore the lists after it. Not in the same boot,
        // nor of a synced `info`: damage.
        Ok(InfoRead::HeaderOnly(info, _)) if info.unsynced && restart::restarted(&info, boot) => {
            (info, true)
        }
        Ok(InfoRead::HeaderOnly(_, e)) => {
            let detail = format!("its lists after the header are damaged: {e}");
            return Err(Error::corrupt(&info_path, INFO_HEADER_LEN as u64, detail));
        }
        // A rename that reached the disk before the file's data (or its first sector): a
        // power loss, never a process crash (the data is written before the rename).
        Err(_) if lost_first_sector(&b) => (restart::lost_info(), false),
        Err(e) => return Err(Error::corrupt(&info_path, 0, e.to_string())),
    };
    // Where the singles start: after the header in version 5, else they end just before
    // the CRC.
    let singles_at = if b.get(8..12) == Some(&5u32.to_le_bytes()[..]) {
        INFO_HEADER_LEN as u64 + 4
    } else {
        (b.len() as u64).saturating_sub(4 + 8 * info.singles.len() as u64)
    };
    check_info(&info, &info_path, singles_at)?;
    if !restart::restarted(&info, boot) {
        return Ok(Start {
            info,
            listed: None,
            recovered: Recovery::default(),
        });
    }
    let names = chunks::list(st, dir)?;
    let (info, mut recovered) = restart::recover(st, dir, &info, boot, &names, sync)?;
    recovered.info_rebuilt = lost_first_sector(&b);
    recovered.info_lists_lost = lists_lost;
    Ok(Start {
        info,
        listed: None,
        recovered,
    })
}

/// Step 3b: the item type. The tag recorded at creation must be the one asked for; a
/// queue without one (made before format version 4, or whose creation stopped between
/// `info` and `schema`) records it now. Written synced, whatever the level: it is written
/// once, and a `schema` file is never found torn.
fn check_schema(st: &dyn Storage, dir: &Path, requested: &str) -> Result<()> {
    let path = dir.join(SCHEMA);
    match st
        .read_all(&path)
        .map_err(|e| Error::io("read", &path, e))?
    {
        Some(b) => {
            let stored = schema::decode(&b).map_err(|e| {
                let detail = format!(
                    "bad schema file: {e} (delete it: the next open records the item type it is \
                     opened with)"
                );
                Error::corrupt(&path, 0, detail)
            })?;
            if stored != requested {
                // (Boxed strings keep `Error`, and every `Result` a get returns, small.)
                return Err(Error::TypeMismatch {
                    path: dir.to_path_buf(),
                    stored: stored.into(),
                    requested: requested.into(),
                });
            }
            Ok(())
        }
        None => write_atomic(
            st,
            dir,
            SCHEMA,
            SCHEMA_TMP,
            &schema::encode(requested),
            true,
            true,
        ),
    }
}

/// The values in a CRC-valid `info` that no queue writes: damage, named by offset.
fn check_info(info: &Info, path: &Path, singles_at: u64) -> Result<()> {
    if info.acked >= MAX_SEQ {
        return Err(Error::corrupt(
            path,
            16,
            format!("impossible acknowledged count {}", info.acked),
        ));
    }
    if let Some(head) = info.head_chunk
        && head > info.tail_chunk
    {
        return Err(Error::corrupt(
            path,
            52,
            format!(
                "the oldest chunk, q{head:05}, is after the newest, q{:05}",
                info.tail_chunk
            ),
        ));
    }
    if let Some(i) = info.singles.iter().position(|&s| s >= MAX_SEQ) {
        let at = singles_at + 8 * i as u64;
        return Err(Error::corrupt(
            path,
            at,
            format!("impossible acknowledged item {}", info.singles[i]),
        ));
    }
    Ok(())
}

/// Step 3, no `info`: a new queue if the directory holds no queue file, else
/// `MissingInfo` and nothing is touched. `info` first: a crash before the chunk exists
/// leaves a state that step 5 completes. Its tail mark is that of the empty chunk
/// created next.
fn new_queue(st: &dyn Storage, dir: &Path, boot: u128, sync: bool) -> Result<Start> {
    let names = chunks::list(st, dir)?;
    if names
        .iter()
        .any(|n| n == ACKS || parse_chunk_name(n).is_some())
    {
        return Err(Error::MissingInfo {
            path: dir.to_path_buf(),
        });
    }
    let info = Info {
        tail_end: CHUNK_HEADER_LEN as u64,
        boot_id: Some(boot),
        // Nothing written yet: all synced, as far as this level keeps it so.
        all_synced: sync,
        unsynced: !sync,
        ..Info::new(0, 0)
    };
    write_info(st, dir, &info)?;
    Ok(Start {
        info,
        listed: Some(names),
        recovered: Recovery::default(),
    })
}

/// The state steps 4 to 10 build up.
struct Recovering<'a> {
    st: &'a dyn Storage,
    dir: &'a Path,
    sync: bool,
    journal_path: PathBuf,
    /// The journal, opened once: read now, appended to later.
    jfile: Option<Box<dyn StorageFile>>,
    durable: Durable,
    acked: u64,
    singles: BTreeSet<u64>,
    /// Deliveries, attempts and delays.
    work: WorkState,
    /// Chunk file numbers, oldest first.
    chunks: Vec<u64>,
}

impl<'a> Recovering<'a> {
    fn new(st: &'a dyn Storage, dir: &'a Path, sync: bool) -> Result<Recovering<'a>> {
        let journal_path = dir.join(ACKS);
        let jfile = open_if_exists(st, &journal_path, OpenMode::Append)
            .map_err(|e| Error::io("open", &journal_path, e))?;
        Ok(Recovering {
            st,
            dir,
            sync,
            journal_path,
            jfile,
            durable: Durable(false),
            acked: 0,
            singles: BTreeSet::new(),
            work: WorkState::default(),
            chunks: Vec::new(),
        })
    }

    /// Step 4: the acknowledgement state from `info` and the journal. Returns the length
    /// of the journal's valid entries.
    fn merge_acks(&mut self, start: &Start) -> Result<u64> {
        let journal = journal::read(self.jfile.as_deref(), &self.journal_path)?;
        let info = &start.info;
        // Items acknowledged one by one: those the head has reached are absorbed into it.
        let known = Acknowledged::new(
            info.acked.max(journal.head.unwrap_or(0)),
            info.singles.iter().copied().chain(journal.singles),
        );
        (self.acked, self.singles) = (known.head, known.singles);
        self.work = info
            .work
            .merged(journal.delivered, &journal.attempts, &journal.delays);
        Ok(journal.valid_end)
    }

    /// Step 5: finds the chunk files, from `info`'s head and tail chunks or by listing
    /// the directory; recreates the first chunk of a creation cut short. Returns the
    /// newest chunk's file and the oldest's, when opened on the way.
    fn locate_chunks(
        &mut self,
        start: &Start,
    ) -> Result<(Option<Box<dyn StorageFile>>, OldestFile)> {
        let (st, dir, info) = (self.st, self.dir, &start.info);
        // Without a journal (created right after the first chunk), the queue's creation
        // may have been interrupted, which the listing tells apart from a lost chunk.
        let journal_exists = self.jfile.is_some();
        let probed = match (info.head_chunk, &start.listed) {
            (Some(head), None) if journal_exists => {
                chunks::find_chunks(st, dir, head, info.tail_chunk)?
            }
            _ => None,
        };
        let (newest_file, oldest_file) = match probed {
            Some(found) => {
                self.chunks = found.chunks;
                (Some(found.newest), found.oldest)
            }
            None => {
                self.chunks = chunks::listed(st, dir, start.listed.clone())?;
                (None, None)
            }
        };
        if self.chunks.is_empty() {
            // Only a creation interrupted between writing info and creating q00000
            // leaves no chunk file; the journal is created after q00000, so its presence
            // means a chunk file was lost.
            if self.acked != 0 || info.tail_chunk != 0 || journal_exists {
                return Err(Error::corrupt(
                    chunk_path(dir, info.tail_chunk),
                    0,
                    "the chunk file is missing: the directory holds no chunk files, but info records this one",
                ));
            }
            create_chunk(st, dir, 0, 0, self.sync)?;
            self.chunks.push(0);
        }
        chunks::check_numbers(dir, &self.chunks, info.tail_chunk)?;
        Ok((newest_file, oldest_file))
    }

    /// Step 7, the newest end: the two newest chunks form a chain, and the chunk before
    /// an empty newest one ends where the newest begins.
    fn check_newest(&self, firsts: &mut Firsts<'_>, tail: u64, tail_first: u64) -> Result<()> {
        // Headers are read where open acts on them: the two newest chunks (the tail) and
        // the oldest ones (deleted below once acknowledged), so that opening costs the
        // same whatever the number of chunks. The chunks in between the reader checks
        // as it reaches them.
        let chunks = &self.chunks;
        if chunks.len() < 2 {
            return Ok(());
        }
        let i = chunks.len() - 2;
        firsts.check_chain(chunks, i)?;
        if tail == tail_first {
            // The reader checks this for every other chunk on leaving it, but it never
            // leaves this one while the newest is empty. (Damage in it is left for the
            // reader to report.)
            let first = firsts.get(chunks, i)?;
            let mut r = ChunkReader::open(self.st, self.dir, chunks[i])?;
            let records = chunks::count_intact(&mut r)?;
            chunks::ends_before(&r, first, records, tail_first, false)?;
        }
        Ok(())
    }

    /// Step 7, the oldest end: deletes each leading chunk whose successor starts at or
    /// before the head, after checking its records end exactly there; then the oldest
    /// chunk must hold the head. Returns the reader of the oldest chunk.
    fn drop_consumed(
        &mut self,
        firsts: &mut Firsts<'_>,
        oldest: OldestFile,
    ) -> Result<ChunkReader> {
        let (st, dir) = (self.st, self.dir);
        // The oldest chunk, found open by `find_chunks` (unless the tail's recovery
        // deleted chunks down to it: then a new file may have its number).
        let mut head = match oldest {
            Some((no, f)) if self.chunks.len() >= 2 && self.chunks[0] == no => {
                ChunkReader::on(f, chunk_path(dir, no), no)?
            }
            _ => ChunkReader::open(st, dir, self.chunks[0])?,
        };
        while self.chunks.len() >= 2 && self.acked >= firsts.get(&self.chunks, 1)? {
            let records = chunks::count_records(&mut head)?;
            let next = firsts.get(&self.chunks, 1)?;
            chunks::ends_before(&head, head.header.first_seq, records, next, true)?;
            self.remove_chunk(self.chunks[0])?;
            self.chunks.remove(0);
            firsts.remove_oldest();
            head = ChunkReader::open(st, dir, self.chunks[0])?;
        }
        if self.chunks.len() >= 2 {
            firsts.known(0, head.header.first_seq);
            firsts.check_chain(&self.chunks, 0)?;
        }
        if head.header.first_seq > self.acked {
            return Err(Error::corrupt(
                &head.path,
                0,
                format!(
                    "the oldest chunk starts at item {} but items from {} on were never acknowledged: chunk files were removed",
                    head.header.first_seq, self.acked
                ),
            ));
        }
        Ok(head)
    }

    /// Deletes a chunk file whose items are all acknowledged. At `Synced`, once what says
    /// so is durable: the journal as read may hold entries of a write the crash cut, never
    /// synced. (Below `Synced` a later power loss may keep the deletion and lose the
    /// entries; step 3a recognizes that state.)
    fn remove_chunk(&mut self, no: u64) -> Result<()> {
        self.make_acks_durable()?;
        let p = chunk_path(self.dir, no);
        self.st.remove(&p).map_err(|e| Error::io("remove", &p, e))
    }

    fn make_acks_durable(&mut self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        let (st, dir, path) = (self.st, self.dir, &self.journal_path);
        self.durable
            .ensure(st, dir, self.jfile.as_deref_mut(), path)
    }

    /// Step 8: acknowledgements reached the disk but items they cover did not (a power
    /// loss below `Synced`, before step 3a existed): those are gone; a new chunk at the
    /// head keeps sequence numbers unique. Returns its writer and reader.
    fn restart_at_head(&mut self, tail: u64) -> Result<Option<(Writer, ChunkReader)>> {
        if self.chunks.len() != 1 || self.acked <= tail {
            return Ok(None);
        }
        let old = self.chunks[0];
        self.make_acks_durable()?;
        // The new chunk is durable before the old one goes (`create_chunk` syncs only at
        // `Synced`): a power loss must not leave neither.
        let writer = create_chunk(self.st, self.dir, old + 1, self.acked, true)?;
        let p = chunk_path(self.dir, old);
        self.st.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
        self.chunks = vec![old + 1];
        Ok(Some((
            writer,
            ChunkReader::open(self.st, self.dir, old + 1)?,
        )))
    }

    /// Step 9: drops singles at or after the tail (their items are not there), and skips
    /// the acknowledged records of the oldest chunk, checking each.
    fn skip_acknowledged(&mut self, head: &mut ChunkReader, tail: u64) -> Result<()> {
        self.singles.retain(|&s| s < tail);
        let (acked, singles) = (self.acked, &self.singles);
        self.work
            .retain_live(tail, |s| s < acked || singles.contains(&s));
        for _ in head.header.first_seq..self.acked {
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
                            "the chunk ends before item {}, which info and the journal place in it",
                            self.acked
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Step 10: the journal, ready for appends: created if missing (with a directory
    /// sync at every level: entries synced into a file whose name is not durable would
    /// vanish with it), a cut entry truncated, and at `Synced` synced.
    fn ready_journal(&mut self, valid_len: u64) -> Result<Journal> {
        let (st, dir, path) = (self.st, self.dir, self.journal_path.clone());
        let mut file = match self.jfile.take() {
            Some(f) => f,
            None => {
                let f = st
                    .open(&path, OpenMode::CreateNew)
                    .map_err(|e| Error::io("create", &path, e))?;
                st.sync_dir(dir)
                    .map_err(|e| Error::io("sync directory", dir, e))?;
                f
            }
        };
        let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
        if len != valid_len {
            file.set_len(valid_len)
                .map_err(|e| Error::io("truncate", &path, e))?;
        }
        if self.sync {
            // Durable before new entries go over the cut ones, or over the entries an
            // emptying whose sync failed in the last session left behind.
            file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
        }
        Ok(Journal {
            path,
            file,
            len: valid_len,
            all_synced: self.sync,
        })
    }
}

/// The engine's list of chunks, with the first items already known: headers read by
/// recovery (chained, so consistent) need not be read again.
fn chunk_meta(
    chunks: &[u64],
    firsts: &Firsts<'_>,
    head_first: u64,
    tail_first: u64,
) -> VecDeque<ChunkMeta> {
    let mut meta: VecDeque<ChunkMeta> = chunks
        .iter()
        .map(|&no| ChunkMeta {
            no,
            first_seq: None,
        })
        .collect();
    for (m, first) in meta.iter_mut().zip(&firsts.known) {
        m.first_seq = *first;
    }
    meta[0].first_seq = Some(head_first);
    meta.back_mut().expect("not empty").first_seq = Some(tail_first);
    meta
}
