//! Crash safety: damaged, missing and foreign files in a queue directory.
//!
//! Recovery repairs only a torn tail of the newest chunk. Everything else must be reported
//! as `Error::Corrupt { path, offset, .. }` (naming the damaged file and the exact byte
//! offset of the damaged record or header) or `Error::MissingInfo`, at `open` or at the
//! `get` that reaches the damage, never a panic, never a wrong item, never a silently
//! emptied queue. Covered here:
//!
//! * a flipped byte in every field (length, CRC, payload) of a record that is not the last
//!   one of the newest chunk, of records of older chunks, and of chunk headers;
//! * every byte of `info` flipped; `info` of random bytes, of the wrong length, empty;
//!   `info` deleted while chunk files exist (`MissingInfo`, and nothing is changed);
//! * a missing chunk file (middle, newest, oldest, and the only one);
//! * a `q00000` of random bytes, random-named junk files (ignored, left alone), the queue
//!   path being a regular file (`Error::Io`);
//! * the `acks` journal: a damaged entry followed by valid ones (corrupt), a torn or
//!   damaged final entry and trailing garbage (recovered);
//! * a damaged length field claiming 256 MiB in a file of 140 bytes: reported without
//!   allocating the claimed size (peak RSS measured in a child process, which re-executes
//!   this test binary).
//!
//! Every `Corrupt` error's `Display` must mention the file name and the offset.

use diskq::{Error, Options, Queue};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::common::{XorShift, snapshot};

const HEADER_LEN: u64 = 28;
/// A `Queue<u64>` record: 8-byte frame header and 8-byte payload.
const REC: u64 = 16;
const CHUNK: usize = 7;

/// The test that spawns child processes runs alone: a child holds a copy of every
/// descriptor of this process between fork and exec, queue locks included, so a test that
/// closed a queue could find it still locked when it reopens it (see
/// `tests/crash/crash_locking.rs`, `reopen_is_not_locked_by_processes_spawned_meanwhile`).
static SPAWNING: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    SPAWNING.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SPAWNING.write().unwrap_or_else(|e| e.into_inner())
}

fn opts() -> Options {
    Options::new().chunk_size(CHUNK)
}

/// The value of the item with sequence number `i`: not equal to `i`, so that a record read
/// at the wrong place cannot pass for the right one.
fn item(i: u64) -> u64 {
    i * 7919 + 13
}

