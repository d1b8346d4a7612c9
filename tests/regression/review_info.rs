//! Hostile review of 36d8a09 ("info: a header of 100 bytes with its own CRC ...").
//!
//! `fixed_*` tests failed at 36d8a09 and pass since the hole they name was fixed;
//! `probe_*` tests checked something that held.

use diskq::storage::{Crash, Op, SimStorage};
use diskq::{Durability, Error, ManualClock, Options, Queue};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIR: &str = "/review/q";
const HEADER: usize = 100;
const FLAG_ALL_SYNCED: u32 = 1;
const FLAG_UNSYNCED: u32 = 2;

fn info_path() -> PathBuf {
    Path::new(DIR).join("info")
}

fn open_at(st: &SimStorage, level: Durability) -> Result<Queue<u32>, Error> {
    Options::new()
        .durability(level)
        .open_on(Arc::new(st.clone()), DIR)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A version 5 `info`, field by field (FORMAT.md §info).
#[derive(Debug, Clone)]
struct V5 {
    reserved: u32,
    acked: u64,
    tail_chunk: u64,
    tail_end: u64,
    tail_count: u64,
    tail_last_len: u32,
    head_chunk: u64,
    boot: u128,
    flags: u32,
    delivered: u64,
    singles: Vec<u64>,
    attempts: Vec<(u64, u32)>,
    delays: Vec<(u64, u64)>,
    marks: Vec<(u64, u64)>,
}

impl V5 {
    fn parse(b: &[u8]) -> V5 {
        assert_eq!(&b[..8], b"diskqinf");
        assert_eq!(u32_at(b, 8), 5);
        let body = &b[HEADER..];
        let mut at = 0;
        let n = u32_at(body, at) as usize;
        let singles = (0..n).map(|i| u64_at(body, at + 4 + 8 * i)).collect();
        at += 4 + 8 * n;
        let a = u32_at(body, at) as usize;
        let attempts = (0..a)
            .map(|i| {
                (
                    u64_at(body, at + 4 + 12 * i),
                    u32_at(body, at + 12 + 12 * i),
                )
            })
            .collect();
        at += 4 + 12 * a;
        let mut pairs = || {
            let d = u32_at(body, at) as usize;
            let v: Vec<(u64, u64)> = (0..d)
                .map(|i| {
                    (
                        u64_at(body, at + 4 + 16 * i),
                        u64_at(body, at + 12 + 16 * i),
                    )
                })
                .collect();
            at += 4 + 16 * d;
            v
        };
        let delays = pairs();
        let marks = pairs();
        V5 {
            reserved: u32_at(b, 12),
            acked: u64_at(b, 16),
            tail_chunk: u64_at(b, 24),
            tail_end: u64_at(b, 32),
            tail_count: u64_at(b, 40),
            tail_last_len: u32_at(b, 48),
            head_chunk: u64_at(b, 52),
            boot: u128::from_le_bytes(b[60..76].try_into().unwrap()),
            flags: u32_at(b, 76),
            delivered: u64_at(b, 80),
            singles,
            attempts,
            delays,
            marks,
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(self.singles.len() as u32).to_le_bytes());
        for s in &self.singles {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b.extend_from_slice(&(self.attempts.len() as u32).to_le_bytes());
        for (s, n) in &self.attempts {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        for list in [&self.delays, &self.marks] {
            b.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (s, v) in list {
                b.extend_from_slice(&s.to_le_bytes());
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    /// Header (with zero length and CRCs) and body; then `seal` fixes them up.
    fn raw(&self, body: &[u8]) -> Vec<u8> {
        let mut b = b"diskqinf".to_vec();
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&self.reserved.to_le_bytes());
        for v in [self.acked, self.tail_chunk, self.tail_end, self.tail_count] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.tail_last_len.to_le_bytes());
        b.extend_from_slice(&self.head_chunk.to_le_bytes());
        b.extend_from_slice(&self.boot.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.delivered.to_le_bytes());
        b.extend_from_slice(&[0; 12]);
        assert_eq!(b.len(), HEADER);
        b.extend_from_slice(body);
        b
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = self.raw(&self.body());
        seal_body(&mut b);
        seal_header(&mut b);
        b
    }
}

/// Sets `body_len` and `body_crc` from the bytes after the header.
fn seal_body(b: &mut [u8]) {
    let len = (b.len() - HEADER) as u32;
    let crc = crc32fast::hash(&b[HEADER..]);
    b[88..92].copy_from_slice(&len.to_le_bytes());
    b[92..96].copy_from_slice(&crc.to_le_bytes());
}

fn seal_header(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[..96]);
    b[96..100].copy_from_slice(&crc.to_le_bytes());
}

/// A small queue, everything synced: items 0..10 put, 0..5 gotten and acknowledged.
fn small_synced_queue() -> SimStorage {
    let st = SimStorage::new();
    let q = open_at(&st, Durability::Synced).unwrap();
    q.put_many(&(0..10).collect::<Vec<u32>>()).unwrap();
    for _ in 0..5 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    q.close().unwrap();
    st
}

fn drain(q: &Queue<u32>) -> Result<Vec<u32>, Error> {
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(i) => got.push(i),
            Err(e) if e.is_empty() => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------

/// `read_info` now treats an `info` whose first 100 bytes are zero as lost to a power
/// loss and rebuilds it (acked 0, no singles), whatever follows and in any boot. Before
/// the change only an `info` of zero bytes only was taken for that. A sector is written
/// whole (FORMAT.md: "the header (100 bytes) is whole or zero"), and a page cache
/// writes back whole pages: no crash zeroes bytes 0..100 and keeps bytes 100..132 of
/// the same sector. Here, in the same boot, at `Synced`, the damage opens silently and
/// the five items acknowledged (synced) before are delivered again.
#[test]
fn fixed_zeroed_header_with_bytes_after_it_in_the_same_sector_opens_silently() {
    let st = small_synced_queue();
    let mut info = st.file(&info_path()).unwrap();
    assert!(info.len() > HEADER && info.len() <= 512, "{}", info.len());
    info[..HEADER].fill(0);
    assert!(info[HEADER..].iter().any(|&x| x != 0));
    st.put_file(&info_path(), &info);
    match open_at(&st, Durability::Synced) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!((path, offset), (info_path(), 0));
        }
        Err(e) => panic!("not Corrupt: {e}"),
        Ok(q) => {
            let r = q.recovery();
            let got = drain(&q).unwrap();
            panic!(
                "damage no crash explains (bytes 0..100 zero, 100..{} not, one sector), \
                 same boot, Synced: opened with {r:?}; items delivered: {got:?} \
                 (0..5 were acknowledged and synced)",
                info.len()
            );
        }
    }
}

/// `check_info` (src/recovery/mod.rs) names an impossible single acknowledgement at
/// `len - 4 - 8 * (n - i)`: "the singles end just before the CRC, in every version".
/// In version 5 they start at offset 104 and are followed by the attempts, delays and
/// marks; the offset named is past them, in another list.
#[test]
fn fixed_impossible_single_in_a_v5_info_is_named_at_the_wrong_offset() {
    let st = small_synced_queue();
    let mut v = V5::parse(&st.file(&info_path()).unwrap());
    v.singles = vec![1 << 62]; // MAX_SEQ: no queue writes it
    st.put_file(&info_path(), &v.encode());
    match open_at(&st, Durability::Synced) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!(path, info_path());
            assert_eq!(offset, 104, "the single is at offset 104 (FORMAT.md §info)");
        }
        Err(e) => panic!("not Corrupt: {e}"),
        Ok(_) => panic!("an impossible single was accepted"),
    }
}

