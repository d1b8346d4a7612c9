//! Crash safety under `kill -9`, in the style of sled's crash tests.
//!
//! The test binary re-executes itself as a child (`current_exe() --exact sigkill_child
//! --nocapture`; environment variables give the directory, the first id, the durability,
//! the number of consumers and a pacing mode). The child opens the queue (chunk size 7, so
//! that rollovers, checkpoints and chunk deletions happen all the time) and runs forever:
//!
//! * a producer thread puts increasing `u64` ids and, after each `put` returns, prints
//!   `@P <id>`;
//! * one or two consumer threads get, print `@G <id>`, call `task_done` and, after it
//!   returns, print `@A <id>` where `<id>` is the item that `task_done` acknowledged (FIFO:
//!   the k-th `task_done` acknowledges the k-th item gotten; with two consumers the gets and
//!   the acknowledgements are each serialized with the printing, so the lines are exact).
//!
//! Each line is one locked, flushed write to stdout. The parent reads the lines on a thread,
//! sends SIGKILL (`Child::kill`) after a random delay of 10-150 ms after `READY` (20-300 ms
//! at `Synced`; seeded xorshift), or in one round of five around the time the last child
//! took to say `READY`, i.e. while it starts up or recovers; then it reopens
//! the directory and checks the recovered queue against what the lines prove:
//!
//! * live FIFO: the `G` ids are a prefix of (items left from the last round ++ ids put), and
//!   the `A` ids a prefix of the `G` ids;
//! * what comes out after the crash is, in strictly increasing order, a contiguous run of
//!   that sequence: nothing invented (only ids put, or the one id whose `put` may have
//!   returned without its `P` line), nothing reordered, nothing skipped;
//! * every id with a `P` line is there unless acknowledged: the run starts at most one past
//!   the `A` lines (one `task_done` may have returned without its line) and never before
//!   them, so no id with an `A` line comes back, and it ends at the last `P` id or the one
//!   after it.
//!
//! Many rounds run on ONE directory. In the "drain" variants the parent acknowledges
//! everything it recovered, so the next child starts from an empty queue (but the files,
//! chunk numbering and journal carry on); in the "carry" variants it acknowledges only a
//! random prefix and the rest carries over: the next child's consumers must see those first.
//! Each round continues with ids above all earlier ones. Variants: `Durability::Written`
//! (drain, carry, two consumers) and `Durability::Synced` (fewer rounds); they run one at a
//! time (see `serial`). `checker_rejects_wrong_recoveries` checks the checker itself on
//! synthetic recoveries (lost, resurrected, invented, reordered, duplicated items).

use diskq::{Durability, Error, Options, Queue};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::{XorShift, kill};

const CHUNK: usize = 7;
const ENV_DIR: &str = "DISKQ_SIGKILL_DIR";
const ENV_START: &str = "DISKQ_SIGKILL_START";
const ENV_SYNCED: &str = "DISKQ_SIGKILL_SYNCED";
const ENV_CONSUMERS: &str = "DISKQ_SIGKILL_CONSUMERS";
const ENV_PACE: &str = "DISKQ_SIGKILL_PACE";
const ENV_BATCH: &str = "DISKQ_SIGKILL_BATCH";
/// Chunk size of the batch variant: a `put_many` of `BATCH` items is then one long copy.
const BATCH_CHUNK: usize = 10_000;
const BATCH: u64 = 2_000;
const CHILD_TEST: &str = "sigkill_child";

fn options(synced: bool) -> Options {
    options_for(synced, 1)
}

fn options_for(synced: bool, batch: u64) -> Options {
    let chunk = if batch > 1 { BATCH_CHUNK } else { CHUNK };
    Options::new().chunk_size(chunk).durability(if synced {
        Durability::Synced
    } else {
        Durability::Written
    })
}

// ---------------------------------------------------------------------------------------
// The child.

/// One line on stdout: a single locked write, flushed.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("@{line}\n").as_bytes());
    let _ = out.flush();
}

