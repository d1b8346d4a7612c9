//! The acknowledgement state (FORMAT.md §State): the head, the items acknowledged one by
//! one after it, and how much of that the journal holds. Part of the engine, kept behind
//! methods so that these hold (with `read`, the engine's next item to get):
//!
//! - every item before `head` is acknowledged; `head <= read`, except right after open,
//!   when items at or after `read` acknowledged one by one before it are in `singles`;
//! - `singles` are items after `head` acknowledged one by one: those before `read` were
//!   gotten, and `skip_ahead` of them, at or after `read`, are skipped by gets, never
//!   delivered again; the head absorbs each single it reaches, but not past `read`;
//! - `unwritten` lists the singles not yet journaled, oldest first;
//! - `calls` counts acknowledging calls and `calls_written` those journaled (or
//!   checkpointed), so a caller waits until its own is: `calls_written <= calls`;
//! - `head_written <= head` is the head the journal or `info` holds: chunk files are
//!   deleted only below it;
//! - `out` are items after `head` and before `read`, gotten and given back (`nack`, a
//!   lease that ran out, a dropped `Delivery`): neither in flight nor acknowledged, they
//!   hold the head back until they are delivered again and acknowledged;
//! - `settling` are items in flight whose holder is settling them and let go of the lock
//!   to write (`nack_after` writes a copy): FIFO acknowledgement (`task_done`) passes
//!   over them, as they are no longer outstanding.

use crate::error::{Error, Result};
use crate::seqset::SeqSet;
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub(crate) struct Acks {
    head: u64,
    singles: SeqSet,
    skip_ahead: u64,
    unwritten: Vec<u64>,
    calls: u64,
    calls_written: u64,
    head_written: u64,
    out: BTreeSet<u64>,
    /// Few: one per holder in the middle of a settlement.
    settling: Vec<u64>,
}

/// What a journal entry is to record: the head, the singles not yet journaled, and the
/// call generation it covers.
pub(crate) struct ToJournal {
    pub(crate) head: u64,
    pub(crate) singles: Vec<u64>,
    pub(crate) calls: u64,
}

impl Acks {
    /// As recovery found it: `head` and `singles` (all at or after `read`, which is
    /// `head`) on disk.
    pub(crate) fn recovered(head: u64, singles: BTreeSet<u64>) -> Acks {
        Acks {
            head,
            skip_ahead: singles.len() as u64,
            singles: singles.into_iter().collect(),
            head_written: head,
            ..Acks::default()
        }
    }

    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    pub(crate) fn head_written(&self) -> u64 {
        self.head_written
    }

    pub(crate) fn singles(&self) -> &SeqSet {
        &self.singles
    }

    /// Items at or after `read` that gets skip (acknowledged before a reopen).
    pub(crate) fn skip_ahead(&self) -> u64 {
        self.skip_ahead
    }

    /// Whether item `seq` (at or after `read`) was acknowledged one by one before a
    /// reopen, so that gets skip it.
    pub(crate) fn skips(&self, seq: u64) -> bool {
        self.skip_ahead > 0 && self.singles.contains(&seq)
    }

    /// Items gotten and not yet acknowledged nor given back (nor being settled).
    pub(crate) fn in_flight(&self, read: u64) -> u64 {
        read - self.head
            - (self.singles.len() as u64 - self.skip_ahead)
            - self.out.len() as u64
            - self.settling.len() as u64
    }

    /// How many items are in flight, and whether one is: what the leases ask (they keep
    /// no state of their own on it).
    pub(crate) fn in_flight_view(
        &self,
        read: u64,
    ) -> (impl FnOnce() -> u64 + '_, impl Fn(u64) -> bool + '_) {
        (
            move || self.in_flight(read),
            move |s| self.is_in_flight(s, read),
        )
    }

    /// Item `seq`, in flight, is being settled by its holder, who lets go of the lock
    /// before it is done: `task_done` must not acknowledge it meanwhile. It ends when the
    /// item is acknowledged or given back.
    pub(crate) fn begin_settling(&mut self, seq: u64) {
        self.settling.push(seq);
    }

    #[inline]
    fn end_settling(&mut self, seq: u64) {
        if !self.settling.is_empty() {
            self.settling.retain(|&s| s != seq);
        }
    }

    /// Whether FIFO acknowledgement is the head moving on: nothing given back or being
    /// settled among the items gotten.
    #[inline]
    pub(crate) fn fifo_is_head(&self) -> bool {
        self.out.is_empty() && self.settling.is_empty()
    }

    /// Whether gotten item `seq` is in flight: not acknowledged, not given back.
    #[inline]
    pub(crate) fn is_in_flight(&self, seq: u64, read: u64) -> bool {
        seq >= self.head && seq < read && !self.singles.contains(&seq) && !self.out.contains(&seq)
    }

