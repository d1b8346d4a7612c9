//! Redis stopped mid-run, or down from the start: the forwarder waits and retries, the
//! queue goes on taking puts, and nothing is lost or added twice.

use crate::server::{RedisServer, read_stream};
use crate::{Job, assert_jobs_once_in_order, job};
use diskq::Queue;
use diskq::forward::Forwarder;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn redis_stopped_mid_run_and_started_again_loses_and_repeats_nothing() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let stop = AtomicBool::new(false);
    let n = 30_000u64;
    let stats = std::thread::scope(|s| {
        let fwd = s.spawn(|| {
            let mut f = Forwarder::new(&q, &url, "jobs")
                .unwrap()
                .batch_size(64)
                .backoff(Duration::from_millis(10), Duration::from_millis(200));
            f.run_until(&stop).unwrap();
            f.stats().clone()
        });
        let put = |range: std::ops::Range<u64>| {
            for i in range {
                q.put(&job(i)).unwrap();
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        put(0..10_000);
        redis.stop();
        put(10_000..20_000); // the queue takes puts while Redis is down
        std::thread::sleep(Duration::from_millis(300));
        redis.restart();
        put(20_000..n);
        wait_until("the forwarder catches up", || q.unfinished() == 0);
        stop.store(true, Ordering::Release);
        fwd.join().unwrap()
    });
    assert!(stats.retries > 0, "the outage went unnoticed: {stats:?}");
    assert!(stats.last_error.is_some());
    assert_eq!(stats.forwarded + stats.duplicates, n);
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), n, 0);
}

#[test]
fn redis_down_from_the_start_is_waited_for() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.stop();
    let url = redis.url();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..1000).map(job).collect::<Vec<_>>()).unwrap();
    let stats = std::thread::scope(|s| {
        let fwd = s.spawn(|| {
            let mut f = Forwarder::new(&q, &url, "jobs")
                .unwrap()
                .backoff(Duration::from_millis(10), Duration::from_millis(100));
            let n = f.forward_all().unwrap(); // waits for Redis, however long
            (n, f.stats().clone())
        });
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            q.unfinished(),
            1000,
            "nothing acknowledged while Redis is down"
        );
        redis.restart();
        fwd.join().unwrap()
    });
    assert_eq!(stats.0, 1000);
    assert!(stats.1.retries >= 2, "{:?}", stats.1);
    assert!(
        stats
            .1
            .last_error
            .as_deref()
            .unwrap()
            .contains("redis stream jobs"),
        "{:?}",
        stats.1.last_error
    );
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), 1000, 0);
}
