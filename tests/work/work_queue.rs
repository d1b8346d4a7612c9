//! The work-queue side of a queue (issue #17): giving items back (`nack`, `nack_after`,
//! a dropped `Delivery`), leases, attempts, and FIFO `task_done` among them, at every
//! durability level and across reopen.

use diskq::{Durability, Error, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

fn open(dir: &std::path::Path, level: Durability) -> Queue<u32> {
    Options::new().durability(level).open(dir).unwrap()
}

fn manual(
    dir: &std::path::Path,
    level: Durability,
    clock: &ManualClock,
    lease: Option<Duration>,
) -> Queue<u32> {
    let mut o = Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()));
    if let Some(l) = lease {
        o = o.lease(l);
    }
    o.open(dir).unwrap()
}

#[test]
fn nack_delivers_the_item_again_first_with_the_next_attempt() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), level);
        q.put_many(&[1, 2, 3]).unwrap();
        let one = q.get_delivery().unwrap();
        assert_eq!((*one, one.attempt()), (1, 1));
        let two = q.get_delivery().unwrap();
        one.nack().unwrap();
        assert_eq!(q.len(), 2, "{level:?}: the item given back waits again");
        let again = q.get_delivery().unwrap();
        assert_eq!((*again, again.attempt()), (1, 2), "{level:?}");
        assert_eq!(two.ack().unwrap(), 2);
        again.ack().unwrap();
        let three = q.get_delivery().unwrap();
        assert_eq!((*three, three.attempt()), (3, 1));
        three.ack().unwrap();
        assert_eq!(q.unfinished(), 0);
        assert!(q.get_nowait().unwrap_err().is_empty());
    }
}

#[test]
fn a_dropped_delivery_is_given_back_at_once_and_join_still_waits() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), level);
        q.put(&9).unwrap();
        drop(q.get_delivery().unwrap());
        assert_eq!(q.len(), 1);
        assert_eq!(q.unfinished(), 1);
        let d = q.get_delivery().unwrap();
        assert_eq!(d.attempt(), 2);
        // A worker that panics gives its item back too.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _d = d;
            panic!("worker failed");
        }));
        assert!(r.is_err());
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (9, 3), "{level:?}");
        d.ack().unwrap();
        q.join();
    }
}

#[test]
fn into_inner_keeps_the_item_in_flight_for_task_done() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Durability::Written);
    q.put_many(&[1, 2]).unwrap();
    assert_eq!(q.get_delivery().unwrap().into_inner(), 1);
    assert_eq!(q.len(), 1);
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 1);
}

#[test]
fn task_done_acknowledges_the_oldest_item_in_flight_skipping_those_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Durability::Written);
    q.put_many(&[1, 2, 3]).unwrap();
    let one = q.get_delivery().unwrap();
    assert_eq!(q.get().unwrap(), 2);
    one.nack().unwrap();
    q.task_done().unwrap(); // acknowledges 2, the only item in flight
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 3);
    q.task_done_n(2).unwrap();
    assert_eq!(q.unfinished(), 0);
    drop(q);
    let q = open(dir.path(), Durability::Written);
    assert!(q.get_nowait().unwrap_err().is_empty(), "nothing comes back");
}

#[test]
fn acknowledged_and_given_back_items_survive_a_reopen_as_they_should() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path(), level);
            q.put_many(&[1, 2, 3, 4]).unwrap();
            let one = q.get_delivery().unwrap();
            let two = q.get_delivery().unwrap();
            one.nack().unwrap();
            two.ack().unwrap();
        }
        let q = open(dir.path(), level);
        let got: Vec<u32> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
        assert_eq!(got, [1, 3, 4], "{level:?}");
    }
}

