//! Review of a1dafa2 (the `diskq` command): `fixed_` tests failed at 5ff0d9f and pass since their fix;
//! `probe_` tests are checks that pass.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn diskq<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .output()
        .expect("run diskq")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn crc32(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A damaged chunk header (valid CRC, first_seq u64::MAX): `verify` should exit 1 (damage)
/// or 0, and `stat`/`dump` 0 or 2; they panic (exit 101) on `first_seq + n` overflow
/// in the test profile (overflow checks), and wrap silently in a release build.
#[test]
fn fixed_verify_and_stat_panic_on_huge_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
        q.put(&"a".to_string()).unwrap();
    }
    let p = dir.path().join("q00000");
    let mut b = std::fs::read(&p).unwrap();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, b).unwrap();
    let d = dir.path().as_os_str();
    let mut bad = Vec::new();
    for cmd in ["verify", "stat", "dump"] {
        let out = diskq(&[OsStr::new(cmd), d]);
        if code(&out) == 101 {
            bad.push(format!("{cmd}: {}", show(&out)));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// `--json` with a directory whose name is not UTF-8: `json!({"dir": dir})` unwraps
/// serde_json's refusal of a non-UTF-8 path, and the command panics (exit 101).
#[test]
fn fixed_json_output_panics_on_non_utf8_dir() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(OsStr::from_bytes(b"q\xff"));
    {
        let q: diskq::Queue<String> = diskq::Queue::open(&dir).unwrap();
        q.put(&"a".to_string()).unwrap();
    }
    let mut bad = Vec::new();
    for args in [
        vec!["stat", "--json"],
        vec!["verify", "--json"],
        vec!["dead-letters", "list", "--json"],
    ] {
        let mut a: Vec<&OsStr> = vec![OsStr::new(args[0])];
        a.push(dir.as_os_str());
        a.extend(args[1..].iter().map(OsStr::new));
        let out = diskq(&a);
        if code(&out) == 101 {
            bad.push(format!("{args:?}: {}", show(&out)));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn probe_exit_codes_for_errors() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let missing = root.path().join("missing");
    for p in [root.path(), file.as_path(), missing.as_path()] {
        for cmd in ["stat", "verify", "dump", "pause", "resume", "dead-letters"] {
            let out = diskq(&[OsStr::new(cmd), p.as_os_str()]);
            assert_eq!(code(&out), 2, "{cmd} {}: {}", p.display(), show(&out));
        }
    }
}

/// requeue and purge on a queue of u32 with a custom schema tag.
#[test]
fn probe_requeue_custom_schema_non_string() {
    let dir = tempfile::tempdir().unwrap();
    let opts = diskq::Options::new().schema("jobs/v1");
    {
        let q: diskq::Queue<(u32, Vec<u8>)> = opts.open(dir.path()).unwrap();
        q.put(&(7, vec![0xff, 0, 1])).unwrap();
        q.put(&(8, vec![])).unwrap();
        q.get_delivery().unwrap().dead_letter("bad").unwrap();
        q.get_delivery().unwrap().dead_letter("bad").unwrap();
    }
    let d = dir.path().as_os_str();
    let out = diskq(&[OsStr::new("dead-letters"), d, OsStr::new("requeue")]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let q: diskq::Queue<(u32, Vec<u8>)> = opts.open(dir.path()).unwrap();
    assert_eq!(q.dead_letters().len(), 0);
    assert_eq!(q.get_nowait().unwrap(), (7, vec![0xff, 0, 1]));
    assert_eq!(q.get_nowait().unwrap(), (8, vec![]));

    drop(q);
    // Default schema (the type's name) and purge.
    let dir2 = tempfile::tempdir().unwrap();
    {
        let q: diskq::Queue<u64> = diskq::Queue::open(dir2.path()).unwrap();
        q.put(&1).unwrap();
        q.get_delivery().unwrap().dead_letter("x").unwrap();
    }
    let out = diskq(&[
        OsStr::new("dead-letters"),
        dir2.path().as_os_str(),
        OsStr::new("purge"),
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let q: diskq::Queue<u64> = diskq::Queue::open(dir2.path()).unwrap();
    assert_eq!(q.dead_letters().len(), 0);
    assert_eq!(q.len(), 0);
}

/// repair and requeue while this process holds the queue: refused (exit 2), nothing
/// changed.
#[test]
fn probe_repair_and_requeue_refused_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
    q.put(&"a".to_string()).unwrap();
    q.put(&"b".to_string()).unwrap();
    q.get_delivery().unwrap().dead_letter("x").unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let d = dir.path().as_os_str();
    let out = diskq(&[OsStr::new("repair"), d, OsStr::new("--yes")]);
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&std::process::id().to_string()));
    let out = diskq(&[OsStr::new("dead-letters"), d, OsStr::new("requeue")]);
    assert_eq!(code(&out), 2, "{}", show(&out));
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
    assert_eq!(q.get_nowait().unwrap(), "b");
}

/// `tail` only shows items still waiting when it looks (every 200 ms): an item put and
/// consumed quickly by a running consumer never appears, although tail says it
/// "follows new items as they are put, like tail -f".
#[test]
fn fixed_tail_misses_items_consumed_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
    q.put(&"old".to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args([
            OsStr::new("tail"),
            dir.path().as_os_str(),
            OsStr::new("--json"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        q.put(&format!("new {i}")).unwrap();
        let _ = q.get_nowait();
        q.task_done().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = text.lines().count();
    assert_eq!(shown, 20, "tail showed {shown} of 20 new items:\n{text}");
}

/// `tail` on a queue that is not being consumed shows exactly the new items, in order.
#[test]
fn probe_tail_shows_new_items() {
    let dir = tempfile::tempdir().unwrap();
    let q: diskq::Queue<String> = diskq::Options::new()
        .chunk_size(3)
        .open(dir.path())
        .unwrap();
    q.put(&"old".to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args([
            OsStr::new("tail"),
            dir.path().as_os_str(),
            OsStr::new("--json"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..10 {
        q.put(&format!("new {i}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let seqs: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..11).collect::<Vec<_>>());
}

/// Exit codes of verify: 0 healthy, 1 damaged.
#[test]
fn probe_verify_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: diskq::Queue<String> = diskq::Queue::open(dir.path()).unwrap();
        q.put(&"hello world".to_string()).unwrap();
    }
    let d = dir.path().as_os_str();
    assert_eq!(code(&diskq(&[OsStr::new("verify"), d])), 0);
    let p = dir.path().join("q00000");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 2] ^= 0x40;
    std::fs::write(&p, b).unwrap();
    let out = diskq(&[OsStr::new("verify"), d]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let _ = Path::new("");
}
