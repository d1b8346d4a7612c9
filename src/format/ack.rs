//! Entries of the `acks` journal. FORMAT.md §acks.

use super::{u32_at, u64_at};

/// Length of one journal entry.
pub(crate) const ACK_ENTRY_LEN: usize = 12;

/// Bit 63 of an entry's value: set for a single acknowledgement.
const SINGLE: u64 = 1 << 63;
/// Bit 62: the *sync mark*, set on the first entry of an append made when every byte
/// before it in the journal was synced (FORMAT.md §acks). A damaged entry before a
/// marked one was synced: damage, not a torn append. Values stay below 2^62 (`MAX_SEQ`).
const MARK: u64 = 1 << 62;

/// One journal entry. Values are absolute rather than deltas, so that the newest valid
/// entries alone give the state and a stale entry left by an interrupted checkpoint can
/// never move the head backwards (recovery takes the maximum head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckEntry {
    /// Every item before this sequence number is acknowledged (FIFO `task_done`).
    Head(u64),
    /// This one item is acknowledged (a `Delivery` acknowledged out of order).
    Single(u64),
}

impl AckEntry {
    pub(crate) fn encode(&self) -> [u8; ACK_ENTRY_LEN] {
        self.encode_marked(false)
    }

    /// The entry, with the sync mark when `mark`.
    pub(crate) fn encode_marked(&self, mark: bool) -> [u8; ACK_ENTRY_LEN] {
        let v = match *self {
            AckEntry::Head(s) => s,
            AckEntry::Single(s) => s | SINGLE,
        } | if mark { MARK } else { 0 };
        let mut b = [0u8; ACK_ENTRY_LEN];
        b[0..8].copy_from_slice(&v.to_le_bytes());
        let crc = crc32fast::hash(&b[..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the bytes are not a valid entry (torn or damaged).
    pub(crate) fn decode(b: &[u8]) -> Option<AckEntry> {
        Self::decode_marked(b).map(|(e, _)| e)
    }

    /// The entry and whether it carries the sync mark.
    pub(crate) fn decode_marked(b: &[u8]) -> Option<(AckEntry, bool)> {
        if b.len() != ACK_ENTRY_LEN || u32_at(b, 8) != crc32fast::hash(&b[..8]) {
            return None;
        }
        let v = u64_at(b, 0);
        let mark = v & MARK != 0;
        let v = v & !MARK;
        Some((
            if v & SINGLE != 0 {
                AckEntry::Single(v & !SINGLE)
            } else {
                AckEntry::Head(v)
            },
            mark,
        ))
    }

    /// The sequence number the entry names.
    pub(crate) fn seq(&self) -> u64 {
        match *self {
            AckEntry::Head(s) | AckEntry::Single(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        for e in [AckEntry::Head(99), AckEntry::Single(99)] {
            let b = e.encode();
            assert_eq!(AckEntry::decode(&b), Some(e));
            assert_eq!(AckEntry::decode(&b[..11]), None);
            for i in 0..b.len() * 8 {
                let mut c = b;
                c[i / 8] ^= 1 << (i % 8);
                assert_eq!(AckEntry::decode(&c), None, "bit {i}");
            }
        }
        assert_eq!(AckEntry::decode(&[0u8; ACK_ENTRY_LEN]), None);
    }

    #[test]
    fn the_sync_mark_round_trips_and_leaves_the_value() {
        for e in [AckEntry::Head(99), AckEntry::Single(99)] {
            for mark in [false, true] {
                let b = e.encode_marked(mark);
                assert_eq!(AckEntry::decode_marked(&b), Some((e, mark)));
                assert_eq!(AckEntry::decode(&b), Some(e));
            }
        }
    }
}