#[test]
fn nack_after_holds_the_item_back_without_blocking_the_rest() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let q = manual(dir.path(), level, &clock, None);
        q.put_many(&[1, 2]).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(10))
            .unwrap();
        assert_eq!(q.len(), 1);
        q.put(&3).unwrap();
        let two = q.get_delivery().unwrap();
        assert_eq!(*two, 2);
        two.ack().unwrap();
        clock.advance(Duration::from_secs(9));
        // 3 is not held back either.
        assert_eq!(q.get_delivery().unwrap().ack().unwrap(), 3);
        assert!(q.get_nowait().unwrap_err().is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.len(), 1);
        let one = q.get_delivery().unwrap();
        assert_eq!((*one, one.attempt()), (1, 2), "{level:?}");
        one.ack().unwrap();
        assert_eq!(q.unfinished(), 0);
    }
}

#[test]
fn a_due_item_goes_before_items_put_after_it_was_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(5_000);
    let q = manual(dir.path(), Durability::Written, &clock, None);
    q.put(&1).unwrap();
    q.get_delivery()
        .unwrap()
        .nack_after(Duration::from_millis(100))
        .unwrap();
    q.put_many(&[2, 3]).unwrap();
    clock.advance(Duration::from_millis(100));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn a_blocking_get_wakes_when_a_delay_ends() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Durability::Written);
    q.put(&1).unwrap();
    q.get_delivery()
        .unwrap()
        .nack_after(Duration::from_millis(30))
        .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 1);
    assert!(start.elapsed() >= Duration::from_millis(25));
}

/// Real time, precise, except that the coarse wall clock is an hour behind: what a get
/// reads on its fast path may lag a due time (by a tick, up to 4 ms, on Linux).
#[derive(Debug)]
struct StaleCoarseClock(std::time::Instant);

impl diskq::Clock for StaleCoarseClock {
    fn monotonic(&self) -> Duration {
        Duration::from_secs(1) + self.0.elapsed()
    }
    fn wall_ms(&self) -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_millis() as u64
    }
    fn coarse_wall_ms(&self) -> u64 {
        self.wall_ms() - 3_600_000
    }
}

#[test]
fn a_get_about_to_sleep_looks_at_due_times_on_the_precise_clock() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(StaleCoarseClock(std::time::Instant::now()));
        let q: Queue<u32> = Options::new()
            .durability(level)
            .clock(clock)
            .open(dir.path())
            .unwrap();
        q.put_many(&[1, 2]).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_millis(5))
            .unwrap();
        assert_eq!(q.get().unwrap(), 2);
        // Judged on the coarse reading alone, the item would wait an hour here.
        let d = q.get_delivery_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((*d, d.attempt()), (1, 2), "{level:?}");
        d.ack().unwrap();
        // get_nowait looks at the precise clock as well, and not before the due time.
        q.put(&3).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_millis(200))
            .unwrap();
        assert!(q.get_nowait().unwrap_err().is_empty(), "{level:?}");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(q.get_nowait().unwrap(), 3, "{level:?}");
    }
}

#[test]
fn an_expired_lease_gives_the_item_back_and_the_late_holder_fails() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let q = manual(dir.path(), level, &clock, Some(Duration::from_secs(30)));
        q.put_many(&[1, 2]).unwrap();
        let old = q.get_delivery().unwrap();
        clock.advance(Duration::from_secs(29));
        old.extend_lease(Duration::from_secs(30)).unwrap();
        clock.advance(Duration::from_secs(29));
        assert_eq!(q.len(), 1, "extended: still held");
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.len(), 2, "{level:?}: expired, waiting again");
        let new = q.get_delivery().unwrap();
        assert_eq!((*new, new.attempt()), (1, 2));
        let err = old.ack().unwrap_err();
        assert!(matches!(err, Error::LeaseExpired { seq: 0 }), "{err}");
        assert_eq!(q.unfinished(), 2, "the late ack changed nothing");
        new.ack().unwrap();
        let two = q.get_delivery().unwrap();
        clock.advance(Duration::from_secs(30));
        assert!(
            two.extend_lease(Duration::from_secs(1))
                .unwrap_err()
                .is_lease_expired()
        );
        assert!(two.nack().unwrap_err().is_lease_expired());
        let two = q.get_delivery().unwrap();
        assert_eq!(two.attempt(), 2);
        two.ack().unwrap();
        assert_eq!(q.unfinished(), 0);
    }
}

