//! Acknowledgement across reopens: items gotten but not acknowledged come back first, in
//! order; acknowledged items never come back; at every chunk size and durability level;
//! and `close` reports success and releases the directory.

use diskq::{Durability, Options, Queue};
use std::collections::VecDeque;
use std::path::Path;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

fn open(dir: &Path, chunk_size: usize, durability: Durability) -> Queue<u32> {
    Options::new()
        .chunk_size(chunk_size)
        .durability(durability)
        .open(dir)
        .unwrap_or_else(|e| panic!("open (chunk size {chunk_size}, {durability:?}): {e}"))
}

/// Closes the queue: explicitly at the buffered level (whose data lives in memory until
/// then) and, to exercise both paths, by drop at the others.
fn shut(q: Queue<u32>, durability: Durability) {
    if durability == Durability::Buffered {
        q.close().unwrap();
    } else {
        drop(q);
    }
}

fn unacked_item_comes_first(chunk_size: usize, durability: Durability) {
    let ctx = format!("chunk size {chunk_size}, {durability:?}");
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), chunk_size, durability);
    for i in 0..6 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap(); // acknowledges 0, the first gotten
    shut(q, durability);

    let q = open(dir.path(), chunk_size, durability);
    assert_eq!(q.len(), 5, "{ctx}");
    assert_eq!(q.unfinished(), 5, "{ctx}");
    let got: Vec<u32> = (0..5).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4, 5], "{ctx}");
    assert!(q.get_nowait().unwrap_err().is_empty(), "{ctx}");
}

#[test]
fn unacknowledged_item_comes_first_after_reopen() {
    for durability in LEVELS {
        for chunk_size in [1, 2, 3, 1000] {
            unacked_item_comes_first(chunk_size, durability);
        }
    }
}

/// Several reopen cycles; each gets a few items and acknowledges fewer. Checks the exact
/// sequence after every reopen and that no acknowledged item is ever delivered again.
fn acked_never_return(chunk_size: usize, durability: Durability) {
    let ctx = format!("chunk size {chunk_size}, {durability:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut expected: VecDeque<u32> = VecDeque::new();
    let mut acked: Vec<u32> = Vec::new();
    let mut next = 0u32;
    for cycle in 0..6u32 {
        let q = open(dir.path(), chunk_size, durability);
        assert_eq!(q.len(), expected.len(), "{ctx}, cycle {cycle}");
        assert_eq!(q.unfinished(), expected.len(), "{ctx}, cycle {cycle}");
        // Some new items each cycle, after the recovered ones.
        for _ in 0..4 {
            q.put(&next).unwrap();
            expected.push_back(next);
            next += 1;
        }
        // Get three, acknowledge (cycle % 3) of them: 0, 1 or 2.
        let mut gotten = Vec::new();
        for _ in 0..3 {
            let x = q.get_nowait().unwrap();
            assert!(
                !acked.contains(&x),
                "{ctx}, cycle {cycle}: acknowledged item {x} delivered again"
            );
            assert_eq!(Some(x), expected.pop_front(), "{ctx}, cycle {cycle}");
            gotten.push(x);
        }
        let n_ack = (cycle % 3) as usize;
        for &x in &gotten[..n_ack] {
            q.task_done().unwrap();
            acked.push(x);
        }
        // The unacknowledged ones come back first, in order.
        for &x in gotten[n_ack..].iter().rev() {
            expected.push_front(x);
        }
        shut(q, durability);
    }
    // Drain what is left and check it is exactly the model's.
    let q = open(dir.path(), chunk_size, durability);
    let rest: Vec<u32> = (0..q.len()).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(rest, Vec::from(expected), "{ctx}: final contents");
    for x in &rest {
        assert!(!acked.contains(x), "{ctx}: acknowledged item {x} came back");
        q.task_done().unwrap();
    }
    assert_eq!(q.unfinished(), 0);
    shut(q, durability);
    let q = open(dir.path(), chunk_size, durability);
    assert!(q.get_nowait().unwrap_err().is_empty(), "{ctx}");
    assert_eq!(q.unfinished(), 0, "{ctx}");
}

#[test]
fn acknowledged_items_never_return_across_reopens() {
    for durability in LEVELS {
        for chunk_size in [1, 2, 3, 1000] {
            acked_never_return(chunk_size, durability);
        }
    }
}

#[test]
fn everything_acknowledged_then_reopened_is_empty() {
    for durability in LEVELS {
        for chunk_size in [1, 2, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let q = open(dir.path(), chunk_size, durability);
            for i in 0..7 {
                q.put(&i).unwrap();
            }
            for i in 0..7 {
                assert_eq!(q.get().unwrap(), i);
                q.task_done().unwrap();
            }
            shut(q, durability);
            let q = open(dir.path(), chunk_size, durability);
            assert_eq!(
                (q.len(), q.unfinished()),
                (0, 0),
                "chunk size {chunk_size}, {durability:?}"
            );
            // Numbering continues: new items are delivered, not old ones.
            q.put(&100).unwrap();
            assert_eq!(q.get_nowait().unwrap(), 100);
        }
    }
}

#[test]
fn gotten_unacknowledged_items_survive_reopen_even_when_all_were_gotten() {
    for durability in LEVELS {
        for chunk_size in [1, 2, 1000] {
            let ctx = format!("chunk size {chunk_size}, {durability:?}");
            let dir = tempfile::tempdir().unwrap();
            let q = open(dir.path(), chunk_size, durability);
            for i in 0..5 {
                q.put(&i).unwrap();
            }
            for i in 0..5 {
                assert_eq!(q.get().unwrap(), i);
            }
            assert!(q.is_empty());
            shut(q, durability);
            let q = open(dir.path(), chunk_size, durability);
            let got: Vec<u32> = (0..5).map(|_| q.get_nowait().unwrap()).collect();
            assert_eq!(got, [0, 1, 2, 3, 4], "{ctx}");
            assert!(q.get_nowait().unwrap_err().is_empty(), "{ctx}");
        }
    }
}

#[test]
fn close_returns_ok_and_releases_the_directory() {
    for durability in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 2, durability);
        q.put(&1).unwrap();
        q.put(&2).unwrap();
        q.put(&3).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        q.task_done().unwrap();
        // While it is open the directory is locked...
        let err = Options::new().open::<u32>(dir.path()).unwrap_err();
        assert!(err.is_locked(), "{durability:?}: {err:?}");
        // ... and close releases it.
        q.close()
            .unwrap_or_else(|e| panic!("{durability:?}: close failed: {e}"));
        let q = open(dir.path(), 2, durability);
        assert_eq!(q.get_nowait().unwrap(), 2, "{durability:?}");
        assert_eq!(q.get_nowait().unwrap(), 3, "{durability:?}");
        assert!(q.get_nowait().unwrap_err().is_empty());
        q.close().unwrap();
    }
}

