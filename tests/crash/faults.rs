//! Fault injection: each kind of failing file operation gives the caller a clear error;
//! after a failed write or sync the queue is poisoned (every later call says to reopen);
//! a reopen recovers every item whose put returned Ok and undoes no task_done that
//! returned Ok; nothing panics, nothing is invented or reordered.

use diskq::storage::{Fault, Op, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::sync::Arc;

const DIR: &str = "/sim/q";
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

fn open(st: &SimStorage, d: Durability) -> Queue<u64> {
    Options::new()
        .chunk_size(4)
        .durability(d)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap()
}

fn drain(q: &Queue<u64>) -> Vec<u64> {
    let mut v = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(x) => v.push(x),
            Err(Error::Empty) => return v,
            Err(e) => panic!("drain: {e}"),
        }
    }
}

fn assert_poisoned(q: &Queue<u64>) {
    for e in [
        q.put(&999).unwrap_err(),
        q.get_nowait().unwrap_err(),
        q.flush().unwrap_err(),
    ] {
        assert!(matches!(e, Error::Poisoned), "{e}");
        assert!(e.to_string().contains("open the directory again"), "{e}");
    }
}

/// Puts 0..n, then a put that fails with `fault`; checks the error, the poisoning and
/// that a reopen yields exactly 0..n.
fn failing_put(d: Durability, op: Op, fault: Fault, expect: &str) {
    let st = SimStorage::new();
    let q = open(&st, d);
    for i in 0..6 {
        q.put(&i).unwrap();
    }
    st.inject(op, 0, fault);
    let e = q.put(&6).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Io { .. }), "{msg}");
    assert!(msg.contains(expect), "{msg:?} should mention {expect:?}");
    assert!(msg.contains("/sim/q/q0000"), "{msg:?} should name the file");
    assert_poisoned(&q);
    drop(q);
    let q = open(&st, d);
    let got = drain(&q);
    // A put that failed has an unknown outcome: after a failed sync its record may be
    // complete in the file (the write succeeded). It is never partial or reordered.
    let may_keep = op == Op::Sync && got.len() == 7;
    let expect: Vec<u64> = (0..if may_keep { 7 } else { 6 }).collect();
    assert_eq!(got, expect, "{d:?} {op:?} {fault:?}");
    q.put(&7).unwrap();
    drop(q);
    let q = open(&st, d);
    assert_eq!(drain(&q), expect.into_iter().chain([7]).collect::<Vec<_>>());
}

/// Puts 0..n, then a put whose write fails for want of space with `fault`: the put is
/// `NoSpace` and stored nothing; the queue is not poisoned: gets go on, the next put
/// succeeds on the same handle, and a reopen yields exactly what succeeded.
fn full_disk_put(d: Durability, fault: Fault) {
    let st = SimStorage::new();
    let q = open(&st, d);
    for i in 0..6 {
        q.put(&i).unwrap();
    }
    st.inject(Op::Write, 0, fault);
    let e = q.put(&66).unwrap_err();
    let msg = e.to_string();
    assert!(e.is_no_space(), "{d:?} {fault:?}: {msg}");
    assert!(msg.contains("/sim/q/q0000"), "{msg:?} should name the file");
    assert!(msg.contains("did not store its item"), "{msg}");
    assert_eq!(q.len(), 6, "{d:?} {fault:?}: the failed put is not counted");
    assert_eq!(q.get().unwrap(), 0);
    q.task_done().unwrap();
    q.put(&7).unwrap();
    assert_eq!(drain(&q), vec![1, 2, 3, 4, 5, 7], "{d:?} {fault:?}");
    q.put(&8).unwrap();
    drop(q);
    let q = open(&st, d);
    assert_eq!(
        drain(&q),
        vec![1, 2, 3, 4, 5, 7, 8],
        "{d:?} {fault:?}: after reopen"
    );
}

#[test]
fn a_put_failing_with_enospc_is_no_space_and_does_not_poison() {
    for d in [Durability::Written, Durability::Synced] {
        full_disk_put(d, Fault::Errno(ENOSPC));
    }
}

#[test]
fn a_write_cut_short_by_a_full_disk_leaves_no_torn_record() {
    for n in [1, 4, 8, 9, 15] {
        full_disk_put(Durability::Written, Fault::Short(n));
        full_disk_put(Durability::Synced, Fault::Short(n));
    }
}

#[test]
fn a_write_failing_with_eio_poisons_and_reopen_recovers() {
    for d in [Durability::Written, Durability::Synced] {
        failing_put(d, Op::Write, Fault::Errno(EIO), "Input/output error");
    }
}

