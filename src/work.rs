//! The work-queue side of [`Queue`]: taking the next item (given-back items first; items
//! that may not be delivered again go to the dead letters on the way), settling
//! deliveries (acknowledge, give back, dead-letter, extend a lease), and putting the
//! dead letters back.

use crate::codec;
use crate::commit::{journal_through, lead_acks, lead_writes, wait_idle, write_through};
use crate::dead_letters::{DeadLetters, DeadRecord};
use crate::delivery::Ticket;
use crate::engine::{ACK_BATCH, Engine};
use crate::error::Result;
use crate::format::frame_into;
use crate::options::Durability;
use crate::queue::Queue;
use crate::retries::{Handed, Loc};
use parking_lot::MutexGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Hands out the next item, which is there: the oldest given back and deliverable,
    /// else the reader's next (written). `None` when that item went to the dead letters
    /// instead (it used up its deliveries, or does not decode): look again. Inlined (as
    /// `take_waiting` is): a result returned through memory was read back with 16-byte
    /// loads of 8-byte stores, a stall at every get.
    #[inline(always)]
    pub(crate) fn take(&self, e: &mut MutexGuard<'_, Engine>) -> Result<Option<(T, Handed)>> {
        if let Some((seq, loc)) = e.retries().first_ready() {
            let payload = e.read_again(seq, loc)?;
            let decoded = match self.exhausted(e, seq) {
                Some(reason) => Err(reason),
                None => codec::decode(&payload).map_err(|err| undecodable(&err)),
            };
            return match decoded {
                Ok(item) => {
                    e.take_ready(seq);
                    Ok(Some((item, e.deliver(seq, loc))))
                }
                Err(reason) => {
                    self.bury_taken(e, seq, loc, payload, reason, true)?;
                    Ok(None)
                }
            };
        }
        let peeked = e.peek()?;
        let (seq, loc) = (e.read(), e.peeked_loc());
        let decoded = match self.exhausted(e, seq) {
            Some(reason) => Err(reason),
            // Decoded under the lock: no other consumer takes the item meanwhile.
            None => codec::decode(e.payload(&peeked)).map_err(|err| undecodable(&err)),
        };
        match decoded {
            Ok(item) => {
                e.advance(peeked);
                Ok(Some((item, e.deliver(seq, loc))))
            }
            Err(reason) => {
                let payload = e.payload(&peeked).to_vec();
                e.advance(peeked);
                self.bury_taken(e, seq, loc, payload, reason, false)?;
                Ok(None)
            }
        }
    }

    /// Moves the item a get would take next to the dead letters when it used up its
    /// deliveries (for `peek`, which shows what a get returns); true when it did.
    pub(crate) fn bury_exhausted_front(&self, e: &mut MutexGuard<'_, Engine>) -> Result<bool> {
        if self.max_deliveries.is_none() {
            return Ok(false);
        }
        if let Some((seq, loc)) = e.retries().first_ready() {
            let Some(reason) = self.exhausted(e, seq) else {
                return Ok(false);
            };
            let payload = e.read_again(seq, loc)?;
            self.bury_taken(e, seq, loc, payload, reason, true)?;
            return Ok(true);
        }
        let seq = e.read();
        let Some(reason) = self.exhausted(e, seq) else {
            return Ok(false);
        };
        let peeked = e.peek()?;
        let loc = e.peeked_loc();
        let payload = e.payload(&peeked).to_vec();
        e.advance(peeked);
        self.bury_taken(e, seq, loc, payload, reason, false)?;
        Ok(true)
    }

    /// Moves item `seq` (at `loc`), taken by a get, to the dead letters and acknowledges
    /// it. `ready`: it was given back (and is still among the ready items). On failure
    /// the item waits again, first in line.
    fn bury_taken(
        &self,
        e: &mut MutexGuard<'_, Engine>,
        seq: u64,
        loc: Loc,
        payload: Vec<u8>,
        reason: String,
        ready: bool,
    ) -> Result<()> {
        let attempts = e.retries().attempts_of(seq);
        let rec = self.dead_record(seq, attempts, reason, payload);
        if let Err(err) = self.dead.bury(&rec) {
            if !ready {
                e.return_to_ready(seq, loc);
            }
            return Err(err);
        }
        if ready {
            e.take_ready(seq);
        }
        let generation = e.acknowledge(seq)?;
        self.journal_ack(e, generation)?;
        if e.unfinished() == 0 {
            self.all_done.notify_all();
        }
        if self.bounded() {
            // The item left the waiting ones: a producer blocked on max_size may go on.
            self.not_full.notify_all();
        }
        Ok(())
    }

    /// The dead letters: items taken out for good but kept, with why.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.dead_letters().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dead_letters(&self) -> DeadLetters<'_, T> {
        DeadLetters::new(self, self.dead.get())
    }
}

