//! Group commit: how appends reach the files, shared between concurrent callers.
//!
//! A `put` accepts its frame into the engine's pending buffer under the lock. If no write
//! is under way, the caller becomes the *leader*. When a sync follows (or the batch is
//! large) it takes the writer and the whole pending buffer out of the engine, releases
//! the lock, writes the batch with one append (and one `fdatasync` at the synced level),
//! takes the lock again and publishes the items; without a sync a small batch is only a
//! copy into the mapped reserve, done under the lock. The leader goes on while more
//! frames arrived meanwhile, until its own frame is published, then returns: a caller
//! whose frame is still pending leads next. Callers that find a write under way are
//! *followers*: they wait until their frame is published or they can lead. Concurrent
//! puts thus share one write and one sync, and consumers keep getting while a sync is
//! in the kernel. Before a sync a leader waits briefly for the callers its predecessor's
//! sync released, if they are putting again (`gather`), so that they share the next one.
//!
//! Acknowledgements work the same way with the journal: entries hold absolute counts, so
//! one entry with the newest count covers every `task_done` that came before it.

use crate::acks::ToJournal;
use crate::engine::{ACKS, Engine, Fate, Journal, write_frames};
use crate::error::{Error, Result};
use crate::format::{ACK_ENTRY_LEN, AckEntry};
use crate::retries::DeliveryEntries;
use parking_lot::{Condvar, MutexGuard};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Instant;

/// Batches up to this size are written without releasing the queue lock, unless a sync
/// follows (which is where sharing the work with other callers pays).
const LOCKED_WRITE: usize = 64 * 1024;

/// The condition variables a leader signals.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Items became gettable.
    pub(crate) not_empty: crate::waitlist::WaitList,
    /// A write or journal entry completed, or a leader gave its file back.
    pub(crate) progress: Condvar,
    /// The callers a gathering leader waits for are back (`gather`).
    pub(crate) joined: Condvar,
}

/// Writes the frames pending now (those enqueued while it writes are left to their own
/// callers: a consumer that writes the item it wants must not chase producers that keep
/// adding, which kept a `get_timeout` of 10 ms writing for minutes). The writer must be
/// home.
pub(crate) fn lead_writes(e: &mut MutexGuard<'_, Engine>, sig: &Signals) -> Result<()> {
    let last = e.accepted().saturating_sub(1);
    lead_writes_until(e, sig, last)
}

/// Waits until item `seq`, whose batch's fate is `fate`, is written, leading whenever
/// the writer is home: a caller whose frame is pending becomes the next leader as soon
/// as the last one is done. [`Error::NoSpace`] when the disk was full and the item was
/// not stored.
pub(crate) fn write_through(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    seq: u64,
    fate: &Fate,
) -> Result<()> {
    if e.synced() {
        e.pending_callers += 1;
        if e.returning > 0 {
            e.returning -= 1;
            if e.returning == 0 {
                sig.joined.notify_one();
            }
        }
    }
    let mut no_space = None;
    loop {
        match fate.stored(seq) {
            Some(true) => return Ok(()),
            Some(false) => return Err(no_space.unwrap_or_else(|| e.no_space("append to", ""))),
            None => {}
        }
        e.check()?;
        if e.writer.is_some() {
            // A full disk settles this item's fate, which the loop then reads: the
            // item may be among those written before the failed append.
            match lead_writes_until(e, sig, seq) {
                Err(err) if err.is_no_space() => no_space = Some(err),
                r => r?,
            }
        } else {
            sig.progress.wait(e);
        }
    }
}

