//! Review 17b: a hostile review of the work-queue layer (issue #17, 703c8f0..617e896):
//! deliveries, nack/nack_after, leases, max_deliveries, dead letters (requeue_all,
//! purge), stats, and recovery of format-5 journals torn at any byte.
//! Tests named `bug_...` failed when written; the others check behaviour worth keeping.

use diskq::storage::{Crash, Fault, Op, SimStorage};
use diskq::{Durability, Error, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/sim/q";
const ENOSPC: i32 = 28;

fn sim(st: &SimStorage, level: Durability, clock: &ManualClock, max: Option<u32>) -> Queue<u32> {
    let mut o = Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()));
    if let Some(m) = max {
        o = o.max_deliveries(m);
    }
    o.open_on(Arc::new(st.clone()), DIR).unwrap()
}

// ---------------------------------------------------------------------------------------
// requeue_all whose put into the main queue fails on a full disk leaves the batch it took
// from the dead letters' queue in flight there: neither listed among the dead letters nor
// in the main queue. A later requeue_all then acknowledges those stranded records (FIFO
// task_done_n) instead of the ones it just moved, so after a reopen the stranded item is
// in neither queue and the moved one is in both.

#[test]
fn bug_requeue_all_failing_on_a_full_disk_strands_then_loses_a_dead_letter() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    {
        let q = sim(&st, Durability::Synced, &clock, None);
        q.put_many(&[10, 20]).unwrap();
        q.get_delivery().unwrap().dead_letter("a").unwrap();
        assert_eq!(q.dead_letters().len(), 1);
        // The next write is the dead queue's delivery record or the main queue's append:
        // make every write fail with ENOSPC for a moment.
        for i in 0..8 {
            st.inject(Op::Write, i, Fault::Errno(ENOSPC));
        }
        let r = q.dead_letters().requeue_all();
        st.clear_faults();
        eprintln!("requeue_all on a full disk: {r:?}");
        assert!(r.is_err(), "the disk was full");
        // Expected: the dead letter is still a dead letter (listed, counted), as nothing
        // moved.
        assert_eq!(
            q.dead_letters().len(),
            1,
            "a failed requeue_all must leave the dead letter listed"
        );
        assert_eq!(q.stats().dead_letters, 1);
    }
}

#[test]
fn bug_requeue_all_after_a_failed_one_acknowledges_the_wrong_dead_letter() {
    // Continues the scenario above: the next requeue_all (disk no longer full) moves the
    // new dead letter back and acknowledges, FIFO, the *stranded* record in the dead
    // letters' queue instead. After a reopen: item 10 must be somewhere (main queue or
    // dead letters) exactly once; item 20 must not be in both.
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    {
        let q = sim(&st, Durability::Synced, &clock, None);
        q.put_many(&[10, 20]).unwrap();
        q.get_delivery().unwrap().dead_letter("a").unwrap(); // 10
        for i in 0..8 {
            st.inject(Op::Write, i, Fault::Errno(ENOSPC));
        }
        assert!(q.dead_letters().requeue_all().is_err());
        st.clear_faults();
        q.get_delivery().unwrap().dead_letter("b").unwrap(); // 20
        let moved = q.dead_letters().requeue_all().unwrap();
        eprintln!("second requeue_all moved {moved}");
    }
    let q = sim(&st, Durability::Synced, &clock, None);
    let mut main = Vec::new();
    while let Ok(x) = q.get_nowait() {
        main.push(x);
    }
    let dead: Vec<u32> = q
        .dead_letters()
        .iter()
        .map(|d| *d.unwrap().item().unwrap())
        .collect();
    eprintln!("after reopen: main {main:?}, dead {dead:?}");
    let count = |v: u32| main.iter().chain(&dead).filter(|&&x| x == v).count();
    assert_eq!(count(10), 1, "item 10 lost (main {main:?}, dead {dead:?})");
    assert_eq!(
        count(20),
        1,
        "item 20 duplicated (main {main:?}, dead {dead:?})"
    );
}

// ---------------------------------------------------------------------------------------
// A crash (process, torn write) after every mutating operation of a work-queue run with
// attempts and delays in the journal: the reopen must succeed, every item not
// acknowledged must come back (once), and nothing acknowledged may come back.

