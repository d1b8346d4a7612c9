//! Items given back and items held: what `nack`, `nack_after`, leases and attempt counts
//! need. Part of the engine, behind methods that keep these true (with `Acks::out`, the
//! items gotten and given back, and `read`, the engine's next item to get):
//!
//! - an item is in `ready` (deliverable now) or `delayed` (due later) exactly when it is
//!   in `Acks::out`; both are before `read`, and each keeps where its record is, so that
//!   it is read again without the reader;
//! - `ahead` holds the delays of items at or after `read` (recovered at open, and copies
//!   appended by `nack_after`): gets step over such an item (into `delayed`) until it is
//!   due, and it is not counted waiting; `delayed` and `ahead` together are every delay
//!   not yet over (a checkpoint records them);
//! - `leases` holds a lease of every item in flight with one, in deadline order (and
//!   ended ones not yet dropped, see `Leases`);
//! - `delivered`: every item before it was delivered at least once; `attempts` counts the
//!   deliveries of items delivered more than once (1 is implied below `delivered`).
//!
//! Delays are wall-clock milliseconds (recorded on disk); leases are monotonic.

use crate::clock::Clock;
use crate::format::WorkState;
use crate::leases::{Leases, NEVER, Nanos, nanos};
use crate::seqmap::LowMap;
use crate::seqset::SeqSet;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Where an item's record is: its chunk file and the offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Loc {
    pub(crate) chunk: u64,
    pub(crate) offset: u64,
}

/// What a delivery hands its holder: enough to acknowledge or give back exactly it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handed {
    pub(crate) seq: u64,
    pub(crate) loc: Loc,
    pub(crate) attempt: u32,
    pub(crate) token: u64,
    /// When its lease runs out: [`NEVER`] without one.
    pub(crate) deadline: Nanos,
}

/// A get's journal entry on the fast path: the delivered mark if it moved, and at most
/// one (seq, attempts).
pub(crate) type SimpleEntry = (Option<u64>, Option<(u64, u32)>);

/// What the next journal entry records of deliveries and delays.
#[derive(Debug, Default)]
pub(crate) struct DeliveryEntries {
    pub(crate) delivered: Option<u64>,
    pub(crate) attempts: Vec<(u64, u32)>,
    pub(crate) delays: Vec<(u64, u64)>,
}

impl DeliveryEntries {
    pub(crate) fn is_empty(&self) -> bool {
        self.delivered.is_none() && self.attempts.is_empty() && self.delays.is_empty()
    }
}

/// How long gets may go without reading the wall clock while delays wait (the wall clock
/// may be set forward, making delays due sooner than the monotonic clock says).
const DELAY_RECHECK: Nanos = 50_000_000;

#[derive(Debug)]
pub(crate) struct Retries {
    clock: Arc<dyn Clock>,
    /// `clock` is the coarse monotonic clock a get reads anyway (`note_now`).
    coarse: bool,
    /// That reading, taken by the get under way; 0: none.
    noted: Nanos,
    /// The monotonic time before which no delay can be over: until then gets do not read
    /// the wall clock (one clock read fewer per get while delays wait). 0: look now.
    delays_checked_until: Nanos,
    lease: Option<Nanos>,
    ready: BTreeMap<u64, Loc>,
    /// (due, seq) of each delayed item before `read`.
    delayed: BTreeMap<(u64, u64), Loc>,
    /// seq -> due, of delayed items at or after `read` (recovered at open, and copies
    /// appended by `nack_after`). Every get asks for its item, mostly below them all.
    ahead: LowMap<u64>,
    /// The same, by due time.
    ahead_due: BTreeSet<(u64, u64)>,
    leases: Leases,
    next_token: u64,
    delivered: u64,
    attempts: LowMap<u32>,
    /// Not yet journaled.
    delivered_written: u64,
    unwritten_attempts: Vec<(u64, u32)>,
    unwritten_delays: Vec<(u64, u64)>,
    /// Emptied lists of a journaled append, kept for the next (`take_entries`): without
    /// them every `nack_after` allocated and freed both.
    spare_attempts: Vec<(u64, u32)>,
    spare_delays: Vec<(u64, u64)>,
}

