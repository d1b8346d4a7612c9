//! The `diskq` command run as a user runs it: on a healthy, a damaged, an empty and a live
//! queue (a child process putting and getting meanwhile: `stat`, `verify`, `dump` and
//! `tail`), pause and resume against a running consumer, and `--json` output parsed back.
//! The live tests stop the child when they are done, not after a set time, so that they
//! do not depend on the machine's speed.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn diskq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .output()
        .expect("run diskq")
}

fn ok(args: &[&str]) -> String {
    let out = diskq(args);
    assert!(
        out.status.success(),
        "diskq {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap_or_else(|e| panic!("diskq {args:?}: not JSON: {e}"))
}

fn lines(args: &[&str]) -> Vec<Value> {
    ok(args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A queue of "item N" strings, item N at seq N; the first `acked` acknowledged, one
/// more dead-lettered.
fn queue(dir: &Path, n: u64, acked: u64) {
    let q: diskq::Queue<String> = diskq::Queue::open(dir).unwrap();
    for i in 0..n {
        q.put(&format!("item {i}")).unwrap();
    }
    for _ in 0..acked {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    q.get_delivery().unwrap().dead_letter("bad input").unwrap();
}

#[test]
fn a_healthy_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    queue(dir.path(), 10, 3);
    let s = json(&["stat", d, "--json"]);
    assert_eq!(s["waiting"], 6, "{s}");
    assert_eq!(
        (s["oldest_seq"].as_u64(), s["next_seq"].as_u64()),
        (Some(4), Some(10))
    );
    assert_eq!(
        (s["dead_letters"].as_u64(), s["paused"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(s["open_by_pid"], Value::Null);
    assert_eq!(s["format_version"], diskq::FORMAT_VERSION);
    let text = ok(&["stat", d]);
    assert!(
        text.contains("waiting       6 items") && text.contains("open          no"),
        "{text}"
    );

    let v = json(&["verify", d, "--json"]);
    assert_eq!(
        (v["healthy"].as_bool(), v["records"].as_u64()),
        (Some(true), Some(10)),
        "{v}"
    );
    assert!(ok(&["verify", d]).starts_with("healthy"));

    let items = lines(&["dump", d, "--json", "--from", "5", "--limit", "3"]);
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert_eq!(items[0]["payload"]["text"], "item 5");
    let text = ok(&["dump", d]);
    assert_eq!(text.lines().count(), 6);
    assert!(
        text.lines().next().unwrap().contains("\"item 4\""),
        "{text}"
    );

    let dl = json(&["dead-letters", d, "list", "--json"]);
    let letters = dl["dead_letters"].as_array().unwrap();
    assert_eq!(
        (letters.len(), &letters[0]["reason"]),
        (1, &Value::from("bad input"))
    );
    assert_eq!(letters[0]["payload"]["text"], "item 3");
    assert!(ok(&["dead-letters", d, "requeue"]).contains("requeued 1 dead letter"));
    assert_eq!(json(&["stat", d, "--json"])["waiting"], 7);
    assert!(ok(&["dead-letters", d]).contains("no dead letters"));
}

#[test]
fn a_damaged_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    queue(dir.path(), 5, 0);
    let chunk = dir.path().join("q00000");
    let mut b = std::fs::read(&chunk).unwrap();
    // Item 2's record: header 28 bytes, then frames of 8 + 14 bytes.
    let at = 28 + 2 * 22 + 10;
    b[at] ^= 0x40;
    std::fs::write(&chunk, b).unwrap();

    let out = diskq(&["verify", d, "--json"]);
    assert_eq!(out.status.code(), Some(1), "damage found: exit 1");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    let dmg = &v["damage"][0];
    assert_eq!(dmg["offset"].as_u64(), Some(28 + 2 * 22), "{v}");
    assert!(dmg["file"].as_str().unwrap().ends_with("q00000"));
    let text = String::from_utf8(diskq(&["verify", d]).stdout).unwrap();
    assert!(
        text.contains("q00000 at offset 72") && text.contains("diskq repair"),
        "{text}"
    );
    // dump and stat stop at the damaged record: they show what comes before it, say
    // where they stopped, and exit 1.
    let out = diskq(&["dump", d, "--json"]);
    assert_eq!(out.status.code(), Some(1), "dump stopped at damage: exit 1");
    let items: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items[0]["seq"], 1);
    assert_eq!(items[1]["stopped_at"]["offset"].as_u64(), Some(28 + 2 * 22));
    assert_eq!(items.len(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("q00000 at offset 72"));
    let out = diskq(&["stat", d]);
    assert_eq!(out.status.code(), Some(1), "stat stopped at damage: exit 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("waiting       1 item\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("q00000 at offset 72"), "{err}");
    let report = ok(&["repair", d, "--yes"]);
    assert!(report.contains("damaged"), "{report}");
    assert!(ok(&["verify", d]).starts_with("healthy"));
}

#[test]
fn an_empty_queue_and_no_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<u32>::open(dir.path()).unwrap());
    let s = json(&["stat", d, "--json"]);
    assert_eq!(
        (s["waiting"].as_u64(), &s["oldest_seq"]),
        (Some(0), &Value::Null)
    );
    assert_eq!(ok(&["dump", d]), "");
    assert_eq!(json(&["verify", d, "--json"])["healthy"], true);
    assert!(ok(&["dead-letters", d]).contains("no dead letters"));

    let missing = dir.path().join("nothing");
    let out = diskq(&["stat", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let plain = tempfile::tempdir().unwrap();
    let out = diskq(&["verify", plain.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a diskq queue directory"));
}

/// The child process of the live tests (`live_child` in a process of its own): works on
/// the queue in `dir` as `mode` says until its stdin closes (`stop`), so that the tests
/// do not depend on how much it does in a given time. `log`: where `consume` writes the
/// time of each get.
fn child(dir: &Path, mode: &str, log: Option<&Path>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "live_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("DISKQ_CLI_CHILD", dir)
    .env("DISKQ_CLI_MODE", mode)
    .stdin(Stdio::piped());
    if let Some(log) = log {
        cmd.env("DISKQ_CLI_LOG", log);
    }
    cmd.spawn().unwrap()
}

/// Closes the child's stdin, which stops it, and waits for it.
fn stop(mut c: Child) {
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success(), "the child failed");
}

/// Not a test of its own: the process the live tests start, until its stdin closes.
/// `work` puts "item N" at seq N and takes and acknowledges about one item in two (all
/// it can while more than 2,000 wait), in chunks of 1,000 items, so that chunk files come
/// and go; `consume` puts one item every 2 ms and takes and acknowledges each, writing
/// the time of each get (ns since the Unix epoch) to a line of `DISKQ_CLI_LOG` if set.
#[test]
fn live_child() {
    let Some(dir) = std::env::var_os("DISKQ_CLI_CHILD") else {
        return;
    };
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        flag.store(true, Ordering::SeqCst);
    });
    let q: diskq::Queue<String> = diskq::Options::new().chunk_size(1000).open(dir).unwrap();
    let mut log = std::env::var_os("DISKQ_CLI_LOG").map(|p| std::fs::File::create(p).unwrap());
    let work = std::env::var("DISKQ_CLI_MODE").unwrap() == "work";
    let mut i = 0u64;
    while !stopped.load(Ordering::SeqCst) {
        q.put(&format!("item {i}")).unwrap();
        i += 1;
        if work {
            if i.is_multiple_of(2) || q.len() > 2000 {
                q.get_delivery().unwrap().ack().unwrap();
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(2));
        while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
            if let Some(f) = &mut log {
                let ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                writeln!(f, "{}", ns.as_nanos()).unwrap();
            }
            d.ack().unwrap();
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
fn poll<R>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<R>) -> R {
    let start = Instant::now();
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn next_seq(d: &str) -> u64 {
    json(&["stat", d, "--json"])["next_seq"].as_u64().unwrap()
}

#[test]
fn a_live_queue_reads_without_errors_or_false_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<String>::open(dir.path()).unwrap());
    let mut c = child(dir.path(), "work", None);
    let first = poll(Duration::from_secs(10), "the child puts", || {
        Some(next_seq(d)).filter(|&n| n > 0)
    });
    // However fast this machine: the child works until these rounds are done, at least
    // 4 and for a second (a fast build would see few checkpoints in 4).
    let start = Instant::now();
    let mut round = 0;
    while round < 4 || start.elapsed() < Duration::from_secs(1) {
        let s = json(&["stat", d, "--json"]);
        assert!(s["waiting"].as_u64().is_some(), "{s}");
        let v = json(&["verify", d, "--json"]);
        assert_eq!(v["healthy"], true, "false damage on a live queue: {v}");
        for it in lines(&["dump", d, "--json", "--limit", "2000"]) {
            let seq = it["seq"].as_u64().unwrap();
            assert_eq!(it["payload"]["text"], format!("item {seq}"), "{it}");
        }
        assert!(
            c.try_wait().unwrap().is_none(),
            "the child ended in round {round}"
        );
        round += 1;
    }
    let last = json(&["stat", d, "--json"]);
    assert!(
        last["next_seq"].as_u64().unwrap() > first,
        "the child put nothing while the rounds ran: next_seq {first} at first, now {last}"
    );
    stop(c);
    assert_eq!(json(&["verify", d, "--json"])["healthy"], true);
}

#[test]
fn tail_follows_new_items() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
    q.put(&"before".to_string()).unwrap();
    let mut tail = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(["tail", d, "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        q.put(&format!("new {i}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    tail.kill().unwrap();
    let out = tail.wait_with_output().unwrap();
    let got: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = got
        .iter()
        .map(|v| v["payload"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["new 0", "new 1", "new 2"]);
}

/// `tail` while a child process puts and a consumer in it takes and acknowledges each
/// item at once: every item put after tail started, in order, each once.
#[test]
fn tail_follows_a_live_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<String>::open(dir.path()).unwrap());
    let c = child(dir.path(), "consume", None);
    let started = poll(Duration::from_secs(10), "the child puts", || {
        Some(next_seq(d)).filter(|&n| n > 0)
    });
    let mut tail = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(["tail", d, "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(tail.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seqs = Vec::new();
    while seqs.len() < 200 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("tail stalled after {seqs:?}"));
        let it: Value = serde_json::from_str(&line).unwrap();
        let seq = it["seq"].as_u64().unwrap();
        assert_eq!(it["payload"]["text"], format!("item {seq}"), "{it}");
        seqs.push(seq);
    }
    stop(c);
    tail.kill().unwrap();
    tail.wait().unwrap();
    reader.join().unwrap();
    assert!(
        seqs[0] >= started,
        "tail began at {} before it started",
        seqs[0]
    );
    let want: Vec<u64> = (seqs[0]..seqs[0] + 200).collect();
    assert_eq!(seqs, want, "not each item once, in order");
}

/// The times of the gets the `consume` child logged.
fn gets(log: &Path) -> Vec<SystemTime> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // A line being written has no newline yet.
    let done = text.rfind('\n').map_or("", |end| &text[..end]);
    done.lines()
        .map(|l| UNIX_EPOCH + Duration::from_nanos(l.parse().unwrap()))
        .collect()
}

/// `diskq pause` stops a running consumer's gets within a second, `diskq resume` lets
/// them go on within a second; puts go on meanwhile.
#[test]
fn pause_and_resume_a_running_consumer() {
    // What may pass beyond the second on a loaded machine: a get logged late.
    let within = Duration::from_millis(1250);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("gets");
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<String>::open(dir.path()).unwrap());
    let c = child(dir.path(), "consume", Some(&log));
    poll(Duration::from_secs(10), "the consumer gets", || {
        (gets(&log).len() >= 20).then_some(())
    });
    assert!(ok(&["pause", d]).contains("paused"));
    let paused = SystemTime::now();
    // Long enough to see gets that go on past the second.
    std::thread::sleep(within + Duration::from_millis(250));
    let last = *gets(&log).last().unwrap();
    let after = last.duration_since(paused).unwrap_or_default();
    assert!(after <= within, "a get {after:?} after diskq pause");
    let s = json(&["stat", d, "--json"]);
    assert_eq!(s["paused"], true);
    assert!(s["waiting"].as_u64().unwrap() > 20, "puts stopped: {s}");

    ok(&["resume", d]);
    let resumed = SystemTime::now();
    let first = poll(Duration::from_secs(5), "a get after resume", || {
        gets(&log).into_iter().find(|&t| t > last)
    });
    let after = first.duration_since(resumed).unwrap_or_default();
    assert!(
        after <= within,
        "the first get {after:?} after diskq resume"
    );
    stop(c);
}

#[test]
fn commands_that_take_the_lock_say_who_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
    q.put(&"x".to_string()).unwrap();
    let pid = std::process::id().to_string();
    let s = json(&["stat", d, "--json"]);
    assert_eq!(s["open_by_pid"].to_string(), pid);
    for args in [vec!["repair", d, "--yes"], vec!["dead-letters", d, "purge"]] {
        let out = diskq(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("in use by process {pid}")),
            "{args:?}: {err}"
        );
    }
    assert_eq!(q.len(), 1);
}
