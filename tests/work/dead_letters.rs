//! Dead letters (issue #17): `dead_letter`, `max_deliveries`, undecodable items,
//! `requeue_all`, `purge`, and that a move is never lost across a crash at any point.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Error, ManualClock, Options, Queue};
use std::sync::Arc;
use std::time::Duration;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];
const DIR: &str = "/dl/q";

fn open(dir: &std::path::Path, o: Options) -> Queue<String> {
    o.open(dir).unwrap()
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn dead_letter_keeps_the_item_with_reason_attempts_and_time() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), Options::new().durability(level));
        q.put_many(&[s("a"), s("b")]).unwrap();
        q.get_delivery().unwrap().nack().unwrap();
        let before = std::time::SystemTime::now();
        q.get_delivery().unwrap().dead_letter("bad input").unwrap();
        assert_eq!((q.len(), q.unfinished()), (1, 1), "{level:?}");
        let dl = q.dead_letters();
        assert_eq!(dl.len(), 1);
        let d = dl.iter().next().unwrap().unwrap();
        assert_eq!((d.seq(), d.attempts(), d.reason()), (0, 2, "bad input"));
        assert_eq!(d.item().map(String::as_str), Some("a"));
        assert!(d.failed_at() + Duration::from_secs(1) >= before);
        assert!(!d.bytes().is_empty());
        drop(q);
        // Durable: still there after a reopen, and "a" is not delivered again.
        let q = open(dir.path(), Options::new().durability(level));
        assert_eq!(q.dead_letters().len(), 1, "{level:?}");
        assert_eq!(q.get().unwrap(), "b");
        assert!(q.get_nowait().unwrap_err().is_empty());
    }
}

#[test]
fn max_deliveries_sends_the_last_failed_delivery_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Options::new().max_deliveries(3));
    q.put_many(&[s("poison"), s("ok")]).unwrap();
    for attempt in 1..=3 {
        let d = q.get_delivery().unwrap();
        assert_eq!((d.as_str(), d.attempt()), ("poison", attempt));
        drop(d); // a worker that panicked
    }
    assert_eq!(q.get().unwrap(), "ok");
    q.task_done().unwrap();
    assert!(q.get_nowait().unwrap_err().is_empty());
    let d = q.dead_letters().iter().next().unwrap().unwrap();
    assert_eq!(
        (d.attempts(), d.item().map(String::as_str)),
        (3, Some("poison"))
    );
    assert!(d.reason().contains("max_deliveries 3"), "{}", d.reason());
    q.join(); // a dead letter counts as done
}

#[test]
fn an_expired_last_lease_sends_the_item_to_the_dead_letters_at_the_next_get() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let q = open(
        dir.path(),
        Options::new()
            .max_deliveries(1)
            .lease(Duration::from_secs(5))
            .clock(Arc::new(clock.clone())),
    );
    q.put_many(&[s("slow"), s("next")]).unwrap();
    let d = q.get_delivery().unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(q.get().unwrap(), "next");
    assert!(d.ack().unwrap_err().is_lease_expired());
    assert_eq!(q.dead_letters().len(), 1);
}

#[test]
fn an_item_that_does_not_decode_goes_to_the_dead_letters_and_get_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q: Queue<String> = Options::new().schema("t").open(dir.path()).unwrap();
        q.put(&s("not a number")).unwrap();
    }
    let q: Queue<u64> = Options::new().schema("t").open(dir.path()).unwrap();
    q.put(&7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    let dl = q.dead_letters();
    let d = dl.iter().next().unwrap().unwrap();
    assert_eq!(d.item(), None);
    assert!(d.reason().contains("do not decode"), "{}", d.reason());
    let text: String = bincode_string(d.bytes());
    assert_eq!(text, "not a number");
}

/// The payload of a bincode `String`: a u64 length, then the bytes.
fn bincode_string(b: &[u8]) -> String {
    String::from_utf8(b[8..].to_vec()).unwrap()
}

#[test]
fn requeue_all_and_purge() {
    for level in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), Options::new().durability(level));
        q.put_many(&[s("a"), s("b"), s("c")]).unwrap();
        for _ in 0..3 {
            q.get_delivery().unwrap().dead_letter("x").unwrap();
        }
        assert_eq!(q.dead_letters().len(), 3);
        assert_eq!(q.dead_letters().requeue_all().unwrap(), 3, "{level:?}");
        assert!(q.dead_letters().is_empty());
        let d = q.get_delivery().unwrap();
        assert_eq!((d.as_str(), d.attempt(), d.seq()), ("a", 1, 3));
        d.dead_letter("again").unwrap();
        assert_eq!(q.dead_letters().purge().unwrap(), 1);
        assert_eq!(q.dead_letters().purge().unwrap(), 0);
        drop(q);
        let q = open(dir.path(), Options::new().durability(level));
        let got: Vec<String> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
        assert_eq!(got, ["b", "c"], "{level:?}");
        assert!(q.dead_letters().is_empty());
    }
}

#[test]
fn a_late_dead_letter_after_the_lease_ran_out_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let q = open(
        dir.path(),
        Options::new()
            .lease(Duration::from_secs(1))
            .clock(Arc::new(clock.clone())),
    );
    q.put(&s("a")).unwrap();
    let d = q.get_delivery().unwrap();
    clock.advance(Duration::from_secs(2));
    let err = d.dead_letter("too late").unwrap_err();
    assert!(matches!(err, Error::LeaseExpired { seq: 0 }), "{err}");
    assert!(q.dead_letters().is_empty());
    assert_eq!(q.len(), 1);
}