/// The fuzz target `open_dir` (src/fuzzing.rs) was not taught the new acceptance of an
/// `info` whose first 100 bytes are zero: it sends only an all-zero `info` to
/// `lost_info`, and for any other `info` that opens it expects `Info::decode` to succeed
/// (`acked_at_open(..).expect("open succeeded, so info is valid")`). An `info` of 100
/// zero bytes and one more byte, which the fuzzer reaches easily, panics the harness.
#[test]
fn fixed_fuzz_open_dir_panics_on_an_info_with_a_zero_header() {
    let mut info = vec![0u8; HEADER];
    info.push(1);
    let input = diskq::fuzzing::encode_dir(0, &[("info", false, &info)]);
    let res = catch_unwind(|| diskq::fuzzing::open_dir(&input));
    assert!(res.is_ok(), "fuzzing::open_dir panicked on {input:?}");
}

/// The same harness, on a torn `info` from another boot (valid header, `unsynced`, body
/// that does not check out): open keeps the header and succeeds, the harness panics.
#[test]
fn fixed_fuzz_open_dir_panics_on_a_torn_unsynced_info_from_another_boot() {
    let v = V5 {
        reserved: 0,
        acked: 0,
        tail_chunk: 0,
        tail_end: 0,
        tail_count: 0,
        tail_last_len: 0,
        head_chunk: 0,
        boot: 7, // SimStorage::new() is boot 1
        flags: FLAG_UNSYNCED,
        delivered: 0,
        singles: vec![],
        attempts: vec![],
        delays: vec![],
        marks: vec![],
    };
    let mut info = v.encode();
    info[HEADER] ^= 1; // torn body
    let input = diskq::fuzzing::encode_dir(0, &[("info", false, &info)]);
    let res = catch_unwind(|| diskq::fuzzing::open_dir(&input));
    assert!(res.is_ok(), "fuzzing::open_dir panicked on {input:?}");
}

