//! Puts at the buffered level on an unbounded queue go to an intake with a lock of its own
//! (src/intake.rs) and reach the queue's pending buffer later. Whatever path an item takes,
//! order per producer holds, counts include it, a sleeping consumer wakes for it, `flush`,
//! `close` and drop write it, and a poisoned queue refuses it.

use diskq::storage::{Fault, Op, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

use crate::common;

fn buffered(dir: &std::path::Path) -> Queue<u64> {
    Options::new()
        .durability(Durability::Buffered)
        .open(dir)
        .unwrap()
}

#[test]
fn single_and_batch_puts_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = buffered(dir.path());
    for i in 0..10 {
        q.put(&i).unwrap();
    }
    q.put_many(&(10..20).collect::<Vec<_>>()).unwrap();
    for i in 20..30 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.get_many(100).unwrap(), (0..30).collect::<Vec<_>>());
}

#[test]
fn producers_keep_their_order_while_a_consumer_takes() {
    const PER: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let q = buffered(dir.path());
    std::thread::scope(|s| {
        for p in 0..2u64 {
            let q = &q;
            s.spawn(move || {
                let mut i = 0;
                while i < PER {
                    if i % 1000 == 500 {
                        let batch: Vec<u64> = (i..i + 100).map(|i| p << 32 | i).collect();
                        q.put_many(&batch).unwrap();
                        i += 100;
                    } else {
                        q.put(&(p << 32 | i)).unwrap();
                        i += 1;
                    }
                }
            });
        }
        let mut next = [0u64; 2];
        for _ in 0..2 * PER {
            let v = q.get_timeout(Duration::from_secs(10)).unwrap();
            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert_eq!(i, next[p], "producer {p}");
            next[p] += 1;
            q.task_done().unwrap();
        }
        assert_eq!(next, [PER, PER]);
    });
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn counts_include_puts_not_yet_in_the_queue_proper() {
    let dir = tempfile::tempdir().unwrap();
    let q = buffered(dir.path());
    assert!(q.is_empty());
    for i in 0..3 {
        q.put(&i).unwrap();
    }
    assert_eq!((q.len(), q.unfinished(), q.is_empty()), (3, 3, false));
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!((q.len(), q.unfinished()), (2, 3));
    q.put(&3).unwrap();
    assert_eq!((q.len(), q.unfinished()), (3, 4));
    assert!(format!("{q:?}").contains("len: 3"), "{q:?}");
}

#[test]
fn a_sleeping_consumer_wakes_for_every_put() {
    const N: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(buffered(dir.path()));
    let (done_tx, done) = std::sync::mpsc::channel();
    let consumer = Arc::clone(&q);
    // `get` waits for ever: a lost wake-up leaves this thread asleep, which the check
    // below reports (a deadline would hide it, as `get` looks again once it passes).
    std::thread::spawn(move || {
        let got: Vec<u64> = (0..N).map(|_| consumer.get().unwrap()).collect();
        done_tx.send(got).unwrap();
    });
    for i in 0..N {
        // Long enough for the consumer to stop spinning and sleep (about 40 µs).
        std::thread::sleep(Duration::from_micros(if i % 3 == 0 { 500 } else { 60 }));
        q.put(&i).unwrap();
    }
    let got = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the consumer slept through a put");
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

#[test]
fn join_waits_for_puts_still_in_the_intake() {
    let dir = tempfile::tempdir().unwrap();
    let q = buffered(dir.path());
    for i in 0..3 {
        q.put(&i).unwrap();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..3 {
                q.get().unwrap();
                q.task_done().unwrap();
            }
        });
        q.join();
        assert_eq!(q.unfinished(), 0);
    });
}

#[test]
fn flush_close_and_drop_write_what_the_intake_holds() {
    let dir = tempfile::tempdir().unwrap();
    let q = buffered(dir.path());
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    q.flush().unwrap();
    let crashed = common::crash_copy(dir.path());
    assert_eq!(buffered(crashed.path()).get_many(10).unwrap(), [1, 2]);

    q.put(&3).unwrap();
    q.close().unwrap();
    let q = buffered(dir.path());
    assert_eq!(q.len(), 3);
    q.put(&4).unwrap();
    drop(q);
    assert_eq!(buffered(dir.path()).get_many(10).unwrap(), [1, 2, 3, 4]);
}

#[test]
fn a_failed_write_poisons_puts_too() {
    let st = SimStorage::new();
    let open = || -> Queue<u64> {
        Options::new()
            .durability(Durability::Buffered)
            .open_on(Arc::new(st.clone()), "/sim/q")
            .unwrap()
    };
    let q = open();
    q.put(&1).unwrap();
    q.flush().unwrap();
    q.put(&2).unwrap();
    st.inject(Op::Write, 0, Fault::Errno(5));
    assert!(matches!(q.flush().unwrap_err(), Error::Io { .. }));
    let e = q.put(&3).unwrap_err();
    assert!(matches!(e, Error::Poisoned), "{e}");
    drop(q);
    assert_eq!(open().get_many(10).unwrap(), [1]);
}
