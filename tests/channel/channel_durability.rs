//! What the durable channel adds to a channel: items survive restarts; an item a receiver
//! returned is acknowledged when that receiver is asked for its next item or dropped (not
//! while its thread panics); explicit acknowledgement with `OwnedDelivery` on any thread;
//! the directory lock; storage failures in the error types; and a SIGKILL test through
//! the channel API in the style of `tests/crash/crash_sigkill.rs`.
//!
//! The SIGKILL test re-executes this binary as a child (`--exact sigkill_channel_child`;
//! environment variables give the directory, the first id, the number of consumers and a
//! pacing mode). The child opens `channel_with` (chunk size 7, so that rollovers,
//! checkpoints and chunk deletions happen all the time) and runs forever: a producer
//! thread sends increasing `u64` ids and prints `@P <id>` after each `send` returns; one
//! or two consumer threads, each with its own `Receiver` clone, run the loop of the issue,
//! `for id in rx { .. }`, and print `@G <consumer> <id>` for each item. The parent kills
//! the child (SIGKILL) after a random delay, or in one round of five while it starts up,
//! reopens the directory with `channel_with`, takes every item with `try_recv_delivery`
//! and checks:
//!
//! * live: each consumer got items in FIFO order, no item twice, only items sent, and
//!   together a prefix of the queue (up to one item per consumer taken without its line);
//! * no sent item lost: every id with a `P` line (and every item left from the last
//!   round) that no consumer printed is there;
//! * nothing acknowledged comes back: an item after which its consumer asked for another
//!   one (printed a later `G` line) is not there;
//! * at most the item in progress is delivered again per receiver (its last `G` line);
//! * the recovered items are in order, and nothing is invented (only ids sent, or the one
//!   whose `send` may have returned without its `P` line).
//!
//! Then the parent acknowledges a random part of the recovered deliveries, in random
//! order, and leaves the rest (at most 60) for the next child, whose consumers must get
//! them first. Rounds run on one directory, each with ids above all earlier ones.

use crate::common::{XorShift, kill};
use diskq::{
    Error, OwnedDelivery, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    Sender, TryRecvError, TrySendError,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Everything the channel holds, in order, taking (and implicitly acknowledging) it.
fn drain<T: Serialize + serde::de::DeserializeOwned>(rx: &Receiver<T>) -> Vec<T> {
    rx.try_iter().collect()
}

/// Runs `f` on a thread that then panics while owning `owned` (receivers), which are
/// dropped while panicking: the way to leave their items in progress unacknowledged
/// in-process (a receiver dropped otherwise acknowledges its item).
fn crash_with<R: Send>(owned: R, f: impl FnOnce(&R) + Send) {
    thread::scope(|s| {
        let res = s
            .spawn(move || {
                f(&owned);
                panic!("simulated crash");
            })
            .join();
        assert!(res.is_err());
    });
}

// ---------------------------------------------------------------------------------------
// Restarts and disconnection.

#[test]
fn items_survive_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<String>(d.path()).unwrap();
    for i in 0..5 {
        tx.send(format!("job {i}")).unwrap();
    }
    drop((tx, rx));
    let (tx, rx) = diskq::channel::<String>(d.path()).unwrap();
    assert_eq!(rx.len(), 5);
    assert_eq!(rx.recv().unwrap(), "job 0");
    // A sender exists again: the channel is connected, so an empty one says Empty.
    assert_eq!(drain(&rx).len(), 4);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn disconnected_items_wait_for_the_next_channel() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    drop(tx); // disconnected, as std defines it: the items can still be received
    assert_eq!(rx.recv(), Ok(0));
    drop(rx); // acknowledges 0; 1, 2, 3 stay on disk
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [1, 2, 3]);
}

#[test]
fn send_after_every_receiver_is_gone_stores_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    tx.send(1).unwrap();
    let rx2 = rx.clone();
    drop(rx);
    tx.send(2).unwrap(); // a receiver is left
    drop(rx2);
    assert_eq!(tx.send(3), Err(SendError::Disconnected(3)));
    assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
    assert_eq!(
        tx.send_timeout(5, Duration::from_secs(1)),
        Err(SendTimeoutError::Disconnected(5))
    );
    drop(tx);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [1, 2]);
}

