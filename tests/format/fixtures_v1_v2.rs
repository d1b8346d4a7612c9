//! Backward compatibility with format versions 1 and 2: the directories under
//! `tests/fixtures/v1/` and `v2/` were written by the code of those versions (commits
//! d34811b and adef068, the last that wrote each; see their README.md), and this build
//! must keep opening them, deliver exactly the items they hold, in order (again after a
//! reopen), and keep working on them after the upgrade (a put, a close and a reopen).
//! Both sets were made by the same workloads, so they hold the same items.
//!
//! A version 1 `info` records neither the tail mark nor the oldest chunk nor a boot; a
//! version 2 `info` records the newest chunk's tail mark, but neither the oldest chunk nor
//! a boot: `open` lists the directory and treats the queue as a process crash left it
//! (FORMAT.md §info). Every test opens a copy in a temporary directory, never the
//! checked-in files: `open` may truncate, checkpoint and delete files.

use crate::common::fixtures::{self, Boot, Cut, Fixture, Set};
use std::collections::BTreeMap;

/// What both versions' fixtures hold.
const FIXTURES: &[Fixture] = &[
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
        items: &[5, 7, 9],
        paused: false,
        delayed: 0,
    },
    Fixture {
        name: "torn",
        items: &[5, 7, 9],
        paused: false,
        delayed: 0,
    },
];

const V1: Set = Set {
    version: 1,
    fixtures: FIXTURES,
};

const V2: Set = Set {
    version: 2,
    fixtures: FIXTURES,
};

/// `torn/`: the first 5 bytes of a frame after `q00002`'s last record, at offset 72.
const TORN: Cut = Cut {
    file: "q00002",
    at: 72,
};

#[test]
fn v1_clean_close_opens() {
    V1.check("clean", Boot::AsWritten);
}

#[test]
fn v1_single_acknowledgements_in_info_open() {
    V1.check("singles", Boot::AsWritten);
}

#[test]
fn v1_journal_after_sigkill_opens() {
    V1.check("journal", Boot::AsWritten);
}

#[test]
fn v1_cut_record_after_sigkill_opens() {
    V1.check_cut("torn", Boot::AsWritten, TORN);
}

#[test]
fn v2_clean_close_opens() {
    V2.check("clean", Boot::AsWritten);
}

#[test]
fn v2_single_acknowledgements_in_info_open() {
    V2.check("singles", Boot::AsWritten);
}

#[test]
fn v2_journal_after_sigkill_opens() {
    V2.check("journal", Boot::AsWritten);
}

#[test]
fn v2_cut_record_after_sigkill_opens() {
    V2.check_cut("torn", Boot::AsWritten, TORN);
}

/// The fixtures are what their names say: every `info` and chunk header is of the set's
/// version; `journal/` and `torn/` hold acknowledgements in `acks` that no checkpoint
/// folded into `info` (`info_len` bytes: acked 0, no singles), and `q00000`, whose items
/// they acknowledged, is gone. Returns the files of `journal/` and `torn/`.
fn check_versions(set: &Set, info_len: usize) -> Vec<(&'static str, BTreeMap<String, Vec<u8>>)> {
    for f in set.fixtures {
        for (file, b) in fixtures::files(&set.dir(f.name)) {
            let version = match file.as_str() {
                "info" => u32::from_le_bytes(b[8..12].try_into().unwrap()),
                "acks" => continue,
                _ => u32::from_le_bytes(b[4..8].try_into().unwrap()),
            };
            assert_eq!(version, set.version, "{}/{file}", f.name);
        }
    }
    let killed = ["journal", "torn"].map(|name| (name, fixtures::files(&set.dir(name))));
    for (name, files) in &killed {
        assert!(files["acks"].iter().any(|&b| b != 0), "{name}: acks empty");
        assert_eq!(files["info"].len(), info_len, "{name}: info");
        assert_eq!(files["info"][16..24], [0; 8], "{name}: info's acked");
        assert!(!files.contains_key("q00000"), "{name}: q00000");
    }
    killed.into()
}

/// Version 1: `info` is 40 bytes.
#[test]
fn v1_fixtures_are_version_1() {
    check_versions(&V1, 40);
}

/// Version 2: `info` is 60 bytes, with a stale tail mark of one record in `q00002`,
/// ending at 50.
#[test]
fn v2_fixtures_are_version_2() {
    for (name, files) in check_versions(&V2, 60) {
        assert_eq!(
            files["info"][32..40],
            50u64.to_le_bytes(),
            "{name}: tail_end"
        );
    }
}

/// The first checkpoint of a queue of `set`'s version writes today's version.
fn info_is_rewritten_at_the_current_version(set: &Set) {
    let tmp = fixtures::copy(set, "singles", Boot::AsWritten);
    let dir = tmp.path().join("singles");
    let q = fixtures::open(&dir, "singles");
    q.close().unwrap();
    let info = std::fs::read(dir.join("info")).unwrap();
    assert_eq!(u32::from_le_bytes(info[8..12].try_into().unwrap()), 5);
    let q = fixtures::open(&dir, "singles");
    assert_eq!(
        fixtures::drain(&q, true, "singles"),
        [
            "item-1", "item-3", "item-4", "item-6", "item-7", "item-8", "item-9"
        ]
    );
}

#[test]
fn v1_info_is_rewritten_at_the_current_version() {
    info_is_rewritten_at_the_current_version(&V1);
}

#[test]
fn v2_info_is_rewritten_at_the_current_version() {
    info_is_rewritten_at_the_current_version(&V2);
}

#[test]
fn v1_fixture_set_is_complete() {
    V1.check_complete();
}

#[test]
fn v2_fixture_set_is_complete() {
    V2.check_complete();
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v1_missing_fixture_fails_rather_than_skips() {
    V1.dir("no-such-fixture");
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v2_missing_fixture_fails_rather_than_skips() {
    V2.dir("no-such-fixture");
}
