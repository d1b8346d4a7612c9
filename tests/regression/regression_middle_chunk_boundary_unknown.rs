//! Found by the `open_dir` fuzz target on 2026-11-22 (at 6caa177; it fails the same way
//! at 69faeb4): `fuzz/regressions/open_dir/extra-records-in-a-middle-chunk`.
//!
//! What broke: `open` reads the headers of the two oldest and the two newest chunks only,
//! and records where the others start when the reader enters them. `Engine::peek` stops
//! the reader at the end of its chunk only when it knows where the next chunk starts.
//! With `q00000` holding more records than the next chunk's header leaves room for, a
//! reader in `q00000` whose next chunk's start was not recorded went on reading `q00000`:
//! `get` returned `q00000`'s extra records as the items that the next chunks hold, wrong
//! items under their numbers, and only noticed something on entering the next chunk. The
//! fuzz input had four chunks; here, five, so that the chunk after the reader's is one
//! `open` did not read. What should happen: the reader learns where the next chunk starts
//! (one header read) before it delivers a record of its chunk; records past that point
//! are `Error::Corrupt`, never items.

use diskq::{Error, Options, Queue};
use std::sync::Arc;

use crate::common::hand_built::{DIR, chunk, storage};

/// Chunks of one-byte items from `first`, the newest last.
fn dir(chunks: &[(u64, &[u8])]) -> diskq::storage::SimStorage {
    let built: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(no, (first, items))| chunk(no as u64, *first, items))
        .collect();
    storage(&built)
}

#[test]
fn files_built_here_are_well_formed() {
    let st = dir(&[(0, b"AB"), (2, b"CD"), (4, b"EF"), (6, b"GH"), (8, b"IJ")]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(q.len(), 10);
    for item in b"ABCDEFGHIJ" {
        assert_eq!(q.get_nowait().unwrap(), vec![*item]);
    }
}

#[test]
fn extra_records_in_a_chunk_are_not_delivered_as_the_next_chunks_items() {
    // q00001 holds C, D and then x, y, z, which its successor's header (item 4) leaves no
    // room for. open reads the headers of q00000, q00001, q00003 and q00004, not q00002.
    let st = dir(&[
        (0, b"AB"),
        (2, b"CDxyz"),
        (4, b"EF"),
        (6, b"GH"),
        (8, b"IJ"),
    ]);
    let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st), DIR) {
        Ok(q) => q,
        Err(Error::Corrupt { path, .. }) if !path.ends_with("info") => return,
        Err(e) => panic!("{e}"),
    };
    for item in b"ABCD" {
        assert_eq!(q.get_nowait().unwrap(), vec![*item]);
    }
    // Item 4 is E (q00002's first record); x, y and z are not items.
    match q.get_nowait() {
        Err(e) => assert!(e.is_corrupt(), "{e}"),
        Ok(item) => assert_eq!(item, b"E", "a record of q00001 was delivered as item 4"),
    }
}

#[test]
fn a_chunk_that_starts_before_the_one_the_reader_is_in_ends_is_corrupt() {
    // q00002 claims to start at item 3, inside q00001 (items 2 to 3): overlapping.
    let st = dir(&[(0, b"AB"), (2, b"CD"), (3, b"EF"), (5, b"GH"), (7, b"IJ")]);
    let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st), DIR) {
        Ok(q) => q,
        Err(Error::Corrupt { path, .. }) if !path.ends_with("info") => return,
        Err(e) => panic!("{e}"),
    };
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(item) => got.push(item[0]),
            Err(e) => {
                assert!(e.is_corrupt(), "{e}");
                break;
            }
        }
    }
    // Whatever came out is a prefix of what the chunks hold in order, up to where they
    // stop agreeing: A, B, C (item 2) at most; D is item 3 in q00001 and E in q00002.
    assert!(
        b"ABC".starts_with(&got),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
