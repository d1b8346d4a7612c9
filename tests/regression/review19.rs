//! Hostile review of the async API (issue #19, 925ad0c..b44a8a9): `waitlist.rs`,
//! `timer.rs`, `asynchronous.rs`, `channel/asynchronous.rs`.
//!
//! `bug_*` tests show a defect (they fail on the reviewed code, bounded in time by a
//! watchdog); `probe_*` tests check a claim that holds.

use crate::common::within;
use diskq::{Durability, Options, Queue};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

fn rt_multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn rt_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountWaker(AtomicUsize);
impl Wake for CountWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
fn counting() -> (Arc<CountWaker>, Waker) {
    let c = Arc::new(CountWaker::default());
    (c.clone(), Waker::from(c))
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// ---------------------------------------------------------------------------------------
// Send / Unpin (compile-time probes).

fn assert_send<F: Send>(_: &F) {}
fn assert_unpin<F: Unpin>(_: &F) {}

#[test]
fn probe_every_future_and_stream_is_send() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<String> = Queue::open(d.path().join("q")).unwrap();
    let s = "x".to_string();
    assert_send(&q.put_async(&s));
    assert_send(&q.get_async());
    assert_send(&q.get_delivery_async());
    let (tx, mut rx) = diskq::channel::<String>(d.path().join("c")).unwrap();
    assert_send(&tx.send_async("a".into()));
    assert_send(&rx.recv_async());
    assert_send(&rx.recv_delivery_async());
    {
        let st = rx.stream();
        assert_send(&st);
        assert_unpin(&st);
    }
    let st = rx.into_stream();
    assert_send(&st);
    assert_unpin(&st);
}

// ---------------------------------------------------------------------------------------
// The timer thread: stale entries.

/// Polls `get_async` once (it registers its wait, with a timer when the queue has a
/// lease) and drops it, `n` times: what a `select!` loop does with a losing branch, or
/// what a worker does whenever it waits and is woken by a put.
fn cancel_gets(q: &Queue<u64>, n: usize) {
    let (_c, w) = counting();
    let mut cx = Context::from_waker(&w);
    for _ in 0..n {
        let mut f = pin!(q.get_async());
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
}

/// Every async wait on a queue with a lease starts a `Sleep` of the lease's span; a
/// `Sleep` dropped before it is due leaves its entry (an `Arc<Entry>` and a heap slot) in
/// the timer's heap until the due time. A worker with a 1 h lease that waits a million
/// times within the hour keeps a million entries: memory grows without bound with the
/// rate of waits (and a `nack_after` of a day, or a century, keeps them that long).
#[test]
fn fixed_timer_keeps_every_cancelled_sleep_until_it_is_due() {
    within(120, || {
        let d = tempfile::tempdir().unwrap();
        let n = 1_000_000;
        // Control: no lease, no timer: the same waits cost no memory.
        let plain: Queue<u64> = Queue::open(d.path().join("plain")).unwrap();
        cancel_gets(&plain, 50_000);
        let before = rss();
        cancel_gets(&plain, n);
        let plain_growth = rss().saturating_sub(before);

        let leased: Queue<u64> = Options::new()
            .lease(Duration::from_secs(3600))
            .open(d.path().join("leased"))
            .unwrap();
        let before = rss();
        cancel_gets(&leased, n);
        let leased_growth = rss().saturating_sub(before);
        eprintln!("rss growth: no lease {plain_growth} B, 1 h lease {leased_growth} B");
        assert!(
            leased_growth < plain_growth + (16 << 20),
            "{n} cancelled waits on a queue with a 1 h lease grew the process by \
             {leased_growth} bytes (no lease: {plain_growth}): the timer heap keeps every \
             dropped Sleep until it is due"
        );
    })
}

// ---------------------------------------------------------------------------------------
// extend_lease changes when an item comes back, and wakes no one.

/// A queue without a lease: the waiting task has no timer. `extend_lease` gives the held
/// delivery a lease of 100 ms ("a delivery without a lease gets one"); when it runs out
/// the item is deliverable again, but the sleeping `get_async` is never woken.
#[test]
fn fixed_extend_lease_on_a_queue_without_lease_is_missed_by_a_waiting_get_async() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(Queue::open(d.path()).unwrap());
        q.put(&1).unwrap();
        let held = q.get_delivery().unwrap();
        let rt = rt_multi();
        let q2 = q.clone();
        let waiter = rt.spawn(async move { q2.get_delivery_async().await.map(|d| d.ack()) });
        std::thread::sleep(Duration::from_millis(200)); // the task sleeps, no timer
        held.extend_lease(Duration::from_millis(100)).unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), waiter).await });
        let got = got.expect(
            "lease ran out 100 ms after extend_lease, the item was deliverable, \
             and get_delivery_async still slept 10 s later",
        );
        assert_eq!(got.unwrap().unwrap().unwrap(), 1);
        assert!(held.ack().unwrap_err().is_lease_expired());
    })
}

