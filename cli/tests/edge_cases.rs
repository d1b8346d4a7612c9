//! Edge cases of the `diskq` command: paths that are not queues, each subcommand on a
//! damaged and on an empty queue, `repair`'s prompt, `dump --raw`, `--json` everywhere.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn diskq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .output()
        .expect("run diskq")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2, and stderr says `what` (and names `path`).
fn fails_saying(args: &[&str], path: &Path, what: &str) {
    let out = diskq(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(what) && err.contains(&path.display().to_string()),
        "{args:?}: {err}"
    );
}

#[test]
fn paths_that_are_not_queues_say_so() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    let file = root.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for cmd in [
        "stat",
        "verify",
        "dump",
        "tail",
        "dead-letters",
        "pause",
        "repair",
    ] {
        for (path, why) in [
            (&empty, "holds neither an info file nor a chunk file"),
            (&missing, "does not exist"),
            (&file, "is not a directory"),
        ] {
            let p = path.to_str().unwrap();
            fails_saying(&[cmd, p], path, "is not a diskq queue directory");
            fails_saying(&[cmd, p], path, why);
        }
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing made"
    );
    // Chunk files without info: a queue whose info is missing, which only repair mends.
    let q = root.path().join("q");
    drop(diskq::Queue::<String>::open(&q).unwrap());
    std::fs::remove_file(q.join("info")).unwrap();
    let p = q.to_str().unwrap();
    fails_saying(
        &["dead-letters", p, "purge"],
        &q,
        "has queue files but no info file",
    );
}

fn ok(args: &[&str]) -> String {
    let out = diskq(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exit status 1 (damage), with stderr's note naming `file` and `offset`, and `shown`
/// ("the counts cover", "the items shown are"); returns stdout.
fn stops_at_damage(args: &[&str], file: &str, offset: u64, shown: &str) -> String {
    let out = diskq(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let at = format!("{file} at offset {offset}");
    assert!(
        err.contains(&at) && err.contains(shown) && err.contains("only the records before it"),
        "{args:?}: {err}"
    );
    assert!(
        err.contains("diskq verify") && err.contains("diskq repair"),
        "{err}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// "item N" at seq N for N in 0..6: item 0 acknowledged, item 1 given back for an hour
/// (its copy, seq 6, at the tail), item 2 dead-lettered; then item 4's record damaged.
/// Before the damage: records 0 to 3, of which item 3 waits; after it: 5 and 6. Returns
/// the damage's offset in q00000.
fn damaged_queue(dir: &Path) -> u64 {
    {
        let q: diskq::Queue<String> = diskq::Queue::open(dir).unwrap();
        for i in 0..6 {
            q.put(&format!("item {i}")).unwrap();
        }
        q.get().unwrap();
        q.task_done().unwrap();
        let d = q.get_delivery().unwrap();
        d.nack_after(Duration::from_secs(3600)).unwrap();
        q.get_delivery().unwrap().dead_letter("bad input").unwrap();
    }
    flip(&dir.join("q00000"), 4)
}

/// Flips a payload bit of the record at `index` of a chunk file of "item N" strings
/// (header 28 bytes, then records of 8 + 14 bytes); returns the record's offset.
fn flip(chunk: &Path, index: usize) -> u64 {
    let mut b = std::fs::read(chunk).unwrap();
    let at = 28 + index * 22;
    b[at + 12] ^= 0x40;
    std::fs::write(chunk, b).unwrap();
    at as u64
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {e}: {text}"))
}

/// Damage in the middle: stat and dump show what comes before it, say on stderr where it
/// stopped them (and, with --json, in `stopped_at`), and exit 1.
#[test]
fn stat_and_dump_stop_at_damage_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let at = damaged_queue(dir.path());
    let text = stops_at_damage(&["stat", d], "q00000", at, "the counts above cover");
    for line in [
        "waiting       1 item\n",
        "delayed     0",
        "oldest        item 3",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let s = json(&stops_at_damage(
        &["stat", d, "--json"],
        "q00000",
        at,
        "counts",
    ));
    assert_eq!(
        (s["waiting"].as_u64(), s["next_seq"].as_u64()),
        (Some(1), Some(4))
    );
    // The copy of item 1 waits past the damage: not counted as delayed either.
    assert_eq!(s["delayed"], 0, "{s}");
    assert_eq!(s["stopped_at"]["offset"].as_u64(), Some(at), "{s}");
    assert!(
        s["stopped_at"]["file"]
            .as_str()
            .unwrap()
            .ends_with("q00000")
    );

    let text = stops_at_damage(&["dump", d], "q00000", at, "the items shown are");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"item 3\""), "{text}");
    let out = stops_at_damage(&["dump", d, "--json"], "q00000", at, "items shown");
    let lines: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(
        (lines.len(), &lines[0]["seq"]),
        (2, &Value::from(3)),
        "{out}"
    );
    assert_eq!(lines[1]["stopped_at"]["offset"].as_u64(), Some(at), "{out}");
    // A limit reached before the damage leaves nothing out.
    assert_eq!(ok(&["dump", d, "--limit", "1"]).lines().count(), 1);

    ok(&["repair", d, "--yes"]);
    let s = json(&ok(&["stat", d, "--json"]));
    assert_eq!(
        (s["waiting"].as_u64(), &s["stopped_at"]),
        (Some(3), &Value::Null)
    );
    assert_eq!(ok(&["dump", d]).lines().count(), 3);
}

/// An empty queue: created, nothing put.
fn empty_queue(dir: &Path) {
    drop(diskq::Queue::<String>::open(dir).unwrap());
}

/// `diskq args` with `input` on stdin.
fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A started `diskq tail`: waits for it to end within `limit`, or kills it.
fn tail_for(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ended = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let code = if ended { out.status.code() } else { None };
    let err = stderr(&out);
    (code, String::from_utf8(out.stdout).unwrap(), err)
}

/// `tail` cannot follow past damage: it says where and exits 1 at once (it waited for
/// ever, silent); `--from 0` first shows every record before the damage. On an empty
/// queue it waits and shows the first item put.
#[test]
fn tail_on_a_damaged_and_an_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let at = damaged_queue(dir.path()).to_string();
    let (code, out, err) = tail_for(&["tail", d], Duration::from_secs(5));
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains(&format!("q00000 at offset {at}")) && err.contains("tail follows"));
    let (code, out, err) = tail_for(
        &["tail", d, "--from", "0", "--json"],
        Duration::from_secs(5),
    );
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<Value> = out.lines().map(json).collect();
    let seqs: Vec<u64> = lines[..4]
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3], "{out}");
    assert_eq!(lines[4]["stopped_at"]["offset"].to_string(), at, "{out}");

    let dir = tempfile::tempdir().unwrap();
    empty_queue(dir.path());
    let d = dir.path().to_str().unwrap().to_string();
    let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
    let putter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        q.put(&"first".to_string()).unwrap();
    });
    let (code, out, err) = tail_for(&["tail", &d], Duration::from_millis(1200));
    putter.join().unwrap();
    assert_eq!(code, None, "tail ended: {err}");
    assert!(
        out.contains("\"first\"") && out.lines().count() == 1,
        "{out}"
    );
}

