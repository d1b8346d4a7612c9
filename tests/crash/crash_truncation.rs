//! Crash safety: truncation sweeps over the newest chunk file.
//!
//! A crash (or a power loss below `Durability::Synced`) can leave the newest chunk file cut
//! at any byte. For every possible length of the newest chunk file, from 0 bytes (header
//! gone) through every offset inside every record up to the full length, these tests copy a
//! closed (or crash-snapshotted) queue directory, cut the newest chunk to that length and
//! reopen it. Recovery must yield exactly the records that are complete in the cut file,
//! in order, then `Empty`; puts made after the cut must come back after them, also after
//! another reopen; acknowledging everything must leave the queue empty across a reopen.
//!
//! Covered: `Queue<u64>` (16-byte records) over three chunks; `Queue<Vec<u8>>` with variable
//! record sizes (including empty vectors), both in a multi-chunk queue and when the newest
//! chunk is the only one; a crash snapshot taken while the queue was open with an
//! acknowledged prefix that reaches into the newest chunk (so some cuts remove acknowledged
//! records); and a torn record whose payload itself contains a valid-looking frame.
//!
//! An older chunk cut short is not a torn tail but lost data: the items before the cut must
//! come out, then a `Corrupt` error naming the cut chunk and the offset of the first missing
//! record.

use diskq::{Error, Options, Queue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::XorShift;

const HEADER_LEN: u64 = 28;

/// Chunk files `qNNNNN` of `dir`, sorted by number.
fn chunk_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digits = name.strip_prefix('q')?;
            if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Copies the regular files of `src` (not `.lock`) into `dst`.
fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != ".lock" {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The end offsets of the records of a chunk file, parsed from its bytes (FORMAT.md), and
/// the chunk's first sequence number from its header.
fn record_ends(chunk: &[u8]) -> (u64, Vec<u64>) {
    assert!(chunk.len() >= HEADER_LEN as usize);
    assert_eq!(&chunk[0..4], b"dqck");
    let first_seq = u64_at(chunk, 16);
    let mut ends = Vec::new();
    let mut off = HEADER_LEN as usize;
    // A snapshot of an open queue ends in the zero bytes reserved for later records
    // (FORMAT.md §Preallocation); cuts inside them must change nothing.
    while off < chunk.len() && chunk[off..].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(chunk[off..off + 4].try_into().unwrap()) as usize;
        off += 8 + len;
        assert!(
            off <= chunk.len(),
            "test setup: the chunk file is not whole"
        );
        ends.push(off as u64);
    }
    (first_seq, ends)
}

/// Gets with `get_nowait` until `Empty`; any other error fails the test.
fn drain<T: Serialize + DeserializeOwned>(q: &Queue<T>, what: &str) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(v) => out.push(v),
            Err(Error::Empty) => return out,
            Err(e) => panic!("{what}: get failed after {} items: {e}", out.len()),
        }
    }
}

