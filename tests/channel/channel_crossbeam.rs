//! The tests of crossbeam-channel's list (unbounded) and array (bounded) flavors, ported
//! to diskq's durable channels, and tests of `Receiver::ready` with `select!`.
//!
//! Source: crossbeam-rs/crossbeam, crossbeam-channel 0.5.17, `tests/list.rs` (module
//! `list`) and `tests/array.rs` (module `array`). Copyright The Crossbeam Project
//! Developers; Apache License 2.0 or MIT license, at your option. (`tests/iter.rs` holds
//! the iterator tests of std, which `tests/channel/channel_mpsc.rs` ports.)
//!
//! Changes:
//!
//! * `unbounded()` and `bounded(n)` open a diskq channel (`channel`, `sync_channel`) in a
//!   fresh temporary directory, returned first so that it is deleted after the channel:
//!   `let (_d, s, r) = unbounded();`. `crossbeam_utils::thread::scope` is
//!   `std::thread::scope`.
//! * A diskq `Receiver` is not `Sync` (each clone tracks its own item in progress), so
//!   where several threads received through `&r`, each now has a clone.
//! * `RecvError` and `SendError(x)` are enum variants here (`RecvError::Disconnected`,
//!   `SendError::Disconnected(x)`).
//! * Sizes cut where durable sends (one `write(2)` each) and bounded hand-offs made them
//!   slow: `stress_oneshot` 10 000 → 300 channels, `stress_iter` 100 000 → 10 000 round
//!   trips, `spsc` 100 000 → 20 000, array `mpmc` 25 000 → 5 000 items a thread,
//!   `fairness` 10 000 → 2 000.
//! * `drops` counted `Drop`s of items dropped with the channel; diskq items outlive the
//!   channel, so it counts the items a new channel on the directory receives instead
//!   (10 runs of up to 1 000 steps, a fixed xorshift seed (`tests/common`) instead of `thread_rng`).
//! * `fairness` and `fairness_duplicates` select over `Receiver::ready()` and then
//!   `try_recv`, which must find an item every time.
//! * Run time: about 20 s with 2 test threads (2 cores), nearly all of it the sleeps of
//!   the timing tests, kept at crossbeam's 0.5-1.5 s steps (their sum is about 40 s); the
//!   longest single test takes 3.5 s.
//! * Not ported: `recv_in_send` (a send arm in `select!`), `channel_through_channel` (a
//!   `Box<dyn Any>` item cannot be serialized), `panic_on_drop` (items are not dropped
//!   with the channel). `stack_overflow` becomes `big_item` (a 32 KiB `Vec`; serde has no
//!   arrays that long).