/// A closed queue of 20 items in chunks of 7: q00000 holds 0..7, q00001 7..14 and
/// q00002 (the newest) 14..20.
fn build(dir: &Path) {
    let q: Queue<u64> = opts().open(dir).unwrap();
    for i in 0..20 {
        q.put(&item(i)).unwrap();
    }
    q.close().unwrap();
    for no in 0..3 {
        assert!(dir.join(format!("q{no:05}")).is_file());
    }
    assert_eq!(
        fs::metadata(dir.join("q00002")).unwrap().len(),
        HEADER_LEN + 6 * REC
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != ".lock" {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn xor_byte(path: &Path, offset: u64, mask: u8) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= mask;
    fs::write(path, b).unwrap();
}

/// Checks that `e` is `Corrupt` naming `file` (a file name in the queue directory) at
/// `offset`, and that its message says so.
fn assert_corrupt_at(e: &Error, file: &str, offset: u64, case: &str) {
    match e {
        Error::Corrupt {
            path, offset: off, ..
        } => {
            assert!(
                path.ends_with(file),
                "{case}: Corrupt names {}, expected {file}",
                path.display()
            );
            assert_eq!(*off, offset, "{case}: Corrupt offset");
            let msg = e.to_string();
            assert!(msg.contains(file), "{case}: message lacks {file}: {msg}");
            assert!(
                msg.contains(&format!("offset {offset}")),
                "{case}: message lacks the offset {offset}: {msg}"
            );
            assert!(e.is_corrupt());
        }
        other => panic!("{case}: expected Corrupt in {file} at {offset}, got {other:?} ({other})"),
    }
}

/// Where the damage was reported.
#[derive(Debug, PartialEq, Eq)]
enum Reported {
    AtOpen,
    AtGet,
}

/// Opens `dir` and reads until the damage: either `open` reports it, or the items with
/// sequence numbers `first..before` come out correctly and then `get` reports it (again on
/// a second try: the damaged item is not consumed). A failed open must leave every file as
/// it was.
fn expect_damage(
    dir: &Path,
    first: u64,
    before: u64,
    file: &str,
    offset: u64,
    case: &str,
) -> Reported {
    let files_before = snapshot(dir);
    let q: Queue<u64> = match opts().open(dir) {
        Err(e) => {
            assert_corrupt_at(&e, file, offset, case);
            assert_eq!(
                snapshot(dir),
                files_before,
                "{case}: a failed open changed the files"
            );
            return Reported::AtOpen;
        }
        Ok(q) => q,
    };
    for i in first..before {
        match q.get_nowait() {
            Ok(v) => assert_eq!(v, item(i), "{case}: item {i} is wrong"),
            Err(e) => panic!("{case}: get of item {i}, before the damage, failed: {e}"),
        }
    }
    for attempt in 0..2 {
        match q.get_nowait() {
            Ok(v) => panic!(
                "{case}: attempt {attempt}: get returned {v} from the damaged record \
                 (item {before} is {})",
                item(before)
            ),
            Err(e) => assert_corrupt_at(&e, file, offset, case),
        }
    }
    Reported::AtGet
}

/// A flipped byte in each field of each record of the newest chunk of a closed queue:
/// damage followed by valid records is not a torn tail, and neither is damage in the last
/// record, which `info`'s tail mark says was written whole. It is reported (by `get` when
/// the reader reaches it, if not by `open`), not cut.
#[test]
fn flipped_byte_in_a_record_of_the_newest_chunk() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    for rec in 0..6u64 {
        for byte in 0..REC {
            for mask in [0x01, 0x80, 0xFF] {
                let case = format!("q00002 record {rec} byte {byte} ^ {mask:#04x}");
                let tmp = tempfile::tempdir().unwrap();
                copy_dir(src.path(), tmp.path());
                let off = HEADER_LEN + rec * REC;
                xor_byte(&tmp.path().join("q00002"), off + byte, mask);
                expect_damage(tmp.path(), 0, 14 + rec, "q00002", off, &case);
            }
        }
    }
}

/// The newest chunk's last record damaged, when it was written after the last checkpoint
/// (the process was killed; `info`'s tail mark is before it), is indistinguishable from a
/// torn write, which recovery cuts off: the items before it are all delivered, none is
/// wrong, and the queue goes on.
#[test]
fn flipped_byte_in_the_last_record_of_the_newest_chunk_is_cut_as_a_torn_tail() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    {
        // A copy taken while the queue is open: what a kill leaves.
        let open = tempfile::tempdir().unwrap();
        let q: Queue<u64> = opts().open(open.path()).unwrap();
        for i in 0..20 {
            q.put(&item(i)).unwrap();
        }
        copy_dir(open.path(), src.path());
    }
    for byte in 0..REC {
        let case = format!("last record byte {byte}");
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        xor_byte(
            &tmp.path().join("q00002"),
            HEADER_LEN + 5 * REC + byte,
            0x10,
        );
        let q: Queue<u64> = opts()
            .open(tmp.path())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(q.len(), 19, "{case}");
        for i in 0..19 {
            assert_eq!(q.get_nowait().unwrap(), item(i), "{case}");
        }
        assert!(q.get_nowait().unwrap_err().is_empty(), "{case}");
        q.put(&item(19)).unwrap();
        assert_eq!(q.get_nowait().unwrap(), item(19), "{case}");
    }
}