/// `dead-letters list` reads `dir/dead`, a queue of its own: damage in the queue does not
/// touch it; damage in it stops the list (exit 1, `stopped_at`). An empty queue has none.
#[test]
fn dead_letters_list_on_a_damaged_and_an_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    damaged_queue(dir.path());
    assert!(ok(&["dead-letters", d]).contains("\"bad input\"  \"item 2\""));
    let dead = dir.path().join("dead/q00000");
    let mut b = std::fs::read(&dead).unwrap();
    let n = b.len();
    b[n - 2] ^= 0x40; // the only record's payload: "item 2"
    std::fs::write(&dead, b).unwrap();
    let text = stops_at_damage(
        &["dead-letters", d],
        "dead/q00000",
        28,
        "dead letters shown",
    );
    assert_eq!(text, "");
    let doc = json(&stops_at_damage(
        &["dead-letters", d, "--json"],
        "dead/q00000",
        28,
        "",
    ));
    assert_eq!(doc["dead_letters"], Value::Array(vec![]));
    assert!(
        doc["stopped_at"]["file"]
            .as_str()
            .unwrap()
            .ends_with("dead/q00000")
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    empty_queue(dir.path());
    assert_eq!(ok(&["dead-letters", d, "list"]), "no dead letters\n");
    let doc = json(&ok(&["dead-letters", d, "--json"]));
    assert_eq!(
        (&doc["dead_letters"], &doc["stopped_at"]),
        (&Value::Array(vec![]), &Value::Null)
    );
}

/// `pause` and `resume` only create and remove the `paused` file: damage does not stop
/// them, nor does an empty queue.
#[test]
fn pause_on_a_damaged_and_an_empty_queue() {
    let damaged = tempfile::tempdir().unwrap();
    damaged_queue(damaged.path());
    let empty = tempfile::tempdir().unwrap();
    empty_queue(empty.path());
    for dir in [damaged.path(), empty.path()] {
        let d = dir.to_str().unwrap();
        assert!(ok(&["pause", d]).starts_with("paused"));
        assert!(dir.join("paused").exists());
        let out = diskq(&["stat", d, "--json"]);
        assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["paused"], true);
        assert!(ok(&["resume", d]).starts_with("resumed"));
        assert!(!dir.join("paused").exists());
    }
    let q: diskq::Queue<String> = diskq::Queue::open(empty.path()).unwrap();
    assert!(!q.is_paused());
}

