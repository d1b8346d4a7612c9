//! Regression: under group commit a `put` could return before its item was written.
//!
//! A put numbered its item `written + pending`, but while a leader had a batch out (the
//! write in the kernel, the queue unlocked) that batch counted in neither, so a follower
//! got the number of an item in the leader's batch. When that batch was published the
//! follower returned, although its own frame was still pending or being written: at
//! `Durability::Written` a crash at that moment lost an item whose `put` had returned,
//! and `Queue::len` / `max_size` undercounted meanwhile. Found by
//! `tests/channel/channel_crossbeam.rs::list::linearizable` failing about once in 40 runs on a
//! loaded machine (a `try_recv` right after the same thread's `send` found the channel
//! empty). Here a slowed-down write makes the window wide and the test deterministic.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/q";

#[test]
fn a_follower_returns_only_after_its_own_item_is_written() {
    let st = SimStorage::new();
    let opts = Options::new().durability(Durability::Written);
    let q: Queue<u32> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    // The next two writes (the leader's batch, then the follower's) each take 300 ms.
    st.delay_write(0, Duration::from_millis(300));
    st.delay_write(1, Duration::from_millis(300));

    std::thread::scope(|s| {
        let leader = s.spawn(|| q.put(&1).unwrap());
        // Let the leader take its batch out and start its slow write.
        std::thread::sleep(Duration::from_millis(100));
        q.put(&2).unwrap();
        // `put(&2)` returned: a crash of the process now must keep item 2.
        let image = st.after_crash(Crash::Process);
        assert!(q.len() >= 2, "len {} after both puts returned", q.len());
        leader.join().unwrap();
        let reopened: Queue<u32> = opts.open_on(Arc::new(image), DIR).unwrap();
        let mut items = Vec::new();
        while let Ok(item) = reopened.get_nowait() {
            items.push(item);
        }
        assert_eq!(
            items,
            [1, 2],
            "items after a crash right after put(&2) returned"
        );
    });
}

#[test]
fn len_counts_items_whose_write_is_in_flight() {
    let st = SimStorage::new();
    let opts = Options::new().durability(Durability::Written);
    let q: Queue<u32> = opts.open_on(Arc::new(st.clone()), DIR).unwrap();
    q.put(&0).unwrap();
    assert_eq!(q.get().unwrap(), 0);
    st.delay_write(0, Duration::from_millis(300));
    std::thread::scope(|s| {
        s.spawn(|| q.put(&1).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        // Item 1 is being written: accepted, not yet gettable, but not forgotten either.
        assert_eq!(
            q.unfinished(),
            2,
            "one gotten and unacknowledged, one in flight"
        );
    });
    assert_eq!(q.len(), 1);
}
