//! Disk space: acknowledged chunk files are deleted.
//!
//! 20,000 `u64` items with chunk size 100 (200 chunk files' worth), put and consumed with
//! `get` + `task_done` in several patterns (all puts first; interleaved one by one; in
//! bursts; with a close and reopen between putting and consuming, so the reader meets chunks
//! it knows only by name): afterwards at most two chunk files are left, both while the queue
//! is open and after close + reopen, and the directory holds nothing else of size. While
//! consuming, the chunk files on disk never exceed what the unacknowledged items need plus
//! two. The `acks` journal stays bounded even when no chunk rollover checkpoints it.

use diskq::{Options, Queue};
use std::fs;
use std::path::Path;

const N: u64 = 20_000;
const CHUNK: usize = 100;

fn chunk_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.strip_prefix('q')
                .is_some_and(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// Bytes of the queue's files, but the 1 MiB kept back for draining a full disk
/// (`reserve`), which is checked to be no larger.
fn dir_bytes(dir: &Path) -> u64 {
    let reserve = fs::metadata(dir.join("reserve")).map_or(0, |m| m.len());
    assert!(reserve <= 1 << 20, "reserve is {reserve} bytes");
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "reserve")
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn open(dir: &Path) -> Queue<u64> {
    Options::new().chunk_size(CHUNK).open(dir).unwrap()
}

/// Gets and acknowledges `n` items, which must be `next..next + n`; checks the chunk file
/// count against the unacknowledged items every 50 items.
fn consume(q: &Queue<u64>, dir: &Path, next: &mut u64, n: u64) {
    for _ in 0..n {
        assert_eq!(q.get_nowait().unwrap(), *next);
        q.task_done().unwrap();
        *next += 1;
        if (*next).is_multiple_of(50) {
            let need = q.unfinished().div_ceil(CHUNK);
            let have = chunk_count(dir);
            assert!(
                have <= need + 2,
                "after item {next}: {have} chunk files for {} unacknowledged items",
                q.unfinished()
            );
        }
    }
}

fn assert_space_reclaimed(q: Queue<u64>, dir: &Path, case: &str) {
    assert_eq!(q.len(), 0, "{case}");
    assert_eq!(q.unfinished(), 0, "{case}");
    assert!(
        chunk_count(dir) <= 2,
        "{case}: {} chunk files left while open",
        chunk_count(dir)
    );
    q.close().unwrap();
    assert!(
        chunk_count(dir) <= 2,
        "{case}: {} chunk files left after close",
        chunk_count(dir)
    );
    let q = open(dir);
    assert_eq!(q.len(), 0, "{case}: after reopen");
    assert!(
        chunk_count(dir) <= 2,
        "{case}: {} chunk files after reopen",
        chunk_count(dir)
    );
    assert!(
        dir_bytes(dir) < 64 * 1024,
        "{case}: {} bytes left in the directory",
        dir_bytes(dir)
    );
    // Still a working queue.
    q.put(&N).unwrap();
    assert_eq!(q.get_nowait().unwrap(), N);
    q.task_done().unwrap();
    drop(q);
    assert!(chunk_count(dir) <= 2, "{case}: at the end");
}

#[test]
fn put_all_then_consume_all() {
    let tmp = tempfile::tempdir().unwrap();
    let q = open(tmp.path());
    for i in 0..N {
        q.put(&i).unwrap();
    }
    assert_eq!(chunk_count(tmp.path()), (N as usize).div_ceil(CHUNK));
    let mut next = 0;
    consume(&q, tmp.path(), &mut next, N);
    assert_space_reclaimed(q, tmp.path(), "put all, consume all");
}

#[test]
fn interleaved_put_get_task_done() {
    let tmp = tempfile::tempdir().unwrap();
    let q = open(tmp.path());
    let mut next = 0;
    for i in 0..N {
        q.put(&i).unwrap();
        consume(&q, tmp.path(), &mut next, 1);
        assert!(chunk_count(tmp.path()) <= 2, "after item {i}");
    }
    assert_space_reclaimed(q, tmp.path(), "interleaved");
}

#[test]
fn bursts_with_acknowledgement_lagging_behind_gets() {
    let tmp = tempfile::tempdir().unwrap();
    let q = open(tmp.path());
    let mut put = 0;
    let mut got = 0;
    let mut acked = 0;
    let mut burst = 1;
    while acked < N {
        let n = burst.min(N - put);
        for _ in 0..n {
            q.put(&put).unwrap();
            put += 1;
        }
        // Get all but a few, acknowledge fewer still.
        while got + 3 < put || (put == N && got < N) {
            assert_eq!(q.get_nowait().unwrap(), got);
            got += 1;
        }
        let upto = if put == N { N } else { got.saturating_sub(40) };
        while acked < upto {
            q.task_done().unwrap();
            acked += 1;
        }
        let need = q.unfinished().div_ceil(CHUNK);
        assert!(chunk_count(tmp.path()) <= need + 2, "after {put} puts");
        burst = burst * 3 % 997 + 1;
    }
    assert_space_reclaimed(q, tmp.path(), "bursts");
}

#[test]
fn put_all_close_reopen_consume_all() {
    let tmp = tempfile::tempdir().unwrap();
    let q = open(tmp.path());
    for i in 0..N {
        q.put(&i).unwrap();
    }
    q.close().unwrap();
    let q = open(tmp.path());
    let mut next = 0;
    // Half, then reopen again in the middle of a chunk.
    consume(&q, tmp.path(), &mut next, N / 2 + 37);
    q.close().unwrap();
    let q = open(tmp.path());
    assert_eq!(q.len() as u64, N - next);
    let rest = N - next;
    consume(&q, tmp.path(), &mut next, rest);
    assert_space_reclaimed(q, tmp.path(), "with reopens");
}

/// One chunk that never fills: no rollover checkpoints the journal, so it must be folded
/// by itself; the chunk file is the writer's and stays.
#[test]
fn journal_stays_bounded_without_rollovers() {
    let tmp = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new()
        .chunk_size(1_000_000)
        .open(tmp.path())
        .unwrap();
    for i in 0..N {
        q.put(&i).unwrap();
        assert_eq!(q.get_nowait().unwrap(), i);
        q.task_done().unwrap();
        if i.is_multiple_of(1000) {
            let acks = fs::metadata(tmp.path().join("acks")).unwrap().len();
            // Folded at 2 MiB; the file may hold up to 1 MiB more of zero bytes
            // reserved for more entries (FORMAT.md §Preallocation: windows double up to
            // 1 MiB).
            assert!(
                acks <= (2048 + 1024) * 1024 + 64,
                "acks journal is {acks} bytes"
            );
        }
    }
    assert_eq!(chunk_count(tmp.path()), 1);
    q.close().unwrap();
    assert_eq!(fs::metadata(tmp.path().join("acks")).unwrap().len(), 0);
}

/// Bytes of every file in the directory, the reserve included.
fn footprint(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The most a drained queue keeps: a chunk of up to 4 MiB, the 1 MiB reserve, and small
/// files.
const FOOTPRINT: u64 = 5 << 20;

/// 4 KiB items past the 64 MiB chunk limit, then drained: whatever chunk held them, the
/// directory is back under the footprint bound, while open (after the last
/// acknowledgement reached the journal), after close and after reopen.
#[test]
fn a_drained_queue_of_large_chunks_frees_its_disk() {
    for level in [
        diskq::Durability::Written,
        diskq::Durability::Synced,
        diskq::Durability::Buffered,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(level);
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        let n = (70 << 20) / 4096;
        let batch: Vec<Vec<u8>> = (0..256u32).map(|i| vec![i as u8; 4096]).collect();
        for _ in 0..n / batch.len() {
            q.put_many(&batch).unwrap();
        }
        assert!(
            chunk_count(dir.path()) >= 2,
            "{level:?}: chunks rolled over"
        );
        assert!(footprint(dir.path()) > 64 << 20);
        while let Ok(got) = q.get_many_timeout(1000, std::time::Duration::ZERO) {
            q.task_done_n(got.len()).unwrap();
        }
        assert_eq!(q.unfinished(), 0);
        if level == diskq::Durability::Buffered {
            // Acknowledgements not yet journaled: close alone must free the disk.
            let big = footprint(dir.path());
            q.close().unwrap();
            let closed = footprint(dir.path());
            assert!(
                closed <= FOOTPRINT,
                "{level:?}: {closed} bytes after close ({big} before)"
            );
            continue;
        }
        q.flush().unwrap();
        let open_bytes = footprint(dir.path());
        println!("{level:?}: {open_bytes} bytes when drained");
        q.close().unwrap();
        let closed_bytes = footprint(dir.path());
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        assert!(q.is_empty());
        drop(q);
        for (when, bytes) in [("open", open_bytes), ("closed", closed_bytes)] {
            assert!(
                bytes <= FOOTPRINT,
                "{level:?}: {bytes} bytes on disk when drained and {when}"
            );
        }
        assert!(
            footprint(dir.path()) <= FOOTPRINT,
            "{level:?}: after reopen"
        );
    }
}