#[test]
fn the_directory_is_locked_while_any_handle_lives() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    let err = diskq::channel::<u32>(d.path()).unwrap_err();
    assert!(err.is_locked(), "{err}");
    assert!(diskq::Queue::<u32>::open(d.path()).unwrap_err().is_locked());
    tx.send(1).unwrap();
    let delivery = rx.recv_delivery().unwrap();
    drop((tx, rx));
    // The delivery keeps the queue open.
    assert!(diskq::channel::<u32>(d.path()).unwrap_err().is_locked());
    assert_eq!(delivery.ack().unwrap(), 1);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert!(rx.is_empty());
}

#[test]
fn a_bounded_channel_reopens_over_its_bound() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    drop((tx, rx));
    let (tx, rx) = diskq::sync_channel::<u32>(d.path(), 2).unwrap();
    assert_eq!((tx.len(), tx.capacity()), (5, Some(2)));
    assert!(tx.is_full());
    assert_eq!(tx.try_send(5), Err(TrySendError::Full(5)));
    let t = Instant::now();
    assert_eq!(
        tx.send_timeout(5, Duration::from_millis(50)),
        Err(SendTimeoutError::Timeout(5))
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    for i in 0..4 {
        assert_eq!(rx.recv(), Ok(i));
    }
    tx.try_send(5).unwrap();
    assert_eq!(drain(&rx), [4, 5]);
}

#[test]
fn sync_channel_zero_is_one_place() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::sync_channel::<u32>(d.path(), 0).unwrap();
    assert_eq!(rx.capacity(), Some(1));
    tx.try_send(1).unwrap();
    assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    // A send blocked on a full channel goes through once a receiver makes room.
    thread::scope(|s| {
        s.spawn(|| tx.send(2).unwrap());
        thread::sleep(Duration::from_millis(50));
        assert_eq!(rx.recv(), Ok(1));
    });
    assert_eq!(rx.recv(), Ok(2));
}

#[test]
fn a_blocked_recv_wakes_when_the_last_sender_goes() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    let tx2 = tx.clone();
    thread::scope(|s| {
        let h = s.spawn(move || {
            assert_eq!(rx.recv(), Err(RecvError::Disconnected));
            Instant::now()
        });
        thread::sleep(Duration::from_millis(100));
        drop(tx); // not the last
        thread::sleep(Duration::from_millis(100));
        let last_gone = Instant::now();
        drop(tx2);
        let woke = h.join().unwrap();
        assert!(woke >= last_gone);
        // At once: no polling interval.
        assert!(
            woke - last_gone < Duration::from_secs(1),
            "{:?}",
            woke - last_gone
        );
    });
}

// ---------------------------------------------------------------------------------------
// Implicit acknowledgement.

#[test]
fn the_next_recv_acknowledges_the_previous_item() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    crash_with(rx, |rx| {
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.recv(), Ok(1)); // 0 is done
        assert_eq!(rx.recv(), Ok(2)); // 1 is done; 2 is in progress at the crash
    });
    drop(tx);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [2, 3, 4]);
}

#[test]
fn every_kind_of_receive_acknowledges_even_when_it_finds_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    tx.send(0).unwrap();
    crash_with(rx.clone(), |rx| {
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)); // acknowledges 0
    });
    tx.send(1).unwrap();
    crash_with(rx.clone(), |rx| {
        assert_eq!(rx.try_recv(), Ok(1));
        let r = rx.recv_timeout(Duration::from_millis(1)); // acknowledges 1
        assert_eq!(r, Err(RecvTimeoutError::Timeout));
    });
    tx.send(2).unwrap();
    tx.send(3).unwrap();
    crash_with(rx.clone(), |rx| {
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(2));
        let d = rx.recv_delivery().unwrap(); // acknowledges 2; 3 is explicit
        assert_eq!(d.into_inner(), 3); // and left unacknowledged
    });
    tx.send(4).unwrap();
    tx.send(5).unwrap();
    crash_with(rx.clone(), |rx| {
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(rx.recv_deadline(deadline), Ok(4));
        assert_eq!(rx.try_recv_delivery().unwrap().ack().unwrap(), 5); // acknowledges 4 and 5
    });
    tx.send(6).unwrap();
    crash_with(rx.clone(), |rx| {
        assert_eq!(rx.iter().next(), Some(6)); // in progress at the crash
    });
    drop((tx, rx));
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [3, 6]);
}

