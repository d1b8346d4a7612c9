//! The directory lock: one open `Queue` per directory, in this process or any other.
//!
//! * In this process: a second `open` (same or another item type, from another thread,
//!   through a symlink or a `dir/.` path) gets `Error::Locked` naming the directory, changes
//!   no file, and leaves the first queue working; after the first is dropped or closed, the
//!   directory opens again.
//! * Across processes: the test binary re-executes itself (`current_exe() --exact <child
//!   test> --nocapture`, the role and directory in environment variables) and the child
//!   reports on stdout. While this process holds the queue the child gets `Locked`, and
//!   opens it once this process closes it; while the child holds the queue (it says
//!   `READY` on stdout), this process gets `Locked`, and opens it (with the child's items)
//!   once the child is killed with SIGKILL, or once it exits normally.
//! * Spurious locks: closing a queue and opening it again must succeed while another
//!   thread of the process spawns child processes (which briefly inherit every descriptor,
//!   the lock's included, between fork and exec).
//!
//! The tests of this file run one at a time (a file-wide mutex), because every spawn can
//! hold another test's lock for a moment, which is exactly what the last test is about.

use diskq::{Error, Options, Queue};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use crate::common::snapshot;

const ROLE_ENV: &str = "DISKQ_CRASH_LOCKING_ROLE";
const DIR_ENV: &str = "DISKQ_CRASH_LOCKING_DIR";
const CHILD_TEST: &str = "child_process_role";

/// Serializes the tests of this file (see the file's documentation).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_locked(r: Result<Queue<u64>, Error>, dir: &Path, case: &str) {
    match r {
        Err(e @ Error::Locked { .. }) => {
            assert!(e.is_locked(), "{case}");
            assert!(!e.is_corrupt(), "{case}");
            let Error::Locked { path } = &e else {
                unreachable!()
            };
            assert_eq!(
                fs::canonicalize(path).unwrap(),
                fs::canonicalize(dir).unwrap(),
                "{case}: Locked names another directory"
            );
            assert!(
                e.to_string().contains(&path.display().to_string()),
                "{case}: {e}"
            );
        }
        Err(e) => panic!("{case}: expected Locked, got {e:?}"),
        Ok(_) => panic!("{case}: a second open of a locked directory succeeded"),
    }
}

#[test]
fn second_open_in_this_process_is_locked_until_the_first_is_dropped() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let q: Queue<u64> = Options::new().chunk_size(3).open(&dir).unwrap();
    for i in 0..5 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.get().unwrap(), 0);
    let before = snapshot(&dir);

    assert_locked(Queue::open(&dir), &dir, "same type");
    assert_locked(
        Options::new().chunk_size(100).open(&dir),
        &dir,
        "other options",
    );
    match Queue::<String>::open(&dir) {
        Err(e) => assert!(e.is_locked(), "other item type: {e:?}"),
        Ok(_) => panic!("other item type: opened a locked directory"),
    }
    assert_locked(Queue::open(dir.join(".")), &dir, "dir/.");
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert_locked(Queue::open(&link), &dir, "through a symlink");
    std::thread::scope(|s| {
        s.spawn(|| assert_locked(Queue::open(&dir), &dir, "from another thread"));
    });
    assert_eq!(snapshot(&dir), before, "a refused open changed files");

    // The first queue is unaffected.
    q.put(&5).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert_eq!(q.len(), 4);
    drop(q);

    let q: Queue<u64> = Options::new().chunk_size(3).open(&dir).unwrap();
    // Item 0 was acknowledged; 1 was gotten but not: it comes again.
    for i in 1..6 {
        assert_eq!(q.get_nowait().unwrap(), i);
    }
    assert_locked(Queue::open(&link), &dir, "reopened, through a symlink");
    q.close().unwrap();
    let q: Queue<u64> = Queue::open(&link).unwrap();
    assert_eq!(q.len(), 5);
}

#[test]
fn many_threads_racing_to_open_exactly_one_wins() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<Result<Queue<u64>, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Queue::<u64>::open(tmp.path())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut opened = 0;
        for r in &results {
            match r {
                Ok(_) => opened += 1,
                Err(e) => assert!(e.is_locked(), "round {round}: {e:?}"),
            }
        }
        assert_eq!(opened, 1, "round {round}");
        let q = results.into_iter().find_map(Result::ok).unwrap();
        q.put(&round).unwrap();
    }
    let q: Queue<u64> = Queue::open(tmp.path()).unwrap();
    for round in 0..20 {
        assert_eq!(q.get_nowait().unwrap(), round);
    }
}

