//! An audit of the `diskq` command (issue #18): `Inspector` counted and listed past
//! damage in silence. One flipped record in a queue of five gave `waiting 0` next to
//! `delayed 1` and `items` listed nothing, with no word of the damage, while `repair`
//! then salvaged six records. The walk now stops at damage that hides records asked for
//! and says where (`stopped_at`); damage that hides only records below `from`, or
//! acknowledged ones, stops nothing.

use diskq::{Inspector, Options, Queue};
use std::path::Path;

/// Flips a payload bit of the record at `index` of a chunk file of u32 items (header
/// 28 bytes, then records of 8 + 4 bytes); returns the record's offset.
fn flip(chunk: &Path, index: usize) -> u64 {
    let mut b = std::fs::read(chunk).unwrap();
    let at = 28 + index * 12;
    b[at + 8] ^= 1;
    std::fs::write(chunk, b).unwrap();
    at as u64
}

fn seqs(listed: &diskq::Listing) -> Vec<u64> {
    listed.items.iter().map(|i| i.seq).collect()
}

/// Items 0 to 5, three to a chunk file: q00000 holds 0 to 2, q00001 3 to 5.
fn two_chunks(dir: &Path) -> Queue<u32> {
    let q: Queue<u32> = Options::new().chunk_size(3).open(dir).unwrap();
    q.put_many(&[0, 1, 2, 3, 4, 5]).unwrap();
    q
}

#[test]
fn fixed_snapshot_and_items_stop_at_damage_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_chunks(dir.path()));
    let at = flip(&dir.path().join("q00000"), 1);
    let i = Inspector::open(dir.path()).unwrap();
    let s = i.snapshot().unwrap();
    let stop = s.stopped_at.as_ref().expect("stopped at the damage");
    assert_eq!((stop.offset, stop.file.ends_with("q00000")), (at, true));
    assert_eq!(
        (s.waiting, s.oldest_seq, s.next_seq),
        (1, Some(0), 1),
        "{s:?}"
    );

    let listed = i.items(0, 10).unwrap();
    assert_eq!(seqs(&listed), [0]);
    assert_eq!(listed.stopped_at.map(|d| d.offset), Some(at));
    // The limit is reached before the damage: nothing asked for is left out.
    assert_eq!(i.items(0, 1).unwrap().stopped_at, None);
    // Seq 2 may be hidden in the damage; 3 and on are past it (q00001 starts at 3).
    assert!(i.records(2, 10).unwrap().stopped_at.is_some());
    for listed in [i.records(3, 10).unwrap(), i.items(3, 10).unwrap()] {
        assert_eq!((seqs(&listed), listed.stopped_at), (vec![3, 4, 5], None));
    }
}

/// An old chunk file the owner has not deleted yet, every item in it acknowledged:
/// damage there hides nothing waiting.
#[test]
fn probe_damage_among_acknowledged_records_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = two_chunks(dir.path());
    let old = std::fs::read(dir.path().join("q00000")).unwrap();
    for _ in 0..3 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    q.close().unwrap();
    std::fs::write(dir.path().join("q00000"), old).unwrap();
    flip(&dir.path().join("q00000"), 1);
    let s = Inspector::open(dir.path()).unwrap().snapshot().unwrap();
    assert_eq!(
        (s.waiting, s.oldest_seq, &s.stopped_at),
        (3, Some(3), &None)
    );
}