/// Damage in an older chunk is found when the reader reaches it; the items before it come
/// out, and the damaged one never does, also after reopening and after acknowledging
/// everything before it.
#[test]
fn flipped_byte_in_a_record_of_an_older_chunk() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    for (chunk, first_seq) in [(0u64, 0u64), (1, 7)] {
        for rec in [0u64, 3, 6] {
            for byte in 0..REC {
                let file = format!("q{chunk:05}");
                let case = format!("{file} record {rec} byte {byte}");
                let tmp = tempfile::tempdir().unwrap();
                copy_dir(src.path(), tmp.path());
                let off = HEADER_LEN + rec * REC;
                // 0x80: in the length's top byte it makes a length over the 1 GiB limit;
                // see `damaged_length_field_does_not_allocate_what_it_claims` for lengths
                // under it.
                xor_byte(&tmp.path().join(&file), off + byte, 0x80);
                let before = first_seq + rec;
                expect_damage(tmp.path(), 0, before, &file, off, &case);
                // Nothing was acknowledged: the same again after a reopen.
                expect_damage(tmp.path(), 0, before, &file, off, &case);

                // Acknowledge everything before the damage, then reopen.
                let q: Queue<u64> = opts().open(tmp.path()).unwrap();
                for i in 0..before {
                    assert_eq!(q.get_nowait().unwrap(), item(i), "{case}");
                    q.task_done().unwrap();
                }
                drop(q);
                expect_damage(tmp.path(), before, before, &file, off, &case);
            }
        }
    }
}

/// A flipped byte in a chunk header: the newest chunk's is found at open, an older one's at
/// open or when the reader enters the chunk.
#[test]
fn flipped_byte_in_a_chunk_header() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    for (chunk, first_seq) in [(0u64, 0u64), (1, 7), (2, 14)] {
        for byte in 0..HEADER_LEN {
            let file = format!("q{chunk:05}");
            let case = format!("{file} header byte {byte}");
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(src.path(), tmp.path());
            xor_byte(&tmp.path().join(&file), byte, 0x20);
            let how = expect_damage(tmp.path(), 0, first_seq, &file, 0, &case);
            if chunk != 1 {
                assert_eq!(
                    how,
                    Reported::AtOpen,
                    "{case}: the head and tail are read at open"
                );
            }
        }
    }
}

#[test]
fn every_flipped_info_byte_is_reported() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    let len = fs::metadata(src.path().join("info")).unwrap().len();
    // No singles, attempts or delays: 116 bytes and the put-time marks, 16 each (one
    // or more, as the clock ticked while the items were put).
    assert!(
        len >= 132 && (len - 116).is_multiple_of(16),
        "info without single acknowledgements, attempts or delays: {len} bytes"
    );
    for byte in 0..len {
        for mask in [0x01, 0x80] {
            let case = format!("info byte {byte} ^ {mask:#04x}");
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(src.path(), tmp.path());
            xor_byte(&tmp.path().join("info"), byte, mask);
            // The header (100 bytes, its own CRC) or the lists after it (FORMAT.md §info).
            let at = if byte < 100 { 0 } else { 100 };
            assert_eq!(
                expect_damage(tmp.path(), 0, 0, "info", at, &case),
                Reported::AtOpen
            );
        }
    }
}

#[test]
fn info_of_random_bytes_or_wrong_length_is_reported() {
    let _guard = shared();
    let mut rng = XorShift(0xD15C_0000_0000_0001);
    for with_chunks in [true, false] {
        for len in [1usize, 35, 36, 37, 100, 4096] {
            let case = format!("info of {len} random bytes, chunk files: {with_chunks}");
            let tmp = tempfile::tempdir().unwrap();
            if with_chunks {
                build(tmp.path());
            }
            fs::write(tmp.path().join("info"), rng.bytes(len)).unwrap();
            assert_eq!(
                expect_damage(tmp.path(), 0, 0, "info", 0, &case),
                Reported::AtOpen
            );
        }
    }
}

