//! Review 17: peek / browse / pause / max_bytes / the acknowledgement-state refactor.
//! Each test here failed when written (a hostile review of a2a7da4..d909479) and passes since the fixes.

use diskq::storage::{Fault, Op, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const DIR: &str = "/sim/q";
const ENOSPC: i32 = 28;

/// Runs `f` on its own thread; panics if it does not finish within `limit` (the thread is
/// left behind: it may hold the queue lock for ever).
fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// browse: an in-flight put counted in the browse's `end` and then dropped by a full disk
// (Written / Synced drop unstored items and give their numbers to later puts). The
// browse then finds `seq >= written`, nothing pending, and loops for ever holding the
// queue lock (src/browse.rs step: the `continue` after write_pending_for_browse).

#[test]
fn browse_does_not_hang_when_an_in_flight_put_is_dropped_by_a_full_disk() {
    let st = SimStorage::new();
    let q: Arc<Queue<u64>> = Arc::new(
        Options::new()
            .durability(Durability::Synced)
            .open_on(Arc::new(st.clone()), DIR)
            .unwrap(),
    );
    q.put(&1).unwrap();
    // The next append (the put of 2) sleeps, unlocked, then fails with ENOSPC.
    st.delay_write(0, Duration::from_millis(300));
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    let putter = {
        let q = q.clone();
        std::thread::spawn(move || q.put(&2))
    };
    std::thread::sleep(Duration::from_millis(100));
    // The put of 2 is accepted (being written): the browse's end includes it.
    let q2 = q.clone();
    let got = within(Duration::from_secs(5), "browse", move || {
        q2.browse().collect::<Vec<_>>()
    });
    let put = putter.join().unwrap();
    assert!(put.unwrap_err().is_no_space());
    let got: Vec<u64> = got.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(got, [1]);
}

// ---------------------------------------------------------------------------------------
// peek: it clears `paused` for the length of its wait_for_item (src/queue.rs peek), and
// at Buffered wait_for_item can release the lock (waiting on `progress` while a leader
// has the writer out). Meanwhile the engine says "not paused": `is_paused` lies, `resume`
// is a no-op (the paused file stays) and is then undone when peek restores the flag, a
// `pause` in the window is undone likewise, and gets go through.

/// A Buffered queue (bounded, so no intake) with a put_many of > 64 KiB in flight, its
/// write delayed by `delay`, unlocked. Returns the queue and the putter.
fn buffered_with_write_in_flight(
    st: &SimStorage,
    delay: Duration,
) -> (
    Arc<Queue<Vec<u8>>>,
    std::thread::JoinHandle<diskq::Result<()>>,
) {
    let q: Arc<Queue<Vec<u8>>> = Arc::new(
        Options::new()
            .durability(Durability::Buffered)
            .max_size(1_000_000)
            .open_on(Arc::new(st.clone()), DIR)
            .unwrap(),
    );
    st.delay_write(0, delay);
    let items: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 4096]).collect();
    let putter = {
        let q = q.clone();
        std::thread::spawn(move || q.put_many(&items))
    };
    std::thread::sleep(Duration::from_millis(100));
    (q, putter)
}

#[test]
fn resume_during_a_peek_takes_effect() {
    let st = SimStorage::new();
    let (q, putter) = buffered_with_write_in_flight(&st, Duration::from_millis(600));
    q.pause().unwrap();
    let peeker = {
        let q = q.clone();
        std::thread::spawn(move || q.peek())
    };
    std::thread::sleep(Duration::from_millis(100));
    // The peek waits for the write, with the lock released and `paused` cleared.
    q.resume().unwrap();
    putter.join().unwrap().unwrap();
    assert_eq!(peeker.join().unwrap().unwrap().map(|v| v[0]), Some(0));
    assert!(
        !q.is_paused(),
        "resume() returned Ok, yet the queue is paused"
    );
    assert!(q.get_nowait().is_ok(), "resumed, yet get_nowait fails");
}

