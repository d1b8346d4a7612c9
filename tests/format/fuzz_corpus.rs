//! Replays the fuzz targets' inputs on stable: every file of `fuzz/corpus/<target>/` (the
//! seeds, and what libFuzzer found that is worth keeping) and of
//! `fuzz/regressions/<target>/` (minimized inputs that once crashed a target), through the
//! same functions the cargo-fuzz targets call (`diskq::fuzzing`). A few thousand
//! deterministic pseudo-random inputs follow, so the bodies run even with an empty corpus.
//!
//! `cargo test --release --test format -- --ignored fuzz_corpus::write_seed_corpus` rewrites the
//! seed files (`seed-*`) from real queues; see `fuzz/README.md`.

use diskq::fuzzing::{self, ModelOp};
use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Options, Queue};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fuzz target's body.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("decode", fuzzing::decode),
    ("open_dir", fuzzing::open_dir),
    ("model", fuzzing::model),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The input files of `dir` (not dot files, not notes), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.ends_with(".md")
        })
        .collect();
    v.sort();
    v
}

/// Runs `f` over every input of `fuzz/<kind>/<target>/`; returns the failures.
fn replay(kind: &str, target: &str, f: Target) -> (usize, Vec<String>) {
    let files = inputs(&fuzz_dir().join(kind).join(target));
    let mut failures = Vec::new();
    for p in &files {
        let data = std::fs::read(p).unwrap();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", p.display()));
        }
    }
    (files.len(), failures)
}

#[test]
fn corpus_and_regressions_replay_without_a_failure() {
    let mut failures = Vec::new();
    for (target, f) in TARGETS {
        let (seeds, mut fails) = replay("corpus", target, f);
        assert!(seeds > 0, "fuzz/corpus/{target}/ holds no input");
        failures.append(&mut fails);
        let (_, mut fails) = replay("regressions", target, f);
        failures.append(&mut fails);
    }
    assert!(
        failures.is_empty(),
        "{} fuzz inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A byte biased towards the small values formats are full of.
    fn byte(&mut self) -> u8 {
        match self.below(4) {
            0 => 0,
            1 => self.below(8) as u8,
            _ => self.next() as u8,
        }
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.byte()).collect()
    }
}

#[test]
fn pseudo_random_decode_inputs() {
    let mut rng = Rng(0x0dec_0de0);
    for _ in 0..3000 {
        let data = rng.bytes(100);
        fuzzing::decode(&data);
    }
}

#[test]
fn pseudo_random_directories() {
    let mut rng = Rng(0x0d1_2ec7);
    for _ in 0..3000 {
        let mut data = vec![rng.next() as u8];
        for _ in 0..rng.below(6) {
            let body = rng.bytes(80);
            data.push(rng.next() as u8 & 0x0f);
            data.extend_from_slice(&(body.len() as u16).to_le_bytes());
            data.extend_from_slice(&body);
        }
        fuzzing::open_dir(&data);
    }
}

#[test]
fn pseudo_random_model_programs() {
    let mut rng = Rng(0x30de1);
    for _ in 0..3000 {
        let data = rng.bytes(160);
        fuzzing::model(&data);
    }
}

// ---------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------

const DIR: &str = "/seed/q";

/// The files of the queue directory in `st`, as `open_dir` input (raw, not sealed).
fn dir_input(config: u8, st: &SimStorage) -> Vec<u8> {
    let dir = Path::new(DIR);
    let files: Vec<(String, Vec<u8>)> = st
        .files(dir)
        .into_iter()
        .filter(|n| fuzzing::DIR_NAMES.contains(&n.as_str()))
        .map(|n| {
            let b = st.file(&dir.join(&n)).unwrap();
            (n, b)
        })
        .collect();
    let refs: Vec<(&str, bool, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), false, &b[..]))
        .collect();
    fuzzing::encode_dir(config, &refs)
}

fn item(i: usize) -> Vec<u8> {
    (0..i % 11).map(|b| (b * 7 + i) as u8).collect()
}

/// A queue of `Vec<u8>` at chunk size 3 after `puts` puts, `gets` gets and `acks`
/// task_dones, left open (as a crash leaves it): a copy of its storage.
fn live_queue(puts: usize, gets: usize, acks: usize, durability: Durability) -> SimStorage {
    let st = SimStorage::new();
    let q: Queue<Vec<u8>> = Options::new()
        .chunk_size(3)
        .durability(durability)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap();
    for i in 0..puts {
        q.put(&item(i)).unwrap();
    }
    for _ in 0..gets {
        q.get_nowait().unwrap();
    }
    for _ in 0..acks {
        q.task_done().unwrap();
    }
    let copy = st.after_crash(Crash::Process);
    drop(q);
    copy
}

