//! Recovery reads the acknowledgement journal (`acks`, FORMAT.md §acks) in blocks of
//! 4,096 entries. A journal of 10,000 entries, copied from a live queue's directory
//! (no checkpoint has folded it), is read across those blocks: every acknowledgement
//! counts; a damaged entry in a later block with valid ones after it is
//! `Error::Corrupt` at that entry's offset; a cut last entry is a torn append, dropped.

use diskq::{Error, Options, Queue};
use std::fs;
use std::path::Path;

use crate::common;

const N: u64 = 10_000;
const ENTRY: u64 = 12;

/// A directory whose journal holds the delivery of `N` items (one `get_many`), then one
/// head entry per `task_done` of them: `N + 1` entries.
fn journal_of_n_entries(dir: &Path) -> tempfile::TempDir {
    let q: Queue<u64> = Options::new()
        .journal_limit(1 << 30) // no checkpoint folds the journal
        .open(dir)
        .unwrap();
    for i in 0..N {
        q.put(&i).unwrap();
    }
    assert_eq!(q.get_many(N as usize).unwrap().len() as u64, N);
    for _ in 0..N {
        q.task_done().unwrap();
    }
    // Copied while open: what a crash would leave (at Written, the page cache has it).
    let copy = common::crash_copy(dir);
    drop(q);
    let acks = fs::read(copy.path().join("acks")).unwrap();
    assert!(
        acks.len() as u64 >= N * ENTRY,
        "journal of {} bytes",
        acks.len()
    );
    copy
}

#[test]
fn every_entry_of_a_long_journal_counts() {
    let dir = tempfile::tempdir().unwrap();
    let copy = journal_of_n_entries(dir.path());
    let q: Queue<u64> = Queue::open(copy.path()).unwrap();
    assert_eq!(q.len(), 0);
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn a_damaged_entry_in_a_later_block_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let copy = journal_of_n_entries(dir.path());
    let path = copy.path().join("acks");
    let mut acks = fs::read(&path).unwrap();
    let at = 5_000 * ENTRY; // in the second block of 4,096 entries
    acks[at as usize + 3] ^= 0x40;
    fs::write(&path, &acks).unwrap();
    match Queue::<u64>::open(copy.path()) {
        Err(Error::Corrupt {
            path: p, offset, ..
        }) => {
            assert!(p.ends_with("acks"), "{}", p.display());
            assert_eq!(offset, at);
        }
        other => panic!("{:?}", other.map(|q| q.len())),
    }
}

#[test]
fn a_cut_last_entry_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let copy = journal_of_n_entries(dir.path());
    let path = copy.path().join("acks");
    let acks = fs::read(&path).unwrap();
    fs::write(&path, &acks[..((N + 1) * ENTRY - 5) as usize]).unwrap();
    let q: Queue<u64> = Queue::open(copy.path()).unwrap();
    // The last task_done's entry is gone: its item comes back.
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().unwrap(), N - 1);
}
