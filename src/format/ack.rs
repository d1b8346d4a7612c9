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

/// The kind of a 12-byte unit is folded into its check value: the stored CRC is the
/// CRC-32 of the value XOR the kind's constant (0 for the acknowledgement entries of
/// versions 1 to 4, which keep their bytes). A unit of one kind never checks as another
/// (short of a 2^-32 accident, as for any damage), and a build that does not know a kind
/// sees damage, which is why the format version changed with them (version 5).
const KIND_DELIVERED: u32 = 0x6465_6c76; // "delv"
const KIND_ATTEMPTS: u32 = 0x6174_7470; // "attp"
const KIND_DELAY: u32 = 0x646c_6179; // "dlay"
/// The second unit of a pair: its CRC covers the first unit's value and its own.
const KIND_PAIR_VALUE: u32 = 0x7061_6972; // "pair"

/// One journal entry. Values are absolute rather than deltas, so that the newest valid
/// entries alone give the state and a stale entry left by an interrupted checkpoint can
/// never move the head backwards (recovery takes the maximum head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckEntry {
    /// Every item before this sequence number is acknowledged (FIFO `task_done`).
    Head(u64),
    /// This one item is acknowledged (a `Delivery` acknowledged out of order).
    Single(u64),
    /// Every item before this sequence number was delivered at least once (version 5).
    Delivered(u64),
    /// Item `seq` has been delivered `n` times (version 5; 24 bytes, a pair of units).
    Attempts { seq: u64, n: u32 },
    /// Item `seq` was given back until `due`, milliseconds since the Unix epoch (version
    /// 5; a pair of units).
    Delay { seq: u64, due: u64 },
}

/// What one 12-byte unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A whole entry, and whether it carries the sync mark.
    Entry(AckEntry, bool),
    /// The first unit of a pair (`Attempts` or `Delay`): the next unit completes it.
    PairKey,
    /// Not a valid unit on its own (damage, a torn write, or a pair's second unit).
    Invalid,
}

