//! Comparison benchmark: diskq at each durability level against `queue-file`, `yaque`,
//! and the in-memory ceilings `crossbeam-channel` and `std::sync::mpsc` (and, for async
//! code, `tokio::sync::mpsc` and `flume`), in one run.
//!
//! ```sh
//! cargo bench --bench compare                      # everything (about 9 minutes, 2 cores)
//! cargo bench --bench compare -- w1 w4             # only some (w1 w1s w2 ... w9 memory)
//! cargo bench --bench compare -- memory            # only the peak-memory rows
//! DISKQ_BENCH_SCALE=0.1 cargo bench --bench compare   # every item count x 0.1
//! ```
//!
//! Workloads (each backend gets a fresh temporary directory for every run; payloads are
//! fixed-seed pseudo-random bytes). Each measurement of a (workload, backend) runs in a
//! fresh child process (this binary re-executed as `compare --measure <job> <backend>`,
//! printing one `RESULT` line), 5 times; the backends take turns within each round, each
//! round starting at a different backend and every other round in reverse order, and
//! the median is shown:
//!
//! * W1 fill-drain: N puts of 64 B, then N gets each followed by its acknowledgement.
//!   Also at 1,000 items: every operation synced (diskq Synced, queue-file with
//!   `sync_writes`), and yaque saving its read position on every commit.
//! * W2 interleaved: one producer thread, one consumer thread (get + acknowledge).
//! * W3 large items: W1 with 4 KiB items.
//! * W4 durable puts: puts that are on stable storage when they return, from 1 and from
//!   8 threads; items/s and per-put latency (p50/p99).
//! * W5 reopen: N items queued, closed; time to reopen, then the drain rate.
//! * W6 batches: W1 through each backend's batch API (batches of 1,000).
//! * W7 work queue: get + settle through deliveries, leases and retries, at Written.
//! * W8 async: W2 with tasks for threads: one producer task and one consumer task on a
//!   tokio multi-threaded runtime with 2 workers; diskq's `put_async`/`get_async` and its
//!   channel's `send_async`/`recv_async` against tokio's unbounded mpsc, flume and yaque.
//! * memory: peak RSS (VmHWM) of a child process holding 10,000,000 queued 64 B items
//!   (one run per backend).
//!
//! Besides the three durability levels, diskq appears as "diskq Written, bytes codec": the
//! same queue storing the payload as one serde byte string instead of a `Vec<u8>`, which
//! bincode encodes one `u8` at a time. Same bytes on disk; the difference is codec time.
//! W4 also has a floor: a bare `std::fs::File` append + `fdatasync` per put.
//!
//! Ratios are `items/s of the row ÷ items/s of the diskq row with the same guarantee`:
//! `diskq Synced` for the synced rows, `diskq Written` (the default level) otherwise.
//! Above 1 the row is faster than diskq.

use crossbeam_channel as cb;
use diskq::{Durability, Options, Queue};
use queue_file::QueueFile;
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::pin;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

const REPS: usize = 5;
const SMALL: usize = 64;
const LARGE: usize = 4096;
const BATCH: usize = 1000;
const SEED: u64 = 0x5EED_D15C_2024_0001;

// ---------------------------------------------------------------------------------------
// A minimal executor for yaque's async API: poll on this thread, park until woken.
// yaque wakes the task from its file-watcher thread (inotify) when a segment grows.

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            // A spurious unpark only costs one more poll.
            thread::park();
        }
    })
}

// ---------------------------------------------------------------------------------------
// Payloads.