/// The same with the blocking `get` (the wait-list is shared; the defect predates #19).
#[test]
fn fixed_extend_lease_on_a_queue_without_lease_is_missed_by_a_blocked_get() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(Queue::open(d.path()).unwrap());
        q.put(&1).unwrap();
        let held = q.get_delivery().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || {
            let _ = tx.send(q2.get());
        });
        std::thread::sleep(Duration::from_millis(200));
        held.extend_lease(Duration::from_millis(100)).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).expect(
            "lease ran out 100 ms after extend_lease and the blocked get still slept 10 s later",
        );
        assert_eq!(got.unwrap(), 1);
        std::mem::forget(held);
    })
}

/// A queue with a lease of one hour: a waiting task sleeps at most an hour. The holder
/// shortens its lease to 100 ms (`extend_lease` sets it to `span` from now); the item
/// comes back then, but the task sleeps on for the hour.
#[test]
fn fixed_extend_lease_shortened_is_missed_by_a_waiting_get_async() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .lease(Duration::from_secs(3600))
                .open(d.path())
                .unwrap(),
        );
        q.put(&1).unwrap();
        let held = q.get_delivery().unwrap();
        let rt = rt_multi();
        let q2 = q.clone();
        let waiter = rt.spawn(async move { q2.get_delivery_async().await.map(|d| d.ack()) });
        std::thread::sleep(Duration::from_millis(200));
        held.extend_lease(Duration::from_millis(100)).unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), waiter).await });
        let got = got.expect("the shortened lease ran out and get_delivery_async slept on");
        assert_eq!(got.unwrap().unwrap().unwrap(), 1);
        assert!(held.ack().unwrap_err().is_lease_expired());
    })
}

/// The channel's `OwnedDelivery::extend_lease` likewise: a `recv_async` on a clone sleeps
/// past the lease it gave.
#[test]
fn fixed_owned_delivery_extend_lease_is_missed_by_a_waiting_recv_async() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
        tx.send(1).unwrap();
        let held = rx.recv_delivery().unwrap();
        let mut rx2 = rx.clone();
        let rt = rt_multi();
        let waiter = rt.spawn(async move { rx2.recv_delivery_async().await.map(|d| d.ack()) });
        std::thread::sleep(Duration::from_millis(200));
        held.extend_lease(Duration::from_millis(100)).unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), waiter).await });
        let got = got.expect("the lease given by extend_lease ran out and recv_async slept on");
        assert_eq!(got.unwrap().unwrap().unwrap(), 1);
        drop(tx);
    })
}

// ---------------------------------------------------------------------------------------
// notify_one on not_full with waiters that need different room (max_bytes).

fn bytes_queue(dir: &std::path::Path) -> Queue<Vec<u8>> {
    Options::new().max_bytes(1000).open(dir).unwrap()
}