#[test]
fn info_deleted_while_chunk_files_exist_is_missing_info_and_changes_nothing() {
    let _guard = shared();
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    fs::remove_file(tmp.path().join("info")).unwrap();
    let before = snapshot(tmp.path());
    for _ in 0..2 {
        match opts().open::<u64>(tmp.path()) {
            Err(e @ Error::MissingInfo { .. }) => {
                let Error::MissingInfo { path } = &e else {
                    unreachable!()
                };
                assert_eq!(path, tmp.path());
                assert!(e.is_corrupt());
                let msg = e.to_string();
                assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
                assert!(msg.contains("info"), "{msg}");
            }
            Err(e) => panic!("expected MissingInfo, got {e:?}"),
            Ok(q) => panic!("opened without info; len {}", q.len()),
        }
        assert_eq!(snapshot(tmp.path()), before, "the files were changed");
    }
    // Only the journal left (no chunk files): still not a new queue.
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    for no in 0..3 {
        fs::remove_file(tmp.path().join(format!("q{no:05}"))).unwrap();
    }
    fs::remove_file(tmp.path().join("info")).unwrap();
    assert!(tmp.path().join("acks").exists());
    let e = opts().open::<u64>(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::MissingInfo { .. }), "{e:?}");
}

#[test]
fn missing_chunk_files_are_reported() {
    let _guard = shared();
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    // (deleted chunk, the files the error may name)
    for (deleted, named) in [
        (1u64, &["q00001"][..]),
        (2, &["q00002"][..]),
        // The oldest: the head chunk is then q00001, which starts past the head.
        (0, &["q00000", "q00001"][..]),
    ] {
        let case = format!("q{deleted:05} deleted");
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        fs::remove_file(tmp.path().join(format!("q{deleted:05}"))).unwrap();
        let before = snapshot(tmp.path());
        match opts().open::<u64>(tmp.path()) {
            Err(e @ Error::Corrupt { .. }) => {
                let Error::Corrupt { path, offset, .. } = &e else {
                    unreachable!()
                };
                let name = path.file_name().unwrap().to_str().unwrap();
                assert!(named.contains(&name), "{case}: names {}", path.display());
                assert_corrupt_at(&e, name, *offset, &case);
                assert_eq!(*offset, 0, "{case}");
            }
            Err(e) => panic!("{case}: expected Corrupt, got {e:?}"),
            Ok(q) => panic!("{case}: opened; len {}", q.len()),
        }
        assert_eq!(snapshot(tmp.path()), before, "{case}: files changed");
    }
}

/// Items in the only chunk file, nothing acknowledged yet: deleting that file loses every
/// item, which must be reported, not answered with an empty queue.
#[test]
fn deleting_the_only_chunk_file_is_reported_not_an_empty_queue() {
    let _guard = shared();
    let tmp = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Queue::open(tmp.path()).unwrap();
    for i in 0..5 {
        q.put(&item(i)).unwrap();
    }
    q.close().unwrap();
    fs::remove_file(tmp.path().join("q00000")).unwrap();
    match Queue::<u64>::open(tmp.path()) {
        Err(e) => assert!(e.is_corrupt(), "expected a corruption error, got {e:?}"),
        Ok(q) => panic!(
            "the only chunk file, holding 5 unacknowledged items, was deleted, yet open \
             succeeded with an empty queue (len {}) instead of reporting the missing file",
            q.len()
        ),
    }
}

