//! Hostile review of `diskq::forward` (review20). Tests named `bug_...` expose a defect
//! and fail on the reviewed code; `probe_...` tests looked for one and found none. Every
//! wait is bounded.

use crate::common::crash_copy;
use crate::server::{RedisServer, read_stream};
use crate::{Job, assert_jobs_once_in_order, job};
use diskq::forward::{Encoding, ForwardError, Forwarder};
use diskq::{Durability, Options, Queue};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// A TCP proxy between the forwarder and Redis, to stage what a network (or a stalled
// Redis) does: hold a connection's requests and deliver them later, swallow replies.
// ---------------------------------------------------------------------------------

const NONE: usize = usize::MAX;

struct ProxyState {
    upstream: u16,
    next_id: AtomicUsize,
    /// The connection whose requests are held back (not delivered to Redis).
    hold_requests_of: AtomicUsize,
    /// Replies from Redis are dropped instead of passed on.
    hold_replies: AtomicBool,
    /// The connection whose replies are dropped.
    hold_replies_of: AtomicUsize,
    /// When another connection sends an XADD, the held requests are delivered first.
    release_before_xadd: AtomicBool,
    /// Held requests: the connection's upstream socket and the bytes.
    held: Mutex<Vec<(TcpStream, Vec<u8>)>>,
    released: AtomicBool,
}

struct Proxy {
    port: u16,
    st: Arc<ProxyState>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let st = Arc::new(ProxyState {
            upstream,
            next_id: AtomicUsize::new(0),
            hold_requests_of: AtomicUsize::new(NONE),
            hold_replies: AtomicBool::new(false),
            hold_replies_of: AtomicUsize::new(NONE),
            release_before_xadd: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
        });
        let st2 = st.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { return };
                let st = st2.clone();
                std::thread::spawn(move || serve(st, client));
            }
        });
        Proxy { port, st }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

