//! Waits that end by a timer, with nothing notifying: a delayed retry comes due, a lease
//! runs out, a pause from another process is lifted. The library has no executor: its
//! timer thread wakes the futures.

use diskq::{Options, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn get_async_wakes_when_a_delayed_retry_comes_due() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let q: Queue<u32> = Queue::open(d.path()).unwrap();
        q.put(&7).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_millis(300))
            .unwrap();
        let start = Instant::now();
        // futures::executor has no timer of its own either.
        let d = futures::executor::block_on(q.get_delivery_async()).unwrap();
        let waited = start.elapsed();
        assert_eq!((*d, d.attempt()), (7, 2));
        assert!(
            waited >= Duration::from_millis(290),
            "delivered early: {waited:?}"
        );
        d.ack().unwrap();
    })
}

#[test]
fn get_async_wakes_when_a_lease_runs_out() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(
            Options::new()
                .lease(Duration::from_millis(200))
                .open(d.path())
                .unwrap(),
        );
        q.put(&9).unwrap();
        let held = q.get_delivery().unwrap(); // a hung worker: never settled
        let rt = runtime();
        let again = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), q.get_delivery_async())
                .await
                .expect("not woken when the lease ran out")
                .unwrap()
        });
        assert_eq!((*again, again.attempt()), (9, 2));
        assert!(held.ack().unwrap_err().is_lease_expired());
        again.ack().unwrap();
    })
}

#[test]
fn get_async_waits_while_paused_in_process_and_from_outside() {
    crate::within(120, || {
        let rt = runtime();
        let d = tempfile::tempdir().unwrap();
        let q: Arc<Queue<u32>> = Arc::new(Queue::open(d.path()).unwrap());
        q.put(&1).unwrap();
        q.put(&2).unwrap();
        // In process: resume wakes the waiting task.
        q.pause().unwrap();
        let qg = q.clone();
        let first = rt.spawn(async move { qg.get_async().await });
        std::thread::sleep(Duration::from_millis(150));
        assert!(!first.is_finished(), "a get went on while paused");
        q.resume().unwrap();
        let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), first).await });
        assert_eq!(
            got.expect("resume did not wake the task").unwrap().unwrap(),
            1
        );
        q.task_done().unwrap();
        // From outside (`diskq pause` in another process): seen at the next poll.
        diskq::pause(d.path()).unwrap();
        std::thread::sleep(Duration::from_millis(250)); // longer than the 100 ms poll
        let qg = q.clone();
        let second = rt.spawn(async move { qg.get_async().await });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !second.is_finished(),
            "a get went on while paused from outside"
        );
        diskq::resume(d.path()).unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), second).await });
        assert_eq!(
            got.expect("a resume from outside was not seen")
                .unwrap()
                .unwrap(),
            2
        );
    })
}

#[test]
fn a_channel_receive_waits_for_a_delayed_item_before_disconnecting() {
    crate::within(120, || {
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = diskq::channel::<u32>(d.path()).unwrap();
        tx.send(5).unwrap();
        drop(tx);
        futures::executor::block_on(async {
            let job = rx.recv_delivery_async().await.unwrap();
            job.nack_after(Duration::from_millis(200)).unwrap();
            // No sender, but an item waits out a delay: the receive waits for it.
            let again = rx.recv_delivery_async().await.unwrap();
            assert_eq!((*again, again.attempt()), (5, 2));
            again.ack().unwrap();
            assert!(rx.recv_async().await.unwrap_err().is_disconnected());
        });
    })
}
