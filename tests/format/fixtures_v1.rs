//! Backward compatibility with format version 1: the directories under
//! `tests/fixtures/v1/` were written by the version 1 code (commit d34811b, the last that
//! wrote version 1; see their README.md), and this build must keep opening them, deliver
//! exactly the items they hold, in order (again after a reopen), and keep working on them
//! after the upgrade (a put, a close and a reopen).
//!
//! A version 1 `info` records neither the tail mark nor the oldest chunk nor a boot:
//! `open` lists the directory and treats the queue as a process crash left it (FORMAT.md
//! §info). Every test opens a copy in a temporary directory, never the checked-in files:
//! `open` may truncate, checkpoint and delete files.

use crate::common::fixtures::{self, Boot, Cut, Fixture, Set};

const V1: Set = Set {
    version: 1,
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
    ],
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

/// The fixtures are what their names say: every `info` and chunk header is version 1;
/// `journal/` and `torn/` hold acknowledgements in `acks` that no checkpoint folded into
/// `info` (which is 40 bytes: acked 0, no singles), and `q00000`, whose items they
/// acknowledged, is gone.
#[test]
fn v1_fixtures_are_version_1() {
    for f in V1.fixtures {
        for (file, b) in fixtures::files(&V1.dir(f.name)) {
            let version = match file.as_str() {
                "info" => u32::from_le_bytes(b[8..12].try_into().unwrap()),
                "acks" => continue,
                _ => u32::from_le_bytes(b[4..8].try_into().unwrap()),
            };
            assert_eq!(version, 1, "{}/{file}", f.name);
        }
    }
    for name in ["journal", "torn"] {
        let files = fixtures::files(&V1.dir(name));
        assert!(files["acks"].iter().any(|&b| b != 0), "{name}: acks empty");
        assert_eq!(files["info"].len(), 40, "{name}: info");
        assert_eq!(files["info"][16..24], [0; 8], "{name}: info's acked");
        assert!(!files.contains_key("q00000"), "{name}: q00000");
    }
}

/// The first checkpoint of a version 1 queue writes today's version.
#[test]
fn v1_info_is_rewritten_at_the_current_version() {
    let tmp = fixtures::copy(&V1, "singles", Boot::AsWritten);
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
fn v1_fixture_set_is_complete() {
    V1.check_complete();
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v1_missing_fixture_fails_rather_than_skips() {
    V1.dir("no-such-fixture");
}
