//! Handing items out and taking them back: the engine's side of deliveries, leases,
//! `nack` and `nack_after` (the state is in `retries.rs` and `acks.rs`). Everything here
//! runs under the queue lock.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_LEN, FrameError, MAX_ITEM_LEN, decode_frame};
use crate::leases::{NEVER, Nanos};
use crate::reader::{chunk_path, describe};
use crate::retries::{Handed, Loc};
use crate::storage::{OpenMode, read_full_at};
use std::time::Duration;

/// A record read again is first read this many bytes at once: most items fit.
const FIRST_READ: usize = 4096;

impl Engine {
    /// Timers that came due: items whose lease ran out are given back, delays that are
    /// over make their items deliverable. Cheap when no timer runs.
    #[inline]
    pub(crate) fn promote(&mut self) -> bool {
        self.promote_at(false)
    }

    /// [`promote`](Self::promote) in a get that has just polled the pause
    /// ([`poll_pause`](Self::poll_pause)): its clock reading stands for now.
    #[inline]
    pub(crate) fn promote_polled(&mut self) -> bool {
        self.promote_at(true)
    }

    /// Delays over by the precise wall clock are made deliverable: for a get about to
    /// sleep, which `promote`'s coarse reading would keep waiting up to a tick past a due
    /// time.
    pub(crate) fn promote_due_delays(&mut self) -> bool {
        self.retries.promote_due_delays()
    }

    #[inline]
    fn promote_at(&mut self, polled: bool) -> bool {
        if !self.retries.timers() || (polled && self.retries.nothing_due_yet()) {
            return false;
        }
        let (acks, read) = (&mut self.acks, self.read);
        self.retries
            .promote(polled, |seq| acks.give_back(seq, read))
    }

    /// Where the record just peeked is.
    #[inline]
    pub(crate) fn peeked_loc(&self) -> Loc {
        Loc {
            chunk: self.reader.chunk,
            offset: self.reader.offset(),
        }
    }

    /// Records that item `seq`, at `loc`, is handed out now. Inlined: a `Handed`
    /// returned through memory was read back with wider loads than it was stored with.
    #[inline(always)]
    pub(crate) fn deliver(&mut self, seq: u64, loc: Loc) -> Handed {
        if self.acks.any_out() {
            self.acks.take_back(seq);
        }
        let in_flight = self.acks.in_flight_view(self.read);
        self.retries.deliver(seq, loc, in_flight)
    }

    /// Takes back deliveries whose recording failed, latest first: the items wait again,
    /// first in line, and their attempts are not counted. Works on a poisoned queue too
    /// (a failed get changes nothing the caller can see).
    pub(crate) fn undeliver(&mut self, handed: &[Handed]) {
        for h in handed.iter().rev() {
            if self.acks.give_back(h.seq, self.read) {
                self.retries.undeliver(h);
            }
        }
    }

    /// Item `seq` (at `loc`), in flight, waits again, first in line: after a settlement
    /// that failed part way. Nothing if it is not in flight.
    pub(crate) fn return_to_ready(&mut self, seq: u64, loc: Loc) {
        if self.acks.give_back(seq, self.read) {
            self.retries.given_back(seq, loc, None);
        }
    }

    /// Item `seq`, given back earlier, read again from its record at `loc` and decoded
    /// (for `peek` and `browse`).
    pub(crate) fn decode_again<T: serde::de::DeserializeOwned>(
        &mut self,
        seq: u64,
        loc: Loc,
    ) -> Result<T> {
        let payload = self.read_again(seq, loc)?;
        crate::codec::decode(&payload).map_err(|source| Error::Decode {
            seq,
            path: chunk_path(&self.dir, loc.chunk),
            offset: loc.offset,
            source,
        })
    }