#[test]
fn chunk_file_of_random_bytes_is_reported() {
    let _guard = shared();
    let mut rng = XorShift(77);
    // Without info: not a diskq directory, nothing changed.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("q00000"), rng.bytes(500)).unwrap();
    let before = snapshot(tmp.path());
    let e = opts().open::<u64>(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::MissingInfo { .. }), "{e:?}");
    assert_eq!(snapshot(tmp.path()), before);

    // With a valid info and journal: the chunk's header is not a header.
    for len in [28usize, 29, 100, 5000] {
        let tmp = tempfile::tempdir().unwrap();
        let q: Queue<u64> = opts().open(tmp.path()).unwrap();
        q.put(&1).unwrap();
        q.close().unwrap();
        fs::write(tmp.path().join("q00000"), rng.bytes(len)).unwrap();
        let case = format!("q00000 of {len} random bytes");
        assert_eq!(
            expect_damage(tmp.path(), 0, 0, "q00000", 0, &case),
            Reported::AtOpen
        );
    }
    // The newest of three chunks replaced by random bytes.
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    fs::write(tmp.path().join("q00002"), rng.bytes(300)).unwrap();
    expect_damage(tmp.path(), 0, 14, "q00002", 0, "q00002 of random bytes");
}

#[test]
fn junk_files_are_ignored_and_left_alone() {
    let _guard = shared();
    let mut rng = XorShift(4242);
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let junk = [
        "notes.txt",
        "q0001",
        "q000001",
        "q00001.bak",
        "qabcde",
        "Q00001",
        "q-0001",
        "info.bak",
        "info~",
        "acks.old",
        "x",
        ".hidden",
    ];
    for name in junk {
        fs::write(tmp.path().join(name), rng.bytes(64)).unwrap();
    }
    fs::create_dir(tmp.path().join("junkdir")).unwrap();
    fs::write(tmp.path().join("junkdir").join("q00000"), b"not mine").unwrap();
    let junk_before: BTreeMap<_, _> = snapshot(tmp.path())
        .into_iter()
        .filter(|(n, _)| junk.contains(&n.as_str()))
        .collect();
    assert_eq!(junk_before.len(), junk.len());

    let q: Queue<u64> = opts().open(tmp.path()).unwrap();
    for i in 0..20 {
        assert_eq!(q.get_nowait().unwrap(), item(i));
        q.task_done().unwrap();
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
    for i in 20..40 {
        q.put(&item(i)).unwrap();
    }
    q.close().unwrap();
    let q: Queue<u64> = opts().open(tmp.path()).unwrap();
    for i in 20..40 {
        assert_eq!(q.get_nowait().unwrap(), item(i));
    }
    drop(q);
    let after = snapshot(tmp.path());
    for (name, bytes) in &junk_before {
        assert_eq!(after.get(name), Some(bytes), "junk file {name} was changed");
    }
    assert_eq!(
        fs::read(tmp.path().join("junkdir").join("q00000")).unwrap(),
        b"not mine"
    );
}

#[test]
fn queue_path_that_is_a_regular_file_is_an_io_error() {
    let _guard = shared();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"plain file").unwrap();
    for path in [file.clone(), file.join("sub")] {
        match Queue::<u64>::open(&path) {
            Err(e @ Error::Io { .. }) => {
                assert!(!e.is_corrupt());
                assert!(
                    e.to_string().contains("not-a-dir"),
                    "the message should name the path: {e}"
                );
                assert!(std::error::Error::source(&e).is_some());
            }
            Err(e) => panic!("{}: expected Error::Io, got {e:?}", path.display()),
            Ok(_) => panic!("{}: opened a queue in a regular file", path.display()),
        }
    }
    assert_eq!(fs::read(&file).unwrap(), b"plain file");
}

/// A snapshot of a queue that is still open (what `kill -9` leaves): 10 items put in one
/// chunk, 6 gotten and acknowledged, so the journal holds twelve entries: each get's
/// delivery and each acknowledgement (delivered = 1, acked = 1, ..., acked = 6).
fn journal_snapshot() -> (tempfile::TempDir, PathBuf) {
    let live = tempfile::tempdir().unwrap();
    let snap = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Queue::open(live.path()).unwrap();
    for i in 0..10 {
        q.put(&item(i)).unwrap();
    }
    for i in 0..6 {
        assert_eq!(q.get().unwrap(), item(i));
        q.task_done().unwrap();
    }
    copy_dir(live.path(), snap.path());
    drop(q);
    let acks = snap.path().join("acks");
    // The open journal is followed by the zero bytes reserved for later entries
    // (FORMAT.md §Preallocation); the tests below damage its last entries, so cut them.
    let bytes = fs::read(&acks).unwrap();
    assert!(
        bytes.len() >= ENTRIES * 12,
        "journal of {} bytes",
        bytes.len()
    );
    assert!(
        bytes[ENTRIES * 12..].iter().all(|&b| b == 0),
        "reserved bytes not zero"
    );
    fs::write(&acks, &bytes[..ENTRIES * 12]).unwrap();
    (snap, acks)
}

