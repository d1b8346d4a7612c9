//! Backward compatibility with format version 4: the directories under
//! `tests/fixtures/v4/` were written by the version 4 code (commit a02c92d; see their
//! README.md), and this build must keep opening them, deliver exactly the items they hold,
//! in order (again after a reopen), keep a pause, and keep working on them after the
//! upgrade (a put, a close and a reopen). It guards format changes (version 5 and later)
//! against breaking queues written by version 4.
//!
//! Every test opens a copy in a temporary directory, never the checked-in files: `open`
//! may truncate, checkpoint and delete files.
//!
//! A version 4 `info` records the boot of the machine that wrote it, and `open` takes
//! another path when that is not the running boot (FORMAT.md §open, step 3a). The
//! checked-in boot is the generating machine's, so each fixture is also opened with the
//! copy's boot id rewritten to this boot (a process crash or a clean close, then an
//! upgrade without a restart) and to another boot (an upgrade after a restart): both
//! paths are tested wherever this runs.

use crate::common::fixtures::{Fixture, Set};

const V4: Set = Set {
    version: 4,
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
    ],
};

#[test]
fn v4_clean_close_opens() {
    V4.check_all_boots("clean");
}

#[test]
fn v4_single_acknowledgements_in_info_open() {
    V4.check_all_boots("singles");
}

#[test]
fn v4_journal_without_checkpoint_opens() {
    V4.check_all_boots("journal");
}

#[test]
fn v4_paused_stays_paused() {
    V4.check_all_boots("paused");
}

/// The `journal` fixture is what its name says: acknowledgements in `acks` that no
/// checkpoint folded into `info`.
#[test]
fn v4_journal_fixture_holds_entries() {
    let acks = std::fs::read(V4.dir("journal").join("acks")).unwrap();
    assert!(
        acks.iter().any(|&b| b != 0),
        "the journal fixture's acks holds no entry"
    );
}

#[test]
fn v4_fixture_set_is_complete() {
    V4.check_complete();
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v4_missing_fixture_fails_rather_than_skips() {
    V4.dir("no-such-fixture");
}