#[test]
fn a_full_disk_at_the_buffered_level_keeps_accepted_items_and_refuses_new_ones() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Buffered);
    q.put(&0).unwrap();
    q.flush().unwrap();
    st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
    st.inject(Op::Write, 1, Fault::Errno(ENOSPC));
    q.put(&1).unwrap(); // accepted in memory, as buffered puts are
    let e = q.flush().unwrap_err();
    assert!(e.is_no_space(), "{e}");
    // While accepted items wait for room, a put is refused, and stores nothing.
    let e = q.put(&2).unwrap_err();
    assert!(e.is_no_space(), "{e}");
    // The items already accepted are kept, and written once there is room.
    q.flush().unwrap();
    q.put(&3).unwrap();
    assert_eq!(drain(&q), vec![0, 1, 3]);
    drop(q);
    let q = open(&st, Durability::Buffered);
    assert_eq!(drain(&q), vec![0, 1, 3], "nothing lost or doubled");
}

#[test]
fn a_failed_fsync_poisons_and_is_never_retried_as_success() {
    failing_put(
        Durability::Synced,
        Op::Sync,
        Fault::Errno(EIO),
        "Input/output error",
    );
}

#[test]
fn a_failed_rename_at_a_checkpoint_is_reported_and_the_old_info_still_works() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Written);
    for i in 0..4 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.get().unwrap(), 0);
    q.task_done().unwrap();
    // The fifth put starts a chunk, which checkpoints: its rename fails.
    st.inject(Op::Rename, 0, Fault::Errno(EIO));
    let e = q.put(&4).unwrap_err();
    assert!(e.to_string().contains("rename over /sim/q/info"), "{e}");
    assert_poisoned(&q);
    drop(q);
    let q = open(&st, Durability::Written);
    // The put's record may or may not have been written before the checkpoint failed;
    // nothing acknowledged comes back.
    let got = drain(&q);
    assert!(got == vec![1, 2, 3] || got == vec![1, 2, 3, 4], "{got:?}");
}

#[test]
fn a_failed_close_reports_the_error() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Synced);
    q.put(&1).unwrap();
    st.inject(Op::Rename, 0, Fault::Errno(EIO));
    let e = q.close().unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    let q = open(&st, Durability::Synced);
    assert_eq!(drain(&q), vec![1]);
}

#[test]
fn a_failed_directory_sync_poisons_and_reopen_recovers() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Synced);
    for i in 0..4 {
        q.put(&i).unwrap();
    }
    // The fifth put creates a chunk file and syncs the directory.
    st.inject(Op::SyncDir, 0, Fault::Errno(EIO));
    let e = q.put(&4).unwrap_err();
    assert!(e.to_string().contains("sync directory /sim/q"), "{e}");
    assert_poisoned(&q);
    drop(q);
    let q = open(&st, Durability::Synced);
    assert_eq!(drain(&q), vec![0, 1, 2, 3]);
}

#[test]
fn a_failed_acknowledgement_poisons_and_the_item_may_return_but_no_earlier_one() {
    for d in [Durability::Written, Durability::Synced] {
        let st = SimStorage::new();
        let q = open(&st, d);
        for i in 0..6 {
            q.put(&i).unwrap();
        }
        assert_eq!(q.get().unwrap(), 0);
        q.task_done().unwrap();
        assert_eq!(q.get().unwrap(), 1);
        let op = if d == Durability::Synced {
            Op::Sync
        } else {
            Op::Write
        };
        st.inject(op, 0, Fault::Errno(EIO));
        let e = q.task_done().unwrap_err();
        assert!(e.to_string().contains("/sim/q/acks"), "{e}");
        assert_poisoned(&q);
        drop(q);
        let q = open(&st, d);
        let got = drain(&q);
        // Item 1's acknowledgement failed: it may or may not have reached the file.
        assert!(
            got == vec![1, 2, 3, 4, 5] || got == vec![2, 3, 4, 5],
            "{d:?}: {got:?}"
        );
    }
}

#[test]
fn a_read_error_is_reported_without_poisoning_and_the_item_is_not_consumed() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Written);
    for i in 0..10 {
        q.put(&i).unwrap();
    }
    drop(q);
    let q = open(&st, Durability::Written);
    assert_eq!(q.get().unwrap(), 0);
    // Items 0..4 were read in one buffered read; item 4 is in the next chunk file.
    for i in 1..4 {
        assert_eq!(q.get().unwrap(), i);
    }
    st.inject(Op::Read, 0, Fault::Errno(EIO));
    let e = q.get().unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("/sim/q/q0000"), "{e}");
    // Not poisoned: the same item comes next.
    assert_eq!(q.get().unwrap(), 4);
    assert_eq!(drain(&q), (5..10).collect::<Vec<_>>());
}