/// (Predates this change, kept by it.) `decode_v5` ignores the reserved bytes 12..16,
/// while the `decode` fuzz target asserts that whatever decodes re-encodes to the same
/// bytes: a version 5 `info` with a nonzero reserved field and a valid header CRC
/// panics `fuzzing::decode`. Either the decoder should refuse it or the oracle allow it.
#[test]
fn fixed_fuzz_decode_panics_on_a_nonzero_reserved_field() {
    let st = small_synced_queue();
    let mut v = V5::parse(&st.file(&info_path()).unwrap());
    v.reserved = 1;
    let info = v.encode();
    let res = catch_unwind(|| diskq::fuzzing::decode(&info));
    assert!(res.is_ok(), "fuzzing::decode panicked");
}

/// The checkpoint's "nothing changed" comparison (`info_on_disk == info`) now includes
/// `unsynced`. A session below `Synced` opened over an `all_synced` info writes one
/// durable `info` at open (`durable_info_once`, unsynced clear); its close, with nothing
/// put or acknowledged, then differs only by the flag and writes `info` again (before
/// the change it wrote nothing). FORMAT.md §checkpoint: "a queue opened and closed without
/// a put or an acknowledgement writes nothing". Cost only (the new info is not synced, which
/// that level allows), but a regression of the skip.
#[test]
fn fixed_untouched_close_after_a_synced_session_rewrites_info() {
    let st = SimStorage::new();
    let q = open_at(&st, Durability::Synced).unwrap();
    q.put(&1).unwrap();
    q.close().unwrap();
    let q = open_at(&st, Durability::Written).unwrap();
    let before = st.count(Op::Rename);
    q.close().unwrap();
    let at_close = st.count(Op::Rename) - before;
    // A third session, also untouched, does write nothing.
    let q = open_at(&st, Durability::Written).unwrap();
    let before = st.count(Op::Rename);
    q.close().unwrap();
    assert_eq!(st.count(Op::Rename) - before, 0, "third session");
    assert_eq!(at_close, 0, "an untouched close renamed info.tmp over info");
}

