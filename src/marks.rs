//! Put times, for `Stats::oldest_age`: marks (first sequence number of a write, wall
//! time in milliseconds) taken when items are written, at most one per millisecond and
//! at most [`KEPT`] in memory (halved, every other one dropped, when full), so that
//! memory stays bounded however long the backlog. A checkpoint records [`RECORDED`] of
//! them in `info` (FORMAT.md §info), spread over the waiting items, so that ages survive
//! a reopen, more coarsely.

use std::collections::VecDeque;

/// Marks kept in memory.
const KEPT: usize = 4096;
/// Marks a checkpoint records.
pub(crate) const RECORDED: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Ascending in both seq and time.
    v: VecDeque<(u64, u64)>,
    /// Items between marks at least: doubled when the marks are thinned, so that they
    /// stay evenly spread over the backlog.
    gap: u64,
}

impl Marks {
    pub(crate) fn recovered(marks: &[(u64, u64)]) -> Marks {
        Marks {
            v: marks.iter().copied().collect(),
            gap: 1,
        }
    }

    /// Items from `seq` on were written at `ms` (or later).
    pub(crate) fn note(&mut self, seq: u64, ms: u64) {
        match self.v.back() {
            Some(&(s, t)) if t >= ms || seq < s.saturating_add(self.gap.max(1)) => return,
            _ => {}
        }
        if self.v.len() >= KEPT {
            // Every other one goes: the spacing doubles, the span stays.
            let kept: VecDeque<_> = self.v.iter().copied().step_by(2).collect();
            self.v = kept;
            self.gap = self.gap.max(1) * 2;
        }
        self.v.push_back((seq, ms));
    }

    /// When item `seq` was written, at the latest: the newest mark at or before it.
    /// `None` when no mark is that old (items recovered from an older format).
    pub(crate) fn time_of(&self, seq: u64) -> Option<u64> {
        let i = self.v.partition_point(|&(s, _)| s <= seq);
        i.checked_sub(1).map(|i| self.v[i].1)
    }

    /// Drops marks no item at or after `oldest` needs (all but the last before it).
    pub(crate) fn forget_before(&mut self, oldest: u64) {
        while self.v.len() >= 2 && self.v[1].0 <= oldest {
            self.v.pop_front();
        }
    }

    /// At most [`RECORDED`] marks, the first and last among them, spread between.
    pub(crate) fn recorded(&self) -> Vec<(u64, u64)> {
        let n = self.v.len();
        if n <= RECORDED {
            return self.v.iter().copied().collect();
        }
        (0..RECORDED)
            .map(|i| self.v[i * (n - 1) / (RECORDED - 1)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_stay_bounded_ascending_and_answer_at_or_before() {
        let mut m = Marks::default();
        for i in 0..100_000u64 {
            m.note(i * 10, 1_000 + i);
        }
        assert!(m.v.len() <= KEPT);
        assert!(
            m.v.iter()
                .zip(m.v.iter().skip(1))
                .all(|(a, b)| a.0 < b.0 && a.1 < b.1)
        );
        assert_eq!(m.time_of(0), Some(1_000));
        // Evenly spread: within 1/2048 of the span (100,000 ms) anywhere.
        let t = m.time_of(500_000).unwrap();
        assert!(t <= 1_000 + 50_000 && t + 100 >= 1_000 + 50_000, "{t}");
        m.note(5, 999_999); // not after the last seq: ignored
        assert_eq!(m.recorded().len(), RECORDED);
        assert_eq!(m.recorded()[0], m.v[0]);
        m.forget_before(999_000);
        assert!(m.v[0].0 <= 999_000 && m.v.get(1).is_none_or(|x| x.0 > 999_000));
        assert_eq!(Marks::default().time_of(3), None);
    }
}
