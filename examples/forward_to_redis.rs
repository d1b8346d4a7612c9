//! Store and forward: producers put events into a local queue at local speed, a
//! forwarder moves them into a Redis stream, and a consumer group reads them back.
//!
//! With `REDIS_URL` set (e.g. `redis://127.0.0.1:6379/`) it uses that server and the
//! stream `diskq-example-events` there; otherwise it starts a `redis-server` of its own
//! on a free port, in a temporary directory.
//!
//! `cargo run --release --example forward_to_redis` (the feature `redis`, which
//! `diskq::forward` needs, is on for the examples).

use diskq::Queue;
use diskq::forward::Forwarder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const PRODUCERS: u64 = 2;
const PER_PRODUCER: u64 = 50_000;
const STREAM: &str = "diskq-example-events";

#[derive(Serialize, Deserialize, Debug)]
struct Event {
    producer: u64,
    n: u64,
    kind: String,
}

/// A redis-server of our own (its files in `_dir`), killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `REDIS_URL`, or a server started here.
fn redis() -> Res<(String, Option<Server>)> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("start redis-server ({e}): install it, or set REDIS_URL"))?;
    let server = Server { child, _dir: dir };
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str())?;
    let start = Instant::now();
    while client.get_connection().is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("started redis-server on port {port}");
    Ok((url, Some(server)))
}

/// A consumer of the group `readers`: reads until it has seen `n` events.
fn consume(url: &str, n: u64) -> Res<BTreeSet<(u64, u64)>> {
    let mut c = redis::Client::open(url)?.get_connection()?;
    let mut seen = BTreeSet::new();
    while (seen.len() as u64) < n {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("readers")
            .arg("reader-1")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query(&mut c)?;
        let mut ack = redis::cmd("XACK");
        ack.arg(STREAM).arg("readers");
        for e in reply.keys.iter().flat_map(|k| &k.ids) {
            let Some(redis::Value::BulkString(data)) = e.map.get("data") else {
                return Err(format!("entry {} has no data", e.id).into());
            };
            let ev: Event = serde_json::from_slice(data)?;
            if !seen.insert((ev.producer, ev.n)) {
                return Err(format!("event {ev:?} read twice").into());
            }
            ack.arg(&e.id);
        }
        // Handled: acknowledged in the group, all of this read at once.
        if reply.keys.iter().any(|k| !k.ids.is_empty()) {
            let _: u64 = ack.query(&mut c)?;
        }
    }
    Ok(seen)
}

fn main() -> Res<()> {
    let (url, _server) = redis()?;
    let mut c = redis::Client::open(url.as_str())?.get_connection()?;
    let _: () = redis::cmd("DEL").arg(STREAM).query(&mut c)?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("readers")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut c)?;
    let dir = tempfile::tempdir()?;
    let q: Queue<Event> = Queue::open(dir.path())?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (seen, stats) = std::thread::scope(|s| -> Res<_> {
        let forwarder = s.spawn(|| {
            let mut fwd = Forwarder::new(&q, &url, STREAM)?;
            fwd.run_until(&stop)?;
            Ok::<_, diskq::forward::ForwardError>(fwd.stats().clone())
        });
        let reader = s.spawn(|| consume(&url, PRODUCERS * PER_PRODUCER).map_err(|e| e.to_string()));
        for producer in 0..PRODUCERS {
            let q = &q;
            s.spawn(move || {
                for n in 0..PER_PRODUCER {
                    let kind = if n % 10 == 0 { "signup" } else { "click" }.to_string();
                    q.put(&Event { producer, n, kind }).expect("put");
                }
            });
        }
        let seen = reader.join().expect("reader")?;
        stop.store(true, Ordering::Release);
        let stats = forwarder.join().expect("forwarder")?;
        Ok((seen, stats))
    })?;
    let took = start.elapsed();
    let total = PRODUCERS * PER_PRODUCER;
    println!(
        "{PRODUCERS} producers put {total} events into a local queue; the forwarder moved \
         them into the stream {STREAM}, and a consumer group read each once, in {:.2} s \
         ({:.0} events/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!(
        "forwarder: {} forwarded, {} found already there, {} retries",
        stats.forwarded, stats.duplicates, stats.retries
    );
    assert_eq!(seen.len() as u64, total);
    assert_eq!(q.unfinished(), 0, "every event acknowledged locally");
    println!("ok: every event once in the stream, none left in the queue");
    Ok(())
}