// ---------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A mutated version 5 `info`: lists of random lengths, then one of several damages,
/// with the CRCs fixed up or not, so that every branch of `decode_v5`/`decode_body`
/// (and `check_info`, step 3a, inspection) sees hostile values.
fn mutated_info(rng: &mut Rng, base: &V5) -> Vec<u8> {
    let mut v = base.clone();
    let val = |rng: &mut Rng| match rng.below(4) {
        0 => rng.next(),
        1 => rng.below(40),
        2 => (1 << 62) + rng.below(3),
        _ => u64::MAX - rng.below(3),
    };
    v.singles = (0..rng.below(6)).map(|_| val(rng)).collect();
    v.attempts = (0..rng.below(6))
        .map(|_| (val(rng), rng.next() as u32))
        .collect();
    v.delays = (0..rng.below(6)).map(|_| (val(rng), val(rng))).collect();
    v.marks = (0..rng.below(6)).map(|_| (val(rng), val(rng))).collect();
    if rng.below(3) == 0 {
        v.acked = val(rng);
        v.delivered = val(rng);
        v.tail_end = val(rng);
        v.tail_count = val(rng);
        v.tail_chunk = rng.below(4);
        v.head_chunk = rng.below(4);
        v.tail_last_len = rng.next() as u32;
    }
    v.flags = rng.below(8) as u32;
    v.boot = if rng.below(2) == 0 {
        1
    } else {
        rng.below(5) as u128
    };
    let mut body = v.body();
    match rng.below(6) {
        0 => {}
        1 => {
            // A count changed (to anything, or by one).
            let at = [0, 4 + 8 * v.singles.len()][rng.below(2) as usize];
            let c = if rng.below(2) == 0 {
                rng.next() as u32
            } else {
                u32_at(&body, at)
                    .wrapping_add(rng.below(3) as u32)
                    .wrapping_sub(1)
            };
            body[at..at + 4].copy_from_slice(&c.to_le_bytes());
        }
        2 => {
            let keep = rng.below(body.len() as u64 + 1) as usize;
            body.truncate(keep);
        }
        3 => {
            for _ in 0..rng.below(5) + 1 {
                body.push(rng.next() as u8);
            }
        }
        4 => {
            for _ in 0..rng.below(4) + 1 {
                let i = rng.below(body.len() as u64) as usize;
                body[i] = rng.next() as u8;
            }
        }
        _ => body = (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
    }
    let mut b = v.raw(&body);
    match rng.below(5) {
        0 => {} // body length and CRC zero
        1 => {
            // A body length of anything.
            let len = rng.next() as u32;
            b[88..92].copy_from_slice(&len.to_le_bytes());
            let crc = crc32fast::hash(&b[HEADER..]);
            b[92..96].copy_from_slice(&crc.to_le_bytes());
        }
        _ => seal_body(&mut b),
    }
    if rng.below(8) != 0 {
        seal_header(&mut b);
    }
    if rng.below(10) == 0 {
        let keep = rng.below(b.len() as u64 + 1) as usize;
        b.truncate(keep);
    }
    b
}

/// 3,000 hostile `info` files (valid CRCs over out-of-range counts, values at and past
/// 2^62, lengths that disagree, truncations) under a small valid queue, opened in the
/// same boot and after a restart, at each level, and repaired: errors, never a panic.
/// Also `fuzzing::decode` over those whose reserved field is zero.
#[test]
fn probe_hostile_info_bytes_never_panic_open_or_repair() {
    let st = small_synced_queue();
    let base = V5::parse(&st.file(&info_path()).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut opened, mut lists_lost, mut corrupt) = (0, 0, 0);
    for i in 0..3000u64 {
        let info = mutated_info(&mut rng, &base);
        let (crash, level) = match i % 4 {
            0 => (Crash::Process, Durability::Written),
            1 => (Crash::PowerLoss, Durability::Written),
            2 => (Crash::PowerLoss, Durability::Synced),
            _ => (Crash::Process, Durability::Buffered),
        };
        let img = st.after_crash(crash);
        img.put_file(&info_path(), &info);
        let res = catch_unwind(AssertUnwindSafe(|| match open_at(&img, level) {
            Ok(q) => {
                let lost = q.recovery().info_lists_lost;
                let _ = drain(&q);
                let _ = q.close();
                (true, lost, false)
            }
            Err(e) => (false, false, e.is_corrupt()),
        }));
        let (o, l, c) = res.unwrap_or_else(|_| panic!("open panicked on info {info:?}"));
        opened += usize::from(o);
        lists_lost += usize::from(l);
        corrupt += usize::from(c);
        let img = st.after_crash(crash);
        img.put_file(&info_path(), &info);
        let res = catch_unwind(AssertUnwindSafe(|| {
            let _ = diskq::repair_on(Arc::new(img.clone()), Path::new(DIR));
        }));
        assert!(res.is_ok(), "repair panicked on info {info:?}");
        if info.len() >= 16 && info[12..16] == [0; 4] {
            let res = catch_unwind(|| diskq::fuzzing::decode(&info));
            assert!(res.is_ok(), "fuzzing::decode panicked on {info:?}");
        }
    }
    println!("opened {opened} (lists lost {lists_lost}), corrupt {corrupt}");
    assert!(opened > 0 && lists_lost > 0 && corrupt > 0);
}

/// Every bit of the body of an unsynced `info` flipped, in the same boot: `Corrupt` at
/// offset 100 each time, and nothing changed on disk; in another boot: opens with the
/// lists lost. A synced one: `Corrupt` at 100 in both.
#[test]
fn probe_body_damage_same_boot_is_corrupt_and_only_unsynced_after_restart_opens() {
    let st = small_synced_queue();
    let mut v = V5::parse(&st.file(&info_path()).unwrap());
    v.singles = vec![7, 9];
    v.attempts = vec![(5, 3)];
    v.delays = vec![(6, 1)];
    for unsynced in [false, true] {
        v.flags = if unsynced { FLAG_UNSYNCED } else { 0 };
        let good = v.encode();
        for bit in HEADER * 8..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            for crash in [Crash::Process, Crash::PowerLoss] {
                let img = st.after_crash(crash);
                img.put_file(&info_path(), &bad);
                let restarted = matches!(crash, Crash::PowerLoss);
                match open_at(&img, Durability::Written) {
                    Ok(q) => {
                        assert!(unsynced && restarted, "bit {bit} {unsynced} {crash:?}");
                        assert!(q.recovery().info_lists_lost);
                        // The singles 7 and 9 were dropped: they come back.
                        let got = drain(&q).unwrap();
                        assert_eq!(got, (5..10).collect::<Vec<_>>());
                    }
                    Err(Error::Corrupt { path, offset, .. }) => {
                        assert!(!(unsynced && restarted), "bit {bit}");
                        assert_eq!((path, offset), (info_path(), 100));
                        assert_eq!(img.file(&info_path()).unwrap(), bad, "changed");
                    }
                    Err(e) => panic!("bit {bit}: {e}"),
                }
            }
        }
    }
}

