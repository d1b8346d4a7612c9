//! Review 17d: probes of `Delivery::nack_after` appending a copy of the item at the tail
//! and acknowledging the original (commit 4280bd9, FORMAT.md §nack_after): due time,
//! attempt counts (also across reopens and crashes), full disks on the copy's write,
//! max_deliveries and leases. Tests named `bug_...` failed when written; the others
//! check behaviour worth keeping.

use diskq::storage::{Crash, Fault, Op, SimStorage};
use diskq::{Durability, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/sim/q";
const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

fn opts(level: Durability, clock: &ManualClock) -> Options {
    Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()))
}

fn open(st: &SimStorage, o: &Options) -> Queue<u32> {
    o.open_on(Arc::new(st.clone()), DIR).unwrap()
}

/// The copy is not delivered (get, get_many, peek, browse, len) before its due time,
/// then comes with its attempt count kept (2).
#[test]
fn copy_waits_out_its_delay_and_keeps_its_count() {
    for level in LEVELS {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let q = open(&st, &opts(level, &clock));
        q.put_many(&[1, 2]).unwrap();
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 1));
        d.nack_after(Duration::from_secs(10)).unwrap();
        assert_eq!(q.len(), 1, "{level:?}");
        assert_eq!(q.stats().delayed, 1, "{level:?}");
        assert_eq!(q.peek().unwrap(), Some(2), "{level:?}");
        assert_eq!(q.browse().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![2]);
        assert_eq!(q.get_many(10).unwrap(), vec![2], "{level:?}");
        assert!(q.get_nowait().is_err(), "{level:?}");
        assert_eq!(q.len(), 0);
        clock.advance(Duration::from_secs(11));
        assert_eq!(q.len(), 1, "{level:?}");
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 2), "{level:?}");
        d.ack().unwrap();
    }
}

/// Across a clean reopen and a crash (process; power loss at Synced) after nack_after
/// returned: the copy is still delayed and then delivered with attempt 2, exactly once.
#[test]
fn copy_keeps_delay_and_count_across_reopen_and_crash() {
    for (level, crash) in [
        (Durability::Written, None),
        (Durability::Synced, None),
        (Durability::Buffered, None),
        (Durability::Written, Some(Crash::Process)),
        (Durability::Synced, Some(Crash::Process)),
        (Durability::Synced, Some(Crash::PowerLoss)),
    ] {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let o = opts(level, &clock);
        {
            let q = open(&st, &o);
            q.put_many(&[1, 2]).unwrap();
            q.get_delivery()
                .unwrap()
                .nack_after(Duration::from_secs(10))
                .unwrap();
            if crash.is_some() {
                std::mem::forget(q);
            }
        }
        let st = match crash {
            Some(c) => st.after_crash(c),
            None => st,
        };
        let q = open(&st, &o);
        let what = format!("{level:?} {crash:?}");
        assert_eq!(q.stats().delayed, 1, "{what}");
        assert_eq!(q.len(), 1, "{what}");
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (2, 1), "{what}");
        d.ack().unwrap();
        assert!(q.get_nowait().is_err(), "{what}");
        clock.advance(Duration::from_secs(11));
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 2), "{what}");
        d.ack().unwrap();
        assert!(q.get_nowait().is_err(), "{what}");
    }
}

/// A full disk on the copy's write: nack_after fails, the original is given back at once,
/// and the item is delivered exactly once more (attempt 2), also after a reopen; a later
/// put is not affected. (At `Buffered` the copy waits for room instead: the next test.)
#[test]
fn full_disk_on_copy_write_keeps_the_item() {
    for level in [Durability::Written, Durability::Synced] {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let o = opts(level, &clock);
        {
            let q = open(&st, &o);
            q.put(&1).unwrap();
            q.flush().unwrap();
            let d = q.get_delivery().unwrap();
            st.inject(Op::Write, 0, Fault::Errno(28));
            let r = d.nack_after(Duration::from_secs(10));
            assert!(r.is_err(), "{level:?}: {r:?}");
            st.clear_faults();
            q.put(&7).unwrap();
            let d = q.get_delivery().unwrap();
            assert_eq!((*d, d.attempt()), (1, 2), "{level:?}");
            let _ = d.into_inner();
            let d = q.get_delivery().unwrap();
            assert_eq!((*d, d.attempt()), (7, 1), "{level:?}");
            let _ = d.into_inner();
            assert!(q.get_nowait().is_err(), "{level:?}");
        }
        let q = open(&st, &o);
        let mut got = vec![];
        while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
            got.push((*d, d.attempt()));
            d.ack().unwrap();
        }
        assert_eq!(got, vec![(1, 3), (7, 2)], "{level:?}");
    }
}

