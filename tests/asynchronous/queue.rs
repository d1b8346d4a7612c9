//! `Queue::{put_async, get_async, get_delivery_async}`.

use crate::assert_send;
use diskq::{Durability, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

fn open(level: Durability, dir: &std::path::Path) -> Arc<Queue<u64>> {
    Arc::new(Options::new().durability(level).open(dir).unwrap())
}

/// A producer task and a consumer task: every item once, in order.
async fn producer_and_consumer(q: Arc<Queue<u64>>, n: u64) {
    let p = {
        let q = q.clone();
        tokio::spawn(assert_send(async move {
            for i in 0..n {
                q.put_async(&i).await.unwrap();
                if i % 97 == 0 {
                    tokio::task::yield_now().await; // let the consumer run dry
                }
            }
        }))
    };
    let c = tokio::spawn(assert_send(async move {
        let mut got = Vec::with_capacity(n as usize);
        for _ in 0..n {
            got.push(q.get_async().await.unwrap());
            q.task_done().unwrap();
        }
        got
    }));
    p.await.unwrap();
    let got = c.await.unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

#[test]
fn a_producer_and_a_consumer_task_on_the_multi_threaded_runtime_at_every_level() {
    crate::within(120, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        for level in [
            Durability::Buffered,
            Durability::Written,
            Durability::Synced,
        ] {
            let d = tempfile::tempdir().unwrap();
            let n = if level == Durability::Synced {
                300
            } else {
                20_000
            };
            rt.block_on(producer_and_consumer(open(level, d.path()), n));
        }
    })
}

#[test]
fn a_producer_and_a_consumer_task_on_the_current_thread_runtime() {
    crate::within(120, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for level in [Durability::Buffered, Durability::Written] {
            let d = tempfile::tempdir().unwrap();
            rt.block_on(producer_and_consumer(open(level, d.path()), 20_000));
        }
    })
}

#[test]
fn futures_executor_waits_for_a_put_from_a_thread() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let q = open(Durability::Written, d.path());
        let putter = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                q.put(&42).unwrap();
            })
        };
        // Nothing there yet: the future must sleep and be woken by the put.
        let got = futures::executor::block_on(q.get_async()).unwrap();
        assert_eq!(got, 42);
        putter.join().unwrap();
    })
}

#[test]
fn blocking_threads_and_async_tasks_on_one_queue_see_each_item_once() {
    crate::within(120, || {
        // FIFO `task_done` acknowledges the oldest item gotten by anyone, so consumers
        // that use it cannot share a queue with consumers that `ack` deliveries: each
        // round uses one kind.
        for (level, deliveries) in [
            (Durability::Buffered, false),
            (Durability::Written, false),
            (Durability::Written, true),
        ] {
            let d = tempfile::tempdir().unwrap();
            let q = open(level, d.path());
            let n = 40_000u64;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let stop = u64::MAX;
            // Two blocking consumers on threads, two async consumers as tasks.
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            let i = if deliveries {
                                q.get_delivery().unwrap().ack().unwrap()
                            } else {
                                let i = q.get().unwrap();
                                q.task_done().unwrap();
                                i
                            };
                            if i == stop {
                                return got;
                            }
                            got.push(i);
                        }
                    })
                })
                .collect();
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    rt.spawn(async move {
                        let mut got = Vec::new();
                        loop {
                            let i = if deliveries {
                                q.get_delivery_async().await.unwrap().ack().unwrap()
                            } else {
                                let i = q.get_async().await.unwrap();
                                q.task_done().unwrap();
                                i
                            };
                            if i == stop {
                                return got;
                            }
                            got.push(i);
                        }
                    })
                })
                .collect();
            // Producers: one thread, one task.
            let half = n / 2;
            let qt = q.clone();
            let t = std::thread::spawn(move || (0..half).for_each(|i| qt.put(&i).unwrap()));
            let qa = q.clone();
            rt.block_on(async move {
                for i in half..n {
                    qa.put_async(&i).await.unwrap();
                }
            });
            t.join().unwrap();
            for _ in 0..4 {
                q.put(&stop).unwrap();
            }
            let mut all: Vec<u64> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            for t in tasks {
                all.extend(rt.block_on(t).unwrap());
            }
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "{level:?} {deliveries}");
            q.join();
        }
    })
}

#[test]
fn put_async_waits_while_full_and_goes_on_when_a_get_makes_room() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u64>> = Arc::new(Options::new().max_size(2).open(d.path()).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            q.put_async(&1).await.unwrap();
            q.put_async(&2).await.unwrap();
            let qp = q.clone();
            let third = tokio::spawn(async move { qp.put_async(&3).await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!third.is_finished(), "put_async did not wait while full");
            assert_eq!(q.len(), 2);
            assert_eq!(q.get_async().await.unwrap(), 1);
            tokio::time::timeout(Duration::from_secs(10), third)
                .await
                .expect("put_async not woken by the get")
                .unwrap()
                .unwrap();
            assert_eq!(q.get_async().await.unwrap(), 2);
            assert_eq!(q.get_async().await.unwrap(), 3);
        });
    })
}

#[test]
fn the_futures_are_send_and_a_queue_is_shared_by_spawned_tasks() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let q = open(Durability::Written, d.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..8u64)
            .map(|i| {
                let q = q.clone();
                rt.spawn(async move { q.put_async(&i).await })
            })
            .collect();
        for h in handles {
            rt.block_on(h).unwrap().unwrap();
        }
        let mut got: Vec<u64> = (0..8)
            .map(|_| rt.block_on(q.get_async()).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    })
}