/// A Written session whose checkpoint leaves a long unsynced `info`, killed with the
/// page cache kept (same boot): open reads it whole, loses nothing acknowledged.
#[test]
fn probe_a_kill_keeping_the_cache_never_tears_info() {
    let st = SimStorage::new();
    let q = open_at(&st, Durability::Synced).unwrap();
    q.put_many(&(0..3000).collect::<Vec<u32>>()).unwrap();
    q.close().unwrap();
    let q = open_at(&st, Durability::Written).unwrap();
    let ds: Vec<_> = (0..3000).map(|_| q.get_delivery().unwrap()).collect();
    let mut acked = BTreeSet::new();
    for d in ds {
        if *d % 2 == 1 {
            acked.insert(d.ack().unwrap());
        } else {
            d.into_inner();
        }
    }
    q.close().unwrap();
    let info = st.file(&info_path()).unwrap();
    assert!(info.len() > 4096 && u32_at(&info, 76) & FLAG_UNSYNCED != 0);
    let after = st.after_crash(Crash::ProcessKeepingCache);
    let q = open_at(&after, Durability::Written).unwrap();
    assert!(!q.recovery().info_lists_lost && !q.recovery().after_restart);
    let got = drain(&q).unwrap();
    assert_eq!(got, (0..3000).step_by(2).collect::<Vec<_>>());
    q.close().unwrap();
    // Then a power loss in a later boot: still opens, nothing unacknowledged lost.
    for seed in 1..=40 {
        let img = after.after_crash(Crash::PowerLossPages(seed));
        let q = open_at(&img, Durability::Written).unwrap();
        let got: BTreeSet<u32> = drain(&q).unwrap().into_iter().collect();
        assert!(
            (0..3000).step_by(2).all(|i| got.contains(&i)),
            "seed {seed}"
        );
    }
}

