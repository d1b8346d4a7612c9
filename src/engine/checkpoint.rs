//! Checkpoints: folding the journal into a new `info`, replaced atomically, and leaving a
//! drained queue's large chunk (FORMAT.md §checkpoint).

use crate::engine::ChunkMeta;
use crate::engine::{DRAINED_CHUNK_BYTES, Engine, INFO, INFO_TMP, check_dir, create_error};
use crate::error::{Error, Result};
use crate::format::Info;
use crate::options::Durability;
use crate::reserve::SHORT_JOURNAL;
use crate::storage::{OpenMode, Storage, remove_if_exists};
use crate::writer::create_chunk;
use std::path::Path;

impl Engine {
    /// Whether a journal of `len` bytes wants a checkpoint: at `journal_room`, or at
    /// [`SHORT_JOURNAL`] while the reserve is missing (see there).
    #[inline]
    pub(crate) fn journal_is_full(&self, len: u64) -> bool {
        len >= self.journal_room || (len >= SHORT_JOURNAL && !self.reserve.present())
    }

    /// Whether every item is written, gotten and acknowledged while the writer's chunk
    /// has grown past [`DRAINED_CHUNK_BYTES`]: the chunk holds only dead bytes. (The
    /// checkpoint that then leaves it makes the acknowledgements durable before it
    /// deletes anything.)
    pub(crate) fn drained_chunk_is_large(&self) -> bool {
        self.pending_count == 0
            && self.writing == 0
            && self.read == self.written
            && self.acks.head() == self.written
            && self.writer.as_ref().is_some_and(|w| {
                // Never more than a full chunk (tests make them small, to exercise this).
                w.count > 0 && w.written >= DRAINED_CHUNK_BYTES.min(self.chunk_limit.bytes)
            })
    }

    /// Starts a new chunk when the writer's is large and fully acknowledged
    /// ([`drained_chunk_is_large`](Self::drained_chunk_is_large)), so that the checkpoint
    /// after it can delete the old one: a drained queue frees its disk even when its
    /// chunks are large (up to 64 MiB of 4 KiB items) and no more puts come. The chunk
    /// is created as a put's rollover would create it, so recovery sees nothing new. The
    /// writer must be home. A full disk leaves the old chunk in place (puts then fail
    /// the same way).
    fn leave_drained_chunk(&mut self) -> Result<()> {
        if !self.drained_chunk_is_large() {
            return Ok(());
        }
        let w = self.writer.as_mut().expect("writer is home");
        let sync = self.durability == Durability::Synced;
        let next = create_chunk(&*self.storage, &self.dir, w.chunk + 1, self.written, sync);
        let next = match next {
            Ok(next) => next,
            Err(e) if e.is_no_space() => return Ok(()),
            Err(e) => return Err(self.poison(e)),
        };
        // The old file's reserved zeros go with it; it is deleted below it anyway.
        let _ = w.file.set_len(w.written);
        self.chunks.push_back(ChunkMeta {
            no: next.chunk,
            first_seq: Some(next.first_seq),
        });
        self.writer_chunk = next.chunk;
        self.writer_end = next.written;
        self.writer = Some(next);
        self.checkpoint_wanted = true;
        Ok(())
    }

