//! `Options::max_bytes`: a bound on the bytes of waiting items (issue #16). An item counts
//! its serialized length plus an 8-byte record header; `Vec<u8>` serializes as an 8-byte
//! length and its bytes, so an item of `n` bytes counts `n + 16`.

use diskq::{Durability, Options, Queue, TrySendError};
use std::time::Duration;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

fn item(n: usize, tag: u8) -> Vec<u8> {
    vec![tag; n]
}

#[test]
fn put_nowait_is_full_past_the_byte_bound_and_gets_make_room() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q: Queue<Vec<u8>> = Options::new()
            .durability(level)
            .max_bytes(3 * 1016)
            .open(dir.path())
            .unwrap();
        for t in 0..3 {
            q.put_nowait(&item(1000, t)).unwrap();
        }
        assert!(
            q.put_nowait(&item(1000, 9)).unwrap_err().is_full(),
            "{level:?}"
        );
        assert!(
            q.put_nowait(&item(1, 9)).unwrap_err().is_full(),
            "{level:?}: not one byte more"
        );
        assert_eq!(q.get().unwrap(), item(1000, 0));
        q.put_nowait(&item(1000, 3)).unwrap();
        assert!(q.put_nowait(&item(1000, 9)).unwrap_err().is_full());
        for t in 1..4 {
            assert_eq!(q.get().unwrap(), item(1000, t), "{level:?}");
        }
        // An item larger than the bound goes in when nothing waits, and only then.
        q.put_nowait(&item(10_000, 5)).unwrap();
        assert!(q.put_nowait(&item(1, 9)).unwrap_err().is_full());
        assert_eq!(q.get().unwrap(), item(10_000, 5));
        q.task_done_n(5).unwrap();
    }
}

#[test]
fn put_blocks_until_a_get_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new().max_bytes(2000).open(dir.path()).unwrap();
    q.put(&item(1500, 1)).unwrap();
    assert!(
        q.put_timeout(&item(1500, 2), Duration::from_millis(50))
            .unwrap_err()
            .is_timeout()
    );
    std::thread::scope(|s| {
        let putter = s.spawn(|| q.put(&item(1500, 2)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!putter.is_finished(), "put waits for room");
        assert_eq!(q.get().unwrap(), item(1500, 1));
        putter.join().unwrap().unwrap();
    });
    assert_eq!(q.get().unwrap(), item(1500, 2));
}

#[test]
fn items_on_disk_at_open_count() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(level).chunk_size(2);
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        for t in 0..5 {
            q.put(&item(1000, t)).unwrap();
        }
        assert_eq!(q.get().unwrap(), item(1000, 0));
        q.task_done().unwrap();
        drop(q);
        // Four items of 1016 bytes wait, across chunk files: over a bound of 3 of them.
        let q: Queue<Vec<u8>> = opts.max_bytes(3 * 1016).open(dir.path()).unwrap();
        assert!(
            q.put_nowait(&item(10, 9)).unwrap_err().is_full(),
            "{level:?}"
        );
        assert_eq!(q.get().unwrap(), item(1000, 1));
        assert!(
            q.put_nowait(&item(10, 9)).unwrap_err().is_full(),
            "{level:?}"
        );
        assert_eq!(q.get().unwrap(), item(1000, 2));
        q.put_nowait(&item(1000, 5)).unwrap();
        assert!(
            q.put_nowait(&item(1, 9)).unwrap_err().is_full(),
            "{level:?}"
        );
        for t in 3..6 {
            assert_eq!(q.get().unwrap(), item(1000, t), "{level:?}");
        }
    }
}

#[test]
fn both_bounds_apply() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new()
        .max_size(3)
        .max_bytes(1000)
        .open(dir.path())
        .unwrap();
    for t in 0..3 {
        q.put_nowait(&item(10, t)).unwrap();
    }
    assert!(
        q.put_nowait(&item(10, 9)).unwrap_err().is_full(),
        "by count"
    );
    q.get().unwrap();
    q.get().unwrap();
    q.put_nowait(&item(940, 3)).unwrap(); // 26 + 956 bytes wait
    assert!(
        q.put_nowait(&item(10, 9)).unwrap_err().is_full(),
        "by bytes"
    );
    assert_eq!(q.len(), 2);
}

#[test]
fn put_many_goes_in_as_room_allows() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new().max_bytes(5 * 116).open(dir.path()).unwrap();
    let items: Vec<Vec<u8>> = (0..20).map(|t| item(100, t)).collect();
    std::thread::scope(|s| {
        let putter = s.spawn(|| q.put_many(&items));
        let mut got = Vec::new();
        while got.len() < items.len() {
            // Never more than the bound waits.
            assert!(q.len() <= 5, "{} items wait", q.len());
            got.push(q.get().unwrap());
        }
        putter.join().unwrap().unwrap();
        assert_eq!(got, items);
    });
}

#[test]
fn a_channel_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) =
        diskq::channel_with::<Vec<u8>>(&Options::new().max_bytes(2 * 1016), dir.path()).unwrap();
    tx.send(item(1000, 0)).unwrap();
    tx.send(item(1000, 1)).unwrap();
    assert!(matches!(
        tx.try_send(item(1000, 2)),
        Err(TrySendError::Full(_))
    ));
    std::thread::scope(|s| {
        let sender = s.spawn(|| tx.send(item(1000, 2)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "send waits for room");
        assert_eq!(rx.recv().unwrap(), item(1000, 0));
        sender.join().unwrap().unwrap();
    });
    assert_eq!(rx.recv().unwrap(), item(1000, 1));
    assert_eq!(rx.recv().unwrap(), item(1000, 2));
}

#[test]
fn items_acknowledged_out_of_order_before_a_reopen_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new().chunk_size(3);
    {
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        for t in 0..5 {
            q.put(&item(1000, t)).unwrap();
        }
        // 1 and 3 acknowledged one by one; 0, 2 and 4 left.
        let ds: Vec<_> = (0..5).map(|_| q.get_delivery().unwrap()).collect();
        for d in ds {
            if d.seq() % 2 == 1 {
                d.ack().unwrap();
            } else {
                let _ = d.into_inner();
            }
        }
    }
    let q: Queue<Vec<u8>> = opts.max_bytes(4 * 1016).open(dir.path()).unwrap();
    assert_eq!(q.len(), 3);
    // Three items of 1016 bytes wait: one more fits, not two.
    q.put_nowait(&item(1000, 5)).unwrap();
    assert!(q.put_nowait(&item(1000, 9)).unwrap_err().is_full());
    for t in [0, 2, 4, 5] {
        assert_eq!(q.get().unwrap(), item(1000, t));
    }
    // Skipping the acknowledged ones freed nothing twice: the bound is exact again.
    for t in 6..10 {
        q.put_nowait(&item(1000, t)).unwrap();
    }
    assert!(q.put_nowait(&item(1, 9)).unwrap_err().is_full());
}
