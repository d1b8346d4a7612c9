//! Backward compatibility with format version 3: the directories under
//! `tests/fixtures/v3/` were written by the version 3 code (see their README.md), and this
//! build must keep opening them, deliver exactly the items they hold, in order, and keep
//! working on them after the upgrade (a put, a close and a reopen). It guards format
//! changes (version 4 and later) against breaking queues written by 0.1.0.
//!
//! Every test opens a copy in a temporary directory, never the checked-in files: `open`
//! may truncate, checkpoint and delete files.

use diskq::{Error, Queue};
use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every fixture with the item numbers (`item-<n>`) it must deliver, in order.
const FIXTURES: &[(&str, &[u32])] = &[
    ("clean", &[3, 4, 5, 6, 7, 8, 9]),
    ("singles", &[1, 3, 4, 6, 7, 8, 9]),
    ("journal", &[5, 7, 9]),
    ("torn", &[5, 7, 9]),
];

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3")
}

/// The checked-in fixture directory; panics (never skips) when it is missing.
fn fixture_dir(name: &str) -> PathBuf {
    let dir = fixtures_root().join(name);
    assert!(
        dir.join("info").is_file(),
        "missing fixture {}: the version 3 fixtures must be checked in",
        dir.display()
    );
    dir
}

/// The fixture's files and their bytes; it holds no subdirectories.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            assert!(
                e.file_type().unwrap().is_file(),
                "{}: not a file",
                e.path().display()
            );
            let name = e.file_name().into_string().unwrap();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

fn open(dir: &Path, what: &str) -> Queue<String> {
    match catch_unwind(AssertUnwindSafe(|| Queue::<String>::open(dir))) {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => panic!("{what}: open failed: {e}"),
        Err(_) => panic!("{what}: open panicked"),
    }
}

fn check(name: &str) {
    let expected = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no expectation for fixture {name}"))
        .1;
    let expected: Vec<String> = expected.iter().map(|i| format!("item-{i}")).collect();
    let src = fixture_dir(name);
    let before = files(&src);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    fs::create_dir(&dir).unwrap();
    for (file, bytes) in &before {
        fs::write(dir.join(file), bytes).unwrap();
    }

    let q = open(&dir, name);
    assert!(dir.join(".lock").is_file(), "{name}: open made no .lock");
    assert_eq!(q.len(), expected.len(), "{name}: len after open");
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(item) => {
                got.push(item);
                q.task_done().unwrap();
            }
            Err(Error::Empty) => break,
            Err(e) => panic!("{name}: get after {got:?}: {e}"),
        }
    }
    assert_eq!(got, expected, "{name}: items delivered");
    assert_eq!(q.unfinished(), 0, "{name}: unfinished after draining");

    // The upgraded directory keeps working: a new item survives a close and a reopen.
    let new = "after-upgrade".to_string();
    q.put(&new).unwrap();
    q.close().unwrap();
    let q = open(&dir, name);
    assert_eq!(
        q.get_nowait().unwrap(),
        new,
        "{name}: item put after upgrade"
    );
    q.task_done().unwrap();
    assert!(
        matches!(q.get_nowait(), Err(Error::Empty)),
        "{name}: more than the new item after reopen"
    );
    q.close().unwrap();

    assert_eq!(
        files(&src),
        before,
        "{name}: the checked-in fixture changed"
    );
}

#[test]
fn v3_clean_close_opens() {
    check("clean");
}

#[test]
fn v3_single_acknowledgements_in_info_open() {
    check("singles");
}

#[test]
fn v3_journal_after_sigkill_opens() {
    check("journal");
}

#[test]
fn v3_cut_record_after_sigkill_opens() {
    check("torn");
}

/// The fixture directories on disk are exactly those listed here: none missing, none
/// without a test.
#[test]
fn v3_fixture_set_is_complete() {
    let mut on_disk: Vec<String> = fs::read_dir(fixtures_root())
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures_root().display()))
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for name in &listed {
        fixture_dir(name);
    }
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v3_missing_fixture_fails_rather_than_skips() {
    fixture_dir("no-such-fixture");
}