    /// Whether item `seq` is acknowledged.
    #[inline]
    pub(crate) fn is_acked(&self, seq: u64) -> bool {
        seq < self.head || self.singles.contains(&seq)
    }

    /// Whether any gotten item was given back (FIFO acknowledgement then looks for the
    /// oldest one in flight).
    pub(crate) fn any_out(&self) -> bool {
        !self.out.is_empty()
    }

    /// Gotten item `seq`, in flight, is given back; false if it is not in flight.
    pub(crate) fn give_back(&mut self, seq: u64, read: u64) -> bool {
        self.end_settling(seq);
        self.is_in_flight(seq, read) && self.out.insert(seq)
    }

    /// Given-back item `seq` is delivered again.
    pub(crate) fn take_back(&mut self, seq: u64) {
        self.out.remove(&seq);
    }

    /// The oldest item in flight (not being settled).
    pub(crate) fn oldest_in_flight(&self, read: u64) -> Option<u64> {
        (self.head..read).find(|s| {
            !self.singles.contains(s) && !self.out.contains(s) && !self.settling.contains(s)
        })
    }

    /// Items put (`accepted` in all) and not yet acknowledged.
    pub(crate) fn unfinished(&self, accepted: u64) -> u64 {
        accepted - self.head - self.singles.len() as u64
    }

    /// Acknowledges the `n` oldest gotten, unacknowledged items. Returns the call's
    /// generation.
    #[inline]
    pub(crate) fn ack(&mut self, n: u64, read: u64) -> Result<u64> {
        debug_assert!(
            self.fifo_is_head(),
            "FIFO acknowledgement looks for the items"
        );
        if n > self.in_flight(read) {
            return Err(Error::NothingToAcknowledge);
        }
        if self.singles.is_empty() {
            self.head += n;
        } else {
            for _ in 0..n {
                self.head += 1;
                self.absorb(read);
            }
        }
        self.calls += 1;
        Ok(self.calls)
    }

    /// Acknowledges the gotten item `seq` (in flight or given back), in any order. Returns
    /// the call's generation.
    #[inline]
    pub(crate) fn ack_one(&mut self, seq: u64, read: u64) -> Result<u64> {
        self.end_settling(seq);
        if seq < self.head || seq >= read || self.singles.contains(&seq) {
            return Err(Error::AlreadyAcknowledged { seq });
        }
        // A given-back item may be acknowledged too (moved to the dead letters).
        if !self.out.is_empty() {
            self.out.remove(&seq);
        }
        if seq == self.head {
            self.head += 1;
            self.absorb(read);
        } else {
            self.singles.insert(seq);
            self.unwritten.push(seq);
        }
        self.calls += 1;
        Ok(self.calls)
    }

    /// Moves the head past items acknowledged one by one, but not past `read`: a single
    /// at or after it (acknowledged before a reopen) is absorbed once gets skipped it.
    #[inline]
    fn absorb(&mut self, read: u64) {
        while self.head < read && self.singles.remove(&self.head) {
            self.head += 1;
        }
    }

    /// A get skipped item `read - 1`, acknowledged before a reopen.
    pub(crate) fn skipped(&mut self, read: u64) {
        self.skip_ahead -= 1;
        self.absorb(read);
    }

    /// A call that changed what the journal must record besides acknowledgements (a
    /// delivery, a delay). Returns the call's generation.
    pub(crate) fn note_call(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }

    /// Acknowledging calls not yet journaled.
    pub(crate) fn unjournaled(&self) -> u64 {
        self.calls - self.calls_written
    }

    pub(crate) fn journaled_through(&self, generation: u64) -> bool {
        self.calls_written >= generation
    }

    /// What the next journal entry records; the singles are out until
    /// [`journaled`](Self::journaled) or [`not_journaled`](Self::not_journaled).
    pub(crate) fn take_entry(&mut self) -> ToJournal {
        ToJournal {
            head: self.head,
            singles: std::mem::take(&mut self.unwritten),
            calls: self.calls,
        }
    }

    pub(crate) fn journaled(&mut self, t: &ToJournal) {
        self.head_written = t.head;
        self.calls_written = t.calls;
    }

    /// The entry was not written: its singles go back in line, before later ones.
    pub(crate) fn not_journaled(&mut self, t: ToJournal) {
        let mut singles = t.singles;
        singles.append(&mut self.unwritten);
        self.unwritten = singles;
    }

    /// A checkpoint recorded everything in `info`.
    pub(crate) fn checkpointed(&mut self) {
        self.head_written = self.head;
        self.unwritten.clear();
        self.calls_written = self.calls;
    }
}