/// The truncation sweep. `src` is a queue directory (closed, or a snapshot of an open one)
/// whose items are `items[seq]` by sequence number, with the first `acked` acknowledged.
/// For every length of the newest chunk file, recovery must yield exactly the complete
/// records from `acked` on.
fn sweep<T>(src: &Path, chunk_size: usize, items: &[T], acked: usize, new_items: &[T]) -> usize
where
    T: Serialize + DeserializeOwned + Clone + PartialEq + Debug,
{
    let chunks = chunk_files(src);
    let (last_no, last_path) = chunks.last().cloned().expect("a chunk file");
    let last_name = format!("q{last_no:05}");
    let full = fs::read(&last_path).unwrap();
    let (first_seq, ends) = record_ends(&full);
    let first_seq = first_seq as usize;
    assert_eq!(
        first_seq + ends.len(),
        items.len(),
        "test setup: the chunk files do not hold the items expected"
    );
    assert!(
        ends.len() >= 3,
        "test setup: the newest chunk should hold several records"
    );
    let opts = Options::new().chunk_size(chunk_size);
    let mut cuts = 0;
    // Every byte of the records; in the reserved zero bytes after them (up to 64 KiB), the
    // first few, the last few and one in 97.
    let data_end = *ends.last().unwrap();
    let every = (0..=full.len() as u64)
        .filter(|&c| c <= data_end + 16 || c + 16 >= full.len() as u64 || (c - data_end) % 97 == 0);
    for cut in every {
        let case = format!("{last_name} cut to {cut} of {} bytes", full.len());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        copy_dir(src, &dir);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join(&last_name))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);

        let complete = ends.iter().filter(|&&e| e <= cut).count();
        let boundary = if complete == 0 {
            HEADER_LEN
        } else {
            ends[complete - 1]
        };
        let tail = first_seq + complete;
        let expected: Vec<T> = items[acked.min(tail)..tail].to_vec();

        let q: Queue<T> = opts
            .open(&dir)
            .unwrap_or_else(|e| panic!("{case}: open failed: {e}"));
        assert_eq!(q.len(), expected.len(), "{case}: len() after recovery");
        // A torn record is cut off, so that the next append starts on a frame boundary.
        if cut >= HEADER_LEN && tail >= acked {
            let len = fs::metadata(dir.join(&last_name)).unwrap().len();
            assert_eq!(len, boundary, "{case}: the torn tail was not truncated");
        }
        let got = drain(&q, &case);
        assert_eq!(got, expected, "{case}: recovered items");
        assert!(q.get_nowait().unwrap_err().is_empty(), "{case}");

        // Puts after the cut come back after the recovered items.
        for it in new_items {
            q.put(it)
                .unwrap_or_else(|e| panic!("{case}: put after recovery: {e}"));
        }
        assert_eq!(
            drain(&q, &case),
            new_items,
            "{case}: items put after the cut"
        );
        drop(q);

        // Nothing was acknowledged: everything comes again, in the same order.
        let q: Queue<T> = opts
            .open(&dir)
            .unwrap_or_else(|e| panic!("{case}: second open failed: {e}"));
        let mut all = expected.clone();
        all.extend_from_slice(new_items);
        assert_eq!(drain(&q, &case), all, "{case}: after a second reopen");
        for _ in 0..all.len() {
            q.task_done().unwrap();
        }
        q.close().unwrap();

        let q: Queue<T> = opts
            .open(&dir)
            .unwrap_or_else(|e| panic!("{case}: third open failed: {e}"));
        assert_eq!(q.len(), 0, "{case}: everything was acknowledged");
        assert!(q.get_nowait().unwrap_err().is_empty(), "{case}");
        q.put(&new_items[0]).unwrap();
        assert_eq!(q.get_nowait().unwrap(), new_items[0], "{case}");
        cuts += 1;
    }
    cuts
}

#[test]
fn u64_items_every_cut_of_the_newest_chunk() {
    let src = tempfile::tempdir().unwrap();
    let items: Vec<u64> = (0..20).map(|i| i * 1_000_003 + 7).collect();
    let q: Queue<u64> = Options::new().chunk_size(7).open(src.path()).unwrap();
    for i in &items {
        q.put(i).unwrap();
    }
    q.close().unwrap();
    let chunks = chunk_files(src.path());
    assert_eq!(chunks.len(), 3, "20 items in chunks of 7: {chunks:?}");
    // 6 records of 16 bytes (8-byte frame header, 8-byte payload) after the header.
    assert_eq!(
        fs::metadata(&chunks[2].1).unwrap().len(),
        HEADER_LEN + 6 * 16
    );
    let cuts = sweep(src.path(), 7, &items, 0, &[u64::MAX, 0, 42]);
    assert_eq!(cuts, 28 + 6 * 16 + 1);
}

