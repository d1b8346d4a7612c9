//! What `open` reads: no more for a queue of many chunks than for one of a few (FORMAT.md
//! §open, step 7), and damage it does not read is reported by `get` when the reader
//! reaches it.

use diskq::storage::{Op, SimStorage};
use diskq::{Error, Options, Queue};
use std::sync::Arc;

mod common;
use common::hand_built::{DIR, chunk, storage};

/// Files opened and reads done by reopening a closed queue of `chunks` full chunks of 10
/// items plus a newest chunk holding 3.
fn reopen_cost(chunks: u64) -> (u64, u64, usize) {
    let st = SimStorage::new();
    let opts = Options::new().chunk_size(10);
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    let items: Vec<u64> = (0..chunks * 10 + 3).collect();
    q.put_many(&items).unwrap();
    q.close().unwrap();
    let (opens, reads) = (st.count(Op::Open), st.count(Op::Read));
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    let cost = (st.count(Op::Open) - opens, st.count(Op::Read) - reads);
    assert_eq!(q.len() as u64, chunks * 10 + 3);
    let files = st.files(std::path::Path::new(DIR)).len();
    // Every item is still there, in order.
    for want in items {
        assert_eq!(q.get_nowait().unwrap(), want);
    }
    (cost.0, cost.1, files)
}

#[test]
fn open_reads_as_much_for_many_chunks_as_for_few() {
    let (few_opens, few_reads, few_files) = reopen_cost(3);
    let (many_opens, many_reads, many_files) = reopen_cost(60);
    assert!(
        many_files > few_files + 50,
        "{few_files} vs {many_files} files"
    );
    assert_eq!(
        (many_opens, many_reads),
        (few_opens, few_reads),
        "(files opened, reads) by open: 4 chunks vs 61 chunks"
    );
    // Each file once: the journal, the two newest chunks (the newest through its
    // writer's handle) and the two oldest.
    assert_eq!(few_opens, 5, "files opened by open");
}