impl<T> Queue<T> {
    fn dead_record(&self, seq: u64, attempts: u32, reason: String, payload: Vec<u8>) -> DeadRecord {
        DeadRecord {
            seq,
            attempts,
            reason,
            failed_at: self.dead.now_ms(),
            payload,
        }
    }

    /// Whether item `seq` used up its deliveries (a get moves it to the dead letters, so
    /// `browse` does not show it).
    pub(crate) fn is_exhausted(&self, e: &Engine, seq: u64) -> bool {
        self.max_deliveries
            .is_some_and(|max| e.retries().attempts_of(seq) >= max)
    }

    /// Why item `seq` may not be delivered again, if so: it used up
    /// `Options::max_deliveries`.
    fn exhausted(&self, e: &Engine, seq: u64) -> Option<String> {
        let max = self.max_deliveries?;
        let n = e.retries().attempts_of(seq);
        (n >= max).then(|| {
            format!("delivered {n} times without an acknowledgement (max_deliveries {max})")
        })
    }

    /// Gives a delivery back, to be delivered again `after` from now (or at once); to
    /// the dead letters instead when it was its last allowed delivery.
    pub(crate) fn give_back(&self, t: &Ticket, after: Option<Duration>) -> Result<()> {
        let mut e = self.engine.lock();
        if let Some(reason) = self.exhausted(&e, t.seq()) {
            return self.dead_letter_locked(e, t, reason);
        }
        match after.filter(|d| !d.is_zero()) {
            Some(delay) => self.delay_by_copy(e, t, delay)?,
            None => {
                e.give_back(&t.handed(), None)?;
                drop(e);
            }
        }
        // A delay changes the waiters' next timer: all of them look again.
        if after.is_some() {
            self.sig.not_empty.notify_all();
        } else {
            self.sig.not_empty.notify_one();
        }
        Ok(())
    }

    /// `nack_after`: the item is appended again (a copy, its deliveries and due time
    /// journaled) and the original acknowledged, so that it holds back neither the
    /// acknowledgement head nor the deletion of its chunk while it waits (FORMAT.md
    /// §nack_after). The copy is written before the acknowledgement is journaled: a crash
    /// leaves the original, the copy, or both.
    fn delay_by_copy(
        &self,
        mut e: MutexGuard<'_, Engine>,
        t: &Ticket,
        delay: Duration,
    ) -> Result<()> {
        let h = t.handed();
        e.settling(&h)?;
        let copy = match self.append_copy(&mut e, &h, delay) {
            Ok(Some(copy)) => copy,
            // Pending on a full disk (`Buffered`): settled once it is written.
            Ok(None) => return Ok(()),
            Err(err) => {
                e.return_to_ready(h.seq, h.loc);
                return Err(err);
            }
        };
        e.copy_stored(copy);
        let generation = e.acknowledge(h.seq)?;
        self.finish_ack(e, generation)
    }

    /// Appends item `h`'s record again, delayed, and writes it (at every level). Returns
    /// the copy's sequence number; `None` at `Buffered` when a full disk keeps it pending
    /// (written with the other pending items once there is room; `Engine::supersede`).
    fn append_copy(
        &self,
        e: &mut MutexGuard<'_, Engine>,
        h: &crate::retries::Handed,
        delay: Duration,
    ) -> Result<Option<u64>> {
        let payload = e.read_again(h.seq, h.loc)?;
        let mut frame = Vec::with_capacity(payload.len() + crate::format::FRAME_HEADER_LEN);
        frame_into(&mut frame, &payload);
        self.drain_intake(e)?;
        let copy = e.enqueue(&frame)?;
        // Delayed before the lock is let go for the write: no consumer takes it early.
        e.delay_copy(copy, h.seq, delay);
        if self.durability != Durability::Buffered {
            let fate = e.fate();
            let res = write_through(e, &self.sig, copy, &fate);
            // The batch's fate, not `accepted`/`written`: after a failed write the copy's
            // number may already belong to another put.
            return match res {
                Ok(()) => Ok(Some(copy)),
                Err(err) => match fate.stored(copy) {
                    // Written, a later item of its batch was not.
                    Some(true) if !e.poisoned() => Ok(Some(copy)),
                    stored => {
                        if stored == Some(false) {
                            e.undo_copy(copy);
                        }
                        Err(err)
                    }
                },
            };
        }
        wait_idle(e, &self.sig);
        match lead_writes(e, &self.sig) {
            Ok(()) => Ok(Some(copy)),
            // Written (a later batch failed).
            Err(_) if e.written() > copy => Ok(Some(copy)),
            Err(err) if err.is_no_space() && e.accepted() > copy => {
                // Kept pending with the items put before it, as a full disk keeps
                // buffered items (their numbers stay theirs).
                e.supersede(copy, h.seq);
                Ok(None)
            }
            Err(err) => {
                if e.accepted() <= copy {
                    e.undo_copy(copy);
                }
                Err(err)
            }
        }
    }