use crate::common::XorShift;
use crossbeam_channel::select;
use diskq::{
    Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;
use tempfile::TempDir;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn unbounded<T: Serialize + DeserializeOwned>() -> (TempDir, Sender<T>, Receiver<T>) {
    let dir = tempfile::tempdir().unwrap();
    let (s, r) = diskq::channel(dir.path()).unwrap();
    (dir, s, r)
}

fn bounded<T: Serialize + DeserializeOwned>(cap: usize) -> (TempDir, Sender<T>, Receiver<T>) {
    let dir = tempfile::tempdir().unwrap();
    let (s, r) = diskq::sync_channel(dir.path(), cap).unwrap();
    (dir, s, r)
}

mod list {
    use super::*;

    #[test]
    fn smoke() {
        let (_d, s, r) = unbounded();
        s.try_send(7).unwrap();
        assert_eq!(r.try_recv(), Ok(7));

        s.send(8).unwrap();
        assert_eq!(r.recv(), Ok(8));

        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(r.recv_timeout(ms(1000)), Err(RecvTimeoutError::Timeout));
    }

    #[test]
    fn capacity() {
        let (_d, s, r) = unbounded::<()>();
        assert_eq!(s.capacity(), None);
        assert_eq!(r.capacity(), None);
    }

    #[test]
    fn len_empty_full() {
        let (_d, s, r) = unbounded();

        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 0);
        assert!(r.is_empty());
        assert!(!r.is_full());

        s.send(()).unwrap();

        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 1);
        assert!(!r.is_empty());
        assert!(!r.is_full());

        r.recv().unwrap();

        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 0);
        assert!(r.is_empty());
        assert!(!r.is_full());
    }

    #[test]
    fn try_recv() {
        let (_d, s, r) = unbounded();

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
                thread::sleep(ms(1500));
                assert_eq!(r.try_recv(), Ok(7));
                thread::sleep(ms(500));
                assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                s.send(7).unwrap();
            });
        });
    }

    #[test]
    fn recv() {
        let (_d, s, r) = unbounded();

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv(), Ok(7));
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(8));
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(9));
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1500));
                s.send(7).unwrap();
                s.send(8).unwrap();
                s.send(9).unwrap();
            });
        });
    }

    #[test]
    fn recv_timeout() {
        let (_d, s, r) = unbounded::<i32>();

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv_timeout(ms(1000)), Err(RecvTimeoutError::Timeout));
                assert_eq!(r.recv_timeout(ms(1000)), Ok(7));
                assert_eq!(
                    r.recv_timeout(ms(1000)),
                    Err(RecvTimeoutError::Disconnected)
                );
            });
            scope.spawn(move || {
                thread::sleep(ms(1500));
                s.send(7).unwrap();
            });
        });
    }

    #[test]
    fn recv_timeout_nonempty_expired() {
        let (_d, s, r) = unbounded::<i32>();
        s.send(5).unwrap();
        // A non-empty channel yields an already-available message even with a zero (elapsed) timeout.
        assert_eq!(r.recv_timeout(ms(0)), Ok(5));
        assert_eq!(r.recv_timeout(ms(0)), Err(RecvTimeoutError::Timeout));
    }

    #[test]
    fn try_send() {
        const COUNT: usize = 1000;

        let (_d, s, r) = unbounded();
        for i in 0..COUNT {
            assert_eq!(s.try_send(i), Ok(()));
        }

        drop(r);
        assert_eq!(s.try_send(777), Err(TrySendError::Disconnected(777)));
    }

    #[test]
    fn send() {
        const COUNT: usize = 1000;

        let (_d, s, r) = unbounded();
        for i in 0..COUNT {
            assert_eq!(s.send(i), Ok(()));
        }

        drop(r);
        assert_eq!(s.send(777), Err(SendError::Disconnected(777)));
    }

    #[test]
    fn send_timeout() {
        const COUNT: usize = 1000;

        let (_d, s, r) = unbounded();
        for i in 0..COUNT {
            assert_eq!(s.send_timeout(i, ms(i as u64)), Ok(()));
        }

        drop(r);
        assert_eq!(
            s.send_timeout(777, ms(0)),
            Err(SendTimeoutError::Disconnected(777))
        );
    }

    #[test]
    fn send_after_disconnect() {
        let (_d, s, r) = unbounded();

        s.send(1).unwrap();
        s.send(2).unwrap();
        s.send(3).unwrap();

        drop(r);

        assert_eq!(s.send(4), Err(SendError::Disconnected(4)));
        assert_eq!(s.try_send(5), Err(TrySendError::Disconnected(5)));
        assert_eq!(
            s.send_timeout(6, ms(0)),
            Err(SendTimeoutError::Disconnected(6))
        );
    }

    #[test]
    fn recv_after_disconnect() {
        let (_d, s, r) = unbounded();

        s.send(1).unwrap();
        s.send(2).unwrap();
        s.send(3).unwrap();

        drop(s);

        assert_eq!(r.recv(), Ok(1));
        assert_eq!(r.recv(), Ok(2));
        assert_eq!(r.recv(), Ok(3));
        assert_eq!(r.recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn len() {
        let (_d, s, r) = unbounded();

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);

        for i in 0..50 {
            s.send(i).unwrap();
            assert_eq!(s.len(), i + 1);
        }

        for i in 0..50 {
            r.recv().unwrap();
            assert_eq!(r.len(), 50 - i - 1);
        }

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn disconnect_wakes_receiver() {
        let (_d, s, r) = unbounded::<()>();

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                drop(s);
            });
        });
    }

    #[test]
    fn spsc() {
        const COUNT: usize = 20_000; // crossbeam: 100 000

        let (_d, s, r) = unbounded();

        thread::scope(|scope| {
            scope.spawn(move || {
                for i in 0..COUNT {
                    assert_eq!(r.recv(), Ok(i));
                }
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                for i in 0..COUNT {
                    s.send(i).unwrap();
                }
            });
        });
    }

    #[test]
    fn mpmc() {
        const COUNT: usize = 25_000;
        const THREADS: usize = 4;

        let (_d, s, r) = unbounded::<usize>();
        let v = (0..COUNT).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>();

        thread::scope(|scope| {
            for _ in 0..THREADS {
                let (r, v) = (r.clone(), &v);
                scope.spawn(move || {
                    for _ in 0..COUNT {
                        let n = r.recv().unwrap();
                        v[n].fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for i in 0..COUNT {
                        s.send(i).unwrap();
                    }
                });
            }
        });

        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));

        for c in v {
            assert_eq!(c.load(Ordering::SeqCst), THREADS);
        }
    }

    #[test]
    fn stress_oneshot() {
        const COUNT: usize = 300; // crossbeam: 10 000

        for _ in 0..COUNT {
            let (_d, s, r) = unbounded();

            thread::scope(|scope| {
                scope.spawn(move || r.recv().unwrap());
                scope.spawn(|| s.send(0).unwrap());
            });
        }
    }

    #[test]
    fn stress_iter() {
        const COUNT: usize = 10_000; // crossbeam: 100 000

        let (_d1, request_s, request_r) = unbounded();
        let (_d2, response_s, response_r) = unbounded();

        thread::scope(|scope| {
            scope.spawn(move || {
                let mut count = 0;
                loop {
                    for x in response_r.try_iter() {
                        count += x;
                        if count == COUNT {
                            return;
                        }
                    }
                    request_s.send(()).unwrap();
                }
            });

            for _ in request_r.iter() {
                if response_s.send(1).is_err() {
                    break;
                }
            }
        });
    }

    #[test]
    fn stress_timeout_two_threads() {
        const COUNT: usize = 100;

        let (_d, s, r) = unbounded();

        thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        thread::sleep(ms(50));
                    }
                    s.send(i).unwrap();
                }
            });

            scope.spawn(move || {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        thread::sleep(ms(50));
                    }
                    loop {
                        if let Ok(x) = r.recv_timeout(ms(10)) {
                            assert_eq!(x, i);
                            break;
                        }
                    }
                }
            });
        });
    }

    #[test]
    fn drops() {
        const RUNS: usize = 10;
        const STEPS: usize = 1000;

        let mut rng = XorShift(0x5EED_1157);

        for _ in 0..RUNS {
            let steps = rng.below(STEPS as u64) as usize;
            let additional = rng.below(STEPS as u64 / 10) as usize;

            let (d, s, r) = unbounded::<u32>();

            thread::scope(|scope| {
                let r = r.clone(); // a Receiver is not Sync
                scope.spawn(move || {
                    for _ in 0..steps {
                        r.recv().unwrap();
                    }
                });

                scope.spawn(|| {
                    for _ in 0..steps {
                        s.send(1).unwrap();
                    }
                });
            });

            for _ in 0..additional {
                s.try_send(2).unwrap();
            }

            drop(s);
            drop(r);
            // diskq: the items not received outlive the channel; nothing received returns.
            let (_s, r) = diskq::channel::<u32>(d.path()).unwrap();
            assert_eq!(r.try_iter().collect::<Vec<_>>(), vec![2; additional]);
        }
    }

    #[test]
    fn linearizable() {
        const COUNT: usize = 25_000;
        const THREADS: usize = 4;

        let (_d, s, r) = unbounded();

        thread::scope(|scope| {
            for _ in 0..THREADS {
                let (s, r) = (&s, r.clone());
                scope.spawn(move || {
                    for _ in 0..COUNT {
                        s.send(0).unwrap();
                        r.try_recv().unwrap();
                    }
                });
            }
        });
    }

    #[test]
    fn fairness() {
        const COUNT: usize = 2_000; // crossbeam: 10 000

        let (_d1, s1, r1) = unbounded::<()>();
        let (_d2, s2, r2) = unbounded::<()>();

        for _ in 0..COUNT {
            s1.send(()).unwrap();
            s2.send(()).unwrap();
        }

        let (ready1, ready2) = (r1.ready(), r2.ready());
        let mut hits = [0usize; 2];
        for _ in 0..COUNT {
            select! {
                recv(ready1) -> _ => { r1.try_recv().unwrap(); hits[0] += 1 },
                recv(ready2) -> _ => { r2.try_recv().unwrap(); hits[1] += 1 },
            }
        }
        assert!(hits.iter().all(|x| *x >= COUNT / hits.len() / 2));
    }

    #[test]
    fn fairness_duplicates() {
        const COUNT: usize = 2_000; // crossbeam: 10 000

        let (_d, s, r) = unbounded();

        for _ in 0..COUNT {
            s.send(()).unwrap();
        }

        let ready = r.ready();
        let mut hits = [0usize; 5];
        for _ in 0..COUNT {
            select! {
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[0] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[1] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[2] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[3] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[4] += 1 },
            }
        }
        assert!(hits.iter().all(|x| *x >= COUNT / hits.len() / 2));
    }

    #[test]
    fn big_item() {
        const N: usize = 32_768;

        let (_d, sender, receiver) = unbounded::<Vec<u8>>();
        sender.send(vec![7u8; N]).unwrap();

        for data in receiver.try_iter() {
            assert_eq!(data, vec![7u8; N]);
        }
    }
}