impl Retries {
    pub(crate) fn new(clock: Arc<dyn Clock>, lease: Option<Duration>, r: WorkState) -> Retries {
        let now = clock.wall_ms();
        Retries {
            lease: lease.map(nanos),
            ready: BTreeMap::new(),
            delayed: BTreeMap::new(),
            ahead: r
                .delays
                .iter()
                .copied()
                .filter(|&(_, due)| due > now)
                .collect(),
            ahead_due: r
                .delays
                .iter()
                .filter(|&&(_, due)| due > now)
                .map(|&(s, d)| (d, s))
                .collect(),
            leases: Leases::default(),
            next_token: 1,
            delivered: r.delivered,
            attempts: r.attempts.into_iter().collect(),
            delivered_written: r.delivered,
            unwritten_attempts: Vec::new(),
            unwritten_delays: Vec::new(),
            spare_attempts: Vec::new(),
            spare_delays: Vec::new(),
            coarse: clock.is_coarse_monotonic(),
            noted: 0,
            delays_checked_until: 0,
            clock,
        }
    }

    pub(crate) fn lease(&self) -> Option<Duration> {
        self.lease.map(Duration::from_nanos)
    }

    /// The monotonic clock now.
    #[inline]
    fn now(&self) -> Nanos {
        if self.coarse {
            // The queue's clock is the system's coarse monotonic clock: read it directly,
            // inlined, not through the trait object (a lease's check at every
            // acknowledgement).
            nanos(crate::clock::coarse_monotonic())
        } else {
            nanos(self.clock.monotonic())
        }
    }

    /// A reading of the coarse monotonic clock that the get about to deliver took (to
    /// poll the pause): the next lease starts from it, one clock read fewer per get
    /// (BENCHMARKS.md, W7). Ignored unless the queue's clock is that clock.
    #[inline]
    pub(crate) fn note_now(&mut self, t: Duration) {
        if self.coarse {
            self.noted = nanos(t);
        }
    }

    /// The reading noted by the get under way (not used up), or a new one.
    #[inline]
    fn noted_or_now(&self) -> Nanos {
        match self.noted {
            0 => self.now(),
            t => t,
        }
    }

