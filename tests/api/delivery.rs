//! Per-item acknowledgement: `get_delivery` and `Delivery::ack`, in any order, mixed with
//! FIFO `task_done`, across reopens, checkpoints and every simulated crash point. An item
//! acknowledged out of order never comes back, even while older items are still
//! unacknowledged.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::collections::BTreeSet;
use std::sync::Arc;

fn open(dir: &std::path::Path) -> Queue<u32> {
    Options::new().chunk_size(3).open(dir).unwrap()
}

fn drain(q: &Queue<u32>) -> Vec<u32> {
    let mut v = Vec::new();
    while let Ok(x) = q.get_nowait() {
        v.push(x);
    }
    v
}

#[test]
fn acknowledged_out_of_order_never_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.put_many(&(0..10).collect::<Vec<_>>()).unwrap();
    let ds: Vec<_> = (0..6).map(|_| q.get_delivery().unwrap()).collect();
    assert_eq!(
        ds.iter().map(|d| **d).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let mut ds = ds.into_iter();
    let (d0, d1, d2, d3, d4, d5) = (
        ds.next().unwrap(),
        ds.next().unwrap(),
        ds.next().unwrap(),
        ds.next().unwrap(),
        ds.next().unwrap(),
        ds.next().unwrap(),
    );
    assert_eq!(d4.ack().unwrap(), 4);
    assert_eq!(d1.ack().unwrap(), 1);
    assert_eq!(d5.seq(), 5);
    assert_eq!(q.unfinished(), 8);
    for d in [d0, d2, d3, d5] {
        d.into_inner(); // left unacknowledged
    }
    drop(ds);
    drop(q);
    for _ in 0..3 {
        let q = open(dir.path());
        assert_eq!(q.len(), 8);
        assert_eq!(q.unfinished(), 8);
        assert_eq!(drain(&q), [0, 2, 3, 5, 6, 7, 8, 9]);
    }
}

#[test]
fn the_head_absorbs_singles_and_task_done_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.put_many(&[0, 1, 2, 3, 4]).unwrap();
    let d0 = q.get_delivery().unwrap();
    let d1 = q.get_delivery().unwrap();
    let d2 = q.get_delivery().unwrap();
    d2.ack().unwrap();
    d1.ack().unwrap();
    assert_eq!(q.unfinished(), 3);
    // task_done acknowledges the oldest unacknowledged gotten item: 0.
    q.task_done().unwrap();
    assert!(matches!(
        d0.ack(),
        Err(Error::AlreadyAcknowledged { seq: 0 })
    ));
    assert!(matches!(q.task_done(), Err(Error::NothingToAcknowledge)));
    assert_eq!(q.unfinished(), 2);
    assert_eq!(q.get().unwrap(), 3);
    q.task_done().unwrap();
    q.close().unwrap();
    let q = open(dir.path());
    assert_eq!(drain(&q), [4]);
}

#[test]
fn singles_survive_checkpoints_at_every_level() {
    for d in [
        Durability::Buffered,
        Durability::Written,
        Durability::Synced,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().chunk_size(2).durability(d).journal_limit(24);
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        q.put_many(&(0..40).collect::<Vec<_>>()).unwrap();
        let mut keep = Vec::new();
        for i in 0..30 {
            let d = q.get_delivery().unwrap();
            if i % 3 == 0 {
                keep.push(d.into_inner());
            } else {
                d.ack().unwrap();
            }
        }
        q.close().unwrap();
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        let expect: Vec<u32> = keep.into_iter().chain(30..40).collect();
        assert_eq!(drain(&q), expect, "{d:?}");
        q.task_done_n(expect.len()).unwrap();
        q.close().unwrap();
        let q: Queue<u32> = opts.open(dir.path()).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.unfinished(), 0, "{d:?}");
    }
}

#[test]
fn consumers_acknowledging_in_any_order_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u32> = Options::new().chunk_size(5).open(dir.path()).unwrap();
    q.put_many(&(0..400).collect::<Vec<_>>()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let q = &q;
            s.spawn(move || {
                let mut held = Vec::new();
                while let Ok(d) = q.get_delivery_timeout(std::time::Duration::from_millis(100)) {
                    held.push(d);
                    if held.len() == 3 {
                        // Acknowledge newest first.
                        while let Some(d) = held.pop() {
                            if *d % 7 != t {
                                d.ack().unwrap();
                            }
                        }
                    }
                }
                for d in held {
                    if *d % 7 != t {
                        d.ack().unwrap();
                    }
                }
            });
        }
    });
    drop(q);
    let q = open(dir.path());
    let left = drain(&q);
    // Each thread left unacknowledged only items it drew with `id % 7 == t`.
    assert!(left.windows(2).all(|w| w[0] < w[1]), "{left:?}");
    assert!(left.iter().all(|x| x % 7 < 4), "{left:?}");
}

/// Every crash point of a workload of deliveries acknowledged out of order.
#[test]
fn crash_points_with_out_of_order_acknowledgements() {
    const DIR: &str = "/sim/d";
    let opts = |d| Options::new().chunk_size(3).durability(d).journal_limit(36);
    let workload = |st: &SimStorage,
                    d: Durability,
                    put_ok: &mut BTreeSet<u32>,
                    acked_ok: &mut BTreeSet<u32>,
                    uncertain: &mut Option<u32>|
     -> Result<(), Error> {
        let q: Queue<u32> = opts(d).open_on(Arc::new(st.clone()), DIR)?;
        for i in 0..12 {
            q.put(&i)?;
            put_ok.insert(i);
        }
        let mut ds = Vec::new();
        for _ in 0..9 {
            ds.push(Some(q.get_delivery()?));
        }
        // Acknowledge 1, 3, 5, 7 (out of order), then 0 (the head absorbs 1), then 8.
        for k in [7usize, 5, 3, 1, 0, 8] {
            let d = ds[k].take().expect("acknowledged once");
            let id = *d;
            *uncertain = Some(id);
            d.ack()?;
            *uncertain = None;
            acked_ok.insert(id);
        }
        drop(ds);
        q.close()
    };
    for (d, crash) in [
        (Durability::Written, Crash::Process),
        (Durability::Synced, Crash::PowerLoss),
        (Durability::Synced, Crash::PowerLossPrefix(5)),
    ] {
        let total = {
            let st = SimStorage::new();
            workload(
                &st,
                d,
                &mut BTreeSet::new(),
                &mut BTreeSet::new(),
                &mut None,
            )
            .unwrap();
            st.ops()
        };
        for n in 0..=total {
            let st = SimStorage::new();
            st.crash_after(n, n % 2 == 1);
            let (mut put_ok, mut acked_ok, mut uncertain) =
                (BTreeSet::new(), BTreeSet::new(), None);
            let _ = workload(&st, d, &mut put_ok, &mut acked_ok, &mut uncertain);
            let image = st.after_crash(crash);
            let q: Queue<u32> = opts(d)
                .open_on(Arc::new(image), DIR)
                .unwrap_or_else(|e| panic!("{d:?} crash after {n}: {e}"));
            let got = drain(&q);
            let ctx = format!("{d:?}/{crash:?} crash after {n} of {total}: {got:?}");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{ctx}");
            for id in &got {
                assert!(!acked_ok.contains(id), "{ctx}: acknowledged {id} came back");
                assert!(*id < 12, "{ctx}: invented {id}");
            }
            for id in put_ok.difference(&acked_ok) {
                if Some(*id) != uncertain {
                    assert!(got.contains(id), "{ctx}: lost {id}");
                }
            }
        }
    }
}