mod array {
    use super::*;

    #[test]
    fn smoke() {
        let (_d, s, r) = bounded(1);
        s.send(7).unwrap();
        assert_eq!(r.try_recv(), Ok(7));

        s.send(8).unwrap();
        assert_eq!(r.recv(), Ok(8));

        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(r.recv_timeout(ms(1000)), Err(RecvTimeoutError::Timeout));
    }

    #[test]
    fn capacity() {
        for i in 1..10 {
            let (_d, s, r) = bounded::<()>(i);
            assert_eq!(s.capacity(), Some(i));
            assert_eq!(r.capacity(), Some(i));
        }
    }

    #[test]
    fn len_empty_full() {
        let (_d, s, r) = bounded(2);

        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 0);
        assert!(r.is_empty());
        assert!(!r.is_full());

        s.send(()).unwrap();

        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 1);
        assert!(!r.is_empty());
        assert!(!r.is_full());

        s.send(()).unwrap();

        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
        assert!(s.is_full());
        assert_eq!(r.len(), 2);
        assert!(!r.is_empty());
        assert!(r.is_full());

        r.recv().unwrap();

        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
        assert!(!s.is_full());
        assert_eq!(r.len(), 1);
        assert!(!r.is_empty());
        assert!(!r.is_full());
    }

    #[test]
    fn try_recv() {
        let (_d, s, r) = bounded(100);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
                thread::sleep(ms(1500));
                assert_eq!(r.try_recv(), Ok(7));
                thread::sleep(ms(500));
                assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                s.send(7).unwrap();
            });
        });
    }

    #[test]
    fn recv() {
        let (_d, s, r) = bounded(100);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv(), Ok(7));
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(8));
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(9));
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1500));
                s.send(7).unwrap();
                s.send(8).unwrap();
                s.send(9).unwrap();
            });
        });
    }

    #[test]
    fn recv_timeout() {
        let (_d, s, r) = bounded::<i32>(100);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv_timeout(ms(1000)), Err(RecvTimeoutError::Timeout));
                assert_eq!(r.recv_timeout(ms(1000)), Ok(7));
                assert_eq!(
                    r.recv_timeout(ms(1000)),
                    Err(RecvTimeoutError::Disconnected)
                );
            });
            scope.spawn(move || {
                thread::sleep(ms(1500));
                s.send(7).unwrap();
            });
        });
    }

    #[test]
    fn try_send() {
        let (_d, s, r) = bounded(1);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(s.try_send(1), Ok(()));
                assert_eq!(s.try_send(2), Err(TrySendError::Full(2)));
                thread::sleep(ms(1500));
                assert_eq!(s.try_send(3), Ok(()));
                thread::sleep(ms(500));
                assert_eq!(s.try_send(4), Err(TrySendError::Disconnected(4)));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                assert_eq!(r.try_recv(), Ok(1));
                assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(r.recv(), Ok(3));
            });
        });
    }

    #[test]
    fn send() {
        let (_d, s, r) = bounded(1);

        thread::scope(|scope| {
            scope.spawn(|| {
                s.send(7).unwrap();
                thread::sleep(ms(1000));
                s.send(8).unwrap();
                thread::sleep(ms(1000));
                s.send(9).unwrap();
                thread::sleep(ms(1000));
                s.send(10).unwrap();
            });
            // A clone: `r` stays, so that the last send finds the channel connected.
            let r = r.clone(); // a Receiver is not Sync
            scope.spawn(move || {
                thread::sleep(ms(1500));
                assert_eq!(r.recv(), Ok(7));
                assert_eq!(r.recv(), Ok(8));
                assert_eq!(r.recv(), Ok(9));
            });
        });
    }

    #[test]
    fn send_timeout() {
        let (_d, s, r) = bounded(2);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(s.send_timeout(1, ms(1000)), Ok(()));
                assert_eq!(s.send_timeout(2, ms(1000)), Ok(()));
                assert_eq!(
                    s.send_timeout(3, ms(500)),
                    Err(SendTimeoutError::Timeout(3))
                );
                thread::sleep(ms(1000));
                assert_eq!(s.send_timeout(4, ms(1000)), Ok(()));
                thread::sleep(ms(1000));
                assert_eq!(s.send(5), Err(SendError::Disconnected(5)));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(1));
                thread::sleep(ms(1000));
                assert_eq!(r.recv(), Ok(2));
                assert_eq!(r.recv(), Ok(4));
            });
        });
    }

    #[test]
    fn send_timeout_nonfull_expired() {
        let (_d, s, _r) = bounded::<i32>(1);
        // A non-full channel accepts the message even with a zero (elapsed) timeout.
        assert_eq!(s.send_timeout(1, ms(0)), Ok(()));
        assert_eq!(s.send_timeout(2, ms(0)), Err(SendTimeoutError::Timeout(2)));
    }

    #[test]
    fn send_after_disconnect() {
        let (_d, s, r) = bounded(100);

        s.send(1).unwrap();
        s.send(2).unwrap();
        s.send(3).unwrap();

        drop(r);

        assert_eq!(s.send(4), Err(SendError::Disconnected(4)));
        assert_eq!(s.try_send(5), Err(TrySendError::Disconnected(5)));
        assert_eq!(
            s.send_timeout(6, ms(500)),
            Err(SendTimeoutError::Disconnected(6))
        );
    }

    #[test]
    fn recv_after_disconnect() {
        let (_d, s, r) = bounded(100);

        s.send(1).unwrap();
        s.send(2).unwrap();
        s.send(3).unwrap();

        drop(s);

        assert_eq!(r.recv(), Ok(1));
        assert_eq!(r.recv(), Ok(2));
        assert_eq!(r.recv(), Ok(3));
        assert_eq!(r.recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn len() {
        const COUNT: usize = 25_000;
        const CAP: usize = 1000;

        let (_d, s, r) = bounded(CAP);

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);

        for _ in 0..CAP / 10 {
            for i in 0..50 {
                s.send(i).unwrap();
                assert_eq!(s.len(), i + 1);
            }

            for i in 0..50 {
                r.recv().unwrap();
                assert_eq!(r.len(), 50 - i - 1);
            }
        }

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);

        for i in 0..CAP {
            s.send(i).unwrap();
            assert_eq!(s.len(), i + 1);
        }

        for _ in 0..CAP {
            r.recv().unwrap();
        }

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);

        thread::scope(|scope| {
            let r = r.clone(); // a Receiver is not Sync
            scope.spawn(move || {
                for i in 0..COUNT {
                    assert_eq!(r.recv(), Ok(i));
                    let len = r.len();
                    assert!(len <= CAP);
                }
            });

            scope.spawn(|| {
                for i in 0..COUNT {
                    s.send(i).unwrap();
                    let len = s.len();
                    assert!(len <= CAP);
                }
            });
        });

        assert_eq!(s.len(), 0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn disconnect_wakes_sender() {
        let (_d, s, r) = bounded(1);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(s.send(()), Ok(()));
                assert_eq!(s.send(()), Err(SendError::Disconnected(())));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                drop(r);
            });
        });
    }

    #[test]
    fn disconnect_wakes_receiver() {
        let (_d, s, r) = bounded::<()>(1);

        thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                thread::sleep(ms(1000));
                drop(s);
            });
        });
    }

    #[test]
    fn spsc() {
        const COUNT: usize = 20_000; // crossbeam: 100 000

        let (_d, s, r) = bounded(3);

        thread::scope(|scope| {
            scope.spawn(move || {
                for i in 0..COUNT {
                    assert_eq!(r.recv(), Ok(i));
                }
                assert_eq!(r.recv(), Err(RecvError::Disconnected));
            });
            scope.spawn(move || {
                for i in 0..COUNT {
                    s.send(i).unwrap();
                }
            });
        });
    }

    #[test]
    fn mpmc() {
        const COUNT: usize = 5_000; // crossbeam: 25 000
        const THREADS: usize = 4;

        let (_d, s, r) = bounded::<usize>(3);
        let v = (0..COUNT).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>();

        thread::scope(|scope| {
            for _ in 0..THREADS {
                let (r, v) = (r.clone(), &v);
                scope.spawn(move || {
                    for _ in 0..COUNT {
                        let n = r.recv().unwrap();
                        v[n].fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for i in 0..COUNT {
                        s.send(i).unwrap();
                    }
                });
            }
        });

        for c in v {
            assert_eq!(c.load(Ordering::SeqCst), THREADS);
        }
    }

    #[test]
    fn stress_oneshot() {
        const COUNT: usize = 300; // crossbeam: 10 000

        for _ in 0..COUNT {
            let (_d, s, r) = bounded(1);

            thread::scope(|scope| {
                scope.spawn(move || r.recv().unwrap());
                scope.spawn(|| s.send(0).unwrap());
            });
        }
    }

    #[test]
    fn stress_iter() {
        const COUNT: usize = 10_000; // crossbeam: 100 000

        let (_d1, request_s, request_r) = bounded(1);
        let (_d2, response_s, response_r) = bounded(1);

        thread::scope(|scope| {
            scope.spawn(move || {
                let mut count = 0;
                loop {
                    for x in response_r.try_iter() {
                        count += x;
                        if count == COUNT {
                            return;
                        }
                    }
                    request_s.send(()).unwrap();
                }
            });

            for _ in request_r.iter() {
                if response_s.send(1).is_err() {
                    break;
                }
            }
        });
    }

    #[test]
    fn stress_timeout_two_threads() {
        const COUNT: usize = 100;

        let (_d, s, r) = bounded(2);

        thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        thread::sleep(ms(50));
                    }
                    loop {
                        if let Ok(()) = s.send_timeout(i, ms(10)) {
                            break;
                        }
                    }
                }
            });

            scope.spawn(move || {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        thread::sleep(ms(50));
                    }
                    loop {
                        if let Ok(x) = r.recv_timeout(ms(10)) {
                            assert_eq!(x, i);
                            break;
                        }
                    }
                }
            });
        });
    }

    #[test]
    fn drops() {
        const RUNS: usize = 10;
        const STEPS: usize = 1000;

        let mut rng = XorShift(0x5EED_A77A);

        for _ in 0..RUNS {
            let steps = rng.below(STEPS as u64) as usize;
            let additional = rng.below(50) as usize;

            let (d, s, r) = bounded::<u32>(50);

            thread::scope(|scope| {
                let r = r.clone(); // a Receiver is not Sync
                scope.spawn(move || {
                    for _ in 0..steps {
                        r.recv().unwrap();
                    }
                });

                scope.spawn(|| {
                    for _ in 0..steps {
                        s.send(1).unwrap();
                    }
                });
            });

            for _ in 0..additional {
                s.send(2).unwrap();
            }

            drop(s);
            drop(r);
            // diskq: the items not received outlive the channel; nothing received returns.
            let (_s, r) = diskq::sync_channel::<u32>(d.path(), 50).unwrap();
            assert_eq!(r.try_iter().collect::<Vec<_>>(), vec![2; additional]);
        }
    }

    #[test]
    fn linearizable() {
        const COUNT: usize = 25_000;
        const THREADS: usize = 4;

        let (_d, s, r) = bounded(THREADS);

        thread::scope(|scope| {
            for _ in 0..THREADS {
                let (s, r) = (&s, r.clone());
                scope.spawn(move || {
                    for _ in 0..COUNT {
                        s.send(0).unwrap();
                        r.try_recv().unwrap();
                    }
                });
            }
        });
    }

    #[test]
    fn fairness() {
        const COUNT: usize = 2_000; // crossbeam: 10 000

        let (_d1, s1, r1) = bounded::<()>(COUNT);
        let (_d2, s2, r2) = bounded::<()>(COUNT);

        for _ in 0..COUNT {
            s1.send(()).unwrap();
            s2.send(()).unwrap();
        }

        let (ready1, ready2) = (r1.ready(), r2.ready());
        let mut hits = [0usize; 2];
        for _ in 0..COUNT {
            select! {
                recv(ready1) -> _ => { r1.try_recv().unwrap(); hits[0] += 1 },
                recv(ready2) -> _ => { r2.try_recv().unwrap(); hits[1] += 1 },
            }
        }
        assert!(hits.iter().all(|x| *x >= COUNT / hits.len() / 2));
    }

    #[test]
    fn fairness_duplicates() {
        const COUNT: usize = 2_000; // crossbeam: 10 000

        let (_d, s, r) = bounded::<()>(COUNT);

        for _ in 0..COUNT {
            s.send(()).unwrap();
        }

        let ready = r.ready();
        let mut hits = [0usize; 5];
        for _ in 0..COUNT {
            select! {
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[0] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[1] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[2] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[3] += 1 },
                recv(ready) -> _ => { r.try_recv().unwrap(); hits[4] += 1 },
            }
        }
        assert!(hits.iter().all(|x| *x >= COUNT / hits.len() / 2));
    }
}