/// `max_bytes` 1000 holding items of 600 and 300 bytes. A `put_async` of 800 bytes waits,
/// then one of 100 bytes. A get takes the 600: the 100 now fits (about 430 of 1000), the
/// 800 does not. The get's `notify_one` wakes one listener, the oldest: the 800, which
/// finds no room and listens again, at the back. The 100 is never woken while there is
/// room for it; it goes on only at the next get (here: never).
#[test]
fn fixed_put_async_woken_for_room_it_cannot_use_leaves_a_put_that_fits_asleep() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q = Arc::new(bytes_queue(d.path()));
        q.put(&vec![1; 600]).unwrap();
        q.put(&vec![2; 300]).unwrap();
        assert!(q.put_nowait(&vec![3; 100]).unwrap_err().is_full());
        let rt = rt_multi();
        let qb = q.clone();
        let big = rt.spawn(async move { qb.put_async(&vec![4; 800]).await });
        std::thread::sleep(Duration::from_millis(100));
        let qs = q.clone();
        let small = rt.spawn(async move { qs.put_async(&vec![3; 100]).await });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!small.is_finished() && !big.is_finished());
        assert_eq!(q.get().unwrap().len(), 600);
        // Room for the 100 now:
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            q.put_nowait(&vec![5; 1]).is_ok(),
            "there is room (a put_nowait succeeds)"
        );
        let res = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), small).await });
        assert!(
            res.is_ok(),
            "the 100-byte put_async slept 5 s with room for it: the get's notify_one woke \
             only the 800-byte put, which could not use the room and did not pass it on"
        );
        assert!(!big.is_finished());
        big.abort();
    })
}

/// The same on a channel bounded by bytes: `send_async`.
#[test]
fn fixed_send_async_woken_for_room_it_cannot_use_leaves_a_send_that_fits_asleep() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) =
            diskq::channel_with::<Vec<u8>>(&Options::new().max_bytes(1000), d.path()).unwrap();
        tx.send(vec![1; 600]).unwrap();
        tx.send(vec![2; 300]).unwrap();
        assert!(tx.try_send(vec![3; 100]).is_err());
        let rt = rt_multi();
        let txb = tx.clone();
        let big = rt.spawn(async move { txb.send_async(vec![4; 800]).await.is_ok() });
        std::thread::sleep(Duration::from_millis(100));
        let txs = tx.clone();
        let small = rt.spawn(async move { txs.send_async(vec![3; 100]).await.is_ok() });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(rx.recv().unwrap().len(), 600);
        let res = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), small).await });
        assert!(
            res.is_ok(),
            "the 100-byte send_async slept 5 s with room for it (woken: the 800-byte send)"
        );
        big.abort();
    })
}

// ---------------------------------------------------------------------------------------
// Probes: notify_one with several waiters, cancellation after a notification.

/// Two `get_async` futures wait; one put notifies the first; the first is dropped without
/// being polled again: the notification passes to the second.
#[test]
fn probe_a_notified_get_async_dropped_unpolled_passes_the_wakeup_on() {
    for level in [Durability::Buffered, Durability::Written] {
        within(30, move || {
            let d = tempfile::tempdir().unwrap();
            let q: Queue<u32> = Options::new().durability(level).open(d.path()).unwrap();
            let (ca, wa) = counting();
            let (cb, wb) = counting();
            let mut a = Box::pin(q.get_async());
            let mut b = Box::pin(q.get_async());
            assert!(a.as_mut().poll(&mut Context::from_waker(&wa)).is_pending());
            assert!(b.as_mut().poll(&mut Context::from_waker(&wb)).is_pending());
            q.put(&1).unwrap();
            let woken = ca.0.load(Ordering::SeqCst) + cb.0.load(Ordering::SeqCst);
            assert!(woken >= 1, "{level:?}: nobody woken by the put");
            if ca.0.load(Ordering::SeqCst) > 0 && cb.0.load(Ordering::SeqCst) == 0 {
                drop(a);
                assert!(cb.0.load(Ordering::SeqCst) > 0, "{level:?}: not passed on");
                assert!(matches!(
                    b.as_mut().poll(&mut Context::from_waker(&wb)),
                    Poll::Ready(Ok(1))
                ));
            } else {
                drop(b);
                assert!(matches!(
                    a.as_mut().poll(&mut Context::from_waker(&wa)),
                    Poll::Ready(Ok(1))
                ));
            }
        })
    }
}

