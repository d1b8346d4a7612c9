//! A poison item no longer makes a crash loop (issue #17): a child process gets the
//! poison item and kills itself with SIGKILL before acknowledging it; the parent
//! restarts it. Every delivery is recorded before the item is handed out, so each kill
//! counts as an attempt: with `max_deliveries(3)` the poison item is in the dead letters
//! after the third restart, and every other item is processed exactly once (one consumer,
//! each acknowledged before its line is printed, so no other item is in flight at a kill).

use diskq::{Durability, Options, Queue};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const ENV_DIR: &str = "DISKQ_CRASH_LOOP_DIR";
const ENV_LEVEL: &str = "DISKQ_CRASH_LOOP_SYNCED";
const CHILD: &str = "crash_loop_child";
const ITEMS: u64 = 30;
const POISON: u64 = 7;
const MAX: u32 = 3;

fn options(synced: bool) -> Options {
    let level = if synced {
        Durability::Synced
    } else {
        Durability::Written
    };
    Options::new()
        .durability(level)
        .max_deliveries(MAX)
        .chunk_size(4)
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child: processes items until the queue is empty; on the poison item it kills
/// itself, as a job that crashes the process would.
#[test]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let synced = std::env::var_os(ENV_LEVEL).is_some();
    let q: Queue<u64> = options(synced).open(&dir).unwrap();
    loop {
        let d = match q.get_delivery_timeout(Duration::from_millis(100)) {
            Ok(d) => d,
            Err(e) if e.is_timeout() => {
                emit("@EMPTY");
                return;
            }
            Err(e) => panic!("get: {e}"),
        };
        if *d == POISON {
            emit(&format!("@POISON {}", d.attempt()));
            let me = std::process::id().to_string();
            let _ = Command::new("kill").args(["-9", &me]).status();
            std::thread::sleep(Duration::from_secs(60));
            unreachable!("still alive after SIGKILL");
        }
        let (item, attempt) = (*d, d.attempt());
        d.ack().unwrap();
        emit(&format!("@DONE {item} {attempt}"));
    }
}

/// Runs the child once: its lines, and whether SIGKILL ended it.
fn run_child(dir: &std::path::Path, synced: bool) -> (Vec<String>, bool) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        crate::common::test_path(module_path!(), CHILD).as_str(),
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ENV_DIR, dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if synced {
        cmd.env(ENV_LEVEL, "1");
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = out
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.split_once('@').map(|(_, m)| m.to_string()))
        .collect();
    let status = child.wait().unwrap();
    (lines, status.signal() == Some(9))
}

fn crash_loop(synced: bool) {
    let tmp = tempfile::tempdir().unwrap();
    {
        let q: Queue<u64> = options(synced).open(tmp.path()).unwrap();
        q.put_many(&(0..ITEMS).collect::<Vec<_>>()).unwrap();
    }
    let mut done = Vec::new();
    let mut poison_attempts = Vec::new();
    let mut kills = 0;
    for round in 0.. {
        assert!(
            round <= MAX as usize + 1,
            "still crashing after {round} runs: a crash loop"
        );
        let (lines, killed) = run_child(tmp.path(), synced);
        let mut empty = false;
        for l in &lines {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts[0] {
                "DONE" => {
                    assert_eq!(parts[2], "1", "item {} delivered more than once", parts[1]);
                    done.push(parts[1].parse::<u64>().unwrap());
                }
                "POISON" => poison_attempts.push(parts[1].parse::<u32>().unwrap()),
                "EMPTY" => empty = true,
                other => panic!("unexpected line {other}"),
            }
        }
        if killed {
            kills += 1;
        } else {
            assert!(
                empty,
                "the child ended without SIGKILL and without emptying the queue"
            );
            break;
        }
    }
    assert_eq!(kills, MAX, "one kill per allowed delivery");
    assert_eq!(
        poison_attempts,
        [1, 2, 3],
        "each kill counted as an attempt"
    );
    let want: Vec<u64> = (0..ITEMS).filter(|&i| i != POISON).collect();
    assert_eq!(
        done, want,
        "every other item processed exactly once, in order"
    );
    let q: Queue<u64> = options(synced).open(tmp.path()).unwrap();
    assert_eq!(q.unfinished(), 0);
    let dl = q.dead_letters();
    let dead: Vec<_> = dl.iter().map(|d| d.unwrap()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].item(), dead[0].attempts()), (Some(&POISON), MAX));
    assert!(
        dead[0].reason().contains("max_deliveries 3"),
        "{}",
        dead[0].reason()
    );
}

#[test]
fn a_poison_item_is_dead_lettered_after_the_third_restart_at_written() {
    crash_loop(false);
}

#[test]
fn a_poison_item_is_dead_lettered_after_the_third_restart_at_synced() {
    crash_loop(true);
}