fn fail(what: &str, e: &Error) -> ! {
    emit(&format!("E {what}: {e}"));
    std::process::exit(2)
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The child role; does nothing in a normal test run.
#[test]
fn sigkill_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let start = env_u64(ENV_START);
    let synced = env_u64(ENV_SYNCED) == 1;
    let consumers = env_u64(ENV_CONSUMERS);
    let pace = env_u64(ENV_PACE);
    let batch = env_u64(ENV_BATCH);
    let q: Queue<u64> = match options_for(synced, batch).open(&dir) {
        Ok(q) => q,
        Err(e) => fail("open", &e),
    };
    {
        // After libtest's "test sigkill_child ... ", which has no newline.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\n@READY\n");
        let _ = out.flush();
    }
    let get_lock = Mutex::new(());
    let ack_lock = Mutex::new(());
    let gotten = Mutex::new(VecDeque::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut id = start;
            loop {
                if batch > 1 {
                    // One `put_many`: the batch is one long append into the mapping.
                    let ids: Vec<u64> = (id..id + batch).collect();
                    if let Err(e) = q.put_many(&ids) {
                        fail("put_many", &e);
                    }
                    // One line for the batch, so that most of the time goes to the queue.
                    emit(&format!("PB {id} {batch}"));
                    id += batch;
                    continue;
                }
                if let Err(e) = q.put(&id) {
                    fail("put", &e);
                }
                emit(&format!("P {id}"));
                id += 1;
                if pace == 2 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        for _ in 0..consumers {
            s.spawn(|| {
                let mut n = 0u64;
                loop {
                    {
                        let _g = get_lock.lock().unwrap();
                        match q.get_timeout(Duration::from_millis(20)) {
                            Ok(v) => {
                                emit(&format!("G {v}"));
                                gotten.lock().unwrap().push_back(v);
                            }
                            Err(Error::Timeout) => continue,
                            Err(e) => fail("get", &e),
                        }
                    }
                    n += 1;
                    match pace {
                        1 => std::thread::sleep(Duration::from_micros(300)),
                        3 if n.is_multiple_of(300) => std::thread::sleep(Duration::from_millis(20)),
                        _ => {}
                    }
                    let _a = ack_lock.lock().unwrap();
                    if let Err(e) = q.task_done() {
                        fail("task_done", &e);
                    }
                    let v = gotten.lock().unwrap().pop_front().unwrap();
                    emit(&format!("A {v}"));
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// The parent.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Acknowledge everything recovered: every child starts from an empty queue.
    Drain,
    /// Acknowledge a random prefix; the rest carries over to the next child.
    Carry,
}

#[derive(Default, Debug)]
struct Stats {
    rounds: usize,
    killed_before_ready: usize,
    /// How long the last child took from spawn to `READY` (after its recovery).
    ready_after: Option<Duration>,
    puts: usize,
    gets: usize,
    acks: usize,
    /// Rounds where a `task_done` had returned (the item was gone) without its `A` line.
    ack_without_line: usize,
    /// Rounds where the id put without a `P` line was recovered.
    put_without_line: usize,
    carried: usize,
    max_recovered: usize,
}

/// What a child printed.
#[derive(Default)]
struct Lines {
    ready: bool,
    p: Vec<u64>,
    g: Vec<u64>,
    a: Vec<u64>,
}

fn chunk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.strip_prefix('q')
                .is_some_and(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// Runs one child from `start` and kills it; returns its lines.
fn run_child(
    dir: &Path,
    start: u64,
    synced: bool,
    consumers: u64,
    batch: u64,
    rng: &mut XorShift,
    stats: &mut Stats,
) -> Lines {
    let pace = rng.below(4);
    let env = [
        (ENV_DIR, dir.display().to_string()),
        (ENV_START, start.to_string()),
        (ENV_SYNCED, u64::from(synced).to_string()),
        (ENV_CONSUMERS, consumers.to_string()),
        (ENV_PACE, pace.to_string()),
        (ENV_BATCH, batch.to_string()),
    ];
    // fdatasync makes a Synced child slow: give it longer.
    let after_ready = if synced { 20..=300 } else { 10..=150 };
    let killed = kill::run_and_kill(
        &crate::common::test_path(module_path!(), CHILD_TEST),
        &env,
        rng,
        &mut stats.ready_after,
        after_ready,
    );
    let mut lines = Lines {
        ready: killed.ready,
        ..Lines::default()
    };
    for (tag, rest) in killed.lines {
        match tag.as_str() {
            "P" => lines.p.push(rest.parse().unwrap()),
            "PB" => {
                let (first, n) = rest.split_once(' ').unwrap();
                let (first, n): (u64, u64) = (first.parse().unwrap(), n.parse().unwrap());
                lines.p.extend(first..first + n);
            }
            "G" => lines.g.push(rest.parse().unwrap()),
            "A" => lines.a.push(rest.parse().unwrap()),
            _ => panic!("the child (start {start}) printed {tag} {rest}"),
        }
    }
    if !lines.ready {
        stats.killed_before_ready += 1;
    }
    lines
}

/// Gets everything with `get_nowait`; any error but `Empty` fails the test.
fn recover_all(q: &Queue<u64>, case: &str) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(v) => out.push(v),
            Err(Error::Empty) => return out,
            Err(e) => panic!(
                "{case}: get after the crash failed after {} items: {e}",
                out.len()
            ),
        }
    }
}

/// `assert!` for functions returning `Result<_, String>`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Checks the recovered items `rec` against the child's lines. `carried` is what the queue
/// held when the child started; `start` its first id. Returns (acknowledged on disk,
/// recovered the id put without a `P` line), or what is wrong.
fn check_round(
    case: &str,
    carried: &[u64],
    start: u64,
    lines: &Lines,
    rec: &[u64],
    batch: u64,
) -> Result<(usize, bool), String> {
    let Lines { p, g, a, .. } = lines;
    // The producer is sequential: P ids are start, start+1, ...
    for (k, id) in p.iter().enumerate() {
        ensure!(*id == start + k as u64, "{case}: P lines out of sequence");
    }
    // The ids whose put may have returned (or been written) without their P lines: the
    // next one, or with `put_many` the next batch.
    let maybe = start + p.len() as u64 + batch - 1;
    let mut full: Vec<u64> = carried.to_vec();
    full.extend(start..=maybe);
    let sure = carried.len() + p.len(); // full[..sure] were certainly put
    let head = |v: &[u64]| format!("{:?}", &v[..v.len().min(8)]);

    // Live FIFO in the child.
    ensure!(
        g.len() <= full.len() && g[..] == full[..g.len()],
        "{case}: the child got {} (first {}) but the queue held {} (first {})",
        g.len(),
        head(g),
        full.len(),
        head(&full)
    );
    ensure!(
        a.len() <= g.len() && a[..] == g[..a.len()],
        "{case}: acknowledgements are not the gets in FIFO order"
    );

    // After the crash.
    for w in rec.windows(2) {
        ensure!(
            w[0] < w[1],
            "{case}: recovered items out of order: {} then {}",
            w[0],
            w[1]
        );
    }
    let (acked, end) = match rec.first() {
        Some(first) => {
            let Some(pos) = full.iter().position(|x| x == first) else {
                return Err(format!(
                    "{case}: recovered id {first}, which no one put (carried {}, ids {start}..={maybe})",
                    carried.len()
                ));
            };
            ensure!(
                pos + rec.len() <= full.len() && rec[..] == full[pos..pos + rec.len()],
                "{case}: the recovered items are not a contiguous run of what was put: \
                 {} items from {first}; last recovered {:?}, last put {maybe}",
                rec.len(),
                rec.last()
            );
            (pos, pos + rec.len())
        }
        None => {
            // Nothing left: the empty run sits after everything certainly put, and the
            // checks below require that all of it was acknowledged.
            let at = a.len().max(sure);
            (at, at)
        }
    };
    ensure!(
        acked >= a.len(),
        "{case}: {} items with an A line, but the recovered queue starts at item {acked} \
         ({:?}): an acknowledged item came back",
        a.len(),
        rec.first()
    );
    ensure!(
        acked <= a.len() + 1 && acked <= g.len(),
        "{case}: {} A lines, {} G lines, but the first {acked} items are gone: items \
         that were not acknowledged were lost (gone without an A line: {:?})",
        a.len(),
        g.len(),
        &full[a.len().min(full.len())..acked.min(full.len())]
    );
    ensure!(
        end >= sure,
        "{case}: {} items certainly put (last P id {:?}), but the recovered queue ends at \
         {end} ({:?}): a put item was lost",
        sure,
        p.last(),
        rec.last()
    );
    ensure!(end <= full.len(), "{case}: more recovered than put");
    Ok((acked, end > sure))
}

/// The variants run one at a time: a child spawned by one holds a copy of every descriptor
/// of this process between fork and exec, so another variant that has just closed its queue
/// could find it still locked (see `tests/crash/crash_locking.rs`,
/// `reopen_is_not_locked_by_processes_spawned_meanwhile`). Within a variant the parent has
/// no queue open while it spawns.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_rounds(
    rounds: usize,
    synced: bool,
    consumers: u64,
    mode: Mode,
    seed: u64,
    batch: u64,
) -> Stats {
    let _serial = serial();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = XorShift(seed);
    let mut stats = Stats::default();
    let mut carried: Vec<u64> = Vec::new();
    let mut start = 1_000;
    for round in 0..rounds {
        let case = format!("round {round} (start {start}, {mode:?}, synced {synced})");
        let lines = run_child(dir, start, synced, consumers, batch, &mut rng, &mut stats);

        let q: Queue<u64> = options(synced)
            .open(dir)
            .unwrap_or_else(|e| panic!("{case}: open after SIGKILL failed: {e}"));
        let rec = recover_all(&q, &case);
        let (acked, with_maybe) = check_round(&case, &carried, start, &lines, &rec, batch)
            .unwrap_or_else(|e| panic!("{e}"));

        stats.rounds += 1;
        stats.puts += lines.p.len();
        stats.gets += lines.g.len();
        stats.acks += lines.a.len();
        stats.ack_without_line += usize::from(acked > lines.a.len());
        stats.put_without_line += usize::from(with_maybe);
        stats.max_recovered = stats.max_recovered.max(rec.len());

        let keep = match mode {
            Mode::Drain => 0,
            Mode::Carry => rng.below(rec.len().min(60) as u64 + 1) as usize,
        };
        for _ in 0..rec.len() - keep {
            q.task_done().unwrap();
        }
        q.close().unwrap();
        carried = rec[rec.len() - keep..].to_vec();
        stats.carried += carried.len();
        let files = chunk_files(dir);
        assert!(
            files <= carried.len() / CHUNK + 3,
            "{case}: {files} chunk files for {} items left",
            carried.len()
        );
        start += lines.p.len() as u64 + batch + 1;
    }

    // The last state, once more, then empty it.
    let q: Queue<u64> = options(synced).open(dir).unwrap();
    assert_eq!(recover_all(&q, "final"), carried);
    for _ in 0..carried.len() {
        q.task_done().unwrap();
    }
    q.close().unwrap();
    let q: Queue<u64> = options(synced).open(dir).unwrap();
    assert_eq!(q.len(), 0);
    assert!(chunk_files(dir) <= 2);
    drop(q);

    eprintln!(
        "{mode:?}, synced {synced}, {consumers} consumer(s): {stats:?} in {:?}",
        t0.elapsed()
    );
    assert!(
        stats.puts >= rounds * 3,
        "the children did too little to test anything: {stats:?}"
    );
    assert!(stats.acks > 0 && stats.gets > 0, "{stats:?}");
    stats
}

#[test]
fn sigkill_written_drain() {
    run_rounds(60, false, 1, Mode::Drain, 0x5EED_0001, 1);
}

#[test]
fn sigkill_written_carry_over() {
    let stats = run_rounds(50, false, 1, Mode::Carry, 0x5EED_0002, 1);
    assert!(stats.carried > 0, "nothing was carried over: {stats:?}");
}

#[test]
fn sigkill_written_two_consumers() {
    run_rounds(40, false, 2, Mode::Carry, 0x5EED_0003, 1);
}

/// `put_many` of 2,000 items at a time, chunks of 10,000: kills during long appends of
/// many frames at once. (A copy into the mapping that stored its parts out of order left
/// zeros before complete frames; `tests/crash/preallocation.rs`,
/// `a_killed_append_leaves_a_prefix`, tests that precisely. Here the copy is a small part
/// of each round, so this variant checks the whole path rather than that race.)
#[test]
fn sigkill_written_batches() {
    run_rounds(80, false, 1, Mode::Carry, 0x5EED_0005, BATCH);
}

#[test]
fn sigkill_synced() {
    run_rounds(20, true, 1, Mode::Carry, 0x5EED_0004, 1);
}

/// The checker itself: it accepts what a crash may leave and rejects every kind of wrong
/// recovery (so that the rounds above cannot pass vacuously).
#[test]
fn checker_rejects_wrong_recoveries() {
    // Carried 5, 6; ids 10, 11, 12 put with P lines (13 maybe); 5, 6, 10, 11 gotten;
    // 5, 6, 10 acknowledged with A lines.
    let lines = Lines {
        ready: true,
        p: vec![10, 11, 12],
        g: vec![5, 6, 10, 11],
        a: vec![5, 6, 10],
    };
    let check = |rec: &[u64]| check_round("synthetic", &[5, 6], 10, &lines, rec, 1).is_ok();
    // Acceptable: 11 acknowledged or not, 13 written or not.
    for ok in [&[11, 12][..], &[12], &[11, 12, 13], &[12, 13]] {
        assert!(check(ok), "{ok:?} should be accepted");
    }
    for bad in [
        &[][..],       // 11 and 12 lost
        &[10, 11, 12], // 10 was acknowledged
        &[5, 6, 10, 11, 12],
        &[11],         // 12 lost
        &[11, 13],     // 12 skipped
        &[11, 12, 14], // 14 never put
        &[12, 11],     // out of order
        &[13],         // 11 (not acknowledged) and 12 lost
        &[11, 11, 12], // delivered twice
        &[99],         // invented
    ] {
        assert!(!check(bad), "{bad:?} should be rejected");
    }
    // Everything acknowledged, nothing left: fine.
    let lines = Lines {
        ready: true,
        p: vec![10],
        g: vec![10],
        a: vec![10],
    };
    assert!(check_round("synthetic", &[], 10, &lines, &[], 1).is_ok());
    assert!(check_round("synthetic", &[], 10, &lines, &[11], 1).is_ok());
    assert!(check_round("synthetic", &[], 10, &lines, &[10], 1).is_err());
    // Live FIFO violated in the child's own lines.
    let lines = Lines {
        ready: true,
        p: vec![10, 11],
        g: vec![11],
        a: vec![],
    };
    assert!(check_round("synthetic", &[], 10, &lines, &[11], 1).is_err());
}