    /// The time a new lease starts: the reading noted by this get, used once, or a new
    /// one.
    #[inline]
    fn lease_start(&mut self) -> Nanos {
        let t = self.noted_or_now();
        self.noted = 0;
        t
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether any timer runs: then gets look at the clock.
    #[inline]
    pub(crate) fn timers(&self) -> bool {
        !self.leases.is_empty() || !self.delayed.is_empty() || !self.ahead.is_empty()
    }

    /// Whether a get that has just read the clock (`note_now`) can leave `promote` out:
    /// no lease runs and the delays need not be looked at before their recheck time.
    /// Inlined: while delays wait, every get asks (the call alone cost a get 40
    /// instructions).
    #[inline]
    pub(crate) fn nothing_due_yet(&self) -> bool {
        self.leases.is_empty() && self.noted != 0 && self.noted < self.delays_checked_until
    }

    /// Items given back and deliverable now.
    #[inline]
    pub(crate) fn ready(&self) -> u64 {
        self.ready.len() as u64
    }

    /// Items waiting out a delay.
    pub(crate) fn delayed(&self) -> u64 {
        (self.delayed.len() + self.ahead.len()) as u64
    }

    /// Delayed items at or after `read`: not counted as waiting.
    #[inline]
    pub(crate) fn ahead(&self) -> u64 {
        self.ahead.len() as u64
    }

    /// Whether acknowledgements may skip [`acked`](Self::acked) as far as leases go.
    #[inline]
    pub(crate) fn no_lease_state_per_item(&self) -> bool {
        self.leases.nothing_per_item()
    }

    /// Drops ended leases from the front (after acknowledgements: memory). Always
    /// inlined: without a lease it is one test on the acknowledgement's path.
    #[inline(always)]
    pub(crate) fn trim_leases(&mut self, in_flight: impl Fn(u64) -> bool) {
        if !self.leases.is_empty() {
            self.leases.trim(in_flight);
        }
    }

    /// Whether delivery `h` is not its item's latest: the item was delivered again.
    #[inline]
    pub(crate) fn delivered_again(&self, h: &Handed) -> bool {
        self.leases
            .latest_token(h.seq)
            .is_some_and(|t| t != h.token)
    }

    /// Makes due delays ready, and gives back items whose lease ran out (through
    /// `give_back`, which moves them into `Acks::out`). Returns whether anything changed.
    /// `noted`: the get under way read the clock just now (`note_now`); that reading
    /// stands for now.
    pub(crate) fn promote(&mut self, noted: bool, mut give_back: impl FnMut(u64) -> bool) -> bool {
        let mut changed = false;
        let now = if noted {
            self.noted_or_now()
        } else {
            self.now()
        };
        if !self.leases.is_empty() {
            while let Some((seq, loc)) = self.leases.pop_expired(now) {
                if give_back(seq) {
                    self.ready.insert(seq, loc);
                    changed = true;
                }
            }
        }
        if (self.delayed.is_empty() && self.ahead.is_empty()) || now < self.delays_checked_until {
            return changed;
        }
        changed |= self.promote_delays(now, self.clock.coarse_wall_ms());
        changed
    }

    /// Makes the delays that are over ready, judged on the precise wall clock: for a get
    /// about to sleep (the coarse clock [`promote`](Self::promote) reads may lag a tick,
    /// up to 4 ms, behind a due time that has come). Returns whether anything changed.
    pub(crate) fn promote_due_delays(&mut self) -> bool {
        if self.delayed.is_empty() && self.ahead.is_empty() {
            return false;
        }
        self.promote_delays(self.now(), self.clock.wall_ms())
    }

    /// The delays part of [`promote`](Self::promote): compares due times with the wall
    /// clock, then sets when to look again: when the earliest due time left can come,
    /// judged on the monotonic clock, and within [`DELAY_RECHECK`] at the latest (the
    /// wall clock may be set forward).
    fn promote_delays(&mut self, now: Nanos, wall: u64) -> bool {
        let mut changed = false;
        while let Some((&(due, seq), &loc)) = self.delayed.first_key_value() {
            if due > wall {
                break;
            }
            self.delayed.pop_first();
            self.ready.insert(seq, loc);
            changed = true;
        }
        while let Some(&(due, seq)) = self.ahead_due.first() {
            if due > wall {
                break;
            }
            self.ahead_due.pop_first();
            self.ahead.remove(&seq);
            changed = true;
        }
        // `wall` is truncated: the wall clock may be up to a millisecond past it already.
        let next = self.next_due().map_or(DELAY_RECHECK, |due| {
            let ms = due.saturating_sub(wall).saturating_sub(1);
            nanos(Duration::from_millis(ms)).min(DELAY_RECHECK)
        });
        // At least the next reading that differs from this one: the coarse clocks move
        // together, once a tick, so until the monotonic one moves the wall one has not
        // either (without this, a delay due within the millisecond made every get of the
        // tick read the wall clock again).
        self.delays_checked_until = now.saturating_add(next.max(1));
        changed
    }

    /// The earliest due time of a delay, if any.
    fn next_due(&self) -> Option<u64> {
        let delayed = self.delayed.first_key_value().map(|(&(due, _), _)| due);
        let ahead = self.ahead_due.first().map(|&(due, _)| due);
        delayed.into_iter().chain(ahead).min()
    }

    /// How long until the next lease runs out or delay is over, if any.
    pub(crate) fn next_timer(&self) -> Option<Duration> {
        let now = self.now();
        let lease = self
            .leases
            .first_deadline()
            .map(|d| Duration::from_nanos(d.saturating_sub(now)));
        // Precise: a sleep reckoned from the coarse clock ends up to a tick late.
        let wall = self.clock.wall_ms();
        // Not before `promote` looks at the delays again (a wall clock set forward makes
        // a delay due before then: waiting for the recheck beats spinning until it).
        let recheck = Duration::from_nanos(self.delays_checked_until.saturating_sub(now));
        let due = self
            .next_due()
            .map(|due| Duration::from_millis(due.saturating_sub(wall)).max(recheck));
        match (lease, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The oldest item given back and deliverable now.
    #[inline]
    pub(crate) fn first_ready(&self) -> Option<(u64, Loc)> {
        self.ready.first_key_value().map(|(&s, &l)| (s, l))
    }

    pub(crate) fn ready_items(&self) -> impl Iterator<Item = (u64, Loc)> + '_ {
        self.ready.iter().map(|(&s, &l)| (s, l))
    }

    pub(crate) fn is_ready(&self, seq: u64) -> bool {
        self.ready.contains_key(&seq)
    }

    pub(crate) fn remove_ready(&mut self, seq: u64) {
        self.ready.remove(&seq);
    }

    /// Whether the item at `read` is a delay recovered at open, not yet due: gets step
    /// over it (`step_over`).
    #[inline]
    pub(crate) fn is_ahead(&self, seq: u64) -> bool {
        self.ahead.get(&seq).is_some()
    }

    /// The reader stepped over delayed item `seq`, whose record is at `loc`.
    pub(crate) fn step_over(&mut self, seq: u64, loc: Loc) {
        if let Some(due) = self.ahead.remove(&seq) {
            self.ahead_due.remove(&(due, seq));
            self.delayed.insert((due, seq), loc);
        }
    }

    /// Records a delivery of `seq` (its record at `loc`): its attempt, and its lease when
    /// the queue has one. `in_flight`: deliveries in flight now, and whether an item is
    /// in flight (for the leases' memory). Inlined into `take`: a `Handed` returned
    /// through memory was read back with 16-byte loads of 8-byte stores, a stall.
    #[inline(always)]
    pub(crate) fn deliver(
        &mut self,
        seq: u64,
        loc: Loc,
        in_flight: (impl FnOnce() -> u64, impl Fn(u64) -> bool),
    ) -> Handed {
        // A copy appended by `nack_after` carries its item's count in `attempts`.
        let prev = match self.attempts.get(&seq) {
            Some(&n) => n,
            None => u32::from(seq < self.delivered),
        };
        let attempt = prev.saturating_add(1);
        if seq >= self.delivered {
            self.delivered = seq + 1;
        }
        if attempt > 1 {
            self.attempts.insert(seq, attempt);
            self.unwritten_attempts.push((seq, attempt));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.leases.delivered(seq, token, attempt > 1);
        let deadline = match self.lease {
            Some(span) => {
                let deadline = self.lease_start().saturating_add(span);
                let (count, live) = in_flight;
                self.leases.insert((deadline, seq, token, loc), count, live);
                deadline
            }
            None => NEVER,
        };
        Handed {
            seq,
            loc,
            attempt,
            token,
            deadline,
        }
    }

    /// The wall-clock millisecond at which a delay of `delay` from now is over: both
    /// rounded up, so that a get (which compares it with a reading that lags, never leads)
    /// never delivers the item before `delay` has passed.
    fn due_after(&self, delay: Duration) -> u64 {
        self.clock
            .wall_ms_ceil()
            .saturating_add(crate::clock::ceil_ms(delay))
    }

    /// Item `old`, given back with a delay, is appended again as item `copy` (FORMAT.md
    /// §nack_after): the copy keeps its deliveries and waits out the delay where it is.
    pub(crate) fn delay_copy(&mut self, copy: u64, old: u64, delay: Duration) {
        let n = self.attempts_of(old);
        if n > 0 {
            self.attempts.insert(copy, n);
        }
        let due = self.due_after(delay);
        self.ahead.insert(copy, due);
        self.ahead_due.insert((due, copy));
        self.delays_checked_until = 0;
    }

    /// The copy of [`delay_copy`](Self::delay_copy) is stored: its count and delay go to
    /// the journal (with the original's acknowledgement). Not before: a journal append by
    /// another thread while the copy is written must not record them for a number that a
    /// failed write gives to the next put.
    pub(crate) fn copy_stored(&mut self, copy: u64) {
        if let Some(&n) = self.attempts.get(&copy) {
            self.unwritten_attempts.push((copy, n));
        }
        // While the copy was written (the lock let go), a get may have stepped over it
        // into `delayed`: its delay is journaled all the same, else a crash before the
        // next checkpoint brings the copy back due at once. Looked for there only then
        // (rare: the scan costs the common case nothing); a copy already due is in
        // neither, and needs no delay.
        let due = match self.ahead.get(&copy) {
            Some(&due) => Some(due),
            None => self.delayed.keys().find(|k| k.1 == copy).map(|k| k.0),
        };
        if let Some(due) = due {
            self.unwritten_delays.push((copy, due));
        }
    }

    /// The copy of [`delay_copy`](Self::delay_copy) was not stored after all.
    pub(crate) fn undo_copy(&mut self, copy: u64) {
        self.attempts.remove(&copy);
        if let Some(due) = self.ahead.remove(&copy) {
            self.ahead_due.remove(&(due, copy));
        }
    }

    /// Takes back delivery `h`, the latest of its item, which was not handed out after all
    /// (recording it failed): its attempt is not counted, its lease dropped, and the item
    /// is ready again.
    pub(crate) fn undeliver(&mut self, h: &Handed) {
        if h.deadline != NEVER {
            self.leases.cancel(h.seq, h.token);
        }
        if h.attempt <= 1 {
            if self.delivered == h.seq + 1 {
                self.delivered = h.seq;
            }
        } else {
            self.attempts.insert(h.seq, h.attempt - 1);
            if let Some(i) = self
                .unwritten_attempts
                .iter()
                .rposition(|&(s, _)| s == h.seq)
            {
                self.unwritten_attempts.remove(i);
            }
        }
        self.given_back(h.seq, h.loc, None);
    }

    /// Deliveries so far of item `seq`.
    #[inline]
    pub(crate) fn attempts_of(&self, seq: u64) -> u32 {
        match self.attempts.get(&seq) {
            Some(&n) => n,
            None => u32::from(seq < self.delivered),
        }
    }

    /// Whether `deadline` has passed.
    #[inline]
    pub(crate) fn passed(&self, deadline: Nanos) -> bool {
        self.now() >= deadline
    }

    /// Sets the lease of delivery `h`, held, to run out `span` from now; returns the new
    /// deadline.
    /// `in_flight`: as for [`deliver`](Self::deliver).
    pub(crate) fn extend(
        &mut self,
        h: &Handed,
        span: Duration,
        in_flight: (impl FnOnce() -> u64, impl Fn(u64) -> bool),
    ) -> Nanos {
        let deadline = self.now().saturating_add(nanos(span));
        let (n, live) = in_flight;
        self.leases
            .extend((deadline, h.seq, h.token, h.loc), n, live);
        deadline
    }

    /// Delivery `h` is being settled, and the lock may be let go before it is: its
    /// lease no longer runs out.
    pub(crate) fn end_lease(&mut self, h: &Handed) {
        if !self.leases.is_empty() {
            self.leases.end(h.seq);
        }
    }

    /// Item `seq` was acknowledged.
    #[inline]
    pub(crate) fn acked(&mut self, seq: u64) {
        self.leases.acked(seq);
        if !self.attempts.is_empty() {
            self.attempts.remove(&seq);
        }
    }

    /// Item `seq` (at `loc`) was given back, to be delivered again `after` from now, or as
    /// soon as possible.
    /// Its lease (if any) ended: the item is no longer in flight.
    pub(crate) fn given_back(&mut self, seq: u64, loc: Loc, after: Option<Duration>) {
        match after.filter(|d| !d.is_zero()) {
            None => {
                self.ready.insert(seq, loc);
            }
            Some(d) => {
                let due = self.due_after(d);
                self.delayed.insert((due, seq), loc);
                self.unwritten_delays.push((seq, due));
                self.delays_checked_until = 0;
            }
        }
    }

    /// What the next journal entry records, taken out (see `journaled`, `not_journaled`).
    pub(crate) fn take_entries(&mut self) -> DeliveryEntries {
        DeliveryEntries {
            delivered: (self.delivered > self.delivered_written).then_some(self.delivered),
            attempts: take_list(&mut self.unwritten_attempts, &mut self.spare_attempts),
            delays: take_list(&mut self.unwritten_delays, &mut self.spare_delays),
        }
    }

    /// The entries of [`take_entries`](Self::take_entries) were journaled.
    pub(crate) fn journaled(&mut self, e: &mut DeliveryEntries) {
        if let Some(d) = e.delivered {
            self.delivered_written = self.delivered_written.max(d);
        }
        keep_list(&mut e.attempts, &mut self.spare_attempts);
        keep_list(&mut e.delays, &mut self.spare_delays);
    }

    /// The entries were not written: back in line, before later ones.
    pub(crate) fn not_journaled(&mut self, mut e: DeliveryEntries) {
        e.attempts.append(&mut self.unwritten_attempts);
        self.unwritten_attempts = e.attempts;
        e.delays.append(&mut self.unwritten_delays);
        self.unwritten_delays = e.delays;
    }

    /// Whether deliveries or delays wait to be journaled.
    pub(crate) fn unwritten(&self) -> bool {
        self.delivered > self.delivered_written
            || !self.unwritten_attempts.is_empty()
            || !self.unwritten_delays.is_empty()
    }

    /// What a get's journal entry records when that is all that waits (the fast path):
    /// the delivered mark if it moved, and at most one attempt count, no delay.
    #[inline]
    pub(crate) fn take_simple(&self) -> Option<SimpleEntry> {
        if !self.unwritten_delays.is_empty() || self.unwritten_attempts.len() > 1 {
            return None;
        }
        let delivered = (self.delivered > self.delivered_written).then_some(self.delivered);
        let attempts = self.unwritten_attempts.first().copied();
        (delivered.is_some() || attempts.is_some()).then_some((delivered, attempts))
    }

    /// The entry of [`take_simple`](Self::take_simple) was journaled.
    #[inline]
    pub(crate) fn simple_journaled(&mut self, delivered: Option<u64>, attempts: bool) {
        if let Some(d) = delivered {
            self.delivered_written = self.delivered_written.max(d);
        }
        if attempts {
            self.unwritten_attempts.clear();
        }
    }

    /// What a checkpoint records: `delivered`, the attempts and the delays of items not
    /// acknowledged (those below `head` and the `singles`).
    pub(crate) fn snapshot(&mut self, head: u64, singles: &SeqSet) -> WorkState {
        self.attempts.remove_acked(head, singles);
        // Every delay not yet over: before `read` (by due time) and after it.
        let delayed = self.delayed.keys().map(|&(d, s)| (s, d));
        let ahead = self.ahead.iter().map(|(&s, &d)| (s, d));
        let mut w = WorkState {
            delivered: self.delivered,
            attempts: self.attempts.iter().map(|(&s, &n)| (s, n)).collect(),
            delays: delayed
                .chain(ahead)
                .filter(|&(s, _)| !(s < head || singles.contains(&s)))
                .collect(),
            marks: Vec::new(),
        };
        // The attempts come in order (an ordered map); the delays, few, are sorted.
        w.delays.sort_unstable();
        w
    }

    /// A checkpoint recorded everything.
    pub(crate) fn checkpointed(&mut self) {
        self.delivered_written = self.delivered;
        self.unwritten_attempts.clear();
        self.unwritten_delays.clear();
    }
}

/// The entries of `list`, leaving `spare` (emptied, its memory kept) in its place. An
/// empty list is left alone: most appends (an acknowledgement) have none.
#[inline]
fn take_list<T>(list: &mut Vec<T>, spare: &mut Vec<T>) -> Vec<T> {
    if list.is_empty() {
        return Vec::new();
    }
    std::mem::replace(list, std::mem::take(spare))
}

/// Keeps the memory of a journaled `list` as the next `spare`.
#[inline]
fn keep_list<T>(list: &mut Vec<T>, spare: &mut Vec<T>) {
    if list.capacity() > 0 {
        list.clear();
        *spare = std::mem::take(list);
    }
}
