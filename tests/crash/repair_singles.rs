//! `diskq::repair` and items acknowledged out of order (`Delivery::ack`, issue #15).
//!
//! FORMAT.md §Repair, step 3: a record whose sequence number is known is dropped when it is
//! below the acknowledgement head or among the single acknowledgements, read from a valid
//! `info` and from every valid single entry of the journal, even when `info` is damaged.
//! The rebuilt queue renumbers from 0, so its `info` holds no singles. On `SimStorage`:
//! singles only in `info` (a clean close) with records damaged before and after them;
//! singles only in the journal (a process crash) with `info` damaged, with and without the
//! journal's head entries; singles in both; a single after damage in its chunk (kept: at
//! least once); and a healthy queue with singles (left alone, counted as acknowledged).

use diskq::storage::{Crash, SimStorage};
use diskq::{AckState, Delivery, Options, Queue, RepairReport, repair_on};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/sim/q";
const HEADER_LEN: usize = 28;
/// A `Queue<u64>` record: 8-byte frame header and 8-byte payload.
const REC: usize = 16;
/// Length of `info` without singles (format version 3), and of a journal entry.
const INFO_LEN: usize = 116;
/// The count of single acknowledgements in an `info` (FORMAT.md §info, offset 100).
fn singles_in_info(info: &[u8]) -> u32 {
    u32::from_le_bytes(info[100..104].try_into().unwrap())
}
const ENTRY: usize = 12;

fn opts() -> Options {
    Options::new().chunk_size(4).journal_limit(1 << 20)
}

fn open(st: &SimStorage) -> Queue<u64> {
    opts().open_on(Arc::new(st.clone()), DIR).unwrap()
}

/// The value of item `i`: not `i` itself, so that a record read at the wrong place cannot
/// pass for the right one.
fn item(i: u64) -> u64 {
    i * 7919 + 13
}

fn items(seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
    seqs.into_iter().map(item).collect()
}

fn file(st: &SimStorage, name: &str) -> Vec<u8> {
    st.file(&Path::new(DIR).join(name)).unwrap()
}

fn put_file(st: &SimStorage, name: &str, bytes: &[u8]) {
    st.put_file(&Path::new(DIR).join(name), bytes);
}

/// Damages the payload of record `index` of chunk file `name`.
fn damage_record(st: &SimStorage, name: &str, index: usize) {
    let mut b = file(st, name);
    b[HEADER_LEN + index * REC + 10] ^= 0x5a;
    put_file(st, name, &b);
}

/// Puts items `0..n`, gets the first `gotten` as deliveries, acknowledges the first `fifo`
/// of them with `task_done` and then `singles` one by one; the rest stay unacknowledged.
fn fill_and_acknowledge(q: &Queue<u64>, n: u64, gotten: u64, fifo: u64, singles: &[u64]) {
    for i in 0..n {
        q.put(&item(i)).unwrap();
    }
    let mut held: Vec<Delivery<'_, u64>> = (0..gotten).map(|_| q.get_delivery().unwrap()).collect();
    for _ in 0..fifo {
        q.task_done().unwrap();
    }
    held.retain(|d| singles.contains(&d.seq()));
    assert_eq!(
        held.len(),
        singles.len(),
        "every single is gotten after the head"
    );
    for d in held {
        d.ack().unwrap();
    }
}

fn repair(st: &SimStorage) -> RepairReport {
    repair_on(Arc::new(st.clone()), Path::new(DIR)).unwrap()
}

/// Everything the queue delivers, without acknowledging anything.
fn drain(st: &SimStorage) -> Vec<u64> {
    let q = open(st);
    let mut out = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(v) => out.push(v),
            Err(e) if e.is_empty() => break,
            Err(e) => panic!("get after repair failed: {e}"),
        }
    }
    out
}

/// The single entries of the journal (bit 63 set, FORMAT.md §acks), valid or not.
fn journal_singles(st: &SimStorage) -> Vec<u64> {
    let b = file(st, "acks");
    b.chunks_exact(ENTRY)
        .map(|e| u64::from_le_bytes(e[..8].try_into().unwrap()))
        .filter(|v| v >> 63 == 1)
        .map(|v| v & !(1 << 63))
        .collect()
}