fn serve(st: Arc<ProxyState>, client: TcpStream) {
    let id = st.next_id.fetch_add(1, Ordering::SeqCst);
    let Ok(up) = TcpStream::connect(("127.0.0.1", st.upstream)) else {
        return;
    };
    let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
    let (mut u_read, mut u_write) = (up.try_clone().unwrap(), up);
    let st2 = st.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match u_read.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if st2.hold_replies.load(Ordering::SeqCst)
                || st2.hold_replies_of.load(Ordering::SeqCst) == id
            {
                continue;
            }
            if c_write.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut mine: Vec<u8> = Vec::new();
    loop {
        let n = match c_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if st.hold_requests_of.load(Ordering::SeqCst) == id {
            mine.extend_from_slice(chunk);
            continue;
        }
        if st.release_before_xadd.load(Ordering::SeqCst)
            && chunk.windows(4).any(|w| w == b"XADD")
            && !st.released.swap(true, Ordering::SeqCst)
        {
            for (mut s, bytes) in st.held.lock().unwrap().drain(..) {
                let _ = s.write_all(&bytes);
                let _ = s.flush();
                // Kept open: Redis applies what it read.
                std::mem::forget(s);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if u_write.write_all(chunk).is_err() {
            break;
        }
    }
    if !mine.is_empty() {
        // The client gave up; its requests are still "in the network".
        st.held.lock().unwrap().push((u_write, mine));
    }
}

/// Runs `f` on a thread; its result, or `None` when it did not finish within `limit`
/// (the thread is left running: `f` must end by itself eventually).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

fn leak_queue<T: serde::Serialize + serde::de::DeserializeOwned>(
    dir: &std::path::Path,
) -> &'static Queue<T> {
    Box::leak(Box::new(Queue::open(dir).unwrap()))
}

fn redis_pid(redis: &RedisServer) -> u32 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

// ---------------------------------------------------------------------------------
// Bugs
// ---------------------------------------------------------------------------------

/// A pipeline whose replies did not come within the read timeout (a stalled network or
/// server) is applied by Redis *after* the forwarder reconnected and looked at the
/// stream's top: the forwarder's own entries then make its next XADDs "equal or smaller
/// than the target stream top item", which it reports as a permanent
/// `ForwardError::Conflict` ("a greater ID, added by another writer") although there is
/// no other writer and the stream holds every item exactly once. `run_until` would end
/// the forwarding thread on it. (The test takes ~21 s: the forwarder's read timeout is
/// a fixed 10 s, waited out once per pipelined command.)
#[test]
fn fixed_a_late_applied_pipeline_of_its_own_is_reported_as_another_writers_conflict() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let d = tempfile::tempdir().unwrap();
    let q: &'static Queue<Job> = leak_queue(d.path());
    q.put_many(&(0..10).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(q, &proxy.url(), "jobs")
        .unwrap()
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    assert_eq!(fwd.forward_all().unwrap(), 10); // connection 0, top known
    // Connection 0's next requests are delayed in the network; delivered just before the
    // XADDs of the connection the forwarder makes after giving up on it.
    proxy.st.hold_requests_of.store(0, Ordering::SeqCst);
    proxy.st.release_before_xadd.store(true, Ordering::SeqCst);
    // Two items: each pipelined command waits out the 10 s read timeout on its own
    // (see bug_a_stalled_server_...), so the forwarder gives up on connection 0 after 20 s.
    q.put_many(&(10..12).map(job).collect::<Vec<_>>()).unwrap();
    let res = within(Duration::from_secs(60), move || {
        let r = fwd.forward_all();
        (r, fwd.stats().clone())
    });
    let (res, stats) = res.expect("forward_all did not return within 60 s");
    assert!(
        proxy.st.released.load(Ordering::SeqCst),
        "scenario not staged"
    );
    // The stream is right: each item once, in order (the late pipeline added 10 and 11).
    let entries = read_stream(&mut redis.conn(), "jobs");
    assert_jobs_once_in_order(&entries, 12, 0);
    // ...but the forwarder gave up with a permanent error blaming another writer.
    match res {
        Ok(n) => assert_eq!(n, 2, "{stats:?}"),
        Err(e) => panic!(
            "a permanent error for a stream that holds every item once, no other writer: \
             {e} ({e:?}); stats {stats:?}"
        ),
    }
    assert_eq!(q.unfinished(), 0);
}

/// Items whose encoding is not deterministic (a `HashMap` or `HashSet` field: its
/// iteration order comes from a per-instance random hasher) are encoded again after a
/// crash, in another order: the byte-for-byte comparison of `data` then fails, and the
/// restarted forwarder stops for good with `Conflict { found: "another item" }` ("another
/// writer uses the stream, or repair renumbered the queue") although the entry IS that
/// item. The crash is staged with a copy of the queue's files taken before the
/// acknowledgement (what a kill between XADD and ack leaves).
#[test]
fn fixed_items_with_a_hashmap_are_a_conflict_after_a_crash_between_xadd_and_ack() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    type Item = HashMap<String, u32>;
    let item = |i: u32| -> Item {
        (0..16)
            .map(|k| (format!("field{k}"), i * 100 + k))
            .collect()
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Item> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..5).map(item).collect::<Vec<_>>()).unwrap();
    // Sent, not yet acknowledged: what a crash right after the XADDs leaves.
    let before_ack = crash_copy(d.path());
    Forwarder::new(&q, &redis.url(), "maps")
        .unwrap()
        .forward_all()
        .unwrap();
    drop(q);
    // The restarted forwarder (same items, same seqs, decoded afresh).
    let q: Queue<Item> = Queue::open(before_ack.path()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "maps").unwrap();
    let res = fwd.forward_all();
    let stats = fwd.stats().clone();
    drop(fwd);
    // The entries are the items (decoded, they are equal).
    let entries = read_stream(&mut redis.conn(), "maps");
    assert_eq!(entries.len(), 5);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            serde_json::from_slice::<Item>(&e.data).unwrap(),
            item(i as u32)
        );
    }
    match res {
        Ok(n) => assert_eq!((n, stats.duplicates), (5, 5)),
        Err(e) => panic!("the stream holds these very items, yet: {e}"),
    }
}