    /// Moves a delivery to the dead letters with `reason` (`Delivery::dead_letter`).
    pub(crate) fn dead_letter_ticket(&self, t: &Ticket, reason: String) -> Result<()> {
        let e = self.engine.lock();
        self.dead_letter_locked(e, t, reason)
    }

    /// The dead letter is synced before the acknowledgement is written: a crash leaves
    /// the item in one queue or both.
    fn dead_letter_locked(
        &self,
        mut e: MutexGuard<'_, Engine>,
        t: &Ticket,
        reason: String,
    ) -> Result<()> {
        let h = t.handed();
        // Settled here, once: the lease ends now, so a deadline passing during the sync
        // below cannot give the item back after its dead letter is stored.
        e.settling(&h)?;
        let stored = e.read_again(h.seq, h.loc).and_then(|payload| {
            self.dead
                .bury(&self.dead_record(h.seq, h.attempt, reason, payload))
        });
        if let Err(err) = stored {
            // Not stored: the item is given back, as a nack would.
            e.return_to_ready(h.seq, h.loc);
            drop(e);
            self.sig.not_empty.notify_one();
            return Err(err);
        }
        let generation = e.acknowledge(h.seq)?;
        self.finish_ack(e, generation)
    }

    /// Acknowledges a delivery (a [`Delivery`](crate::Delivery)'s, a channel's).
    pub(crate) fn ack_ticket(&self, t: &Ticket) -> Result<()> {
        let mut e = self.engine.lock();
        let generation = e.ack_delivery(&t.handed())?;
        self.finish_ack(e, generation)
    }

    /// Acknowledges deliveries in one journal write (and one sync at `Synced`): the
    /// forwarder's batches. On an error, the deliveries before the failing one are
    /// acknowledged (and journaled) all the same.
    #[cfg(feature = "redis")]
    pub(crate) fn ack_tickets<'t>(&self, ts: impl IntoIterator<Item = &'t Ticket>) -> Result<()> {
        let mut e = self.engine.lock();
        let mut last = None;
        let mut failed = None;
        for t in ts {
            match e.ack_delivery(&t.handed()) {
                Ok(generation) => last = Some(generation),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        if let Some(generation) = last {
            self.finish_ack(e, generation)?;
        }
        failed.map_or(Ok(()), Err)
    }

    /// When items `seqs` were put, as closely as the queue remembers (`marks.rs`): one
    /// lock for a batch.
    #[cfg(feature = "redis")]
    pub(crate) fn put_times_ms(&self, seqs: impl Iterator<Item = u64>) -> Vec<Option<u64>> {
        let e = self.engine.lock();
        seqs.map(|seq| e.marks().time_of(seq)).collect()
    }

    /// Sets the lease of a delivery to run out `span` from now.
    pub(crate) fn extend_ticket(&self, t: &Ticket, span: Duration) -> Result<()> {
        let mut e = self.engine.lock();
        let deadline = e.extend_lease(&t.handed(), span)?;
        t.set_deadline(deadline);
        drop(e);
        // Waiting consumers set their timers by the old deadline (or had none, on a queue
        // without a lease): they look again.
        self.sig.not_empty.notify_all();
        Ok(())
    }

    /// Journals acknowledging call `generation` as the level requires, keeping the lock.
    pub(crate) fn journal_ack(
        &self,
        e: &mut MutexGuard<'_, Engine>,
        generation: u64,
    ) -> Result<()> {
        if self.durability == Durability::Buffered {
            if e.acks().unjournaled() >= ACK_BATCH && e.journal_is_home() {
                lead_acks(e, &self.sig)?;
            }
            Ok(())
        } else {
            journal_through(e, &self.sig, generation)
        }
    }

    /// Appends items given as their stored bytes (dead letters going back) and syncs
    /// them, whatever the level, before returning: the caller removes them from where
    /// they were kept only then. Not bounded by `max_size`.
    pub(crate) fn put_raw_synced(&self, payloads: &[&[u8]]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut frames = Vec::new();
        for p in payloads {
            frame_into(&mut frames, p);
        }
        let mut e = self.engine.lock();
        self.drain_intake(&mut e)?;
        e.room_for_puts()?;
        let first_chunk = e.writer_chunk();
        let last = e.enqueue_many(&frames, payloads.len() as u64)?;
        if self.durability == Durability::Buffered {
            wait_idle(&mut e, &self.sig);
            lead_writes(&mut e, &self.sig)?;
        } else {
            let fate = e.fate();
            write_through(&mut e, &self.sig, last, &fate)?;
        }
        if self.durability != Durability::Synced {
            crate::commit::sync_chunks_since(&mut e, &self.sig, first_chunk)?;
        }
        drop(e);
        self.sig.not_empty.notify_all();
        Ok(())
    }
}

/// The reason a dead letter gives for an item that does not decode.
fn undecodable(err: &bincode::Error) -> String {
    format!("its bytes do not decode as the queue's item type: {err}")
}
