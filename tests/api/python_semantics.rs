//! Python `queue.Queue` semantics, as DESIGN.md promises them: FIFO, a `max_size` that
//! bounds items waiting (so a `get` makes room without `task_done`), blocking and
//! non-blocking puts and gets, timeouts and deadlines, `task_done`/`join` (counting items
//! recovered at open), `len`/`is_empty`/`unfinished`, and the error type.

use diskq::{Error, Options, Queue};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(100);

fn open(dir: &std::path::Path) -> Queue<u32> {
    Queue::open(dir).unwrap()
}

fn bounded(dir: &std::path::Path, max_size: usize) -> Queue<u32> {
    Options::new().max_size(max_size).open(dir).unwrap()
}

#[test]
fn fifo_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    for i in [5, 3, 9, 1, 1, 0, u32::MAX] {
        q.put(&i).unwrap();
    }
    let got: Vec<u32> = (0..7).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, [5, 3, 9, 1, 1, 0, u32::MAX]);
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    url: String,
    attempt: u32,
    tags: Vec<String>,
}

#[test]
fn fifo_order_of_structs() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(dir.path()).unwrap();
    let jobs: Vec<Job> = (0..20)
        .map(|i| Job {
            url: format!("https://example.com/{i}"),
            attempt: i,
            tags: vec!["a".repeat(i as usize); i as usize % 3],
        })
        .collect();
    for j in &jobs {
        q.put(j).unwrap();
    }
    for j in &jobs {
        assert_eq!(&q.get().unwrap(), j);
    }
}

#[test]
fn put_blocks_on_a_full_queue_until_a_get_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 2);
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    let returned = AtomicBool::new(false);
    std::thread::scope(|s| {
        let putter = s.spawn(|| {
            q.put(&3).unwrap();
            returned.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(SHORT);
        assert!(
            !returned.load(Ordering::SeqCst),
            "put on a full queue returned without waiting"
        );
        assert_eq!(q.len(), 2);
        // A get, with no task_done, makes room.
        assert_eq!(q.get().unwrap(), 1);
        putter.join().unwrap();
        assert!(returned.load(Ordering::SeqCst));
    });
    assert_eq!(q.len(), 2);
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3);
}

#[test]
fn get_blocks_on_an_empty_queue_until_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let returned = AtomicBool::new(false);
    std::thread::scope(|s| {
        let getter = s.spawn(|| {
            let x = q.get().unwrap();
            returned.store(true, Ordering::SeqCst);
            x
        });
        std::thread::sleep(SHORT);
        assert!(
            !returned.load(Ordering::SeqCst),
            "get on an empty queue returned without waiting"
        );
        q.put(&42).unwrap();
        assert_eq!(getter.join().unwrap(), 42);
    });
    assert!(q.is_empty());
}

#[test]
fn put_nowait_on_a_full_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 3);
    for i in 0..3 {
        q.put_nowait(&i).unwrap();
    }
    let err = q.put_nowait(&3).unwrap_err();
    assert!(err.is_full(), "{err:?}");
    assert!(matches!(err, Error::Full));
    // The refused item was not stored.
    assert_eq!(q.len(), 3);
    assert_eq!(q.unfinished(), 3);
    for i in 0..3 {
        assert_eq!(q.get_nowait().unwrap(), i);
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
}

#[test]
fn get_nowait_on_an_empty_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let err = q.get_nowait().unwrap_err();
    assert!(err.is_empty(), "{err:?}");
    assert!(matches!(err, Error::Empty));
    q.put(&1).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

#[test]
fn get_timeout_times_out_after_at_least_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let start = Instant::now();
    let err = q.get_timeout(SHORT).unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(err, Error::Timeout));
    assert!(waited >= SHORT, "returned after {waited:?}");
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
}

#[test]
fn get_timeout_returns_an_item_that_arrives_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    std::thread::scope(|s| {
        let getter = s.spawn(|| q.get_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        q.put(&7).unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), 7);
    });
}

#[test]
fn put_timeout_times_out_after_at_least_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 1);
    q.put(&1).unwrap();
    let start = Instant::now();
    let err = q.put_timeout(&2, SHORT).unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(waited >= SHORT, "returned after {waited:?}");
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
    // The timed-out item was not stored.
    assert_eq!(q.len(), 1);
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert!(q.get_nowait().unwrap_err().is_empty());
}

#[test]
fn get_deadline_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let deadline = Instant::now() + SHORT;
    let err = q.get_deadline(deadline).unwrap_err();
    let now = Instant::now();
    assert!(err.is_timeout(), "{err:?}");
    assert!(now >= deadline, "returned {:?} early", deadline - now);
}

#[test]
fn put_deadline_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 1);
    q.put(&1).unwrap();
    let deadline = Instant::now() + SHORT;
    let err = q.put_deadline(&2, deadline).unwrap_err();
    let now = Instant::now();
    assert!(err.is_timeout(), "{err:?}");
    assert!(now >= deadline, "returned {:?} early", deadline - now);
    assert_eq!(q.len(), 1);
}