/// A payload. diskq stores it two ways: as the `Vec<u8>` inside, which bincode writes as a
/// sequence (one `u8` at a time), and as this newtype, which serializes as one byte string,
/// as `serde_bytes` does. Both put the same bytes on disk; the difference is codec time.
#[derive(Clone, PartialEq, Debug)]
struct Item(Vec<u8>);

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        struct ItemVisitor;
        impl Visitor<'_> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Item, E> {
                Ok(Item(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Item, E> {
                Ok(Item(v))
            }
        }
        d.deserialize_byte_buf(ItemVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Settings, payloads, statistics.

fn scale() -> f64 {
    std::env::var("DISKQ_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// `n` times the scale, at least 10.
fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(10)
}

/// 1024 distinct payloads of `size` bytes from a fixed-seed xorshift64*; item i is
/// `pool[i % 1024]`, so every run and every backend sees the same bytes.
fn payloads(size: usize) -> Vec<Item> {
    let mut s = SEED ^ size as u64;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..1024)
        .map(|_| {
            let mut v = Vec::with_capacity(size + 8);
            while v.len() < size {
                v.extend_from_slice(&next().to_le_bytes());
            }
            v.truncate(size);
            Item(v)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (p50, p99) of latencies in nanoseconds.
fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)] as f64;
    (at(50), at(99))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// Backends behind one single-threaded interface (W1, W3, W5, W6).

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Diskq(Durability),
    /// diskq storing `Item` (one byte string) instead of `Vec<u8>`.
    DiskqBytes(Durability),
    /// `std::fs::File`: append + `fdatasync` per put, nothing else (W4's floor).
    RawFile,
    /// `sync_writes`: fdatasync after every write (the crate's default), or not.
    QFile {
        sync: bool,
    },
    /// `every_ack`: save the receiver's position on every commit instead of every 250th.
    Yaque {
        every_ack: bool,
    },
    Crossbeam,
    Mpsc,
    /// `diskq::channel` (default level): `send`, and `recv` in a `for` loop, which
    /// acknowledges each item when the next is asked for (W2 only).
    DiskqChannel,
    /// W7: diskq at `Written` settling deliveries one way ([`WorkMode`]).
    Work(WorkMode),
    /// `tokio::sync::mpsc::unbounded_channel` (W8 only).
    TokioMpsc,
    /// `flume::unbounded` through `send_async` / `recv_async` (W8 only).
    Flume,
    /// `diskq::forward::Forwarder::forward_all` into a Redis stream (W9 only).
    Forward,
    /// Pipelined `XADD`s of the same payloads, 512 a pipeline, from the same client:
    /// the ceiling of W9.
    PlainXadd,
}

/// How W7 takes and settles each item.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WorkMode {
    /// `get_delivery` + `ack`, default options.
    Deliveries,
    /// The same with `max_deliveries(5)` and a 30 s lease.
    Leased,
    /// Leased; every item `nack`ed once, then acknowledged.
    NackOnce,
    /// Leased; one item in 100 `nack_after(1 ms)` on its first delivery.
    Retry1Pct,
}

const WORK_MODES: [WorkMode; 4] = [
    WorkMode::Deliveries,
    WorkMode::Leased,
    WorkMode::NackOnce,
    WorkMode::Retry1Pct,
];

use Backend::*;

const BUFFERED: Backend = Diskq(Durability::Buffered);
const WRITTEN: Backend = Diskq(Durability::Written);
const SYNCED: Backend = Diskq(Durability::Synced);
const BYTES: Backend = DiskqBytes(Durability::Written);
const BYTES_BUFFERED: Backend = DiskqBytes(Durability::Buffered);
/// The backends of the single-threaded workloads (W1, W3, W6).
const SINGLE_THREADED: [Backend; 8] = [
    BUFFERED,
    WRITTEN,
    BYTES_BUFFERED,
    BYTES,
    QF,
    YAQUE,
    Crossbeam,
    Mpsc,
];
const QF: Backend = QFile { sync: false };
const QF_SYNC: Backend = QFile { sync: true };
const YAQUE: Backend = Yaque { every_ack: false };
const YAQUE_EVERY_ACK: Backend = Yaque { every_ack: true };

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Diskq(Durability::Buffered) => "diskq Buffered",
            Diskq(Durability::Written) => "diskq Written",
            Diskq(Durability::Synced) => "diskq Synced",
            Diskq(_) => "diskq (other level)",
            DiskqBytes(Durability::Buffered) => "diskq Buffered, bytes codec",
            DiskqBytes(_) => "diskq Written, bytes codec",
            RawFile => "std File write + fdatasync (floor)",
            QFile { sync: false } => "queue-file (sync_writes off)",
            QFile { sync: true } => "queue-file (sync_writes on)",
            Yaque { every_ack: false } => "yaque",
            Yaque { every_ack: true } => "yaque (save_every_nth 1)",
            Crossbeam => "crossbeam-channel (memory, no durability)",
            Mpsc => "std mpsc (memory, no durability)",
            DiskqChannel => "diskq channel (Written)",
            Work(WorkMode::Deliveries) => "diskq Written, get_delivery + ack",
            Work(WorkMode::Leased) => "diskq Written, max_deliveries + lease",
            Work(WorkMode::NackOnce) => "diskq Written, get + nack + get + ack",
            Work(WorkMode::Retry1Pct) => "diskq Written, 1% nack_after",
            TokioMpsc => "tokio mpsc, unbounded (memory, no durability)",
            Flume => "flume, unbounded (memory, no durability)",
            Forward => "diskq::forward into a Redis stream",
            PlainXadd => "plain pipelined XADD (ceiling)",
        }
    }

    /// The diskq level with the same guarantee: Synced for the backends that sync every
    /// operation, Written (the default) for the others.
    fn reference(self) -> Backend {
        match self {
            SYNCED | QF_SYNC | RawFile => SYNCED,
            _ => WRITTEN,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Diskq(Durability::Buffered) => "diskq-buffered",
            Diskq(Durability::Synced) => "diskq-synced",
            Diskq(_) => "diskq-written",
            DiskqBytes(Durability::Buffered) => "diskq-buffered-bytes",
            DiskqBytes(_) => "diskq-written-bytes",
            RawFile => "raw-file",
            QFile { sync: false } => "queue-file",
            QFile { sync: true } => "queue-file-sync",
            Yaque { every_ack: false } => "yaque",
            Yaque { every_ack: true } => "yaque-every-ack",
            Crossbeam => "crossbeam",
            Mpsc => "mpsc",
            DiskqChannel => "diskq-channel",
            Work(WorkMode::Deliveries) => "work-deliveries",
            Work(WorkMode::Leased) => "work-leased",
            Work(WorkMode::NackOnce) => "work-nack-once",
            Work(WorkMode::Retry1Pct) => "work-retry-1pct",
            TokioMpsc => "tokio-mpsc",
            Flume => "flume",
            Forward => "forward",
            PlainXadd => "plain-xadd",
        }
    }

    fn from_key(key: &str) -> Backend {
        [
            BUFFERED,
            WRITTEN,
            SYNCED,
            BYTES_BUFFERED,
            BYTES,
            QF,
            QF_SYNC,
            YAQUE,
            YAQUE_EVERY_ACK,
            Crossbeam,
            Mpsc,
            RawFile,
            DiskqChannel,
            TokioMpsc,
            Flume,
            Forward,
            PlainXadd,
        ]
        .into_iter()
        .chain(WORK_MODES.map(Work))
        .find(|b| b.key() == key)
        .unwrap_or_else(|| panic!("unknown backend {key}"))
    }

    fn open(self, dir: &Path) -> Store {
        match self {
            Diskq(level) => Store::Diskq(Options::new().durability(level).open(dir).unwrap()),
            DiskqBytes(level) => {
                Store::DiskqBytes(Options::new().durability(level).open(dir).unwrap())
            }
            RawFile => unreachable!("the raw file is only W4's floor"),
            DiskqChannel => unreachable!("the channel is only in W2"),
            Work(_) => unreachable!("the work modes are only in W7"),
            TokioMpsc | Flume => unreachable!("the async channels are only in W8"),
            Forward | PlainXadd => unreachable!("forwarding is only in W9"),
            QFile { sync } => {
                let mut q = QueueFile::open(dir.join("queue")).unwrap();
                q.set_sync_writes(sync);
                Store::QueueFile(q)
            }
            Yaque { every_ack } => {
                let sender = yaque::Sender::open(dir).unwrap();
                let mut builder = yaque::ReceiverBuilder::new();
                if every_ack {
                    builder = builder.save_every_nth(Some(1));
                }
                Store::Yaque(sender, builder.open(dir).unwrap())
            }
            Crossbeam => {
                let (s, r) = cb::unbounded();
                let (bs, br) = cb::unbounded();
                Store::Crossbeam(s, r, bs, br)
            }
            Mpsc => {
                let (s, r) = mpsc::channel();
                let (bs, br) = mpsc::channel();
                Store::Mpsc(s, r, bs, br)
            }
        }
    }
}

type Items = Vec<Vec<u8>>;

/// One open queue. `get_ack` is the backend's "take the oldest item and make its removal
/// stick": diskq `get` + `task_done`; queue-file `peek` + `remove`; yaque `recv` +
/// `commit`; a channel's `recv`.
enum Store {
    Diskq(Queue<Vec<u8>>),
    DiskqBytes(Queue<Item>),
    QueueFile(QueueFile),
    Yaque(yaque::Sender, yaque::Receiver),
    /// Items, and whole batches (W6: a channel has no batch API; a batch is one message).
    Crossbeam(
        cb::Sender<Vec<u8>>,
        cb::Receiver<Vec<u8>>,
        cb::Sender<Items>,
        cb::Receiver<Items>,
    ),
    Mpsc(
        mpsc::Sender<Vec<u8>>,
        mpsc::Receiver<Vec<u8>>,
        mpsc::Sender<Items>,
        mpsc::Receiver<Items>,
    ),
}

