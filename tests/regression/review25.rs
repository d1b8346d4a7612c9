//! Hostile review of where a checkpoint takes the delays from (`Retries::snapshot`: the
//! copies stepped over, in `delayed`, and those not reached yet, in `ahead`, less the
//! acknowledged): a crash at every write and sync point of a workload of `nack_after`s,
//! with checkpoints at almost every journal append, chunk rollovers and a close and
//! reopen in the middle. Tests named `fixed_...` failed before their fix; `probe_...`
//! passed when written.

use diskq::storage::{Crash, Op, SimStorage};
use diskq::{Clock, Delivery, Durability, Error, ManualClock, Options, Queue};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/sim/q";
/// The wall clock (ms) when the workload starts.
const T0: u64 = 1_000_000;
/// After every delay of the workload (the longest is due at T0 + 61 s).
const END: u64 = T0 + 90_000;

#[derive(Debug, Clone, Copy)]
struct Config {
    level: Durability,
    crash: Crash,
    /// Gets sync their delivery entries at `Synced` (FORMAT.md §Deliveries): attempt
    /// counts then survive a power loss too.
    max_deliveries: bool,
    journal_limit: u64,
}

impl Config {
    /// Whether every delivery handed out survives the crash: a process crash keeps every
    /// written entry; a power loss only the synced ones, and a get's entry is synced only
    /// with `max_deliveries`.
    fn deliveries_survive(&self) -> bool {
        matches!(self.crash, Crash::Process) || self.max_deliveries
    }
}

fn options(c: &Config, clock: &ManualClock) -> Options {
    let o = Options::new()
        .durability(c.level)
        .chunk_size(4)
        .journal_limit(c.journal_limit)
        .clock(Arc::new(clock.clone()));
    if c.max_deliveries {
        o.max_deliveries(100)
    } else {
        o
    }
}

/// What the workload did before the crash.
#[derive(Debug, Default)]
struct Model {
    /// Put with `Ok`.
    put: BTreeSet<u32>,
    /// Acknowledged with `Ok`.
    acked: BTreeSet<u32>,
    /// The payload whose put or acknowledgement was under way at the crash: it may or may
    /// not have reached the disk.
    uncertain: Option<u32>,
    /// The highest attempt handed out per payload (its delivery was recorded first).
    attempts: BTreeMap<u32, u32>,
    /// Each `nack_after` called, returned or not: (payload, seq of the delivery given
    /// back, due time).
    delays: Vec<(u32, u64, u64)>,
}

fn get<'q>(q: &'q Queue<u32>, m: &mut Model, want: u32) -> Result<Delivery<'q, u32>, Error> {
    let d = q.get_delivery_nowait()?;
    // Until the crash every run does the same.
    assert_eq!(*d, want, "the workload went otherwise: {m:?}");
    let a = m.attempts.entry(want).or_default();
    *a = (*a).max(d.attempt());
    Ok(d)
}

fn put(q: &Queue<u32>, m: &mut Model, x: u32) -> Result<(), Error> {
    m.uncertain = Some(x);
    q.put(&x)?;
    m.uncertain = None;
    m.put.insert(x);
    Ok(())
}

fn ack(d: Delivery<'_, u32>, m: &mut Model) -> Result<(), Error> {
    let x = *d;
    m.uncertain = Some(x);
    d.ack()?;
    m.uncertain = None;
    m.acked.insert(x);
    Ok(())
}

fn later(d: Delivery<'_, u32>, m: &mut Model, clock: &ManualClock, secs: u64) -> Result<(), Error> {
    m.delays.push((*d, d.seq(), clock.wall_ms() + secs * 1000));
    d.nack_after(Duration::from_secs(secs))
}

