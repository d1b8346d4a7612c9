//! Review 17c: probes of the work-queue layer (issue #17) at Durability::Buffered, with
//! bounds, through the channel, across the version 4 upgrade, with leases, stats and
//! damaged files. Tests named `bug_...` failed when written; the others check behaviour
//! worth keeping.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR: &str = "/sim/q";

fn opts(level: Durability, clock: &ManualClock) -> Options {
    Options::new()
        .durability(level)
        .clock(Arc::new(clock.clone()))
}

fn open(st: &SimStorage, o: &Options) -> Queue<u32> {
    o.open_on(Arc::new(st.clone()), DIR).unwrap()
}

#[test]
fn buffered_attempts_survive_flush_then_process_crash() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Buffered, &clock).max_deliveries(5);
    {
        let q = open(&st, &o);
        q.put_many(&[1, 2]).unwrap();
        q.flush().unwrap();
        let d = q.get_delivery().unwrap();
        assert_eq!(d.attempt(), 1);
        let _ = d.into_inner();
        let d = q.get_delivery().unwrap();
        d.nack().unwrap();
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (2, 2));
        let _ = d.into_inner();
        q.flush().unwrap();
        std::mem::forget(q);
    }
    let st = st.after_crash(Crash::Process);
    let q = open(&st, &o);
    let a = q.get_delivery().unwrap();
    let b = q.get_delivery().unwrap();
    eprintln!("{} {} {} {}", *a, a.attempt(), *b, b.attempt());
    assert_eq!((*a, a.attempt()), (1, 2));
    assert_eq!((*b, b.attempt()), (2, 3));
}

#[test]
fn buffered_nack_after_delay_survives_flush_then_process_crash() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Buffered, &clock).max_deliveries(5);
    {
        let q = open(&st, &o);
        q.put_many(&[1, 2]).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(60))
            .unwrap();
        q.flush().unwrap();
        std::mem::forget(q);
    }
    let st = st.after_crash(Crash::Process);
    let q = open(&st, &o);
    let s = q.stats();
    eprintln!("{s:?}");
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert!(q.get_nowait().is_err());
    assert_eq!(s.delayed, 1);
}

#[test]
fn buffered_nack_after_delay_and_attempts_survive_close_and_drop() {
    for close in [true, false] {
        let st = SimStorage::new();
        let clock = ManualClock::new(1_000_000);
        let o = opts(Durability::Buffered, &clock).max_deliveries(5);
        {
            let q = open(&st, &o);
            q.put_many(&[1, 2]).unwrap();
            q.get_delivery()
                .unwrap()
                .nack_after(Duration::from_secs(60))
                .unwrap();
            let d = q.get_delivery().unwrap();
            let _ = d.into_inner();
            if close {
                q.close().unwrap();
            }
        }
        let q = open(&st, &o);
        let s = q.stats();
        eprintln!("{close} {s:?}");
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (2, 2));
        assert!(q.get_nowait().is_err());
        clock.advance(Duration::from_secs(61));
        let d = q.get_delivery().unwrap();
        assert_eq!((*d, d.attempt()), (1, 2));
    }
}

fn channel_wakes(lease: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new();
    if lease {
        o = o.lease(Duration::from_millis(100));
    }
    let (tx, rx) = diskq::channel_with::<u32>(&o, dir.path()).unwrap();
    tx.send(1).unwrap();
    let d = rx.recv_delivery().unwrap();
    let rx2 = rx.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = rx2.recv_timeout(Duration::from_secs(3));
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    if !lease {
        std::thread::spawn(move || d.nack_after(Duration::from_millis(100)).unwrap())
            .join()
            .unwrap();
    } else {
        std::mem::forget(d);
    }
    let (r, el) = t.join().unwrap();
    eprintln!("{r:?} {el:?}");
    assert_eq!(r.unwrap(), 1);
    assert!(el < Duration::from_millis(800), "{el:?}");
}

#[test]
fn channel_recv_wakes_when_a_nack_after_delay_ends() {
    channel_wakes(false);
}

#[test]
fn channel_recv_wakes_when_a_lease_runs_out() {
    channel_wakes(true);
}

#[test]
fn channel_recv_wakes_when_an_owned_delivery_is_dropped_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    tx.send(1).unwrap();
    let d = rx.recv_delivery().unwrap();
    let rx2 = rx.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = rx2.recv_timeout(Duration::from_secs(3));
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    std::thread::spawn(move || drop(d)).join().unwrap();
    let (r, el) = t.join().unwrap();
    eprintln!("{r:?} {el:?}");
    assert_eq!(r.unwrap(), 1);
    assert!(el < Duration::from_millis(800), "{el:?}");
}

