//! Chunk files end at `chunk_size` records or before a record that would take them past
//! the byte limit (64 MiB; tests set a small one with the hidden `chunk_bytes`), whichever
//! comes first, and a record larger than the limit gets a chunk of its own. Checked at
//! every durability level through the chunk files' sizes after close, and by reading
//! every item back, in order, after a reopen with other limits.

use diskq::{Durability, Options, Queue};
use std::fs;
use std::path::Path;

/// Frame header (8) + bincode's length of a `Vec<u8>` (8) + the bytes.
fn frame_len(payload: usize) -> u64 {
    16 + payload as u64
}

/// Chunk header bytes (FORMAT.md §Chunks).
const HEADER: u64 = 28;

/// Sizes of the chunk files, oldest first.
fn chunk_sizes(dir: &Path) -> Vec<u64> {
    let mut chunks: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            let is_chunk = name
                .strip_prefix('q')
                .is_some_and(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit()));
            is_chunk.then(|| (name, e.metadata().unwrap().len()))
        })
        .collect();
    chunks.sort();
    chunks.into_iter().map(|(_, len)| len).collect()
}

fn item(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

#[test]
fn chunks_end_before_the_byte_limit() {
    for d in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        // 100-byte items: 116-byte frames, 8 of which fit after the header in 1,000 bytes.
        let opts = Options::new()
            .chunk_size(1000)
            .chunk_bytes(1000)
            .durability(d);
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        for i in 0..50 {
            q.put(&item(i, 100)).unwrap();
        }
        let batch: Vec<Vec<u8>> = (50..100).map(|i| item(i, 100)).collect();
        q.put_many(&batch).unwrap();
        drop(q);

        let per_chunk = (1000 - HEADER) / frame_len(100);
        assert_eq!(per_chunk, 8);
        let sizes = chunk_sizes(dir.path());
        let full = HEADER + per_chunk * frame_len(100);
        assert_eq!(sizes.len(), 13, "{d:?}: {sizes:?}");
        assert!(sizes[..12].iter().all(|&s| s == full), "{d:?}: {sizes:?}");
        assert_eq!(sizes[12], HEADER + 4 * frame_len(100), "{d:?}");

        let q: Queue<Vec<u8>> = Options::new().durability(d).open(dir.path()).unwrap();
        for i in 0..100 {
            assert_eq!(q.get().unwrap(), item(i, 100), "{d:?}: item {i}");
        }
        assert_eq!(q.len(), 0);
    }
}

#[test]
fn the_record_count_still_ends_chunks_first_when_it_is_lower() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new()
        .chunk_size(3)
        .chunk_bytes(1000)
        .open(dir.path())
        .unwrap();
    for i in 0..10 {
        q.put(&item(i, 100)).unwrap();
    }
    drop(q);
    let sizes = chunk_sizes(dir.path());
    let three = HEADER + 3 * frame_len(100);
    assert_eq!(sizes, [three, three, three, HEADER + frame_len(100)]);
}

#[test]
fn an_item_larger_than_the_limit_gets_a_chunk_of_its_own() {
    for d in LEVELS {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().chunk_bytes(1000).durability(d);
        let q: Queue<Vec<u8>> = opts.open(dir.path()).unwrap();
        let items = [item(0, 10), item(1, 5000), item(2, 10), item(3, 20)];
        q.put(&items[0]).unwrap();
        q.put(&items[1]).unwrap();
        q.put_many(&items[2..]).unwrap();
        drop(q);
        assert_eq!(
            chunk_sizes(dir.path()),
            [
                HEADER + frame_len(10),
                HEADER + frame_len(5000),
                HEADER + frame_len(10) + frame_len(20)
            ],
            "{d:?}"
        );
        let q: Queue<Vec<u8>> = Options::new().durability(d).open(dir.path()).unwrap();
        assert_eq!(q.get_many(10).unwrap(), items, "{d:?}");
    }
}

#[test]
fn a_lower_limit_after_reopen_closes_the_current_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new().open(dir.path()).unwrap();
    for i in 0..20 {
        q.put(&item(i, 100)).unwrap();
    }
    drop(q);
    assert_eq!(chunk_sizes(dir.path()), [HEADER + 20 * frame_len(100)]);

    let q: Queue<Vec<u8>> = Options::new().chunk_bytes(1000).open(dir.path()).unwrap();
    for i in 20..30 {
        q.put(&item(i, 100)).unwrap();
    }
    drop(q);
    let sizes = chunk_sizes(dir.path());
    assert_eq!(
        sizes,
        [
            HEADER + 20 * frame_len(100),
            HEADER + 8 * frame_len(100),
            HEADER + 2 * frame_len(100)
        ]
    );
    let q: Queue<Vec<u8>> = Options::new().open(dir.path()).unwrap();
    for i in 0..30 {
        assert_eq!(q.get().unwrap(), item(i, 100), "item {i}");
    }
}

#[test]
fn the_default_limits_hold_a_hundred_thousand_small_items_per_chunk() {
    assert_eq!(diskq::DEFAULT_CHUNK_SIZE, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new().open(dir.path()).unwrap();
    let items: Vec<u64> = (0..250_000).collect();
    q.put_many(&items).unwrap();
    drop(q);
    // u64 items: 16-byte frames.
    let full = HEADER + 100_000 * 16;
    assert_eq!(chunk_sizes(dir.path()), [full, full, HEADER + 50_000 * 16]);
}
