//! A set of sequence numbers kept as ranges: the items acknowledged one by one behind an
//! item that holds the head back (given back with a delay, say) are mostly consecutive,
//! so they cost one range, not one tree node each.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SeqSet {
    /// start -> end (exclusive), disjoint and not touching.
    ranges: BTreeMap<u64, u64>,
    len: usize,
}

impl SeqSet {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The range holding `s`, if any.
    fn range_of(&self, s: u64) -> Option<(u64, u64)> {
        self.ranges
            .range(..=s)
            .next_back()
            .filter(|&(_, &end)| s < end)
            .map(|(&a, &b)| (a, b))
    }

    #[inline]
    pub(crate) fn contains(&self, s: &u64) -> bool {
        !self.is_empty() && self.range_of(*s).is_some()
    }

    /// Adds `s`; false if it was there.
    pub(crate) fn insert(&mut self, s: u64) -> bool {
        if self.contains(&s) {
            return false;
        }
        let before = self
            .ranges
            .range(..s)
            .next_back()
            .filter(|&(_, &end)| end == s)
            .map(|(&a, _)| a);
        let after = s
            .checked_add(1)
            .and_then(|n| self.ranges.remove(&n).map(|end| (n, end)));
        let start = before.unwrap_or(s);
        let end = after.map_or(s + 1, |(_, end)| end);
        self.ranges.insert(start, end);
        self.len += 1;
        true
    }

    /// Removes `s`; false if it was not there.
    #[inline]
    pub(crate) fn remove(&mut self, s: &u64) -> bool {
        if self.is_empty() {
            return false;
        }
        let Some((start, end)) = self.range_of(*s) else {
            return false;
        };
        self.ranges.remove(&start);
        if start < *s {
            self.ranges.insert(start, *s);
        }
        if *s + 1 < end {
            self.ranges.insert(*s + 1, end);
        }
        self.len -= 1;
        true
    }

    /// The members as disjoint `start..end` ranges, in order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
        self.ranges.iter().map(|(&a, &b)| a..b)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|(&a, &b)| a..b)
    }
}

impl FromIterator<u64> for SeqSet {
    fn from_iter<I: IntoIterator<Item = u64>>(it: I) -> SeqSet {
        let mut s = SeqSet::default();
        for x in it {
            s.insert(x);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn behaves_as_a_set() {
        let mut a = SeqSet::default();
        let mut b = BTreeSet::new();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = x % 300;
            if x.is_multiple_of(3) {
                assert_eq!(a.remove(&s), b.remove(&s));
            } else {
                assert_eq!(a.insert(s), b.insert(s));
            }
            assert_eq!(a.len(), b.len());
            assert_eq!(a.contains(&(x % 301)), b.contains(&(x % 301)));
        }
        assert!(a.iter().eq(b.iter().copied()));
        let c: SeqSet = [5, 6, 7, 9].into_iter().collect();
        assert_eq!(c.ranges.len(), 2);
    }
}