#[test]
fn extend_lease_shorter_many_times_then_late_ack_is_lease_expired() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Written, &clock).lease(Duration::from_secs(10));
    let q = open(&st, &o);
    q.put_many(&[1, 2]).unwrap();
    let d = q.get_delivery().unwrap();
    for _ in 0..2000 {
        d.extend_lease(Duration::from_secs(5)).unwrap();
    }
    d.extend_lease(Duration::from_millis(100)).unwrap();
    clock.advance(Duration::from_millis(200));
    let n = q.get_delivery().unwrap();
    assert_eq!((*n, n.attempt()), (1, 2));
    n.ack().unwrap();
    let r = d.ack();
    eprintln!("{r:?}");
    assert!(r.unwrap_err().is_lease_expired());
    assert_eq!(q.stats().in_flight, 0);
}

fn load_v4(name: &str) -> SimStorage {
    let st = SimStorage::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v4")
        .join(name);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().into_string().unwrap();
        if n.ends_with(".md") {
            continue;
        }
        st.put_file(
            &std::path::Path::new(DIR).join(&n),
            &std::fs::read(e.path()).unwrap(),
        );
    }
    st
}

#[test]
fn v4_upgrade_counts_attempts_across_a_crash() {
    for name in ["singles", "journal", "clean"] {
        for level in [
            Durability::Written,
            Durability::Synced,
            Durability::Buffered,
        ] {
            let st = load_v4(name);
            let clock = ManualClock::new(1_000_000);
            let o = opts(level, &clock)
                .max_deliveries(3)
                .lease(Duration::from_secs(10));
            let mut first = Vec::new();
            {
                let q: Queue<String> = o.open_on(Arc::new(st.clone()), DIR).unwrap();
                while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
                    first.push((d.seq(), d.attempt()));
                    let _ = d.into_inner();
                }
                if level == Durability::Buffered {
                    q.flush().unwrap();
                }
                std::mem::forget(q);
            }
            let st = st.after_crash(Crash::Process);
            let q: Queue<String> = o.open_on(Arc::new(st.clone()), DIR).unwrap();
            let mut second = Vec::new();
            while let Ok(d) = q.get_delivery_timeout(Duration::ZERO) {
                second.push((d.seq(), d.attempt()));
                let _ = d.into_inner();
            }
            eprintln!("{name} {level:?}: {first:?} -> {second:?}");
            let dead = q.dead_letters().len();
            assert_eq!(second.len() + dead, first.len(), "{name} {level:?}");
            for (s, a) in &second {
                let prev = first.iter().find(|f| f.0 == *s).unwrap().1;
                assert_eq!(*a, prev + 1, "{name} {level:?} item {s}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bugs.

/// `Delivery::dead_letter` checks the lease (without releasing it), stores the dead
/// letter (synced: slow), then acknowledges through `ack_delivery`, which checks the
/// lease's deadline against the clock again. A lease that runs out while the dead letter
/// is synced makes the acknowledgement fail with LeaseExpired after the dead letter was
/// stored: the item is then both a dead letter and given back (delivered again).
/// Expected: the lease is held (or released) from the first check on, as the code's own
/// comment promises ("The lock is held throughout, so a lease cannot run out half way"):
/// dead_letter succeeds and the item is only among the dead letters.
#[test]
fn bug_dead_letter_whose_lease_runs_out_during_the_sync_leaves_the_item_in_both_queues() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Buffered, &clock).lease(Duration::from_millis(100));
    let q = open(&st, &o);
    q.put(&7).unwrap();
    let d = q.get_delivery().unwrap();
    // The dead letters' syncs take 150 ms each; the lease runs out during the first.
    st.slow_sync(Duration::from_millis(150));
    let c2 = clock.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        c2.advance(Duration::from_secs(1));
    });
    let r = d.dead_letter("bad");
    t.join().unwrap();
    st.slow_sync(Duration::ZERO);
    let dead = q.dead_letters().len();
    let again = q.get_nowait();
    eprintln!("dead_letter: {r:?}; dead letters {dead}; get again: {again:?}");
    assert!(
        !(dead == 1 && again.is_ok()),
        "item 7 is both a dead letter and delivered again (dead_letter returned {r:?})"
    );
}