/// The child side: `try_open` opens, reports `LOCKED`, `OPENED <len> <first item>` or
/// `ERROR`, and exits; `hold` opens, puts 10..13, says `READY` and keeps the queue open
/// until its stdin is closed. Does nothing in a normal test run.
#[test]
fn child_process_role() {
    let (Ok(role), Some(dir)) = (std::env::var(ROLE_ENV), std::env::var_os(DIR_ENV)) else {
        return;
    };
    let say = |s: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n@{s}").unwrap();
        out.flush().unwrap();
    };
    match role.as_str() {
        "try_open" => match Queue::<u64>::open(&dir) {
            Ok(q) => {
                let len = q.len();
                let first = q.get_nowait().map_or(-1, |v| v as i64);
                say(format!("OPENED {len} {first}"));
            }
            Err(e) if e.is_locked() => say("LOCKED".into()),
            Err(e) => say(format!("ERROR {e}")),
        },
        "hold" => {
            let q = match Queue::<u64>::open(&dir) {
                Ok(q) => q,
                Err(e) => {
                    say(format!("ERROR {e}"));
                    return;
                }
            };
            for i in 10..13 {
                q.put(&i).unwrap();
            }
            say("READY".into());
            // Hold the queue until the parent closes our stdin (or kills us).
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
            drop(q);
            say("CLOSED".into());
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn_child(role: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            crate::common::test_path(module_path!(), CHILD_TEST).as_str(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Forwards the child's `@` lines to a channel, from a thread (so that waits can time out).
fn child_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, msg)) = line.split_once('@')
                && tx.send(msg.to_string()).is_err()
            {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no {what} from the child: {e}"))
}

fn run_try_open(dir: &Path) -> String {
    let mut child = spawn_child("try_open", dir);
    let rx = child_lines(child.stdout.take().unwrap());
    let line = next_line(&rx, "report");
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}");
    line
}

#[test]
fn child_process_is_locked_out_while_this_process_holds_the_queue() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Queue::open(tmp.path()).unwrap();
    q.put(&7).unwrap();
    q.put(&8).unwrap();
    assert_eq!(run_try_open(tmp.path()), "LOCKED");
    // Still ours, still working.
    assert_eq!(q.get().unwrap(), 7);
    q.task_done().unwrap();
    assert_eq!(run_try_open(tmp.path()), "LOCKED");
    drop(q);
    assert_eq!(run_try_open(tmp.path()), "OPENED 1 8");
    // The child closed it again.
    let q: Queue<u64> = Queue::open(tmp.path()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 8);
}

#[test]
fn this_process_is_locked_out_while_a_child_holds_the_queue_until_it_is_killed() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child("hold", tmp.path());
    let rx = child_lines(child.stdout.take().unwrap());
    assert_eq!(next_line(&rx, "READY"), "READY");
    let before = snapshot(tmp.path());
    for _ in 0..3 {
        assert_locked(Queue::open(tmp.path()), tmp.path(), "child holds it");
    }
    assert_eq!(snapshot(tmp.path()), before, "a refused open changed files");
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child
    let status = child.wait().unwrap();
    assert!(!status.success());
    let q: Queue<u64> = Queue::open(tmp.path()).expect("the lock dies with its process");
    for i in 10..13 {
        assert_eq!(q.get_nowait().unwrap(), i);
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
}

#[test]
fn this_process_opens_the_queue_after_the_child_closes_it() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child("hold", tmp.path());
    let rx = child_lines(child.stdout.take().unwrap());
    assert_eq!(next_line(&rx, "READY"), "READY");
    assert_locked(Queue::open(tmp.path()), tmp.path(), "child holds it");
    drop(child.stdin.take()); // the child drops its queue and exits
    assert_eq!(next_line(&rx, "CLOSED"), "CLOSED");
    assert!(child.wait().unwrap().success());
    let q: Queue<u64> = Queue::open(tmp.path()).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.get_nowait().unwrap(), 10);
}

/// `flock` belongs to the open file description, and a child process gets a copy of every
/// descriptor of its parent between `fork` and `exec` (`O_CLOEXEC` closes them only at
/// `exec`). So while another thread spawns processes, the lock of a queue that this thread
/// has just closed can still be held by a half-started child, and the next `open` fails with
/// `Locked` although no other `Queue` has the directory open.
#[test]
fn reopen_is_not_locked_by_processes_spawned_meanwhile() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let spawned = AtomicUsize::new(0);
    let (mut cycles, mut spurious) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                // A child that exits at once (no test matches the filter).
                let status = Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "no_such_test", "-q"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
                spawned.fetch_add(1, Ordering::Relaxed);
            }
        });
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) || spawned.load(Ordering::Relaxed) < 20 {
            cycles += 1;
            match Queue::<u64>::open(tmp.path()) {
                Ok(q) => q.close().unwrap(),
                Err(e) if e.is_locked() => spurious += 1,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    panic!("open failed: {e}");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        spurious,
        0,
        "{spurious} of {cycles} open + close cycles failed with Locked while another thread \
         spawned {} processes; no other Queue had the directory open",
        spawned.load(Ordering::Relaxed)
    );
}
