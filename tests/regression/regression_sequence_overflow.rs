//! Found by the `open_dir` fuzz target (`fuzz/regressions/open_dir/seq-overflow-at-open`).
//!
//! What broke: sequence-number arithmetic is unchecked. Recovery computes the newest
//! chunk's tail as `first_seq + records` (`src/recovery.rs`, `let tail = writer.first_seq +
//! writer.count`). A chunk header with a valid CRC whose `first_seq` is near `u64::MAX`
//! (damage that the CRC missed, or a crafted file) makes `open` panic with "attempt to add
//! with overflow" in a debug build. In a release build the sum wraps to a small number:
//! with `info.acked` at the chunk's `first_seq`, recovery then takes the acknowledgements
//! for being ahead of the tail (FORMAT.md §open step 8), deletes the chunk with its two
//! unacknowledged records and opens an empty queue: a silently emptied queue, which the
//! crate promises never to give for a damaged directory. `open` should refuse such a
//! chunk with `Error::Corrupt` (its sequence numbers cannot be what diskq wrote).
//!
//! Fixed by a262aea: sequence numbers of 2^62 or more (in `info`, the journal or a chunk
//! header) are refused as damage.
//!
//! The same unchecked arithmetic is reachable by `put` on a queue whose tail is at
//! `u64::MAX` (`Engine::tail`, `first_seq + count`; `Engine::ack`, `acked += n`): the
//! second test. Debug: "attempt to add with overflow" in `put`. Release: put, get and
//! task_done seem to work, but `acked` wraps to 0, is journaled and checkpointed as 0, and
//! the queue no longer opens (`Error::Corrupt`: the oldest chunk starts at item
//! `u64::MAX`, items from 0 on were never acknowledged).

use diskq::storage::SimStorage;
use diskq::{Error, Options, Queue};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/regression/q";

/// `info` (FORMAT.md §info): acked, tail_chunk 0, no single acknowledgements.
fn info(acked: u64) -> Vec<u8> {
    let mut b = b"diskqinf".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&acked.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// `q00000` (FORMAT.md §Chunk files) starting at `first_seq`, holding `payloads`.
fn chunk0(first_seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
    let mut b = b"dqck".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    for p in payloads {
        let len = (p.len() as u32).to_le_bytes();
        let mut h = crc32fast::Hasher::new();
        h.update(&len);
        h.update(p);
        b.extend_from_slice(&len);
        b.extend_from_slice(&h.finalize().to_le_bytes());
        b.extend_from_slice(p);
    }
    b
}

fn storage(acked: u64, first_seq: u64, payloads: &[&[u8]]) -> SimStorage {
    let st = SimStorage::new();
    let dir = Path::new(DIR);
    st.put_file(&dir.join("info"), &info(acked));
    st.put_file(&dir.join("q00000"), &chunk0(first_seq, payloads));
    st
}

/// bincode of a one-byte `Vec<u8>`.
const ITEM_A: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 0x41];
const ITEM_B: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 0x42];

/// A refusal is right as `Error::Corrupt`, naming the chunk or `info` (whose acknowledged
/// count is impossible too); `files_built_here_are_well_formed` shows that the refusal
/// is not of a file this test built wrongly.
fn refused_as_damage(e: &Error) {
    assert!(e.is_corrupt(), "refused, but not as corrupt: {e}");
}

#[test]
fn files_built_here_are_well_formed() {
    let q: Queue<Vec<u8>> = Options::new()
        .open_on(Arc::new(storage(0, 0, &[ITEM_A, ITEM_B])), DIR)
        .unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get_nowait().unwrap(), vec![0x41]);
}

#[test]
fn a_chunk_whose_sequence_numbers_overflow_is_refused_not_emptied() {
    let first = u64::MAX - 1;
    let st = storage(first, first, &[ITEM_A, ITEM_B]);
    match Options::new().open_on::<Vec<u8>>(Arc::new(st.clone()), DIR) {
        Err(e) => refused_as_damage(&e),
        Ok(q) => {
            // Opening is acceptable only if the two unacknowledged items are still there.
            assert_eq!(q.len(), 2, "the queue was silently emptied");
            assert_eq!(q.get_nowait().unwrap(), vec![0x41]);
            assert_eq!(q.get_nowait().unwrap(), vec![0x42]);
        }
    }
    assert!(
        st.file(&Path::new(DIR).join("q00000")).is_some(),
        "the chunk holding two unacknowledged records was deleted"
    );
}

#[test]
fn put_at_the_end_of_the_sequence_space_fails_instead_of_wrapping() {
    // A queue at item u64::MAX, empty: opening is fine.
    let st = storage(u64::MAX, u64::MAX, &[]);
    let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st.clone()), DIR) {
        Ok(q) => q,
        Err(e) => {
            refused_as_damage(&e);
            return;
        }
    };
    assert_eq!(q.len(), 0);
    // The item would get sequence number u64::MAX and the tail would be u64::MAX + 1.
    match q.put(&vec![7]) {
        Err(Error::Io { .. } | Error::Corrupt { .. }) | Err(Error::Poisoned) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(()) => {
            assert_eq!(q.len(), 1, "len after the put");
            assert_eq!(q.get_nowait().unwrap(), vec![7]);
            q.task_done().unwrap();
            assert_eq!(q.unfinished(), 0);
            q.close().unwrap();
            // Everything is acknowledged: the queue reopens, empty.
            let q: Queue<Vec<u8>> = Options::new()
                .open_on(Arc::new(st), DIR)
                .unwrap_or_else(|e| panic!("reopen after put, get, task_done, close: {e}"));
            assert_eq!(q.len(), 0);
        }
    }
}