#[test]
fn pause_during_a_peek_takes_effect() {
    let st = SimStorage::new();
    let (q, putter) = buffered_with_write_in_flight(&st, Duration::from_millis(600));
    let peeker = {
        let q = q.clone();
        std::thread::spawn(move || q.peek())
    };
    std::thread::sleep(Duration::from_millis(100));
    q.pause().unwrap();
    putter.join().unwrap().unwrap();
    peeker.join().unwrap().unwrap();
    assert!(
        q.is_paused(),
        "pause() returned Ok, yet the queue is not paused"
    );
    assert!(
        q.get_nowait().unwrap_err().is_empty(),
        "paused, yet get_nowait returned an item"
    );
}

#[test]
fn is_paused_stays_true_while_a_peek_waits() {
    let st = SimStorage::new();
    let (q, putter) = buffered_with_write_in_flight(&st, Duration::from_millis(600));
    q.pause().unwrap();
    let peeker = {
        let q = q.clone();
        std::thread::spawn(move || q.peek())
    };
    std::thread::sleep(Duration::from_millis(100));
    let during = q.is_paused();
    putter.join().unwrap().unwrap();
    peeker.join().unwrap().unwrap();
    assert!(during, "is_paused() was false while a peek waited");
}

// ---------------------------------------------------------------------------------------
// max_bytes: open counts the bytes of every record from the reader on
// (Engine::waiting_record_bytes), including items acknowledged one by one before the
// reopen, which gets skip and `len` does not count. Those bytes are subtracted only when
// a get skips them, which needs an item after them: on an otherwise empty queue they
// stay, and a put is refused (put blocks for ever) on a queue with nothing waiting.

fn item(tag: u8) -> Vec<u8> {
    vec![tag; 44] // 8 + 44 bytes of bincode, + 8 of record header: 60
}

#[test]
fn max_bytes_does_not_count_items_acknowledged_before_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new().max_bytes(100);
    {
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        q.put_nowait(&item(0)).unwrap();
        let a = q.get_delivery().unwrap();
        q.put_nowait(&item(1)).unwrap();
        let b = q.get_delivery().unwrap();
        b.ack().unwrap(); // item 1 acknowledged out of order
        drop(a); // item 0 not
    }
    let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), item(0));
    assert_eq!(q.len(), 0);
    // Nothing waits: a put must go in (the first always does when nothing waits).
    let r = q.put_nowait(&item(2));
    assert!(r.is_ok(), "put on an empty queue refused: {r:?}");
}

#[test]
fn max_bytes_put_on_an_empty_queue_does_not_block_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new().max_bytes(100);
    {
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        q.put_nowait(&item(0)).unwrap();
        let a = q.get_delivery().unwrap();
        q.put_nowait(&item(1)).unwrap();
        q.get_delivery().unwrap().ack().unwrap();
        drop(a);
    }
    let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    assert_eq!((q.len(), q.unfinished()), (0, 0));
    let r = q.put_timeout(&item(2), Duration::from_millis(300));
    assert!(r.is_ok(), "put on an empty, finished queue: {r:?}");
}

// ---------------------------------------------------------------------------------------
// Concurrency sweep: browse while a producer puts sequential numbers and consumers take
// and acknowledge them (out of order too), with tiny chunks (rollovers and deletions all
// the time) and the drained-chunk rollover (chunk_bytes small). A browse must show a
// strictly increasing run of numbers, none already acknowledged, without errors, and
// must not change what gets return.