/// `Durability::Buffered` journals acknowledgements in batches of 4096: a crash of the
/// forwarding process loses up to 4095 of them, far more than one batch. The restarted
/// forwarder must verify all those items, but `max_len` (raised only to twice the batch
/// size, "so that the entries a restarted forwarder checks are still there") has
/// trimmed them: it stops for good with `Conflict { found: "no entry" }`, blaming
/// another writer or `repair`. The module docs state the limit as if at most one batch
/// could come back.
#[test]
fn fixed_buffered_queue_with_max_len_is_stuck_after_a_process_crash() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Options::new()
        .durability(Durability::Buffered)
        .open(d.path())
        .unwrap();
    q.put_many(&(0..1000).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(10)
        .max_len(20);
    assert_eq!(fwd.forward_all().unwrap(), 1000);
    drop(fwd);
    // The process is killed now (a copy of its files is what the crash leaves).
    let crashed = crash_copy(d.path());
    drop(q);
    let q: Queue<Job> = Options::new()
        .durability(Durability::Buffered)
        .open(crashed.path())
        .unwrap();
    // Fixed: the forwarder flushes its acknowledgements at Buffered, so a crash brings
    // back no more than trimming keeps to be checked.
    let unacked = q.unfinished();
    assert!(unacked <= 10, "{unacked} acknowledgements lost");
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(10)
        .max_len(20);
    match fwd.forward_all() {
        Ok(n) => assert_eq!(n as usize, unacked),
        Err(e) => panic!(
            "after a crash of a Buffered queue ({unacked} acknowledgements lost) the \
             forwarder is stuck: {e}"
        ),
    }
}

/// An item delayed with `nack_after` by an earlier consumer of the queue (say, the
/// program's previous version, before it forwarded) is a copy with a new seq that comes
/// due after the forwarder went past it: its ID is below the stream's top, no entry has
/// it, and the forwarder stops for good with `Conflict { found: "no entry" }`, naming
/// another writer or `repair`. The item never reaches the stream.
#[test]
fn fixed_an_item_delayed_by_an_earlier_consumer_comes_due_out_of_order_and_wedges() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    {
        let q: Queue<Job> = Queue::open(d.path()).unwrap();
        q.put_many(&(0..5).map(job).collect::<Vec<_>>()).unwrap();
        // The earlier consumer: takes job 0 and retries it later.
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_millis(500))
            .unwrap();
        q.close().unwrap();
    }
    // Now the forwarder is the queue's only consumer. Fixed: it refuses to start while
    // an item waits out a delay (it would come due out of order), saying so.
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    match Forwarder::new(&q, &redis.url(), "jobs") {
        Err(ForwardError::Delayed { delayed: 1, .. }) => {}
        other => panic!("expected Delayed, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(700)); // job 0's copy is due
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    q.put_many(&(5..8).map(job).collect::<Vec<_>>()).unwrap();
    let res = fwd.forward_all();
    drop(fwd);
    let ids: Vec<u64> = read_stream(&mut redis.conn(), "jobs")
        .iter()
        .map(|e| serde_json::from_slice::<Job>(&e.data).unwrap().id)
        .collect();
    match res {
        Ok(_) => assert!(ids.contains(&0), "job 0 lost: {ids:?}"),
        Err(e) => panic!("job 0 never reaches the stream ({ids:?}): {e}"),
    }
}

/// `run_until` promises to look at `stop` "every 100 ms, and between retries while
/// Redis is down". A Redis that accepts connections and then does not answer (stalled,
/// SIGSTOPped, a black-holed network) keeps it in blocking I/O instead: connecting
/// takes ~4 s (the 2 s connect timeout is waited out by each reply of the connection
/// handshake), a pipeline 10 s per command (bug_a_stalled_connection_...). Here the
/// forwarder is connecting when stop is set: it returns ~3.5 s later.
#[test]
fn fixed_run_until_stops_within_the_documented_bound_while_redis_does_not_answer() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    proxy.st.hold_replies.store(true, Ordering::SeqCst);
    let d = tempfile::tempdir().unwrap();
    let q: &'static Queue<Job> = leak_queue(d.path());
    q.put_many(&(0..10).map(job).collect::<Vec<_>>()).unwrap();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let url = proxy.url();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = Forwarder::new(q, &url, "jobs").unwrap();
        let r = f.run_until(stop);
        let _ = tx.send((Instant::now(), r.is_ok()));
    });
    std::thread::sleep(Duration::from_millis(500)); // in its first read
    let asked = Instant::now();
    stop.store(true, Ordering::Release);
    let (ended, _) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("run_until did not return within 30 s of stop");
    let took = ended.duration_since(asked);
    // Fixed by documenting the bound (blocking I/O cannot be interrupted): a send or
    // connection under way ends first, within 10 s of a stall, plus connecting.
    assert!(
        took < Duration::from_secs(15),
        "run_until returned {took:?} after stop was set"
    );
}

