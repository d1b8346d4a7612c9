//! A port of the persist-queue (`pqueue`) test suite to diskq: reopening with one and
//! with many items, garbage appended to the newest chunk file, random reads and writes
//! checked against an in-memory model, and a producer and a consumer thread.
//!
//! Where pqueue's tests rely on its own quirks (persisting the in-memory tail on
//! `task_done`, so a prefetched item can be lost), these tests follow diskq's stricter
//! semantics from DESIGN.md: an item gotten but not acknowledged comes back first after a
//! reopen.

use diskq::{Error, Options, Queue};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

fn open(dir: &Path, chunk_size: usize) -> Queue<u64> {
    Options::new()
        .chunk_size(chunk_size)
        .open(dir)
        .expect("open queue")
}

/// Puts `n` items, drops the queue, reopens it and gets them all back in order.
fn reopen_with(n: u64, chunk_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path(), chunk_size);
        for i in 0..n {
            q.put(&i).unwrap();
        }
        assert_eq!(q.len(), n as usize);
    }
    let q = open(dir.path(), chunk_size);
    assert_eq!(q.len(), n as usize);
    assert_eq!(q.unfinished(), n as usize);
    for i in 0..n {
        assert_eq!(q.get_nowait().unwrap(), i);
        q.task_done().unwrap();
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
    assert_eq!(q.unfinished(), 0);
    drop(q);

    // Everything was acknowledged: nothing comes back.
    let q = open(dir.path(), chunk_size);
    assert_eq!(q.len(), 0);
    assert!(q.get_nowait().unwrap_err().is_empty());
}

#[test]
fn reopen_with_one_item() {
    reopen_with(1, 100);
}

#[test]
fn reopen_with_1000_items() {
    // Several chunk files, and a partly filled last one.
    reopen_with(1000, 64);
}

#[test]
fn reopen_with_1000_items_in_one_chunk() {
    reopen_with(1000, diskq::DEFAULT_CHUNK_SIZE);
}

/// The highest-numbered `qNNNNN` file in `dir`.
fn newest_chunk(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let Some(digits) = name.strip_prefix('q') else {
            continue;
        };
        if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let no: u64 = digits.parse().unwrap();
        if best.as_ref().is_none_or(|(b, _)| no > *b) {
            best = Some((no, entry.path()));
        }
    }
    best.expect("the queue directory holds a chunk file").1
}

fn append_garbage(path: &Path, garbage: &[u8]) {
    let before = std::fs::metadata(path).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(garbage).unwrap();
    drop(f);
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        before + garbage.len() as u64
    );
}

/// Puts `n` items (acknowledging the first `acked` of them), closes, appends `garbage`
/// to the newest chunk file, reopens: every unacknowledged item must come back in order,
/// and items put after the repair must follow them, also across a further reopen.
fn garbage_after_close(n: u64, acked: u64, chunk_size: usize, garbage: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), chunk_size);
    for i in 0..n {
        q.put(&i).unwrap();
    }
    for i in 0..acked {
        assert_eq!(q.get().unwrap(), i);
        q.task_done().unwrap();
    }
    q.close().unwrap();

    append_garbage(&newest_chunk(dir.path()), garbage);

    let q = open(dir.path(), chunk_size);
    assert_eq!(q.len(), (n - acked) as usize, "garbage {garbage:?}");
    for i in acked..n {
        assert_eq!(q.get_nowait().unwrap(), i, "garbage {garbage:?}");
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
    // New puts after the repair work, in this session...
    for i in n..n + 5 {
        q.put(&i).unwrap();
    }
    for i in n..n + 2 {
        assert_eq!(q.get_nowait().unwrap(), i);
    }
    drop(q);

    // ... and across a reopen: nothing was acknowledged since the repair, so everything
    // from `acked` on comes back, in order, with no trace of the garbage.
    let q = open(dir.path(), chunk_size);
    assert_eq!(q.len(), (n + 5 - acked) as usize, "garbage {garbage:?}");
    for i in acked..n + 5 {
        assert_eq!(q.get_nowait().unwrap(), i, "garbage {garbage:?}");
        q.task_done().unwrap();
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
}

fn garbage_variants() -> Vec<Vec<u8>> {
    let mut v = vec![
        // pqueue's own test appends text.
        b"garbage data that is not a record".to_vec(),
        // A length field that claims more bytes than follow (looks like a torn record).
        vec![40, 0, 0, 0, 1, 2, 3, 4, 5, 6],
        // Fewer bytes than a frame header.
        vec![7, 7, 7],
        // Zeroes, as a file system may leave after a crash.
        vec![0; 100],
    ];
    // Pseudo-random bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    v.push(
        (0..257)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect(),
    );
    v
}