#[test]
fn a_plain_get_under_a_lease_is_given_back_when_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let q = manual(
        dir.path(),
        Durability::Written,
        &clock,
        Some(Duration::from_secs(5)),
    );
    q.put_many(&[1, 2]).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    q.task_done_n(2).unwrap();
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
}

#[test]
fn a_blocking_get_wakes_when_a_lease_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new()
        .lease(Duration::from_millis(30))
        .open(dir.path())
        .unwrap();
    q.put(&1).unwrap();
    let d = q.get_delivery().unwrap();
    let again = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(again, 1);
    assert!(d.ack().unwrap_err().is_lease_expired());
}

#[test]
fn channel_deliveries_can_be_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let one = rx.recv_delivery().unwrap();
    drop(one);
    let one = rx.recv_delivery().unwrap();
    assert_eq!((*one, one.attempt()), (1, 2));
    one.nack_after(Duration::from_millis(20)).unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// Across crashes and reopens.

use diskq::storage::{Crash, SimStorage};

const SIM_DIR: &str = "/work/q";

fn sim_open(st: &SimStorage, level: Durability, clock: &ManualClock) -> Queue<u32> {
    Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()))
        .open_on(Arc::new(st.clone()), SIM_DIR)
        .unwrap()
}

#[test]
fn a_delivery_cut_short_by_a_crash_counts_as_an_attempt() {
    // Written keeps every delivery through a process crash; Synced through a power loss
    // (with max_deliveries, which makes it sync each delivery).
    let sim_open = |st: &SimStorage, level, clock: &ManualClock| -> Queue<u32> {
        Options::new()
            .durability(level)
            .max_deliveries(100)
            .clock(Arc::new(clock.clone()))
            .open_on(Arc::new(st.clone()), SIM_DIR)
            .unwrap()
    };
    for (level, crash) in [
        (Durability::Written, Crash::Process),
        (Durability::Synced, Crash::Process),
        (Durability::Synced, Crash::PowerLoss),
    ] {
        let clock = ManualClock::new(0);
        let mut st = SimStorage::new();
        {
            let q = sim_open(&st, level, &clock);
            q.put_many(&[1, 2, 3]).unwrap();
            assert_eq!(q.get().unwrap(), 1);
            assert_eq!(q.get_delivery().unwrap().into_inner(), 2);
            st = st.after_crash(crash);
        }
        for round in 2..5 {
            let q = sim_open(&st, level, &clock);
            let one = q.get_delivery().unwrap();
            assert_eq!((*one, one.attempt()), (1, round), "{level:?} {crash:?}");
            let two = q.get_delivery().unwrap();
            assert_eq!((*two, two.attempt()), (2, round), "{level:?} {crash:?}");
            let three = q.get_delivery().unwrap();
            assert_eq!(
                (*three, three.attempt()),
                (3, round - 1),
                "{level:?} {crash:?}"
            );
            one.into_inner();
            two.into_inner();
            three.into_inner();
            st = st.after_crash(crash);
        }
        // A clean close keeps the counts too (the checkpoint records them).
        let q = sim_open(&st, level, &clock);
        let ds: Vec<_> = (0..3).map(|_| q.get_delivery().unwrap()).collect();
        assert_eq!(
            ds.iter().map(|d| d.attempt()).collect::<Vec<_>>(),
            [5, 5, 4]
        );
        for d in ds {
            d.into_inner();
        }
        q.close().unwrap();
        let q = sim_open(&st, level, &clock);
        assert_eq!(q.get_delivery().unwrap().attempt(), 6);
    }
}

