//! Found by the `open_dir` fuzz target in CI's smoke run on 2bc3371
//! (`fuzz/regressions/open_dir/extra-records-skipped-then-deleted`, hand-minimized from a
//! 108-byte find).
//!
//! What broke: FORMAT.md says an extra record between two chunks "is caught because
//! chunk n+1 must start exactly where chunk n ends", but the reader moves on to the next
//! chunk as soon as `read` equals that chunk's `first_seq` (`Engine::peek`), without
//! checking that the current chunk has no records left. With `q00000` holding items A, B,
//! C, E from item 0 and the newest `q00001` claiming to start at item 2 with D, `get`
//! returns A, B, D: C and E, valid records that their chunk's header places at items 2
//! and 3, are skipped without an error; once D is acknowledged, `q00000` is deleted with
//! them. What should happen: leaving a chunk with valid records left over is
//! `Error::Corrupt` (or `open` refuses the directory), never a silent skip.

use diskq::{Error, Options, Queue};
use std::path::Path;
use std::sync::Arc;

use crate::common::hand_built::{DIR, chunk, storage};

#[test]
fn files_built_here_are_well_formed() {
    let st = storage(&[chunk(0, 0, b"ABCE"), chunk(1, 4, b"D")]);
    let q: Queue<Vec<u8>> = Options::new().open_on(Arc::new(st), DIR).unwrap();
    assert_eq!(q.len(), 5);
    for item in b"ABCED" {
        assert_eq!(q.get_nowait().unwrap(), vec![*item]);
    }
}

#[test]
fn extra_records_at_the_end_of_a_chunk_are_reported_not_skipped() {
    let st = storage(&[chunk(0, 0, b"ABCE"), chunk(1, 2, b"D")]);
    let q: Queue<Vec<u8>> = match Options::new().open_on(Arc::new(st.clone()), DIR) {
        Ok(q) => q,
        Err(Error::Corrupt { path, .. }) if !path.ends_with("info") => return,
        Err(e) => panic!("{e}"),
    };
    for item in b"AB" {
        assert_eq!(q.get_nowait().unwrap(), vec![*item]);
        q.task_done().unwrap();
    }
    match q.get_nowait() {
        Err(e) => assert!(e.is_corrupt(), "{e}"),
        Ok(item) => {
            assert_eq!(item, b"C", "q00000's records C and E were skipped");
        }
    }
    let _ = q.task_done();
    q.close().unwrap();
    assert!(
        st.file(&Path::new(DIR).join("q00000")).is_some(),
        "q00000 was deleted with two records nobody got or acknowledged"
    );
}
