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

use diskq::{Error, Queue};
use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every fixture with the item numbers (`item-<n>`) it must deliver, in order, and
/// whether it is paused.
const FIXTURES: &[(&str, &[u32], bool)] = &[
    ("clean", &[3, 4, 5, 6, 7, 8, 9], false),
    ("singles", &[1, 3, 4, 6, 7, 8, 9], false),
    ("journal", &[5, 6, 8, 9], false),
    ("paused", &[0, 1, 2], true),
];

/// A boot that is not this one (nor unknown).
const OTHER_BOOT: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;

/// The boot id the copy's `info` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    /// As checked in: the boot of the machine that made the fixtures.
    AsWritten,
    /// The running machine's boot: no restart since the checkpoint.
    This,
    /// Another boot: the machine restarted since the checkpoint.
    Other,
}

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v4")
}

/// The checked-in fixture directory; panics (never skips) when it is missing.
fn fixture_dir(name: &str) -> PathBuf {
    let dir = fixtures_root().join(name);
    assert!(
        dir.join("info").is_file(),
        "missing fixture {}: the version 4 fixtures must be checked in",
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

/// The running machine's boot id, as diskq reads it (Linux).
fn this_boot() -> u128 {
    let path = "/proc/sys/kernel/random/boot_id";
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text.trim().chars().filter(|&c| c != '-').collect();
    assert_eq!(hex.len(), 32, "{path}: {text:?}");
    u128::from_str_radix(&hex, 16).unwrap()
}

/// A version 4 `info` with its boot id (bytes 60..76, little-endian) replaced and its
/// CRC (CRC-32 of every byte before it, the last 4 bytes) recomputed.
fn with_boot(info: &[u8], boot: u128) -> Vec<u8> {
    assert_eq!(&info[..8], b"diskqinf", "info magic");
    assert_eq!(
        u32::from_le_bytes(info[8..12].try_into().unwrap()),
        4,
        "info version"
    );
    let end = info.len() - 4;
    assert_eq!(
        crc32fast::hash(&info[..end]).to_le_bytes(),
        info[end..],
        "the checked-in info's CRC"
    );
    let mut b = info.to_vec();
    b[60..76].copy_from_slice(&boot.to_le_bytes());
    let crc = crc32fast::hash(&b[..end]);
    b[end..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn open(dir: &Path, what: &str) -> Queue<String> {
    match catch_unwind(AssertUnwindSafe(|| Queue::<String>::open(dir))) {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => panic!("{what}: open failed: {e}"),
        Err(_) => panic!("{what}: open panicked"),
    }
}

/// Gets every waiting item, with or without acknowledging each.
fn drain(q: &Queue<String>, ack: bool, what: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(item) => {
                got.push(item);
                if ack {
                    q.task_done().unwrap();
                }
            }
            Err(Error::Empty) => return got,
            Err(e) => panic!("{what}: get after {got:?}: {e}"),
        }
    }
}

fn check(name: &str, boot: Boot) {
    let &(_, expected, paused) = FIXTURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no expectation for fixture {name}"));
    let expected: Vec<String> = expected.iter().map(|i| format!("item-{i}")).collect();
    let what = format!("{name} ({boot:?} boot)");
    let what = what.as_str();
    let src = fixture_dir(name);
    let before = files(&src);
    if paused {
        assert!(before.contains_key("paused"), "{what}: no paused file");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    fs::create_dir(&dir).unwrap();
    for (file, bytes) in &before {
        let bytes = match (file.as_str(), boot) {
            ("info", Boot::This) => with_boot(bytes, this_boot()),
            ("info", Boot::Other) => with_boot(bytes, OTHER_BOOT),
            _ => bytes.clone(),
        };
        fs::write(dir.join(file), bytes).unwrap();
    }

    let q = open(&dir, what);
    assert!(dir.join(".lock").is_file(), "{what}: open made no .lock");
    let rec = q.recovery();
    match boot {
        Boot::This => assert!(!rec.after_restart, "{what}: {rec:?}"),
        Boot::Other => assert!(rec.after_restart, "{what}: {rec:?}"),
        Boot::AsWritten => {}
    }
    // Every record and journal entry is intact: nothing may be cut or ignored.
    assert_eq!(rec.cut_at, None, "{what}: {rec:?}");
    assert_eq!(
        (rec.bytes_dropped, rec.chunks_dropped, rec.acks_ignored),
        (0, 0, 0),
        "{what}: {rec:?}"
    );
    assert_eq!(q.is_paused(), paused, "{what}: is_paused after open");
    assert_eq!(q.len(), expected.len(), "{what}: len after open");
    let q = if paused {
        assert_eq!(
            drain(&q, true, what),
            Vec::<String>::new(),
            "{what}: items delivered while paused"
        );
        // The pause is kept by a close and a reopen of the upgraded directory.
        q.close().unwrap();
        let q = open(&dir, what);
        assert!(q.is_paused(), "{what}: not paused after reopen");
        assert_eq!(q.len(), expected.len(), "{what}: len after reopen");
        q.resume().unwrap();
        assert!(!q.is_paused(), "{what}: paused after resume");
        q
    } else {
        q
    };

    // Gotten without acknowledgement: delivered again, the same, after a reopen.
    assert_eq!(drain(&q, false, what), expected, "{what}: items delivered");
    q.close().unwrap();
    let q = open(&dir, what);
    assert!(!q.is_paused(), "{what}: paused after reopen");
    assert_eq!(q.len(), expected.len(), "{what}: len after reopen");
    assert_eq!(
        drain(&q, true, what),
        expected,
        "{what}: items delivered after reopen"
    );
    assert_eq!(q.unfinished(), 0, "{what}: unfinished after draining");
    q.close().unwrap();

    // Acknowledged for good; the upgraded directory keeps working: a new item survives a
    // close and a reopen.
    let q = open(&dir, what);
    assert_eq!(q.len(), 0, "{what}: items left after acknowledging all");
    let new = "after-upgrade".to_string();
    q.put(&new).unwrap();
    q.close().unwrap();
    let q = open(&dir, what);
    assert_eq!(drain(&q, true, what), [new], "{what}: after the upgrade");
    q.close().unwrap();

    assert_eq!(
        files(&src),
        before,
        "{what}: the checked-in fixture changed"
    );
}

fn check_all_boots(name: &str) {
    assert_ne!(this_boot(), OTHER_BOOT);
    for boot in [Boot::AsWritten, Boot::This, Boot::Other] {
        check(name, boot);
    }
}

#[test]
fn v4_clean_close_opens() {
    check_all_boots("clean");
}

#[test]
fn v4_single_acknowledgements_in_info_open() {
    check_all_boots("singles");
}

#[test]
fn v4_journal_without_checkpoint_opens() {
    check_all_boots("journal");
}

#[test]
fn v4_paused_stays_paused() {
    check_all_boots("paused");
}

/// The `journal` fixture is what its name says: acknowledgements in `acks` that no
/// checkpoint folded into `info`.
#[test]
fn v4_journal_fixture_holds_entries() {
    let acks = fs::read(fixture_dir("journal").join("acks")).unwrap();
    assert!(
        acks.iter().any(|&b| b != 0),
        "the journal fixture's acks holds no entry"
    );
}

/// The fixture directories on disk are exactly those listed here: none missing, none
/// without a test; and none holds the files `open` makes again.
#[test]
fn v4_fixture_set_is_complete() {
    let mut on_disk: Vec<String> = fs::read_dir(fixtures_root())
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures_root().display()))
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|(n, _, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for name in &listed {
        let dir = fixture_dir(name);
        for f in [".lock", "reserve", "info.tmp"] {
            assert!(!dir.join(f).exists(), "{}: {f} checked in", dir.display());
        }
    }
}

#[test]
#[should_panic(expected = "missing fixture")]
fn v4_missing_fixture_fails_rather_than_skips() {
    fixture_dir("no-such-fixture");
}