/// Writes one put's frame straight from the caller's buffer, when no sync follows,
/// nothing is pending and no leader has the writer: what enqueueing it and leading
/// (`write_through`) would do, without copying the frame into the pending buffer and
/// back out. Puts at `Written`, the two binaries alternated (medians of the ratios): 64-
/// byte items 1.24x and 4 KiB items 1.07x (10 and 20 pairs) when the write under the
/// lock still left an empty pending buffer behind; since it leaves the spare one
/// (`Engine::write_pending_locked`), this path still gives 64-byte items 1.13x and 4 KiB
/// items 1.00x (10 pairs each). Returns `false`, having done nothing, otherwise.
pub(crate) fn write_alone(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    frame: &[u8],
) -> Result<bool> {
    if e.synced() || e.pending_count > 0 || e.writer.is_none() || frame.len() > LOCKED_WRITE {
        return Ok(false);
    }
    let _wake = WakeOnPanic(sig);
    e.check()?;
    e.room_for_puts()?;
    // Counted before the write: a full disk drops it again (`Engine::unstored`).
    e.queued_bytes += frame.len() as u64;
    if let Err(err) = e.write_locked(frame, 1) {
        if e.poisoned() {
            // Waiters (a get on an empty queue) would otherwise sleep on for good.
            sig.progress.notify_all();
            sig.not_empty.notify_all();
        }
        return Err(err);
    }
    sig.progress.notify_all();
    sig.not_empty.notify_all();
    checkpoint_if_due(e, sig)?;
    Ok(true)
}

/// Writes pending frames until item `seq` is written (or none are left). Frames that
/// arrived meanwhile are left to their callers, one of whom leads next, so that a
/// leader does not keep writing (and syncing) for others while its own call could
/// return.
fn lead_writes_until(e: &mut MutexGuard<'_, Engine>, sig: &Signals, seq: u64) -> Result<()> {
    let _wake = WakeOnPanic(sig);
    while e.pending_count > 0 && e.written <= seq {
        e.check()?;
        if !e.synced() && e.pending.len() <= LOCKED_WRITE {
            // Without a sync an append is a copy into the mapped reserve (FORMAT.md
            // §Preallocation): cheaper than letting go of the lock and taking it again.
            e.write_pending_locked()?;
            sig.progress.notify_all();
            sig.not_empty.notify_all();
            continue;
        }
        let mut w = e.writer.take().expect("writer is home");
        let sync = e.synced();
        if sync {
            gather(e, sig);
            if let Err(err) = e.check() {
                e.writer = Some(w);
                sig.progress.notify_all();
                return Err(err);
            }
        }
        let spare = std::mem::take(&mut e.spare);
        let batch = std::mem::replace(&mut e.pending, spare);
        let n = std::mem::take(&mut e.pending_count);
        let fate = e.pending_fate.take();
        let callers = std::mem::take(&mut e.pending_callers);
        // Still accepted while out: a `put` enqueued meanwhile numbers its item after
        // these, and `len`, `queued` and `unfinished` do not dip.
        e.writing = n;
        let (storage, dir, limit) = (e.storage.clone(), e.dir.clone(), e.chunk_limit);
        let started = Instant::now();
        let mut new_chunks = Vec::new();
        let res = MutexGuard::unlocked(e, || {
            catch_unwind(AssertUnwindSafe(|| {
                write_frames(
                    &*storage,
                    &dir,
                    &mut w,
                    &batch,
                    limit,
                    sync,
                    &mut new_chunks,
                )
            }))
        });
        if sync {
            e.last_sync = started.elapsed();
            e.returning = callers;
        }
        let res = match res {
            Ok(res) => res,
            Err(panic) => {
                // The write panicked: give the writer back so that nobody waits for it,
                // poison (the file's state is unknown), and let the panic go on.
                e.writer = Some(w);
                e.set_poisoned();
                resume_unwind(panic);
            }
        };
        let res = e.writer_home(w, &batch, n, new_chunks, res);
        e.settle(fate, &res);
        e.recycle(batch);
        sig.progress.notify_all();
        res?;
        sig.not_empty.notify_all();
    }
    checkpoint_if_due(e, sig)
}

/// Before a synced batch, waits a little for the callers of the last one to come back.
///
/// Callers released by a sync tend to put again at once (a thread per request, each
/// waiting for its item to be durable), but on a busy machine they come back one by one,
/// after the next leader, who found the writer home, started its own sync with only the
/// callers that had queued meanwhile. The callers then split into cohorts that take turns,
/// each sync carrying a part of them. Waiting, with the writer out and the lock free, until
/// the last batch's callers have put again, or for at most half of its sync's time, merges
/// them into one batch per sync. A lone caller is its own last batch and never waits.
/// Callers that do not come back cost the next leader one wait, of at most half a sync;
/// the count is anonymous, so any caller arriving counts as one coming back.
fn gather(e: &mut MutexGuard<'_, Engine>, sig: &Signals) {
    if e.returning == 0 {
        return;
    }
    let deadline = Instant::now() + e.last_sync / 2;
    while e.returning > 0 && !sig.joined.wait_until(e, deadline).timed_out() {}
    e.returning = 0;
}

