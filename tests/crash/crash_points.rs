//! Simulated crash points: a workload of puts, gets, task_dones, chunk rollovers and
//! checkpoints runs on the in-memory storage, which stops the world after its N-th
//! mutating operation (optionally tearing that write in half). Recovery then runs on what
//! a process crash, or at the synced level a power loss, leaves behind, and the promises
//! are checked: no item whose put returned Ok is lost, no item whose task_done returned Ok
//! comes back, order is kept and nothing is invented. Exhaustive over N.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/sim/q";

type Item = (u64, Vec<u8>);

fn item(id: u64) -> Item {
    // Sizes vary so frames straddle read-buffer refills differently.
    (
        id,
        (0..(id.wrapping_mul(7) % 40))
            .map(|b| (b ^ id) as u8)
            .collect(),
    )
}

/// Chunks end every three records, or with `by_size` by their byte limit: before 100
/// bytes, after one to three of these records.
fn opts(durability: Durability, by_size: bool) -> Options {
    let opts = Options::new().durability(durability).journal_limit(24); // a checkpoint every two journal entries
    if by_size {
        opts.chunk_size(1000).chunk_bytes(100)
    } else {
        opts.chunk_size(3)
    }
}

#[derive(Debug, Default)]
struct Outcome {
    /// Ids whose put returned Ok.
    put_ok: BTreeSet<u64>,
    /// Ids whose task_done returned Ok.
    acked_ok: BTreeSet<u64>,
    /// Ids whose put was attempted.
    attempted: u64,
    /// The item whose task_done failed when the world stopped: the entry may or may not
    /// have reached the disk, so it may or may not come back.
    ack_uncertain: Option<u64>,
}

/// Puts, gets and acknowledges, with one reopen in the middle; stops at the first error
/// (the simulated process is gone).
fn workload(
    st: &SimStorage,
    durability: Durability,
    by_size: bool,
    out: &mut Outcome,
) -> Result<(), Error> {
    let mut gotten = Vec::new();
    let mut acks = 0;
    let mut next = 0u64;
    for round in 0..2 {
        let q: Queue<Item> = opts(durability, by_size).open_on(Arc::new(st.clone()), DIR)?;
        for step in 0..8u64 {
            for _ in 0..3 {
                out.attempted = next + 1;
                q.put(&item(next))?;
                out.put_ok.insert(next);
                next += 1;
            }
            for _ in 0..(1 + step % 3) {
                match q.get_nowait() {
                    Ok(it) => gotten.push(it.0),
                    Err(Error::Empty) => break,
                    Err(e) => return Err(e),
                }
            }
            for _ in 0..((step + 1) % 2 + round) {
                if acks < gotten.len() {
                    out.ack_uncertain = Some(gotten[acks]);
                    q.task_done()?;
                    out.ack_uncertain = None;
                    out.acked_ok.insert(gotten[acks]);
                    acks += 1;
                }
            }
        }
        if round == 0 {
            q.close()?;
            // Unacknowledged items are delivered again after the reopen.
            gotten.truncate(acks);
        } else {
            drop(q);
        }
    }
    Ok(())
}

/// What a crash mode promises at a durability level.
#[derive(Clone, Copy)]
struct Promise {
    /// Recovery succeeds (it may only refuse after a power loss below the synced level).
    opens: bool,
    /// Every put that returned Ok survives and no task_done that returned Ok is undone.
    keeps: bool,
    /// What comes back is a run of consecutive items (the workload acknowledges FIFO).
    contiguous: bool,
}

