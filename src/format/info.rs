//! The `info` checkpoint. FORMAT.md §info.

use super::{DecodeError, FORMAT_VERSION, check_fixed, u64_at};

const MAGIC: &[u8; 8] = b"diskqinf";
/// Length of an encoded `info` file.
pub(crate) const INFO_LEN: usize = 36;

/// What a checkpoint records: how many items were ever acknowledged, and the chunk that
/// was the tail when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Info {
    /// Sequence number of the oldest unacknowledged item (= items acknowledged ever).
    pub(crate) acked: u64,
    /// Number of the newest chunk file at the time of the checkpoint.
    pub(crate) tail_chunk: u64,
}

impl Info {
    pub(crate) fn encode(&self) -> [u8; INFO_LEN] {
        let mut b = [0u8; INFO_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 12..16 reserved, zero.
        b[16..24].copy_from_slice(&self.acked.to_le_bytes());
        b[24..32].copy_from_slice(&self.tail_chunk.to_le_bytes());
        let crc = crc32fast::hash(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Info, DecodeError> {
        check_fixed(b, INFO_LEN, MAGIC)?;
        Ok(Info {
            acked: u64_at(b, 16),
            tail_chunk: u64_at(b, 24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let info = Info {
            acked: 123_456_789,
            tail_chunk: 42,
        };
        let b = info.encode();
        assert_eq!(Info::decode(&b), Ok(info));
        for i in 0..b.len() * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(Info::decode(&c).is_err(), "bit {i} flipped went unnoticed");
        }
        assert!(Info::decode(&b[..35]).is_err());
        assert!(Info::decode(&[]).is_err());
    }
}