#[test]
fn for_loop_redelivers_only_the_job_in_progress() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..8 {
        tx.send(i).unwrap();
    }
    let mut done = Vec::new();
    let res = thread::scope(|s| {
        s.spawn(|| {
            for job in rx {
                if job == 3 {
                    panic!("the process dies while working on job 3");
                }
                done.push(job);
            }
        })
        .join()
    });
    assert!(res.is_err());
    assert_eq!(done, [0, 1, 2]);
    drop(tx);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [3, 4, 5, 6, 7]);
}

#[test]
fn dropping_the_receiver_acknowledges_its_item() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    // Leaving a for loop drops the receiver: the job it broke on is done.
    for job in rx {
        if job == 1 {
            break;
        }
    }
    drop(tx);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [2, 3]);
}

#[test]
fn each_receiver_clone_has_its_own_item_in_progress() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    let (a, b) = (rx.clone(), rx.clone());
    assert_eq!(a.recv(), Ok(0));
    assert_eq!(b.recv(), Ok(1));
    assert_eq!(a.recv(), Ok(2)); // acknowledges 0, not 1
    assert_eq!(rx.recv(), Ok(3));
    crash_with((a, b, rx), |_| {}); // 1, 2 and 3 are in progress
    drop(tx);
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(drain(&rx), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

/// Consumer threads that die at random points: what comes back is what was not done,
/// and of what was received, only each thread's last item.
#[test]
fn crashing_consumers_lose_nothing_and_repeat_at_most_their_last_item() {
    let d = tempfile::tempdir().unwrap();
    let mut rng = XorShift(0x5EED_C0DE);
    let mut expected: Vec<u32> = Vec::new();
    let mut next = 0;
    for round in 0..20 {
        let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
        for _ in 0..rng.below(30) {
            tx.send(next).unwrap();
            expected.push(next);
            next += 1;
        }
        drop(tx);
        let consumers = 1 + rng.below(3) as usize;
        let limits: Vec<u64> = (0..consumers).map(|_| rng.below(12)).collect();
        let got = Mutex::new(Vec::new());
        let last = Mutex::new(Vec::new());
        thread::scope(|s| {
            let handles: Vec<_> = limits
                .iter()
                .map(|&limit| {
                    let (rx, got, last) = (rx.clone(), &got, &last);
                    s.spawn(move || {
                        let mut n = 0;
                        for job in rx {
                            got.lock().unwrap().push(job);
                            n += 1;
                            if n > limit {
                                last.lock().unwrap().push(job);
                                panic!("crash in round {round}");
                            }
                        }
                        // Disconnected and drained: the loop ended, all of it is done.
                    })
                })
                .collect();
            for h in handles {
                let _ = h.join(); // crashed or not
            }
        });
        drop(rx);
        let done: HashSet<u32> = got.into_inner().unwrap().into_iter().collect();
        let in_progress: HashSet<u32> = last.into_inner().unwrap().into_iter().collect();
        expected.retain(|x| !done.contains(x) || in_progress.contains(x));
        let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
        let ds: Vec<OwnedDelivery<u32>> =
            std::iter::from_fn(|| rx.try_recv_delivery().ok()).collect();
        let now: Vec<u32> = ds.iter().map(|d| **d).collect();
        assert_eq!(now, expected, "round {round}");
        drop(ds); // unacknowledged: all of it carries over
    }
}

// ---------------------------------------------------------------------------------------
// Explicit acknowledgement.

#[test]
fn explicit_acknowledgement_on_other_threads_in_any_order() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    for i in 0..40 {
        tx.send(i).unwrap();
    }
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<OwnedDelivery<u32>>();
    thread::scope(|s| {
        for w in 0..4u64 {
            let work_rx = work_rx.clone();
            s.spawn(move || {
                let mut rng = XorShift(0x5EED + w);
                let mut held = Vec::new();
                for d in work_rx {
                    held.push(d);
                    if rng.below(3) == 0 {
                        // Acknowledge held ones in random order, the odd ones only.
                        while !held.is_empty() {
                            let d = held.swap_remove(rng.below(held.len() as u64) as usize);
                            if *d % 2 == 1 {
                                d.ack().unwrap();
                            } else {
                                // Left in flight (dropping would give it back).
                                d.into_inner();
                            }
                        }
                    }
                }
                for d in held {
                    if *d % 2 == 1 {
                        d.ack().unwrap();
                    } else {
                        d.into_inner();
                    }
                }
            });
        }
        drop(work_rx);
        for _ in 0..40 {
            work_tx.send(rx.recv_delivery().unwrap()).unwrap();
        }
        drop(work_tx);
    });
    assert!(rx.is_empty());
    drop((tx, rx));
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert_eq!(
        drain(&rx),
        (0..40).filter(|x| x % 2 == 0).collect::<Vec<_>>()
    );
}