/// Entries in `journal_snapshot`'s journal.
const ENTRIES: usize = 12;
/// Where its last entry (the sixth acknowledgement) starts.
const LAST: u64 = (ENTRIES as u64 - 1) * 12;

/// Opens and checks that the items from sequence number `first` on come out, then Empty.
fn expect_items_from(dir: &Path, first: u64, case: &str) {
    let q: Queue<u64> = Queue::open(dir).unwrap_or_else(|e| panic!("{case}: open: {e}"));
    for i in first..10 {
        assert_eq!(q.get_nowait().unwrap(), item(i), "{case}");
    }
    assert!(q.get_nowait().unwrap_err().is_empty(), "{case}");
    for _ in first..10 {
        q.task_done().unwrap();
    }
    drop(q);
    let q: Queue<u64> = Queue::open(dir).unwrap();
    assert_eq!(q.len(), 0, "{case}: after acknowledging everything");
}

#[test]
fn journal_snapshot_recovers_the_acknowledged_count() {
    let _guard = shared();
    let (snap, _) = journal_snapshot();
    expect_items_from(snap.path(), 6, "intact journal");
}

#[test]
fn damaged_journal_entry_followed_by_valid_ones_is_reported() {
    let _guard = shared();
    let (src, _) = journal_snapshot();
    for entry in 0..ENTRIES as u64 - 1 {
        for byte in 0..12 {
            let case = format!("acks entry {entry} byte {byte}");
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(src.path(), tmp.path());
            xor_byte(&tmp.path().join("acks"), entry * 12 + byte, 0x08);
            let before = snapshot(tmp.path());
            let e = Queue::<u64>::open(tmp.path())
                .map(|q| q.len())
                .expect_err(&case);
            assert_corrupt_at(&e, "acks", entry * 12, &case);
            assert_eq!(snapshot(tmp.path()), before, "{case}: files changed");
        }
    }
}

#[test]
fn torn_or_damaged_final_journal_entry_is_recovered() {
    let _guard = shared();
    let (src, _) = journal_snapshot();
    // Cut inside the last entry: its acknowledgement is lost, item 5 comes again.
    for cut in LAST + 1..LAST + 12 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        let f = fs::OpenOptions::new()
            .write(true)
            .open(tmp.path().join("acks"))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        expect_items_from(tmp.path(), 5, &format!("acks cut to {cut}"));
    }
    // The last entry whole but damaged: the same.
    for byte in 0..12 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        xor_byte(&tmp.path().join("acks"), LAST + byte, 0x40);
        expect_items_from(tmp.path(), 5, &format!("last acks entry byte {byte}"));
    }
    // Trailing garbage after the good entries: a torn entry more.
    let mut rng = XorShift(99);
    for extra in 1..=12 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        let acks = tmp.path().join("acks");
        let mut b = fs::read(&acks).unwrap();
        b.extend_from_slice(&rng.bytes(extra));
        fs::write(&acks, b).unwrap();
        expect_items_from(tmp.path(), 6, &format!("{extra} garbage bytes after acks"));
    }
}

const CHILD_DIR_ENV: &str = "DISKQ_CRASH_CORRUPTION_CHILD_DIR";