/// Opens what the crash left and checks the promises.
fn check(
    image: SimStorage,
    durability: Durability,
    by_size: bool,
    out: &Outcome,
    promise: Promise,
    ctx: &str,
) -> Option<diskq::Recovery> {
    let strict = promise.keeps;
    let q: Queue<Item> = match opts(durability, by_size).open_on(Arc::new(image.clone()), DIR) {
        Ok(q) => q,
        Err(e) if !promise.opens && e.is_corrupt() => return None, // no promise at this level
        Err(e) => panic!("{ctx}: recovery failed: {e}"),
    };
    let mut ids = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(it) => {
                assert_eq!(it, item(it.0), "{ctx}: item {} damaged", it.0);
                ids.push(it.0);
            }
            Err(Error::Empty) => break,
            Err(e) if !promise.opens && e.is_corrupt() => return None,
            Err(e) => panic!("{ctx}: get failed: {e}"),
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{ctx}: order broken: {ids:?}"
    );
    if promise.contiguous {
        // Below `Synced` recent work may be lost and acknowledged items may return, but
        // what comes back is one run of items: nothing missing from the middle.
        assert!(
            ids.windows(2).all(|w| w[0] + 1 == w[1]),
            "{ctx}: items missing from the middle: {ids:?}"
        );
    }
    assert!(
        ids.iter().all(|&id| id < out.attempted),
        "{ctx}: invented item in {ids:?} (only {} attempted)",
        out.attempted
    );
    if strict {
        let found: BTreeSet<u64> = ids.iter().copied().collect();
        for id in out.put_ok.difference(&out.acked_ok) {
            if out.ack_uncertain == Some(*id) {
                continue;
            }
            assert!(
                found.contains(id),
                "{ctx}: put {id} returned Ok and is lost: {ids:?}"
            );
        }
        for id in &out.acked_ok {
            assert!(
                !found.contains(id),
                "{ctx}: acknowledged {id} came back: {ids:?}"
            );
        }
    }
    // The recovered queue works: acknowledge everything, add one, reopen.
    for _ in &ids {
        q.task_done().unwrap();
    }
    q.put(&item(u64::MAX)).unwrap();
    let recovered = q.recovery();
    q.close().unwrap();
    let q: Queue<Item> = opts(durability, by_size)
        .open_on(Arc::new(image), DIR)
        .unwrap_or_else(|e| panic!("{ctx}: second reopen failed: {e}"));
    assert_eq!(q.get_nowait().unwrap(), item(u64::MAX), "{ctx}");
    assert!(
        !q.recovery().after_restart,
        "{ctx}: same boot, yet a restart"
    );
    Some(recovered)
}

/// Runs the workload once without a crash and returns its operation count.
fn total_ops(durability: Durability, by_size: bool) -> u64 {
    let st = SimStorage::new();
    let mut out = Outcome::default();
    workload(&st, durability, by_size, &mut out).unwrap();
    assert!(
        out.acked_ok.len() >= 10 && out.put_ok.len() == 48,
        "{out:?}"
    );
    st.ops()
}

fn sweep(durability: Durability, crash: Crash, tear: bool, promise: Promise) -> u64 {
    sweep_with(durability, false, crash, tear, promise).0
}

fn sweep_with(
    durability: Durability,
    by_size: bool,
    crash: Crash,
    tear: bool,
    promise: Promise,
) -> (u64, Vec<diskq::Recovery>) {
    let total = total_ops(durability, by_size);
    let mut reports = Vec::new();
    for n in 0..=total {
        let st = SimStorage::new();
        st.crash_after(n, tear);
        let mut out = Outcome::default();
        let res = workload(&st, durability, by_size, &mut out);
        // (At the buffered level the last operations happen in drop, which cannot fail.)
        assert_eq!(
            st.crashed(),
            n < total,
            "crash after {n} of {total} ops: {res:?}"
        );
        let ctx = format!(
            "{durability:?}/{crash:?}/tear={tear}/by_size={by_size}: crash after op {n} of {total}"
        );
        reports.extend(check(
            st.after_crash(crash),
            durability,
            by_size,
            &out,
            promise,
            &ctx,
        ));
    }
    (total + 1, reports)
}

const ALL: Promise = Promise {
    opens: true,
    keeps: true,
    contiguous: true,
};
const OPENS: Promise = Promise {
    opens: true,
    keeps: false,
    contiguous: false,
};
const NONE: Promise = Promise {
    opens: false,
    keeps: false,
    contiguous: false,
};
/// After a power loss below `Synced` (issue #15): `open` succeeds by itself, and what
/// comes back is intact, in order, invented by nobody and missing nothing in the middle.
const POWER_LOSS_BELOW_SYNCED: Promise = Promise {
    opens: true,
    keeps: false,
    contiguous: true,
};

#[test]
fn every_crash_point_at_the_written_level_after_a_process_crash() {
    let points = sweep(Durability::Written, Crash::Process, false, ALL);
    println!("{points} crash points");
}

#[test]
fn every_torn_write_at_the_written_level() {
    sweep(Durability::Written, Crash::Process, true, ALL);
}

#[test]
fn every_crash_point_at_the_synced_level_after_a_power_loss() {
    sweep(Durability::Synced, Crash::PowerLoss, false, ALL);
    sweep(Durability::Synced, Crash::PowerLoss, true, ALL);
}

#[test]
fn every_crash_point_at_the_synced_level_after_a_power_loss_keeping_unsynced_prefixes() {
    for seed in 1..=8 {
        sweep(
            Durability::Synced,
            Crash::PowerLossPrefix(seed),
            seed % 2 == 0,
            ALL,
        );
    }
}