/// N tasks wait; N items are put one by one from a thread, at each level (the buffered
/// level's intake path included): every task gets one, none sleeps on.
#[test]
fn probe_several_waiting_tasks_and_several_puts_each_task_gets_one() {
    for level in [
        Durability::Buffered,
        Durability::Written,
        Durability::Synced,
    ] {
        within(60, move || {
            let d = tempfile::tempdir().unwrap();
            let q: Arc<Queue<u32>> =
                Arc::new(Options::new().durability(level).open(d.path()).unwrap());
            let rt = rt_multi();
            let n = 16;
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let q = q.clone();
                    rt.spawn(async move {
                        let d = q.get_delivery_async().await.unwrap();
                        d.ack().unwrap()
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            for i in 0..n {
                q.put(&i).unwrap();
            }
            let mut got: Vec<u32> = rt.block_on(async {
                let mut v = Vec::new();
                for t in tasks {
                    v.push(
                        tokio::time::timeout(Duration::from_secs(10), t)
                            .await
                            .unwrap_or_else(|_| panic!("{level:?}: a task slept on"))
                            .unwrap(),
                    );
                }
                v
            });
            got.sort();
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "{level:?}");
        })
    }
}

/// Blocking threads and async tasks consume one buffered (intake) queue while a producer
/// puts one item at a time, and a select! loop cancels gets all along: each item once.
#[test]
fn probe_threads_tasks_and_cancelled_gets_on_one_buffered_queue_see_each_item_once() {
    for level in [Durability::Buffered, Durability::Written] {
        within(120, move || {
            let d = tempfile::tempdir().unwrap();
            let q: Arc<Queue<u64>> =
                Arc::new(Options::new().durability(level).open(d.path()).unwrap());
            let n: u64 = 20_000;
            let consumers = 6usize;
            let rt = rt_multi();
            let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
            let mut threads = Vec::new();
            for _ in 0..2 {
                let (q, seen) = (q.clone(), seen.clone());
                threads.push(std::thread::spawn(move || {
                    loop {
                        let d = q.get_delivery().unwrap();
                        let v = d.ack().unwrap();
                        if v == u64::MAX {
                            return;
                        }
                        seen.lock().push(v);
                    }
                }));
            }
            let mut tasks = Vec::new();
            for t in 0..consumers - 2 {
                let (q, seen) = (q.clone(), seen.clone());
                tasks.push(rt.spawn(async move {
                    let mut round = 0u64;
                    loop {
                        round += 1;
                        let got = if t % 2 == 0 {
                            tokio::select! {
                                biased;
                                d = q.get_delivery_async() => Some(d.unwrap()),
                                _ = tokio::task::yield_now(), if round.is_multiple_of(2) => None,
                            }
                        } else {
                            Some(q.get_delivery_async().await.unwrap())
                        };
                        if let Some(d) = got {
                            let v = d.ack().unwrap();
                            if v == u64::MAX {
                                return;
                            }
                            seen.lock().push(v);
                        }
                    }
                }));
            }
            for i in 0..n {
                q.put(&i).unwrap();
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // Wait until everything is consumed, then stop every consumer.
            let start = Instant::now();
            while (seen.lock().len() as u64) < n {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{level:?}: {} of {n} consumed, {} waiting",
                    seen.lock().len(),
                    q.len()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            for _ in 0..consumers {
                q.put(&u64::MAX).unwrap();
            }
            for t in threads {
                t.join().unwrap();
            }
            rt.block_on(async {
                for t in tasks {
                    tokio::time::timeout(Duration::from_secs(20), t)
                        .await
                        .expect("a task did not get its stop item")
                        .unwrap();
                }
            });
            let mut v = seen.lock().clone();
            v.sort();
            assert_eq!(v, (0..n).collect::<Vec<_>>(), "{level:?}");
        })
    }
}

/// A clock with microseconds under its milliseconds, moved by hand: the real clocks'
/// readings are truncated to the millisecond the same way.
#[derive(Debug, Default)]
struct MicroClock(std::sync::atomic::AtomicU64);

impl MicroClock {
    fn set_us(&self, us: u64) {
        self.0.store(us, Ordering::SeqCst);
    }
}

impl diskq::Clock for MicroClock {
    fn monotonic(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::SeqCst))
    }
    fn wall_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst) / 1000
    }
    fn wall_ms_ceil(&self) -> u64 {
        self.0.load(Ordering::SeqCst).div_ceil(1000)
    }
    fn sleeps(&self) -> bool {
        false
    }
}