/// Peak resident memory of this process, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Child role of `damaged_length_field_does_not_allocate_what_it_claims`: opens the queue
/// named by the environment, reads until an error, and reports on stdout. Does nothing in a
/// normal test run.
#[test]
fn child_reads_damaged_queue() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let before = peak_rss_kib();
    let mut items = 0;
    let outcome = match opts().open::<u64>(&dir) {
        Err(e) => e,
        Ok(q) => loop {
            match q.get_nowait() {
                Ok(v) => {
                    assert_eq!(v, item(items));
                    items += 1;
                }
                Err(e) => break e,
            }
        },
    };
    let after = peak_rss_kib();
    let (path, offset) = match &outcome {
        Error::Corrupt { path, offset, .. } => (path.display().to_string(), *offset),
        other => (format!("not Corrupt: {other:?}"), u64::MAX),
    };
    println!("\n@RESULT {items} {before} {after} {offset} {path}");
}

/// A damaged length field that claims a record of 256 MiB (under the format's 1 GiB limit)
/// in a file of a few hundred bytes. Recovery and `get` must report the damage without
/// allocating what the length claims: the bytes are not there.
#[test]
fn damaged_length_field_does_not_allocate_what_it_claims() {
    let _guard = exclusive();
    let mut too_much = Vec::new();
    // The newest chunk's damage lies before info's tail mark (the queue was closed), so
    // `get` finds it after the items of the older chunks.
    for (file, before_items) in [("q00002", 14u64), ("q00001", 7)] {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let path = tmp.path().join(file);
        let mut b = fs::read(&path).unwrap();
        let off = HEADER_LEN as usize;
        b[off..off + 4].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        fs::write(&path, b).unwrap();

        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                crate::common::test_path(module_path!(), "child_reads_damaged_queue").as_str(),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, tmp.path())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("@RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| {
                panic!(
                    "{file}: the child reported nothing ({}): {stdout}",
                    out.status
                )
            });
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        let items: u64 = f[0].parse().unwrap();
        let grew_kib = f[2].parse::<u64>().unwrap() - f[1].parse::<u64>().unwrap();
        let offset: u64 = f[3].parse().unwrap();
        assert!(f[4].ends_with(file), "{file}: {line}");
        assert_eq!(offset, HEADER_LEN, "{file}: {line}");
        assert_eq!(items, before_items, "{file}: {line}");
        if grew_kib >= 64 * 1024 {
            too_much.push(format!(
                "{file}: reading a {} byte chunk file whose record claims 256 MiB raised the \
                 peak memory by {} MiB",
                fs::metadata(&path).unwrap().len(),
                grew_kib / 1024
            ));
        }
    }
    assert!(too_much.is_empty(), "{}", too_much.join("\n"));
}

/// An empty or all-zero `info` is what a power loss leaves when it keeps the rename of
/// `info.tmp` and not its data (issue #15); no process crash does. `open` rebuilds it
/// from the chunk files and the journal, says so, and delivers the unacknowledged items
/// (and the acknowledged ones `info` alone held) again, in order.
#[test]
fn an_empty_or_zero_info_is_rebuilt() {
    let _guard = shared();
    for len in [0usize, 88, 4096] {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let q: Queue<u64> = opts().open(tmp.path()).unwrap();
        for _ in 0..5 {
            q.get_nowait().unwrap();
            q.task_done().unwrap();
        }
        let want: Vec<u64> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
        assert_eq!(want.len(), 15);
        q.close().unwrap(); // `info` alone holds the five acknowledgements
        fs::write(tmp.path().join("info"), vec![0u8; len]).unwrap();
        let q: Queue<u64> = opts().open(tmp.path()).unwrap();
        let r = q.recovery();
        assert!(r.info_rebuilt && r.after_restart, "{len}: {r:?}");
        let got: Vec<u64> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
        assert!(
            got.ends_with(&want),
            "{len}: {got:?} does not end with {want:?}"
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{len}: {got:?}");
        drop(q);
        let q: Queue<u64> = opts().open(tmp.path()).unwrap();
        assert!(
            !q.recovery().after_restart,
            "{len}: rebuilt once, then as any queue"
        );
    }
}