#[test]
fn an_acknowledged_item_forgets_its_attempts_and_later_items_start_at_one() {
    let clock = ManualClock::new(0);
    let st = SimStorage::new();
    {
        let q = sim_open(&st, Durability::Written, &clock);
        q.put_many(&[1, 2]).unwrap();
        q.get_delivery().unwrap().nack().unwrap();
        q.get_delivery().unwrap().ack().unwrap();
    }
    let q = sim_open(&st, Durability::Written, &clock);
    let two = q.get_delivery().unwrap();
    assert_eq!((*two, two.attempt()), (2, 1));
    two.into_inner();
    q.put(&3).unwrap();
    drop(q);
    let q = sim_open(&st, Durability::Written, &clock);
    let ds: Vec<_> = (0..2).map(|_| q.get_delivery().unwrap()).collect();
    assert_eq!(
        ds.iter().map(|d| (**d, d.attempt())).collect::<Vec<_>>(),
        [(2, 2), (3, 1)]
    );
}

#[test]
fn a_delay_survives_a_crash_and_a_reopen_with_its_due_time() {
    for (level, crash) in [
        (Durability::Written, Crash::Process),
        (Durability::Synced, Crash::PowerLoss),
    ] {
        let clock = ManualClock::new(1_000_000);
        let mut st = SimStorage::new();
        {
            let q = sim_open(&st, level, &clock);
            q.put_many(&[1, 2, 3]).unwrap();
            q.get_delivery()
                .unwrap()
                .nack_after(Duration::from_secs(60))
                .unwrap();
            st = st.after_crash(crash);
        }
        clock.advance(Duration::from_secs(30));
        {
            let q = sim_open(&st, level, &clock);
            assert_eq!(q.len(), 2, "{level:?}: 1 waits out its delay");
            assert_eq!(q.get().unwrap(), 2);
            q.task_done().unwrap();
            assert_eq!(q.len(), 1);
            q.close().unwrap();
        }
        let q = sim_open(&st, level, &clock);
        assert_eq!(q.get_nowait().unwrap(), 3);
        assert!(
            q.get_nowait().unwrap_err().is_empty(),
            "{level:?}: still delayed"
        );
        clock.advance(Duration::from_secs(30));
        let one = q.get_delivery().unwrap();
        assert_eq!((*one, one.attempt()), (1, 2), "{level:?}");
    }
}

/// A crash at every write point of a workload of gets, nacks, delays, lease expiries and
/// acknowledgements, and at `Synced` a power loss keeping any subset of unsynced pages:
/// no item is lost, and none acknowledged with `Ok` comes back (FORMAT.md §Deliveries).
#[test]
fn a_crash_at_any_point_of_giving_back_loses_nothing() {
    let crashes = [
        (Durability::Written, Crash::Process),
        (Durability::Synced, Crash::Process),
        (Durability::Synced, Crash::PowerLoss),
        (Durability::Synced, Crash::PowerLossPages(7)),
        (Durability::Synced, Crash::PowerLossPages(99)),
    ];
    for (level, crash) in crashes {
        // Every write and sync point of the workload (15 at Written, 22 at Synced),
        // counted from its start (the open and the puts before it take 18 and 30), until
        // a run finishes without reaching its crash point.
        for k in 0.. {
            let clock = ManualClock::new(1_000_000);
            let st = SimStorage::new();
            let q = Options::new()
                .durability(level)
                .lease(Duration::from_secs(5))
                .chunk_size(3)
                .clock(Arc::new(clock.clone()))
                .open_on(Arc::new(st.clone()), SIM_DIR)
                .unwrap();
            // Synced puts: only what comes after them is under test.
            let setup: Queue<u32> = q;
            setup.put_many(&[0, 1, 2, 3, 4]).unwrap();
            st.crash_after(st.ops() + k, k % 2 == 1);
            // Acknowledged with Ok; the item whose acknowledgement failed (it may or may
            // not have reached the disk).
            let (mut acked, mut in_ack) = (Vec::new(), None);
            let mut work = || -> Result<(), Error> {
                setup.get_delivery()?.nack_after(Duration::from_secs(30))?;
                setup.get_delivery()?.nack()?;
                for _ in 0..2 {
                    let d = setup.get_delivery()?;
                    in_ack = Some(*d);
                    acked.push(d.ack()?);
                    in_ack = None;
                    let _held = setup.get_delivery()?.into_inner();
                    clock.advance(Duration::from_secs(6)); // its lease runs out
                }
                Ok(())
            };
            let _ = work();
            drop(setup);
            if !st.crashed() {
                break;
            }
            let st = st.after_crash(crash);
            clock.advance(Duration::from_secs(60)); // every delay is over
            let q = sim_open(&st, level, &clock);
            let mut got: Vec<u32> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
            got.sort_unstable();
            for i in 0..5 {
                let ok_acked = acked.contains(&i);
                if in_ack == Some(i) {
                    continue;
                }
                assert_eq!(
                    got.contains(&i),
                    !ok_acked,
                    "{level:?} {crash:?} k={k}: item {i} (acknowledged: {ok_acked}), got {got:?}"
                );
            }
        }
    }
}