/// A crash at every write point of a move to the dead letters (and of a requeue) leaves
/// the item in the queue, in the dead letters, or in both, never in neither; at
/// `Synced` also after a power loss.
#[test]
fn a_crash_at_any_point_of_a_move_loses_nothing() {
    for (level, crash) in [
        (Durability::Written, Crash::Process),
        (Durability::Synced, Crash::Process),
        (Durability::Synced, Crash::PowerLoss),
        (Durability::Written, Crash::PowerLoss),
    ] {
        for k in 0..40 {
            let st = SimStorage::new();
            let opts = Options::new().durability(level);
            // The items are put and synced first: only the move is under test.
            let q: Queue<String> = Options::new()
                .durability(Durability::Synced)
                .open_on(Arc::new(st.clone()), DIR)
                .unwrap();
            q.put_many(&[s("a"), s("b")]).unwrap();
            q.close().unwrap();
            let q: Queue<String> = opts.clone().open_on(Arc::new(st.clone()), DIR).unwrap();
            st.crash_after(k, k % 3 == 1);
            let _ = q.get_delivery().and_then(|d| d.dead_letter("x"));
            let _ = q.dead_letters().requeue_all();
            drop(q);
            let st = st.after_crash(crash);
            let q: Queue<String> = opts.clone().open_on(Arc::new(st.clone()), DIR).unwrap();
            let mut seen: Vec<String> = q
                .dead_letters()
                .iter()
                .map(|d| d.unwrap().item().unwrap().clone())
                .collect();
            seen.extend(std::iter::from_fn(|| q.get_nowait().ok()));
            for want in ["a", "b"] {
                assert!(
                    seen.iter().any(|x| x == want),
                    "{level:?} {crash:?} k={k}: {want} lost, seen {seen:?}"
                );
            }
        }
    }
}

/// The first chunk file of a queue directory.
fn first_chunk(dir: &std::path::Path) -> std::path::PathBuf {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('q'))
        .collect();
    names.sort();
    names.remove(0)
}

#[test]
fn damaged_dead_letters_are_an_error_naming_the_file_and_repair_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Options::new());
    q.put_many(&[s("a"), s("b"), s("c")]).unwrap();
    for _ in 0..2 {
        q.get_delivery().unwrap().dead_letter("bad").unwrap();
    }
    drop(q);
    // Damage no crash explains: a flipped byte in the first dead letter's record (after
    // the chunk's 28-byte header and the record's 8-byte one), with one after it.
    let chunk = first_chunk(&dir.path().join("dead"));
    let mut b = std::fs::read(&chunk).unwrap();
    let at = 28 + 8 + 2;
    b[at] ^= 0xff;
    std::fs::write(&chunk, &b).unwrap();
    // The queue opens and flows (open reads no record); reading the dead letters meets
    // the damage, an error that names the file and says what to do.
    let q = open(dir.path(), Options::new());
    assert_eq!(q.get().unwrap(), "c");
    q.task_done().unwrap();
    let err = q
        .dead_letters()
        .iter()
        .find_map(Result::err)
        .expect("the damage is reported");
    let msg = err.to_string();
    assert!(
        msg.contains(&chunk.display().to_string()),
        "names the file: {msg}"
    );
    assert!(msg.contains("repair"), "says what to do: {msg}");
    drop(q);
    diskq::repair(dir.path().join("dead")).unwrap();
    let q = open(dir.path(), Options::new());
    let left: Vec<_> = q.dead_letters().iter().collect();
    assert!(left.iter().all(Result::is_ok), "{left:?}");
}

#[test]
fn dead_letters_follow_the_queue_directory_when_it_is_renamed_while_open() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let q = open(&a, Options::new());
    q.put_many(&[s("x"), s("y"), s("z")]).unwrap();
    q.get_delivery().unwrap().dead_letter("first").unwrap(); // creates a/dead
    std::fs::rename(&a, &b).unwrap();
    q.get_delivery().unwrap().dead_letter("second").unwrap();
    assert_eq!(q.dead_letters().len(), 2);
    drop(q);
    assert!(!a.exists(), "nothing is written under the old path");
    let q = open(&b, Options::new());
    let reasons: Vec<String> = q
        .dead_letters()
        .iter()
        .map(|d| d.unwrap().reason().to_string())
        .collect();
    assert_eq!(reasons, ["first", "second"]);
    assert_eq!(q.get().unwrap(), "z");
}

#[test]
fn the_first_dead_letter_after_a_rename_goes_to_the_new_place() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let q = open(&a, Options::new());
    q.put_many(&[s("x"), s("y")]).unwrap();
    std::fs::rename(&a, &b).unwrap();
    // `dead/` does not exist yet: it is created in the renamed directory.
    q.get_delivery().unwrap().dead_letter("late").unwrap();
    drop(q);
    assert!(!a.exists(), "nothing is written under the old path");
    let q = open(&b, Options::new());
    assert_eq!(q.dead_letters().len(), 1);
    assert_eq!(q.get().unwrap(), "y");
}