/// Not ported: `Receiver::ready` with `select!` beside ordinary channels.
mod select_ready {
    use super::*;
    use std::time::Instant;

    /// A `select!` loop that has waited this long without a wakeup has lost one.
    const LOST: Duration = Duration::from_secs(10);

    #[test]
    fn ready_at_once_for_items_already_there() {
        let (d, s, r) = unbounded::<u32>();
        s.send(1).unwrap();
        drop((s, r));
        // Recovered from disk, sent by no one in this run.
        let (_s, r) = diskq::channel::<u32>(d.path()).unwrap();
        let ready = r.ready();
        ready.recv_timeout(ms(0)).unwrap();
        assert_eq!(r.try_recv(), Ok(1));
    }

    #[test]
    fn empty_channel_is_not_ready_after_the_first_look() {
        let (_d, s, r) = unbounded::<u32>();
        let ready = r.ready();
        assert!(ready.try_recv().is_ok()); // the initial token: may be spurious
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert!(ready.try_recv().is_err()); // Empty does not re-arm
        s.send(1).unwrap();
        assert!(ready.try_recv().is_ok());
        assert_eq!(r.try_recv(), Ok(1));
        assert!(ready.try_recv().is_ok()); // a take re-arms: there may be more
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert!(ready.try_recv().is_err());
        // The same channel every call.
        let again = r.ready();
        s.send(2).unwrap();
        assert!(again.try_recv().is_ok());
        assert!(ready.try_recv().is_err());
    }

