//! The leases of the deliveries in flight: by item, and by deadline for the timer. Part
//! of `Retries`. Leases of the queue's one span are taken in deadline order (one
//! monotonic clock), so they go in a queue, O(1) each; a lease extended by another span
//! goes in an ordered set. Entries are dropped from those lazily (a lease ended when its
//! item's entry in `by_seq` no longer matches), and rebuilt when the stale ones outnumber
//! the live ones, so memory stays in proportion to the deliveries in flight.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use crate::retries::Loc;

/// A hasher for sequence numbers: one multiplication (SipHash costs more than the rest of
/// a lease's bookkeeping, and these keys are not chosen by an adversary).
#[derive(Default, Clone, Copy)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by sequence number.
pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub(crate) token: u64,
    pub(crate) deadline: Duration,
    pub(crate) loc: Loc,
}

/// (deadline, seq, token).
type Entry = (Duration, u64, u64);

#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_seq: SeqMap<Lease>,
    in_order: VecDeque<Entry>,
    out_of_order: BTreeSet<Entry>,
}

impl Leases {
    pub(crate) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Lease> {
        self.by_seq.get(&seq)
    }

    /// Sets the lease of `seq` (replacing any).
    pub(crate) fn insert(&mut self, seq: u64, lease: Lease) {
        let replaced = self.by_seq.insert(seq, lease).is_some();
        let e = (lease.deadline, seq, lease.token);
        if self.in_order.back().is_none_or(|b| b.0 <= lease.deadline) {
            self.in_order.push_back(e);
        } else {
            self.out_of_order.insert(e);
        }
        if self.in_order.len() + self.out_of_order.len() > 2 * self.by_seq.len() + 1024 {
            self.rebuild();
        }
        if replaced {
            // The replaced lease's entry may be at a front.
            self.trim();
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<Lease> {
        let l = self.by_seq.remove(&seq);
        self.trim();
        l
    }

    fn live(&self, e: &Entry) -> bool {
        self.by_seq
            .get(&e.1)
            .is_some_and(|l| l.token == e.2 && l.deadline == e.0)
    }

    /// Drops ended leases from the fronts.
    fn trim(&mut self) {
        while self.in_order.front().is_some_and(|e| !self.live(e)) {
            self.in_order.pop_front();
        }
        while self.out_of_order.first().is_some_and(|e| !self.live(e)) {
            self.out_of_order.pop_first();
        }
    }

    fn rebuild(&mut self) {
        let mut v: Vec<Entry> = self
            .by_seq
            .iter()
            .map(|(&s, l)| (l.deadline, s, l.token))
            .collect();
        v.sort_unstable();
        self.in_order = v.into();
        self.out_of_order.clear();
    }

    /// The earliest deadline.
    pub(crate) fn first_deadline(&self) -> Option<Duration> {
        let a = self.in_order.front().map(|e| e.0);
        let b = self.out_of_order.first().map(|e| e.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes and returns a lease that ran out by `now`, if any.
    pub(crate) fn pop_expired(&mut self, now: Duration) -> Option<(u64, Lease)> {
        self.trim();
        let first = match (self.in_order.front(), self.out_of_order.first()) {
            (Some(a), Some(b)) => *a.min(b),
            (Some(a), None) => *a,
            (None, Some(b)) => *b,
            (None, None) => return None,
        };
        if first.0 > now {
            return None;
        }
        let lease = self.by_seq.remove(&first.1)?;
        self.trim();
        Some((first.1, lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(token: u64, ms: u64) -> Lease {
        Lease {
            token,
            deadline: Duration::from_millis(ms),
            loc: Loc {
                chunk: 0,
                offset: 0,
            },
        }
    }

    #[test]
    fn leases_expire_in_deadline_order_and_stale_ones_are_dropped() {
        let mut l = Leases::default();
        l.insert(1, lease(1, 10));
        l.insert(2, lease(2, 20));
        l.insert(3, lease(3, 15)); // out of order
        l.insert(1, lease(4, 30)); // extended
        assert_eq!(l.first_deadline(), Some(Duration::from_millis(15)));
        assert!(l.pop_expired(Duration::from_millis(14)).is_none());
        let got: Vec<u64> = std::iter::from_fn(|| l.pop_expired(Duration::from_millis(25)))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, [3, 2]);
        assert_eq!(l.len(), 1);
        assert_eq!(
            l.pop_expired(Duration::from_millis(30))
                .map(|(s, x)| (s, x.token)),
            Some((1, 4))
        );
        assert!(l.is_empty());
        // Acknowledged leases leave no stale entries behind for long.
        for s in 0..10_000 {
            l.insert(s, lease(s, 100 + s));
            l.remove(s);
        }
        assert!(l.in_order.len() + l.out_of_order.len() <= 1024);
    }
}