/// A delay was cut short by up to two milliseconds: its due time was the wall clock's
/// reading truncated to the millisecond plus the delay truncated to the millisecond, so an
/// item could come back before its delay had passed (CI saw it once as "item 6 delivered
/// before its delay ended"). Both are rounded up now.
#[test]
fn fixed_nack_after_never_delivers_before_the_delay_has_passed() {
    let clock = Arc::new(MicroClock::default());
    clock.set_us(1_000_900_900);
    let d = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new().clock(clock.clone()).open(d.path()).unwrap();
    q.put(&7).unwrap();
    // Given back at 1,000,900.9 ms for 1.9 ms: due at 1,000,902.8 ms at the earliest.
    q.get_delivery()
        .unwrap()
        .nack_after(Duration::from_micros(1_900))
        .unwrap();
    for us in [1_000_901_000, 1_000_902_000, 1_000_902_799] {
        clock.set_us(us);
        let got = q.get_nowait();
        assert!(
            matches!(&got, Err(e) if e.is_empty()),
            "at {us} us, before the delay ended: {got:?}"
        );
    }
    clock.set_us(1_000_903_000);
    assert_eq!(q.get_nowait().unwrap(), 7);
}

// ---------------------------------------------------------------------------------------
// Probes: the timer thread.

/// Items nacked with delays in a scrambled order come back to one waiting task, each no
/// earlier than due and not much later (the timer thread wakes the task at each due
/// time; a delay added while the task waits wakes it to look again).
#[test]
fn probe_delays_wake_a_waiting_task_on_time_in_due_order() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(Queue::open(d.path()).unwrap());
        let n = 40u32;
        for i in 0..n {
            q.put(&i).unwrap();
        }
        // Due times are wall-clock time (they are recorded on disk), so earliness is
        // judged on the wall clock; a monotonic reading may drift from it by a slew.
        let start = SystemTime::now();
        let mut due = std::collections::HashMap::new();
        for k in 0..n {
            let dl = q.get_delivery().unwrap();
            let i = *dl;
            let ms = 100 + u64::from((k * 17) % n) * 25;
            due.insert(i, start + Duration::from_millis(ms));
            dl.nack_after(Duration::from_millis(ms)).unwrap();
        }
        let rt = rt_current();
        let arrivals: Vec<(u32, SystemTime)> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..n {
                let dl = q.get_delivery_async().await.unwrap();
                v.push((*dl, SystemTime::now()));
                dl.ack().unwrap();
            }
            v
        });
        let mut worst = Duration::ZERO;
        for (i, at) in &arrivals {
            let late = at.duration_since(due[i]).unwrap_or_else(|e| {
                panic!(
                    "item {i} delivered {:?} before its delay ended",
                    e.duration()
                )
            });
            worst = worst.max(late);
        }
        assert!(worst < Duration::from_millis(500), "late by {worst:?}");
    })
}

/// A queue with a lease: a task waits; a hung holder's lease runs out; a second waiter
/// on another queue with a shorter timer is woken first (the heap orders by due time).
#[test]
fn probe_leases_on_two_queues_wake_their_tasks_in_due_order() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let long: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .lease(Duration::from_millis(900))
                .open(d.path().join("long"))
                .unwrap(),
        );
        let short: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .lease(Duration::from_millis(300))
                .open(d.path().join("short"))
                .unwrap(),
        );
        long.put(&1).unwrap();
        short.put(&2).unwrap();
        let hl = long.get_delivery().unwrap();
        let hs = short.get_delivery().unwrap();
        let t0 = Instant::now();
        let rt = rt_multi();
        let (l, s) = (long.clone(), short.clone());
        let a = rt.spawn(async move {
            let d = l.get_delivery_async().await.unwrap();
            (d.ack().unwrap(), t0.elapsed())
        });
        let b = rt.spawn(async move {
            let d = s.get_delivery_async().await.unwrap();
            (d.ack().unwrap(), t0.elapsed())
        });
        let ((x, ta), (y, tb)) = rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) });
        assert_eq!((x, y), (1, 2));
        assert!(
            tb >= Duration::from_millis(290) && tb < Duration::from_millis(800),
            "{tb:?}"
        );
        assert!(
            ta >= Duration::from_millis(890) && ta < Duration::from_millis(2000),
            "{ta:?}"
        );
        assert!(hl.ack().unwrap_err().is_lease_expired());
        assert!(hs.ack().unwrap_err().is_lease_expired());
    })
}