#[test]
fn owned_delivery_accessors() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<String>(d.path()).unwrap();
    tx.send("a".into()).unwrap();
    tx.send("b".into()).unwrap();
    let a = rx.try_recv_delivery().unwrap();
    let b = rx.recv_delivery_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!((a.item().as_str(), a.seq()), ("a", 0));
    assert_eq!((b.len(), b.seq()), (1, 1)); // Deref to String
    assert!(format!("{a:?}").contains("\"a\""));
    assert_eq!(b.ack().unwrap(), "b");
    a.into_inner(); // left in flight
    assert!(rx.try_recv_delivery().unwrap_err().is_empty());
}

// ---------------------------------------------------------------------------------------
// Storage failures, messages, traits.

/// Serializes as a `u32`, except 13, which refuses.
#[derive(Debug, PartialEq, Deserialize)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            Err(serde::ser::Error::custom("13 is unlucky"))
        } else {
            s.serialize_u32(self.0)
        }
    }
}

#[test]
fn a_send_that_cannot_be_stored_gives_the_item_back() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::sync_channel::<Picky>(d.path(), 5).unwrap();
    tx.send(Picky(1)).unwrap();
    let err = tx.send(Picky(13)).unwrap_err();
    assert!(err.is_storage() && !err.is_disconnected());
    assert!(
        matches!(err.storage_error(), Some(Error::Encode(_))),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("sending on a durable channel failed: could not serialize")
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(err.into_inner(), Picky(13));
    let err = tx.try_send(Picky(13)).unwrap_err();
    assert!(err.is_storage() && !err.is_full());
    assert!(matches!(
        err,
        TrySendError::Storage(Picky(13), Error::Encode(_))
    ));
    let err = tx.send_timeout(Picky(13), Duration::ZERO).unwrap_err();
    assert!(matches!(
        err,
        SendTimeoutError::Storage(Picky(13), Error::Encode(_))
    ));
    // A storage error equals nothing (diskq::Error has no equality).
    let e1 = tx.try_send(Picky(13)).unwrap_err();
    let e2 = tx.try_send(Picky(13)).unwrap_err();
    assert_ne!(e1, e2);
    assert_eq!(drain(&rx), [Picky(1)]);
}

#[test]
fn an_item_that_cannot_be_read_is_a_storage_error_not_a_disconnection() {
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    tx.send(7).unwrap();
    drop((tx, rx));
    // Another item type is refused at open.
    let err = diskq::channel::<bool>(d.path()).unwrap_err();
    assert!(err.is_type_mismatch(), "{err:?}");
    // A damaged record: a flipped payload byte (after the 28-byte chunk header and the
    // 8-byte frame header).
    let chunk = d.path().join("q00000");
    let mut b = std::fs::read(&chunk).unwrap();
    b[28 + 8] ^= 0x40;
    std::fs::write(&chunk, &b).unwrap();
    let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    let err = rx.recv().unwrap_err();
    assert!(err.is_storage() && !err.is_disconnected(), "{err:?}");
    assert!(matches!(err.storage_error(), Some(Error::Corrupt { .. })));
    assert!(
        err.to_string()
            .starts_with("receiving on a durable channel failed: "),
        "{err}"
    );
    assert!(matches!(
        rx.try_recv(),
        Err(TryRecvError::Storage(Error::Corrupt { .. }))
    ));
    assert!(matches!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Storage(Error::Corrupt { .. }))
    ));
    drop(tx);
    // Not consumed, so not Disconnected either.
    assert!(rx.try_recv().unwrap_err().is_storage());
    // An iterator cannot report it, and must not end as if the items were done.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.iter().count()));
    let msg = res.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.starts_with("diskq channel: "), "{msg}");
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.try_iter().count()));
    assert!(res.is_err());
}

