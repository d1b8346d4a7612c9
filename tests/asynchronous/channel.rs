//! The channel's `send_async`, `recv_async`, `recv_delivery_async`, `stream` and
//! `into_stream`.

use crate::assert_send;
use futures::StreamExt;
use std::time::Duration;

#[test]
fn send_async_and_recv_async_on_both_tokio_runtimes_and_futures_executor() {
    crate::within(120, || {
        let n = 10_000u64;
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for rt in [&multi, &current] {
            let d = tempfile::tempdir().unwrap();
            let (tx, mut rx) = diskq::channel::<u64>(d.path()).unwrap();
            let p = rt.spawn(assert_send(async move {
                for i in 0..n {
                    tx.send_async(i).await.unwrap();
                }
            }));
            let got = rt.block_on(async move {
                let mut got = Vec::new();
                // Ends once the sender is gone and the items are drained.
                while let Ok(i) = rx.recv_async().await {
                    got.push(i);
                }
                got
            });
            rt.block_on(p).unwrap();
            assert_eq!(got, (0..n).collect::<Vec<_>>());
        }
        // futures::executor, the sender on a thread.
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = diskq::channel::<u64>(d.path()).unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..n {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u64> = futures::executor::block_on(rx.into_stream().collect());
        t.join().unwrap();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    })
}

#[test]
fn recv_async_on_a_spawned_task_is_send_and_ends_with_disconnected() {
    crate::within(120, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<String>(d.path()).unwrap();
        let receiver = rt.spawn(async move {
            let first = rx.recv_async().await;
            let second = rx.recv_async().await;
            (first, second)
        });
        rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            tx.send_async("one".into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(tx); // a waiting receive must wake and see the disconnection
        });
        let (first, second) = rt.block_on(receiver).unwrap();
        assert_eq!(first.unwrap(), "one");
        assert!(second.unwrap_err().is_disconnected());
    })
}

#[test]
fn send_async_waits_on_a_full_bounded_channel_until_a_receive() {
    crate::within(120, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::sync_channel::<u32>(d.path(), 1).unwrap();
        rt.block_on(async move {
            tx.send_async(1).await.unwrap();
            let sender = tokio::spawn(async move { tx.send_async(2).await.map(|()| tx) });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!sender.is_finished(), "send_async did not wait while full");
            assert_eq!(rx.recv_async().await.unwrap(), 1);
            let tx = tokio::time::timeout(Duration::from_secs(10), sender)
                .await
                .expect("send_async not woken by the receive")
                .unwrap()
                .unwrap();
            assert_eq!(rx.recv_async().await.unwrap(), 2);
            drop(rx);
            // Every receiver gone: the item comes back in the error.
            assert_eq!(tx.send_async(3).await.unwrap_err().into_inner(), 3);
        });
    })
}

#[test]
fn stream_acknowledges_each_item_when_the_next_is_asked_for() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<u32>(d.path()).unwrap();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        futures::executor::block_on(async {
            let mut s = rx.stream();
            assert_eq!(s.next().await, Some(0));
            assert_eq!(s.next().await, Some(1));
        });
        // Item 1 is in progress (unacknowledged), 0 is done: after a reopen, 1 comes first.
        std::mem::forget(rx); // as a crash: no acknowledgement on drop
        drop(tx);
        // The forgotten receiver still holds the lock in this process: open a copy of the
        // files as the crash left them.
        let copy = crate::common::crash_copy(d.path());
        let (_tx, rx) = diskq::channel::<u32>(copy.path()).unwrap();
        assert_eq!(rx.try_recv().unwrap(), 1);
    })
}

#[test]
fn recv_delivery_async_hands_an_item_to_another_task_to_acknowledge() {
    crate::within(120, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<u32>(d.path()).unwrap();
        rt.block_on(async {
            for i in 0..100 {
                tx.send_async(i).await.unwrap();
            }
            let mut workers = Vec::new();
            for _ in 0..100 {
                let job = rx.recv_delivery_async().await.unwrap();
                workers.push(tokio::spawn(async move { job.ack().unwrap() }));
            }
            let mut done = Vec::new();
            for w in workers {
                done.push(w.await.unwrap());
            }
            done.sort_unstable();
            assert_eq!(done, (0..100).collect::<Vec<_>>());
        });
        drop(rx);
        drop(tx);
        let (_tx, rx) = diskq::channel::<u32>(d.path()).unwrap();
        assert!(rx.is_empty(), "every delivery was acknowledged");
    })
}
