//! Many producers and consumers at once, at every durability level: every item is
//! delivered exactly once, each producer's items in the order it put them, every
//! acknowledgement sticks across a reopen, and `join` returns once all are done. This
//! exercises the group-commit path, where one thread writes other threads' frames and
//! journal entries.

use diskq::{Durability, Error, Options, Queue};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 3;
const PER_PRODUCER: u64 = 2_000;

fn run(durability: Durability, max_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let per = if durability == Durability::Synced {
        100
    } else {
        PER_PRODUCER
    };
    let q: Queue<(u64, u64)> = Options::new()
        .chunk_size(50)
        .max_size(max_size)
        .durability(durability)
        .open(dir.path())
        .unwrap();
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let q = &q;
            s.spawn(move || {
                for i in 0..per {
                    q.put(&(p, i)).unwrap();
                }
            });
        }
        for _ in 0..CONSUMERS {
            let (q, seen) = (&q, &seen);
            s.spawn(move || {
                let mut mine = Vec::new();
                loop {
                    match q.get_timeout(Duration::from_millis(300)) {
                        Ok(item) => {
                            mine.push(item);
                            q.task_done().unwrap();
                        }
                        Err(Error::Timeout) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                seen.lock().unwrap().push(mine);
            });
        }
        q.join();
    });
    let seen = seen.into_inner().unwrap();
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut total = 0;
    for mine in &seen {
        // Items a single consumer got come in the order each producer put them.
        let mut per_producer: HashMap<u64, u64> = HashMap::new();
        for &(p, i) in mine {
            if let Some(&prev) = per_producer.get(&p) {
                assert!(
                    i > prev,
                    "{durability:?}: producer {p} item {i} after {prev}"
                );
            }
            per_producer.insert(p, i);
            *last.entry(p).or_default() += 1;
            total += 1;
        }
    }
    assert_eq!(total, PRODUCERS * per, "{durability:?}: exactly once");
    for p in 0..PRODUCERS {
        assert_eq!(last[&p], per, "{durability:?}: producer {p}");
    }
    assert_eq!(q.unfinished(), 0);
    drop(q);
    let q: Queue<(u64, u64)> = Options::new()
        .durability(durability)
        .open(dir.path())
        .unwrap();
    assert!(q.is_empty(), "{durability:?}: acknowledged items came back");
}

#[test]
fn producers_and_consumers_written() {
    run(Durability::Written, 0);
}

#[test]
fn producers_and_consumers_buffered() {
    run(Durability::Buffered, 0);
}

#[test]
fn producers_and_consumers_synced() {
    run(Durability::Synced, 0);
}

#[test]
fn producers_and_consumers_bounded() {
    run(Durability::Written, 7);
    run(Durability::Buffered, 3);
}
