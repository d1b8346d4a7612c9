//! Cancellation: a future dropped before it completes (the losing branch of a
//! `select!`) has taken nothing and stored nothing.

use diskq::{Options, Queue};
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The consumer's side of the select loops: a receive raced against a branch that is
/// ready after one yield (so most receives are polled once and dropped) or a timer.
#[test]
fn a_select_loop_that_cancels_thousands_of_receives_loses_and_repeats_nothing() {
    crate::within(120, || {
        let rt = runtime();
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<u64>(d.path()).unwrap();
        let n = 20_000u64;
        let producer = rt.spawn(async move {
            for i in 0..n {
                tx.send_async(i).await.unwrap();
                if i % 16 == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        });
        let (got, cancelled) = rt.block_on(async move {
            let (mut got, mut cancelled) = (Vec::new(), 0u64);
            let mut round = 0u64;
            loop {
                round += 1;
                tokio::select! {
                    biased;
                    r = rx.recv_async() => match r {
                        Ok(i) => got.push(i),
                        Err(e) => { assert!(e.is_disconnected(), "{e}"); break; }
                    },
                    _ = tokio::task::yield_now(), if !round.is_multiple_of(3) => cancelled += 1,
                    _ = tokio::time::sleep(Duration::from_micros(100)) => cancelled += 1,
                }
            }
            (got, cancelled)
        });
        rt.block_on(producer).unwrap();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert!(
            cancelled >= 1000,
            "only {cancelled} receives were cancelled"
        );
    })
}

#[test]
fn cancelled_gets_and_deliveries_of_a_queue_take_nothing() {
    crate::within(120, || {
        let rt = runtime();
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u64>> = Arc::new(Queue::open(d.path()).unwrap());
        let n = 10_000u64;
        let qp = q.clone();
        let producer = rt.spawn(async move {
            for i in 0..n {
                qp.put_async(&i).await.unwrap();
                if i % 16 == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        });
        let (got, cancelled) = rt.block_on(async {
            let (mut got, mut cancelled) = (Vec::new(), 0u64);
            while (got.len() as u64) < n {
                let by_delivery = got.len() % 2 == 0;
                tokio::select! {
                    biased;
                    i = q.get_async(), if !by_delivery => {
                        got.push(i.unwrap());
                        q.task_done().unwrap();
                    }
                    d = q.get_delivery_async(), if by_delivery => got.push(d.unwrap().ack().unwrap()),
                    _ = tokio::task::yield_now() => cancelled += 1,
                }
            }
            (got, cancelled)
        });
        rt.block_on(producer).unwrap();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert!(cancelled >= 500, "only {cancelled} gets were cancelled");
        assert_eq!(q.unfinished(), 0, "a cancelled get took an item");
    })
}

#[test]
fn a_cancelled_put_async_did_not_store_its_item() {
    crate::within(120, || {
        let rt = runtime();
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u64>> = Arc::new(Options::new().max_size(4).open(d.path()).unwrap());
        let qc = q.clone();
        // A slow consumer keeps the queue full, so that puts wait and many are cancelled.
        let consumer = rt.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = qc.get_async().await.unwrap();
                qc.task_done().unwrap();
                if i == u64::MAX {
                    return got;
                }
                got.push(i);
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        });
        let (stored, cancelled) = rt.block_on(async {
            let (mut stored, mut cancelled) = (Vec::new(), 0u64);
            for i in 0..3000u64 {
                tokio::select! {
                    biased;
                    r = q.put_async(&i) => { r.unwrap(); stored.push(i); }
                    _ = tokio::task::yield_now() => cancelled += 1,
                }
            }
            q.put_async(&u64::MAX).await.unwrap();
            (stored, cancelled)
        });
        let got = rt.block_on(consumer).unwrap();
        assert!(cancelled >= 100, "only {cancelled} puts were cancelled");
        assert!(stored.len() < 3000);
        // Exactly the puts that completed are in the queue, in order.
        assert_eq!(got, stored);
    })
}
