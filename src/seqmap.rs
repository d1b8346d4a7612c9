//! Maps keyed by sequence number: a cheap hasher, and an ordered map that answers for
//! numbers below its lowest key with one comparison (attempt counts, looked up on every
//! get, are mostly kept for the newest items: copies appended by `nack_after`; and a
//! checkpoint writes them in order; the same for the delays of those copies).

use crate::seqset::SeqSet;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

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

/// An ordered map with its lowest key at hand: a lookup below it costs a comparison.
#[derive(Debug, Clone)]
pub(crate) struct LowMap<V> {
    map: BTreeMap<u64, V>,
    /// The lowest key (`u64::MAX` when empty).
    low: u64,
}

impl<V> Default for LowMap<V> {
    fn default() -> Self {
        LowMap {
            map: BTreeMap::new(),
            low: u64::MAX,
        }
    }
}

impl<V> LowMap<V> {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    pub(crate) fn get(&self, seq: &u64) -> Option<&V> {
        if *seq < self.low {
            return None;
        }
        self.map.get(seq)
    }

    pub(crate) fn insert(&mut self, seq: u64, v: V) -> Option<V> {
        self.low = self.low.min(seq);
        self.map.insert(seq, v)
    }

    #[inline]
    pub(crate) fn remove(&mut self, seq: &u64) -> Option<V> {
        if *seq < self.low {
            return None;
        }
        let v = self.map.remove(seq);
        if *seq == self.low {
            self.tighten();
        }
        v
    }

    fn tighten(&mut self) {
        self.low = self.map.first_key_value().map_or(u64::MAX, |(&s, _)| s);
    }

    /// Keeps the entries `keep` says to.
    #[cfg(test)]
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&u64, &mut V) -> bool) {
        self.map.retain(|s, v| keep(s, v));
        self.tighten();
    }

    /// Drops the keys below `head` and those in `singles`: the acknowledged items, at a
    /// cost of the entries dropped (a checkpoint keeps the counts of copies waiting at the
    /// end of a long backlog, which a `retain` would walk every time).
    pub(crate) fn remove_acked(&mut self, head: u64, singles: &SeqSet) {
        if head > self.low {
            self.map = self.map.split_off(&head);
        }
        for r in singles.ranges() {
            let gone: Vec<u64> = self.map.range(r).map(|(&s, _)| s).collect();
            for s in gone {
                self.map.remove(&s);
            }
        }
        self.tighten();
    }

    /// In key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.map.iter()
    }
}

impl<V> FromIterator<(u64, V)> for LowMap<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(it: I) -> Self {
        let mut m = LowMap {
            map: it.into_iter().collect(),
            low: 0,
        };
        m.tighten();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_map_answers_below_its_lowest_key_and_tightens() {
        let mut m: LowMap<u32> = LowMap::default();
        assert_eq!(m.get(&5), None);
        m.insert(10, 1);
        m.insert(7, 2);
        assert_eq!(
            (m.get(&7), m.get(&10), m.get(&6)),
            (Some(&2), Some(&1), None)
        );
        assert_eq!(m.remove(&3), None);
        m.insert(12, 4);
        assert_eq!(m.iter().map(|(&s, _)| s).collect::<Vec<_>>(), [7, 10, 12]);
        m.retain(|&s, _| s != 7);
        assert_eq!(m.low, 10);
        assert_eq!(m.remove(&12), Some(4));
        assert_eq!(m.remove(&10), Some(1));
        assert!(m.is_empty());
        assert_eq!(m.low, u64::MAX);
        m.insert(4, 3);
        assert_eq!(m.get(&4), Some(&3));
    }

    #[test]
    fn remove_acked_drops_what_is_below_the_head_or_a_single() {
        let mut m: LowMap<u32> = (0..40).map(|s| (s * 3, 0)).collect();
        let singles: SeqSet = [50, 51, 60, 61, 62, 63, 100, 200].into_iter().collect();
        let mut want = m.clone();
        want.retain(|&s, _| !(s < 30 || singles.contains(&s)));
        m.remove_acked(30, &singles);
        assert!(m.iter().eq(want.iter()));
        assert_eq!(m.low, 30);
        m.remove_acked(1000, &SeqSet::default());
        assert!(m.is_empty());
        assert_eq!(m.low, u64::MAX);
    }
}