#[test]
fn an_item_that_does_not_decode_goes_to_the_dead_letters_and_the_channel_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let opts = diskq::Options::new().schema("u32");
    let (tx, rx) = diskq::channel_with::<u32>(&opts, d.path()).unwrap();
    tx.send(7).unwrap();
    drop((tx, rx));
    // Forced under the stored type's tag, the wrong item type: 7 as four bytes is no bool.
    let (tx, rx) = diskq::channel_with::<bool>(&opts, d.path()).unwrap();
    tx.send(true).unwrap();
    assert!(rx.recv().unwrap());
    drop((tx, rx));
    let q: diskq::Queue<u32> = opts.open(d.path()).unwrap();
    let dl = q.dead_letters();
    let dead: Vec<_> = dl.iter().map(|r| r.unwrap()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].item(), Some(&7));
    assert!(
        dead[0].reason().contains("do not decode"),
        "{}",
        dead[0].reason()
    );
}

#[test]
fn messages_are_std_and_crossbeams_and_lowercase() {
    struct NotDebug;
    let e = SendError::Disconnected(NotDebug);
    assert_eq!(format!("{e:?}"), "Disconnected(..)");
    assert_eq!(e.to_string(), "sending on a disconnected channel");
    let cases: Vec<(String, &str)> = vec![
        (
            TrySendError::Full(NotDebug).to_string(),
            "sending on a full channel",
        ),
        (
            TrySendError::Disconnected(NotDebug).to_string(),
            "sending on a disconnected channel",
        ),
        (
            SendTimeoutError::Timeout(NotDebug).to_string(),
            "timed out waiting on send operation",
        ),
        (
            RecvError::Disconnected.to_string(),
            "receiving on an empty and disconnected channel",
        ),
        (
            TryRecvError::Empty.to_string(),
            "receiving on an empty channel",
        ),
        (
            TryRecvError::Disconnected.to_string(),
            "receiving on an empty and disconnected channel",
        ),
        (
            RecvTimeoutError::Timeout.to_string(),
            "timed out waiting on receive operation",
        ),
        (
            RecvTimeoutError::Disconnected.to_string(),
            "channel is empty and disconnected",
        ),
        (
            RecvError::Storage(Error::Poisoned).to_string(),
            "receiving on a durable channel failed: an earlier write",
        ),
    ];
    for (msg, want) in cases {
        assert!(msg.starts_with(want), "{msg:?} is not {want:?}");
        assert!(msg.starts_with(|c: char| c.is_lowercase()));
    }
    assert_eq!(format!("{:?}", TrySendError::Full(NotDebug)), "Full(..)");
    assert!(format!("{:?}", SendError::Storage(NotDebug, Error::Poisoned)).contains("Poisoned"));
    // Predicates and conversions.
    assert!(TryRecvError::Empty.is_empty() && TryRecvError::Disconnected.is_disconnected());
    assert!(RecvTimeoutError::Timeout.is_timeout());
    assert!(SendTimeoutError::Timeout(1).is_timeout());
    assert!(TrySendError::Full(1).is_full());
    assert_eq!(
        TryRecvError::from(RecvError::Disconnected),
        TryRecvError::Disconnected
    );
    assert_eq!(
        RecvTimeoutError::from(RecvError::Disconnected),
        RecvTimeoutError::Disconnected
    );
    assert_eq!(
        TrySendError::from(SendError::Disconnected(1)),
        TrySendError::Disconnected(1)
    );
    assert!(
        RecvError::Storage(Error::Poisoned)
            .into_storage_error()
            .is_some()
    );
}

#[test]
fn the_handles_have_the_traits_of_std_and_crossbeam() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send_clone<T: Send + Clone>() {}
    fn send<T: Send>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync_clone::<Sender<String>>();
    send_sync_clone::<diskq::SyncSender<String>>();
    send_clone::<Receiver<String>>();
    send::<OwnedDelivery<String>>();
    error::<SendError<String>>();
    error::<TrySendError<String>>();
    error::<SendTimeoutError<String>>();
    error::<RecvError>();
    error::<TryRecvError>();
    error::<RecvTimeoutError>();
    // `?` into a boxed error, as from std's errors.
    fn f(tx: &Sender<u32>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        tx.send(1)?;
        Ok(())
    }
    let d = tempfile::tempdir().unwrap();
    let (tx, _rx) = diskq::channel::<u32>(d.path()).unwrap();
    f(&tx).unwrap();
    assert!(format!("{tx:?}").starts_with("Sender"));
}