/// An item Redis refuses by closing the connection (bigger than `proto-max-bulk-len`,
/// 512 MB by default and lowered by some deployments) is a poison item: the failure
/// looks like an I/O error, so the forwarder calls it transient and sends the same
/// batch again, forever; every later item waits behind it, and `last_error` only says
/// the connection broke. Nothing names the item; it is not dead-lettered.
#[test]
fn fixed_an_item_redis_cannot_take_is_retried_forever() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg("1mb")
        .query(&mut redis.conn())
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let q: &'static Queue<String> = leak_queue(d.path());
    q.put(&"small".to_string()).unwrap();
    q.put(&"x".repeat(2 << 20)).unwrap();
    q.put(&"small too".to_string()).unwrap();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let url = redis.url();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = Forwarder::new(q, &url, "big")
            .unwrap()
            .backoff(Duration::from_millis(10), Duration::from_millis(100));
        let r = f.run_until(stop);
        let _ = tx.send((r.map_err(|e| e.to_string()), f.stats().clone()));
    });
    let early = rx.recv_timeout(Duration::from_secs(8));
    stop.store(true, Ordering::Release);
    let (res, stats) = match early {
        Ok(v) => v,
        Err(_) => {
            let (res, stats) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("run_until did not stop");
            panic!(
                "still retrying the same batch after 8 s (then stopped: {res:?}); \
                 stats {stats:?}; entries {}",
                read_stream(&mut redis.conn(), "big").len()
            );
        }
    };
    assert!(res.is_err(), "{res:?} {stats:?}");
}

/// `IO_TIMEOUT` is meant to make "a server that accepts and then stalls count as down,
/// not as slow" after 10 s. But the `redis` crate's sync pipeline reads every reply even
/// after one read failed (`req_packed_commands` keeps looping, keeping the first error),
/// so each of the pipeline's commands waits out the 10 s read timeout on its own: a
/// stalled connection is given up on only after batch size x 10 s (85 minutes at the
/// default batch of 512), and `stop` is not looked at meanwhile. Here connection 0
/// stops answering with 50 items in flight: a new connection (which works) would finish
/// in ~10 s; the forwarder is still waiting after 40 s (it would wait 500 s).
#[test]
fn fixed_a_stalled_connection_is_given_up_on_only_after_10s_per_pipelined_item() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let d = tempfile::tempdir().unwrap();
    let q: &'static Queue<Job> = leak_queue(d.path());
    q.put(&job(0)).unwrap();
    let mut fwd = Forwarder::new(q, &proxy.url(), "jobs")
        .unwrap()
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    fwd.forward_all().unwrap(); // connection 0, top known
    proxy.st.hold_replies_of.store(0, Ordering::SeqCst);
    q.put_many(&(1..51).map(job).collect::<Vec<_>>()).unwrap();
    let start = Instant::now();
    let res = within(Duration::from_secs(40), move || fwd.forward_all().is_ok());
    assert_eq!(
        res,
        Some(true),
        "a stalled connection (replies lost) still not given up on after {:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------

/// Redis applied the pipeline, the replies never came (read timeout): after
/// reconnecting, the forwarder finds them in the stream and adds nothing twice.
#[test]
fn probe_replies_lost_after_redis_applied_the_pipeline() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let d = tempfile::tempdir().unwrap();
    let q: &'static Queue<Job> = leak_queue(d.path());
    q.put_many(&(0..10).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(q, &proxy.url(), "jobs")
        .unwrap()
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    fwd.forward_all().unwrap();
    // Connection 0's replies are lost for good; Redis applies its requests.
    proxy.st.hold_replies_of.store(0, Ordering::SeqCst);
    q.put_many(&(10..12).map(job).collect::<Vec<_>>()).unwrap();
    let (res, stats) = within(Duration::from_secs(60), move || {
        let r = fwd.forward_all();
        (r.map_err(|e| e.to_string()), fwd.stats().clone())
    })
    .expect("forward_all did not return within 60 s");
    assert_eq!(res, Ok(2), "{stats:?}");
    assert_eq!(stats.duplicates, 2, "{stats:?}");
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), 12, 0);
}