#[test]
fn close_of_an_empty_queue_and_a_fresh_directory() {
    for durability in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet-created");
        open(&path, 10, durability).close().unwrap();
        open(&path, 10, durability).close().unwrap();
        let q = open(&path, 10, durability);
        assert!(q.is_empty());
        assert_eq!(q.unfinished(), 0);
    }
}

/// The chunk files (`qNNNNN`) in `dir`, sorted.
fn chunk_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.len() >= 6 && n.starts_with('q') && n[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn acknowledged_chunk_files_are_deleted() {
    for durability in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 3, durability);
        for i in 0..9 {
            q.put(&i).unwrap();
        }
        q.flush().unwrap(); // at the buffered level, chunk files appear when items are written
        assert_eq!(chunk_files(dir.path()), ["q00000", "q00001", "q00002"]);
        for i in 0..3 {
            assert_eq!(q.get().unwrap(), i);
        }
        q.task_done().unwrap();
        q.task_done().unwrap();
        // q00000 still holds an unacknowledged item.
        shut(q, durability);
        assert_eq!(
            chunk_files(dir.path()),
            ["q00000", "q00001", "q00002"],
            "{durability:?}"
        );
        let q = open(dir.path(), 3, durability);
        for i in 2..5 {
            assert_eq!(q.get().unwrap(), i);
            q.task_done().unwrap();
        }
        // Every item of q00000 is acknowledged: DESIGN.md has the file deleted at the
        // next checkpoint or close at the latest.
        shut(q, durability);
        assert_eq!(
            chunk_files(dir.path()),
            ["q00001", "q00002"],
            "{durability:?}"
        );
    }
}

#[test]
fn acknowledged_chunk_files_are_deleted_by_close_after_a_reopen() {
    for durability in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 3, durability);
        for i in 0..9 {
            q.put(&i).unwrap();
        }
        shut(q, durability);
        // Reopened: now acknowledge exactly the items of q00000 and close, without
        // getting anything from q00001.
        let q = open(dir.path(), 3, durability);
        for i in 0..3 {
            assert_eq!(q.get().unwrap(), i);
            q.task_done().unwrap();
        }
        q.close().unwrap();
        assert_eq!(
            chunk_files(dir.path()),
            ["q00001", "q00002"],
            "{durability:?}: a chunk file whose items are all acknowledged survived close"
        );
        // And the remaining items are intact.
        let q = open(dir.path(), 3, durability);
        for i in 3..9 {
            assert_eq!(q.get_nowait().unwrap(), i);
        }
    }
}
