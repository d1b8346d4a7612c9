//! A long `info` written below `Synced` is not synced (FORMAT.md §info): after a power
//! loss its header (one sector) is whole, and its lists may be torn. `open` then drops
//! the lists by itself, and in the same boot the same damage is `Corrupt`, named by file
//! and offset.

use diskq::storage::{Crash, SimStorage};
use diskq::{Durability, Error, Options, Queue};
use std::collections::BTreeSet;
use std::sync::Arc;

const DIR: &str = "/work/q";
const N: u32 = 6000;
/// Power losses tried per level (about one in twenty tears the lists).
const SEEDS: u64 = 200;

fn open(st: &SimStorage, level: Durability) -> Queue<u32> {
    Options::new()
        .durability(level)
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap()
}

/// Puts `N` items durably (at `Synced`), then, below it, takes them all and acknowledges
/// every odd one: 3,000 single acknowledgements, a 24 KiB `info` (6 pages) at the close. Returns the
/// machine as it is then and the items acknowledged.
fn long_unsynced_info(level: Durability) -> (SimStorage, BTreeSet<u32>) {
    let st = SimStorage::new();
    {
        let q = open(&st, Durability::Synced);
        q.put_many(&(0..N).collect::<Vec<_>>()).unwrap();
        q.close().unwrap();
    }
    let q = open(&st, level);
    let ds: Vec<_> = (0..N).map(|_| q.get_delivery().unwrap()).collect();
    let mut acked = BTreeSet::new();
    for d in ds {
        if *d % 2 == 1 {
            acked.insert(d.ack().unwrap());
        } else {
            d.into_inner(); // stays in flight: delivered again after the reopen
        }
    }
    q.close().unwrap();
    let info = st.file(&std::path::Path::new(DIR).join("info")).unwrap();
    assert!(info.len() > 5 * 4096, "{} bytes", info.len());
    (st, acked)
}

#[test]
fn a_power_loss_that_tears_a_long_info_below_synced_opens_by_itself() {
    for level in [Durability::Written, Durability::Buffered] {
        let (st, acked) = long_unsynced_info(level);
        let mut torn = 0;
        for seed in 1..=SEEDS {
            let after = st.after_crash(Crash::PowerLossPages(seed));
            let q = open(&after, level);
            let r = q.recovery();
            assert!(r.after_restart, "{level:?} seed {seed}");
            torn += usize::from(r.info_lists_lost);
            let mut got = BTreeSet::new();
            while let Ok(item) = q.get_nowait() {
                assert!(item < N, "{level:?} seed {seed}: item {item} was never put");
                assert!(got.insert(item), "{level:?} seed {seed}: {item} twice");
            }
            // Every item not acknowledged is there (their records were synced); an
            // acknowledged one may come back (its single acknowledgement was lost).
            let missing: Vec<u32> = (0..N)
                .filter(|i| !acked.contains(i) && !got.contains(i))
                .collect();
            assert!(
                missing.is_empty(),
                "{level:?} seed {seed}: lost {missing:?}"
            );
            if r.info_lists_lost {
                assert!(
                    acked.iter().all(|i| got.contains(i)),
                    "{level:?} seed {seed}: the singles were dropped, so all come back"
                );
            }
        }
        println!("{level:?}: {SEEDS} power losses, {torn} tore the lists of info");
        assert!(torn > 0, "{level:?}: no power loss tore the lists");
    }
}

#[test]
fn the_same_tear_without_a_restart_is_corrupt_at_the_lists() {
    let (st, _) = long_unsynced_info(Durability::Written);
    let path = std::path::Path::new(DIR).join("info");
    let mut info = st.file(&path).unwrap();
    info[5000] ^= 0x10;
    st.put_file(&path, &info);
    let err = Options::new()
        .durability(Durability::Written)
        .open_on::<u32>(Arc::new(st.clone()), DIR)
        .unwrap_err();
    match &err {
        Error::Corrupt {
            path: p, offset, ..
        } => {
            assert_eq!((p.as_path(), *offset), (path.as_path(), 100), "{err}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("lists after the header"), "{err}");
}

#[test]
fn a_long_info_at_synced_is_synced_and_its_damage_is_corrupt_after_a_restart() {
    let (st, _) = long_unsynced_info(Durability::Synced);
    let path = std::path::Path::new(DIR).join("info");
    let after = st.after_crash(Crash::PowerLossPages(3));
    // Synced: the whole `info` survives every power loss.
    assert_eq!(after.file(&path), st.file(&path));
    let mut info = after.file(&path).unwrap();
    info[5000] ^= 0x10;
    after.put_file(&path, &info);
    let err = Options::new()
        .durability(Durability::Synced)
        .open_on::<u32>(Arc::new(after), DIR)
        .unwrap_err();
    assert!(matches!(&err, Error::Corrupt { offset: 100, .. }), "{err}");
}