#[test]
fn garbage_appended_to_newest_chunk_is_cut_off() {
    for garbage in garbage_variants() {
        // One chunk.
        garbage_after_close(10, 0, 1000, &garbage);
        // Several chunks, the newest partly filled, some items acknowledged.
        garbage_after_close(10, 4, 3, &garbage);
        // The newest chunk exactly full.
        garbage_after_close(9, 2, 3, &garbage);
    }
}

#[test]
fn garbage_appended_to_an_empty_queue() {
    for garbage in garbage_variants() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), 5).close().unwrap();
        append_garbage(&newest_chunk(dir.path()), &garbage);
        let q = open(dir.path(), 5);
        assert_eq!(q.len(), 0, "garbage {garbage:?}");
        assert!(q.get_nowait().unwrap_err().is_empty());
        q.put(&1).unwrap();
        q.put(&2).unwrap();
        drop(q);
        let q = open(dir.path(), 5);
        assert_eq!(q.get_nowait().unwrap(), 1);
        assert_eq!(q.get_nowait().unwrap(), 2);
        assert!(q.get_nowait().unwrap_err().is_empty());
    }
}

/// xorshift64: small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random puts, gets, acknowledgements and reopens, checked after every step against a
/// model: the items waiting, and the items gotten but not acknowledged.
fn random_ops(seed: u64, steps: usize, chunk_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut q = open(dir.path(), chunk_size);
    let mut waiting: VecDeque<u64> = VecDeque::new();
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut next = 0u64;
    let mut reopens = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed}, step {step}");
        match rng.below(100) {
            0..=44 => {
                q.put(&next).unwrap();
                waiting.push_back(next);
                next += 1;
            }
            45..=74 => match waiting.pop_front() {
                Some(want) => {
                    assert_eq!(q.get_nowait().unwrap(), want, "{ctx}");
                    in_flight.push_back(want);
                }
                None => assert!(
                    matches!(q.get_nowait(), Err(Error::Empty)),
                    "{ctx}: expected Empty"
                ),
            },
            75..=95 => match in_flight.pop_front() {
                Some(_) => q.task_done().unwrap(),
                None => assert!(
                    matches!(q.task_done(), Err(Error::NothingToAcknowledge)),
                    "{ctx}: expected NothingToAcknowledge"
                ),
            },
            _ => {
                drop(q);
                q = open(dir.path(), chunk_size);
                reopens += 1;
                // Gotten but unacknowledged items come back first, in order.
                while let Some(x) = in_flight.pop_back() {
                    waiting.push_front(x);
                }
            }
        }
        assert_eq!(q.len(), waiting.len(), "{ctx}: len");
        assert_eq!(q.is_empty(), waiting.is_empty(), "{ctx}: is_empty");
        assert_eq!(
            q.unfinished(),
            waiting.len() + in_flight.len(),
            "{ctx}: unfinished"
        );
    }
    assert!(reopens > 0, "seed {seed}: the run should include reopens");
    // Drain: what is left comes out in order after a final reopen.
    drop(q);
    let q = open(dir.path(), chunk_size);
    let rest: Vec<u64> = in_flight.iter().chain(waiting.iter()).copied().collect();
    for want in rest {
        assert_eq!(q.get_nowait().unwrap(), want, "seed {seed}: drain");
        q.task_done().unwrap();
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn random_reads_and_writes_match_a_model() {
    // (seed, steps, chunk size). Chunk size 1 is slow (every put starts a chunk file,
    // every get opens one), so it gets fewer steps.
    for (seed, steps, chunk_size) in [
        (1, 600, 3),
        (7, 300, 1),
        (0xdead_beef, 500, 2),
        (99, 500, 5),
    ] {
        random_ops(seed, steps, chunk_size);
    }
}

#[test]
fn producer_and_consumer_threads() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new().chunk_size(1000).open(dir.path()).unwrap();
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            for i in 0..N {
                q.put(&i).unwrap();
            }
        });
        let consumer = s.spawn(|| {
            for i in 0..N {
                let got = q.get().unwrap();
                assert_eq!(got, i, "items out of order");
                q.task_done().unwrap();
            }
        });
        producer.join().unwrap();
        consumer.join().unwrap();
    });
    assert_eq!(q.len(), 0);
    assert_eq!(q.unfinished(), 0);
    assert!(q.get_nowait().unwrap_err().is_empty());
    drop(q);
    // Everything was acknowledged: nothing survives a reopen, and the acknowledged
    // chunk files are gone.
    let q: Queue<u64> = Options::new().chunk_size(1000).open(dir.path()).unwrap();
    assert_eq!(q.len(), 0);
    assert!(q.get_nowait().unwrap_err().is_empty());
    let chunks = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('q')
        })
        .count();
    assert_eq!(chunks, 1, "only the writer's chunk file should remain");
}