/// The rebuilt queue: an `info` of acked 0 without singles, an empty journal, and a
/// second repair finds it healthy and changes nothing.
fn assert_rebuilt_without_singles(st: &SimStorage, records: u64) {
    let info = file(st, "info");
    assert_eq!(info.len(), INFO_LEN, "the rebuilt info holds no singles");
    assert_eq!(&info[16..24], &[0; 8], "acked 0");
    assert_eq!(&info[100..104], &[0; 4], "n 0");
    assert!(file(st, "acks").is_empty());
    let again = repair(st);
    assert!(!again.rebuilt && !again.found_damage(), "{again}");
    assert_eq!(again.records_salvaged, records);
    assert_eq!(again.records_acknowledged, 0);
}

/// Singles only in `info`, after a clean close; records damaged in a chunk before theirs
/// and after them, in their last chunk and the next. Fails without the fix: the singles
/// come back.
#[test]
fn singles_in_info_are_dropped_around_damage() {
    let st = SimStorage::new();
    let q = open(&st);
    // Chunks of 4: q00000 holds items 0..4, ..., q00004 items 16..20.
    fill_and_acknowledge(&q, 20, 18, 1, &[5, 6, 10, 13]);
    q.close().unwrap();
    let st = st.after_crash(Crash::Process);
    assert!(file(&st, "acks").iter().all(|&b| b == 0), "journal emptied");
    assert_eq!(
        singles_in_info(&file(&st, "info")),
        4,
        "four singles in info"
    );
    damage_record(&st, "q00000", 2); // item 2, before every single
    damage_record(&st, "q00003", 3); // item 15, after single 13 in its chunk
    damage_record(&st, "q00004", 0); // item 16

    let r = repair(&st);
    assert!(r.rebuilt && r.found_damage(), "{r}");
    assert_eq!(r.acknowledgements, AckState::Known { acked: 1 });
    assert_eq!(r.damaged.len(), 3, "{r}");
    // Item 0 (below the head) and the four singles.
    assert_eq!(r.records_acknowledged, 5, "{r}");
    assert_eq!(r.records_salvaged, 12, "{r}");
    assert!(
        r.to_string().contains("5 dropped as already acknowledged"),
        "{r}"
    );
    let want = items((1..20).filter(|i| ![2, 5, 6, 10, 13, 15, 16].contains(i)));
    assert_eq!(drain(&st), want, "a single came back or an item was lost");
    assert_rebuilt_without_singles(&st, 12);
}

/// A process crash with the singles only in the journal, and `info` damaged: the journal
/// gives a lower bound of the head, and its singles are evidence as good.
#[test]
fn singles_in_the_journal_are_dropped_when_info_is_damaged() {
    let st = SimStorage::new();
    let q = open(&st);
    fill_and_acknowledge(&q, 16, 14, 2, &[5, 6, 9]);
    let st = st.after_crash(Crash::Process);
    drop(q);
    assert_eq!(journal_singles(&st), [5, 6, 9]);
    assert_eq!(singles_in_info(&file(&st, "info")), 0, "no singles in info");
    put_file(&st, "info", &[0xee; INFO_LEN]);
    damage_record(&st, "q00001", 3); // item 7, after singles 5 and 6 in their chunk

    let r = repair(&st);
    assert_eq!(r.acknowledgements, AckState::AtLeast { acked: 2 });
    assert_eq!(
        r.records_acknowledged, 5,
        "items 0 and 1, and the singles: {r}"
    );
    assert_eq!(r.records_salvaged, 10, "{r}");
    let want = items((2..16).filter(|i| ![5, 6, 7, 9].contains(i)));
    assert_eq!(drain(&st), want);
    assert_rebuilt_without_singles(&st, 10);
}