#[test]
fn a_deadline_in_the_past_does_not_wait_but_still_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 1);
    let past = Instant::now();
    std::thread::sleep(Duration::from_millis(5));
    // Room and an item are there: a past deadline does not matter.
    q.put_deadline(&1, past).unwrap();
    assert!(q.put_deadline(&2, past).unwrap_err().is_timeout());
    assert_eq!(q.get_deadline(past).unwrap(), 1);
    assert!(q.get_deadline(past).unwrap_err().is_timeout());
}

#[test]
fn task_done_more_times_than_items_gotten_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    // Nothing gotten at all.
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    // Put but not gotten is not acknowledgeable either.
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    // The failed calls changed nothing.
    assert_eq!(q.unfinished(), 1);
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 0);
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
}

#[test]
fn join_returns_at_once_when_nothing_is_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.join();
    q.put(&1).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    q.join();
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn join_waits_for_a_gotten_item_to_be_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.put(&1).unwrap();
    q.get().unwrap();
    let acked = AtomicBool::new(false);
    let joined = AtomicBool::new(false);
    std::thread::scope(|s| {
        let joiner = s.spawn(|| {
            q.join();
            joined.store(true, Ordering::SeqCst);
            // join may only return after the acknowledgement.
            assert!(
                acked.load(Ordering::SeqCst),
                "join returned before task_done"
            );
        });
        std::thread::sleep(SHORT);
        assert!(
            !joined.load(Ordering::SeqCst),
            "join returned with an unacknowledged item"
        );
        acked.store(true, Ordering::SeqCst);
        q.task_done().unwrap();
        joiner.join().unwrap();
    });
    assert!(joined.load(Ordering::SeqCst));
}

#[test]
fn join_counts_items_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        for i in 0..3 {
            q.put(&i).unwrap();
        }
    }
    let q = open(dir.path());
    assert_eq!(q.len(), 3);
    assert_eq!(q.unfinished(), 3);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            for i in 0..3 {
                assert_eq!(q.get().unwrap(), i);
                std::thread::sleep(Duration::from_millis(30));
                done.fetch_add(1, Ordering::SeqCst);
                q.task_done().unwrap();
            }
        });
        q.join();
        assert_eq!(
            done.load(Ordering::SeqCst),
            3,
            "join returned before every recovered item was acknowledged"
        );
        worker.join().unwrap();
    });
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn join_counts_gotten_unacknowledged_items_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        for i in 0..3 {
            q.put(&i).unwrap();
        }
        // Gotten but not acknowledged before the queue closes: still unfinished.
        q.get().unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
    }
    let q = open(dir.path());
    assert_eq!((q.len(), q.unfinished()), (2, 2));
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            for want in [1, 2] {
                assert_eq!(q.get().unwrap(), want);
                std::thread::sleep(Duration::from_millis(30));
                done.fetch_add(1, Ordering::SeqCst);
                q.task_done().unwrap();
            }
        });
        q.join();
        assert_eq!(done.load(Ordering::SeqCst), 2);
        worker.join().unwrap();
    });
}

#[test]
fn len_is_empty_and_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let state = |q: &Queue<u32>| (q.len(), q.is_empty(), q.unfinished());
    assert_eq!(state(&q), (0, true, 0));
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    q.put(&3).unwrap();
    assert_eq!(state(&q), (3, false, 3));
    q.get().unwrap();
    // len counts items waiting; unfinished also counts gotten, unacknowledged ones.
    assert_eq!(state(&q), (2, false, 3));
    q.get().unwrap();
    q.get().unwrap();
    assert_eq!(state(&q), (0, true, 3));
    q.task_done().unwrap();
    assert_eq!(state(&q), (0, true, 2));
    q.task_done().unwrap();
    q.task_done().unwrap();
    assert_eq!(state(&q), (0, true, 0));
}

#[test]
fn a_get_makes_room_without_task_done() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 2);
    q.put_nowait(&1).unwrap();
    q.put_nowait(&2).unwrap();
    assert!(q.put_nowait(&3).unwrap_err().is_full());
    assert_eq!(q.get().unwrap(), 1);
    // No task_done: max_size bounds len only.
    q.put_nowait(&3).unwrap();
    assert!(q.put_nowait(&4).unwrap_err().is_full());
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished(), 3);
}

#[test]
fn max_size_applies_to_items_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        for i in 0..5 {
            q.put(&i).unwrap();
        }
    }
    // Reopened with a bound below what is stored: the items stay, puts wait.
    let q = bounded(dir.path(), 3);
    assert_eq!(q.len(), 5);
    assert!(q.put_nowait(&5).unwrap_err().is_full());
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!(q.get().unwrap(), 1);
    assert!(q.put_nowait(&5).unwrap_err().is_full());
    assert_eq!(q.get().unwrap(), 2);
    q.put_nowait(&5).unwrap();
    for want in [3, 4, 5] {
        assert_eq!(q.get_nowait().unwrap(), want);
    }
}