#[test]
fn every_crash_point_at_the_synced_level_after_a_process_crash() {
    sweep(Durability::Synced, Crash::Process, true, ALL);
}

#[test]
fn power_loss_below_the_synced_level_never_gives_a_wrong_item() {
    // No promise of keeping anything, but recovery must not panic, invent or reorder.
    sweep(Durability::Written, Crash::PowerLoss, false, NONE);
    for seed in 1..=4 {
        sweep(
            Durability::Written,
            Crash::PowerLossPrefix(seed),
            false,
            NONE,
        );
    }
}

#[test]
fn buffered_level_crash_points_keep_order_and_invent_nothing() {
    sweep(Durability::Buffered, Crash::Process, true, OPENS);
}

#[test]
fn every_crash_point_where_chunks_end_by_size() {
    // The same rollover as by count (trim, sync, create, header), reached from the byte
    // limit, with records of 24 to 63 bytes that fit one to three to a chunk.
    let newest = |by_size| {
        let st = SimStorage::new();
        workload(&st, Durability::Written, by_size, &mut Outcome::default()).unwrap();
        (0..200u64)
            .rev()
            .find(|no| st.file(&Path::new(DIR).join(format!("q{no:05}"))).is_some())
    };
    // Three records a chunk by count: 48 puts end in chunk 15; by size, later.
    assert_eq!(newest(false), Some(15));
    assert!(newest(true) > Some(20), "ended in chunk {:?}", newest(true));
    sweep_with(Durability::Written, true, Crash::Process, true, ALL);
    sweep_with(Durability::Synced, true, Crash::PowerLoss, false, ALL);
    sweep_with(
        Durability::Synced,
        true,
        Crash::PowerLossPrefix(3),
        true,
        ALL,
    );
    sweep_with(Durability::Written, true, Crash::PowerLoss, false, NONE);
    sweep_with(Durability::Buffered, true, Crash::Process, true, OPENS);
}

/// The page-cache model of a power loss (`Crash::PowerLossPages`): any subset of the
/// unsynced 4 KiB pages persists, a write in flight persists out of order, and a prefix of
/// the unsynced creates, renames and unlinks persists without the data of the files they
/// name. At `Synced` nothing confirmed is lost and no acknowledged item returns.
#[test]
fn every_crash_point_at_the_synced_level_after_a_page_cache_power_loss() {
    let mut points = 0;
    for seed in 1..=12 {
        for by_size in [false, true] {
            let (n, reports) = sweep_with(
                Durability::Synced,
                by_size,
                Crash::PowerLossPages(seed),
                seed % 2 == 0,
                ALL,
            );
            // (Crash points before the new queue's `info` was durable open a new queue.)
            assert!(reports.iter().any(|r| r.after_restart));
            points += n;
        }
    }
    println!("{points} crash points at Synced");
}

/// The same model below `Synced`: recovery opens by itself at every crash point, and
/// the sweep does reach states where it has to cut.
#[test]
fn every_crash_point_below_the_synced_level_after_a_page_cache_power_loss_opens() {
    for level in [Durability::Written, Durability::Buffered] {
        let (mut points, mut cuts, mut lost_acks) = (0, 0, 0);
        for seed in 1..=12 {
            for by_size in [false, true] {
                let (n, reports) = sweep_with(
                    level,
                    by_size,
                    Crash::PowerLossPages(seed),
                    seed % 2 == 0,
                    POWER_LOSS_BELOW_SYNCED,
                );
                points += n;
                cuts += reports.iter().filter(|r| r.cut_at.is_some()).count();
                lost_acks += reports.iter().filter(|r| r.acknowledged_lost > 0).count();
            }
        }
        println!(
            "{level:?}: {points} crash points, {cuts} cut, {lost_acks} with acknowledged items lost"
        );
        assert!(cuts > 0, "{level:?}: no crash point needed a cut");
    }
}

/// What the session opened between the kill and the power loss does.
#[derive(Clone, Copy, Debug)]
enum Middle {
    /// Recovery only: open, then drop.
    Recover,
    /// Open, get every item, acknowledge the first, put one more, close.
    Work,
}