/// A `Synced` session in the same boot over an unsynced `info` rewrites it synced at open
/// (the skip never keeps an unsynced `info` at `Synced`); a Written session over an
/// `all_synced` one writes it synced once (`durable_info_once`). Both survive every power
/// loss byte for byte.
#[test]
fn probe_synced_and_durable_once_infos_are_synced() {
    let st = SimStorage::new();
    let q = open_at(&st, Durability::Written).unwrap();
    q.put_many(&(0..100).collect::<Vec<u32>>()).unwrap();
    for _ in 0..30 {
        let d = q.get_delivery().unwrap();
        if (*d).is_multiple_of(2) {
            d.ack().unwrap();
        } else {
            d.into_inner();
        }
    }
    q.close().unwrap();
    assert!(u32_at(&st.file(&info_path()).unwrap(), 76) & FLAG_UNSYNCED != 0);
    // Synced, same boot, untouched.
    let q = open_at(&st, Durability::Synced).unwrap();
    q.close().unwrap();
    let info = st.file(&info_path()).unwrap();
    assert_eq!(u32_at(&info, 76), FLAG_ALL_SYNCED, "synced, all_synced");
    for seed in 1..=20 {
        let img = st.after_crash(Crash::PowerLossPages(seed));
        assert_eq!(img.file(&info_path()).unwrap(), info, "seed {seed}");
    }
    // Written over it: the info written at open is synced, unsynced clear.
    let q = open_at(&st, Durability::Written).unwrap();
    let info = st.file(&info_path()).unwrap();
    assert_eq!(u32_at(&info, 76), 0, "durable once: neither flag");
    for seed in 1..=20 {
        let img = st.after_crash(Crash::PowerLossPages(seed));
        assert_eq!(img.file(&info_path()).unwrap(), info, "seed {seed}");
    }
    q.close().unwrap();
    // Untouched: the synced `info` stays (a synced one serves where an unsynced one
    // would do; before the fix the close wrote it again, unsynced).
    assert_eq!(st.file(&info_path()).unwrap(), info);
}

const N: u32 = 2000;

/// What the sessions did to each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Acknowledged in order (the head moved past it; its chunk may be deleted).
    Fifo,
    /// Acknowledged one by one.
    Single,
    /// Given back with `nack_after`: a copy appended (unsynced), the original acked.
    Delayed,
    /// Dead-lettered (dead letters at `Synced`, then acknowledged in the queue).
    Dead,
    /// Delivered twice, never acknowledged: an attempts entry.
    InFlight,
}

fn fate(i: u32) -> Fate {
    if i < 400 {
        return Fate::Fifo;
    }
    match i % 4 {
        0 => Fate::Single,
        1 => Fate::Delayed,
        2 => Fate::Dead,
        _ => Fate::InFlight,
    }
}

fn opts(level: Durability, clock: &ManualClock) -> Options {
    Options::new()
        .durability(level)
        .chunk_size(64)
        // Checkpoints during the sessions too: long unsynced infos written often.
        .journal_limit(8192)
        .clock(Arc::new(clock.clone()))
}

/// Items put at `Synced` over many chunks; below it, the first 400 acknowledged in order
/// (chunks deleted), the rest delivered twice and then acknowledged one by one, given
/// back with `nack_after`, dead-lettered or left in flight: an `info` with every list
/// long (singles, attempts, delays, marks).
fn long_info_with_every_list(level: Durability, clock: &ManualClock) -> SimStorage {
    let st = SimStorage::new();
    let o = |l| {
        opts(l, clock)
            .open_on::<u32>(Arc::new(st.clone()), DIR)
            .unwrap()
    };
    let q = o(Durability::Synced);
    q.put_many(&(0..N).collect::<Vec<_>>()).unwrap();
    q.close().unwrap();
    let q = o(level);
    for _ in 0..N {
        let d = q.get_delivery().unwrap();
        if fate(*d) == Fate::Fifo {
            d.ack().unwrap();
        } else {
            d.into_inner();
        }
    }
    q.close().unwrap();
    let q = o(level);
    for _ in 400..N {
        let d = q.get_delivery().unwrap();
        assert_eq!(d.attempt(), 2);
        match fate(*d) {
            Fate::Single => drop(d.ack().unwrap()),
            Fate::Delayed => d.nack_after(std::time::Duration::from_secs(3600)).unwrap(),
            Fate::Dead => d.dead_letter("review").unwrap(),
            Fate::InFlight => drop(d.into_inner()),
            Fate::Fifo => unreachable!(),
        }
    }
    q.close().unwrap();
    st
}