/// At `Buffered` a full disk keeps the copy pending with the items put before it, and
/// nack_after returns: the original is acknowledged once the copy is written (here by the
/// next get, which writes what is pending), and the copy comes after its delay, its
/// attempts kept, also after a reopen.
#[test]
fn full_disk_on_copy_write_at_buffered_waits_for_room() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Buffered, &clock);
    {
        let q = open(&st, &o);
        q.put(&1).unwrap();
        q.flush().unwrap();
        let d = q.get_delivery().unwrap();
        st.inject(Op::Write, 0, Fault::Errno(28));
        d.nack_after(Duration::from_secs(10)).unwrap();
        st.clear_faults();
        q.put(&7).unwrap();
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (7, 1));
        let _ = d.into_inner();
        assert!(q.get_nowait().is_err(), "the copy waits out its delay");
    }
    clock.advance(Duration::from_secs(11));
    let q = open(&st, &o);
    let mut got = vec![];
    while let Ok(d) = q.get_delivery_timeout(Duration::from_millis(100)) {
        got.push((*d, d.attempt()));
        d.ack().unwrap();
    }
    assert_eq!(got, vec![(1, 2), (7, 2)]);
}

/// max_deliveries counts across copies: with 2, the second nack_after moves the item to
/// the dead letters.
#[test]
fn max_deliveries_counts_across_copies() {
    for level in LEVELS {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let q = open(&st, &opts(level, &clock).max_deliveries(2));
        q.put(&1).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(1))
            .unwrap();
        clock.advance(Duration::from_secs(2));
        let d = q.get_delivery().unwrap();
        assert_eq!(d.attempt(), 2);
        d.nack_after(Duration::from_secs(1)).unwrap();
        clock.advance(Duration::from_secs(2));
        assert!(q.get_nowait().is_err(), "{level:?}");
        assert_eq!(q.dead_letters().len(), 1, "{level:?}");
        assert_eq!(q.unfinished(), 0, "{level:?}");
    }
}

/// A delivery whose lease ran out cannot nack_after (LeaseExpired): no copy is made, the
/// item is delivered once more at once; a copy gets a lease of its own.
#[test]
fn lease_expired_makes_no_copy() {
    for level in LEVELS {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let q = open(&st, &opts(level, &clock).lease(Duration::from_secs(5)));
        q.put(&1).unwrap();
        let d = q.get_delivery().unwrap();
        clock.advance(Duration::from_secs(6));
        assert!(matches!(
            d.nack_after(Duration::from_secs(1)),
            Err(diskq::Error::LeaseExpired { .. })
        ));
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 2));
        d.nack_after(Duration::from_secs(1)).unwrap();
        clock.advance(Duration::from_secs(2));
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 3));
        clock.advance(Duration::from_secs(6));
        assert!(d.ack().is_err(), "{level:?}");
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 4));
        d.ack().unwrap();
        assert!(q.get_nowait().is_err(), "{level:?}");
        assert_eq!(q.unfinished(), 0);
    }
}

/// At Synced the copy's record is written with the lock let go, but its attempts and
/// delay entries are already among the journal's unwritten entries: another thread's
/// acknowledgement journals them then. When the copy's write then fails (full disk),
/// `undo_copy` forgets them in memory only; its seq goes to the next put (item 9). After
/// a crash (process) item 9 must not inherit the copy's delay or count: expected, item 1
/// once more (attempt 2) and item 9 at once, attempt 1, nothing delayed.
#[test]
fn bug_failed_copy_leaves_its_delay_in_the_journal_for_the_next_put() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Synced, &clock);
    {
        let q = open(&st, &o);
        q.put_many(&[1, 2]).unwrap();
        let d1 = q.get_delivery().unwrap();
        let d2 = q.get_delivery().unwrap();
        // Write 0 (the copy's record) sleeps; the ack's journal append is write 0 in the
        // sim's count while it sleeps; the copy's record then is write 1, which fails.
        st.delay_write(0, Duration::from_millis(300));
        st.inject(Op::Write, 1, Fault::Errno(28));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                d2.ack().unwrap();
            });
            let r = d1.nack_after(Duration::from_secs(3600));
            assert!(r.is_err(), "the copy's write failed: {r:?}");
        });
        st.clear_faults();
        // The copy's number goes to this put (stored and synced).
        q.put(&9).unwrap();
        std::mem::forget(q);
    }
    let st = st.after_crash(Crash::Process);
    let q = open(&st, &o);
    let s = q.stats();
    assert_eq!(s.delayed, 0, "nothing waits out a delay: {s:?}");
    let mut got = vec![];
    while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
        got.push((*d, d.attempt()));
        d.ack().unwrap();
    }
    assert_eq!(got, vec![(1, 2), (9, 1)]);
}