/// The blocking `put` has the same defect (parking_lot's `notify_one` wakes the oldest
/// waiter): the wait-list is shared, so the fix is one.
#[test]
fn fixed_blocked_put_woken_for_room_it_cannot_use_leaves_a_put_that_fits_asleep() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q = Arc::new(bytes_queue(d.path()));
        q.put(&vec![1; 600]).unwrap();
        q.put(&vec![2; 300]).unwrap();
        let qb = q.clone();
        std::thread::spawn(move || {
            let _ = qb.put_timeout(&vec![4; 800], Duration::from_secs(30));
        });
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        let qs = q.clone();
        std::thread::spawn(move || {
            let _ = tx.send(qs.put_timeout(&vec![3; 100], Duration::from_secs(30)));
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(q.get().unwrap().len(), 600);
        let res = rx.recv_timeout(Duration::from_secs(5));
        assert!(
            matches!(res, Ok(Ok(()))),
            "the 100-byte put slept 5 s with room for it: {res:?}"
        );
    })
}

// ---------------------------------------------------------------------------------------
// The timer thread dies with the first waker that panics.

struct PanicWaker;
impl Wake for PanicWaker {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics");
    }
}

/// The body run in a child process by the test below (does nothing otherwise).
#[test]
fn probe_child_body_of_the_panicking_waker_test() {
    if std::env::var_os("REVIEW19_CHILD").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // One queue whose waiting future has a waker that panics when the timer wakes it.
    let q1: Queue<u32> = Options::new()
        .lease(Duration::from_millis(50))
        .open(d.path().join("one"))
        .unwrap();
    let w = Waker::from(Arc::new(PanicWaker));
    let mut f = Box::pin(q1.get_async());
    assert!(f.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
    std::thread::sleep(Duration::from_millis(300));
    // Another queue, nothing to do with the first: a delay that must wake its task.
    let q2: Queue<u32> = Queue::open(d.path().join("two")).unwrap();
    q2.put(&7).unwrap();
    q2.get_delivery()
        .unwrap()
        .nack_after(Duration::from_millis(100))
        .unwrap();
    let t0 = Instant::now();
    let rt = rt_current();
    // (tokio's timeout polls the get once more when it fires: time it, not its result.)
    let got =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), q2.get_async()).await });
    let took = t0.elapsed();
    if matches!(got, Ok(Ok(7))) && took < Duration::from_millis(1500) {
        println!("\n@RESULT OK");
    } else {
        println!("\n@RESULT HUNG {got:?} after {took:?}");
    }
    std::mem::forget(f);
}

/// One waker that panics (a buggy executor, or a user's hand-written future) unwinds
/// the process's only timer thread: from then on no delay, lease or pause poll wakes any
/// future of any queue in the process; they sleep until something else notifies them.
/// `timer()` still hands out the dead thread's `Timer`, so the "no timer thread: look
/// again soon" fallback does not apply either.
#[test]
fn fixed_a_panicking_waker_kills_the_timer_thread_for_every_queue_of_the_process() {
    within(60, || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &crate::common::test_path(
                    module_path!(),
                    "probe_child_body_of_the_panicking_waker_test",
                ),
                "--nocapture",
                "--test-threads=1",
            ])
            .env("REVIEW19_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("@RESULT"))
            .unwrap_or_else(|| panic!("child said nothing: {stdout}"));
        assert_eq!(
            line, "@RESULT OK",
            "after one waker panicked on the timer thread, a nack_after of 100 ms on \
             another queue did not wake its get_async (only tokio's 3 s timeout did)"
        );
    })
}

// ---------------------------------------------------------------------------------------
// Probes: channels.

