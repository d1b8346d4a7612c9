//! Many consumer threads settling deliveries at random (ack, nack, nack_after, a lease
//! that runs out, dead_letter) while a producer puts: every item ends acknowledged exactly
//! once or in the dead letters, never both, never twice, never lost (issue #17).

use diskq::{Durability, Options, Queue};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::XorShift;

const N: u64 = 3000;

fn run(level: Durability) {
    let tmp = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new()
        .durability(level)
        .lease(Duration::from_millis(30))
        .max_deliveries(4)
        .chunk_size(50)
        .open(tmp.path())
        .unwrap();
    let acked: Mutex<HashMap<u64, u32>> = Mutex::new(HashMap::new());
    let producing = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                q.put(&i).unwrap();
            }
            producing.store(false, Ordering::SeqCst);
        });
        for t in 0..4u64 {
            let (q, acked, producing) = (&q, &acked, &producing);
            s.spawn(move || {
                let mut rng = XorShift(0x5eed + t);
                loop {
                    let d = match q.get_delivery_timeout(Duration::from_millis(100)) {
                        Ok(d) => d,
                        Err(e) if e.is_timeout() => {
                            if !producing.load(Ordering::SeqCst) && q.unfinished() == 0 {
                                return;
                            }
                            continue;
                        }
                        Err(e) => panic!("get: {e}"),
                    };
                    let item = *d;
                    // A thread descheduled for longer than the 30 ms lease (a loaded
                    // machine) finds it run out: that must say so and change nothing.
                    let late = |e: diskq::Error| assert!(e.is_lease_expired(), "{e}");
                    match rng.below(100) {
                        0..=59 => match d.ack() {
                            Ok(_) => *acked.lock().unwrap().entry(item).or_default() += 1,
                            Err(e) => late(e),
                        },
                        60..=74 => d.nack().unwrap_or_else(late),
                        75..=84 => d
                            .nack_after(Duration::from_millis(rng.below(5)))
                            .unwrap_or_else(late),
                        85..=89 => drop(d),
                        90..=94 => {
                            // Too slow: the lease runs out; a late ack changes nothing.
                            std::thread::sleep(Duration::from_millis(40));
                            match d.ack() {
                                Ok(_) => *acked.lock().unwrap().entry(item).or_default() += 1,
                                Err(e) => assert!(e.is_lease_expired(), "{e}"),
                            }
                        }
                        _ => match d.dead_letter("random") {
                            Ok(()) => {}
                            Err(e) => assert!(e.is_lease_expired(), "{e}"),
                        },
                    }
                }
            });
        }
    });
    q.join();
    let acked = acked.into_inner().unwrap();
    let dl = q.dead_letters();
    let mut dead: HashMap<u64, u32> = HashMap::new();
    for d in dl.iter() {
        *dead.entry(*d.unwrap().item().unwrap()).or_default() += 1;
    }
    for i in 0..N {
        let (a, d) = (
            acked.get(&i).copied().unwrap_or(0),
            dead.get(&i).copied().unwrap_or(0),
        );
        assert!(
            a + d == 1,
            "{level:?}: item {i} acknowledged {a} times, dead-lettered {d} times"
        );
    }
    drop(q);
    let q: Queue<u64> = Options::new().durability(level).open(tmp.path()).unwrap();
    assert_eq!(
        q.unfinished(),
        0,
        "{level:?}: nothing comes back after a reopen"
    );
}

#[test]
fn random_settlements_by_many_consumers_at_written() {
    run(Durability::Written);
}

#[test]
fn random_settlements_by_many_consumers_at_buffered() {
    run(Durability::Buffered);
}

#[test]
fn random_settlements_by_many_consumers_at_synced() {
    run(Durability::Synced);
}
