//! The `info` checkpoint. FORMAT.md §info.

use super::{DecodeError, FORMAT_VERSION, check_magic_and_crc, u32_at, u64_at};

fn u128_at(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_le_bytes(a)
}

const MAGIC: &[u8; 8] = b"diskqinf";
/// Length of an encoded `info` file with no single acknowledgements, attempts or delays.
pub(crate) const INFO_MIN_LEN: usize = 108;
/// The same in format version 4, which had no deliveries.
const INFO_V4_MIN_LEN: usize = 88;
/// The same in format version 3, which had no boot id and flags.
const INFO_V3_MIN_LEN: usize = 68;
/// The same in format version 2, which had no `head_chunk`.
const INFO_V2_MIN_LEN: usize = 60;
/// The same in format version 1, which had no tail mark either.
const INFO_V1_MIN_LEN: usize = 40;

/// What a checkpoint records: how many items were acknowledged in order, which later items
/// were acknowledged one by one, the chunk that was the tail when it was written, and how
/// far that chunk's records went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    /// Sequence number of the oldest unacknowledged item: every item before it is
    /// acknowledged.
    pub(crate) acked: u64,
    /// Number of the newest chunk file at the time of the checkpoint.
    pub(crate) tail_chunk: u64,
    /// The byte offset in `tail_chunk` where its records written before the checkpoint
    /// end, or 0 if not recorded (format version 1, a rebuilt queue): recovery scans from
    /// there instead of from the chunk's first record.
    pub(crate) tail_end: u64,
    /// How many records `tail_chunk` holds before `tail_end`.
    pub(crate) tail_count: u64,
    /// The length of the last of them (frame header and payload), 0 if there are none:
    /// recovery reads that one record to check that the bytes are still there.
    pub(crate) tail_last_len: u32,
    /// Number of the oldest chunk file at the time of the checkpoint, a lower bound of
    /// the oldest one now (chunks are deleted oldest first): recovery looks for the
    /// chunk files from here to `tail_chunk` and beyond instead of listing the
    /// directory. `None` in versions 1 and 2, which did not record it.
    pub(crate) head_chunk: Option<u64>,
    /// The boot of the machine during which this checkpoint was written
    /// (`Storage::boot_id`); `Some(0)` when the machine gave none: a restart, and a power
    /// loss with it, is then assumed to have happened since. `None` before version 4,
    /// which did not record it: such a queue is opened as a process crash left it.
    pub(crate) boot_id: Option<u128>,
    /// Every record in every chunk file and every journal entry was on stable storage
    /// when this checkpoint was written: after a restart, recovery need only check what
    /// comes after the tail mark. Versions before 4: false.
    pub(crate) all_synced: bool,
    /// Items after `acked` acknowledged individually, ascending.
    pub(crate) singles: Vec<u64>,
    /// Deliveries, attempts and delays (version 5; empty before).
    pub(crate) work: WorkState,
}

/// What a checkpoint records of deliveries: every item before `delivered` was delivered
/// at least once; items (not acknowledged) delivered more than once, with their count;
/// items given back until a due time (milliseconds since the Unix epoch). Ascending.
/// `marks`: (seq, milliseconds since the Unix epoch) of some writes, ascending: items from
/// that seq on were written then or later (for the age of the oldest item).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WorkState {
    pub(crate) delivered: u64,
    pub(crate) attempts: Vec<(u64, u32)>,
    pub(crate) delays: Vec<(u64, u64)>,
    pub(crate) marks: Vec<(u64, u64)>,
}

/// `Info::flags` bit: `all_synced`.
const FLAG_ALL_SYNCED: u32 = 1;

