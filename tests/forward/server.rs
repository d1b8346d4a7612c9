//! A real `redis-server` for the tests: on a free loopback port, in a temporary
//! directory, with `appendonly yes`; stopped when dropped. Never a mock.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Whether a missing `redis-server` fails the test (CI sets `DISKQ_REQUIRE_REDIS=1`)
/// instead of skipping it with a printed reason.
fn required() -> bool {
    std::env::var_os("DISKQ_REQUIRE_REDIS").is_some_and(|v| v == "1")
}

impl RedisServer {
    /// A running server, or `None` (the reason printed) where `redis-server` is not
    /// installed and CI did not require it.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            let why =
                "redis-server is not installed (apt-get install -y redis-server; .ci/run does)";
            assert!(!required(), "{why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        s.restart();
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, on the same port and files) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(mut c) = self.try_conn()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server as an operator would (`SHUTDOWN`: the append-only file is
    /// flushed), and waits until it is gone.
    pub fn stop(&mut self) {
        if let Ok(mut c) = self.try_conn() {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    pub fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An entry of the stream as the tests read it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub seq: u64,
    pub put_ms: Option<u64>,
    pub data: Vec<u8>,
}

/// Every entry of `key`, in order (`XRANGE`, 10,000 at a time).
pub fn read_stream(c: &mut redis::Connection, key: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(c)
            .unwrap();
        let Some(last) = page.ids.last() else {
            return out;
        };
        start = format!("({}", last.id);
        for e in &page.ids {
            let field = |name: &str| -> Option<Vec<u8>> {
                match e.map.get(name) {
                    Some(redis::Value::BulkString(b)) => Some(b.clone()),
                    _ => None,
                }
            };
            let num = |b: Vec<u8>| String::from_utf8(b).unwrap().parse::<u64>().unwrap();
            out.push(Entry {
                id: e.id.clone(),
                seq: num(field("seq").expect("seq field")),
                put_ms: field("put_ms").map(num),
                data: field("data").expect("data field"),
            });
        }
    }
}