/// Copies given back with different delays: some stepped over by later gets (in
/// `delayed`), some not reached yet (in `ahead`), one given back again once due, others
/// acknowledged; chunks of 4 items roll over, checkpoints come every few journal appends
/// (`journal_limit`), and the queue is closed and reopened in the middle (the delays
/// recovered into `ahead`). Seqs in the comments.
fn workload(
    q: Queue<u32>,
    st: &SimStorage,
    c: &Config,
    clock: &ManualClock,
    m: &mut Model,
) -> Result<(), Error> {
    for x in 0..8 {
        put(&q, m, x)?; // seqs 0..8
    }
    let d0 = get(&q, m, 0)?;
    let d1 = get(&q, m, 1)?;
    let d2 = get(&q, m, 2)?;
    let d3 = get(&q, m, 3)?;
    later(d0, m, clock, 30)?; // copy 8, due T0+30s
    ack(d1, m)?;
    later(d2, m, clock, 10)?; // copy 9, due T0+10s
    put(&q, m, 8)?; // 10
    put(&q, m, 9)?; // 11
    let d = get(&q, m, 4)?;
    ack(d, m)?;
    let d = get(&q, m, 5)?;
    later(d, m, clock, 20)?; // copy 12, due T0+20s: ahead
    let d = get(&q, m, 6)?;
    ack(d, m)?;
    let d = get(&q, m, 7)?;
    ack(d, m)?;
    let d8 = get(&q, m, 8)?; // steps over 8 and 9 (into delayed)
    clock.advance(Duration::from_secs(11)); // 9 is due
    let d = get(&q, m, 2)?;
    assert_eq!(d.attempt(), 2);
    later(d, m, clock, 15)?; // copy 13, due T0+26s: ahead
    d3.nack()?;
    let d = get(&q, m, 3)?;
    ack(d, m)?;
    drop(d8); // given back
    q.close()?;

    // Reopened: 8 (copy of 0, due T0+30s), 12 (5, T0+20s) and 13 (2, T0+26s) are ahead.
    let q: Queue<u32> = options(c, clock).open_on(Arc::new(st.clone()), DIR)?;
    put(&q, m, 10)?; // 14
    put(&q, m, 11)?; // 15
    let d = get(&q, m, 8)?; // steps over 8 (into delayed); 9 was acknowledged
    ack(d, m)?;
    let d9 = get(&q, m, 9)?;
    clock.advance(Duration::from_secs(10)); // T0+21s: 12 is due
    let d = get(&q, m, 5)?;
    ack(d, m)?;
    let d10 = get(&q, m, 10)?; // steps over 13 (into delayed)
    ack(d9, m)?;
    let d = get(&q, m, 11)?;
    ack(d, m)?;
    put(&q, m, 12)?; // 16
    put(&q, m, 13)?; // 17
    later(d10, m, clock, 40)?; // copy 18, due T0+61s: ahead, behind 17
    let d = get(&q, m, 12)?;
    ack(d, m)?;
    // Left: 8 (0, delayed), 13 (2, delayed), 17 (13, waiting), 18 (10, ahead).
    drop(q);
    Ok(())
}

/// A delivery after the crash: (wall ms, seq, payload, attempt).
type Seen = (u64, u64, u32, u32);

/// Reopens what `crash` leaves and takes every item, acknowledging each, while the clock
/// moves in steps of 500 ms until every delay is over.
fn drain(st: &SimStorage, c: &Config, clock: &ManualClock, ctx: &str) -> Vec<Seen> {
    let q: Queue<u32> = options(c, clock)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let mut seen = Vec::new();
    loop {
        loop {
            match q.get_delivery_nowait() {
                Ok(d) => {
                    seen.push((clock.wall_ms(), d.seq(), *d, d.attempt()));
                    d.ack().unwrap_or_else(|e| panic!("{ctx}: ack: {e}"));
                }
                Err(e) if e.is_empty() => break,
                Err(e) => panic!("{ctx}: get: {e}"),
            }
        }
        if clock.wall_ms() >= END {
            return seen;
        }
        clock.advance(Duration::from_millis(500));
    }
}