impl Store {
    fn put(&mut self, item: &Item) {
        match self {
            Store::Diskq(q) => q.put(&item.0).unwrap(),
            Store::DiskqBytes(q) => q.put(item).unwrap(),
            Store::QueueFile(q) => q.add(&item.0).unwrap(),
            Store::Yaque(s, _) => block_on(s.send(&item.0)).unwrap(),
            Store::Crossbeam(s, ..) => s.send(item.0.clone()).unwrap(),
            Store::Mpsc(s, ..) => s.send(item.0.clone()).unwrap(),
        }
    }

    fn get_ack(&mut self) -> Vec<u8> {
        match self {
            Store::Diskq(q) => {
                let item = q.get().unwrap();
                q.task_done().unwrap();
                item
            }
            Store::DiskqBytes(q) => {
                let item = q.get().unwrap();
                q.task_done().unwrap();
                item.0
            }
            Store::QueueFile(q) => {
                let item = q.peek().unwrap().expect("queue-file is empty");
                q.remove().unwrap();
                item
            }
            Store::Yaque(_, r) => block_on(r.recv()).unwrap().try_into_inner().unwrap(),
            Store::Crossbeam(_, r, ..) => r.recv().unwrap(),
            Store::Mpsc(_, r, ..) => r.recv().unwrap(),
        }
    }

    fn put_batch(&mut self, items: &[Item]) {
        let bytes = || items.iter().map(|i| &i.0);
        match self {
            Store::Diskq(q) => q.put_many(bytes()).unwrap(),
            Store::DiskqBytes(q) => q.put_many(items).unwrap(),
            Store::QueueFile(q) => q.add_n(bytes()).unwrap(),
            Store::Yaque(s, _) => block_on(s.send_batch(bytes())).unwrap(),
            Store::Crossbeam(.., s, _) => s.send(bytes().cloned().collect()).unwrap(),
            Store::Mpsc(.., s, _) => s.send(bytes().cloned().collect()).unwrap(),
        }
    }

    fn get_ack_batch(&mut self, max: usize) -> Items {
        match self {
            Store::Diskq(q) => {
                let items = q.get_many(max).unwrap();
                q.task_done_n(items.len()).unwrap();
                items
            }
            Store::DiskqBytes(q) => {
                let items = q.get_many(max).unwrap();
                q.task_done_n(items.len()).unwrap();
                items.into_iter().map(|i| i.0).collect()
            }
            Store::QueueFile(q) => {
                let items: Items = q.iter().take(max).collect();
                q.remove_n(items.len()).unwrap();
                items
            }
            Store::Yaque(_, r) => block_on(r.recv_batch_up_to(max))
                .unwrap()
                .try_into_inner()
                .unwrap(),
            Store::Crossbeam(.., r) => r.recv().unwrap(),
            Store::Mpsc(.., r) => r.recv().unwrap(),
        }
    }