// ---------------------------------------------------------------------------------------
// SIGKILL.

const CHUNK: usize = 7;
const ENV_DIR: &str = "DISKQ_CHANNEL_SIGKILL_DIR";
const ENV_START: &str = "DISKQ_CHANNEL_SIGKILL_START";
const ENV_CONSUMERS: &str = "DISKQ_CHANNEL_SIGKILL_CONSUMERS";
const ENV_PACE: &str = "DISKQ_CHANNEL_SIGKILL_PACE";
const CHILD_TEST: &str = "sigkill_channel_child";

fn options() -> diskq::Options {
    diskq::Options::new().chunk_size(CHUNK)
}

/// One line on stdout: a single locked write, flushed.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("@{line}\n").as_bytes());
    let _ = out.flush();
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    emit(&format!("E {what}: {e}"));
    std::process::exit(2)
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The child role; does nothing in a normal test run.
#[test]
fn sigkill_channel_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let start = env_u64(ENV_START);
    let consumers = env_u64(ENV_CONSUMERS);
    let pace = env_u64(ENV_PACE);
    let (tx, rx) = match diskq::channel_with::<u64>(&options(), &dir) {
        Ok(c) => c,
        Err(e) => fail("open", &e),
    };
    {
        // After libtest's "test sigkill_channel_child ... ", which has no newline.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\n@READY\n");
        let _ = out.flush();
    }
    thread::scope(|s| {
        for c in 0..consumers {
            let rx = rx.clone();
            s.spawn(move || {
                let mut n = 0u64;
                // The loop of the issue: each job is acknowledged when the next is asked
                // for. (A storage error panics here, and the child then ends by itself,
                // which the parent reports.)
                for id in rx {
                    emit(&format!("G {c} {id}"));
                    n += 1;
                    match pace {
                        1 => thread::sleep(Duration::from_micros(300)),
                        3 if n.is_multiple_of(300) => thread::sleep(Duration::from_millis(20)),
                        _ => {}
                    }
                }
                fail("recv", &"disconnected, though the producer never stops");
            });
        }
        drop(rx);
        s.spawn(move || {
            let mut id = start;
            loop {
                if let Err(e) = tx.send(id) {
                    fail("send", &e);
                }
                emit(&format!("P {id}"));
                id += 1;
                if pace == 2 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });
    });
}

#[derive(Default, Debug)]
struct Stats {
    rounds: usize,
    killed_before_ready: usize,
    ready_after: Option<Duration>,
    sent: usize,
    received: usize,
    /// Items received in the child and there again after the kill (in progress).
    delivered_again: usize,
    carried: usize,
    max_recovered: usize,
}

/// What a child printed.
#[derive(Default)]
struct Lines {
    ready: bool,
    p: Vec<u64>,
    /// Per consumer.
    g: Vec<Vec<u64>>,
}

/// Runs one child from `start` and kills it; returns its lines.
fn run_child(
    dir: &Path,
    start: u64,
    consumers: usize,
    rng: &mut XorShift,
    stats: &mut Stats,
) -> Lines {
    let pace = rng.below(4);
    let env = [
        (ENV_DIR, dir.display().to_string()),
        (ENV_START, start.to_string()),
        (ENV_CONSUMERS, consumers.to_string()),
        (ENV_PACE, pace.to_string()),
    ];
    let killed = kill::run_and_kill(
        &crate::common::test_path(module_path!(), CHILD_TEST),
        &env,
        rng,
        &mut stats.ready_after,
        10..=150,
    );
    let mut lines = Lines {
        ready: killed.ready,
        g: vec![Vec::new(); consumers],
        ..Lines::default()
    };
    for (tag, rest) in killed.lines {
        match tag.as_str() {
            "P" => lines.p.push(rest.parse().unwrap()),
            "G" => {
                let (c, id) = rest.split_once(' ').unwrap();
                lines.g[c.parse::<usize>().unwrap()].push(id.parse().unwrap());
            }
            _ => panic!("the child (start {start}) printed {tag} {rest}"),
        }
    }
    if !lines.ready {
        stats.killed_before_ready += 1;
    }
    lines
}

