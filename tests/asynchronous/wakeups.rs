//! Wake-ups: a wait-list notifies its futures only while some listener holds no
//! notification (`waitlist.rs`). Many tasks sleep and wake on one queue, some of their
//! gets cancelled while notified, so that notifications are skipped, passed on and
//! ended in every order; a lost wake-up leaves a task asleep with an item waiting,
//! which the watchdog reports.

use diskq::{Options, Queue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const STOP: u64 = u64::MAX;

/// A consumer task: takes items until it takes `STOP`; every third get races a
/// `yield_now`, so many gets are dropped after registering (some after being notified).
async fn consumer(q: Arc<Queue<u64>>, cancelled: Arc<AtomicU64>) -> Vec<u64> {
    let mut got = Vec::new();
    let mut round = 0u64;
    loop {
        round += 1;
        let i = if round.is_multiple_of(3) {
            tokio::select! {
                biased;
                r = q.get_async() => r.unwrap(),
                _ = tokio::task::yield_now() => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            q.get_async().await.unwrap()
        };
        q.task_done().unwrap();
        if i == STOP {
            return got;
        }
        got.push(i);
    }
}

fn run(rt: tokio::runtime::Runtime, tasks: usize, n: u64) {
    let d = tempfile::tempdir().unwrap();
    // Bounded: the producers' `put_async`s wait on the other wait-list meanwhile.
    let q: Arc<Queue<u64>> = Arc::new(Options::new().max_size(8).open(d.path()).unwrap());
    let cancelled = Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..tasks)
        .map(|_| rt.spawn(consumer(q.clone(), cancelled.clone())))
        .collect();
    // Two producers: a thread that pauses now and then, so that the tasks fall asleep
    // between its items, and a task.
    let qt = q.clone();
    let thread = std::thread::spawn(move || {
        for i in (0..n).step_by(2) {
            qt.put(&i).unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    });
    // The runtime is driven throughout (a current-thread runtime runs its tasks only
    // inside `block_on`), or the thread could wait on a full queue forever.
    let mut all: Vec<u64> = rt.block_on(async move {
        for i in (1..n).step_by(2) {
            q.put_async(&i).await.unwrap();
        }
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        for _ in 0..tasks {
            q.put_async(&STOP).await.unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all
    });
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert!(
        cancelled.load(Ordering::Relaxed) > 0,
        "no get was cancelled"
    );
}

#[test]
fn many_tasks_sleeping_and_cancelled_on_one_queue_miss_no_wake_up() {
    crate::within(120, || {
        for workers in [1, 2, 4] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .unwrap();
            run(rt, 8, 20_000);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        run(rt, 8, 20_000);
    })
}