/// Page-cache power losses over that `info` (Written and Buffered): every state opens by
/// itself; no item is invented; no item that was only in flight, nor any dead letter, is
/// lost; no item comes twice in one drain but an original with its copy; the directory
/// reopens after the drain. A copy of `nack_after` may be lost with its unsynced write.
/// And `repair` over a torn state keeps them too.
#[test]
fn probe_torn_lists_lose_no_promised_item_with_copies_attempts_dead_letters_and_deletions() {
    for level in [Durability::Written, Durability::Buffered] {
        let clock = ManualClock::new(1_700_000_000_000);
        let st = long_info_with_every_list(level, &clock);
        let info = st.file(&info_path()).unwrap();
        let v = V5::parse(&info);
        assert!(info.len() > 5 * 4096, "{}", info.len());
        assert!(v.flags & FLAG_UNSYNCED != 0);
        assert!(!v.singles.is_empty() && !v.attempts.is_empty() && !v.delays.is_empty());
        clock.advance(std::time::Duration::from_secs(7200)); // every delay is over
        let (mut torn, mut repaired) = (0, 0);
        for seed in 1..=150 {
            let img = st.after_crash(Crash::PowerLossPages(seed));
            let q = opts(level, &clock)
                .open_on::<u32>(Arc::new(img.clone()), DIR)
                .unwrap_or_else(|e| panic!("{level:?} seed {seed}: {e}"));
            let r = q.recovery();
            assert!(r.after_restart);
            torn += usize::from(r.info_lists_lost);
            let got = drain(&q).unwrap_or_else(|e| panic!("{level:?} seed {seed}: {e}"));
            let dead: BTreeSet<u32> = q
                .dead_letters()
                .iter()
                .map(|d| *d.unwrap().item().unwrap())
                .collect();
            let mut count: BTreeMap<u32, usize> = BTreeMap::new();
            for &i in &got {
                assert!(i < N, "{level:?} seed {seed}: invented {i}");
                *count.entry(i).or_default() += 1;
            }
            for i in 0..N {
                let c = count.get(&i).copied().unwrap_or(0);
                match fate(i) {
                    Fate::InFlight => assert_eq!(c, 1, "{level:?} seed {seed}: item {i}"),
                    Fate::Dead => assert!(dead.contains(&i), "{level:?} seed {seed}: {i}"),
                    Fate::Delayed => assert!(c <= 2, "{level:?} seed {seed}: {i} x{c}"),
                    _ => assert!(c <= 1, "{level:?} seed {seed}: {i} x{c}"),
                }
            }
            q.close().unwrap();
            let q = opts(level, &clock)
                .open_on::<u32>(Arc::new(img.clone()), DIR)
                .unwrap_or_else(|e| panic!("{level:?} seed {seed} reopen: {e}"));
            q.close().unwrap();
            if r.info_lists_lost && repaired < 5 {
                repaired += 1;
                let img = st.after_crash(Crash::PowerLossPages(seed));
                let rep = diskq::repair_on(Arc::new(img.clone()), Path::new(DIR)).unwrap();
                assert!(rep.rebuilt, "{rep}");
                let q = opts(level, &clock)
                    .open_on::<u32>(Arc::new(img.clone()), DIR)
                    .unwrap();
                let got: BTreeSet<u32> = drain(&q).unwrap().into_iter().collect();
                for i in (0..N).filter(|&i| fate(i) == Fate::InFlight) {
                    assert!(got.contains(&i), "{level:?} seed {seed} after repair: {i}");
                }
            }
        }
        println!("{level:?}: 150 power losses, {torn} tore the lists, {repaired} repaired");
        assert!(torn > 0);
    }
}