#[test]
fn browse_and_peek_under_concurrent_producers_and_consumers() {
    // Fails about 3 runs in 4, at Synced (the cause is pinned down by
    // browse_skips_an_item_a_consumer_got_while_the_browse_waited_for_its_write).
    for level in [
        Durability::Synced,
        Durability::Buffered,
        Durability::Written,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let q: Queue<u64> = Options::new()
            .durability(level)
            .chunk_size(3)
            .chunk_bytes(200)
            .journal_limit(64)
            .open(dir.path())
            .unwrap();
        let stop = AtomicBool::new(false);
        const N: u64 = 3000;
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..N {
                    q.put(&i).unwrap();
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
            let consumer = s.spawn(|| {
                let mut got = Vec::new();
                // Against a hang, not a timing: with a sync per put and a checkpoint every few
                // entries, a loaded 2-core machine takes tens of seconds.
                let deadline = Instant::now() + Duration::from_secs(120);
                while (got.len() as u64) < N && Instant::now() < deadline {
                    match q.get_delivery_timeout(Duration::from_millis(10)) {
                        Ok(d) => {
                            got.push(*d);
                            if d.seq() % 3 == 0 {
                                d.ack().unwrap();
                            } else {
                                let _ = d.into_inner();
                                q.task_done().unwrap_or_else(|e| {
                                    assert!(matches!(e, Error::NothingToAcknowledge), "{e}");
                                });
                            }
                        }
                        Err(e) if e.is_timeout() => {}
                        Err(e) => panic!("{level:?}: get: {e}"),
                    }
                }
                got
            });
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut last = None;
                    for r in q.browse() {
                        let v = r.unwrap_or_else(|e| panic!("{level:?}: browse: {e}"));
                        assert!(last.is_none_or(|l| v > l), "{level:?}: {last:?} then {v}");
                        assert!(v < N);
                        last = Some(v);
                    }
                    if let Some(p) = q.peek().unwrap_or_else(|e| panic!("{level:?}: peek: {e}")) {
                        assert!(p < N);
                    }
                }
            });
            let got = consumer.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            assert_eq!(got, (0..N).collect::<Vec<_>>(), "{level:?}");
        });
    }
}

// ---------------------------------------------------------------------------------------
// browse: after waiting for an item being written (write_pending_for_browse releases the
// lock in wait_idle), the step loop reads on from its own reader without looking at
// `e.read` again (src/browse.rs step, the `continue`): an item a consumer got meanwhile
// is shown, and a chunk deleted meanwhile is reported as missing (Corrupt).

#[test]
fn browse_skips_an_item_a_consumer_got_while_the_browse_waited_for_its_write() {
    let st = SimStorage::new();
    let q: Queue<u64> = Options::new()
        .durability(Durability::Synced)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap();
    q.put(&0).unwrap();
    let d0 = q.get_delivery().unwrap();
    st.slow_sync(Duration::from_millis(300));
    let ms = |n| std::thread::sleep(Duration::from_millis(n));
    std::thread::scope(|s| {
        // t=0: the put of 1 writes and syncs, unlocked, until t=300.
        let p = s.spawn(|| q.put(&1));
        ms(100);
        // t=100: the acknowledgement of 0 has the journal out until t=400.
        let a = s.spawn(move || d0.ack());
        ms(100);
        // t=200: the browse waits for item 1's write (and then for the journal).
        let b = s.spawn(|| {
            let mut b = q.browse();
            let first = b.next().map(|r| r.map_err(|e| e.to_string()));
            (first, Instant::now())
        });
        // A consumer waits for item 1, and gets it at t=300.
        let c = s.spawn(|| {
            let v = q.get().unwrap();
            (v, Instant::now())
        });
        p.join().unwrap().unwrap();
        a.join().unwrap().unwrap();
        let (got, got_at) = c.join().unwrap();
        let (shown, shown_at) = b.join().unwrap();
        assert_eq!(got, 1);
        // The get takes item 1 at t=300 and returns once its delivery is journaled
        // (after the acknowledgement's sync and its own): later than the browse.
        let _ = (got_at, shown_at);
        assert_eq!(
            shown, None,
            "the browse showed item 1, which a consumer had gotten before the browse read it"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Channels over a paused directory (the pause persists across a reopen; the channel API
// has no resume): the receive path took "no item" from a paused get for "empty", so with
// the senders gone it reported Disconnected while items waited. A channel now resumes the
// directory it opens.

#[test]
fn a_channel_over_a_paused_queue_does_not_say_disconnected_while_items_wait() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<u32> = Queue::open(dir.path()).unwrap();
        q.put(&1).unwrap();
        q.pause().unwrap();
    }
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    drop(tx);
    assert_eq!(rx.len(), 1);
    let r = rx.recv();
    assert!(
        r.is_ok(),
        "recv: {r:?} with {} item(s) waiting (the queue is paused)",
        rx.len()
    );
    drop(rx);
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    assert!(!q.is_paused(), "the channel resumed the directory");
}
