//! Group commit at `Durability::Synced`: callers that put back to back share syncs.
//!
//! The storage is the in-memory `SimStorage` with every `fdatasync` made slow (a few
//! milliseconds, the lock free meanwhile), so that the number of syncs per item shows how
//! callers were batched, whatever the machine's speed.

use diskq::storage::{Op, SimStorage};
use diskq::{Durability, Options, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR: &str = "/q";

fn synced_queue(sync: Duration) -> (SimStorage, Queue<u64>) {
    let st = SimStorage::new();
    let q = Options::new()
        .durability(Durability::Synced)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap();
    st.slow_sync(sync);
    (st, q)
}

/// Eight threads, each putting as soon as its last put returned (a thread per request,
/// each waiting until its item is durable). Released by a sync, the callers come back one
/// by one; a leader that synced at once with whoever had queued would split them into
/// cohorts taking turns (about four items per sync). Gathered, nearly every sync carries
/// all eight.
#[test]
fn callers_putting_back_to_back_share_one_sync() {
    let (st, q) = synced_queue(Duration::from_millis(10));
    let (threads, per) = (8u64, 25u64);
    let before = st.count(Op::Sync);
    std::thread::scope(|s| {
        for t in 0..threads {
            let q = &q;
            s.spawn(move || {
                for i in 0..per {
                    q.put(&(t * 1000 + i)).unwrap();
                }
            });
        }
    });
    let syncs = st.count(Op::Sync) - before;
    let items = threads * per;
    assert!(
        syncs * 6 <= items,
        "{items} puts took {syncs} syncs: fewer than 6 items per sync"
    );
    // Nothing lost or reordered per producer.
    let mut next = vec![0u64; threads as usize];
    for _ in 0..items {
        let v = q.get_nowait().unwrap();
        let (t, i) = ((v / 1000) as usize, v % 1000);
        assert_eq!(i, next[t], "producer {t}'s items out of order");
        next[t] += 1;
    }
    assert!(q.get_nowait().is_err());
}

/// A caller of the last batch that never comes back is waited for once, for at most half
/// a sync, and then nobody is: a lone caller afterwards pays one sync per put.
#[test]
fn a_caller_that_does_not_come_back_is_waited_for_once() {
    let sync = Duration::from_millis(40);
    let (_st, q) = synced_queue(sync);
    // Two callers in one batch: the second queues while the first's sync is under way,
    // and leads the next batch alone. Its sync then released both... and only one of
    // them puts again.
    std::thread::scope(|s| {
        s.spawn(|| q.put(&0).unwrap());
        std::thread::sleep(sync / 4);
        s.spawn(|| q.put(&1).unwrap());
        std::thread::sleep(sync / 4);
        s.spawn(|| q.put(&2).unwrap());
    });
    let n = 10;
    let t = Instant::now();
    for i in 0..n {
        q.put(&(10 + i)).unwrap();
    }
    let took = t.elapsed();
    // One sync per put plus one wait of at most half a sync: 10.5 syncs. Waiting at every
    // put would take 15; the bound, 13, leaves 100 ms for a slow scheduler.
    let bound = sync * 13;
    assert!(
        took < bound,
        "{n} lone puts took {took:?}, more than {bound:?}: waited for absent callers"
    );
    assert_eq!(q.len(), 13);
}
