//! The leases of the deliveries in flight, in deadline order for the timer. Part of
//! `Retries`. Leases of the queue's one span are taken in deadline order (one monotonic
//! clock), so they go in a queue, O(1) each; a lease extended by another span goes in an
//! ordered set. See [`Leases`] for how an ended lease is told from a live one.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::retries::Loc;
use crate::seqmap::SeqMap;

/// A point or a span of the queue's monotonic clock in nanoseconds: leases add and
/// compare these on every get and acknowledgement, where a `Duration` costs more.
pub(crate) type Nanos = u64;

/// The deadline of a delivery without a lease (and where a lease's end saturates).
pub(crate) const NEVER: Nanos = u64::MAX;

/// `d` in [`Nanos`] (saturating: a span of 584 years is forever).
#[inline]
pub(crate) fn nanos(d: Duration) -> Nanos {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A lease: (deadline, seq, token, where the item's record is). Ordered by deadline.
pub(crate) type Entry = (Nanos, u64, u64, Loc);

/// The leases of deliveries in flight, by deadline. An entry is not removed when its
/// delivery ends: it is *dead* once its item is no longer in flight (acknowledged, given
/// back), once the item was delivered again (`tokens` holds the newer delivery's token),
/// or once its lease was extended (`extended` holds the newer deadline). Dead entries are
/// dropped from the fronts as acknowledgements come, and all at once when they would
/// outnumber the live ones, so memory stays in proportion to the deliveries in flight.
/// This keeps a get and an acknowledgement free of any per-item map: they are the hot
/// path, while deliveries again and extensions are rare.
///
/// The newest entry waits in `newest` and joins the others only when the next one
/// comes while it is still live: a consumer that settles each delivery before its next
/// get (one worker) never touches the queues, whose push and pop were a fifth of what
/// a lease costs a get and its acknowledgement (W7).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    newest: Option<Entry>,
    in_order: VecDeque<Entry>,
    out_of_order: BTreeSet<Entry>,
    /// The token of the latest delivery of items delivered more than once.
    tokens: SeqMap<u64>,
    /// The deadline of the latest delivery of items whose lease was extended.
    extended: SeqMap<Nanos>,
}

impl Leases {
    /// Whether no entry is kept (dead ones included): then no lease can run out.
    pub(crate) fn is_empty(&self) -> bool {
        self.newest.is_none() && self.in_order.is_empty() && self.out_of_order.is_empty()
    }

    /// The token of the latest delivery of `seq`, when it was delivered more than once.
    pub(crate) fn latest_token(&self, seq: u64) -> Option<u64> {
        if self.tokens.is_empty() {
            return None;
        }
        self.tokens.get(&seq).copied()
    }

    /// Whether nothing per item is kept: acknowledgements may skip [`acked`](Self::acked).
    pub(crate) fn nothing_per_item(&self) -> bool {
        self.tokens.is_empty() && self.extended.is_empty()
    }

    /// Delivery `token` of `seq` (with a lease or without): it supersedes what is kept of
    /// the item's earlier deliveries, whose entries are dead from now on. `again`: the
    /// item may have been delivered before in this process.
    #[inline]
    pub(crate) fn delivered(&mut self, seq: u64, token: u64, again: bool) {
        let known = again
            || (!self.tokens.is_empty() && self.tokens.contains_key(&seq))
            || (!self.extended.is_empty() && self.extended.contains_key(&seq));
        if known {
            self.tokens.insert(seq, token);
            self.extended.remove(&seq);
        }
    }

    /// The lease of a delivery (after [`delivered`](Self::delivered)). `count` and
    /// `live`: how many deliveries are in flight now, and whether an item is (the
    /// engine's acknowledgement state knows; the count is asked only when it matters).
    /// Inlined, with `push`: an entry passed through memory was read back with 16-byte
    /// loads of the caller's 8-byte stores, a stall.
    #[inline(always)]
    pub(crate) fn insert(
        &mut self,
        e: Entry,
        count: impl FnOnce() -> u64,
        live: impl Fn(u64) -> bool,
    ) {
        self.push(e, &live);
        self.bound(count, live);
    }

    /// Drops the dead entries when they may outnumber the live ones.
    #[inline]
    fn bound(&mut self, count: impl FnOnce() -> u64, live: impl Fn(u64) -> bool) {
        let kept = (self.in_order.len() + self.out_of_order.len()) as u64;
        if kept > 1024 && kept > 2 * count() + 1024 {
            self.rebuild(live);
        }
    }

    /// The lease of `e`, held, now runs out at `deadline`. `count`, `live`: as for
    /// `insert`.
    pub(crate) fn extend(
        &mut self,
        e: Entry,
        count: impl FnOnce() -> u64,
        live: impl Fn(u64) -> bool,
    ) {
        if self.extended.insert(e.1, e.0) == Some(e.0) {
            // The same deadline again: its entry is there (a second would count as live
            // too, and no rebuild could drop it).
            return;
        }
        self.push(e, &live);
        self.bound(count, live);
    }

    /// Every entry of `seq` is dead until its next delivery: it is being settled, and
    /// the lock may be let go before it is (`nack_after` writes a copy).
    pub(crate) fn end(&mut self, seq: u64) {
        self.tokens.insert(seq, 0);
    }

    /// `e` becomes the newest entry; the one before joins the queues if still `live`.
    #[inline(always)]
    fn push(&mut self, e: Entry, live: &impl Fn(u64) -> bool) {
        if let Some(prev) = self.newest.replace(e)
            && self.live(&prev, live)
        {
            self.queue(prev);
        }
    }

    /// Into the queues, by deadline.
    #[cold]
    fn queue(&mut self, e: Entry) {
        if self.in_order.back().is_none_or(|b| b.0 <= e.0) {
            self.in_order.push_back(e);
        } else {
            self.out_of_order.insert(e);
        }
    }

    /// Delivery `token` of `seq` did not happen after all (recording it failed): its
    /// entry must never count, also once the item is delivered again.
    pub(crate) fn cancel(&mut self, seq: u64, token: u64) {
        if self.newest.is_some_and(|n| n.1 == seq && n.2 == token) {
            self.newest = None;
        } else if self
            .in_order
            .back()
            .is_some_and(|b| b.1 == seq && b.2 == token)
        {
            self.in_order.pop_back();
        } else {
            // No delivery has token 0: every entry of `seq` is dead until the next one.
            self.tokens.insert(seq, 0);
        }
    }

    /// Item `seq` was acknowledged: nothing of it is needed any more.
    #[inline]
    pub(crate) fn acked(&mut self, seq: u64) {
        if !self.tokens.is_empty() {
            self.tokens.remove(&seq);
        }
        if !self.extended.is_empty() {
            self.extended.remove(&seq);
        }
    }

    /// Whether entry `e` is its item's current lease, the item being in flight.
    fn current(&self, e: &Entry) -> bool {
        (self.tokens.is_empty() || self.tokens.get(&e.1).is_none_or(|&t| t == e.2))
            && (self.extended.is_empty() || self.extended.get(&e.1).is_none_or(|&d| d == e.0))
    }

    fn live(&self, e: &Entry, in_flight: &impl Fn(u64) -> bool) -> bool {
        in_flight(e.1) && self.current(e)
    }

    /// Drops dead entries from the fronts.
    #[inline]
    pub(crate) fn trim(&mut self, in_flight: impl Fn(u64) -> bool) {
        if self.newest.is_some_and(|e| !self.live(&e, &in_flight)) {
            self.newest = None;
        }
        if !self.in_order.is_empty() || !self.out_of_order.is_empty() {
            self.trim_queues(in_flight);
        }
    }

    /// The queues' part of [`trim`](Self::trim), out of line: the acknowledgement's path
    /// stays small when only the newest entry is kept.
    #[inline(never)]
    fn trim_queues(&mut self, in_flight: impl Fn(u64) -> bool) {
        while self
            .in_order
            .front()
            .is_some_and(|e| !self.live(e, &in_flight))
        {
            self.in_order.pop_front();
        }
        while self
            .out_of_order
            .first()
            .is_some_and(|e| !self.live(e, &in_flight))
        {
            self.out_of_order.pop_first();
        }
    }

    fn rebuild(&mut self, in_flight: impl Fn(u64) -> bool) {
        let mut v: Vec<Entry> = self
            .in_order
            .iter()
            .chain(self.out_of_order.iter())
            .chain(self.newest.take().iter())
            .filter(|e| self.live(e, &in_flight))
            .copied()
            .collect();
        v.sort_unstable();
        self.in_order = v.into();
        self.out_of_order.clear();
    }

    /// The earliest deadline kept (perhaps a dead entry's: a waiter then wakes early).
    pub(crate) fn first_deadline(&self) -> Option<Nanos> {
        let a = self.in_order.front().map(|e| e.0);
        let b = self.out_of_order.first().map(|e| e.0);
        let c = self.newest.map(|e| e.0);
        [a, b, c].into_iter().flatten().min()
    }

    /// Removes and returns the earliest entry that ran out by `now` and is its item's
    /// current lease, if any (whether the item is still in flight, the caller checks);
    /// dead ones that ran out are dropped on the way.
    pub(crate) fn pop_expired(&mut self, now: Nanos) -> Option<(u64, Loc)> {
        loop {
            let a = self.in_order.front().filter(|e| e.0 <= now);
            let b = self.out_of_order.first().filter(|e| e.0 <= now);
            let c = self.newest.as_ref().filter(|e| e.0 <= now);
            // The earliest of the three (by deadline, then sequence number).
            let e = match (a, b, c) {
                (_, _, Some(c)) if a.is_none_or(|a| c < a) && b.is_none_or(|b| c < b) => {
                    self.newest.take()?
                }
                (Some(a), Some(b), _) if b < a => self.out_of_order.pop_first()?,
                (Some(_), _, _) => self.in_order.pop_front()?,
                (None, Some(_), _) => self.out_of_order.pop_first()?,
                (None, None, _) => return None,
            };
            if self.current(&e) {
                return Some((e.1, e.3));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const AT: Loc = Loc {
        chunk: 0,
        offset: 0,
    };

    fn e(seq: u64, token: u64, ms: u64) -> Entry {
        (ms * 1_000_000, seq, token, AT)
    }

    fn expired(l: &mut Leases, ms: u64) -> Vec<u64> {
        std::iter::from_fn(|| l.pop_expired(ms * 1_000_000))
            .map(|(s, _)| s)
            .collect()
    }

    #[test]
    fn leases_expire_in_deadline_order_and_ended_ones_do_not() {
        let mut l = Leases::default();
        let all = |_: u64| true;
        l.insert(e(1, 1, 10), || 1, all);
        l.insert(e(2, 2, 20), || 2, all);
        l.insert(e(3, 3, 15), || 3, all); // out of order
        l.extend(e(1, 1, 30), || 3, |_| true); // the lease of 1 now runs out at 30
        assert_eq!(l.first_deadline(), Some(10_000_000));
        assert!(expired(&mut l, 9).is_empty());
        // The entry of 1 at 10 is dead (extended): only 3 and 2 run out by 25.
        assert_eq!(expired(&mut l, 25), [3, 2]);
        assert_eq!(expired(&mut l, 30), [1]);
        assert!(l.is_empty());
    }

    /// One delivery at a time, each settled before the next (one worker): the newest
    /// entry is dropped when it dies, and the queues stay empty.
    #[test]
    fn settled_one_at_a_time_the_queues_stay_empty() {
        let mut l = Leases::default();
        for s in 1..1000u64 {
            // Only `s` is in flight when it is delivered.
            l.insert(e(s, s, 100 + s), || 1, |x| x == s);
            l.trim(|_| false); // acknowledged
            assert!(l.in_order.is_empty() && l.out_of_order.is_empty(), "{s}");
        }
        assert!(l.is_empty());
    }

    /// The newest entry counts in deadline order with the queued ones, also when an
    /// extension made it the earliest.
    #[test]
    fn the_newest_entry_runs_out_in_deadline_order() {
        let mut l = Leases::default();
        l.insert(e(1, 1, 50), || 1, |_| true);
        l.insert(e(2, 2, 60), || 2, |_| true); // 1 queued, 2 newest
        l.extend(e(2, 2, 5), || 2, |_| true); // the lease of 2 now runs out first
        assert_eq!(l.first_deadline(), Some(5_000_000));
        assert_eq!(expired(&mut l, 10), [2]);
        assert_eq!(expired(&mut l, 55), [1]);
        assert!(expired(&mut l, 100).is_empty());
        assert!(l.is_empty());
        // Cancelled while newest: gone at once.
        l.insert(e(3, 3, 10), || 1, |_| true);
        l.cancel(3, 3);
        assert!(l.is_empty());
    }

    #[test]
    fn an_item_delivered_again_counts_only_its_latest_lease() {
        let mut l = Leases::default();
        l.insert(e(7, 1, 10), || 1, |_| true);
        // Given back (the engine no longer has it in flight) and delivered again.
        l.delivered(7, 2, true);
        l.insert(e(7, 2, 20), || 1, |_| true);
        assert_eq!(l.latest_token(7), Some(2));
        assert_eq!(expired(&mut l, 15), Vec::<u64>::new());
        assert_eq!(expired(&mut l, 20), [7]);
        l.acked(7);
        assert!(l.nothing_per_item());
    }

    #[test]
    fn a_cancelled_delivery_never_runs_out() {
        let mut l = Leases::default();
        l.insert(e(1, 1, 10), || 1, |_| true);
        l.insert(e(2, 2, 10), || 2, |_| true);
        l.cancel(1, 1); // not at the back: marked
        l.cancel(2, 2); // at the back: dropped
        assert!(expired(&mut l, 10).is_empty());
        // Delivered again for real, even as a first attempt: that one counts.
        l.delivered(1, 3, false); // a first attempt, but known: cancelled
        l.insert(e(1, 3, 20), || 1, |_| true);
        assert_eq!(expired(&mut l, 20), [1]);
    }

    #[test]
    fn ended_leases_leave_no_entries_behind_for_long() {
        let mut l = Leases::default();
        let mut acked = HashSet::new();
        // Item 0 stays in flight for good; the others are acknowledged at once.
        for s in 0..10_000u64 {
            let in_flight = |x: u64| x == 0 || (x <= s && !acked.contains(&x));
            l.insert(e(s, s + 1, 100 + s), || 1 + u64::from(s > 0), in_flight);
            acked.insert(s);
            acked.remove(&0);
            l.trim(|x: u64| x == 0);
        }
        assert!(l.in_order.len() + l.out_of_order.len() <= 2 * 2 + 1024 + 1);
        // The one in flight runs out first (whether the others still are, the engine
        // checks as it gives them back).
        assert_eq!(expired(&mut l, u64::MAX / 2_000_000).first(), Some(&0));
    }
}
