//! Review 17g: adversarial probes of `Acks::settling` (33feef4) and of `nack_after` at
//! `Buffered` on a full disk keeping the copy pending and the original settling until the
//! copy is written (`Engine::supersede`, 39ab3e3). All passed when written: they keep
//! that behaviour.

use diskq::storage::{Crash, Fault, Op, SimStorage};
use diskq::{Durability, Error, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/sim/q";
const LEASE: Duration = Duration::from_secs(10);
const ENOSPC: i32 = 28;
const EIO: i32 = 5;
/// Longer than the lease.
const DELAY: Duration = Duration::from_secs(100);

fn opts(level: Durability, clock: &ManualClock, lease: Option<Duration>) -> Options {
    let o = Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()));
    match lease {
        Some(l) => o.lease(l),
        None => o,
    }
}

fn sim(st: &SimStorage, o: &Options) -> Queue<u32> {
    o.open_on(Arc::new(st.clone()), DIR).unwrap()
}

/// Gets everything deliverable now, acknowledging each; returns (value, attempt).
fn drain(q: &Queue<u32>) -> Vec<(u32, u32)> {
    let mut got = Vec::new();
    while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
        got.push((*d, d.attempt()));
        d.ack().unwrap();
    }
    got
}

fn values(v: &[(u32, u32)]) -> Vec<u32> {
    v.iter().map(|p| p.0).collect()
}

/// A `Buffered` queue holding `items`, flushed, with the first delivered and its
/// `nack_after` kept pending by a full disk.
fn superseded(
    st: &SimStorage,
    clock: &ManualClock,
    lease: Option<Duration>,
    items: &[u32],
) -> Queue<u32> {
    let q = sim(st, &opts(Durability::Buffered, clock, lease));
    q.put_many(items).unwrap();
    q.flush().unwrap();
    let d = q.get_delivery_timeout(Duration::ZERO).unwrap();
    assert_eq!(*d, items[0]);
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    d.nack_after(DELAY).unwrap();
    q
}

/// While the copy waits for room, the original is neither in flight nor waiting: FIFO
/// acknowledgement counts only the others, `task_done_n` larger than what is left fails
/// whole, and once the copy is written everything settles to one item.
#[test]
fn superseded_original_is_passed_over_by_fifo_counts() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = superseded(&st, &clock, None, &[1, 2, 3]);
    assert_eq!(q.get_nowait().unwrap(), 2);
    let s = q.stats();
    assert_eq!((s.in_flight, s.len), (1, 1), "{s:?}");
    assert!(matches!(q.task_done_n(2), Err(Error::NothingToAcknowledge)));
    q.task_done().unwrap();
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    assert_eq!(q.stats().in_flight, 0);
    q.flush().unwrap();
    assert_eq!(q.unfinished(), 2, "3 and the copy of 1");
    clock.advance(DELAY);
    assert_eq!(drain(&q), [(3, 1), (1, 2)]);
    assert_eq!((q.unfinished(), q.stats().in_flight), (0, 0));
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
}

/// The original had a lease: it ended when the settlement began, so it does not run out
/// while the copy waits (which would deliver the original and later the copy too).
#[test]
fn superseded_original_with_a_lease_does_not_come_back() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = superseded(&st, &clock, Some(LEASE), &[7]);
    clock.advance(LEASE * 3);
    let early = q
        .get_delivery_timeout(Duration::ZERO)
        .map(|d| (*d, d.attempt(), d.seq()));
    assert!(
        early.is_err(),
        "the original's lease ran out and it came back: {early:?}"
    );
    assert_eq!(q.stats().in_flight, 0);
    q.flush().unwrap();
    clock.advance(DELAY);
    assert_eq!(drain(&q), [(7, 2)]);
    assert_eq!(q.unfinished(), 0);
}