    fn close(self) {
        match self {
            Store::Diskq(q) => q.close().unwrap(),
            Store::DiskqBytes(q) => q.close().unwrap(),
            Store::QueueFile(mut q) => q.sync_all().unwrap(),
            // yaque saves the receiver's position on drop.
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Result rows.

struct Row {
    workload: String,
    backend: &'static str,
    /// The backend this row's ratio is taken against.
    reference: Option<Backend>,
    items_per_s: Option<f64>,
    item_bytes: usize,
    /// (p50, p99) in nanoseconds.
    latency: Option<(f64, f64)>,
    rss_kib: Option<u64>,
    note: String,
}

impl Row {
    fn new(workload: impl Into<String>, backend: Backend, item_bytes: usize) -> Row {
        Row {
            workload: workload.into(),
            backend: backend.name(),
            reference: Some(backend.reference()),
            items_per_s: None,
            item_bytes,
            latency: None,
            rss_kib: None,
            note: String::new(),
        }
    }

    fn rate(mut self, r: f64) -> Row {
        self.items_per_s = Some(r);
        self
    }

    fn against(mut self, reference: Option<Backend>) -> Row {
        self.reference = reference;
        self
    }

    fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

fn log(msg: &str) {
    eprintln!(
        "[{:>7.1}s] {msg}",
        START.with(|s| s.elapsed().as_secs_f64())
    );
}

thread_local! {
    static START: Instant = Instant::now();
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A backend that has no equivalent for a workload.
fn not_available(workload: &str, backend: Backend, size: usize, why: &str) -> Row {
    Row::new(workload, backend, size).against(None).note(why)
}

// ---------------------------------------------------------------------------------------
// Repetition, one fresh process per measurement.

/// One measurement's workload: what a child process runs once for one backend.
#[derive(Clone, Copy)]
enum Job {
    /// W1, W3, W1 at a small count: [put, get+ack] items/s.
    FillDrain { n: usize, size: usize },
    /// W2: [items/s].
    Interleaved { n: usize },
    /// W4: [items/s, p50 ns, p99 ns].
    DurablePuts { n: usize, threads: usize },
    /// W5: [reopen seconds, drain items/s].
    Reopen { n: usize },
    /// W6: [put, get+ack] items/s.
    Batches { n: usize },
    /// W7: [get+settle items/s].
    Settle { n: usize },
    /// W8: [items/s].
    Async { n: usize },
    /// W9: [items/s].
    Forward { n: usize },
}

impl Job {
    /// The child's arguments after `--measure` and before the backend's key.
    fn args(self) -> [String; 3] {
        let (kind, a, b) = match self {
            Job::FillDrain { n, size } => ("fill-drain", n, size),
            Job::Interleaved { n } => ("interleaved", n, 0),
            Job::DurablePuts { n, threads } => ("durable-puts", n, threads),
            Job::Reopen { n } => ("reopen", n, 0),
            Job::Batches { n } => ("batches", n, 0),
            Job::Settle { n } => ("settle", n, 0),
            Job::Async { n } => ("async", n, 0),
            Job::Forward { n } => ("forward", n, 0),
        };
        [kind.to_string(), a.to_string(), b.to_string()]
    }

    fn parse(args: &[String]) -> Job {
        let num = |i: usize| -> usize { args[i].parse().expect("a number") };
        match args[0].as_str() {
            "fill-drain" => Job::FillDrain {
                n: num(1),
                size: num(2),
            },
            "interleaved" => Job::Interleaved { n: num(1) },
            "durable-puts" => Job::DurablePuts {
                n: num(1),
                threads: num(2),
            },
            "reopen" => Job::Reopen { n: num(1) },
            "batches" => Job::Batches { n: num(1) },
            "settle" => Job::Settle { n: num(1) },
            "async" => Job::Async { n: num(1) },
            "forward" => Job::Forward { n: num(1) },
            other => panic!("unknown measurement {other}"),
        }
    }

    /// Runs the measurement once, in this process.
    fn run(self, b: Backend) -> Vec<f64> {
        match self {
            Job::FillDrain { n, size } => fill_drain(b, n, &payloads(size)).to_vec(),
            Job::Interleaved { n } => vec![interleaved(b, n, &payloads(SMALL))],
            Job::DurablePuts { n, threads } => {
                let (r, lat) = durable_puts(b, n, threads, &payloads(SMALL));
                let (p50, p99) = percentiles(lat);
                vec![r, p50, p99]
            }
            Job::Reopen { n } => reopen(b, n, &payloads(SMALL)).to_vec(),
            Job::Batches { n } => batches(b, n, &payloads(SMALL)).to_vec(),
            Job::Settle { n } => vec![settle(b, n, &payloads(SMALL))],
            Job::Async { n } => vec![async_pair(b, n, &payloads(SMALL))],
            Job::Forward { n } => vec![forwarding(b, n)],
        }
    }
}

/// The child's side: `--measure <job args> <backend key>`; prints `RESULT v1 v2 ...`.
fn measure_child(args: &[String]) {
    let job = Job::parse(&args[..3]);
    let values = job.run(Backend::from_key(&args[3]));
    let text: Vec<String> = values.iter().map(f64::to_string).collect();
    println!("RESULT {}", text.join(" "));
}

/// Runs `job` once for `backend` in a fresh child process (this binary, re-executed).
fn measure<const M: usize>(job: Job, backend: Backend) -> [f64; M] {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .arg("--measure")
        .args(job.args())
        .arg(backend.key())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    let values: Option<Vec<f64>> = line.map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect());
    match values.map(<[f64; M]>::try_from) {
        Some(Ok(v)) => v,
        _ => panic!(
            "measurement {:?} of {} failed: {}\n{}",
            job.args(),
            backend.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Measures `job` `REPS` times for every backend, each time in a fresh process, so that
/// no result depends on what ran before it in the same process (the heap an in-memory
/// channel leaves behind, for one, slowed the next run). The
/// backends take turns within each round so that a slow spell of the shared machine
/// falls on all of them alike, each round starting at a different backend and every
/// other round going backwards, so that no backend always follows the same one. Returns
/// each backend's per-metric medians, in the order of `backends`.
fn rounds<const M: usize>(label: &str, backends: &[Backend], job: Job) -> Vec<[f64; M]> {
    let mut samples = vec![vec![Vec::new(); M]; backends.len()];
    let step = (backends.len() / REPS).max(1);
    for round in 1..=REPS {
        let first = (round - 1) * step % backends.len();
        let mut order: Vec<usize> = (first..backends.len()).chain(0..first).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for k in order {
            let b = backends[k];
            let values = measure::<M>(job, b);
            // W5's first value is seconds: too small for a rate's format.
            let fmt = |v: f64| {
                if v < 100.0 {
                    format!("{v:.6}")
                } else {
                    fmt_rate(v)
                }
            };
            let shown: Vec<String> = values.iter().map(|&v| fmt(v)).collect();
            let (name, shown) = (b.name(), shown.join(" / "));
            log(&format!("{label}, round {round}/{REPS}: {name}: {shown}"));
            for (j, v) in values.into_iter().enumerate() {
                samples[k][j].push(v);
            }
        }
    }
    samples
        .into_iter()
        .map(|per| std::array::from_fn(|j| median(per[j].clone())))
        .collect()
}

// ---------------------------------------------------------------------------------------
// W1, W3 and W1 at a small count: fill, then drain with acknowledgements.

/// [put items/s, get+ack items/s] of one run.
fn fill_drain(backend: Backend, n: usize, pool: &[Item]) -> [f64; 2] {
    let dir = tempfile::tempdir().unwrap();
    let mut q = backend.open(dir.path());
    let t = Instant::now();
    for i in 0..n {
        q.put(&pool[i % pool.len()]);
    }
    let put = rate(n, t.elapsed());
    let t = Instant::now();
    for i in 0..n {
        let item = q.get_ack();
        assert!(
            item == pool[i % pool.len()].0,
            "{}: wrong item",
            backend.name()
        );
    }
    let get = rate(n, t.elapsed());
    q.close();
    [put, get]
}

const CODEC_NOTE: &str = "payload as one serde byte string (as serde_bytes does)";

fn ack_note(b: Backend) -> &'static str {
    match b {
        DiskqBytes(_) => CODEC_NOTE,
        YAQUE => "position saved every 250th commit (default)",
        YAQUE_EVERY_ACK => "position saved on every commit",
        QFile { .. } => "peek + remove",
        _ => "",
    }
}

fn fill_drain_rows(label: &str, backends: &[Backend], n: usize, size: usize) -> Vec<Row> {
    let tag = if label.contains("items") {
        label.to_string()
    } else {
        format!("{label} ({n} items)")
    };
    let results = rounds(&tag, backends, Job::FillDrain { n, size });
    let mut rows = Vec::new();
    for (&b, [put, get]) in backends.iter().zip(results) {
        let put_note = if matches!(b, DiskqBytes(_)) {
            CODEC_NOTE
        } else {
            ""
        };
        rows.push(
            Row::new(format!("{label} put"), b, size)
                .rate(put)
                .note(put_note),
        );
        rows.push(
            Row::new(format!("{label} get+ack"), b, size)
                .rate(get)
                .note(ack_note(b)),
        );
    }
    rows
}

// ---------------------------------------------------------------------------------------
// W2: one producer thread, one consumer thread.

fn diskq_interleaved<'a, T>(q: Queue<T>, n: usize, item: impl Fn(usize) -> &'a T + Sync) -> Duration
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + Sync + 'a,
{
    let t = Instant::now();
    thread::scope(|s| {
        s.spawn(|| (0..n).for_each(|i| q.put(item(i)).unwrap()));
        s.spawn(|| {
            for i in 0..n {
                assert!(q.get().unwrap() == *item(i));
                q.task_done().unwrap();
            }
        });
    });
    let e = t.elapsed();
    q.close().unwrap();
    e
}

/// Items/s from the first put to the last acknowledgement.
fn interleaved(backend: Backend, n: usize, pool: &[Item]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let item = |i: usize| &pool[i % pool.len()];
    let elapsed = match backend {
        Diskq(level) => {
            let q = Options::new().durability(level).open(dir.path()).unwrap();
            diskq_interleaved(q, n, |i| &item(i).0)
        }
        DiskqBytes(level) => {
            let q = Options::new().durability(level).open(dir.path()).unwrap();
            diskq_interleaved(q, n, item)
        }
        QFile { sync } => {
            // Not thread-safe: a Mutex, and a Condvar so the consumer can block on empty.
            let mut qf = QueueFile::open(dir.path().join("queue")).unwrap();
            qf.set_sync_writes(sync);
            let q = Mutex::new(qf);
            let cv = Condvar::new();
            let t = Instant::now();
            thread::scope(|s| {
                s.spawn(|| {
                    for i in 0..n {
                        q.lock().unwrap().add(&item(i).0).unwrap();
                        cv.notify_one();
                    }
                });
                s.spawn(|| {
                    for i in 0..n {
                        let mut g = q.lock().unwrap();
                        while g.is_empty() {
                            g = cv.wait(g).unwrap();
                        }
                        assert!(g.peek().unwrap().unwrap() == item(i).0);
                        g.remove().unwrap();
                    }
                });
            });
            t.elapsed()
        }
        Yaque { every_ack } => {
            let mut sender = yaque::Sender::open(dir.path()).unwrap();
            let mut builder = yaque::ReceiverBuilder::new();
            if every_ack {
                builder = builder.save_every_nth(Some(1));
            }
            let mut receiver = builder.open(dir.path()).unwrap();
            let t = Instant::now();
            thread::scope(|s| {
                s.spawn(|| (0..n).for_each(|i| block_on(sender.send(&item(i).0)).unwrap()));
                s.spawn(|| {
                    for i in 0..n {
                        let got = block_on(receiver.recv()).unwrap();
                        assert!(*got == item(i).0);
                        got.commit().unwrap();
                    }
                });
            });
            t.elapsed()
        }
        RawFile => unreachable!("the raw file is only W4's floor"),
        Work(_) => unreachable!("the work modes are only in W7"),
        TokioMpsc | Flume => unreachable!("the async channels are only in W8"),
        Forward | PlainXadd => unreachable!("forwarding is only in W9"),
        DiskqChannel => {
            let (tx, rx) = diskq::channel::<Vec<u8>>(dir.path()).unwrap();
            let t = Instant::now();
            thread::scope(|s| {
                s.spawn(move || (0..n).for_each(|i| tx.send(item(i).0.clone()).unwrap()));
                s.spawn(move || {
                    // The std idiom: each item is acknowledged when the next is asked for.
                    for (i, got) in rx.iter().take(n).enumerate() {
                        assert!(got == item(i).0);
                    }
                });
            });
            t.elapsed()
        }
        Crossbeam => {
            let (tx, rx) = cb::unbounded::<Vec<u8>>();
            let t = Instant::now();
            thread::scope(|s| {
                s.spawn(move || (0..n).for_each(|i| tx.send(item(i).0.clone()).unwrap()));
                s.spawn(move || (0..n).for_each(|i| assert!(rx.recv().unwrap() == item(i).0)));
            });
            t.elapsed()
        }
        Mpsc => {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            let t = Instant::now();
            thread::scope(|s| {
                s.spawn(move || (0..n).for_each(|i| tx.send(item(i).0.clone()).unwrap()));
                s.spawn(move || (0..n).for_each(|i| assert!(rx.recv().unwrap() == item(i).0)));
            });
            t.elapsed()
        }
    };
    rate(n, elapsed)
}

fn w2(n: usize) -> Vec<Row> {
    let backends = [
        BUFFERED,
        WRITTEN,
        BYTES_BUFFERED,
        BYTES,
        DiskqChannel,
        QF,
        YAQUE,
        Crossbeam,
        Mpsc,
    ];
    let results = rounds(
        &format!("W2 ({n} items)"),
        &backends,
        Job::Interleaved { n },
    );
    backends
        .iter()
        .zip(results)
        .map(|(&b, [r])| {
            Row::new("W2 interleaved", b, SMALL)
                .rate(r)
                .note(ack_note(b))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// W4: durable puts, per-put latency, from 1 and from 8 threads.

/// (items/s, per-put latencies in ns) of `n` puts split over `threads` threads.
fn durable_puts(backend: Backend, n: usize, threads: usize, pool: &[Item]) -> (f64, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let per = n / threads;
    let timed = |put: &(dyn Fn(&Item) + Sync)| -> (f64, Vec<u64>) {
        let t = Instant::now();
        let lat: Vec<u64> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    s.spawn(move || {
                        (0..per)
                            .map(|i| {
                                let t = Instant::now();
                                put(&pool[(k * per + i) % pool.len()]);
                                t.elapsed().as_nanos() as u64
                            })
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        (rate(per * threads, t.elapsed()), lat)
    };
    match backend {
        Diskq(level) => {
            let q: Queue<Vec<u8>> = Options::new().durability(level).open(dir.path()).unwrap();
            let out = timed(&|item| q.put(&item.0).unwrap());
            q.close().unwrap();
            out
        }
        QFile { sync } => {
            let mut qf = QueueFile::open(dir.path().join("queue")).unwrap();
            qf.set_sync_writes(sync);
            let q = Mutex::new(qf);
            timed(&|item| q.lock().unwrap().add(&item.0).unwrap())
        }
        RawFile => {
            let f = Mutex::new(File::create_new(dir.path().join("raw")).unwrap());
            timed(&|item| {
                let mut f = f.lock().unwrap();
                f.write_all(&item.0).unwrap();
                f.sync_data().unwrap();
            })
        }
        _ => unreachable!("no durable put in {}", backend.name()),
    }
}

fn w4(n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for threads in [1, 8] {
        let label = format!(
            "W4 durable put, {threads} thread{}",
            if threads > 1 { "s" } else { "" }
        );
        let backends = [SYNCED, QF_SYNC, RawFile];
        let job = Job::DurablePuts { n, threads };
        let results = rounds(&format!("{label} ({n} items)"), &backends, job);
        for (&b, [r, p50, p99]) in backends.iter().zip(results) {
            let note = match (b, threads) {
                (RawFile, 1) => "append 64 B + fdatasync: the disk's floor",
                (RawFile, _) => "same, in a Mutex: no group commit",
                (QFile { .. }, 1) => "fdatasync of data, then of header",
                (QFile { .. }, _) => "in a Mutex (not Sync); no group commit",
                (_, 1) => "fdatasync per put",
                _ => "one shared Queue: group commit",
            };
            let mut row = Row::new(label.clone(), b, SMALL).rate(r).note(note);
            row.latency = Some((p50, p99));
            rows.push(row);
        }
        rows.push(not_available(
            &label,
            YAQUE,
            SMALL,
            "n/a: yaque never calls fsync (send = write(2) only)",
        ));
    }
    rows
}

// ---------------------------------------------------------------------------------------
// W5: reopen a queue holding N items, then drain it.

/// [reopen seconds, drain items/s] of one run.
fn reopen(backend: Backend, n: usize, pool: &[Item]) -> [f64; 2] {
    let dir = tempfile::tempdir().unwrap();
    let mut q = backend.open(dir.path());
    for i in 0..n {
        q.put(&pool[i % pool.len()]);
    }
    q.close();
    let t = Instant::now();
    let mut q = backend.open(dir.path());
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        assert!(q.get_ack() == pool[i % pool.len()].0);
    }
    let drain = rate(n, t.elapsed());
    q.close();
    [open, drain]
}

fn w5(n: usize) -> Vec<Row> {
    let backends = [WRITTEN, QF, YAQUE];
    let results = rounds(&format!("W5 ({n} items)"), &backends, Job::Reopen { n });
    let mut rows = Vec::new();
    for (&b, [open, _]) in backends.iter().zip(&results) {
        rows.push(
            Row::new("W5 reopen", b, 0)
                .rate(n as f64 / open)
                .note(format!(
                    "reopen took {:.2} ms (items/s = queued items ÷ that)",
                    open * 1e3
                )),
        );
    }
    for (&b, [_, drain]) in backends.iter().zip(&results) {
        rows.push(
            Row::new("W5 drain after reopen", b, SMALL)
                .rate(*drain)
                .note(ack_note(b)),
        );
    }
    rows
}

// ---------------------------------------------------------------------------------------
// W6: W1 through the batch APIs.

/// Item `i` of W6: batch `j` is the pool's run starting at `(7 j) mod 25`.
fn w6_item(pool: &[Item], i: usize) -> &Item {
    let start = (i / BATCH * 7) % (pool.len() - BATCH + 1);
    &pool[start + i % BATCH]
}

/// [put items/s, get+ack items/s] of one run.
fn batches(backend: Backend, n: usize, pool: &[Item]) -> [f64; 2] {
    let dir = tempfile::tempdir().unwrap();
    let mut q = backend.open(dir.path());
    let t = Instant::now();
    for first in (0..n).step_by(BATCH) {
        let start = (first / BATCH * 7) % (pool.len() - BATCH + 1);
        q.put_batch(&pool[start..start + BATCH.min(n - first)]);
    }
    let put = rate(n, t.elapsed());
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        for item in q.get_ack_batch(BATCH) {
            assert!(item == w6_item(pool, i).0, "{}: wrong item", backend.name());
            i += 1;
        }
    }
    let get = rate(n, t.elapsed());
    q.close();
    [put, get]
}

fn w6(n: usize) -> Vec<Row> {
    let backends = SINGLE_THREADED;
    let results = rounds(&format!("W6 ({n} items)"), &backends, Job::Batches { n });
    let mut rows = Vec::new();
    for (&b, [put, get]) in backends.iter().zip(results) {
        let (put_note, get_note) = match b {
            Diskq(_) | DiskqBytes(_) => ("put_many", "get_many + task_done_n"),
            QFile { .. } => ("add_n", "iter().take + remove_n"),
            Yaque { .. } => ("send_batch", "recv_batch_up_to + commit"),
            _ => ("one message = one Vec of 1,000", "recv of one Vec"),
        };
        rows.push(Row::new("W6 batch put", b, SMALL).rate(put).note(put_note));
        rows.push(
            Row::new("W6 batch get+ack", b, SMALL)
                .rate(get)
                .note(get_note),
        );
    }
    rows
}

// ---------------------------------------------------------------------------------------
// W7: the work queue: deliveries settled one by one, with attempts counted, leases and
// retries, against W1's get + task_done at Written in the same run.

/// get+settle items/s of one run: the items are put first (in batches), then taken and
/// settled until every one is acknowledged.
fn settle(backend: Backend, n: usize, pool: &[Item]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new().durability(Durability::Written);
    if matches!(backend, Work(m) if m != WorkMode::Deliveries) {
        opts = opts.max_deliveries(5).lease(Duration::from_secs(30));
    }
    let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
    for first in (0..n).step_by(BATCH) {
        let items = (first..(first + BATCH).min(n)).map(|i| &pool[i % pool.len()].0);
        q.put_many(items).unwrap();
    }
    let t = Instant::now();
    let mut acked = 0;
    while acked < n {
        match backend {
            Work(mode) => {
                let d = q.get_delivery().unwrap();
                let again = match mode {
                    WorkMode::NackOnce => d.attempt() == 1,
                    WorkMode::Retry1Pct => d.attempt() == 1 && d.seq().is_multiple_of(100),
                    _ => false,
                };
                if !again {
                    d.ack().unwrap();
                    acked += 1;
                } else if mode == WorkMode::NackOnce {
                    d.nack().unwrap();
                } else {
                    d.nack_after(Duration::from_millis(1)).unwrap();
                }
            }
            _ => {
                q.get().unwrap();
                q.task_done().unwrap();
                acked += 1;
            }
        }
    }
    let r = rate(n, t.elapsed());
    q.close().unwrap();
    r
}

fn w7(n: usize) -> Vec<Row> {
    let mut backends = vec![WRITTEN];
    backends.extend(WORK_MODES.map(Work));
    let results = rounds(&format!("W7 ({n} items)"), &backends, Job::Settle { n });
    backends
        .iter()
        .zip(results)
        .map(|(&b, [r])| {
            let note = if b == WRITTEN {
                "get + task_done (W1's drain)"
            } else {
                ""
            };
            Row::new("W7 get + settle", b, SMALL).rate(r).note(note)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// W8: W2 with tasks for threads: one producer task and one consumer task on tokio's
// multi-threaded runtime, diskq's async API beside in-memory async channels and yaque.

/// The time from spawning `producer` and `consumer` on a fresh runtime with 2 worker
/// threads (one per core here, so each task can have one) to both having finished.
/// Building and shutting down the runtime are not counted.
///
/// How to read it: a producer whose sends never wait keeps its worker to the end, and a
/// consumer it wakes is queued in that worker's LIFO slot, which the idle worker cannot
/// steal; so for diskq, flume and (mostly) tokio the consumer takes most items after the
/// last send: a fill then a drain, not a pipeline. yaque wakes its consumer from its
/// file-watcher thread, so that one runs beside the producer. This is what such code gets
/// on tokio, hence measured as it is, not evened out with yields.
fn two_tasks(
    producer: impl Future<Output = ()> + Send + 'static,
    consumer: impl Future<Output = ()> + Send + 'static,
) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let (p, c) = (tokio::spawn(producer), tokio::spawn(consumer));
        p.await.unwrap();
        c.await.unwrap();
        t.elapsed()
    })
}

/// Item `i` of a run: the tasks must be `'static`, so they share the pool by `Arc`.
fn nth(pool: &[Item], i: usize) -> &Vec<u8> {
    &pool[i % pool.len()].0
}

/// W8 through diskq's queue: `put_async` in one task; `get_async` + `task_done` in the
/// other, on one `Arc<Queue>`, as two threads share a queue in W2.
fn diskq_tasks(level: Durability, dir: &Path, n: usize, pool: Arc<[Item]>) -> Duration {
    let q: Arc<Queue<Vec<u8>>> = Arc::new(Options::new().durability(level).open(dir).unwrap());
    let (qp, qc, pc) = (q.clone(), q.clone(), pool.clone());
    let elapsed = two_tasks(
        async move {
            for i in 0..n {
                qp.put_async(nth(&pool, i)).await.unwrap();
            }
        },
        async move {
            for i in 0..n {
                assert!(qc.get_async().await.unwrap() == *nth(&pc, i));
                qc.task_done().unwrap();
            }
        },
    );
    // Both tasks have dropped their handles by now (tokio drops a finished task's future
    // before its JoinHandle completes); closing is not timed, as in W2.
    Arc::into_inner(q).unwrap().close().unwrap();
    elapsed
}

/// Items/s from the first put to the last acknowledgement (the last receive, for the
/// in-memory channels).
fn async_pair(backend: Backend, n: usize, pool: &[Item]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let pool: Arc<[Item]> = pool.into();
    let pc = pool.clone();
    let elapsed = match backend {
        Diskq(level) => diskq_tasks(level, dir.path(), n, pool),
        DiskqChannel => {
            // Each item is acknowledged when the next is asked for, the last when the
            // receiver is dropped at the end of its task (W2's `for` loop does the same).
            let (tx, mut rx) = diskq::channel::<Vec<u8>>(dir.path()).unwrap();
            two_tasks(
                async move {
                    for i in 0..n {
                        tx.send_async(nth(&pool, i).clone()).await.unwrap();
                    }
                },
                async move {
                    for i in 0..n {
                        assert!(rx.recv_async().await.unwrap() == *nth(&pc, i));
                    }
                },
            )
        }
        TokioMpsc => {
            // Unbounded, like diskq's queue and channel here: `send` never waits, so it
            // is not async.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            two_tasks(
                async move { (0..n).for_each(|i| tx.send(nth(&pool, i).clone()).unwrap()) },
                async move {
                    for i in 0..n {
                        assert!(rx.recv().await.unwrap() == *nth(&pc, i));
                    }
                },
            )
        }
        Flume => {
            let (tx, rx) = flume::unbounded::<Vec<u8>>();
            two_tasks(
                async move {
                    for i in 0..n {
                        tx.send_async(nth(&pool, i).clone()).await.unwrap();
                    }
                },
                async move {
                    for i in 0..n {
                        assert!(rx.recv_async().await.unwrap() == *nth(&pc, i));
                    }
                },
            )
        }
        YAQUE => {
            let mut sender = yaque::Sender::open(dir.path()).unwrap();
            let mut receiver = yaque::ReceiverBuilder::new().open(dir.path()).unwrap();
            two_tasks(
                async move {
                    for i in 0..n {
                        sender.send(nth(&pool, i)).await.unwrap();
                    }
                },
                async move {
                    for i in 0..n {
                        let got = receiver.recv().await.unwrap();
                        assert!(*got == *nth(&pc, i));
                        got.commit().unwrap();
                    }
                },
            )
        }
        _ => unreachable!("{} is not in W8", backend.name()),
    };
    rate(n, elapsed)
}

fn w8(n: usize) -> Vec<Row> {
    let backends = [WRITTEN, DiskqChannel, TokioMpsc, Flume, YAQUE];
    let results = rounds(&format!("W8 ({n} items)"), &backends, Job::Async { n });
    let median_of = |b: Backend| results[backends.iter().position(|&o| o == b).unwrap()][0];
    let (tokio_rate, yaque_rate) = (median_of(TokioMpsc), median_of(YAQUE));
    // The table's ratio is row ÷ diskq; issue #19's targets are diskq ÷ peer.
    let targets = |r: f64| {
        format!(
            "diskq ÷ tokio mpsc {:.2} (target ≥ 0.5), ÷ yaque {:.2} (target ≥ 2)",
            r / tokio_rate,
            r / yaque_rate
        )
    };
    backends
        .iter()
        .zip(results)
        .map(|(&b, [r])| {
            let note = match b {
                WRITTEN => format!("put_async; get_async + task_done; {}", targets(r)),
                DiskqChannel => format!("send_async; recv_async; {}", targets(r)),
                TokioMpsc => "send (unbounded: never waits); recv().await".into(),
                Flume => "send_async; recv_async".into(),
                _ => "send; recv + commit (position saved every 250th)".into(),
            };
            Row::new("W8 async, 2 tasks", b, SMALL).rate(r).note(note)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// W9: a queue forwarded into a Redis stream (`diskq::forward`), beside a plain pipelined
// XADD loop from the same client, the ceiling: 64-byte items, to a redis-server on
// loopback that the parent starts (`REDIS_URL` for the children).

/// The forwarded item: 64 bytes of text, so that JSON does not inflate it (a byte
/// vector would become an array of numbers).
fn text_item(i: usize) -> String {
    format!("{i:064}")
}

/// Items/s from the first `XADD` to the last reply (and, for diskq, the last local
/// acknowledgement). The stream is new for each run; filling the queue is not timed.
fn forwarding(backend: Backend, n: usize) -> f64 {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL, set by the parent");
    let stream = format!("w9-{}-{}", backend.key(), std::process::id());
    let elapsed = match backend {
        Forward => {
            let dir = tempfile::tempdir().unwrap();
            let q: Queue<String> = Queue::open(dir.path()).unwrap();
            let items: Vec<String> = (0..n).map(text_item).collect();
            q.put_many(&items).unwrap();
            let t = Instant::now();
            let mut fwd = diskq::forward::Forwarder::new(&q, &url, &stream).unwrap();
            assert_eq!(fwd.forward_all().unwrap(), n as u64);
            t.elapsed()
        }
        PlainXadd => {
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let t = Instant::now();
            for chunk in (0..n).collect::<Vec<_>>().chunks(512) {
                let mut pipe = redis::pipe();
                for &i in chunk {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("data")
                        .arg(text_item(i));
                }
                let _: Vec<String> = pipe.query(&mut c).unwrap();
            }
            t.elapsed()
        }
        _ => unreachable!("{} is not in W9", backend.name()),
    };
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut c).unwrap();
    rate(n, elapsed)
}

/// A redis-server for W9 on a free port, killed on drop; `None` where none is installed.
struct W9Server {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for W9Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn w9_server() -> Option<(W9Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let server = W9Server { child, _dir: dir };
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).ok()?;
    for _ in 0..500 {
        if client.get_connection().is_ok() {
            return Some((server, url));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn w9(n: usize) -> Vec<Row> {
    let Some((_server, url)) = w9_server() else {
        return vec![not_available(
            "W9 forward to Redis",
            Forward,
            SMALL,
            "no redis-server",
        )];
    };
    // SAFETY: `set_var` is unsound only while another thread reads or writes the
    // environment. The parent runs one thread here: the measurements are child
    // processes, spawned one at a time after this, and every thread an earlier
    // workload started has been joined.
    unsafe { std::env::set_var("REDIS_URL", &url) };
    let backends = [Forward, PlainXadd];
    let results = rounds::<1>(&format!("W9 ({n} items)"), &backends, Job::Forward { n });
    let (fwd, plain) = (results[0][0], results[1][0]);
    vec![
        Row::new("W9 forward to Redis", Forward, SMALL)
            .rate(fwd)
            .note(format!(
                "forward_all, batches of 512, JSON; {:.2} of plain XADD (target ≥ 0.70), \
                 target ≥ 100,000/s",
                fwd / plain
            )),
        Row::new("W9 forward to Redis", PlainXadd, SMALL)
            .rate(plain)
            .note("XADD * data <64 B>, 512 a pipeline"),
    ]
}

// ---------------------------------------------------------------------------------------
// Peak memory: a child process per backend puts N items and reports VmHWM.

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn memory_child(key: &str, n: usize) {
    let backend = Backend::from_key(key);
    let base = vm_hwm_kib();
    let pool = payloads(SMALL);
    let dir = tempfile::tempdir().unwrap();
    let mut q = backend.open(dir.path());
    let t = Instant::now();
    for i in 0..n {
        q.put(&pool[i % pool.len()]);
    }
    let r = rate(n, t.elapsed());
    let peak = vm_hwm_kib();
    println!("MEMORY {r} {peak} {base}");
    q.close();
}

fn memory(n: usize) -> Vec<Row> {
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for b in [WRITTEN, BUFFERED, QF, YAQUE, Crossbeam] {
        log(&format!("memory: {} ({n} items, child process)", b.name()));
        let out = Command::new(&exe)
            .args(["--memory-child", b.key(), &n.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout.lines().find(|l| l.starts_with("MEMORY ")) else {
            panic!(
                "memory child for {} failed: {}\n{}",
                b.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let f: Vec<f64> = line[7..].split(' ').map(|x| x.parse().unwrap()).collect();
        let mut row = Row::new(format!("peak RSS, {} queued", thousands(n)), b, SMALL)
            .rate(f[0])
            .note(format!(
                "one run; items/s = its puts; RSS at start {:.1} MiB",
                f[2] / 1024.0
            ));
        row.rss_kib = Some(f[1] as u64);
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------
// Output.

fn first_line(path: &str, prefix: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(prefix)
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn fmt_rate(r: f64) -> String {
    thousands(r.round() as usize)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| workload | backend | items/s | MB/s | ratio to diskq | p50 / p99 | peak RSS | notes |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---|");
    for r in rows {
        let reference = r.reference.and_then(|b| {
            rows.iter()
                .find(|o| o.workload == r.workload && o.backend == b.name())
                .and_then(|o| o.items_per_s)
                .map(|v| (b, v))
        });
        let ratio = match (r.items_per_s, reference) {
            (Some(v), Some((b, refv))) if b == SYNCED => format!("{:.2} (÷ Synced)", v / refv),
            (Some(v), Some((_, refv))) => format!("{:.2}", v / refv),
            _ => "—".into(),
        };
        let (ips, mbs) = match r.items_per_s {
            Some(v) if r.item_bytes > 0 => {
                (fmt_rate(v), format!("{:.1}", v * r.item_bytes as f64 / 1e6))
            }
            Some(v) => (fmt_rate(v), "—".into()),
            None => ("—".into(), "—".into()),
        };
        let lat = r
            .latency
            .map(|(a, b)| format!("{} / {}", fmt_ns(a), fmt_ns(b)))
            .unwrap_or_default();
        let rss = r
            .rss_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload, r.backend, ips, mbs, ratio, lat, rss, r.note
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--memory-child") => return memory_child(&args[1], args[2].parse().unwrap()),
        Some("--measure") => return measure_child(&args[1..]),
        _ => {}
    }
    START.with(|_| ());
    // `cargo bench` passes `--bench`; other words select workloads.
    let selected: BTreeSet<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_lowercase())
        .collect();
    let want = |w: &str| selected.is_empty() || selected.contains(w);
    let load_before = loadavg();

    let n1 = scaled(1_000_000);
    let n_small = scaled(1_000);
    let n3 = scaled(100_000);
    let n4 = scaled(2_000) / 8 * 8;
    let n_mem = scaled(10_000_000);
    let mut rows = Vec::new();
    if want("w1") {
        rows.extend(fill_drain_rows("W1", &SINGLE_THREADED, n1, SMALL));
    }
    if want("w1") || selected.contains("w1s") {
        // Every operation synced, and yaque with its read position saved on every commit
        // (an open with O_TRUNC each time, slow on ext4), at a small item count.
        let small = format!("W1 {} items", thousands(n_small));
        rows.extend(fill_drain_rows(
            &small,
            &[SYNCED, QF_SYNC, WRITTEN, YAQUE_EVERY_ACK],
            n_small,
            SMALL,
        ));
        rows.push(not_available(
            &format!("{small} put"),
            YAQUE,
            SMALL,
            "n/a for Synced: yaque never calls fsync",
        ));
    }
    if want("w2") {
        rows.extend(w2(n1));
    }
    if want("w3") {
        rows.extend(fill_drain_rows("W3", &SINGLE_THREADED, n3, LARGE));
    }
    if want("w4") {
        rows.extend(w4(n4));
    }
    if want("w5") {
        rows.extend(w5(n1));
    }
    if want("w6") {
        rows.extend(w6(n1));
    }
    if want("w7") {
        rows.extend(w7(n1));
    }
    if want("w8") {
        rows.extend(w8(n1));
    }
    if want("w9") {
        rows.extend(w9(scaled(200_000)));
    }
    if want("memory") {
        rows.extend(memory(n_mem));
    }

    println!();
    println!(
        "Machine: {} cores, {}, kernel {}; temp dir {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        first_line("/proc/cpuinfo", "model name"),
        first_line("/proc/sys/kernel/osrelease", ""),
        std::env::temp_dir().display(),
    );
    println!(
        "Load average (1/5/15 min): {load_before} at start, {} at end; run took {:.0} s",
        loadavg(),
        START.with(|s| s.elapsed().as_secs_f64())
    );
    println!(
        "Items: W1/W2/W5/W6/W7/W8 {} × 64 B; W1 small {} × 64 B; W3 {} × 4 KiB; W4 {} × 64 B; \
         memory {} × 64 B (scale {}); medians of {REPS} runs",
        thousands(n1),
        thousands(n_small),
        thousands(n3),
        thousands(n4),
        thousands(n_mem),
        scale()
    );
    println!();
    print_table(&rows);
}
