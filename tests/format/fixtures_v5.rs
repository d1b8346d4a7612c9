//! Backward compatibility with format version 5: the directories under
//! `tests/fixtures/v5/` were written by the version 5 code (see their README.md), and
//! every later build must keep opening them: deliver exactly the items they hold, in
//! order (again after a reopen), keep a pause, attempt counts, a delay and the dead
//! letters, and keep working after the upgrade. Each is opened with `info` as written,
//! with its boot id set to this boot, and to another boot (FORMAT.md §open, step 3a).

use crate::common;

use crate::common::fixtures::{Boot, Fixture, Set};
use diskq::Queue;

/// `long/`: item 0 and the odd items of 0..200 (the other even ones were acknowledged
/// one by one: 99 singles, an `info` longer than a sector, written unsynced).
const LONG: [u32; 101] = {
    let mut v = [0u32; 101];
    let mut i = 1;
    while i < 101 {
        v[i] = 2 * i as u32 - 1;
        i += 1;
    }
    v
};

const V5: Set = Set {
    version: 5,
    fixtures: &[
        Fixture {
            name: "clean",
            items: &[3, 4, 5, 6, 7, 8, 9],
            paused: false,
            delayed: 0,
        },
        Fixture {
            name: "singles",
            items: &[1, 3, 4, 6, 7, 8, 9],
            paused: false,
            delayed: 0,
        },
        Fixture {
            name: "journal",
            items: &[5, 6, 8, 9],
            paused: false,
            delayed: 0,
        },
        Fixture {
            name: "paused",
            items: &[0, 1, 2],
            paused: true,
            delayed: 0,
        },
        // Item 2 waits out a delay of a century (its copy, item 10, at the tail).
        Fixture {
            name: "work",
            items: &[0, 3, 4, 5, 6, 7, 8, 9],
            paused: false,
            delayed: 1,
        },
        Fixture {
            name: "long",
            items: &LONG,
            paused: false,
            delayed: 0,
        },
    ],
};

#[test]
fn v5_clean_close_opens() {
    V5.check_all_boots("clean");
}

#[test]
fn v5_single_acknowledgements_in_info_open() {
    V5.check_all_boots("singles");
}

#[test]
fn v5_journal_without_checkpoint_opens() {
    V5.check_all_boots("journal");
}

#[test]
fn v5_paused_stays_paused() {
    V5.check_all_boots("paused");
}

#[test]
fn v5_work_state_opens() {
    V5.check_all_boots("work");
}

#[test]
fn v5_info_longer_than_a_sector_opens() {
    V5.check_all_boots("long");
}

/// What `work/` holds besides its items: item 0's two deliveries (the next is the
/// third), the dead letter of item 1 with its reason, and the delayed copy of item 2.
#[test]
fn v5_work_keeps_attempts_dead_letters_and_the_delay() {
    for boot in [Boot::AsWritten, Boot::This, Boot::Other] {
        let tmp = common::fixtures::copy(&V5, "work", boot);
        let q: Queue<String> = Queue::open(tmp.path().join("work")).unwrap();
        let s = q.stats();
        assert_eq!(
            (s.len, s.delayed, s.dead_letters),
            (8, 1, 1),
            "{boot:?}: {s:?}"
        );
        let d = q.get_delivery().unwrap();
        assert_eq!((d.as_str(), d.attempt()), ("item-0", 3), "{boot:?}");
        d.ack().unwrap();
        let dead = q.dead_letters().iter().next().unwrap().unwrap();
        assert_eq!(
            (dead.seq(), dead.attempts(), dead.reason()),
            (1, 1, "bad input")
        );
        assert_eq!(dead.item().map(String::as_str), Some("item-1"));
    }
}

/// `long/`'s `info` is version 5 with a body past the first sector, written unsynced.
#[test]
fn v5_long_info_is_past_a_sector_and_unsynced() {
    let info = std::fs::read(V5.dir("long").join("info")).unwrap();
    assert!(info.len() > 512, "{} bytes", info.len());
    assert_eq!(
        u32::from_le_bytes(info[76..80].try_into().unwrap()) & 2,
        2,
        "unsynced"
    );
}

#[test]
fn v5_fixture_set_is_complete() {
    V5.check_complete();
}