    /// Folds the journal into a new `info`: write everything pending, replace `info`
    /// atomically, then empty the journal. A crash between the last two steps leaves
    /// journal entries no newer than `info`, which recovery's maximum ignores. Both files
    /// must be home.
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        self.check()?;
        if let Err(e) = check_dir(&*self.storage, &self.dir) {
            return Err(self.poison(e));
        }
        self.write_pending_locked()?;
        self.leave_drained_chunk()?;
        let mut work = self.retries.snapshot(self.acks.head(), self.acks.singles());
        self.marks.forget_before(self.acks.head());
        work.marks = self.marks.recorded();
        let w = self.writer.as_ref().expect("writer is home");
        let info = Info {
            acked: self.acks.head(),
            tail_chunk: w.chunk,
            // Everything up to here is written (and synced, at the synced level): the
            // next recovery scans only what comes after.
            tail_end: w.written,
            tail_count: w.count,
            tail_last_len: w.last_len,
            // Chunks are deleted oldest first, after this, so it stays a lower bound of
            // the oldest chunk file (a chunk whose deletion failed is still listed).
            head_chunk: self.chunks.front().map(|c| c.no),
            boot_id: Some(self.storage.boot_id()),
            // Below `Synced` the writes since open are not synced.
            all_synced: self.synced() && self.opened_synced,
            singles: self.acks.singles().iter().collect(),
            work,
            unsynced: !(self.synced() || self.durable_info_once),
        };
        let journal_empty = self.journal.as_ref().is_some_and(|j| j.len == 0);
        // The same, or the same but synced on disk where this one need not be.
        let same = || {
            self.info_on_disk.as_ref().is_some_and(|d| {
                d == &info
                    || (info.unsynced
                        && !d.unsynced
                        && d == &Info {
                            unsynced: false,
                            ..info.clone()
                        })
            })
        };
        if journal_empty && same() {
            // Nothing changed since `info` was written or read (a queue opened and
            // closed untouched): a new `info` would be the same bytes, and creating
            // `info.tmp` costs 0.1-0.7 ms on an ext4 without journal.
            self.checkpoint_wanted = false;
            self.delete_acked_chunks(true);
            return Ok(());
        }
        let (st, dir) = (&*self.storage, &self.dir);
        let len = match self
            .reserve
            .with_room(st, dir, || write_info(st, dir, &info))
        {
            Ok(len) => len,
            Err(e) => {
                self.info_on_disk = None;
                // A full disk changed nothing: `info` is the old one, tried again later.
                return Err(if e.is_no_space() { e } else { self.poison(e) });
            }
        };
        self.journal_room = journal_room(self.journal_limit, len);
        self.durable_info_once = false;
        self.info_on_disk = Some(info);
        let sync = self.synced();
        let j = self.journal.as_mut().expect("journal is home");
        // At the synced level the emptied journal is made durable before new entries are
        // appended over the old ones' place: a power loss then cannot mix the two.
        let res = j
            .file
            .set_len(0)
            .map_err(|e| Error::io("truncate", &j.path, e));
        let res = res.and_then(|()| {
            if sync {
                j.file
                    .sync_data()
                    .map_err(|e| Error::io("sync", &j.path, e))
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            return Err(self.poison(e));
        }
        j.len = 0;
        j.all_synced = sync;
        self.acks.checkpointed();
        self.retries.checkpointed();
        self.checkpoint_wanted = false;
        self.delete_acked_chunks(true);
        Ok(())
    }
}

/// An `info` this long or longer makes room for more journal (`journal_room`).
const LARGE_INFO: u64 = 16 * 1024;

/// The journal length that wants a checkpoint after an `info` of `info_len` bytes:
/// `limit`, or twice the `info`'s length when that is large (many delays or attempt
/// counts waiting: a retry storm), so that such an `info` is rewritten once per as many
/// journal bytes, not once per `limit`: a checkpoint then writes at most half as many
/// bytes as the journal took since the last, and recovery reads a journal at most twice
/// the `info` it reads anyway. A small `info` costs little to rewrite (and tests that set
/// a tiny limit to checkpoint often keep it exact).
pub(crate) fn journal_room(limit: u64, info_len: u64) -> u64 {
    if info_len >= LARGE_INFO {
        limit.max(info_len.saturating_mul(2))
    } else {
        limit
    }
}

/// Replaces `<dir>/info` atomically: temporary file, (sync), rename, (sync directory);
/// synced unless `info.unsynced`. Below `Synced` nothing is synced: a power loss can then
/// persist the rename without the data, leaving `info` empty or zero, or keep its header
/// and tear its body (its lists), which `open` recognizes after a restart (FORMAT.md
/// §info, §open steps 3 and 3a); an fdatasync here would make ext4 (data=ordered) write
/// back every dirty page of the queue first.
/// Returns the new `info`'s length.
pub(crate) fn write_info(storage: &dyn Storage, dir: &Path, info: &Info) -> Result<u64> {
    let sync = !info.unsynced;
    let bytes = info.encode();
    write_atomic(storage, dir, INFO, INFO_TMP, &bytes, sync, sync)?;
    Ok(bytes.len() as u64)
}

/// Replaces `<dir>/<name>` by `bytes` atomically: written to `<dir>/<tmp>`, synced when
/// `sync_data`, renamed over `name`, the directory synced when `sync_dir`. Every durable
/// metadata update goes through here.
pub(crate) fn write_atomic(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    tmp: &str,
    bytes: &[u8],
    sync_data: bool,
    sync_dir: bool,
) -> Result<()> {
    let (tmp, path) = (dir.join(tmp), dir.join(name));
    // A leftover of an interrupted write is removed, not truncated and reused: below
    // `Synced` a power loss could keep the rename below and give the file back its old,
    // unsynced bytes (a stale or partial `info`). A new file comes back empty or zero,
    // which `open` rebuilds.
    remove_if_exists(storage, &tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    let mut f = storage
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| create_error(storage, dir, &tmp, e))?;
    f.append(bytes)
        .map_err(|e| Error::write("write", &tmp, e))?;
    if sync_data {
        f.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
    }
    drop(f);
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::write("rename over", &path, e))?;
    if sync_dir {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(())
}
