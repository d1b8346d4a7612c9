//! `Queue::peek` and `Queue::browse` (issue #17): waiting items seen, none taken.

use diskq::{Durability, Error, Options, Queue};

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

#[test]
fn peek_shows_the_next_item_without_taking_it() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(level).chunk_size(2);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert_eq!(q.peek().unwrap(), None, "{level:?}: empty");
        for i in 0..5 {
            q.put(&i).unwrap();
        }
        for i in 0..5 {
            // Twice: peeking takes nothing, also across chunk boundaries.
            assert_eq!(q.peek().unwrap(), Some(i), "{level:?}");
            assert_eq!(q.peek().unwrap(), Some(i), "{level:?}");
            assert_eq!(q.len(), 5 - i as usize);
            assert_eq!(q.get().unwrap(), i);
        }
        assert_eq!(q.peek().unwrap(), None);
        q.task_done_n(5).unwrap();
        q.put(&7).unwrap();
        drop(q);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert_eq!(q.peek().unwrap(), Some(7), "{level:?}: after reopen");
        assert_eq!(q.get().unwrap(), 7);
    }
}

#[test]
fn peek_skips_items_acknowledged_out_of_order_before_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    for i in 0..3 {
        q.put(&i).unwrap();
    }
    {
        // Item 0 gotten and left unacknowledged, item 1 acknowledged out of order.
        let _first = q.get_delivery().unwrap();
        q.get_delivery().unwrap().ack().unwrap();
    }
    drop(q);
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    assert_eq!(q.peek().unwrap(), Some(0));
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!(q.peek().unwrap(), Some(2), "item 1 was acknowledged");
}

#[test]
fn peek_reports_an_undecodable_item_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<String> = Options::new().schema("t").open(dir.path()).unwrap();
    q.put(&"ok".to_string()).unwrap();
    drop(q);
    // Same tag, another type: the item does not decode as a u64.
    let q: Queue<u64> = Options::new().schema("t").open(dir.path()).unwrap();
    for _ in 0..2 {
        match q.peek() {
            Err(Error::Decode { seq, .. }) => assert_eq!(seq, 0),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(q.len(), 1);
}

// `Queue::browse` (issue #17): every waiting item in order, none taken.

fn browse_all<T: serde::Serialize + serde::de::DeserializeOwned>(q: &Queue<T>) -> Vec<T> {
    q.browse().collect::<Result<_, _>>().unwrap()
}

#[test]
fn browse_shows_every_waiting_item_in_order_across_chunks_and_reopen() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(level).chunk_size(3);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert!(browse_all(&q).is_empty());
        for i in 0..10 {
            q.put(&i).unwrap();
        }
        assert_eq!(browse_all(&q), (0..10).collect::<Vec<_>>(), "{level:?}");
        assert_eq!(q.len(), 10, "nothing taken");
        for _ in 0..4 {
            q.get().unwrap();
        }
        assert_eq!(browse_all(&q), (4..10).collect::<Vec<_>>(), "{level:?}");
        q.task_done_n(4).unwrap();
        drop(q);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert_eq!(
            browse_all(&q),
            (4..10).collect::<Vec<_>>(),
            "{level:?}: reopened"
        );
        assert_eq!(q.get().unwrap(), 4, "{level:?}: the next get is unchanged");
    }
}

#[test]
fn browse_skips_what_consumers_take_and_what_was_acknowledged_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new().chunk_size(2).open(dir.path()).unwrap();
    for i in 0..8 {
        q.put(&i).unwrap();
    }
    let mut b = q.browse();
    assert_eq!(b.next().unwrap().unwrap(), 0);
    assert_eq!(b.next().unwrap().unwrap(), 1);
    // A consumer takes 0..5 meanwhile: the browse goes on from what still waits.
    for _ in 0..5 {
        q.get().unwrap();
    }
    q.put(&8).unwrap(); // put after the browse began: not shown
    let rest: Vec<u32> = b.map(Result::unwrap).collect();
    assert_eq!(rest, [5, 6, 7]);
    q.task_done_n(5).unwrap();
    // Out of order: 6 acknowledged, 5 left, then a reopen.
    {
        let _five = q.get_delivery().unwrap();
        q.get_delivery().unwrap().ack().unwrap();
    }
    drop(q);
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    assert_eq!(browse_all(&q), [5, 7, 8]);
}

#[test]
fn browse_goes_on_after_an_item_that_does_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new().schema("t").open(dir.path()).unwrap();
    q.put(&vec![1; 8]).unwrap(); // decodes as a u64 (length 8, then 8 bytes: no)
    q.put(&Vec::new()).unwrap();
    drop(q);
    let q: Queue<u64> = Options::new().schema("t").open(dir.path()).unwrap();
    let got: Vec<Result<u64, diskq::Error>> = q.browse().collect();
    assert_eq!(got.len(), 2);
    assert!(
        matches!(got[0], Err(Error::Decode { seq: 0, .. })),
        "{:?}",
        got[0]
    );
    assert_eq!(
        *got[1].as_ref().unwrap(),
        0,
        "an empty Vec is a zero length: 0u64"
    );
}

#[test]
fn browse_at_the_buffered_level_shows_items_not_yet_written() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new()
        .durability(Durability::Buffered)
        .open(dir.path())
        .unwrap();
    for i in 0..5 {
        q.put(&i).unwrap();
    }
    assert_eq!(browse_all(&q), [0, 1, 2, 3, 4]);
    drop(q);
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    assert_eq!(browse_all(&q), [0, 1, 2, 3, 4], "written by then");
}

// `Queue::pause` / `resume` (issue #17): gets wait while paused; the pause persists.

#[test]
fn a_paused_queue_makes_gets_wait_and_stays_paused_across_reopen() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(level);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        q.put(&1).unwrap();
        assert!(!q.is_paused());
        q.pause().unwrap();
        q.pause().unwrap(); // twice is once
        assert!(q.is_paused());
        assert!(q.get_nowait().unwrap_err().is_empty(), "{level:?}");
        assert!(
            q.get_timeout(std::time::Duration::from_millis(20))
                .unwrap_err()
                .is_timeout()
        );
        assert!(
            q.get_many_timeout(10, std::time::Duration::from_millis(20))
                .unwrap_err()
                .is_timeout(),
            "{level:?}: get_many waits too"
        );
        // Puts, peek and browse go on.
        q.put(&2).unwrap();
        assert_eq!(q.peek().unwrap(), Some(1));
        assert_eq!(browse_all(&q), [1, 2]);
        assert_eq!(q.len(), 2);
        drop(q);
        assert!(dir.path().join("paused").exists());
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert!(q.is_paused(), "{level:?}: after reopen");
        assert!(q.get_nowait().unwrap_err().is_empty());
        // A blocked get goes on at resume.
        std::thread::scope(|s| {
            let getter = s.spawn(|| q.get());
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert!(!getter.is_finished(), "{level:?}: get waits while paused");
            q.resume().unwrap();
            assert_eq!(getter.join().unwrap().unwrap(), 1);
        });
        assert!(!q.is_paused());
        assert_eq!(q.get().unwrap(), 2);
        drop(q);
        assert!(!dir.path().join("paused").exists());
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert!(!q.is_paused());
    }
}