    /// The payload of item `seq`, given back earlier, read again from its record at `loc`.
    pub(crate) fn read_again(&mut self, seq: u64, loc: Loc) -> Result<Vec<u8>> {
        if self.reader.chunk == loc.chunk
            && let Some(b) = self.reader.buffered_from(loc.offset)
            && let Ok((payload, _)) = decode_frame(b)
        {
            return Ok(payload.to_vec());
        }
        let path = chunk_path(&self.dir, loc.chunk);
        if self
            .retry_file
            .as_ref()
            .is_none_or(|(no, _)| *no != loc.chunk)
        {
            let f = self
                .storage
                .open(&path, OpenMode::Read)
                .map_err(|e| Error::io("open", &path, e))?;
            self.retry_file = Some((loc.chunk, f));
        }
        let (_, f) = self.retry_file.as_ref().expect("just opened");
        let mut buf = vec![0u8; FIRST_READ];
        let n =
            read_full_at(&**f, &mut buf, loc.offset).map_err(|e| Error::io("read", &path, e))?;
        buf.truncate(n);
        let damaged = |e: FrameError| {
            Error::corrupt(
                &path,
                loc.offset,
                format!(
                    "the record of item {seq}, read again to deliver it again: {}",
                    describe(e)
                ),
            )
        };
        let len = match decode_frame(&buf) {
            Ok((_, len)) => len,
            Err(FrameError::Incomplete { needed }) if needed <= MAX_ITEM_LEN + FRAME_HEADER_LEN => {
                buf.resize(needed, 0);
                let n = read_full_at(&**f, &mut buf, loc.offset)
                    .map_err(|e| Error::io("read", &path, e))?;
                buf.truncate(n);
                decode_frame(&buf).map_err(damaged)?.1
            }
            Err(e) => return Err(damaged(e)),
        };
        buf.truncate(len);
        buf.drain(..FRAME_HEADER_LEN);
        Ok(buf)
    }

    /// Whether the holder of delivery `h` still holds it (`h.deadline`: when the holder's
    /// lease runs out, as it knows it). A lease that ran out gives the item back now.
    ///
    /// No lookup: only a lease running out hands an item to someone else while its
    /// holder may still settle it (every other way of giving an item back takes the
    /// holder's `Delivery`), and the holder knows its deadline. The latest token of an
    /// item delivered again is checked besides, which costs nothing in the common case.
    #[inline]
    pub(crate) fn holding(&mut self, h: &Handed) -> Result<()> {
        self.check()?;
        let acked = self.acks.is_acked(h.seq);
        let expired = (h.deadline != NEVER && self.retries.passed(h.deadline))
            || self.retries.delivered_again(h)
            || (!acked && !self.acks.is_in_flight(h.seq, self.read));
        if expired {
            self.promote();
            Err(Error::LeaseExpired { seq: h.seq })
        } else if acked {
            Err(Error::AlreadyAcknowledged { seq: h.seq })
        } else {
            Ok(())
        }
    }

    /// As [`holding`](Self::holding), for a settlement that lets go of the lock before it
    /// is done (a copy or a dead letter is written): the lease ends now, so that it
    /// cannot run out and hand the item to someone else meanwhile, and FIFO `task_done`
    /// passes over the item until it is acknowledged or given back.
    pub(crate) fn settling(&mut self, h: &Handed) -> Result<()> {
        self.holding(h)?;
        self.retries.end_lease(h);
        self.acks.begin_settling(h.seq);
        Ok(())
    }

    /// Acknowledges delivery `h`. Returns the generation to wait for.
    #[inline]
    pub(crate) fn ack_delivery(&mut self, h: &Handed) -> Result<u64> {
        self.holding(h)?;
        self.acknowledge(h.seq)
    }

    /// Acknowledges gotten item `seq` (in flight or given back), in any order. Returns
    /// the generation to wait for.
    #[inline]
    pub(crate) fn acknowledge(&mut self, seq: u64) -> Result<u64> {
        let generation = self.acks.ack_one(seq, self.read)?;
        self.retries.acked(seq);
        self.trim_leases();
        Ok(generation)
    }

    /// `nack_after` at `Buffered`: a full disk kept the `copy` of item `original` pending
    /// (it is written with the other pending items once there is room). The original,
    /// being settled (passed over by `task_done`, not deliverable), is acknowledged then,
    /// never before: a crash meanwhile leaves it, and loses the copy with the pending
    /// items.
    pub(crate) fn supersede(&mut self, copy: u64, original: u64) {
        self.superseded.push((copy, original));
    }