/// Kills at 60 points of the session that writes singles, copies, dead letters and
/// attempts (ops counted from its start), each followed by page-cache power losses, and
/// by a same-boot reopen (untouched) then a power loss: every state opens by itself, no
/// item in flight or dead-lettered is lost, nothing invented or doubled.
#[test]
fn probe_kills_then_power_losses_during_a_session_with_every_list() {
    let level = Durability::Written;
    let clock = ManualClock::new(1_700_000_000_000);
    // Sessions 1 and 2 as in `long_info_with_every_list`.
    let st = SimStorage::new();
    let o = |st: &SimStorage, l| opts(l, &clock).open_on::<u32>(Arc::new(st.clone()), DIR);
    let q = o(&st, Durability::Synced).unwrap();
    q.put_many(&(0..N).collect::<Vec<_>>()).unwrap();
    q.close().unwrap();
    let q = o(&st, level).unwrap();
    for _ in 0..N {
        let d = q.get_delivery().unwrap();
        if fate(*d) == Fate::Fifo {
            d.ack().unwrap();
        } else {
            d.into_inner();
        }
    }
    q.close().unwrap();
    let base = st.after_crash(Crash::Process);
    // How many mutating operations session 3 makes.
    let total = {
        let img = base.after_crash(Crash::Process);
        let start = img.ops();
        session3(&img, &clock, level);
        img.ops() - start
    };
    let mut torn = 0;
    for p in 0..60u64 {
        let k = total * p / 60 + 1;
        let img = base.after_crash(Crash::Process);
        img.crash_after(img.ops() + k, p % 2 == 1);
        session3(&img, &clock, level);
        let killed = img.after_crash(Crash::ProcessKeepingCache);
        for (variant, seed) in (0..6).map(|j| (u64::from(j == 5), p * 10 + j + 1)) {
            let img = killed.after_crash(Crash::ProcessKeepingCache);
            if variant == 1 {
                // Reopened in the same boot, closed untouched.
                let q = o(&img, level).unwrap_or_else(|e| panic!("k {k} same boot: {e}"));
                assert!(!q.recovery().after_restart);
                q.close().unwrap();
            }
            let img = img.after_crash(Crash::PowerLossPages(seed));
            let q = o(&img, level).unwrap_or_else(|e| panic!("k {k} v{variant}: {e}"));
            torn += usize::from(q.recovery().info_lists_lost);
            clock.advance(std::time::Duration::from_secs(7200));
            let got = drain(&q).unwrap_or_else(|e| panic!("k {k} v{variant}: {e}"));
            let dead: BTreeSet<u32> = q
                .dead_letters()
                .iter()
                .map(|d| *d.unwrap().item().unwrap())
                .collect();
            let mut count: BTreeMap<u32, usize> = BTreeMap::new();
            for &i in &got {
                assert!(i < N, "k {k} v{variant}: invented {i}");
                *count.entry(i).or_default() += 1;
            }
            for i in 0..N {
                let c = count.get(&i).copied().unwrap_or(0);
                let ctx = format!("k {k} v{variant}: item {i} x{c}");
                match fate(i) {
                    Fate::InFlight => assert_eq!(c, 1, "{ctx}"),
                    Fate::Dead => assert!(c == 1 || dead.contains(&i), "{ctx}"),
                    Fate::Delayed => assert!(c <= 2, "{ctx}"),
                    _ => assert!(c <= 1, "{ctx}"),
                }
            }
            q.close().unwrap();
        }
    }
    println!("{torn} of 360 states had their lists torn");
    assert!(torn > 0);
}

/// Session 3 of `long_info_with_every_list`, stopping at the first error (a kill).
fn session3(st: &SimStorage, clock: &ManualClock, level: Durability) {
    let Ok(q) = opts(level, clock).open_on::<u32>(Arc::new(st.clone()), DIR) else {
        return;
    };
    for _ in 400..N {
        let Ok(d) = q.get_delivery() else { break };
        let r = match fate(*d) {
            Fate::Single => d.ack().map(drop),
            Fate::Delayed => d.nack_after(std::time::Duration::from_secs(3600)),
            Fate::Dead => d.dead_letter("review"),
            Fate::InFlight => {
                d.into_inner();
                Ok(())
            }
            Fate::Fifo => unreachable!(),
        };
        if r.is_err() {
            break;
        }
    }
    let _ = q.close();
}
