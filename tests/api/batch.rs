//! The batch API: `put_many`, `get_many`, `get_many_timeout`, `task_done_n`, alone and
//! mixed with the single-item calls, across chunk boundaries, bounds, reopens and every
//! durability level.

use diskq::{Durability, Error, Options, Queue};
use serde::{Serialize, Serializer};
use std::time::Duration;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

fn open<T: serde::Serialize + serde::de::DeserializeOwned>(
    dir: &std::path::Path,
    d: Durability,
) -> Queue<T> {
    Options::new()
        .chunk_size(3)
        .durability(d)
        .open(dir)
        .unwrap()
}

#[test]
fn batches_cross_chunks_keep_order_and_survive_reopen() {
    for d in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q: Queue<u32> = open(dir.path(), d);
        let items: Vec<u32> = (0..20).collect();
        q.put_many(&items).unwrap();
        q.put(&20).unwrap();
        q.put_many(&[21, 22]).unwrap();
        assert_eq!(q.len(), 23);
        assert_eq!(q.get_many(5).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(q.get().unwrap(), 5);
        q.task_done_n(4).unwrap(); // 0..4 done; 4 and 5 in flight
        q.close().unwrap();

        let q: Queue<u32> = open(dir.path(), d);
        assert_eq!(q.unfinished(), 19);
        assert_eq!(q.get_many(100).unwrap(), (4..23).collect::<Vec<_>>());
        q.task_done_n(19).unwrap();
        assert!(q.is_empty());
        q.close().unwrap();
        let q: Queue<u32> = open(dir.path(), d);
        assert_eq!(q.unfinished(), 0, "{d:?}");
    }
}

#[test]
fn get_many_returns_what_is_there_and_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = open(dir.path(), Durability::Written);
    assert!(q.get_many(0).unwrap().is_empty());
    let t = std::time::Instant::now();
    let e = q
        .get_many_timeout(4, Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout));
    assert!(t.elapsed() >= Duration::from_millis(50));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            q.put_many(&[7, 8]).unwrap();
        });
        let got = q.get_many(10).unwrap();
        assert!(got == vec![7, 8] || got == vec![7], "{got:?}");
    });
}

#[test]
fn task_done_n_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = open(dir.path(), Durability::Written);
    q.put_many(&[1, 2, 3]).unwrap();
    q.get_many(2).unwrap();
    assert!(matches!(q.task_done_n(3), Err(Error::NothingToAcknowledge)));
    assert_eq!(
        q.unfinished(),
        3,
        "a refused task_done_n acknowledges nothing"
    );
    q.task_done_n(2).unwrap();
    q.task_done_n(0).unwrap();
    assert_eq!(q.unfinished(), 1);
}

#[test]
fn put_many_respects_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new().max_size(4).open(dir.path()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| q.put_many(&(0..50).collect::<Vec<_>>()).unwrap());
        let mut got = Vec::new();
        while got.len() < 50 {
            assert!(q.len() <= 4, "len {} over max_size", q.len());
            got.extend(q.get_many(3).unwrap());
        }
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        q.task_done_n(50).unwrap();
    });
}

/// Serializes like a u32 but fails on 13.
struct Unlucky(u32);

impl Serialize for Unlucky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Unlucky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(Unlucky)
    }
}

#[test]
fn a_batch_with_an_unserializable_item_puts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Unlucky> = open(dir.path(), Durability::Written);
    let items: Vec<Unlucky> = (10..16).map(Unlucky).collect();
    let e = q.put_many(&items).unwrap_err();
    assert!(matches!(e, Error::Encode(_)), "{e}");
    assert!(e.to_string().contains("13 is unlucky"), "{e}");
    assert_eq!(q.len(), 0);
    q.put_many(&[Unlucky(1), Unlucky(2)]).unwrap();
    assert_eq!(
        q.get_many(5)
            .unwrap()
            .iter()
            .map(|u| u.0)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn concurrent_batches_interleave_whole_or_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<(u8, u32)> = Options::new()
        .durability(Durability::Synced)
        .open(dir.path())
        .unwrap();
    std::thread::scope(|s| {
        for p in 0..4u8 {
            let q = &q;
            s.spawn(move || {
                for b in 0..5u32 {
                    let batch: Vec<(u8, u32)> = (0..10).map(|i| (p, b * 10 + i)).collect();
                    q.put_many(&batch).unwrap();
                }
            });
        }
    });
    let all = q.get_many(1000).unwrap();
    assert_eq!(all.len(), 200);
    for p in 0..4u8 {
        let mine: Vec<u32> = all.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
    // A batch is enqueued in one piece: its ten items are adjacent.
    for w in all.chunks(10) {
        assert!(w.iter().all(|x| x.0 == w[0].0), "{w:?}");
    }
}