/// `max_size` bounds `Engine::queued()` = accepted - read - skip_ahead, which counts an
/// item given back with `nack_after` and recovered at open ahead of `read` (a delay
/// "ahead"), while `len()` does not count it. Before the reopen the same delayed item
/// takes no room (it is before `read`). After the reopen a put into a queue whose len()
/// is 0 blocks until the delay ends and a consumer steps over it. Expected: a delayed
/// item takes no room after a reopen either (as before it), so the put succeeds.
#[test]
fn bug_put_blocks_on_an_empty_queue_after_reopen_with_a_delayed_item() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Written, &clock).max_size(1);
    {
        let q = open(&st, &o);
        q.put(&1).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(60))
            .unwrap();
        // Before the reopen the delayed item takes no room.
        assert_eq!(q.len(), 0);
        q.put_timeout(&2, Duration::from_millis(50)).unwrap();
        assert_eq!(q.get().unwrap(), 2);
        q.task_done().unwrap();
    }
    let q = open(&st, &o);
    assert_eq!(q.len(), 0);
    assert_eq!(q.stats().delayed, 1);
    let r = q.put_timeout(&3, Duration::from_millis(50));
    assert!(
        r.is_ok(),
        "put into a queue with len() 0 and max_size 1 after a reopen: {r:?}"
    );
}

/// `Stats::oldest_age` is documented as "not counting delayed or in-flight items", but
/// `stats()` takes `e.read` as the oldest waiting item whenever `len() > 0`, and after a
/// reopen the item at `read` may be a delayed one (recovered ahead of `read`): its age is
/// reported instead of the waiting item's. Expected: Some(0) (item 2 was just put);
/// got the delayed item 1's age, 100 s.
#[test]
fn bug_stats_oldest_age_counts_a_delayed_item_after_reopen() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Written, &clock);
    {
        let q = open(&st, &o);
        q.put(&1).unwrap();
        clock.advance(Duration::from_secs(100));
        q.put(&2).unwrap();
        q.get_delivery()
            .unwrap()
            .nack_after(Duration::from_secs(600))
            .unwrap();
        // Before the reopen: right.
        assert_eq!(q.stats().oldest_age, Some(Duration::ZERO));
    }
    let q = open(&st, &o);
    let s = q.stats();
    assert_eq!((s.len, s.delayed), (1, 1));
    assert_eq!(
        s.oldest_age,
        Some(Duration::ZERO),
        "oldest_age after reopen is the delayed item's age: {s:?}"
    );
}

/// A receive on a channel whose senders are gone returns Disconnected as soon as
/// nothing is deliverable now, even while an item given back with `nack_after` waits out
/// its delay: the channel is not drained (the docs: "When every Sender is gone and the
/// items are drained, receiving returns the disconnected error"), and `for job in rx`
/// ends, stranding the item until a restart. Expected: recv_timeout waits for the delay
/// (100 ms) and returns the item.
#[test]
fn bug_channel_says_disconnected_while_a_delayed_item_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    tx.send(1).unwrap();
    drop(tx);
    rx.recv_delivery()
        .unwrap()
        .nack_after(Duration::from_millis(100))
        .unwrap();
    let t0 = Instant::now();
    let r = rx.recv_timeout(Duration::from_secs(1));
    eprintln!("{r:?} after {:?}", t0.elapsed());
    assert_eq!(r, Ok(1), "the delayed item is received once due");
}

/// A get that moves an exhausted item (max_deliveries) at `read` to the dead letters
/// advances `read`, making room under `max_size`, but notifies `not_full` only after a
/// get that returns an item: a producer blocked in put stays blocked while the consumer
/// waits for an item only that producer can put (with put() and get() both without a
/// timeout: a deadlock). Expected: the put is woken when the bury makes room, and the
/// get returns item 2 promptly; got both waiting out their timeouts (~1 s).
#[test]
fn bug_get_burying_an_exhausted_item_does_not_wake_a_blocked_producer() {
    let st = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let o = opts(Durability::Written, &clock)
        .max_size(1)
        .max_deliveries(1);
    {
        let q = open(&st, &o);
        q.put(&1).unwrap();
        let _ = q.get_delivery().unwrap().into_inner();
        std::mem::forget(q); // a process crash: item 1 was delivered once
    }
    let st = st.after_crash(Crash::Process);
    let q = open(&st, &o);
    assert_eq!(q.len(), 1);
    std::thread::scope(|s| {
        let p = s.spawn(|| q.put_timeout(&2, Duration::from_millis(900)));
        std::thread::sleep(Duration::from_millis(100)); // the producer is blocked
        let t0 = Instant::now();
        let g = q.get_timeout(Duration::from_millis(900));
        let el = t0.elapsed();
        let pr = p.join().unwrap();
        eprintln!("get {g:?} after {el:?}; put {pr:?}");
        assert_eq!(q.dead_letters().len(), 1);
        assert!(
            el < Duration::from_millis(400),
            "the get took {el:?}: the producer was not woken when the bury made room"
        );
    });
}