/// Eight receiver clones wait in tasks; the last sender is dropped: every task sees
/// Disconnected. Then a bounded channel's waiting senders see their receivers go.
#[test]
fn probe_disconnection_wakes_every_waiting_task_on_both_sides() {
    within(60, || {
        let rt = rt_multi();
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = diskq::channel::<u32>(d.path().join("a")).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mut rx = rx.clone();
                rt.spawn(async move { rx.recv_async().await.unwrap_err().is_disconnected() })
            })
            .collect();
        drop(rx);
        std::thread::sleep(Duration::from_millis(100));
        let tx2 = tx.clone();
        drop(tx);
        std::thread::sleep(Duration::from_millis(50));
        drop(tx2);
        rt.block_on(async {
            for t in tasks {
                assert!(
                    tokio::time::timeout(Duration::from_secs(10), t)
                        .await
                        .unwrap()
                        .unwrap()
                );
            }
        });
        let (tx, rx) = diskq::sync_channel::<u32>(d.path().join("b"), 1).unwrap();
        tx.send(0).unwrap();
        let tasks: Vec<_> = (1..5)
            .map(|i| {
                let tx = tx.clone();
                rt.spawn(async move { tx.send_async(i).await.unwrap_err().into_inner() })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let rx2 = rx.clone();
        drop(rx);
        drop(rx2);
        let mut back: Vec<u32> = rt.block_on(async {
            let mut v = Vec::new();
            for t in tasks {
                v.push(
                    tokio::time::timeout(Duration::from_secs(10), t)
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            v
        });
        back.sort();
        assert_eq!(back, [1, 2, 3, 4]);
    })
}

/// Receiver clones on several tasks (recv_async, recv_delivery_async, stream) and a
/// blocking receiver with a ready channel, fed by several send_async tasks into a
/// bounded channel: each item received once, all end at disconnection.
#[test]
fn probe_clones_on_tasks_and_threads_receive_each_item_once() {
    use futures::StreamExt;
    within(120, || {
        let rt = rt_multi();
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = diskq::sync_channel::<u64>(d.path(), 8).unwrap();
        let n_per = 2000u64;
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                rt.spawn(async move {
                    for i in 0..n_per {
                        tx.send_async(p * n_per + i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut rxa = rx.clone();
        let a = rt.spawn(async move {
            let mut v = Vec::new();
            while let Ok(x) = rxa.recv_async().await {
                v.push(x);
            }
            v
        });
        let mut rxb = rx.clone();
        let b = rt.spawn(async move {
            let mut v = Vec::new();
            while let Ok(dl) = rxb.recv_delivery_async().await {
                v.push(dl.ack().unwrap());
            }
            v
        });
        let rxc = rx.clone();
        let c = rt.spawn(async move { rxc.into_stream().collect::<Vec<_>>().await });
        let rxd = rx.clone();
        let t = std::thread::spawn(move || {
            let ready = rxd.ready();
            let mut v = Vec::new();
            loop {
                ready
                    .recv_timeout(Duration::from_secs(30))
                    .expect("ready never signalled");
                match rxd.try_recv() {
                    Ok(x) => v.push(x),
                    Err(diskq::TryRecvError::Empty) => {}
                    Err(diskq::TryRecvError::Disconnected) => return v,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        drop(rx);
        let mut all = rt.block_on(async {
            for p in producers {
                p.await.unwrap();
            }
            let mut all = a.await.unwrap();
            all.extend(b.await.unwrap());
            all.extend(c.await.unwrap());
            all
        });
        all.extend(t.join().unwrap());
        all.sort();
        assert_eq!(all, (0..4 * n_per).collect::<Vec<_>>());
    })
}

/// A stream ends at disconnection and stays ended; its last item is acknowledged when
/// the receiver is dropped.
#[test]
fn probe_a_stream_stays_ended_and_acknowledges_its_last_item() {
    use futures::StreamExt;
    let d = tempfile::tempdir().unwrap();
    {
        let (tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        let mut s = rx.into_stream();
        futures::executor::block_on(async {
            assert_eq!(s.next().await, Some(1));
            assert_eq!(s.next().await, Some(2));
            assert_eq!(s.next().await, None);
            assert_eq!(s.next().await, None);
        });
    }
    let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
    assert!(rx.try_recv().is_err(), "an item came back");
}

/// Dropping a recv_async after it acknowledged the previous item and before it got one:
/// nothing taken; the ready channel stays usable.
#[test]
fn probe_cancelled_recv_async_on_a_receiver_with_a_ready_channel() {
    within(30, || {
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<u32>(d.path()).unwrap();
        let ready = rx.ready();
        let (_c, w) = counting();
        for _ in 0..100 {
            let mut f = Box::pin(rx.recv_async());
            assert!(f.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        }
        tx.send(5).unwrap();
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(rx.try_recv().unwrap(), 5);
    })
}

// ---------------------------------------------------------------------------------------
// Probes: queue edges.

/// A put_async polled while full and dropped stores nothing, even if room came between
/// its polls; a get that makes room wakes the next put_async.
#[test]
fn probe_a_dropped_put_async_stores_nothing() {
    within(30, || {
        let d = tempfile::tempdir().unwrap();
        let q: Queue<u32> = Options::new().max_size(1).open(d.path()).unwrap();
        q.put(&1).unwrap();
        let (c, w) = counting();
        let mut f = Box::pin(q.put_async(&2));
        assert!(f.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        assert_eq!(q.get().unwrap(), 1);
        assert!(c.0.load(Ordering::SeqCst) > 0, "not woken by the get");
        drop(f);
        assert_eq!(q.len(), 0);
        assert!(q.get_nowait().unwrap_err().is_empty());
    })
}

/// max_deliveries with a lease: a task that keeps getting and never settling (hung
/// work) sees the item twice; then it goes to the dead letters and the task waits on,
/// woken by the next put.
#[test]
fn probe_expiring_leases_and_max_deliveries_with_a_waiting_task() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .lease(Duration::from_millis(100))
                .max_deliveries(2)
                .open(d.path())
                .unwrap(),
        );
        q.put(&1).unwrap();
        let rt = rt_multi();
        let qt = q.clone();
        let task = rt.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let dl = qt.get_delivery_async().await.unwrap();
                let (v, a) = (*dl, dl.attempt());
                seen.push((v, a));
                if v == 2 {
                    dl.ack().unwrap();
                    return seen;
                }
                let _ = dl.into_inner(); // hung: the lease runs out
            }
        });
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(q.dead_letters().len(), 1);
        q.put(&2).unwrap();
        let seen = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        assert_eq!(seen.unwrap().unwrap(), [(1, 1), (1, 2), (2, 1)]);
    })
}

/// Pause and resume with async and blocking consumers waiting on one queue; puts while
/// paused; everything delivered once after the resume.
#[test]
fn probe_pause_resume_with_tasks_and_threads_waiting() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .durability(Durability::Buffered)
                .open(d.path())
                .unwrap(),
        );
        q.pause().unwrap();
        let rt = rt_multi();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                rt.spawn(async move { q.get_delivery_async().await.unwrap().ack().unwrap() })
            })
            .collect();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.get_delivery().unwrap().ack().unwrap())
            })
            .collect();
        for i in 0..6 {
            q.put(&i).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(q.len(), 6, "a consumer took an item while paused");
        q.resume().unwrap();
        let mut got: Vec<u32> = rt.block_on(async {
            let mut v = Vec::new();
            for t in tasks {
                v.push(
                    tokio::time::timeout(Duration::from_secs(10), t)
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            v
        });
        got.extend(threads.into_iter().map(|t| t.join().unwrap()));
        got.sort();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    })
}