/// CRC-32 (IEEE, as `crc32fast::hash`) by tables, eight bytes at a time (slicing-by-8):
/// an entry's 8 or 16 bytes are checked on every get and acknowledgement, and
/// `crc32fast::hash` detects the CPU's features on every call, which cost more than the
/// table walk for so few bytes. Inlined: with one 8-byte part known at the call, the loop
/// folds into one table step (called out of line, it cost every get and acknowledgement
/// about 50 instructions more).
#[inline(always)]
fn crc(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        let mut words = p.chunks_exact(8);
        for w in &mut words {
            let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            c = CRC_TABLES[7][(lo & 0xff) as usize]
                ^ CRC_TABLES[6][((lo >> 8) & 0xff) as usize]
                ^ CRC_TABLES[5][((lo >> 16) & 0xff) as usize]
                ^ CRC_TABLES[4][(lo >> 24) as usize]
                ^ CRC_TABLES[3][(hi & 0xff) as usize]
                ^ CRC_TABLES[2][((hi >> 8) & 0xff) as usize]
                ^ CRC_TABLES[1][((hi >> 16) & 0xff) as usize]
                ^ CRC_TABLES[0][(hi >> 24) as usize];
        }
        for &b in words.remainder() {
            c = CRC_TABLES[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

/// `CRC_TABLES[0]` is the byte-wise table; `CRC_TABLES[k]` advances a byte k more steps.
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// A one-unit entry's 12 bytes, written straight into `b`: its value, then its check
/// value. (Returned as an array instead, they were copied into place with an 8-byte
/// load across the array's 8- and 4-byte stores, which the CPU cannot forward: a stall
/// at every journal append.)
#[inline(always)]
fn unit_into(v: u64, kind: u32, b: &mut [u8]) {
    b[0..8].copy_from_slice(&v.to_le_bytes());
    let crc = crc(&[&v.to_le_bytes()]) ^ kind;
    b[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// A pair's second unit, of first unit `key`, into `b` (its 12 bytes).
fn pair_value_into(key: &[u8], v: u64, b: &mut [u8]) {
    b[0..8].copy_from_slice(&v.to_le_bytes());
    let c = crc(&[&key[..8], &b[..8]]);
    b[8..12].copy_from_slice(&(c ^ KIND_PAIR_VALUE).to_le_bytes());
}

impl AckEntry {
    /// The entry's length on disk.
    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn len(&self) -> usize {
        match self {
            AckEntry::Attempts { .. } | AckEntry::Delay { .. } => 2 * ACK_ENTRY_LEN,
            _ => ACK_ENTRY_LEN,
        }
    }

    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.len());
        self.encode_into(false, &mut b);
        b
    }

    /// Appends the entry, with the sync mark when `mark`.
    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn encode_into(&self, mark: bool, out: &mut Vec<u8>) {
        let mut b = [0u8; 2 * ACK_ENTRY_LEN];
        let n = self.encode_slice(mark, &mut b);
        out.extend_from_slice(&b[..n]);
    }

    /// The whole entry into the front of `out` (room for a pair: 24 bytes); returns its
    /// length. No allocation: a get's journal entry is built with it.
    #[inline]
    pub(crate) fn encode_slice(&self, mark: bool, out: &mut [u8]) -> usize {
        let second = match *self {
            AckEntry::Attempts { n, .. } => u64::from(n),
            AckEntry::Delay { due, .. } => due,
            _ => {
                self.encode_marked_into(mark, &mut out[..ACK_ENTRY_LEN]);
                return ACK_ENTRY_LEN;
            }
        };
        let (first, rest) = out.split_at_mut(ACK_ENTRY_LEN);
        self.encode_marked_into(mark, first);
        pair_value_into(first, second, &mut rest[..ACK_ENTRY_LEN]);
        2 * ACK_ENTRY_LEN
    }

    /// The entry's first (for most, only) unit, with the sync mark when `mark`.
    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn encode_marked(&self, mark: bool) -> [u8; ACK_ENTRY_LEN] {
        let mut b = [0u8; ACK_ENTRY_LEN];
        self.encode_marked_into(mark, &mut b);
        b
    }

    /// [`encode_marked`](Self::encode_marked) into `out`, its first 12 bytes (see
    /// `unit_into`).
    #[inline]
    pub(crate) fn encode_marked_into(&self, mark: bool, out: &mut [u8]) {
        let m = if mark { MARK } else { 0 };
        let (v, kind) = match *self {
            AckEntry::Head(s) => (s | m, 0),
            AckEntry::Single(s) => (s | SINGLE | m, 0),
            AckEntry::Delivered(s) => (s | m, KIND_DELIVERED),
            AckEntry::Attempts { seq, .. } => (seq | m, KIND_ATTEMPTS),
            AckEntry::Delay { seq, .. } => (seq | m, KIND_DELAY),
        };
        unit_into(v, kind, out);
    }

    /// `None` when the bytes are not a valid one-unit entry (torn or damaged).
    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn decode(b: &[u8]) -> Option<AckEntry> {
        Self::decode_marked(b).map(|(e, _)| e)
    }

    /// The one-unit entry and whether it carries the sync mark.
    #[cfg(any(test, feature = "__testing"))]
    pub(crate) fn decode_marked(b: &[u8]) -> Option<(AckEntry, bool)> {
        match Self::decode_unit(b) {
            Unit::Entry(e, mark) => Some((e, mark)),
            _ => None,
        }
    }

    /// What a 12-byte unit is.
    pub(crate) fn decode_unit(b: &[u8]) -> Unit {
        if b.len() != ACK_ENTRY_LEN {
            return Unit::Invalid;
        }
        let v = u64_at(b, 0);
        let (mark, value) = (v & MARK != 0, v & !MARK);
        let kind = u32_at(b, 8) ^ crc(&[&b[..8]]);
        match kind {
            0 if value & SINGLE != 0 => Unit::Entry(AckEntry::Single(value & !SINGLE), mark),
            0 => Unit::Entry(AckEntry::Head(value), mark),
            KIND_DELIVERED if value & SINGLE == 0 => Unit::Entry(AckEntry::Delivered(value), mark),
            KIND_ATTEMPTS | KIND_DELAY if value & SINGLE == 0 => Unit::PairKey,
            _ => Unit::Invalid,
        }
    }

    /// The pair whose first unit is `key` (a [`Unit::PairKey`]) and second `b`, when `b`
    /// completes it; and whether it carries the sync mark.
    pub(crate) fn decode_pair(key: &[u8], b: &[u8]) -> Option<(AckEntry, bool)> {
        if b.len() != ACK_ENTRY_LEN || key.len() != ACK_ENTRY_LEN {
            return None;
        }
        let mut want = [0u8; ACK_ENTRY_LEN];
        pair_value_into(key, u64_at(b, 0), &mut want);
        if want[..] != b[..] {
            return None;
        }
        let k = u64_at(key, 0);
        let (mark, seq) = (k & MARK != 0, k & !MARK);
        let v = u64_at(b, 0);
        let kind = u32_at(key, 8) ^ crc(&[&key[..8]]);
        let entry = match kind {
            KIND_ATTEMPTS => AckEntry::Attempts {
                seq,
                n: u32::try_from(v).ok()?,
            },
            KIND_DELAY => AckEntry::Delay { seq, due: v },
            _ => return None,
        };
        Some((entry, mark))
    }

    /// The sequence number the entry names.
    pub(crate) fn seq(&self) -> u64 {
        match *self {
            AckEntry::Head(s) | AckEntry::Single(s) | AckEntry::Delivered(s) => s,
            AckEntry::Attempts { seq, .. } | AckEntry::Delay { seq, .. } => seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        for e in [AckEntry::Head(99), AckEntry::Single(99)] {
            let b = e.encode_marked(false);
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
    fn the_table_crc_is_crc32fast() {
        let mut x = 7u64;
        for len in 0..40 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 33) as u8
                })
                .collect();
            assert_eq!(crc(&[&b]), crc32fast::hash(&b));
        }
    }

    #[test]
    fn delivery_entries_round_trip_and_never_check_as_another_kind() {
        let entries = [
            AckEntry::Delivered(42),
            AckEntry::Attempts { seq: 7, n: 3 },
            AckEntry::Delay {
                seq: 7,
                due: 1_700_000_000_000,
            },
        ];
        for e in entries {
            for mark in [false, true] {
                let mut b = Vec::new();
                e.encode_into(mark, &mut b);
                assert_eq!(b.len(), e.len());
                if b.len() == ACK_ENTRY_LEN {
                    assert_eq!(AckEntry::decode_marked(&b), Some((e, mark)));
                } else {
                    assert_eq!(AckEntry::decode_unit(&b[..12]), Unit::PairKey);
                    assert_eq!(AckEntry::decode_unit(&b[12..]), Unit::Invalid);
                    assert_eq!(AckEntry::decode_pair(&b[..12], &b[12..]), Some((e, mark)));
                    for i in 0..b.len() * 8 {
                        let mut c = b.clone();
                        c[i / 8] ^= 1 << (i % 8);
                        assert_ne!(
                            AckEntry::decode_pair(&c[..12], &c[12..]),
                            Some((e, mark)),
                            "bit {i}"
                        );
                    }
                }
            }
        }
        // A pair's second unit does not complete another pair's first.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        AckEntry::Attempts { seq: 1, n: 2 }.encode_into(false, &mut a);
        AckEntry::Attempts { seq: 2, n: 2 }.encode_into(false, &mut b);
        assert_eq!(AckEntry::decode_pair(&a[..12], &b[12..]), None);
        // Version 4's entries keep their bytes.
        assert_eq!(
            AckEntry::Head(5).encode(),
            AckEntry::Head(5).encode_marked(false)
        );
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