/// Redis SIGKILLed again and again while pipelines are in flight (appendonly yes,
/// everysec: the AOF is written before replies), restarted each time: every item once,
/// in order.
#[test]
fn probe_redis_sigkilled_mid_pipeline_repeatedly() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let n = 40_000u64;
    q.put_many(&(0..n).map(job).collect::<Vec<_>>()).unwrap();
    let stop = AtomicBool::new(false);
    let stats = std::thread::scope(|s| {
        let f = s.spawn(|| {
            let mut f = Forwarder::new(&q, &url, "jobs")
                .unwrap()
                .batch_size(2000)
                .backoff(Duration::from_millis(5), Duration::from_millis(50));
            let r = f.run_until(&stop);
            (r.map_err(|e| e.to_string()), f.stats().clone())
        });
        let start = Instant::now();
        let mut kills = 0;
        while q.unfinished() > 0 && start.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_millis(30 + (kills * 37) % 60));
            if kills < 12 && q.unfinished() > 0 {
                signal(redis_pid(&redis), "-9");
                redis.stop();
                redis.restart();
                kills += 1;
            }
        }
        stop.store(true, Ordering::Release);
        f.join().unwrap()
    });
    assert_eq!(stats.0, Ok(()), "{:?}", stats.1);
    assert_eq!(q.unfinished(), 0, "{:?}", stats.1);
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), n, 0);
    eprintln!("{:?}", stats.1);
}

/// A crash between XADD and ack (copy of the files), Bincode and JSON: found, counted as
/// duplicates, nothing added twice.
#[test]
fn probe_restart_after_crash_between_xadd_and_ack_bincode_and_json() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    for (enc, key) in [(Encoding::Bincode, "b"), (Encoding::Json, "j")] {
        let d = tempfile::tempdir().unwrap();
        let q: Queue<Job> = Queue::open(d.path()).unwrap();
        q.put_many(&(0..300).map(job).collect::<Vec<_>>()).unwrap();
        let before_ack = crash_copy(d.path());
        Forwarder::new(&q, &redis.url(), key)
            .unwrap()
            .encoding(enc)
            .forward_all()
            .unwrap();
        drop(q);
        let q: Queue<Job> = Queue::open(before_ack.path()).unwrap();
        q.put_many(&(300..310).map(job).collect::<Vec<_>>())
            .unwrap();
        let mut fwd = Forwarder::new(&q, &redis.url(), key)
            .unwrap()
            .encoding(enc)
            .batch_size(7)
            .max_len(1);
        assert_eq!(fwd.forward_all().unwrap(), 310);
        assert_eq!((fwd.stats().duplicates, fwd.stats().forwarded), (300, 10));
        let seqs: Vec<u64> = read_stream(&mut redis.conn(), key)
            .iter()
            .map(|e| e.seq)
            .collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..310).collect::<Vec<_>>());
    }
}

/// A Buffered queue without trimming: a crash that loses many acknowledgements is
/// verified batch after batch, nothing added twice.
#[test]
fn probe_buffered_crash_without_trimming_is_verified() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let opts = || Options::new().durability(Durability::Buffered);
    let q: Queue<Job> = opts().open(d.path()).unwrap();
    q.put_many(&(0..1000).map(job).collect::<Vec<_>>()).unwrap();
    Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(10)
        .forward_all()
        .unwrap();
    let crashed = crash_copy(d.path());
    drop(q);
    let q: Queue<Job> = opts().open(crashed.path()).unwrap();
    let unacked = q.unfinished() as u64;
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(10);
    assert_eq!(fwd.forward_all().unwrap(), unacked);
    assert_eq!(fwd.stats().duplicates, unacked);
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), 1000, 0);
}

