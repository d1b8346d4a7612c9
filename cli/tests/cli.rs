//! The `diskq` command run as a user runs it: on a healthy, a damaged, an empty and a live
//! queue (a child process putting and getting meanwhile), pause and resume against a
//! running consumer, and `--json` output parsed back.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

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
    assert!(String::from_utf8_lossy(&out.stdout).contains("waiting       1 items"));
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

/// The child process of the live tests: `DISKQ_CLI_CHILD=<dir>:<mode>` runs it.
fn child(dir: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "live_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("DISKQ_CLI_CHILD", format!("{}:{mode}", dir.display()))
        .spawn()
        .unwrap()
}

/// Not a test of its own: the process the live tests start. `work` puts "item N" at seq
/// N and takes and acknowledges about one item in two, for 3 s; `consume` puts one item
/// every 2 ms and takes each, for 6 s.
#[test]
fn live_child() {
    let Ok(arg) = std::env::var("DISKQ_CLI_CHILD") else {
        return;
    };
    let (dir, mode) = arg.rsplit_once(':').unwrap();
    let q: diskq::Queue<String> = diskq::Queue::open(dir).unwrap();
    let start = Instant::now();
    let mut i = 0u64;
    let run = if mode == "work" { 3 } else { 6 };
    while start.elapsed() < Duration::from_secs(run) {
        q.put(&format!("item {i}")).unwrap();
        i += 1;
        if mode == "work" {
            if i.is_multiple_of(2) {
                let d = q.get_delivery().unwrap();
                d.ack().unwrap();
            }
            if i.is_multiple_of(5000) {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(Duration::from_millis(2));
            while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
                d.ack().unwrap();
            }
        }
    }
}

#[test]
fn a_live_queue_reads_without_errors_or_false_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<String>::open(dir.path()).unwrap());
    let mut c = child(dir.path(), "work");
    let mut rounds = 0;
    while c.try_wait().unwrap().is_none() {
        let s = json(&["stat", d, "--json"]);
        let v = json(&["verify", d, "--json"]);
        assert_eq!(v["healthy"], true, "false damage on a live queue: {v}");
        for it in lines(&["dump", d, "--json", "--limit", "2000"]) {
            let seq = it["seq"].as_u64().unwrap();
            assert_eq!(it["payload"]["text"], format!("item {seq}"), "{it}");
        }
        assert!(s["waiting"].as_u64().is_some());
        rounds += 1;
    }
    assert!(c.wait().unwrap().success());
    assert!(rounds >= 3, "only {rounds} rounds while the child ran");
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
        .stdout(std::process::Stdio::piped())
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

#[test]
fn pause_and_resume_a_running_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    drop(diskq::Queue::<String>::open(dir.path()).unwrap());
    let mut c = child(dir.path(), "consume");
    std::thread::sleep(Duration::from_millis(700));
    assert!(json(&["stat", d, "--json"])["waiting"].as_u64().unwrap() < 50);
    assert!(ok(&["pause", d]).contains("paused"));
    std::thread::sleep(Duration::from_millis(1500));
    let paused = json(&["stat", d, "--json"]);
    assert_eq!(paused["paused"], true);
    // About 500 puts a second, none taken while paused.
    let waiting = paused["waiting"].as_u64().unwrap();
    assert!(waiting > 200, "the consumer went on: {paused}");
    ok(&["resume", d]);
    std::thread::sleep(Duration::from_millis(1500));
    let resumed = json(&["stat", d, "--json"]);
    assert!(resumed["waiting"].as_u64().unwrap() < 50, "{resumed}");
    assert!(c.wait().unwrap().success());
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