#[test]
fn a_torn_format5_journal_recovers_at_every_crash_point() {
    let script = |q: &Queue<u32>, clock: &ManualClock, acked: &mut Vec<u32>| -> Result<(), Error> {
        q.put_many(&[0, 1, 2, 3, 4])?;
        let a = q.get_delivery()?; // 0
        let b = q.get_delivery()?; // 1
        a.nack()?;
        b.nack_after(Duration::from_secs(5))?;
        let a = q.get_delivery()?; // 0 again, attempt 2
        let c = q.get_delivery()?; // 2
        let v = c.ack()?;
        acked.push(v);
        a.nack()?;
        clock.advance(Duration::from_secs(6));
        let x = q.get_delivery()?;
        let v = x.ack()?;
        acked.push(v);
        Ok(())
    };
    for tear in [false, true] {
        for n in 0..200u64 {
            let st = SimStorage::new();
            let clock = ManualClock::new(1_000_000);
            let q = sim(&st, Durability::Written, &clock, Some(10));
            st.crash_after(st.ops() + n, tear);
            let mut acked = Vec::new();
            let done = script(&q, &clock, &mut acked);
            let crashed = st.crashed();
            drop(q);
            let st2 = st.after_crash(Crash::Process);
            clock.advance(Duration::from_secs(10));
            let q = Options::new()
                .durability(Durability::Written)
                .max_deliveries(10)
                .clock(Arc::new(clock.clone()))
                .open_on::<u32>(Arc::new(st2.clone()), DIR)
                .unwrap_or_else(|e| panic!("n={n} tear={tear}: reopen failed: {e}"));
            let mut got = Vec::new();
            while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
                assert!(
                    d.attempt() >= 1 && d.attempt() <= 4,
                    "n={n}: attempt {}",
                    d.attempt()
                );
                got.push(d.ack().unwrap());
            }
            got.sort();
            // Item 1 is given back with a delay, which appends a copy and then
            // acknowledges the original: a crash between the two leaves both (FORMAT.md
            // §nack_after). Nothing else may come twice.
            let mut dups = got.clone();
            dups.dedup();
            let ones = got.iter().filter(|&&x| x == 1).count();
            assert!(ones <= 2, "n={n} tear={tear}: item 1 three times: {got:?}");
            assert_eq!(
                dups.len() + ones.saturating_sub(1),
                got.len(),
                "n={n} tear={tear}: duplicates {got:?}"
            );
            for i in 0..5u32 {
                if !acked.contains(&i) && n > 0 {
                    assert!(
                        got.contains(&i),
                        "n={n} tear={tear}: item {i} lost: {got:?}"
                    );
                }
            }
            for a in &acked {
                assert!(
                    !got.contains(a),
                    "n={n} tear={tear}: acked {a} came back: {got:?} ({done:?})"
                );
            }
            if !crashed {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Counts and peeks with items given back, delayed across a reopen, and exhausted.

#[test]
fn counts_after_a_reopen_with_a_delayed_item_and_an_out_of_order_ack() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    {
        let q = sim(&st, Durability::Synced, &clock, None);
        q.put_many(&[0, 1, 2, 3]).unwrap();
        let a = q.get_delivery().unwrap();
        let b = q.get_delivery().unwrap();
        b.ack().unwrap(); // 1 acknowledged out of order
        a.nack_after(Duration::from_secs(60)).unwrap(); // 0 delayed
        let s = q.stats();
        assert_eq!((s.len, s.delayed, s.in_flight, s.unfinished), (2, 1, 0, 3));
    }
    let q = sim(&st, Durability::Synced, &clock, None);
    let s = q.stats();
    assert_eq!(
        (q.len(), s.delayed, s.in_flight, s.unfinished),
        (2, 1, 0, 3),
        "{s:?}"
    );
    assert_eq!(q.peek().unwrap(), Some(2));
    assert_eq!(q.get_nowait().unwrap(), 2);
    clock.advance(Duration::from_secs(61));
    assert_eq!(q.len(), 2);
    // The delayed item was appended again when given back: after 3, which waited then.
    assert_eq!(q.get_many(10).unwrap(), vec![3, 0]);
    q.task_done_n(3).unwrap();
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn bug_peek_shows_an_item_that_a_get_moves_to_the_dead_letters() {
    // max_deliveries 1: an item given back after its one delivery is used up. `get`
    // moves it to the dead letters on the way; `peek` ("the item a get would return")
    // must not show it. Here: peek returns Some(7) although no get will ever return 7,
    // and the queue holds nothing else.
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let q = sim(&st, Durability::Written, &clock, Some(1));
    q.put(&7).unwrap();
    let d = q.get_delivery().unwrap();
    let _ = d.into_inner(); // in flight; a reopen delivers it again, exhausted
    drop(q);
    let q = sim(&st, Durability::Written, &clock, Some(1));
    let peeked = q.peek().unwrap();
    let got = q.get_nowait();
    eprintln!("peek {peeked:?}, get {got:?}");
    assert_eq!(peeked, got.ok(), "peek must show what get returns");
}