/// Journals acknowledgements until the journal holds the newest state. The journal must
/// be home.
pub(crate) fn lead_acks(e: &mut MutexGuard<'_, Engine>, sig: &Signals) -> Result<()> {
    lead_acks_until(e, sig, u64::MAX)
}

/// Waits until acknowledging call `generation` is journaled, leading whenever the
/// journal is home (as `write_through` does for items).
pub(crate) fn journal_through(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    generation: u64,
) -> Result<()> {
    while !e.acks.journaled_through(generation) {
        e.check()?;
        if e.journal.is_some() {
            lead_acks_until(e, sig, generation)?;
        } else {
            sig.progress.wait(e);
        }
    }
    Ok(())
}

/// The fast path of a get at `Written` (and at `Synced` when `unsynced`, see
/// `Queue::record_deliveries`): when nothing but this get's delivery waits to be
/// journaled and the journal is home, appends the one *delivered* entry in place (a copy
/// into the mapped journal) without the leader's hand-over, and without a sync. `None`
/// when it does not apply, or the append failed (the general path then tries again and
/// reports).
pub(crate) fn journal_delivery(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    unsynced: bool,
) -> Option<Result<()>> {
    use crate::options::Durability;
    let level_ok = e.durability == Durability::Written || (unsynced && e.synced());
    if !level_ok || e.acks.unjournaled() > 0 {
        return None;
    }
    let (delivered, attempts) = e.retries.take_simple()?;
    let synced_level = e.synced();
    let j = e.journal.as_mut()?;
    // At `Synced`, an entry appended when every byte before it is synced carries the
    // sync mark even though it is not synced itself: what the mark vouches for is what
    // comes before it (FORMAT.md §acks), and so damage there stays detectable.
    let mut mark = synced_level && j.all_synced;
    let mut buf = [0u8; 3 * ACK_ENTRY_LEN];
    let mut n = 0;
    if let Some((seq, count)) = attempts {
        n = AckEntry::Attempts { seq, n: count }.encode_slice(mark, &mut buf);
        mark = false;
    }
    if let Some(d) = delivered {
        AckEntry::Delivered(d).encode_marked_into(mark, &mut buf[n..n + ACK_ENTRY_LEN]);
        n += ACK_ENTRY_LEN;
    }
    let entry = &buf[..n];
    let res = catch_unwind(AssertUnwindSafe(|| j.file.append(entry)));
    match res {
        Ok(Ok(())) => {
            j.len += n as u64;
            j.all_synced = false;
            let len = j.len;
            let full = e.journal_is_full(len);
            e.retries.simple_journaled(delivered, attempts.is_some());
            if full {
                e.checkpoint_wanted = true;
                return Some(checkpoint_if_due(e, sig));
            }
            Some(Ok(()))
        }
        Ok(Err(_)) => {
            // Whatever reached the file is cut off; the general path writes it again.
            if let Err(err) = j.file.set_len(j.len) {
                // The journal's end is unknown now: say why, once; later calls say
                // `Poisoned`.
                let err = Error::io("truncate", &j.path, err);
                return Some(Err(e.poison(err)));
            }
            None
        }
        Err(panic) => {
            e.set_poisoned();
            resume_unwind(panic);
        }
    }
}

