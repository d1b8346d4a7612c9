//! The `info` checkpoint. FORMAT.md §info.

use super::{DecodeError, FORMAT_VERSION, u32_at, u64_at};

const MAGIC: &[u8; 8] = b"diskqinf";
/// Length of an encoded `info` file with no single acknowledgements.
pub(crate) const INFO_MIN_LEN: usize = 40;

/// What a checkpoint records: how many items were acknowledged in order, which later items
/// were acknowledged one by one, and the chunk that was the tail when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    /// Sequence number of the oldest unacknowledged item: every item before it is
    /// acknowledged.
    pub(crate) acked: u64,
    /// Number of the newest chunk file at the time of the checkpoint.
    pub(crate) tail_chunk: u64,
    /// Items after `acked` acknowledged individually, ascending.
    pub(crate) singles: Vec<u64>,
}

impl Info {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(INFO_MIN_LEN + 8 * self.singles.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&[0; 4]); // reserved
        b.extend_from_slice(&self.acked.to_le_bytes());
        b.extend_from_slice(&self.tail_chunk.to_le_bytes());
        b.extend_from_slice(&(self.singles.len() as u32).to_le_bytes());
        for s in &self.singles {
            b.extend_from_slice(&s.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Info, DecodeError> {
        if b.len() < INFO_MIN_LEN {
            return Err(DecodeError::Length {
                expected: INFO_MIN_LEN,
                found: b.len(),
            });
        }
        if &b[..8] != MAGIC {
            return Err(DecodeError::Magic);
        }
        // The count is checked against the bytes present before it sizes anything.
        let n = u32_at(b, 32) as usize;
        let expected = INFO_MIN_LEN.saturating_add(n.saturating_mul(8));
        if b.len() != expected {
            return Err(DecodeError::Length {
                expected,
                found: b.len(),
            });
        }
        let stored = u32_at(b, b.len() - 4);
        let computed = crc32fast::hash(&b[..b.len() - 4]);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        Ok(Info {
            acked: u64_at(b, 16),
            tail_chunk: u64_at(b, 24),
            singles: (0..n).map(|i| u64_at(b, 36 + 8 * i)).collect(),
        })
    }
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
                singles,
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

    #[test]
    fn a_huge_count_is_refused_without_allocating() {
        let mut b = Info {
            acked: 0,
            tail_chunk: 0,
            singles: vec![],
        }
        .encode();
        b[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Info::decode(&b), Err(DecodeError::Length { .. })));
    }
}
