//! The `info` checkpoint. FORMAT.md §info.

use super::{DecodeError, FORMAT_VERSION, check_magic_and_crc, u32_at, u64_at};

fn u128_at(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_le_bytes(a)
}

const MAGIC: &[u8; 8] = b"diskqinf";
/// Length of the header of a version 5 `info`: everything but the lists, with its own CRC
/// and the CRC of the lists (the body). It fits in the first sector, written whole.
pub(crate) const INFO_HEADER_LEN: usize = 100;
/// Length of an encoded `info` file with no single acknowledgements, attempts or delays.
pub(crate) const INFO_MIN_LEN: usize = INFO_HEADER_LEN + 16;
/// The size a disk writes whole (a sector): the header is never found half written.
const SECTOR: usize = 512;

/// Whether `b`, an `info`, lost its first sector to a power loss: empty, or zero up to
/// the end of that sector (or of the file). A power loss keeps or loses a sector whole,
/// so zeros followed by data in the same sector are damage, not this.
pub(crate) fn lost_first_sector(b: &[u8]) -> bool {
    b.iter().take(SECTOR).all(|&x| x == 0)
}
const _: () = assert!(INFO_HEADER_LEN <= SECTOR);
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
    /// Written without a sync (version 5, below `Synced`): after a power loss its body,
    /// the lists after the header, may be torn, and `open` then drops them (FORMAT.md
    /// §info).
    pub(crate) unsynced: bool,
}

/// What [`Info::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// The whole `info`.
    Whole(Info),
    /// A version 5 `info` whose header is intact and whose body is not: the header's
    /// fields, with no lists, and what is wrong with the body (at [`INFO_HEADER_LEN`]).
    HeaderOnly(Info, DecodeError),
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
/// `Info::flags` bit (version 5): `unsynced`.
const FLAG_UNSYNCED: u32 = 2;

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
            unsynced: false,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_as(FORMAT_VERSION)
    }

    /// Encodes in the layout of `version`, 1 to the current one: the fuzzer and tests
    /// write older directories with it, to check they are still read.
    pub(crate) fn encode_as(&self, version: u32) -> Vec<u8> {
        if version >= 5 {
            return self.encode_v5(version);
        }
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
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Version 5: a header of fixed fields, with a CRC of its own and of the body, then
    /// the body (the lists), so that a torn body is told from damage (FORMAT.md §info).
    fn encode_v5(&self, version: u32) -> Vec<u8> {
        let w = &self.work;
        let lists = 8 * self.singles.len() + 12 * w.attempts.len() + 16 * w.delays.len();
        let mut b = Vec::with_capacity(INFO_MIN_LEN + lists + 16 * w.marks.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&[0; 4]); // reserved
        for v in [self.acked, self.tail_chunk, self.tail_end, self.tail_count] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.tail_last_len.to_le_bytes());
        b.extend_from_slice(&self.head_chunk.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&self.boot_id.unwrap_or(0).to_le_bytes());
        let flags =
            u32::from(self.all_synced) * FLAG_ALL_SYNCED + u32::from(self.unsynced) * FLAG_UNSYNCED;
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&w.delivered.to_le_bytes());
        b.extend_from_slice(&[0; 12]); // body length, body CRC, header CRC: below
        b.extend_from_slice(&(self.singles.len() as u32).to_le_bytes());
        for s in &self.singles {
            b.extend_from_slice(&s.to_le_bytes());
        }
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
        let body_len = (b.len() - INFO_HEADER_LEN) as u32;
        let body_crc = crc32fast::hash(&b[INFO_HEADER_LEN..]);
        b[88..92].copy_from_slice(&body_len.to_le_bytes());
        b[92..96].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&b[..96]);
        b[96..100].copy_from_slice(&header_crc.to_le_bytes());
        b
    }

    /// Decodes the current format and every older layout; a torn body is an error here.
    pub(crate) fn decode(b: &[u8]) -> Result<Info, DecodeError> {
        match Info::read(b)? {
            Read::Whole(info) => Ok(info),
            Read::HeaderOnly(_, e) => Err(e),
        }
    }

    /// Decodes as [`decode`](Self::decode) does, but a version 5 `info` whose header is
    /// intact and whose body is not comes back as its header alone (`open` decides
    /// whether a power loss explains it).
    pub(crate) fn read(b: &[u8]) -> Result<Read, DecodeError> {
        if b.len() >= 12 && &b[..8] == MAGIC && u32_at(b, 8) == FORMAT_VERSION {
            return decode_v5(b);
        }
        Info::decode_before_v5(b).map(Read::Whole)
    }

    /// Versions 1 to 4: one CRC at the end.
    fn decode_before_v5(b: &[u8]) -> Result<Info, DecodeError> {
        // The CRC first: the layout depends on the version field, which it covers.
        check_magic_and_crc(b, INFO_V1_MIN_LEN, INFO_MIN_LEN, MAGIC)?;
        let version = u32_at(b, 8);
        // Where the count of single acknowledgements is, and the fixed length.
        let (n_at, min) = match version {
            1 => (32, INFO_V1_MIN_LEN),
            2 => (52, INFO_V2_MIN_LEN),
            3 => (60, INFO_V3_MIN_LEN),
            4 => (80, INFO_V4_MIN_LEN),
            v => return Err(DecodeError::Version(v)),
        };
        // The count is checked against the bytes present before it sizes anything.
        let n = if b.len() >= min {
            u32_at(b, n_at) as usize
        } else {
            0
        };
        let expected = min.saturating_add(n.saturating_mul(8));
        if b.len() != expected {
            return Err(DecodeError::Length {
                expected,
                found: b.len(),
            });
        }
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
            work: WorkState::default(),
            unsynced: false,
        })
    }
}