/// Journals acknowledgements until call `generation` is journaled (or all are).
fn lead_acks_until(e: &mut MutexGuard<'_, Engine>, sig: &Signals, generation: u64) -> Result<()> {
    let _wake = WakeOnPanic(sig);
    while (e.acks.unjournaled() > 0 || e.retries.unwritten())
        && !e.acks.journaled_through(generation)
    {
        e.check()?;
        let entry = e.acks.take_entry();
        let mut work = e.retries.take_entries();
        let head_changed = entry.head != e.acks.head_written();
        let sync = e.synced();
        let append = |j: &mut Journal| -> Result<()> {
            // The first entry of a synced append after a synced journal carries the sync
            // mark (FORMAT.md §acks).
            let mark = sync && j.all_synced;
            j.all_synced = false;
            // A full disk is `NoSpace` (see `journal_failed`); a failed sync is not.
            let appended = append_entries(j, &entry, &work, head_changed, mark)
                .map_err(|err| Error::write("append to", &j.path, err))?;
            j.len += appended as u64;
            if sync {
                j.file
                    .sync_data()
                    .map_err(|err| Error::io("sync", &j.path, err))?;
                j.all_synced = true;
            }
            Ok(())
        };
        // Without a sync the append is a copy into the mapped reserve: done under the
        // lock, as for small writes. The error is left in `failed` rather than returned
        // through `catch_unwind`, which copied the whole `Result` with 16-byte loads of
        // the 8-byte discriminant just stored: a stall at every acknowledgement.
        let mut failed = None;
        let guarded = |j: &mut Journal, failed: &mut Option<Error>| {
            catch_unwind(AssertUnwindSafe(|| {
                if let Err(err) = append(j) {
                    *failed = Some(err);
                }
            }))
        };
        let caught = if sync {
            let mut j = e.journal.take().expect("journal is home");
            let caught = MutexGuard::unlocked(e, || guarded(&mut j, &mut failed));
            e.journal = Some(j);
            caught
        } else {
            // In place: taken out and put back, the journal was copied with 16-byte loads
            // of the length just stored 8 bytes at a time, a stall the CPU cannot forward.
            guarded(e.journal.as_mut().expect("journal is home"), &mut failed)
        };
        if let Err(panic) = caught {
            // As for writes: the journal is home, the queue is poisoned.
            e.set_poisoned();
            resume_unwind(panic);
        }
        if let Some(err) = failed {
            e.retries.not_journaled(work);
            let j = e.journal.take().expect("journal is home");
            return journal_failed(e, sig, j, entry, err);
        }
        let full = e.journal.as_ref().is_some_and(|j| e.journal_is_full(j.len));
        sig.progress.notify_all();
        e.acks.journaled(&entry);
        e.retries.journaled(&mut work);
        e.checkpoint_wanted |= full;
        e.delete_acked_chunks(false);
        // A drained queue leaves its large chunk (at the checkpoint just below).
        e.checkpoint_wanted |= e.drained_chunk_is_large() && e.writer.is_some();
    }
    checkpoint_if_due(e, sig)
}

/// Appends one journal append's entries: deliveries, attempts and delays, the singles,
/// and the head when it moved (or when nothing else is to be written); the first entry
/// carries the sync mark when `mark`. Returns the bytes appended. The common cases (an
/// acknowledgement, a get, or both) are built on the stack.
fn append_entries(
    j: &mut Journal,
    entry: &ToJournal,
    work: &DeliveryEntries,
    head_changed: bool,
    mark: bool,
) -> std::io::Result<usize> {
    let head = (head_changed || (entry.singles.is_empty() && work.is_empty()))
        .then_some(AckEntry::Head(entry.head));
    let delivered = work.delivered.map(AckEntry::Delivered);
    if entry.singles.is_empty() && work.attempts.is_empty() && work.delays.is_empty() {
        let mut buf = [0u8; 2 * ACK_ENTRY_LEN];
        let mut n = 0;
        for e in [delivered, head].into_iter().flatten() {
            e.encode_marked_into(mark && n == 0, &mut buf[n..n + ACK_ENTRY_LEN]);
            n += ACK_ENTRY_LEN;
        }
        j.file.append(&buf[..n])?;
        return Ok(n);
    }
    // Pairs take two units; the delivered mark and the head one each.
    let units = 2 * (work.attempts.len() + work.delays.len()) + entry.singles.len() + 2;
    let entries = work
        .attempts
        .iter()
        .map(|&(seq, n)| AckEntry::Attempts { seq, n })
        .chain(
            work.delays
                .iter()
                .map(|&(seq, due)| AckEntry::Delay { seq, due }),
        )
        .chain(delivered)
        .chain(entry.singles.iter().map(|&s| AckEntry::Single(s)))
        .chain(head);
    // A `nack_after` (an attempts and a delay pair, a head) fits on the stack.
    let mut stack = [0u8; STACK_UNITS * ACK_ENTRY_LEN];
    let mut heap = Vec::new();
    let buf = if units <= STACK_UNITS {
        &mut stack[..]
    } else {
        heap.resize(units * ACK_ENTRY_LEN, 0);
        &mut heap[..]
    };
    let mut n = 0;
    for (i, e) in entries.enumerate() {
        n += e.encode_slice(mark && i == 0, &mut buf[n..]);
    }
    j.file.append(&buf[..n])?;
    Ok(n)
}

