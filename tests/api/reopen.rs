//! What `open` reads: no more for a queue of many chunks than for one of a few (FORMAT.md
//! §open, step 7), and damage it does not read is reported by `get` when the reader
//! reaches it.

use diskq::storage::{Op, SimStorage};
use diskq::{Error, Options, Queue};
use std::sync::Arc;

use crate::common::hand_built::{DIR, chunk, info_v3, storage};

/// Files opened and reads done by reopening a closed queue of `chunks` full chunks of 10
/// items plus a newest chunk holding 3.
fn reopen_cost(chunks: u64) -> (u64, u64, usize) {
    let st = SimStorage::new();
    let opts = Options::new().chunk_size(10);
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    let items: Vec<u64> = (0..chunks * 10 + 3).collect();
    q.put_many(&items).unwrap();
    q.close().unwrap();
    let (opens, reads, lists) = (st.count(Op::Open), st.count(Op::Read), st.count(Op::List));
    let q: Queue<u64> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    let cost = (st.count(Op::Open) - opens, st.count(Op::Read) - reads);
    // info says where the chunk files are: the directory is not listed.
    assert_eq!(st.count(Op::List), lists, "open listed the directory");
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
    // writer's handle) and the two oldest; and the two numbers after the newest, which
    // are not there (a chunk started after the last checkpoint would be).
    assert_eq!(few_opens, 7, "files opened by open");
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
    // Gotten but not acknowledged: the delivery is recorded (its attempt counts after a
    // reopen), so the checkpoint writes `info` once (one rename, one write), reading
    // nothing.
    assert_eq!(
        close_cost(|q| {
            q.get().unwrap();
        }),
        (1, 1, 0)
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

/// A directory of hand-built chunk files (`Some((first_seq, items))` for chunk `i`,
/// `None` for a missing one), a version 3 `info` and an empty journal.
fn v3_dir(acked: u64, tail: u64, head: u64, chunks: &[Option<(u64, &[u8])>]) -> SimStorage {
    let st = SimStorage::new();
    let dir = std::path::Path::new(DIR);
    st.put_file(&dir.join("info"), &info_v3(acked, tail, head));
    st.put_file(&dir.join("acks"), &[]);
    for (no, c) in chunks.iter().enumerate() {
        if let Some((first, items)) = c {
            st.put_file(
                &dir.join(format!("q{no:05}")),
                &chunk(no as u64, *first, items),
            );
        }
    }
    st
}

fn drain_all(q: &Queue<Vec<u8>>) -> Vec<u8> {
    let mut got = Vec::new();
    while let Ok(item) = q.get_nowait() {
        got.extend(item);
        q.task_done().unwrap();
    }
    got
}

/// FORMAT.md §open, step 5: chunks started after the checkpoint that `info` records
/// (a crash came before the next one) are found, without listing the directory.
#[test]
fn chunks_after_the_recorded_newest_are_found_without_listing() {
    let st = v3_dir(
        0,
        0,
        0,
        &[Some((0, &[0, 1])), Some((2, &[2, 3])), Some((4, &[4]))],
    );
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(st.count(Op::List), 0, "open listed the directory");
    assert_eq!(q.len(), 5);
    assert_eq!(drain_all(&q), vec![0, 1, 2, 3, 4]);
}

/// Chunks deleted (all acknowledged) since the checkpoint are missing from `head_chunk`
/// on: the oldest is the first file there.
#[test]
fn chunks_deleted_since_the_checkpoint_are_skipped() {
    let st = v3_dir(4, 2, 0, &[None, None, Some((4, &[4, 5]))]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(st.count(Op::List), 0, "open listed the directory");
    assert_eq!(drain_all(&q), vec![4, 5]);

    let st = v3_dir(3, 2, 0, &[None, Some((2, &[2, 3])), Some((4, &[4, 5]))]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(drain_all(&q), vec![3, 4, 5]);

    // The oldest file left starts after the acknowledged count: items were lost.
    let st = v3_dir(1, 2, 0, &[None, Some((2, &[2, 3])), Some((4, &[4, 5]))]);
    let e = Options::new()
        .open_on::<Vec<u8>>(Arc::new(st), DIR)
        .unwrap_err();
    assert!(e.is_corrupt() && e.to_string().contains("q00001"), "{e}");
}

/// Chunks can be deleted, acknowledged, before a checkpoint records the chunks started
/// after them: `info`'s newest chunk may be gone, and the ones after it too.
#[test]
fn chunks_deleted_up_to_and_past_the_recorded_newest_are_not_missing() {
    // q00000, the recorded newest, deleted: q00001 follows it.
    let st = v3_dir(2, 0, 0, &[None, Some((2, &[2, 3]))]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(st.count(Op::List), 0, "open listed the directory");
    assert_eq!(drain_all(&q), vec![2, 3]);

    // Two or three in a row deleted: the directory is listed.
    for gone in [2, 3] {
        let mut chunks: Vec<Option<(u64, &[u8])>> = vec![None; gone];
        chunks.push(Some((gone as u64, &[9])));
        let st = v3_dir(gone as u64, 0, 0, &chunks);
        let q: Queue<Vec<u8>> = Options::new()
            .open_on(Arc::new(st.clone()), DIR)
            .unwrap_or_else(|e| panic!("{gone} deleted: {e}"));
        assert_eq!(st.count(Op::List), 1);
        assert_eq!(drain_all(&q), vec![9], "{gone} deleted");
    }
}

/// A missing chunk file right after the newest is noticed when the one after it is
/// there; one in the middle (not among the two oldest and two newest, whose headers
/// open reads), when the reader reaches it, consuming nothing.
#[test]
fn missing_chunk_files_are_reported() {
    let st = v3_dir(0, 0, 0, &[Some((0, &[0])), None, Some((2, &[2]))]);
    let e = Options::new()
        .open_on::<Vec<u8>>(Arc::new(st), DIR)
        .unwrap_err();
    assert!(e.is_corrupt() && e.to_string().contains("q00001"), "{e}");

    let c: [&[u8]; 6] = [&[0], &[1], &[2], &[3], &[4], &[5]];
    let mut chunks: Vec<Option<(u64, &[u8])>> = c
        .iter()
        .enumerate()
        .map(|(i, c)| Some((i as u64, *c)))
        .collect();
    chunks[2] = None;
    let st = v3_dir(0, 5, 0, &chunks);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(q.len(), 6);
    assert_eq!(q.get_nowait().unwrap(), vec![0]);
    // The reader reads where the next chunk starts before it delivers a chunk's records.
    for _ in 0..2 {
        match q.get_nowait() {
            Err(Error::Corrupt { path, detail, .. }) => {
                assert!(
                    path.ends_with("q00002") && detail.contains("missing"),
                    "{detail}"
                )
            }
            other => panic!("expected the missing q00002, got {other:?}"),
        }
    }
    assert_eq!(q.len(), 5);
}

/// No chunk file is older than `head_chunk`, as diskq writes them; one that is, is not
/// looked at by `open`, and `repair` reports it.
#[test]
fn a_chunk_file_older_than_the_recorded_oldest_is_not_read() {
    let st = v3_dir(2, 1, 1, &[Some((0, &[0, 1])), Some((2, &[2, 3]))]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(drain_all(&q), vec![2, 3]);
    drop(q);
    let q00000 = std::path::Path::new(DIR).join("q00000");
    assert!(st.file(&q00000).is_some(), "q00000 was touched");

    // Its items not acknowledged: open refuses, and repair rebuilds the queue with them.
    let st = v3_dir(0, 1, 1, &[Some((0, &[0, 1])), Some((2, &[2, 3]))]);
    let e = Options::new()
        .open_on::<Vec<u8>>(Arc::new(st.clone()), DIR)
        .unwrap_err();
    assert!(e.is_corrupt(), "{e}");
    let r = diskq::repair_on(Arc::new(st.clone()), std::path::Path::new(DIR)).unwrap();
    assert!(
        r.problems.iter().any(|p| p.contains("older than q00001")),
        "{:?}",
        r.problems
    );
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(drain_all(&q), vec![0, 1, 2, 3]);
}

/// A version 2 `info` records no oldest chunk: open lists the directory, and the next
/// checkpoint writes version 3.
#[test]
fn a_version_2_info_is_read_by_listing_and_rewritten() {
    let st = SimStorage::new();
    let dir = std::path::Path::new(DIR);
    let c = chunk(0, 0, &[7, 8]);
    st.put_file(&dir.join("info"), &info_with_mark(0, 0, 0));
    st.put_file(&dir.join("q00000"), &c);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(st.count(Op::List), 1);
    assert_eq!(q.get_nowait().unwrap(), vec![7]);
    q.task_done().unwrap();
    q.close().unwrap();
    let info = st.file(&dir.join("info")).unwrap();
    assert_eq!((info.len(), info[8]), (116, 5), "info after a checkpoint");
    let lists = st.count(Op::List);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(st.count(Op::List), lists, "a version 3 info: no listing");
    assert_eq!(drain_all(&q), vec![8]);
}

/// Chunk numbers from a CRC-valid `info` that no queue reaches: an error, never a panic
/// or a huge allocation (the numbers past the newest are looked at with checked
/// arithmetic, and an `info` spanning 65,536 chunks or more is listed).
#[test]
fn impossible_chunk_numbers_in_info_are_errors() {
    for (tail, head) in [
        (u64::MAX, u64::MAX),
        (u64::MAX - 1, u64::MAX - 3),
        (1 << 62, 1 << 62),
        (70_000, 0),
        (5, 0),
    ] {
        let st = v3_dir(0, tail, head, &[Some((0, &[1]))]);
        match Options::new().open_on::<Vec<u8>>(Arc::new(st), DIR) {
            Err(e) => assert!(e.is_corrupt(), "tail {tail} head {head}: {e}"),
            Ok(_) => panic!("tail {tail} head {head}: opened"),
        }
    }
    // The oldest after the newest: info is damaged.
    let st = v3_dir(0, 0, 1, &[Some((0, &[1]))]);
    let e = Options::new()
        .open_on::<Vec<u8>>(Arc::new(st), DIR)
        .unwrap_err();
    assert!(e.is_corrupt() && e.to_string().contains("info"), "{e}");
}
