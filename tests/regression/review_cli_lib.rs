//! Review of a1dafa2 (Inspector, diskq::pause/resume, poll_pause): `fixed_` tests failed
//! at 5ff0d9f and pass since their fix; `probe_` tests are checks that pass.

use diskq::{Durability, Inspector, Options, Queue};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn crc32(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrites the header of chunk file `name` to say its first record has `first_seq`
/// (a valid header: its CRC recomputed).
fn set_first_seq(dir: &Path, name: &str, first_seq: u64) {
    let p = dir.join(name);
    let mut b = std::fs::read(&p).unwrap();
    b[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, b).unwrap();
}

/// Runs `f` on a thread; panics if it does not finish within `limit`.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

// ---------------------------------------------------------------- Inspector: input

/// A chunk header (valid CRC) whose first_seq is near u64::MAX: the Inspector adds to it
/// unchecked (`seq + 1` in snapshot, `first_seq + intact` in end_seq and verify_once),
/// which panics with overflow checks (the test profile) and wraps silently in release.
#[test]
fn fixed_snapshot_panics_on_chunk_header_first_seq_near_max() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<u32> = Queue::open(dir.path()).unwrap();
        q.put(&1).unwrap();
    }
    set_first_seq(dir.path(), "q00000", u64::MAX);
    let d = dir.path().to_path_buf();
    let res = std::panic::catch_unwind(move || Inspector::open(&d).unwrap().snapshot());
    assert!(res.is_ok(), "Inspector::snapshot panicked");
}

#[test]
fn fixed_verify_panics_on_chunk_header_first_seq_near_max() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<u32> = Queue::open(dir.path()).unwrap();
        q.put(&1).unwrap();
    }
    set_first_seq(dir.path(), "q00000", u64::MAX);
    let d = dir.path().to_path_buf();
    let res = std::panic::catch_unwind(move || Inspector::open(&d).unwrap().verify());
    assert!(res.is_ok(), "Inspector::verify panicked");
}

/// Random bytes in every file of the queue, at many lengths: no panic from any method.
#[test]
fn probe_random_files_do_not_panic() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        {
            let q: Queue<String> = Options::new().chunk_size(3).open(dir.path()).unwrap();
            for i in 0..7 {
                q.put(&format!("item {i}")).unwrap();
            }
            q.get().unwrap();
            q.task_done().unwrap();
            q.get_delivery().unwrap().dead_letter("x").unwrap();
        }
        for name in ["info", "acks", "q00000", "q00001", "q00002", "schema"] {
            let p = dir.path().join(name);
            let Ok(mut b) = std::fs::read(&p) else {
                continue;
            };
            match rnd() % 4 {
                0 => b.truncate((rnd() as usize) % (b.len() + 1)),
                1 => {
                    let n = b.len().max(1);
                    for _ in 0..3 {
                        let i = (rnd() as usize) % n;
                        if i < b.len() {
                            b[i] ^= 1 << (rnd() % 8);
                        }
                    }
                }
                2 => b = (0..(rnd() % 300)).map(|_| rnd() as u8).collect(),
                _ => {}
            }
            std::fs::write(&p, b).unwrap();
        }
        let d = dir.path().to_path_buf();
        let res = std::panic::catch_unwind(move || {
            if let Ok(i) = Inspector::open(&d) {
                let _ = i.snapshot();
                let _ = i.items(0, usize::MAX);
                let _ = i.verify();
                let _ = i.schema();
            }
        });
        assert!(res.is_ok(), "round {round} panicked");
    }
}

#[test]
fn probe_not_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(Inspector::open(&f).is_err());
    assert!(Inspector::open(dir.path()).is_err());
    assert!(diskq::pause(dir.path()).is_err());
    assert!(!dir.path().join("paused").exists());
}

// ------------------------------------------------------- Inspector: quiescent counts

