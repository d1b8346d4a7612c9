//! Found by the `open_dir` fuzz target (`fuzz/regressions/open_dir/
//! newest-header-deletes-older-chunk` and `inconsistent-newest-hides-records`; the fuzzer's
//! own find was a 94-byte version of the second).
//!
//! What broke: recovery trusts chunk headers that do not form a chain. FORMAT.md says a
//! missing or extra record between two chunks "is caught because chunk n+1 must start
//! exactly where chunk n ends", but `open` never checks that for the headers it acts on:
//!
//! * Step 7 deletes each leading chunk whose *successor's* `first_seq <= acked`, without
//!   checking that the successor starts where the deleted chunk ends. With `q00000`
//!   holding items 0 and 1 (unacknowledged, `info.acked` 0) and a CRC-valid newest
//!   `q00001` whose header says it starts at item 0, `open` deletes `q00000` with both
//!   records and opens an empty queue: a silently emptied queue. (The checkpoint's
//!   `delete_acked_chunks(probe)` trusts a probed header the same way.)
//! * Step 6 takes `tail` from the newest chunk alone. With `q00001` in the middle holding
//!   an unacknowledged record at item 5 and a newest `q00002` starting at item 0, `open`
//!   reports `len() == 0` (the record is hidden) and accepts puts into `q00002` that no
//!   `get` can ever reach: the reader stops at `q00000`/`q00001` with `Error::Corrupt`.
//!
//! Fixed by 6e466c4: recovery checks that chunk headers form a chain, and counts a
//! chunk's records before deleting it as acknowledged.
//!
//! Such headers are damage (or a chunk file copied from another queue). What should
//! happen: `open` refuses with `Error::Corrupt`, as for other broken chains, or at least
//! deletes and hides nothing that the chunk's own header places at or after `acked`.

use diskq::{Error, Options, Queue};
use std::path::Path;
use std::sync::Arc;

use crate::common::hand_built::{DIR, chunk, storage};

/// A refusal is right only as damage found in a chunk file: one naming `info` would mean
/// this test built a wrong `info` (and passed without testing anything).
fn refused_for_the_chunks(e: &Error) {
    match e {
        Error::Corrupt { path, .. } => assert!(
            !path.ends_with("info") && !path.ends_with("acks"),
            "the test's own info or acks was refused: {e}"
        ),
        e => panic!("refused, but not as corrupt: {e}"),
    }
}

#[test]
fn files_built_here_are_well_formed() {
    let st = storage(&[chunk(0, 0, &[0x41, 0x42]), chunk(1, 2, &[0x43])]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(q.len(), 3);
    for item in [0x41, 0x42, 0x43] {
        assert_eq!(q.get_nowait().unwrap(), vec![item]);
    }
}

#[test]
fn open_does_not_delete_a_chunk_because_of_an_inconsistent_successor() {
    // q00000: items 0 and 1, unacknowledged. q00001: claims to start at item 0 too.
    let st = storage(&[chunk(0, 0, &[0x41, 0x42]), chunk(1, 0, &[])]);
    match Options::new().open_on::<Vec<u8>>(Arc::new(st.clone()), DIR) {
        Err(e) => refused_for_the_chunks(&e),
        Ok(q) => {
            assert_eq!(q.len(), 2, "the queue was silently emptied");
            assert_eq!(q.get_nowait().unwrap(), vec![0x41]);
            assert_eq!(q.get_nowait().unwrap(), vec![0x42]);
        }
    }
    assert!(
        st.file(&Path::new(DIR).join("q00000")).is_some(),
        "q00000, holding two unacknowledged records, was deleted"
    );
}

#[test]
fn an_item_put_after_open_can_be_gotten() {
    // q00000: empty, from item 0. q00001: one record at item 5. q00002 (newest): empty,
    // claiming to start at item 0.
    let st = storage(&[chunk(0, 0, &[]), chunk(1, 5, &[0x41]), chunk(2, 0, &[])]);
    let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st), DIR) {
        Err(e) => {
            refused_for_the_chunks(&e);
            return;
        }
        Ok(q) => q,
    };
    q.put(&vec![0x99]).unwrap();
    // The put returned Ok, so a get must deliver an item, not report damage it opened
    // over.
    let first = q.get_nowait().unwrap_or_else(|e| {
        panic!("put returned Ok after open, then get failed: {e}");
    });
    assert!(first == vec![0x41] || first == vec![0x99], "{first:?}");
}