/// The invariants across the crash, from FORMAT.md §nack_after and §Deliveries.
fn check(c: &Config, m: &Model, seen: &[Seen], ctx: &str) {
    let payloads = |x: u32| seen.iter().filter(move |s| s.2 == x);
    // (1) Nothing lost: put and not acknowledged, it comes back (the original or a copy);
    // acknowledged with Ok, it does not.
    for &x in &m.put {
        if Some(x) == m.uncertain {
            continue;
        }
        let back = payloads(x).count() > 0;
        assert_eq!(
            back,
            !m.acked.contains(&x),
            "{ctx}: item {x} (acknowledged: {}) back: {back}; {m:?}; seen {seen:?}",
            m.acked.contains(&x)
        );
    }
    // (2) A delay whose original's acknowledgement reached the disk holds: the delay is
    // journaled in the same append, before it (§nack_after, step 2), and a checkpoint
    // records both. The original not coming back says its acknowledgement was kept; then
    // no later instance of the item (the copy, or a copy of the copy, due later still)
    // comes before the due time. When the original comes back, step 2 was lost and the
    // copy may come at once ("Between 1 and 2: both; the copy has no delay").
    for &(x, orig, due) in &m.delays {
        if seen.iter().any(|s| s.1 == orig) {
            continue;
        }
        for s in payloads(x).filter(|s| s.1 > orig) {
            assert!(
                s.0 >= due,
                "{ctx}: item {x} (given back as seq {orig}, due {due}) came back as seq {} \
                 at {}, {} ms early; {m:?}; seen {seen:?}",
                s.1,
                s.0,
                due - s.0
            );
        }
    }
    // (3) Attempt counts do not go down: an item handed out n times comes back with at
    // least n + 1 (the copy carries the count once step 2 is journaled; before, the
    // original comes back with it).
    if c.deliveries_survive() {
        for (&x, &n) in &m.attempts {
            if m.acked.contains(&x) || Some(x) == m.uncertain {
                continue;
            }
            let most = payloads(x).map(|s| s.3).max().unwrap_or(0);
            assert!(
                most > n,
                "{ctx}: item {x} handed out {n} times came back with attempt {most}; {m:?}; \
                 seen {seen:?}"
            );
        }
    }
}

fn run(c: &Config, crash_at: Option<(u64, bool)>) -> (u64, u64) {
    let clock = ManualClock::new(T0);
    let st = SimStorage::new();
    let q: Queue<u32> = options(c, &clock)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap();
    let (base, renames) = (st.ops(), st.count(Op::Rename));
    if let Some((k, tear)) = crash_at {
        st.crash_after(base + k, tear);
    }
    let mut m = Model::default();
    let res = workload(q, &st, c, &clock, &mut m);
    let ctx = format!("{c:?} crash at {crash_at:?}: {res:?}");
    match crash_at {
        None => assert!(res.is_ok(), "{ctx}"),
        Some(_) => {
            if let Err(e) = &res {
                assert!(!e.is_empty(), "{ctx}: the workload found no item");
            }
        }
    }
    let ops = (st.ops() - base, st.count(Op::Rename) - renames);
    let seen = drain(&st.after_crash(c.crash), c, &clock, &ctx);
    check(c, &m, &seen, &ctx);
    ops
}

/// A crash at every write and sync point (each torn and whole) of the workload, as a
/// process crash at `Written` and `Synced` and a power loss at `Synced` (all unsynced
/// data lost, or any subset of its pages kept, a seed per point), with and without
/// `max_deliveries`, with a checkpoint every few appends (16 in the workload) or at
/// rollovers and the close only (6): 85 to 237 points per configuration, 4,280 runs in
/// all. No item is lost, none acknowledged comes back, no delay whose acknowledgement of
/// the original was kept is cut short, and no attempt count recorded goes down.
#[test]
fn probe_a_crash_at_any_point_keeps_the_delays_a_checkpoint_took() {
    let configs = |journal_limit| {
        let c = |level, crash, max_deliveries| Config {
            level,
            crash,
            max_deliveries,
            journal_limit,
        };
        [
            c(Durability::Written, Crash::Process, false),
            c(Durability::Synced, Crash::Process, false),
            c(Durability::Synced, Crash::PowerLoss, false),
            c(Durability::Synced, Crash::PowerLoss, true),
            c(Durability::Synced, Crash::PowerLossPages(0), false),
            c(Durability::Synced, Crash::PowerLossPages(0), true),
        ]
    };
    let mut points = 0;
    // A checkpoint every few appends, and only at rollovers and the close.
    for journal_limit in [40, 1 << 20] {
        for c in configs(journal_limit) {
            let (ops, checkpoints) = run(&c, None);
            assert!(checkpoints >= 4, "{c:?}: {checkpoints} checkpoints");
            for k in 0..=ops {
                for tear in [false, true] {
                    let mut c = c;
                    if let Crash::PowerLossPages(_) = c.crash {
                        c.crash = Crash::PowerLossPages(2 * k + u64::from(tear));
                    }
                    run(&c, Some((k, tear)));
                    points += 1;
                }
            }
        }
    }
    assert!(points > 500, "{points} crash points");
}