/// A bounded queue (max_size 1) with put_async and get_async in one current-thread
/// runtime, and on futures::executor with a producer thread.
#[test]
fn probe_current_thread_and_futures_executor_ping_pong() {
    within(60, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> =
            Arc::new(Options::new().max_size(1).open(d.path().join("a")).unwrap());
        let rt = rt_current();
        let n = 2000;
        let got = rt.block_on(async {
            let qp = q.clone();
            let p = tokio::spawn(async move {
                for i in 0..n {
                    qp.put_async(&i).await.unwrap();
                }
            });
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(q.get_async().await.unwrap());
                q.task_done().unwrap();
            }
            p.await.unwrap();
            v
        });
        assert_eq!(got, (0..n).collect::<Vec<_>>());

        let q: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .max_size(2)
                .durability(Durability::Buffered)
                .open(d.path().join("b"))
                .unwrap(),
        );
        let qp = q.clone();
        let p = std::thread::spawn(move || {
            for i in 0..n {
                futures::executor::block_on(qp.put_async(&i)).unwrap();
            }
        });
        let got: Vec<u32> = futures::executor::block_on(async {
            let mut v = Vec::new();
            for _ in 0..n {
                let dl = q.get_delivery_async().await.unwrap();
                v.push(dl.ack().unwrap());
            }
            v
        });
        p.join().unwrap();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    })
}