    /// Acknowledges the originals of the copies now written (see `supersede`); the
    /// entries go to the journal with the next write, as at `Buffered` they do.
    pub(crate) fn settle_superseded(&mut self) {
        let written = self.written;
        let (done, waiting) = std::mem::take(&mut self.superseded)
            .into_iter()
            .partition(|&(copy, _)| copy < written);
        self.superseded = waiting;
        for (copy, original) in done {
            self.copy_stored(copy);
            // Being settled, it is in flight: nothing else acknowledges it meanwhile.
            let acked = self.acknowledge(original);
            debug_assert!(acked.is_ok(), "{acked:?}");
        }
    }

    /// Given-back item `seq` is taken (to be delivered again or buried).
    pub(crate) fn take_ready(&mut self, seq: u64) {
        self.retries.remove_ready(seq);
    }

    /// Item `old`, given back with `delay`, is appended again as item `copy`, not yet
    /// stored (`Retries::delay_copy`).
    pub(crate) fn delay_copy(&mut self, copy: u64, old: u64, delay: Duration) {
        self.retries.delay_copy(copy, old, delay);
    }

    /// The copy of [`delay_copy`](Self::delay_copy) is stored.
    pub(crate) fn copy_stored(&mut self, copy: u64) {
        self.retries.copy_stored(copy);
    }

    /// The copy of [`delay_copy`](Self::delay_copy) was not stored after all.
    pub(crate) fn undo_copy(&mut self, copy: u64) {
        self.retries.undo_copy(copy);
    }

    /// Drops ended leases from the front (after acknowledgements).
    #[inline]
    fn trim_leases(&mut self) {
        let (_, live) = self.acks.in_flight_view(self.read);
        self.retries.trim_leases(live);
    }

    /// Acknowledges the `n` oldest items in flight (FIFO `task_done`).
    pub(crate) fn ack_oldest(&mut self, n: u64) -> Result<u64> {
        self.check()?;
        self.promote();
        if self.acks.fifo_is_head() && self.retries.no_lease_state_per_item() {
            let generation = self.acks.ack(n, self.read)?;
            self.trim_leases();
            return Ok(generation);
        }
        if n > self.acks.in_flight(self.read) {
            return Err(Error::NothingToAcknowledge);
        }
        let mut generation = 0;
        for _ in 0..n {
            let seq = self
                .acks
                .oldest_in_flight(self.read)
                .ok_or(Error::NothingToAcknowledge)?;
            generation = self.acknowledge(seq)?;
        }
        Ok(generation)
    }

    /// Gives delivery `h` back, to be delivered again `after` from now (or as soon as
    /// possible).
    pub(crate) fn give_back(&mut self, h: &Handed, after: Option<Duration>) -> Result<()> {
        self.holding(h)?;
        if !self.acks.give_back(h.seq, self.read) {
            return Err(Error::AlreadyAcknowledged { seq: h.seq });
        }
        self.retries.given_back(h.seq, h.loc, after);
        Ok(())
    }

    /// Sets the lease of delivery `h` to run out `span` from now.
    /// Returns the new deadline.
    pub(crate) fn extend_lease(&mut self, h: &Handed, span: Duration) -> Result<Nanos> {
        self.holding(h)?;
        let in_flight = self.acks.in_flight_view(self.read);
        Ok(self.retries.extend(h, span, in_flight))
    }

    /// Steps over the item at `read` when it waits out a delay recovered at open (it goes
    /// among the delayed items, with its place); true when it did.
    pub(crate) fn step_over_delayed(&mut self) -> Result<bool> {
        if !self.retries.is_ahead(self.read) {
            return Ok(false);
        }
        let p = self.peek()?;
        let (seq, loc) = (self.read, self.peeked_loc());
        self.advance(p);
        let given = self.acks.give_back(seq, self.read);
        debug_assert!(given);
        self.retries.step_over(seq, loc);
        Ok(true)
    }
}