/// The session run in the same boot as the kill: recovery with the page cache intact
/// (it may truncate, delete chunks, rewrite `info`, create a chunk), then `middle`. Its
/// put and acknowledgement join `out`, as the workload's do. The open must succeed: a
/// process crash promises that at every level.
fn middle_session(
    image: &SimStorage,
    durability: Durability,
    by_size: bool,
    middle: Middle,
    out: &mut Outcome,
    ctx: &str,
) {
    let q: Queue<Item> = opts(durability, by_size)
        .open_on(Arc::new(image.clone()), DIR)
        .unwrap_or_else(|e| panic!("{ctx}: open after the kill failed: {e}"));
    assert!(
        !q.recovery().after_restart,
        "{ctx}: same boot, yet a restart"
    );
    if let Middle::Recover = middle {
        drop(q);
        return;
    }
    let mut ids = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(it) => {
                assert_eq!(
                    it,
                    item(it.0),
                    "{ctx}: item {} damaged after the kill",
                    it.0
                );
                ids.push(it.0);
            }
            Err(Error::Empty) => break,
            Err(e) => panic!("{ctx}: get after the kill failed: {e}"),
        }
    }
    if let (Some(&first), Some(&last)) = (ids.first(), ids.last()) {
        q.task_done()
            .unwrap_or_else(|e| panic!("{ctx}: task_done after the kill failed: {e}"));
        out.acked_ok.insert(first);
        // Ids are sequence numbers: the next put is `last + 1`, whatever the workload
        // attempted after it (a put that did not reach the file). (With nothing left,
        // where the sequence goes on is not known here: no put.)
        let id = last + 1;
        out.attempted = out.attempted.max(id + 1);
        q.put(&item(id))
            .unwrap_or_else(|e| panic!("{ctx}: put after the kill failed: {e}"));
        out.put_ok.insert(id);
    }
    q.close()
        .unwrap_or_else(|e| panic!("{ctx}: close after the kill failed: {e}"));
}

/// Issue #15: a process is killed (its unsynced writes still unsynced, in the page
/// cache), the queue is reopened in the same boot, whose recovery may truncate, delete
/// acknowledged chunks, rewrite `info` and create chunks, and then the machine loses
/// power. Recovery must have made durable whatever its own changes rely on (a chunk is
/// deleted only once the acknowledgement that allows it is durable, an `info` that says
/// `all_synced` only once the bytes it vouches for are). At `Synced` nothing confirmed is
/// lost, by the workload or by the session after the kill; below, the queue opens by
/// itself and what comes back is intact and contiguous.
#[test]

fn every_crash_point_killed_then_reopened_then_power_lost() {
    let start = std::time::Instant::now();
    let finals = [
        Crash::PowerLoss,
        Crash::PowerLossPages(1),
        Crash::PowerLossPages(2),
        Crash::PowerLossPages(3),
        Crash::PowerLossPages(4),
        Crash::PowerLossPages(5),
        Crash::PowerLossPages(6),
    ];
    for durability in [
        Durability::Synced,
        Durability::Written,
        Durability::Buffered,
    ] {
        let promise = match durability {
            Durability::Synced => ALL,
            _ => POWER_LOSS_BELOW_SYNCED,
        };
        let (mut points, mut checks, mut restarts) = (0, 0, 0);
        for by_size in [false, true] {
            let total = total_ops(durability, by_size);
            for n in 0..=total {
                let tear = n % 2 == 1;
                let st = SimStorage::new();
                st.crash_after(n, tear);
                let mut base = Outcome::default();
                let res = workload(&st, durability, by_size, &mut base);
                assert_eq!(
                    st.crashed(),
                    n < total,
                    "crash after {n} of {total} ops: {res:?}"
                );
                let killed = st.after_crash(Crash::ProcessKeepingCache);
                for middle in [Middle::Recover, Middle::Work] {
                    let ctx = format!(
                        "{durability:?}/kill, reopen ({middle:?}), power loss/tear={tear}/\
                         by_size={by_size}: crash after op {n} of {total}"
                    );
                    // (A copy per session: the kill's image stays as the kill left it.)
                    let image = killed.after_crash(Crash::ProcessKeepingCache);
                    let mut out = Outcome {
                        put_ok: base.put_ok.clone(),
                        acked_ok: base.acked_ok.clone(),
                        ..base
                    };
                    middle_session(&image, durability, by_size, middle, &mut out, &ctx);
                    for crash in finals {
                        let ctx = format!("{ctx}, then {crash:?}");
                        let report = check(
                            image.after_crash(crash),
                            durability,
                            by_size,
                            &out,
                            promise,
                            &ctx,
                        );
                        restarts += usize::from(report.is_some_and(|r| r.after_restart));
                        checks += 1;
                    }
                }
                points += 1;
            }
        }
        println!(
            "{durability:?}: {points} crash points, {checks} checks, {restarts} recovered a restart"
        );
        assert!(restarts > 0, "{durability:?}: no power loss was seen");
    }
    println!("{:?}", start.elapsed());
}
