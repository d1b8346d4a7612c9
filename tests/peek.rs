//! `Queue::peek` (issue #17): the item the next get would return, not taken.

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