/// As above, with every head entry of the journal damaged too: the singles alone are
/// still known (a lower bound of 0 for the head), the items FIFO-acknowledged come back.
#[test]
fn singles_alone_in_a_damaged_journal_are_dropped() {
    let st = SimStorage::new();
    let q = open(&st);
    fill_and_acknowledge(&q, 16, 14, 2, &[5, 6, 9]);
    let st = st.after_crash(Crash::Process);
    drop(q);
    put_file(&st, "info", b"garbage");
    let mut journal = file(&st, "acks");
    let mut heads = 0;
    for e in journal.chunks_exact_mut(ENTRY) {
        if e.iter().any(|&b| b != 0) && e[7] >> 7 == 0 {
            e[0] ^= 0x5a;
            heads += 1;
        }
    }
    assert!(heads >= 2, "{heads} head entries");
    put_file(&st, "acks", &journal);

    let r = repair(&st);
    assert_eq!(r.acknowledgements, AckState::AtLeast { acked: 0 });
    assert!(r.to_string().contains("partly known"), "{r}");
    assert_eq!(r.records_acknowledged, 3, "{r}");
    assert_eq!(r.records_salvaged, 13, "{r}");
    let want = items((0..16).filter(|i| ![5, 6, 9].contains(i)));
    assert_eq!(drain(&st), want);
    assert_rebuilt_without_singles(&st, 13);
}

/// Singles in `info` (a clean close) and more in the journal (then a process crash):
/// both sets are dropped.
#[test]
fn singles_in_info_and_journal_are_both_dropped() {
    let st = SimStorage::new();
    let q = open(&st);
    fill_and_acknowledge(&q, 16, 10, 1, &[4, 7]);
    q.close().unwrap();
    let q = open(&st);
    // Redelivered from the head, the singles skipped: 1, 2, 3, 5, 6, 8, 9, 10.
    let held: Vec<Delivery<'_, u64>> = (0..8).map(|_| q.get_delivery().unwrap()).collect();
    let seqs: Vec<u64> = held.iter().map(Delivery::seq).collect();
    assert_eq!(seqs, [1, 2, 3, 5, 6, 8, 9, 10]);
    for d in held.into_iter().filter(|d| d.seq() >= 9) {
        d.ack().unwrap();
    }
    let st = st.after_crash(Crash::Process);
    drop(q);
    assert_eq!(journal_singles(&st), [9, 10]);
    damage_record(&st, "q00002", 3); // item 11

    let r = repair(&st);
    assert_eq!(r.acknowledgements, AckState::Known { acked: 1 });
    assert_eq!(r.records_acknowledged, 5, "item 0 and four singles: {r}");
    let want = items((1..16).filter(|i| ![4, 7, 9, 10, 11].contains(i)));
    assert_eq!(drain(&st), want);
    assert_rebuilt_without_singles(&st, 10);
}

/// A single after damage in its chunk has an unknown sequence number: kept, at least once.
#[test]
fn a_single_after_damage_in_its_chunk_is_kept() {
    let st = SimStorage::new();
    let q = open(&st);
    fill_and_acknowledge(&q, 8, 8, 0, &[3, 6]);
    q.close().unwrap();
    let st = st.after_crash(Crash::Process);
    damage_record(&st, "q00000", 1); // item 1: item 3 after it is of unknown seq

    let r = repair(&st);
    assert_eq!(r.acknowledgements, AckState::Known { acked: 0 });
    assert_eq!(r.records_acknowledged, 1, "only item 6: {r}");
    assert_eq!(drain(&st), items([0, 2, 3, 4, 5, 7]));
    assert_rebuilt_without_singles(&st, 6);
}

/// A healthy queue with singles is left alone; the report counts them as acknowledged
/// records still on disk, not as waiting ones, as `open` does.
#[test]
fn healthy_queue_with_singles_is_left_alone() {
    let st = SimStorage::new();
    let q = open(&st);
    fill_and_acknowledge(&q, 12, 10, 2, &[4, 5, 9]);
    q.close().unwrap();
    let st = st.after_crash(Crash::Process);
    let info = file(&st, "info");

    let r = repair(&st);
    assert!(!r.rebuilt && !r.found_damage(), "{r}");
    assert_eq!(r.acknowledgements, AckState::Known { acked: 2 });
    assert_eq!(
        r.records_acknowledged, 5,
        "items 0 and 1 and the singles: {r}"
    );
    assert_eq!(r.records_salvaged, 7, "{r}");
    assert_eq!(file(&st, "info"), info, "nothing changed");
    assert_eq!(open(&st).len(), 7);
    assert_eq!(drain(&st), items([2, 3, 6, 7, 8, 10, 11]));
}