#[test]
fn huge_timeouts_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let q = bounded(dir.path(), 10);
    q.put_timeout(&1, Duration::MAX).unwrap();
    q.put_timeout(&2, Duration::MAX).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 2);

    // And a huge timeout that must actually wait.
    std::thread::scope(|s| {
        let getter = s.spawn(|| q.get_timeout(Duration::MAX));
        std::thread::sleep(Duration::from_millis(50));
        q.put(&3).unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), 3);
    });
}

#[test]
fn queue_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Queue<u32>>();
    assert_send_sync::<Queue<String>>();
    assert_send_sync::<Queue<Job>>();
    // Items live on disk, not in the queue, so even an item type that is not Sync does
    // not keep the queue from being shared.
    assert_send_sync::<Queue<std::cell::Cell<u32>>>();
    assert_send_sync::<std::sync::Arc<Queue<Job>>>();
}

#[test]
fn error_is_send_sync_static_and_a_std_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    // Converts into the usual boxed error.
    let boxed: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(Error::Empty);
    assert_eq!(boxed.to_string(), Error::Empty.to_string());
}

/// An item whose serialization always fails.
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this item refuses to be serialized",
        ))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

/// Every error the public API produces, from real operations where that is cheap, and
/// built by hand otherwise.
fn sample_errors() -> Vec<Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut errs = Vec::new();

    let q = bounded(dir.path(), 1);
    errs.push(q.get_nowait().unwrap_err()); // Empty
    errs.push(q.get_timeout(Duration::from_millis(1)).unwrap_err()); // Timeout
    errs.push(q.task_done().unwrap_err()); // NothingToAcknowledge
    q.put(&1).unwrap();
    errs.push(q.put_nowait(&2).unwrap_err()); // Full
    errs.push(Options::new().open::<u32>(dir.path()).unwrap_err()); // Locked
    drop(q);

    // TypeMismatch: stored as String, opened as u64.
    let sdir = tempfile::tempdir().unwrap();
    let qs: Queue<String> = Options::new().schema("s").open(sdir.path()).unwrap();
    qs.put(&"abc".to_string()).unwrap();
    drop(qs);
    errs.push(Queue::<u64>::open(sdir.path()).unwrap_err());
    // Decode: stored as String, read as u64 under the same schema tag.
    let qn: Queue<u64> = Options::new().schema("s").open(sdir.path()).unwrap();
    errs.push(qn.peek().unwrap_err()); // a get moves it to the dead letters
    drop(qn);

    // Encode.
    let edir = tempfile::tempdir().unwrap();
    let qe: Queue<Unserializable> = Queue::open(edir.path()).unwrap();
    errs.push(qe.put(&Unserializable).unwrap_err());
    drop(qe);

    // MissingInfo: a chunk file but no info.
    let mdir = tempfile::tempdir().unwrap();
    std::fs::write(mdir.path().join("q00000"), b"not a queue").unwrap();
    errs.push(Queue::<u32>::open(mdir.path()).unwrap_err());

    // Io: the "directory" is a file.
    let fdir = tempfile::tempdir().unwrap();
    let file = fdir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    errs.push(Queue::<u32>::open(&file).unwrap_err());

    // Built by hand.
    errs.push(Error::Corrupt {
        path: "q00001".into(),
        offset: 28,
        detail: "record checksum mismatch".into(),
    });
    errs.push(Error::TooLarge {
        len: 2 << 30,
        max: 1 << 30,
    });
    errs.push(Error::Poisoned);
    errs
}

#[test]
fn errors_are_the_expected_variants() {
    let errs = sample_errors();
    assert!(matches!(errs[0], Error::Empty));
    assert!(matches!(errs[1], Error::Timeout));
    assert!(matches!(errs[2], Error::NothingToAcknowledge));
    assert!(matches!(errs[3], Error::Full));
    assert!(errs[4].is_locked(), "{:?}", errs[4]);
    assert!(errs[5].is_type_mismatch(), "{:?}", errs[5]);
    assert!(
        matches!(errs[6], Error::Decode { seq: 0, .. }),
        "{:?}",
        errs[6]
    );
    assert!(matches!(errs[7], Error::Encode(_)), "{:?}", errs[7]);
    assert!(
        matches!(errs[8], Error::MissingInfo { .. }),
        "{:?}",
        errs[8]
    );
    assert!(errs[8].is_corrupt());
    assert!(matches!(errs[9], Error::Io { .. }), "{:?}", errs[9]);
    assert!(errs[10].is_corrupt());
    // The variants that wrap a cause expose it.
    use std::error::Error as _;
    for e in [&errs[6], &errs[7], &errs[9]] {
        assert!(e.source().is_some(), "{e:?} has no source");
    }
}

#[test]
fn error_messages_are_lowercase_first() {
    for e in sample_errors() {
        let msg = e.to_string();
        let first = msg.chars().next().expect("a non-empty message");
        assert!(
            first.is_lowercase(),
            "message does not start lowercase: {msg:?}"
        );
        assert!(
            !msg.ends_with('.') && !msg.ends_with('\n'),
            "message ends with punctuation: {msg:?}"
        );
    }
}