/// Two `nack_after`s kept pending one after the other, then room: both originals are
/// acknowledged with their copies, and each item comes back once.
#[test]
fn two_superseded_originals_settle_together() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = sim(&st, &opts(Durability::Buffered, &clock, None));
    q.put_many(&[1, 2, 3]).unwrap();
    q.flush().unwrap();
    let d1 = q.get_delivery_timeout(Duration::ZERO).unwrap();
    let d2 = q.get_delivery_timeout(Duration::ZERO).unwrap();
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    d1.nack_after(Duration::from_secs(5)).unwrap();
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    d2.nack_after(Duration::from_secs(5)).unwrap();
    assert_eq!((q.stats().in_flight, q.unfinished()), (0, 5));
    q.flush().unwrap();
    assert_eq!(q.unfinished(), 3);
    clock.advance(DELAY);
    assert_eq!(values(&drain(&q)), [3, 1, 2]);
    assert_eq!(q.unfinished(), 0);
}

/// A second `nack_after` finding room writes the first one's copy with its own: the
/// first original is acknowledged then, not left settling.
#[test]
fn a_later_nack_after_writes_the_pending_copy_and_settles_it() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = sim(&st, &opts(Durability::Buffered, &clock, Some(LEASE)));
    q.put_many(&[1, 2]).unwrap();
    q.flush().unwrap();
    let d1 = q.get_delivery_timeout(Duration::ZERO).unwrap();
    let d2 = q.get_delivery_timeout(Duration::ZERO).unwrap();
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    d1.nack_after(Duration::from_secs(5)).unwrap();
    d2.nack_after(Duration::from_secs(5)).unwrap();
    assert_eq!((q.stats().in_flight, q.unfinished()), (0, 2));
    q.close().unwrap();
    clock.advance(DELAY);
    let q = sim(&st, &opts(Durability::Buffered, &clock, Some(LEASE)));
    assert_eq!(drain(&q), [(1, 2), (2, 2)]);
    assert_eq!(q.unfinished(), 0);
}

/// close with room writes the copy (settling the original) and checkpoints both: after
/// a reopen the copy waits out its delay and comes once.
#[test]
fn close_with_room_settles_the_superseded_original() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = superseded(&st, &clock, None, &[7, 8]);
    q.close().unwrap();
    let q = sim(&st, &opts(Durability::Buffered, &clock, None));
    assert_eq!(drain(&q), [(8, 1)], "the copy waits out its delay");
    clock.advance(DELAY);
    assert_eq!(drain(&q), [(7, 2)]);
    assert_eq!(q.unfinished(), 0);
}

/// close, and drop, on a still full disk: the copy is lost with the pending items and
/// the original comes back once.
#[test]
fn close_or_drop_on_a_full_disk_leaves_the_original_once() {
    for close in [true, false] {
        let clock = ManualClock::new(1_000_000);
        let st = SimStorage::new();
        let q = superseded(&st, &clock, None, &[7, 8]);
        st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
        if close {
            assert!(q.close().unwrap_err().is_no_space());
        } else {
            drop(q);
        }
        st.clear_faults();
        clock.advance(DELAY);
        let q = sim(&st, &opts(Durability::Buffered, &clock, None));
        let got = values(&drain(&q));
        assert_eq!(got, [7, 8], "close {close}");
        assert_eq!(q.unfinished(), 0);
    }
}

/// The write that would store the copy fails otherwise (EIO): the queue is poisoned, and
/// after a reopen the original comes back once.
#[test]
fn poison_while_the_copy_waits_leaves_the_original_once() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let q = superseded(&st, &clock, None, &[7]);
    st.inject(Op::Write, 0, Fault::Errno(EIO));
    assert!(q.flush().is_err());
    assert!(q.get_nowait().is_err());
    drop(q);
    let st = st.after_crash(Crash::Process);
    clock.advance(DELAY);
    let q = sim(&st, &opts(Durability::Buffered, &clock, None));
    assert_eq!(values(&drain(&q)), [7]);
}

/// A crash after the copy is written (by a put that found room) and before the
/// original's acknowledgement is journaled: never lost.
#[test]
fn crash_after_the_copy_is_written_loses_nothing() {
    for crash in [Crash::Process, Crash::ProcessKeepingCache] {
        let clock = ManualClock::new(1_000_000);
        let mut st = SimStorage::new();
        {
            let q = superseded(&st, &clock, None, &[7]);
            q.put(&9).unwrap();
            st = st.after_crash(crash);
        }
        clock.advance(DELAY);
        let q = sim(&st, &opts(Durability::Buffered, &clock, None));
        let got = values(&drain(&q));
        assert!(got.contains(&7), "{crash:?}: {got:?}");
        assert!(
            got.iter().filter(|&&v| v == 7).count() <= 2,
            "{crash:?}: {got:?}"
        );
    }
}