fn variable_items(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = XorShift(seed);
    (0..n)
        .map(|i| {
            // Some empty items, some up to 40 bytes.
            let len = if i % 5 == 3 {
                0
            } else {
                rng.below(41) as usize
            };
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect()
}

#[test]
fn variable_size_items_every_cut_of_the_newest_chunk() {
    let src = tempfile::tempdir().unwrap();
    let items = variable_items(23, 0x9E37_79B9_7F4A_7C15);
    let q: Queue<Vec<u8>> = Options::new().chunk_size(8).open(src.path()).unwrap();
    for i in &items {
        q.put(i).unwrap();
    }
    q.close().unwrap();
    assert_eq!(chunk_files(src.path()).len(), 3);
    // Cross-check the record sizes: frame header + bincode length prefix + bytes.
    let last = fs::read(&chunk_files(src.path())[2].1).unwrap();
    let (first, ends) = record_ends(&last);
    assert_eq!(first, 16);
    let mut off = HEADER_LEN;
    for (i, end) in ends.iter().enumerate() {
        off += 16 + items[16 + i].len() as u64;
        assert_eq!(*end, off);
    }
    let new_items = vec![vec![], vec![0xAA; 33], b"after the cut".to_vec()];
    sweep(src.path(), 8, &items, 0, &new_items);
}

#[test]
fn variable_size_items_every_cut_of_the_only_chunk() {
    let src = tempfile::tempdir().unwrap();
    let items = variable_items(6, 12345);
    let q: Queue<Vec<u8>> = Queue::open(src.path()).unwrap();
    for i in &items {
        q.put(i).unwrap();
    }
    q.close().unwrap();
    assert_eq!(chunk_files(src.path()).len(), 1);
    sweep(src.path(), 1000, &items, 0, &[vec![1, 2, 3]]);
}

/// A snapshot of a queue that is still open (what a `kill -9` leaves at the default
/// durability), with 16 of 20 items acknowledged through the journal: the acknowledged
/// prefix reaches into the newest chunk, so short cuts remove acknowledged records too.
#[test]
fn crash_snapshot_with_acknowledged_prefix_every_cut() {
    let live = tempfile::tempdir().unwrap();
    let snap = tempfile::tempdir().unwrap();
    let items: Vec<u64> = (100..120).collect();
    let q: Queue<u64> = Options::new().chunk_size(7).open(live.path()).unwrap();
    for i in &items {
        q.put(i).unwrap();
    }
    for i in &items[..16] {
        assert_eq!(q.get().unwrap(), *i);
        q.task_done().unwrap();
    }
    // The two older chunks are fully acknowledged and deleted.
    assert_eq!(chunk_files(live.path()).len(), 1);
    copy_dir(live.path(), snap.path());
    drop(q);
    assert!(
        fs::metadata(snap.path().join("acks")).unwrap().len() > 0,
        "the snapshot should hold acknowledgements in the journal"
    );
    sweep(snap.path(), 7, &items, 16, &[7, 8, 9]);
}

/// Plain CRC-32 (IEEE), bit by bit: only for building test bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A record cut short whose payload contains the bytes of a valid, complete frame (here an
/// empty frame: length 0 and the CRC of four zero bytes). It is still a torn tail: the only
/// thing after the damage is the partial record itself. Recovery may refuse the directory as
/// damage (it cannot always tell an embedded frame from a real record after a damaged
/// length), but it must never panic, invent an item or drop the complete one before it.
#[test]
fn torn_record_whose_payload_embeds_a_frame() {
    let mut embedded = vec![0, 0, 0, 0];
    embedded.extend_from_slice(&crc32(&[0, 0, 0, 0]).to_le_bytes());
    assert_eq!(crc32(&[0, 0, 0, 0]), 0x2144_DF1C);
    let mut item = embedded.clone();
    item.extend_from_slice(&[0xAB; 20]);

    let src = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Queue::open(src.path()).unwrap();
    q.put(&b"first".to_vec()).unwrap();
    q.put(&item).unwrap();
    q.close().unwrap();
    let first_end = HEADER_LEN + 8 + 8 + 5;
    // Cut inside the second record, after the embedded frame's last byte.
    let cut = first_end + 8 + 8 + 8 + 5;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(src.path(), dir.path());
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("q00000"))
        .unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    match Queue::<Vec<u8>>::open(dir.path()) {
        Ok(q) => {
            assert_eq!(drain(&q, "embedded frame"), vec![b"first".to_vec()]);
        }
        Err(Error::Corrupt { path, offset, .. }) => {
            eprintln!(
                "note: a torn record whose payload embeds a frame is reported as corruption \
                 ({} at offset {offset}), not repaired as a torn tail",
                path.display()
            );
            assert!(path.ends_with("q00000"));
            assert_eq!(offset, first_end);
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// An older chunk cut short is not a torn tail (the writer had moved on to the next chunk):
/// the items before the cut come out, then `get` (or `open`, for the head chunk's header)
/// reports `Corrupt` naming the cut chunk at the offset of the first missing record; no item
/// is skipped or invented, also after a reopen. Wrong items fail at once; errors that name
/// another place than the cut are collected and reported together.
#[test]
fn older_chunk_cut_anywhere_is_reported_at_the_cut() {
    let src = tempfile::tempdir().unwrap();
    // 27 items in chunks of 7: q00000 0..7, q00001 7..14, q00002 14..21, q00003 21..27.
    let q: Queue<u64> = Options::new().chunk_size(7).open(src.path()).unwrap();
    for i in 0..27u64 {
        q.put(&(i * 31 + 5)).unwrap();
    }
    q.close().unwrap();
    assert_eq!(chunk_files(src.path()).len(), 4);
    let mut misplaced = Vec::new();
    let mut cases = 0;
    for (chunk, first_seq) in [(0u64, 0u64), (1, 7), (2, 14)] {
        let name = format!("q{chunk:05}");
        let full = HEADER_LEN + 7 * 16;
        // Every cut of the middle chunk; in the others, cuts in the header, at each record
        // boundary, and inside each record's frame header and payload.
        let cuts: Vec<u64> = if chunk == 1 {
            (0..full).collect()
        } else {
            [0, 5, 27]
                .into_iter()
                .chain((0..7).flat_map(|k| {
                    let b = HEADER_LEN + k * 16;
                    [b, b + 1, b + 9]
                }))
                .collect()
        };
        for cut in cuts {
            let case = format!("{name} cut to {cut}");
            cases += 1;
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(src.path(), tmp.path());
            let f = fs::OpenOptions::new()
                .write(true)
                .open(tmp.path().join(&name))
                .unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (complete, at) = if cut < HEADER_LEN {
                (0, 0)
            } else {
                let k = (cut - HEADER_LEN) / 16;
                (k, HEADER_LEN + k * 16)
            };
            let mut reported = Vec::new();
            for attempt in 0..2 {
                let q = match Options::new().chunk_size(7).open::<u64>(tmp.path()) {
                    Ok(q) => q,
                    Err(e) => {
                        reported.push(where_corrupt(&e, &case));
                        continue;
                    }
                };
                let mut next = 0;
                let err = loop {
                    match q.get_nowait() {
                        Ok(v) => {
                            assert_eq!(v, next * 31 + 5, "{case}: item {next}");
                            next += 1;
                        }
                        Err(e) => break e,
                    }
                };
                assert!(
                    next <= first_seq + complete,
                    "{case}: an item after the cut was returned"
                );
                assert_eq!(
                    next,
                    first_seq + complete,
                    "{case}, attempt {attempt}: items before the damage"
                );
                reported.push(where_corrupt(&err, &case));
            }
            assert_eq!(reported[0], reported[1], "{case}: the same after a reopen");
            if reported[0] != (name.clone(), at) {
                misplaced.push(format!(
                    "{case}: reported in {} at {}, expected {name} at {at}",
                    reported[0].0, reported[0].1
                ));
            }
        }
    }
    assert!(
        misplaced.is_empty(),
        "{} of {cases} cuts reported the damage elsewhere than at the cut:\n{}",
        misplaced.len(),
        misplaced.join("\n")
    );
}

/// The file name and offset of a `Corrupt` error.
fn where_corrupt(e: &Error, case: &str) -> (String, u64) {
    match e {
        Error::Corrupt { path, offset, .. } => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("offset {offset}")), "{case}: {msg}");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                *offset,
            )
        }
        other => panic!("{case}: expected Corrupt, got {other:?}"),
    }
}