/// forward_all on an empty queue returns 0 at once, without touching Redis (here
/// unreachable); run_until with nothing to do stops within a poll.
#[test]
fn probe_empty_queue_and_idle_stop() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let mut fwd = Forwarder::new(&q, "redis://127.0.0.1:1/", "jobs").unwrap();
    let t = Instant::now();
    assert_eq!(fwd.forward_all().unwrap(), 0);
    assert!(t.elapsed() < Duration::from_millis(200));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| fwd.run_until(&stop));
        std::thread::sleep(Duration::from_millis(250));
        let t = Instant::now();
        stop.store(true, Ordering::Release);
        h.join().unwrap().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    });
}

/// Batch size 1, a stream key with spaces and non-ASCII, dead letters requeued (new
/// seqs, forwarded after the rest), an item dead-lettered by an earlier consumer.
#[test]
fn probe_batch_one_odd_key_and_requeued_dead_letters() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let key = "jobs \u{e9}\u{1f600} {x}";
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..6).map(job).collect::<Vec<_>>()).unwrap();
    q.get_delivery()
        .unwrap()
        .dead_letter("earlier consumer")
        .unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), key).unwrap().batch_size(1);
    assert_eq!(fwd.forward_all().unwrap(), 5);
    assert_eq!(q.dead_letters().requeue_all().unwrap(), 1);
    assert_eq!(fwd.forward_all().unwrap(), 1);
    drop(fwd);
    let entries = read_stream(&mut redis.conn(), key);
    let got: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.seq, serde_json::from_slice::<Job>(&e.data).unwrap().id))
        .collect();
    assert_eq!(got, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 0)]);
    assert_eq!(q.unfinished(), 0);
}

/// A forwarder dropped with a batch pending (Redis down, run_until stopped), then a new
/// one in the same process: the batch comes back first, in order, once.
#[test]
fn probe_forwarder_dropped_mid_batch_then_a_new_one() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..50).map(job).collect::<Vec<_>>()).unwrap();
    Forwarder::new(&q, &url, "jobs")
        .unwrap()
        .batch_size(20)
        .forward_all()
        .unwrap();
    q.put_many(&(50..100).map(job).collect::<Vec<_>>()).unwrap();
    redis.stop();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut f = Forwarder::new(&q, &url, "jobs")
                .unwrap()
                .batch_size(20)
                .backoff(Duration::from_millis(10), Duration::from_millis(20));
            f.run_until(&stop).unwrap();
            assert!(f.stats().retries > 0);
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Release);
        h.join().unwrap();
    });
    assert_eq!(q.len(), 50, "the pending batch was given back");
    redis.restart();
    let mut f = Forwarder::new(&q, &url, "jobs").unwrap().batch_size(7);
    assert_eq!(f.forward_all().unwrap(), 50);
    drop(f);
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), 100, 0);
}

/// No panics on odd replies: an entry at the item's ID without fields, and a key of
/// another type created while the forwarder knows the stream's top.
#[test]
fn probe_odd_stream_contents_give_errors_not_panics() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut c = redis.conn();
    let _: String = redis::cmd("XADD")
        .arg("odd")
        .arg("1-0")
        .arg("x")
        .arg("y")
        .query(&mut c)
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..3).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "odd").unwrap();
    let err = fwd.forward_all().unwrap_err();
    assert!(
        matches!(
            err,
            ForwardError::Conflict {
                seq: 0,
                found: "another item",
                ..
            }
        ),
        "{err:?}"
    );
    drop(fwd);
    let mut fwd = Forwarder::new(&q, &redis.url(), "mid").unwrap();
    assert_eq!(fwd.forward_all().unwrap(), 3);
    let _: () = redis::cmd("DEL").arg("mid").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("mid")
        .arg("str")
        .query(&mut c)
        .unwrap();
    q.put(&job(3)).unwrap();
    let err = fwd.forward_all().unwrap_err();
    assert!(matches!(err, ForwardError::Redis { seq: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
}