/// `assert!` for functions returning `Result<_, String>`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Checks the recovered items `rec` against the child's lines. `carried` is what the
/// channel held when the child started; `start` its first id. Returns how many items
/// the child had received came back (the items in progress), or what is wrong.
fn check_round(
    case: &str,
    carried: &[u64],
    start: u64,
    lines: &Lines,
    rec: &[u64],
) -> Result<usize, String> {
    let Lines { p, g, .. } = lines;
    // The producer is sequential: P ids are start, start+1, ...
    for (k, id) in p.iter().enumerate() {
        ensure!(*id == start + k as u64, "{case}: P lines out of sequence");
    }
    // The one id whose send may have returned (or been written) without its P line.
    let maybe = start + p.len() as u64;
    let mut full: Vec<u64> = carried.to_vec();
    full.extend(start..=maybe);
    let sure = carried.len() + p.len(); // full[..sure] were certainly sent
    let pos: HashMap<u64, usize> = full.iter().enumerate().map(|(i, id)| (*id, i)).collect();

    // Live: each consumer in FIFO order, each item once, only items sent, and together a
    // prefix of the queue but for the one item per consumer taken without its G line.
    let mut gotten = HashSet::new();
    for (c, gc) in g.iter().enumerate() {
        for id in gc {
            ensure!(
                pos.contains_key(id),
                "{case}: consumer {c} got {id}, which no one sent"
            );
            ensure!(
                gotten.insert(*id),
                "{case}: {id} was delivered twice in the child"
            );
        }
        for w in gc.windows(2) {
            ensure!(
                pos[&w[0]] < pos[&w[1]],
                "{case}: consumer {c} got {} before {}",
                w[0],
                w[1]
            );
        }
    }
    if let Some(last) = gotten.iter().map(|id| pos[id]).max() {
        ensure!(
            last < gotten.len() + g.len(),
            "{case}: the child got {} items, the last {} deep in the queue: not FIFO",
            gotten.len(),
            last
        );
    }

    // After the crash.
    for id in rec {
        ensure!(
            pos.contains_key(id),
            "{case}: recovered {id}, which no one sent (carried {}, ids {start}..={maybe})",
            carried.len()
        );
    }
    for w in rec.windows(2) {
        ensure!(
            pos[&w[0]] < pos[&w[1]],
            "{case}: recovered items out of order (or twice): {} then {}",
            w[0],
            w[1]
        );
    }
    let recovered: HashSet<u64> = rec.iter().copied().collect();
    for (c, gc) in g.iter().enumerate() {
        // Every item but a consumer's last was acknowledged: it asked for the next one.
        for id in gc.iter().rev().skip(1) {
            ensure!(
                !recovered.contains(id),
                "{case}: {id} came back, but consumer {c} had asked for its next item \
                 after it, which acknowledged it"
            );
        }
    }
    for id in &full[..sure] {
        ensure!(
            gotten.contains(id) || recovered.contains(id),
            "{case}: {id} was sent and never received, and it is gone: a sent item was lost"
        );
    }
    let again = rec.iter().filter(|id| gotten.contains(id)).count();
    ensure!(
        again <= g.len(),
        "{case}: {again} received items came back, more than one per receiver ({})",
        g.len()
    );
    Ok(again)
}