/// After close, snapshot's counts agree with what `Queue::stats` said before close.
#[test]
fn probe_snapshot_matches_stats_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let stats;
    {
        let q: Queue<String> = Options::new().chunk_size(4).open(dir.path()).unwrap();
        for i in 0..20 {
            q.put(&format!("item {i}")).unwrap();
        }
        for _ in 0..5 {
            q.get().unwrap();
            q.task_done().unwrap();
        }
        q.get_delivery().unwrap().nack().unwrap();
        let d = q.get_delivery().unwrap();
        let d2 = q.get_delivery().unwrap();
        d2.nack_after(Duration::from_secs(3600)).unwrap();
        d.ack().unwrap();
        q.get_delivery().unwrap().dead_letter("bad").unwrap();
        stats = q.stats();
        q.close().unwrap();
    }
    let s = Inspector::open(dir.path()).unwrap().snapshot().unwrap();
    let q: Queue<String> = Options::new().chunk_size(4).open(dir.path()).unwrap();
    let reopened = q.stats();
    let unacked = (stats.len + stats.in_flight + stats.delayed) as u64;
    eprintln!("{s:?}\n{stats:?}\n{reopened:?}");
    assert_eq!(s.waiting, unacked, "{s:?} {stats:?}");
    assert_eq!(s.delayed, stats.delayed as u64);
    assert_eq!(s.dead_letters, stats.dead_letters as u64);
    // 0..5 acked, 5 nacked then acked, 6 acked with a delayed copy at 20, 7 dead.
    assert_eq!(s.oldest_seq, Some(8));
    assert_eq!(s.next_seq, 21);
    drop(q);
}

/// An item handed out and given back (nack), then the queue closed: snapshot counts it
/// as delivered ("handed out at least once") as items() counts its attempt.
#[test]
fn probe_delivered_after_nack_and_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<u32> = Queue::open(dir.path()).unwrap();
        q.put_many(&[1, 2, 3]).unwrap();
        q.get_delivery().unwrap().nack().unwrap();
        q.close().unwrap();
    }
    let i = Inspector::open(dir.path()).unwrap();
    let s = i.snapshot().unwrap();
    let items = i.items(0, 10).unwrap().items;
    eprintln!("{s:?}\n{items:?}");
    assert_eq!(s.waiting, 3);
    let attempted = items.iter().filter(|it| it.attempts > 0).count() as u64;
    assert_eq!(s.delivered, attempted, "{s:?} {items:?}");
}

/// Every item acknowledged and its chunk files deleted: next_seq should still be the
/// sequence number the next put takes.
#[test]
fn probe_next_seq_after_everything_acked_and_chunks_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<u32> = Options::new().chunk_size(2).open(dir.path()).unwrap();
        for i in 0..5 {
            q.put(&i).unwrap();
        }
        for _ in 0..5 {
            q.get().unwrap();
            q.task_done().unwrap();
        }
        q.close().unwrap();
    }
    let s = Inspector::open(dir.path()).unwrap().snapshot().unwrap();
    let q: Queue<u32> = Options::new().chunk_size(2).open(dir.path()).unwrap();
    q.put(&99).unwrap();
    let seq = q.get_delivery().unwrap().seq();
    assert_eq!(s.next_seq, seq, "{s:?}");
}

// ----------------------------------------------------------- Inspector: live owner