/// The names and bytes of every file under `dir`.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.file_name().unwrap() != ".lock" {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// `repair` on a healthy and on an empty queue says it is healthy and changes no file.
#[test]
fn repair_on_a_healthy_and_an_empty_queue() {
    let healthy = tempfile::tempdir().unwrap();
    {
        let q: diskq::Queue<String> = diskq::Queue::open(healthy.path()).unwrap();
        q.put_many(&["a".to_string(), "b".to_string()]).unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
    }
    let empty = tempfile::tempdir().unwrap();
    empty_queue(empty.path());
    for (dir, waiting) in [
        (healthy.path(), "1 record waiting"),
        (empty.path(), "0 records waiting"),
    ] {
        let d = dir.to_str().unwrap();
        let before = files(dir);
        let report = ok(&["repair", d, "--yes"]);
        assert!(
            report.contains("is healthy") && report.contains(waiting),
            "{report}"
        );
        assert!(report.contains("nothing was changed"), "{report}");
        assert_eq!(files(dir), before, "{report}");
    }
    let q: diskq::Queue<String> = diskq::Queue::open(healthy.path()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), "b");
}

/// Without `--yes`, `repair` asks on stderr and reads the answer from stdin: "n" (or no
/// answer) changes nothing; "y" repairs.
#[test]
fn repair_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    damaged_queue(dir.path());
    let before = files(dir.path());
    for answer in [&b"n\n"[..], b""] {
        let out = with_stdin(&["repair", d], answer);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("[y/N]"), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "nothing done\n");
        assert_eq!(files(dir.path()), before, "answer {answer:?} changed files");
    }
    let out = with_stdin(&["repair", d], b"y\n");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(report.starts_with("repaired queue"), "{report}");
    assert!(ok(&["verify", d]).starts_with("healthy"));
}

/// `dump --raw` writes the stored payloads alone, one after the other: bytes that are not
/// text included, no separator, no note.
#[test]
fn dump_raw_writes_the_payloads_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let items: Vec<Vec<u8>> = vec![
        b"gone".to_vec(),
        vec![0, 255, 10, 13],
        b"text\n".to_vec(),
        vec![],
    ];
    {
        let q: diskq::Queue<Vec<u8>> = diskq::Queue::open(dir.path()).unwrap();
        q.put_many(&items).unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
    }
    let stored = |from: usize, to: usize| -> Vec<u8> {
        items[from..to]
            .iter()
            .flat_map(|i| bincode::serialize(i).unwrap())
            .collect()
    };
    let out = diskq(&["dump", d, "--raw"]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.stdout, stored(1, 4));
    let out = diskq(&["dump", d, "--raw", "--from", "2", "--limit", "1"]);
    assert_eq!(out.stdout, stored(2, 3));
}

/// Every argument and option of every subcommand has help text: in `-h`, a name
/// alone on its line has none.
#[test]
fn every_argument_has_help() {
    let commands = [
        "stat",
        "verify",
        "dump",
        "tail",
        "dead-letters",
        "pause",
        "resume",
        "repair",
    ];
    for cmd in commands {
        let help = ok(&[cmd, "-h"]);
        let args = help.lines().filter(|l| {
            let t = l.trim_start();
            l.starts_with("  ") && (t.starts_with('<') || t.starts_with('-') || t.starts_with('['))
        });
        for line in args {
            assert!(
                line.trim().contains("  "),
                "{cmd}: no help for {line:?}\n{help}"
            );
        }
    }
    assert!(ok(&["--help"]).contains("Exit status: 0"));
}

/// `dead-letters requeue|purge --json` print one JSON object (it was ignored).
#[test]
fn requeue_and_purge_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dead_letter = |n: usize| {
        let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
        q.put(&"x".to_string()).unwrap();
        for _ in 0..n {
            q.get_delivery().unwrap().dead_letter("bad").unwrap();
        }
    };
    dead_letter(1);
    assert_eq!(
        json(&ok(&["dead-letters", d, "requeue", "--json"])),
        json(r#"{"requeued": 1}"#)
    );
    dead_letter(2);
    assert_eq!(
        json(&ok(&["dead-letters", d, "purge", "--json"])),
        json(r#"{"purged": 2}"#)
    );
    assert_eq!(ok(&["dead-letters", d, "purge"]), "purged 0 dead letters\n");
}
