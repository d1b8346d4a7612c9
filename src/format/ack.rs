//! Entries of the `acks` journal. FORMAT.md §acks.

use super::{u32_at, u64_at};

/// Length of one journal entry.
pub(crate) const ACK_ENTRY_LEN: usize = 12;

/// One journal entry: the absolute number of items acknowledged so far. Absolute rather
/// than a delta, so that the newest valid entry alone gives the state and a stale entry
/// left by an interrupted checkpoint can never move the head backwards (recovery takes
/// the maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckEntry {
    pub(crate) acked: u64,
}

impl AckEntry {
    pub(crate) fn encode(&self) -> [u8; ACK_ENTRY_LEN] {
        let mut b = [0u8; ACK_ENTRY_LEN];
        b[0..8].copy_from_slice(&self.acked.to_le_bytes());
        let crc = crc32fast::hash(&b[..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the bytes are not a valid entry (torn or damaged).
    pub(crate) fn decode(b: &[u8]) -> Option<AckEntry> {
        if b.len() != ACK_ENTRY_LEN || u32_at(b, 8) != crc32fast::hash(&b[..8]) {
            return None;
        }
        Some(AckEntry {
            acked: u64_at(b, 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let e = AckEntry { acked: 99 };
        let b = e.encode();
        assert_eq!(AckEntry::decode(&b), Some(e));
        assert_eq!(AckEntry::decode(&[0u8; ACK_ENTRY_LEN]), None);
        assert_eq!(AckEntry::decode(&b[..11]), None);
        for i in 0..b.len() * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert_eq!(AckEntry::decode(&c), None, "bit {i}");
        }
    }
}