/// Units of a journal append built on the stack (more go to the heap).
const STACK_UNITS: usize = 8;

/// After a failed journal append. A full disk poisons nothing: the acknowledgements stay
/// in memory (`singles` back in line) to be journaled by the next leader, once the
/// reserve is given up for them (retried at once) or later calls find room; until then
/// a crash may deliver them again (`Error::AckNotDurable`). Any other failure poisons.
fn journal_failed(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    mut j: Journal,
    entry: ToJournal,
    err: Error,
) -> Result<()> {
    // Whatever part of the entries reached the file is cut off again.
    let cut = if err.is_no_space() {
        j.file
            .set_len(j.len)
            .map_err(|e| Error::io("truncate", &j.path, e))
    } else {
        Err(err)
    };
    e.journal = Some(j);
    sig.progress.notify_all();
    match cut {
        Err(other) => Err(e.poison(other)),
        Ok(()) => {
            e.acks.not_journaled(entry);
            let (st, dir) = (e.storage.clone(), e.dir.clone());
            match e.reserve.release(&*st, &dir) {
                Ok(true) => return lead_acks(e, sig),
                Ok(false) => {}
                // The acknowledgement took effect: an error the caller may take for
                // "not acknowledged" must poison, as any failed journal write does.
                Err(other) => return Err(e.poison(other)),
            }
            Err(Error::AckNotDurable {
                op: "append to",
                path: e.dir.join(ACKS),
                source: std::io::ErrorKind::StorageFull.into(),
            })
        }
    }
}

/// Wakes every waiter when a leader unwinds: followers then find the file home and the
/// queue poisoned, and return `Error::Poisoned` instead of waiting for ever.
struct WakeOnPanic<'a>(&'a Signals);

impl Drop for WakeOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.progress.notify_all();
            self.0.not_empty.notify_all();
        }
    }
}

/// Runs a wanted checkpoint once no leader has a file out.
fn checkpoint_if_due(e: &mut MutexGuard<'_, Engine>, sig: &Signals) -> Result<()> {
    if e.checkpoint_wanted && e.writer.is_some() && e.journal.is_some() {
        let written = e.written;
        let res = e.checkpoint();
        if e.written != written {
            // The checkpoint wrote frames pending for other callers (a leader returns once
            // its own item is written): wake them, and consumers, as a leader would.
            sig.progress.notify_all();
            sig.not_empty.notify_all();
        }
        match res {
            // Wanted again at the next chance: nothing depends on it but the time the
            // next open takes, and the call that ran it did what it was for.
            Err(err) if err.is_no_space() => {}
            r => r?,
        }
    }
    Ok(())
}

/// Waits until no leader has a file out, so that the caller may use both.
pub(crate) fn wait_idle(e: &mut MutexGuard<'_, Engine>, sig: &Signals) {
    while e.writer.is_none() || e.journal.is_none() {
        sig.progress.wait(e);
    }
}

/// Syncs the chunk files from `first` to the writer's, and the directory (a chunk
/// created below `Synced` is not yet durable).
/// (For `Queue::put_raw_synced`.)
pub(crate) fn sync_chunks_since(
    e: &mut MutexGuard<'_, Engine>,
    sig: &Signals,
    first: u64,
) -> Result<()> {
    wait_idle(e, sig);
    for no in first..=e.writer_chunk {
        let path = crate::reader::chunk_path(&e.dir, no);
        let res = if no == e.writer_chunk {
            let w = e.writer.as_mut().expect("writer is home");
            w.file.sync_data()
        } else {
            e.storage
                .open(&path, crate::storage::OpenMode::Read)
                .and_then(|mut f| f.sync_data())
        };
        if let Err(err) = res {
            return Err(e.poison(Error::io("sync", &path, err)));
        }
    }
    let dir = e.dir.clone();
    if let Err(err) = e.storage.sync_dir(&dir) {
        return Err(e.poison(Error::io("sync directory", &*dir, err)));
    }
    Ok(())
}