#[test]
fn failing_opens_give_errors_not_panics() {
    // How many operations of each kind a first open, a put and the drop make on a healthy
    // disk: each of them is made to fail in turn.
    let clean = SimStorage::new();
    let q: Queue<u64> = Options::new()
        .durability(Durability::Synced)
        .open_on(Arc::new(clean.clone()), DIR)
        .unwrap();
    q.put(&1).unwrap();
    drop(q);
    for op in [
        Op::Write,
        Op::Sync,
        Op::Rename,
        Op::SyncDir,
        Op::Read,
        Op::SetLen,
        Op::Open,
        Op::List,
    ] {
        assert!(clean.count(op) > 0, "{op:?} never happens");
        for skip in 0..clean.count(op) {
            let st = SimStorage::new();
            st.inject(op, skip, Fault::Errno(EIO));
            let first = Options::new()
                .durability(Durability::Synced)
                .open_on::<u64>(Arc::new(st.clone()), DIR);
            if let Ok(q) = first {
                q.put(&1).ok();
            }
            // Whatever happened, a second open on a healthy disk (a fault the first
            // open and put did not reach is dropped) works and holds nothing invented.
            st.clear_faults();
            let q: Queue<u64> = Options::new()
                .durability(Durability::Synced)
                .open_on(Arc::new(st.clone()), DIR)
                .unwrap_or_else(|e| panic!("{op:?} skip {skip}: {e}"));
            let got = drain(&q);
            assert!(got.is_empty() || got == vec![1], "{op:?} {skip}: {got:?}");
        }
    }
}

/// Runs `f` on a thread and gives its result, failing the test if it takes longer than
/// 10 s (a caller waiting for ever on a file a panicked leader never gave back).
fn within_10s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the call did not return: it waits for a leader that panicked")
}

/// A panic inside a write (a bug in storage code) while other callers wait for that write:
/// the panic reaches the leader's caller, and every waiting or later caller gets
/// `Error::Poisoned` instead of waiting for ever. A reopen recovers what was put before.
#[test]
fn a_panic_in_a_write_poisons_instead_of_leaving_followers_waiting() {
    for d in [Durability::Synced, Durability::Written] {
        let st = SimStorage::new();
        let q = Arc::new(open(&st, d));
        q.put(&1).unwrap();
        // The next write first takes 300 ms (so that a second put queues behind it),
        // then panics.
        st.delay_write(0, std::time::Duration::from_millis(300));
        st.inject(Op::Write, 0, Fault::Panic);
        let leader = {
            let q = q.clone();
            std::thread::spawn(move || q.put(&2))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let follower = {
            let q = q.clone();
            within_10s(move || q.put(&3))
        };
        assert!(
            leader.join().is_err(),
            "{d:?}: the leader's put did not panic"
        );
        assert!(
            matches!(follower, Err(Error::Poisoned)),
            "{d:?}: {follower:?}"
        );
        let q2 = q.clone();
        let later = within_10s(move || q2.put(&4));
        assert!(matches!(later, Err(Error::Poisoned)), "{d:?}: {later:?}");
        drop(q);
        let q = open(&st.after_crash(diskq::storage::Crash::Process), d);
        assert_eq!(drain(&q)[0], 1, "{d:?}");
    }
}

/// The same for an acknowledgement whose journal append panics.
#[test]
fn a_panic_in_a_journal_append_poisons() {
    for d in [Durability::Synced, Durability::Written] {
        let st = SimStorage::new();
        let q = Arc::new(open(&st, d));
        q.put_many(&[1, 2]).unwrap();
        q.get().unwrap();
        q.get().unwrap();
        st.inject(Op::Write, 0, Fault::Panic);
        let q1 = q.clone();
        assert!(std::thread::spawn(move || q1.task_done()).join().is_err());
        let q2 = q.clone();
        let later = within_10s(move || q2.task_done());
        assert!(matches!(later, Err(Error::Poisoned)), "{d:?}: {later:?}");
    }
}

#[test]
fn an_acknowledgement_on_a_full_disk_uses_the_reserve_then_is_not_durable_without_poisoning() {
    for d in [Durability::Written, Durability::Synced] {
        let st = SimStorage::new();
        let q = open(&st, d);
        for i in 0..6 {
            q.put(&i).unwrap();
        }
        assert_eq!(q.get().unwrap(), 0);
        // The first failure gives up the reserve and the entry is written after all.
        st.inject(Op::Write, 0, Fault::Errno(ENOSPC));
        q.task_done().unwrap();
        // With no reserve left, the acknowledgement stays in memory: AckNotDurable (not
        // to be retried), nothing poisoned, and the next one journals both.
        assert_eq!(q.get().unwrap(), 1);
        st.inject(Op::Write, 0, Fault::Short(3));
        let e = q.task_done().unwrap_err();
        assert!(matches!(e, Error::AckNotDurable { .. }), "{d:?}: {e}");
        assert!(
            e.to_string().contains("Do not acknowledge the item again"),
            "{e}"
        );
        assert!(e.to_string().contains("/sim/q/acks"), "{e}");
        assert_eq!(q.unfinished(), 4, "{d:?}: acknowledged in memory");
        assert_eq!(q.get().unwrap(), 2);
        q.task_done().unwrap();
        drop(q);
        let q = open(&st, d);
        assert_eq!(drain(&q), vec![3, 4, 5], "{d:?}");
    }
}

#[test]
fn a_checkpoint_on_a_full_disk_uses_the_reserve() {
    let st = SimStorage::new();
    let q = open(&st, Durability::Synced);
    q.put(&1).unwrap();
    st.inject(Op::Rename, 0, Fault::Errno(ENOSPC));
    q.close().unwrap();
    let q = open(&st, Durability::Synced);
    assert_eq!(drain(&q), vec![1]);
}