/// The variants run one at a time: see `serial` in `tests/crash/crash_sigkill.rs`.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_rounds(rounds: usize, consumers: usize, seed: u64) -> Stats {
    let _serial = serial();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = XorShift(seed);
    let mut stats = Stats::default();
    let mut carried: Vec<u64> = Vec::new();
    let mut start = 1_000;
    for round in 0..rounds {
        let case = format!("round {round} (start {start}, {consumers} consumer(s))");
        let lines = run_child(dir, start, consumers, &mut rng, &mut stats);

        let (tx, rx) = diskq::channel_with::<u64>(&options(), dir)
            .unwrap_or_else(|e| panic!("{case}: open after SIGKILL failed: {e}"));
        let mut ds = Vec::new();
        loop {
            match rx.try_recv_delivery() {
                Ok(d) => ds.push(d),
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("{case}: receive after the kill failed: {e}"),
            }
        }
        let rec: Vec<u64> = ds.iter().map(|d| **d).collect();
        let again =
            check_round(&case, &carried, start, &lines, &rec).unwrap_or_else(|e| panic!("{e}"));

        stats.rounds += 1;
        stats.sent += lines.p.len();
        stats.received += lines.g.iter().map(Vec::len).sum::<usize>();
        stats.delivered_again += again;
        stats.max_recovered = stats.max_recovered.max(rec.len());

        // Acknowledge all but a random few, in random order; the rest carries over.
        let keep = rng.below(rec.len().min(60) as u64 + 1) as usize;
        let mut kept = Vec::new();
        while ds.len() > keep {
            let d = ds.swap_remove(rng.below(ds.len() as u64) as usize);
            d.ack().unwrap();
        }
        kept.extend(ds.iter().map(|d| **d));
        kept.sort_unstable();
        drop(ds);
        drop((tx, rx));
        carried = kept;
        stats.carried += carried.len();
        start += lines.p.len() as u64 + 2;
    }

    // The last state, once more, then empty it.
    let (tx, rx) = diskq::channel_with::<u64>(&options(), dir).unwrap();
    assert_eq!(drain(&rx), carried);
    drop((tx, rx)); // acknowledges the last
    let (_tx, rx) = diskq::channel_with::<u64>(&options(), dir).unwrap();
    assert!(rx.is_empty());

    eprintln!(
        "channel, {consumers} consumer(s): {stats:?} in {:?}",
        t0.elapsed()
    );
    assert!(
        stats.sent >= rounds * 3,
        "the children did too little to test anything: {stats:?}"
    );
    assert!(stats.received > 0, "{stats:?}");
    stats
}

#[test]
fn sigkill_channel_one_consumer() {
    run_rounds(15, 1, 0x5EED_C401);
}

#[test]
fn sigkill_channel_two_consumers() {
    run_rounds(15, 2, 0x5EED_C402);
}

/// The checker itself: it accepts what a crash may leave and rejects every kind of wrong
/// recovery, so that the rounds above cannot pass vacuously.
#[test]
fn checker_rejects_wrong_recoveries() {
    // Carried 5, 6; ids 10, 11, 12 sent with P lines (13 maybe). Consumer 0 got 5 then
    // 10; consumer 1 got 6 then 11. So 5 and 6 are acknowledged, 10 and 11 in progress,
    // 12 never received.
    let lines = Lines {
        ready: true,
        p: vec![10, 11, 12],
        g: vec![vec![5, 10], vec![6, 11]],
    };
    let check = |rec: &[u64]| check_round("synthetic", &[5, 6], 10, &lines, rec);
    for ok in [
        &[10, 11, 12][..],
        &[11, 12],
        &[10, 12],
        &[12],
        &[12, 13],
        &[10, 11, 12, 13],
    ] {
        assert!(
            check(ok).is_ok(),
            "{ok:?} should be accepted: {:?}",
            check(ok)
        );
    }
    assert_eq!(check(&[10, 11, 12]), Ok(2));
    for bad in [
        &[][..],           // 12 lost
        &[11],             // 12 lost
        &[10, 11, 13],     // 12 lost
        &[5, 10, 11, 12],  // 5 was acknowledged
        &[6, 12],          // 6 was acknowledged
        &[12, 11],         // out of order
        &[10, 10, 11, 12], // twice
        &[10, 11, 12, 14], // 14 never sent
        &[99],             // invented
    ] {
        assert!(check(bad).is_err(), "{bad:?} should be rejected");
    }
    // Wrong lines in the child itself.
    let wrong = |g: Vec<Vec<u64>>| {
        let lines = Lines {
            ready: true,
            p: vec![10, 11, 12],
            g,
        };
        check_round("synthetic", &[5, 6], 10, &lines, &[12]).is_err()
    };
    assert!(wrong(vec![vec![10, 5], vec![6, 11]])); // out of order
    assert!(wrong(vec![vec![5, 10], vec![10, 11]])); // twice
    assert!(wrong(vec![vec![5, 13], vec![]])); // 6, 10, 11, 12 skipped
    assert!(!wrong(vec![vec![5, 10], vec![6, 11]]));
}