    #[test]
    fn stays_ready_after_disconnection() {
        let (_d, s, r) = unbounded::<u32>();
        let ready = r.ready();
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        drop(s);
        for _ in 0..3 {
            ready.recv_timeout(ms(0)).unwrap();
            assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
        }
    }

    #[test]
    fn ready_wakes_a_select_for_a_send_from_another_thread() {
        let (_d, s, r) = unbounded::<u32>();
        let ready = r.ready();
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        let _ = ready.try_recv();
        thread::scope(|scope| {
            scope.spawn(|| {
                thread::sleep(ms(100));
                s.send(5).unwrap();
            });
            let t = Instant::now();
            select! {
                recv(ready) -> _ => assert_eq!(r.try_recv(), Ok(5)),
                default(LOST) => panic!("no wakeup"),
            }
            assert!(t.elapsed() >= ms(90));
        });
    }

    /// Several senders and several consumers, each consumer in a `select!` loop over its
    /// own ready channel and a shutdown channel, taking one item per wakeup. Every item is
    /// received exactly once, and every consumer ends on disconnection, none on a lost
    /// wakeup.
    #[test]
    fn no_lost_wakeups_with_several_senders_and_consumers() {
        const SENDERS: u32 = 3;
        const PER_SENDER: u32 = 2_000;
        const CONSUMERS: usize = 3;

        let (_d, s, r) = unbounded::<u32>();
        let (_stop_s, stop_r) = crossbeam_channel::bounded::<()>(1);
        let got = std::sync::Mutex::new(Vec::new());
        let spurious = AtomicUsize::new(0);
        thread::scope(|scope| {
            for c in 0..CONSUMERS {
                let (r, stop_r, got, spurious) = (r.clone(), stop_r.clone(), &got, &spurious);
                scope.spawn(move || {
                    let ready = r.ready();
                    let mut mine = Vec::new();
                    loop {
                        select! {
                            recv(ready) -> _ => match r.try_recv() {
                                Ok(x) => mine.push(x),
                                Err(TryRecvError::Empty) => {
                                    spurious.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TryRecvError::Disconnected) => break,
                                Err(e) => panic!("{e}"),
                            },
                            recv(stop_r) -> _ => unreachable!(),
                            default(LOST) => panic!("consumer {c}: lost wakeup"),
                        }
                    }
                    got.lock().unwrap().extend(mine);
                });
            }
            drop(r);
            for k in 0..SENDERS {
                let s = s.clone();
                scope.spawn(move || {
                    let mut rng = XorShift(0x5EED + u64::from(k));
                    for i in 0..PER_SENDER {
                        s.send(k * PER_SENDER + i).unwrap();
                        if rng.below(50) == 0 {
                            thread::sleep(Duration::from_micros(rng.below(500)));
                        }
                    }
                });
            }
            drop(s);
        });
        let mut got = got.into_inner().unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..SENDERS * PER_SENDER).collect::<Vec<_>>());
        eprintln!(
            "spurious wakeups: {} for {} items",
            spurious.into_inner(),
            SENDERS * PER_SENDER
        );
    }

    #[test]
    fn shutdown_signal_beside_the_durable_channel() {
        let (d, s, r) = unbounded::<u32>();
        let (stop_s, stop_r) = crossbeam_channel::bounded::<()>(1);
        for i in 0..5 {
            s.send(i).unwrap();
        }
        stop_s.send(()).unwrap();
        let ready = r.ready();
        let mut done = Vec::new();
        // The shutdown is already signalled: `select!` picks among ready arms at random,
        // so some items may be done first; the rest stay on disk.
        loop {
            select! {
                recv(stop_r) -> _ => break,
                recv(ready) -> _ => match r.try_recv() {
                    Ok(x) => done.push(x),
                    Err(TryRecvError::Empty) => {} // all done: ready until looked at
                    Err(e) => panic!("{e}"),
                },
            }
        }
        drop((s, r));
        let (_s, r) = diskq::channel::<u32>(d.path()).unwrap();
        let rest: Vec<u32> = r.try_iter().collect();
        done.extend(rest);
        assert_eq!(done, [0, 1, 2, 3, 4]);
    }
}
