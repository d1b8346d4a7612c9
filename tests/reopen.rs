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