/// Version 5: the header (its CRC, then its fields), then the body.
fn decode_v5(b: &[u8]) -> Result<Read, DecodeError> {
    if b.len() < INFO_HEADER_LEN {
        return Err(DecodeError::Length {
            expected: INFO_MIN_LEN,
            found: b.len(),
        });
    }
    let (stored, computed) = (u32_at(b, 96), crc32fast::hash(&b[..96]));
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let flags = u32_at(b, 76);
    if flags & !(FLAG_ALL_SYNCED | FLAG_UNSYNCED) != 0 {
        return Err(DecodeError::Flags(flags));
    }
    if u32_at(b, 12) != 0 {
        return Err(DecodeError::Reserved(u32_at(b, 12)));
    }
    let header = Info {
        acked: u64_at(b, 16),
        tail_chunk: u64_at(b, 24),
        tail_end: u64_at(b, 32),
        tail_count: u64_at(b, 40),
        tail_last_len: u32_at(b, 48),
        head_chunk: Some(u64_at(b, 52)),
        boot_id: Some(u128_at(b, 60)),
        all_synced: flags & FLAG_ALL_SYNCED != 0,
        singles: Vec::new(),
        work: WorkState {
            delivered: u64_at(b, 80),
            ..WorkState::default()
        },
        unsynced: flags & FLAG_UNSYNCED != 0,
    };
    let body = &b[INFO_HEADER_LEN..];
    let expected = INFO_HEADER_LEN.saturating_add(u32_at(b, 88) as usize);
    let res = if b.len() != expected {
        Err(DecodeError::Length {
            expected,
            found: b.len(),
        })
    } else {
        let (stored, computed) = (u32_at(b, 92), crc32fast::hash(body));
        if stored == computed {
            decode_body(body)
        } else {
            Err(DecodeError::Checksum { stored, computed })
        }
    };
    Ok(match res {
        Ok((singles, work)) => Read::Whole(Info {
            singles,
            work: WorkState {
                delivered: header.work.delivered,
                ..work
            },
            ..header
        }),
        Err(e) => Read::HeaderOnly(header, e),
    })
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

/// Version 5's body, whose CRC held: the singles, attempts, delays and marks. Every
/// count is checked against the bytes there before it sizes anything.
fn decode_body(b: &[u8]) -> Result<(Vec<u64>, WorkState), DecodeError> {
    let short = |expected: usize| DecodeError::Length {
        expected: INFO_HEADER_LEN.saturating_add(expected),
        found: INFO_HEADER_LEN + b.len(),
    };
    // (offset of a list's count, the size of its entries), checked in turn.
    let mut at = 0usize;
    let mut counts = [0usize; 4];
    for (i, size) in [8usize, 12, 16, 16].into_iter().enumerate() {
        if at.saturating_add(4) > b.len() {
            return Err(short(at.saturating_add(4 * (4 - i))));
        }
        counts[i] = u32_at(b, at) as usize;
        at = at
            .saturating_add(4)
            .saturating_add(counts[i].saturating_mul(size));
    }
    if at != b.len() {
        return Err(short(at));
    }
    let [n, a, d, m] = counts;
    let (a_at, d_at) = (4 + 8 * n, 4 + 8 * n + 4 + 12 * a);
    let m_at = d_at + 4 + 16 * d;
    let pairs = |at: usize, n: usize| -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| (u64_at(b, at + 16 * i), u64_at(b, at + 8 + 16 * i)))
            .collect()
    };
    let work = WorkState {
        delivered: 0,
        attempts: (0..a)
            .map(|i| (u64_at(b, a_at + 4 + 12 * i), u32_at(b, a_at + 12 + 12 * i)))
            .collect(),
        delays: pairs(d_at + 4, d),
        marks: pairs(m_at + 4, m),
    };
    Ok(((0..n).map(|i| u64_at(b, 4 + 8 * i)).collect(), work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        for (singles, unsynced) in [(vec![], false), (vec![123_456_800, 123_456_900], true)] {
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
                unsynced,
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
            unsynced: false,
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

    /// Seals a version 5 `info` whose body was changed: both CRCs computed again.
    fn reseal(b: &mut [u8]) {
        let body_crc = crc32fast::hash(&b[INFO_HEADER_LEN..]);
        b[92..96].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&b[..96]);
        b[96..100].copy_from_slice(&header_crc.to_le_bytes());
    }

    #[test]
    fn huge_list_counts_are_refused_without_allocating() {
        for at in [0, 4, 8, 12] {
            let mut b = Info::new(0, 0).encode();
            let at = INFO_HEADER_LEN + at;
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            reseal(&mut b);
            assert!(
                matches!(Info::decode(&b), Err(DecodeError::Length { .. })),
                "{at}"
            );
        }
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating() {
        let mut b = Info::new(0, 0).encode_as(4);
        b[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(Info::decode(&b), Err(DecodeError::Length { .. })));
    }

    /// A power loss below `Synced` can keep the header (one sector) and lose or keep any
    /// later page of the body: the header is read alone, the body's fault said.
    #[test]
    fn a_torn_body_leaves_the_header_readable() {
        let mut info = Info::new(7, 3);
        info.singles = (10..700).collect(); // 5.5 KiB: two pages
        info.work.delivered = 900;
        info.boot_id = Some(5);
        info.unsynced = true;
        let b = info.encode();
        assert!(b.len() > 4096 + SECTOR);
        let mut torn = b.clone();
        torn[4096..].fill(0);
        let Ok(Read::HeaderOnly(header, e)) = Info::read(&torn) else {
            panic!("{:?}", Info::read(&torn));
        };
        assert!(matches!(e, DecodeError::Checksum { .. }), "{e}");
        assert!(Info::decode(&torn).is_err());
        let want = Info {
            singles: Vec::new(),
            work: WorkState {
                delivered: 900,
                ..WorkState::default()
            },
            ..info.clone()
        };
        assert_eq!(header, want);
        // Cut short, the same; the header damaged, nothing is read.
        let short = Info::read(&b[..2000]);
        assert!(matches!(
            short,
            Ok(Read::HeaderOnly(_, DecodeError::Length { .. }))
        ));
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(matches!(
            Info::read(&bad),
            Err(DecodeError::Checksum { .. })
        ));
        assert_eq!(Info::read(&b), Ok(Read::Whole(info)));
    }
}