#[test]
fn a_chunk_out_of_sequence_in_the_middle_is_reported_by_get() {
    // q00002 claims to start at item 50; the chunks around it say item 2.
    let st = storage(&[
        chunk(0, 0, &[0x41]),
        chunk(1, 1, &[0x42]),
        chunk(2, 50, &[0x43]),
        chunk(3, 3, &[0x44]),
        chunk(4, 4, &[0x45]),
    ]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(q.len(), 5);
    assert_eq!(q.get_nowait().unwrap(), vec![0x41]);
    assert_eq!(q.get_nowait().unwrap(), vec![0x42]);
    for _ in 0..2 {
        // Nothing is consumed: the same error again.
        match q.get_nowait() {
            // Either side of the break may be the damaged one.
            Err(Error::Corrupt { path, detail, .. }) => assert!(
                (path.ends_with("q00001") || path.ends_with("q00002")) && detail.contains("50"),
                "{}: {detail}",
                path.display()
            ),
            other => panic!("expected Corrupt at the break after q00001, got {other:?}"),
        }
    }
}

/// Reads done by reopening a closed queue holding `n` items of 100 bytes, all in the
/// newest chunk.
fn reads_to_reopen(n: usize) -> u64 {
    let st = SimStorage::new();
    let opts = Options::new().chunk_size(100_000);
    let q: Queue<Vec<u8>> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    q.put_many(&vec![vec![7u8; 100]; n]).unwrap();
    q.close().unwrap();
    let before = st.count(Op::Read);
    let q: Queue<Vec<u8>> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    let reads = st.count(Op::Read) - before;
    assert_eq!(q.len(), n);
    assert_eq!(q.get_nowait().unwrap(), vec![7u8; 100]);
    reads
}

/// `info`'s tail mark (FORMAT.md §info): the newest chunk is read from where the last
/// checkpoint left it, so a closed queue's records are not read by `open` (the reads of a
/// 1 MB chunk would take four 256 KiB reads).
#[test]
fn a_closed_queue_reopens_without_reading_its_records() {
    assert_eq!(reads_to_reopen(10_000), reads_to_reopen(10));
}

/// `info` (format version 2) with a tail mark for chunk 0.
fn info_with_mark(tail_end: u64, tail_count: u64, tail_last_len: u32) -> Vec<u8> {
    let mut b = b"diskqinf".to_vec();
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0u64.to_le_bytes()); // acked
    b.extend_from_slice(&0u64.to_le_bytes()); // tail_chunk
    b.extend_from_slice(&tail_end.to_le_bytes());
    b.extend_from_slice(&tail_count.to_le_bytes());
    b.extend_from_slice(&tail_last_len.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // no singles
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// A tail mark that does not match the chunk (damage that kept a valid CRC, or a bug)
/// never makes a wrong item come out: the mark is ignored where it cannot be right, and
/// a count that does not match the records gives `Error::Corrupt` before an item is
/// misnumbered.
#[test]
fn a_tail_mark_that_does_not_match_the_chunk_never_gives_a_wrong_item() {
    const HEADER: u64 = 28;
    const FRAME: u64 = 17; // an 8-byte frame header and a 9-byte one-byte Vec
    let items = [0x41u8, 0x42, 0x43, 0x44, 0x45];
    let end = HEADER + 5 * FRAME;
    let f = FRAME as u32;
    let cases: [(&str, u64, u64, u32, bool); 11] = [
        ("the true mark", end, 5, f, true),
        ("a mark in the middle", HEADER + 2 * FRAME, 2, f, true),
        ("no records before the mark", HEADER, 0, 0, true),
        ("a mark inside a frame", HEADER + FRAME + 3, 1, f, true),
        ("a mark past the end of the file", end + FRAME, 6, f, true),
        ("an impossible count", end, u64::MAX, f, true),
        ("a last record of the wrong length", end, 5, f + 1, true),
        (
            "a last record longer than the records",
            end,
            5,
            u32::MAX,
            true,
        ),
        ("no last record", end, 5, 0, true),
        ("too low a count", end, 3, f, false),
        ("too high a count", end, 7, f, false),
    ];
    for (case, tail_end, tail_count, tail_last_len, all_good) in cases {
        let st = storage(&[chunk(0, 0, &items)]);
        st.put_file(
            &std::path::Path::new(DIR).join("info"),
            &info_with_mark(tail_end, tail_count, tail_last_len),
        );
        let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st), DIR) {
            Ok(q) => q,
            Err(e) => {
                assert!(!all_good && e.is_corrupt(), "{case}: open: {e}");
                continue;
            }
        };
        let mut got = Vec::new();
        let error = loop {
            match q.get_nowait() {
                Ok(v) => {
                    assert_eq!(v, vec![items[got.len()]], "{case}: item {}", got.len());
                    got.push(v);
                }
                Err(e) => break e,
            }
        };
        if all_good {
            assert!(error.is_empty(), "{case}: {error}");
            assert_eq!(got.len(), 5, "{case}");
            q.put(&vec![0x46]).unwrap();
            assert_eq!(q.get_nowait().unwrap(), vec![0x46], "{case}");
        } else {
            assert!(error.is_corrupt(), "{case}: {error}");
        }
    }
}

/// Renames (each a new `info`), writes and reads that closing a reopened queue of 5
/// chunks (the newest half full) does, after `touch` ran on it.
fn close_cost(touch: impl Fn(&Queue<u64>)) -> (u64, u64, u64) {
    let st = SimStorage::new();
    let opts = Options::new().chunk_size(10);
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    q.put_many(&(0..45).collect::<Vec<_>>()).unwrap();
    q.close().unwrap();
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    touch(&q);
    let before = [Op::Rename, Op::Write, Op::Read].map(|op| st.count(op));
    q.close().unwrap();
    let after = [Op::Rename, Op::Write, Op::Read].map(|op| st.count(op));
    (
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    )
}

#[test]
fn closing_an_untouched_queue_writes_and_reads_nothing() {
    assert_eq!(close_cost(|_| {}), (0, 0, 0));
    // Gotten but not acknowledged: nothing for `info` either.
    assert_eq!(
        close_cost(|q| {
            q.get().unwrap();
        }),
        (0, 0, 0)
    );
}

#[test]
fn closing_after_a_put_or_an_acknowledgement_writes_a_new_info() {
    let (renames, writes, _) = close_cost(|q| q.put(&45).unwrap());
    assert_eq!(renames, 1);
    assert!(writes >= 1);
    let (renames, _, _) = close_cost(|q| {
        q.get().unwrap();
        q.task_done().unwrap();
    });
    assert_eq!(renames, 1);
}
