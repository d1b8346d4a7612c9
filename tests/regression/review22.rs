//! Hostile review of d6cbf40: `WaitList` counts the notifications its listeners hold
//! (`armed`) and skips `Event::notify` while `armed >= listening`.
//!
//! `probe_*` tests exercise a claim of the change under stress and pass; a lost wake-up
//! would show as a hang, which the watchdog turns into a failure. (No `bug_*` test: no
//! lost wake-up was found; an exhaustive check of the wait-list's interleavings in
//! a scratch model, two producers and two consumers, found none either.)

use crate::common::within;
use diskq::{Durability, Options, Queue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const STOP: u64 = u64::MAX;

fn rt(workers: usize) -> tokio::runtime::Runtime {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    }
}

/// A consumer task on a queue: gets until `STOP`, its gets raced (by `round % 4`)
/// against a yield (cancelled while registered or notified), a short timer, or nothing.
async fn consumer(q: Arc<Queue<u64>>, cancelled: Arc<AtomicU64>, seed: u64) -> Vec<u64> {
    let mut got = Vec::new();
    let mut round = seed;
    loop {
        round = round
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = match (round >> 33) % 4 {
            0 => tokio::select! {
                biased;
                r = q.get_async() => r.unwrap(),
                _ = tokio::task::yield_now() => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
            1 => match tokio::time::timeout(Duration::from_micros(40), q.get_async()).await {
                Ok(r) => r.unwrap(),
                Err(_) => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
            _ => q.get_async().await.unwrap(),
        };
        q.task_done().unwrap();
        if i == STOP {
            return got;
        }
        got.push(i);
    }
}

/// Runs `tasks` consumer tasks and `threads` blocking consumer threads against producer
/// threads (`put`) and producer tasks (`put_async`, some raced against a yield) on `q`.
fn run_queue(q: Queue<u64>, workers: usize, tasks: usize, threads: usize, n: u64) {
    let rt = rt(workers);
    let q = Arc::new(q);
    let cancelled = Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..tasks)
        .map(|i| rt.spawn(consumer(q.clone(), cancelled.clone(), i as u64 + 1)))
        .collect();
    let blocking: Vec<_> = (0..threads)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let i = q.get().unwrap();
                    q.task_done().unwrap();
                    if i == STOP {
                        return got;
                    }
                    got.push(i);
                }
            })
        })
        .collect();
    // Producers: thread A puts 0, 3, 6, ... (pausing now and then so consumers sleep);
    // task B puts 1, 4, 7, ... with put_async, its puts raced against a yield; task C
    // puts 2, 5, 8, ... with put_async.
    let qa = q.clone();
    let ta = std::thread::spawn(move || {
        for i in (0..n).step_by(3) {
            qa.put(&i).unwrap();
            if i % 90 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let qb = q.clone();
    let cb = cancelled.clone();
    let tb = rt.spawn(async move {
        let mut i = 1;
        while i < n {
            tokio::select! {
                biased;
                r = qb.put_async(&i) => { r.unwrap(); i += 3; }
                _ = tokio::task::yield_now() => { cb.fetch_add(1, Ordering::Relaxed); }
            }
        }
    });
    let qc = q.clone();
    let tc = rt.spawn(async move {
        for i in (2..n).step_by(3) {
            qc.put_async(&i).await.unwrap();
        }
    });
    let mut all: Vec<u64> = rt.block_on(async move {
        tb.await.unwrap();
        tc.await.unwrap();
        tokio::task::spawn_blocking(move || ta.join().unwrap())
            .await
            .unwrap();
        for _ in 0..tasks + threads {
            q.put_async(&STOP).await.unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all
    });
    for b in blocking {
        all.extend(b.join().unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

/// Bounded queue (`max_size`): `put_async`s wait on `not_full` (one `notify_one` per
/// get), gets on `not_empty`; tasks and threads on both sides, cancellations and timers.
#[test]
fn probe_bounded_put_async_and_get_async_with_cancels_and_timers() {
    within(60, || {
        let start = Instant::now();
        let mut round = 0;
        while start.elapsed() < Duration::from_secs(3) {
            for (workers, bound) in [(1, 1), (2, 3), (4, 8), (0, 2)] {
                let d = tempfile::tempdir().unwrap();
                let q = Options::new().max_size(bound).open(d.path()).unwrap();
                run_queue(q, workers, 6, (round % 2) as usize, 3_000);
            }
            round += 1;
        }
    })
}

/// `max_bytes`: a get wakes every `put_async` (`notify_all`), which the skip may drop
/// while they all hold one; items of different sizes.
#[test]
fn probe_max_bytes_put_async_mixed_sizes() {
    within(60, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for workers in [1, 2, 0] {
                let d = tempfile::tempdir().unwrap();
                let q: Arc<Queue<Vec<u8>>> =
                    Arc::new(Options::new().max_bytes(600).open(d.path()).unwrap());
                let rt = rt(workers);
                let n = 1500usize;
                let producers: Vec<_> = (0..4)
                    .map(|p| {
                        let q = q.clone();
                        rt.spawn(async move {
                            let mut k = p;
                            while k < n {
                                let item = vec![p as u8; 10 + (k * 37) % 200];
                                tokio::select! {
                                    biased;
                                    r = q.put_async(&item) => { r.unwrap(); k += 4; }
                                    _ = tokio::task::yield_now() => {}
                                }
                            }
                        })
                    })
                    .collect();
                let qc = q.clone();
                let got = rt.block_on(async move {
                    let mut got = 0;
                    while got < n {
                        let _ = qc.get_async().await.unwrap();
                        qc.task_done().unwrap();
                        got += 1;
                        if got % 64 == 0 {
                            tokio::time::sleep(Duration::from_micros(100)).await;
                        }
                    }
                    for p in producers {
                        p.await.unwrap();
                    }
                    got
                });
                assert_eq!(got, n);
            }
        }
    })
}

/// `Durability::Buffered`, unbounded: puts leave items in the intake and wake a
/// consumer only while one is counted asleep (`Asleep`), through the queue lock.
#[test]
fn probe_buffered_intake_async_consumers() {
    within(60, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for workers in [1, 2, 4, 0] {
                let d = tempfile::tempdir().unwrap();
                let q = Options::new()
                    .durability(Durability::Buffered)
                    .open(d.path())
                    .unwrap();
                run_queue(q, workers, 6, 1, 6_000);
            }
        }
    })
}

/// `nack_after`: a delay given back wakes every waiter (`notify_all`, "their next timer
/// changed"), and waiters sleep with a timer (`Notified`'s sleep) until the item is due;
/// gets racing yields are cancelled while notified. Every item is acknowledged once.
#[test]
fn probe_nack_after_delays_wake_async_waiters() {
    within(60, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for workers in [2, 0] {
                let rt = rt(workers);
                let d = tempfile::tempdir().unwrap();
                let q: Arc<Queue<u64>> = Arc::new(Queue::open(d.path()).unwrap());
                let n = 400u64;
                let acked = Arc::new(AtomicU64::new(0));
                let tasks: Vec<_> = (0..5u64)
                    .map(|t| {
                        let q = q.clone();
                        let acked = acked.clone();
                        rt.spawn(async move {
                            let mut r = t;
                            loop {
                                r = r.wrapping_mul(6364136223846793005).wrapping_add(1);
                                let dl = if (r >> 40) % 3 == 0 {
                                    tokio::select! {
                                        biased;
                                        dl = q.get_delivery_async() => dl.unwrap(),
                                        _ = tokio::task::yield_now() => continue,
                                    }
                                } else {
                                    q.get_delivery_async().await.unwrap()
                                };
                                let v = *dl;
                                if v == STOP {
                                    dl.ack().unwrap();
                                    return;
                                }
                                if (r >> 20) % 4 == 0 {
                                    dl.nack_after(Duration::from_micros(300)).unwrap();
                                } else {
                                    dl.ack().unwrap();
                                    acked.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        })
                    })
                    .collect();
                for i in 0..n {
                    q.put(&i).unwrap();
                    if i % 20 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
                rt.block_on(async {
                    while acked.load(Ordering::SeqCst) < n {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    for _ in 0..5 {
                        q.put(&STOP).unwrap();
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            }
        }
    })
}

/// The channel: `sync_channel` with `send_async` senders (some raced against yields:
/// the item comes back in the error-free branch only when stored), receivers by
/// `recv_async` raced against yields and timers, and a stream whose `next()` is
/// cancelled by a timeout while its `Waiting` stays registered in the stream.
#[test]
fn probe_channel_async_senders_receivers_and_parked_stream() {
    use futures::StreamExt;
    within(60, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for (workers, bound) in [(2, 1), (4, 4), (0, 2), (1, 3)] {
                let rt = rt(workers);
                let d = tempfile::tempdir().unwrap();
                let (tx, rx) = diskq::sync_channel::<u64>(d.path(), bound).unwrap();
                let n = 2_000u64;
                let senders: Vec<_> = (0..3u64)
                    .map(|s| {
                        let tx = tx.clone();
                        rt.spawn(async move {
                            let mut i = s;
                            while i < n {
                                if i % 5 == 0 {
                                    tokio::select! {
                                        biased;
                                        r = tx.send_async(i) => { r.unwrap(); i += 3; }
                                        _ = tokio::task::yield_now() => {}
                                    }
                                } else {
                                    tx.send_async(i).await.unwrap();
                                    i += 3;
                                }
                            }
                        })
                    })
                    .collect();
                drop(tx);
                let receivers: Vec<_> = (0..3u64)
                    .map(|r| {
                        let mut rx = rx.clone();
                        rt.spawn(async move {
                            let mut got = Vec::new();
                            let mut k = r;
                            if r == 0 {
                                // A stream, its next() sometimes cancelled by a timeout.
                                let mut st = rx.stream();
                                loop {
                                    k += 1;
                                    if k % 3 == 0 {
                                        match tokio::time::timeout(
                                            Duration::from_micros(30),
                                            st.next(),
                                        )
                                        .await
                                        {
                                            Ok(Some(i)) => got.push(i),
                                            Ok(None) => return got,
                                            Err(_) => {}
                                        }
                                    } else {
                                        match st.next().await {
                                            Some(i) => got.push(i),
                                            None => return got,
                                        }
                                    }
                                }
                            }
                            loop {
                                k += 1;
                                let r = if k % 3 == 0 {
                                    tokio::select! {
                                        biased;
                                        r = rx.recv_async() => r,
                                        _ = tokio::task::yield_now() => continue,
                                    }
                                } else {
                                    rx.recv_async().await
                                };
                                match r {
                                    Ok(i) => got.push(i),
                                    Err(e) if e.is_disconnected() => return got,
                                    Err(e) => panic!("{e}"),
                                }
                            }
                        })
                    })
                    .collect();
                drop(rx);
                let mut all = rt.block_on(async move {
                    for s in senders {
                        s.await.unwrap();
                    }
                    let mut all = Vec::new();
                    for r in receivers {
                        all.extend(r.await.unwrap());
                    }
                    all
                });
                all.sort_unstable();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    })
}