impl Info {
    /// A checkpoint of `acked` with no single acknowledgements and no recorded tail, of
    /// a queue whose chunk files are numbered from 0.
    pub(crate) fn new(acked: u64, tail_chunk: u64) -> Info {
        Info {
            acked,
            tail_chunk,
            tail_end: 0,
            tail_count: 0,
            tail_last_len: 0,
            head_chunk: Some(0),
            boot_id: None,
            all_synced: false,
            singles: Vec::new(),
            work: WorkState::default(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_as(FORMAT_VERSION)
    }

    /// Encodes in the layout of `version`, 2, 3 or the current one: the fuzzer and tests
    /// write older directories with it, to check they are still read.
    pub(crate) fn encode_as(&self, version: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(INFO_MIN_LEN + 8 * self.singles.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&[0; 4]); // reserved
        b.extend_from_slice(&self.acked.to_le_bytes());
        b.extend_from_slice(&self.tail_chunk.to_le_bytes());
        b.extend_from_slice(&self.tail_end.to_le_bytes());
        b.extend_from_slice(&self.tail_count.to_le_bytes());
        b.extend_from_slice(&self.tail_last_len.to_le_bytes());
        if version >= 3 {
            // 0 is a lower bound of every chunk number: right, if slower to open, for
            // an `Info` read from version 2 and written again.
            b.extend_from_slice(&self.head_chunk.unwrap_or(0).to_le_bytes());
        }
        if version >= 4 {
            b.extend_from_slice(&self.boot_id.unwrap_or(0).to_le_bytes());
            let flags = if self.all_synced { FLAG_ALL_SYNCED } else { 0 };
            b.extend_from_slice(&flags.to_le_bytes());
        }
        b.extend_from_slice(&(self.singles.len() as u32).to_le_bytes());
        for s in &self.singles {
            b.extend_from_slice(&s.to_le_bytes());
        }
        if version >= 5 {
            let w = &self.work;
            b.extend_from_slice(&w.delivered.to_le_bytes());
            b.extend_from_slice(&(w.attempts.len() as u32).to_le_bytes());
            for (seq, n) in &w.attempts {
                b.extend_from_slice(&seq.to_le_bytes());
                b.extend_from_slice(&n.to_le_bytes());
            }
            for list in [&w.delays, &w.marks] {
                b.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for (seq, v) in list {
                    b.extend_from_slice(&seq.to_le_bytes());
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the current format, and versions 1 and 2's shorter layouts.
    pub(crate) fn decode(b: &[u8]) -> Result<Info, DecodeError> {
        // The CRC first: the layout depends on the version field, which it covers.
        check_magic_and_crc(b, INFO_V1_MIN_LEN, INFO_MIN_LEN, MAGIC)?;
        let version = u32_at(b, 8);
        // Where the count of single acknowledgements is, and the fixed length.
        let (n_at, min) = match version {
            1 => (32, INFO_V1_MIN_LEN),
            2 => (52, INFO_V2_MIN_LEN),
            3 => (60, INFO_V3_MIN_LEN),
            4 => (80, INFO_V4_MIN_LEN),
            FORMAT_VERSION => (80, INFO_MIN_LEN),
            v => return Err(DecodeError::Version(v)),
        };
        // The count is checked against the bytes present before it sizes anything.
        let n = if b.len() >= min {
            u32_at(b, n_at) as usize
        } else {
            0
        };
        let expected = min.saturating_add(n.saturating_mul(8));
        let work = if version >= 5 {
            decode_work(b, n_at + 4 + 8 * n.min(b.len() / 8), expected)?
        } else if b.len() != expected {
            return Err(DecodeError::Length {
                expected,
                found: b.len(),
            });
        } else {
            WorkState::default()
        };
        if version >= 4 && u32_at(b, 76) & !FLAG_ALL_SYNCED != 0 {
            return Err(DecodeError::Flags(u32_at(b, 76)));
        }
        let (tail_end, tail_count, tail_last_len) = if version == 1 {
            (0, 0, 0)
        } else {
            (u64_at(b, 32), u64_at(b, 40), u32_at(b, 48))
        };
        Ok(Info {
            acked: u64_at(b, 16),
            tail_chunk: u64_at(b, 24),
            tail_end,
            tail_count,
            tail_last_len,
            head_chunk: (version >= 3).then(|| u64_at(b, 52)),
            boot_id: (version >= 4).then(|| u128_at(b, 60)),
            all_synced: version >= 4 && u32_at(b, 76) & FLAG_ALL_SYNCED != 0,
            singles: (0..n).map(|i| u64_at(b, n_at + 4 + 8 * i)).collect(),
            work,
        })
    }
}

impl WorkState {
    /// Keeps what concerns items still there and not acknowledged: before `tail`, and
    /// not `acked`. No item at or after `tail` was delivered.
    pub(crate) fn retain_live(&mut self, tail: u64, acked: impl Fn(u64) -> bool) {
        self.delivered = self.delivered.min(tail);
        self.attempts.retain(|&(s, _)| s < tail && !acked(s));
        self.delays.retain(|&(s, _)| s < tail && !acked(s));
    }

    /// This state with later entries merged in: the largest `delivered`, count and due
    /// time win (each only grows while its item waits: a stale entry left by an
    /// interrupted checkpoint changes nothing).
    pub(crate) fn merged(
        &self,
        delivered: Option<u64>,
        attempts: &[(u64, u32)],
        delays: &[(u64, u64)],
    ) -> WorkState {
        let mut a: std::collections::BTreeMap<u64, u32> = self.attempts.iter().copied().collect();
        for &(s, n) in attempts {
            let e = a.entry(s).or_insert(n);
            *e = (*e).max(n);
        }
        let mut d: std::collections::BTreeMap<u64, u64> = self.delays.iter().copied().collect();
        for &(s, due) in delays {
            let e = d.entry(s).or_insert(due);
            *e = (*e).max(due);
        }
        WorkState {
            delivered: self.delivered.max(delivered.unwrap_or(0)),
            attempts: a.into_iter().collect(),
            delays: d.into_iter().collect(),
            marks: self.marks.clone(),
        }
    }
}

/// Version 5's deliveries, from `at` (after the singles) to the CRC. `expected`: the
/// length with none of them. Every count is checked against the bytes there before it
/// sizes anything.
fn decode_work(b: &[u8], at: usize, expected: usize) -> Result<WorkState, DecodeError> {
    let short = |expected: usize| DecodeError::Length {
        expected,
        found: b.len(),
    };
    if b.len() < expected {
        return Err(short(expected));
    }
    let end = b.len() - 4;
    let delivered = u64_at(b, at);
    let a = u32_at(b, at + 8) as usize;
    let d_at = at + 12 + a.saturating_mul(12);
    if d_at.saturating_add(4) > end {
        return Err(short(expected.saturating_add(a.saturating_mul(12))));
    }
    let d = u32_at(b, d_at) as usize;
    let m_at = d_at.saturating_add(4).saturating_add(d.saturating_mul(16));
    if m_at.saturating_add(4) > end {
        return Err(short(m_at.saturating_add(8)));
    }
    let m = u32_at(b, m_at) as usize;
    let total = m_at
        .saturating_add(4)
        .saturating_add(m.saturating_mul(16))
        .saturating_add(4);
    if total != b.len() {
        return Err(short(total));
    }
    let pairs = |at: usize, n: usize| -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| (u64_at(b, at + 16 * i), u64_at(b, at + 8 + 16 * i)))
            .collect()
    };
    Ok(WorkState {
        delivered,
        attempts: (0..a)
            .map(|i| (u64_at(b, at + 12 + 12 * i), u32_at(b, at + 20 + 12 * i)))
            .collect(),
        delays: pairs(d_at + 4, d),
        marks: pairs(m_at + 4, m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        for singles in [vec![], vec![123_456_800, 123_456_900]] {
            let info = Info {
                acked: 123_456_789,
                tail_chunk: 42,
                tail_end: 800_028,
                tail_count: 10_000,
                tail_last_len: 80,
                head_chunk: Some(40),
                boot_id: Some(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
                all_synced: true,
                singles,
                work: WorkState {
                    delivered: 123_456_999,
                    attempts: vec![(123_456_790, 3)],
                    delays: vec![(123_456_791, 1_700_000_000_000)],
                    marks: vec![(123_456_789, 1_699_999_999_000)],
                },
            };
            let b = info.encode();
            assert_eq!(Info::decode(&b), Ok(info));
            for i in 0..b.len() * 8 {
                let mut c = b.clone();
                c[i / 8] ^= 1 << (i % 8);
                assert!(Info::decode(&c).is_err(), "bit {i} flipped went unnoticed");
            }
            assert!(Info::decode(&b[..b.len() - 1]).is_err());
        }
        assert!(Info::decode(&[]).is_err());
    }

    /// Version 1 (FORMAT.md §Version history): no tail fields, so none is recorded.
    #[test]
    fn version_1_is_read() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&7u64.to_le_bytes()); // acked
        b.extend_from_slice(&3u64.to_le_bytes()); // tail_chunk
        b.extend_from_slice(&1u32.to_le_bytes()); // one single
        b.extend_from_slice(&9u64.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let mut want = Info::new(7, 3);
        want.singles = vec![9];
        want.head_chunk = None;
        assert_eq!(Info::decode(&b), Ok(want));
    }

    /// Version 2: the tail mark, but no head chunk, which recovery then finds by listing
    /// the directory.
    #[test]
    fn version_2_is_read() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&7u64.to_le_bytes()); // acked
        b.extend_from_slice(&3u64.to_le_bytes()); // tail_chunk
        b.extend_from_slice(&900u64.to_le_bytes()); // tail_end
        b.extend_from_slice(&11u64.to_le_bytes()); // tail_count
        b.extend_from_slice(&80u32.to_le_bytes()); // tail_last_len
        b.extend_from_slice(&1u32.to_le_bytes()); // one single
        b.extend_from_slice(&9u64.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let want = Info {
            acked: 7,
            tail_chunk: 3,
            tail_end: 900,
            tail_count: 11,
            tail_last_len: 80,
            head_chunk: None,
            boot_id: None,
            all_synced: false,
            singles: vec![9],
            work: WorkState::default(),
        };
        assert_eq!(Info::decode(&b), Ok(want));
    }

    /// Version 3: everything but the boot id and flags, so a restart is assumed.
    #[test]
    fn version_3_is_read() {
        let mut info = Info::new(7, 3);
        info.head_chunk = Some(2);
        info.tail_end = 900;
        info.singles = vec![9];
        let b = info.encode_as(3);
        assert_eq!(b.len(), INFO_V3_MIN_LEN + 8);
        let back = Info::decode(&b).unwrap();
        assert_eq!((back.boot_id, back.all_synced), (None, false));
        assert_eq!(
            (back.acked, back.head_chunk, back.singles),
            (7, Some(2), vec![9])
        );
    }

    #[test]
    fn another_version_is_refused_by_number() {
        let mut b = Info::new(0, 0).encode();
        b[8..12].copy_from_slice(&6u32.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Info::decode(&b), Err(DecodeError::Version(6)));
    }

    /// Version 4: no deliveries.
    #[test]
    fn version_4_is_read() {
        let mut info = Info::new(7, 3);
        info.singles = vec![9];
        info.work.delivered = 12;
        let b = info.encode_as(4);
        assert_eq!(b.len(), INFO_V4_MIN_LEN + 8);
        let back = Info::decode(&b).unwrap();
        assert_eq!((back.singles, back.work), (vec![9], WorkState::default()));
    }

    #[test]
    fn huge_delivery_counts_are_refused_without_allocating() {
        for at in [
            INFO_MIN_LEN - 4 - 12,
            INFO_MIN_LEN - 4 - 8,
            INFO_MIN_LEN - 4 - 4,
        ] {
            let mut b = Info::new(0, 0).encode();
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            let n = b.len() - 4;
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            assert!(
                matches!(Info::decode(&b), Err(DecodeError::Length { .. })),
                "{at}"
            );
        }
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating() {
        let mut b = Info::new(0, 0).encode();
        b[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(Info::decode(&b), Err(DecodeError::Length { .. })));
    }
}