/// A writer thread (this process holds the lock, so the Inspector sees it live) puts
/// "item N" at seq N with small chunks and a consumer acknowledges; verify must stay
/// healthy and items() must return only items that were put, with their payloads.
fn live_round(level: Durability, chunk: usize, size: usize, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<Queue<String>> = Arc::new(
        Options::new()
            .chunk_size(chunk)
            .durability(level)
            .open(dir.path())
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pad = "x".repeat(size);
    let producer = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                q.put(&format!("item {i} {pad}")).unwrap();
                i += 1;
                if i.is_multiple_of(16) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let consumer = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if q.get_timeout(Duration::from_millis(10)).is_ok() {
                    q.task_done().unwrap();
                }
            }
        })
    };
    let i = Inspector::open(dir.path()).unwrap();
    let mut bad = Vec::new();
    for r in 0..rounds {
        let v = i.verify().unwrap();
        if !v.healthy() {
            bad.push(format!("round {r} verify: {:?} {:?}", v.damage, v.problems));
        }
        for it in i.items(0, 200).unwrap().items {
            let s: String = bincode::deserialize(&it.payload).unwrap();
            let want = format!("item {} ", it.seq);
            if !s.starts_with(&want) || s.len() != want.len() + size {
                bad.push(format!(
                    "round {r}: seq {} holds {:?}",
                    it.seq,
                    &s[..s.len().min(40)]
                ));
            }
        }
        let _ = i.snapshot().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    consumer.join().unwrap();
    assert!(
        bad.is_empty(),
        "{level:?} chunk {chunk} size {size}: {}",
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn probe_live_verify_and_items_written() {
    live_round(Durability::Written, 5, 10, 150);
    live_round(Durability::Written, 50, 5000, 100);
}

#[test]
fn probe_live_verify_and_items_buffered() {
    live_round(Durability::Buffered, 7, 100, 150);
    live_round(Durability::Buffered, 40, 70_000, 40);
}

#[test]
fn probe_live_verify_and_items_synced() {
    live_round(Durability::Synced, 3, 50, 80);
}

// --------------------------------------------------------------- external pause

#[test]
fn probe_get_waits_for_external_resume() {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<Queue<u32>> = Arc::new(Queue::open(dir.path()).unwrap());
    q.put(&1).unwrap();
    diskq::pause(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert!(q.is_paused());
    assert!(q.get_nowait().unwrap_err().is_empty());
    let t = Instant::now();
    assert!(
        q.get_timeout(Duration::from_millis(30))
            .unwrap_err()
            .is_timeout()
    );
    assert!(t.elapsed() < Duration::from_millis(500));
    let q2 = q.clone();
    let h = std::thread::spawn(move || {
        let t = Instant::now();
        (q2.get().unwrap(), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let resumed = Instant::now();
    diskq::resume(dir.path()).unwrap();
    let (v, _) = h.join().unwrap();
    assert_eq!(v, 1);
    assert!(
        resumed.elapsed() < Duration::from_secs(1),
        "{:?}",
        resumed.elapsed()
    );
}

/// A consumer blocked on an empty queue (not paused) while `diskq pause` happens and then
/// an item is put: it may take the item only within the poll interval after the pause.
#[test]
fn probe_blocked_get_sees_external_pause_before_next_item() {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<Queue<u32>> = Arc::new(Queue::open(dir.path()).unwrap());
    let q2 = q.clone();
    let h = std::thread::spawn(move || q2.get_timeout(Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(300));
    diskq::pause(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    q.put(&1).unwrap();
    let got = h.join().unwrap();
    assert!(got.is_err(), "took {got:?} 300 ms after an external pause");
}

/// A channel receiver blocked in recv while the queue is paused from outside: an
/// external resume is never noticed (it waits on the channel's own condvar with no
/// timeout; only a send wakes it).
#[test]
fn fixed_channel_recv_misses_external_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    tx.send(1).unwrap();
    diskq::pause(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let h = std::thread::spawn(move || {
        let r = rx.recv_timeout(Duration::from_secs(3));
        (r, rx)
    });
    std::thread::sleep(Duration::from_millis(300));
    let resumed = Instant::now();
    diskq::resume(dir.path()).unwrap();
    let (r, _rx) = h.join().unwrap();
    let _keep = tx;
    assert_eq!(r, Ok(1), "after an external resume");
    assert!(
        resumed.elapsed() < Duration::from_secs(1),
        "{:?}",
        resumed.elapsed()
    );
}

/// Every sender gone, items waiting, the queue paused from outside: the receiver says
/// Disconnected (its loop ends, as if every item had been received) while items wait.
#[test]
fn fixed_channel_disconnected_while_paused_externally_with_items_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = diskq::channel::<u32>(dir.path()).unwrap();
    tx.send(1).unwrap();
    drop(tx);
    diskq::pause(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let r = rx.recv_timeout(Duration::from_millis(300));
    assert!(
        !matches!(r, Err(diskq::RecvTimeoutError::Disconnected)),
        "Disconnected with an item waiting: {r:?}"
    );
}

#[test]
fn probe_blocked_get_forever_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<Queue<u32>> = Arc::new(Queue::open(dir.path()).unwrap());
    q.pause().unwrap();
    q.put(&5).unwrap();
    let q2 = q.clone();
    let d = dir.path().to_path_buf();
    within(Duration::from_secs(3), move || {
        let h = std::thread::spawn(move || q2.get().unwrap());
        std::thread::sleep(Duration::from_millis(200));
        diskq::resume(&d).unwrap();
        h.join().unwrap()
    });
}

/// `Queue::stats().paused` does not look at the `paused` file again (only gets and
/// `is_paused` call `poll_pause`): after `diskq pause` it says false however long one
/// waits, while `is_paused()` says true.
#[test]
fn fixed_stats_paused_misses_external_pause() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    diskq::pause(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let by_stats = q.stats().paused;
    assert!(q.is_paused());
    assert!(
        by_stats,
        "stats().paused is false 1.2 s after an external pause"
    );
}

/// A `resume` right after a pause made from outside, before the queue looked at the
/// file again, removes that pause: it used to compare with what it had seen, find the
/// queue not paused, and leave the file, which the next look then obeyed.
#[test]
fn fixed_resume_removes_a_pause_made_outside_before_it_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Queue::open(dir.path()).unwrap();
    q.put(&1).unwrap();
    diskq::pause(dir.path()).unwrap();
    q.resume().unwrap();
    assert!(!dir.path().join("paused").exists());
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(q.get_nowait().unwrap(), 1);
}
