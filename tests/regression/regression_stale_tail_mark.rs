//! Regressions in `info`'s tail mark (FORMAT.md §info), found by review before release.
//!
//! * A mark that recovery could not use (the chunk shorter than the mark after a power
//!   loss below `Synced`) stayed in `info`: once new records refilled the chunk to the
//!   mark's offset, a later open believed its count. After a `kill -9` (within `Written`'s
//!   guarantee) the queue then counted too few items, took acknowledgements for items it
//!   lacked, started a new chunk and lost two items whose `put` had returned. Fixed: open
//!   checkpoints whenever the mark does not describe the chunk it recovered.
//! * A power loss that keeps a file's size but not its data (zero-filled blocks within it,
//!   FORMAT.md §Assumptions) left a mark that `open` trusted over zeros: the queue then
//!   failed on every `get`, where version 1 (no mark) recovered the records that survived.
//!   Fixed: the mark records the length of its last record, and recovery reads that
//!   record before trusting the mark.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Options, Queue};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/regression/q";

fn opts() -> Options {
    Options::new().durability(Durability::Written)
}

fn drain(q: &Queue<Vec<u8>>) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(v) => got.push(v[0]),
            Err(e) => {
                assert!(e.is_empty(), "after {got:?}: {e}");
                return got;
            }
        }
    }
}

#[test]
fn a_mark_recovery_could_not_use_does_not_outlive_the_open() {
    let st = SimStorage::new();
    let dir = Path::new(DIR);
    let q: Queue<Vec<u8>> = opts().open_on(Arc::new(st.clone()), DIR).unwrap();
    for i in 0..10u8 {
        q.put(&vec![i; 92]).unwrap(); // frames of 8 + 8 + 92 = 108 bytes
    }
    for _ in 0..3 {
        q.get_nowait().unwrap();
        q.task_done().unwrap();
    }
    q.close().unwrap();
    // A power loss keeps five records of the chunk, and `info` (mark: 10 records).
    let c = st.file(&dir.join("q00000")).unwrap();
    assert_eq!(c.len(), 28 + 10 * 108);
    st.put_file(&dir.join("q00000"), &c[..28 + 5 * 108]);

    let q: Queue<Vec<u8>> = opts().open_on(Arc::new(st.clone()), DIR).unwrap();
    assert_eq!(q.len(), 2);
    for i in 0..10u8 {
        q.put(&vec![100 + i; 38]).unwrap(); // frames of 54: the chunk ends at the old mark
    }
    for _ in 0..10 {
        q.get_nowait().unwrap();
        q.task_done().unwrap();
    }
    assert_eq!(q.len(), 2);
    // kill -9: what was handed to the OS survives.
    let image = st.after_crash(Crash::Process);
    std::mem::forget(q);
    let q: Queue<Vec<u8>> = opts().open_on(Arc::new(image), DIR).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(drain(&q), [108, 109]);
}

#[test]
fn a_mark_over_zero_filled_blocks_is_not_trusted() {
    for (acked, left) in [(3usize, vec![3u8, 4, 0xaa]), (10, vec![0xaa])] {
        let st = SimStorage::new();
        let dir = Path::new(DIR);
        let q: Queue<Vec<u8>> = opts().open_on(Arc::new(st.clone()), DIR).unwrap();
        for i in 0..10u8 {
            q.put(&vec![i; 92]).unwrap();
        }
        for _ in 0..acked {
            q.get_nowait().unwrap();
            q.task_done().unwrap();
        }
        q.close().unwrap();
        // A power loss keeps the file's size, but its last five records are zeros.
        let mut c = st.file(&dir.join("q00000")).unwrap();
        c[28 + 5 * 108..].fill(0);
        st.put_file(&dir.join("q00000"), &c);

        let q: Queue<Vec<u8>> = opts()
            .open_on(Arc::new(st.clone()), DIR)
            .unwrap_or_else(|e| panic!("acked {acked}: {e}"));
        q.put(&vec![0xaa]).unwrap();
        assert_eq!(drain(&q), left, "acked {acked}");
    }
}