/// nack_after's copy is not held back by `max_size`: the item was in the queue already,
/// and a consumer must not wait for room (with one slot, it would wait forever).
#[test]
fn nack_after_on_a_full_bounded_queue_does_not_wait_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new().max_size(1).open(dir.path()).unwrap();
    q.put(&1).unwrap();
    let d = q.get_delivery().unwrap();
    q.put(&2).unwrap(); // full again
    assert!(q.put_nowait(&3).unwrap_err().is_full());
    d.nack_after(Duration::from_millis(1)).unwrap();
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 1);
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 0);
}

/// A lease starts from the clock reading the get takes to poll the pause, not from an
/// older reading left by another call that polled it (`is_paused`, `stats`): the lease
/// must run its whole span from the get.
#[test]
fn a_lease_runs_its_span_from_the_get_not_from_an_earlier_reading() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new()
        .lease(std::time::Duration::from_millis(400))
        .open(d.path())
        .unwrap();
    q.put(&1).unwrap();
    assert!(!q.is_paused()); // polls the pause: a reading of the clock
    let _ = q.stats();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let d1 = q.get_delivery().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // 200 ms into a 400 ms lease (500 ms after the older readings): still held.
    assert!(q.get_delivery_nowait().unwrap_err().is_empty());
    d1.ack().unwrap();
}

/// A retry storm: thousands of copies wait out long delays, so `info` carries thousands of
/// delays and attempt counts. Checkpoints then come once per twice `info`'s length of
/// journal, not once per `journal_limit` (each would rewrite them all: a write
/// amplification that grew with the storm); everything still holds across a reopen.
#[test]
fn a_large_info_is_not_rewritten_once_per_journal_limit() {
    use diskq::storage::{Op, SimStorage};
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let open = || -> Queue<u32> {
        Options::new()
            .clock(Arc::new(clock.clone()))
            .journal_limit(4096)
            .open_on(Arc::new(st.clone()), "/sim/q")
            .unwrap()
    };
    let q = open();
    let (storm, rest) = (2_000u32, 1_000u32);
    q.put_many(&(0..storm + rest).collect::<Vec<_>>()).unwrap();
    for _ in 0..storm {
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(3600))
            .unwrap();
    }
    let info = st.file("/sim/q/info".as_ref()).unwrap().len();
    assert!(info > 20_000, "info holds the delays: {info} bytes");
    let renames = st.count(Op::Rename);
    for _ in 0..rest {
        q.get_delivery().unwrap().ack().unwrap();
    }
    // About 24 KiB of journal: five checkpoints of a 4 KiB limit before the change; at
    // most one now (the journal may hold the storm's last entries already).
    let rewrites = st.count(Op::Rename) - renames;
    assert!(rewrites <= 1, "info rewritten {rewrites} times");
    drop(q);
    let q = open();
    assert_eq!(q.stats().delayed, storm as usize);
    assert!(q.get_nowait().unwrap_err().is_empty());
    clock.advance(Duration::from_secs(3600));
    let d = q.get_delivery_nowait().unwrap();
    assert_eq!((*d, d.attempt()), (0, 2));
}