/// max_deliveries counts the superseded original's delivery: with 2, the copy's delivery
/// is the last, and a nack then buries it once.
#[test]
fn superseded_copy_keeps_the_count_for_max_deliveries() {
    let clock = ManualClock::new(1_000_000);
    let st = SimStorage::new();
    let o = opts(Durability::Buffered, &clock, None).max_deliveries(2);
    let q = sim(&st, &o);
    q.put(&7).unwrap();
    q.flush().unwrap();
    let d = q.get_delivery_timeout(Duration::ZERO).unwrap();
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    d.nack_after(Duration::from_secs(5)).unwrap();
    q.flush().unwrap();
    clock.advance(DELAY);
    let d = q.get_delivery_timeout(Duration::ZERO).unwrap();
    assert_eq!((*d, d.attempt()), (7, 2));
    d.nack().unwrap();
    assert!(q.get_nowait().is_err());
    assert_eq!((q.dead_letters().len(), q.unfinished()), (1, 0));
}

/// A `dead_letter` whose burial fails gives the item back: it is no longer settling, so
/// counts are right and it is delivered again and acknowledged by `task_done`.
#[test]
fn failed_dead_letter_ends_the_settlement() {
    for level in [
        Durability::Buffered,
        Durability::Written,
        Durability::Synced,
    ] {
        let clock = ManualClock::new(1_000_000);
        let st = SimStorage::new();
        let q = sim(&st, &opts(level, &clock, None));
        q.put_many(&[1, 2]).unwrap();
        q.flush().unwrap();
        let d = q.get_delivery_timeout(Duration::ZERO).unwrap();
        st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
        st.inject(Op::Open, 0, Fault::Errno(ENOSPC));
        assert!(d.dead_letter("bad").is_err(), "{level:?}");
        st.clear_faults();
        assert_eq!(q.stats().in_flight, 0, "{level:?}");
        assert_eq!(q.get_nowait().unwrap(), 1, "{level:?}");
        assert_eq!(q.get_nowait().unwrap(), 2, "{level:?}");
        q.task_done_n(2).unwrap();
        assert_eq!(q.unfinished(), 0, "{level:?}");
    }
}

/// A `nack_after` whose read of the record fails (the item is in an older chunk, whose
/// open fails) gives the item back: the settlement ends, FIFO counts stay right.
#[test]
fn failed_read_in_nack_after_ends_the_settlement() {
    for level in [
        Durability::Buffered,
        Durability::Written,
        Durability::Synced,
    ] {
        let clock = ManualClock::new(1_000_000);
        let st = SimStorage::new();
        let q = sim(&st, &opts(level, &clock, None).chunk_size(1));
        q.put_many(&[1, 2, 3]).unwrap();
        q.flush().unwrap();
        let d = q.get_delivery_timeout(Duration::ZERO).unwrap();
        assert_eq!(q.get_nowait().unwrap(), 2);
        st.inject(Op::Open, 0, Fault::Errno(EIO));
        st.inject(Op::Read, 0, Fault::Errno(EIO));
        let r = d.nack_after(Duration::from_secs(5));
        st.clear_faults();
        eprintln!("{level:?}: {r:?}");
        if r.is_ok() {
            // The read did not fail after all (the record was still buffered).
            continue;
        }
        let s = q.stats();
        assert_eq!((s.in_flight, s.len), (1, 2), "{level:?}: {r:?} {s:?}");
        q.task_done().unwrap(); // 2
        assert_eq!(q.get_nowait().unwrap(), 1, "{level:?}");
        q.task_done().unwrap();
        assert_eq!(q.get_nowait().unwrap(), 3, "{level:?}");
        q.task_done().unwrap();
        assert_eq!(q.unfinished(), 0, "{level:?}");
    }
}
