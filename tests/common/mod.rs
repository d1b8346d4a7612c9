//! Helpers shared by the integration tests (each test file includes this module).
#![allow(dead_code, reason = "each test file uses only some of these helpers")]

pub mod alloc;
pub mod fixtures;
pub mod mount;

/// The name libtest runs test function `f` of the module at `module_path` by
/// (`module_path!()` there): the path without the crate's name, as test files are modules
/// of a few grouped binaries; a child process started with `--exact` needs it whole.
pub fn test_path(module_path: &str, f: &str) -> String {
    match module_path.split_once("::") {
        Some((_, m)) => format!("{m}::{f}"),
        None => f.to_string(),
    }
}

/// Runs `body` on a thread and fails if it has not finished within `secs`: a lost
/// wake-up shows as a hang, which must fail the test rather than stall CI. A panic in
/// `body` is the test's panic.
pub fn within<R: Send + 'static>(secs: u64, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body sent nothing and did not panic"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: still running after {secs} s (a wake-up was lost)")
        }
    }
}

/// Opens the queue at `dir` in a child process whose parent has just closed it: a
/// `Locked` error is waited out for up to 20 s. While the parent's other test threads
/// spawn processes, each new process holds a copy of the parent's descriptors, the closed
/// queue's lock among them, until its `exec`; the library waits 100 ms for that, which a
/// machine loaded by parallel test binaries can exceed. Any other error is returned.
pub fn open_when_free<T: serde::Serialize + serde::de::DeserializeOwned>(
    dir: impl AsRef<Path>,
) -> diskq::Result<diskq::Queue<T>> {
    let t = std::time::Instant::now();
    loop {
        match diskq::Queue::open(dir.as_ref()) {
            Err(e) if e.is_locked() && t.elapsed() < std::time::Duration::from_secs(20) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Tiny deterministic PRNG (xorshift64*), so that no `rand` dependency is needed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every regular file of `dir` (not subdirectories, not `.lock`) with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file() && e.file_name() != ".lock")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A copy of `dir`'s files (not `.lock`) in a new temporary directory: taken while a
/// queue is open, what a crash of its process would leave (the page cache has them).
pub fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for (name, bytes) in snapshot(dir) {
        fs::write(copy.path().join(name), bytes).unwrap();
    }
    copy
}

/// Queue files built by hand (FORMAT.md), for regression tests of crafted directories.
pub mod hand_built {
    use diskq::storage::SimStorage;
    use std::path::Path;

    pub const DIR: &str = "/regression/q";

    /// `info` (FORMAT.md §info): acked 0, tail_chunk 0, no single acknowledgements.
    pub fn info() -> Vec<u8> {
        let mut b = b"diskqinf".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// `info` in format version 3 (FORMAT.md §info): no tail mark, no single
    /// acknowledgements, and the oldest chunk recorded, so that `open` looks for the
    /// chunk files instead of listing the directory.
    pub fn info_v3(acked: u64, tail_chunk: u64, head_chunk: u64) -> Vec<u8> {
        let mut b = b"diskqinf".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&acked.to_le_bytes());
        b.extend_from_slice(&tail_chunk.to_le_bytes());
        b.extend_from_slice(&[0; 20]); // no tail mark
        b.extend_from_slice(&head_chunk.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // no singles
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// A chunk file (FORMAT.md §Chunk files) holding one-byte `Vec<u8>` items.
    pub fn chunk(no: u64, first_seq: u64, items: &[u8]) -> Vec<u8> {
        let mut b = b"dqck".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&no.to_le_bytes());
        b.extend_from_slice(&first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        for &item in items {
            let payload = [1, 0, 0, 0, 0, 0, 0, 0, item]; // bincode of vec![item]
            let len = (payload.len() as u32).to_le_bytes();
            let mut h = crc32fast::Hasher::new();
            h.update(&len);
            h.update(&payload);
            b.extend_from_slice(&len);
            b.extend_from_slice(&h.finalize().to_le_bytes());
            b.extend_from_slice(&payload);
        }
        b
    }

    pub fn storage(chunks: &[Vec<u8>]) -> SimStorage {
        let st = SimStorage::new();
        let dir = Path::new(DIR);
        st.put_file(&dir.join("info"), &info());
        for (no, c) in chunks.iter().enumerate() {
            st.put_file(&dir.join(format!("q{no:05}")), c);
        }
        st
    }
}

/// The parent side of the `kill -9` tests: re-executes this test binary as a child that
/// runs one test (`child_test`) with the given environment, reads the lines it prints as
/// `@<tag> <rest>`, and kills it with SIGKILL at a random moment.
pub mod kill {
    use super::XorShift;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// What one killed child printed.
    pub struct Killed {
        /// Whether it said `@READY` (it had opened the queue) before the kill.
        pub ready: bool,
        /// Its other complete lines, as `(tag, rest)`, in order. A line cut by the kill
        /// has no newline and proves nothing, so it is not here.
        pub lines: Vec<(String, String)>,
    }

    /// Spawns the child, and kills it either around the time the previous child took to
    /// say `READY` (one round in five: while it starts up or recovers; `ready_after`
    /// remembers that time) or `after_ready_ms` (a random value in that range) after it
    /// said `READY`. Fails the test when the child reported an error (an `@E <what>` line)
    /// or ended by itself.
    pub fn run_and_kill(
        child_test: &str,
        env: &[(&str, String)],
        rng: &mut XorShift,
        ready_after: &mut Option<Duration>,
        after_ready_ms: std::ops::RangeInclusive<u64>,
    ) -> Killed {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut killed = Killed {
                ready: false,
                lines: Vec::new(),
            };
            let mut r = BufReader::new(stdout);
            let mut buf = String::new();
            loop {
                buf.clear();
                match r.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Some(line) = buf.strip_suffix('\n') else {
                    break; // cut by the kill
                };
                // The first line may follow libtest's "test <child_test> ... ".
                let Some((_, msg)) = line.split_once('@') else {
                    continue;
                };
                let (tag, rest) = msg.split_once(' ').unwrap_or((msg, ""));
                if tag == "READY" {
                    killed.ready = true;
                    let _ = ready_tx.send(());
                } else {
                    killed.lines.push((tag.to_string(), rest.to_string()));
                }
            }
            killed
        });
        let spawned = Instant::now();
        if rng.below(5) == 0 {
            let us = match *ready_after {
                Some(t) => {
                    let t = t.as_micros() as u64;
                    t * 7 / 10 + rng.below(t * 35 / 100 + 1)
                }
                None => rng.below(8000),
            };
            std::thread::sleep(Duration::from_micros(us));
        } else if ready_rx.recv_timeout(Duration::from_secs(60)).is_ok() {
            *ready_after = Some(spawned.elapsed());
            let (lo, hi) = (*after_ready_ms.start(), *after_ready_ms.end());
            std::thread::sleep(Duration::from_millis(lo + rng.below(hi - lo + 1)));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let killed = reader.join().unwrap();
        let errors: Vec<_> = killed.lines.iter().filter(|(tag, _)| tag == "E").collect();
        assert!(errors.is_empty(), "the child reported: {errors:?}");
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was not killed by SIGKILL but ended by itself: {status}"
        );
        killed
    }
}