/// Regenerates the `seed-*` files of `fuzz/corpus/`.
#[test]
#[ignore = "writes files; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let corpus = fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };

    // decode: real files.
    let st = live_queue(7, 5, 4, Durability::Written);
    let dir = Path::new(DIR);
    for name in ["info", "acks", "q00001", "q00002"] {
        write("decode", name, &st.file(&dir.join(name)).unwrap());
    }
    write("decode", "chunk-name", b"q00042");
    write("decode", "empty", b"");

    // open_dir: real directories, clean and damaged, and sealed builders.
    let config_written_ack_all = 2 << 2; // chunk size 3, written, acknowledge every item
    let c = config_written_ack_all;
    write("open_dir", "new", &[c]);
    write(
        "open_dir",
        "live",
        &dir_input(c, &live_queue(7, 5, 4, Durability::Written)),
    );
    write(
        "open_dir",
        "live-leave-unacked",
        &dir_input(c | 1 << 5, &live_queue(10, 2, 1, Durability::Synced)),
    );
    let closed = live_queue(5, 5, 5, Durability::Written);
    write("open_dir", "all-acked", &dir_input(c, &closed));
    // A torn put: the newest chunk ends in half a frame.
    let torn = SimStorage::new();
    {
        let q: Queue<Vec<u8>> = Options::new()
            .chunk_size(3)
            .open_on(Arc::new(torn.clone()), DIR)
            .unwrap();
        q.put(&item(1)).unwrap();
        q.put(&item(2)).unwrap();
        torn.crash_after(torn.ops(), true);
        q.put(&vec![9u8; 40]).unwrap_err();
    }
    write(
        "open_dir",
        "torn-put",
        &dir_input(c, &torn.after_crash(Crash::Process)),
    );
    // An interrupted checkpoint leaves info.tmp.
    let mut st = live_queue(4, 2, 1, Durability::Written);
    let tmp = st.file(&dir.join("info")).unwrap();
    st.put_file(&dir.join("info.tmp"), &tmp[..20]);
    write("open_dir", "info-tmp", &dir_input(c, &st));
    // u64 items: readable by the second open of the target.
    st = SimStorage::new();
    {
        let q: Queue<u64> = Options::new()
            .chunk_size(2)
            .open_on(Arc::new(st.clone()), DIR)
            .unwrap();
        for i in 0..5 {
            q.put(&(i * 1000)).unwrap();
        }
    }
    write("open_dir", "u64-items", &dir_input(c, &st));
    // Sealed: info acked 1, tail 1; acks 2; q00000 from 0 holding 3 items; q00001 from
    // 3 holding 2 and a torn tail.
    write(
        "open_dir",
        "sealed",
        &fuzzing::encode_dir(
            c,
            &[
                ("info", true, &[1, 0, 0, 0, 0, 0, 0, 0, 1]),
                ("acks", true, &[2, 0, 0, 0, 0, 0, 0, 0]),
                (
                    "q00000",
                    true,
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 0, 0x83, 1, 2, 3],
                ),
                (
                    "q00001",
                    true,
                    &[0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 7, 1, 8, 0xff, 4, 0, 0],
                ),
            ],
        ),
    );

    // model: programs at each level, with reopens, crashes and faults.
    write_model_seeds(&write);
}

fn write_model_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    use ModelOp::*;
    let basic = [
        Put(1),
        Put(2),
        Put(3),
        Put(4),
        Get,
        Get,
        TaskDone,
        Reopen(1),
        Get,
        Get,
        GetAck,
        AckAll,
        Put(5),
        Close(2),
        Get,
        TaskDone,
    ];
    write("model", "written", &fuzzing::encode_model(0, 2, &basic));
    write("model", "synced", &fuzzing::encode_model(1, 2, &basic));
    write("model", "buffered", &fuzzing::encode_model(2, 2, &basic));
    let mut crashing = vec![Put(10), Put(0xf1), Get, Crash(6, 0)];
    crashing.extend_from_slice(&basic);
    write(
        "model",
        "written-crash",
        &fuzzing::encode_model(0, 1, &crashing),
    );
    crashing[3] = Crash(9, 1);
    write(
        "model",
        "written-torn",
        &fuzzing::encode_model(0, 1, &crashing),
    );
    crashing[3] = Crash(20, 0);
    write(
        "model",
        "synced-power-loss",
        &fuzzing::encode_model(1, 1, &crashing),
    );
    crashing[3] = Crash(20, 2 | 1 << 3);
    write(
        "model",
        "synced-prefix",
        &fuzzing::encode_model(1, 1, &crashing),
    );
    crashing[3] = Crash(5, 1);
    write(
        "model",
        "buffered-crash",
        &fuzzing::encode_model(2, 1, &crashing),
    );
    crashing[3] = Fault(0x80, 4 << 3);
    write(
        "model",
        "short-write",
        &fuzzing::encode_model(0, 0, &crashing),
    );
    crashing[3] = Fault(2, 0);
    write(
        "model",
        "rename-fails",
        &fuzzing::encode_model(1, 8, &crashing),
    );
}

/// The model target's page-cache power loss (issue #15) at every level, over a sweep of
/// crash points and seeds: at `Synced` nothing confirmed is lost; below it recovery opens
/// by itself and keeps a prefix of the items (`diskq::fuzzing::model` checks both).
#[test]
fn model_survives_page_cache_power_loss_at_every_level() {
    use ModelOp::*;
    for level in 0..3u8 {
        // Bits 1-2 pick the page-cache power loss: 2 at written and synced, 1 buffered.
        let kind: u8 = if level == 2 { 1 } else { 2 };
        for k in 0..48u8 {
            for seed in 0..4u8 {
                let flags = kind << 1 | (seed & 1) | seed << 3;
                let mut ops = vec![Put(3), Put(200), Get, TaskDone, Close(1)];
                ops.extend([Put(7), Put(90), Put(1), GetAck, Put(0xf0), Get]);
                ops.push(Crash(k, flags));
                ops.extend([Put(5), GetAck, Put(6), Put(130), AckAll, Put(2), Get]);
                ops.extend([Put(9), Reopen(1), GetAck, Put(4), GetAck]);
                fuzzing::model(&fuzzing::encode_model(level, 1, &ops));
            }
        }
    }
}
