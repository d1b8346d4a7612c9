//! FORMAT.md's worked example, byte for byte: the hex blocks in FORMAT.md must be exactly
//! what this build writes for the scenario the document describes.

use diskq::storage::SimStorage;
use diskq::{Options, Queue};
use std::path::Path;
use std::sync::Arc;

/// The bytes of the ```` ```hex <name> ```` block of FORMAT.md (hex before each `|`).
fn block(doc: &str, name: &str) -> Vec<u8> {
    let start = doc
        .find(&format!("```hex {name}\n"))
        .unwrap_or_else(|| panic!("FORMAT.md has no hex block named {name}"));
    let body = doc[start..].split_once('\n').unwrap().1;
    let body = &body[..body.find("```").unwrap()];
    body.lines()
        .flat_map(|line| line.split('|').next().unwrap().split_whitespace())
        .map(|tok| u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("bad hex {tok:?}")))
        .collect()
}

#[test]
fn format_md_hex_example_matches_the_files_written() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("FORMAT.md")).unwrap();
    // The simulated storage, whose boot id is 1: `info` records the machine's boot.
    let st = SimStorage::new();
    let dir = Path::new("/sim/q");
    // A clock set by hand: `info` records when items were written (its `marks`).
    let clock = diskq::ManualClock::new(1_700_000_000_000);
    let open = || -> Queue<String> {
        Options::new()
            .clock(Arc::new(clock.clone()))
            .open_on(Arc::new(st.clone()), dir)
            .unwrap()
    };
    let q = open();
    q.put(&"hello".to_string()).unwrap();
    q.put(&"world".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "hello");
    q.task_done().unwrap();

    let read = |f: &str| st.file(&dir.join(f)).unwrap();
    // While the queue is open, its appended files continue with zero bytes reserved for
    // later appends (FORMAT.md §Preallocation): the documented bytes, then only zeros.
    let open_file = |f: &str| {
        let (bytes, doc_bytes) = (read(f), block(&doc, f));
        assert!(
            bytes.len() >= doc_bytes.len(),
            "{f}: shorter than documented"
        );
        assert!(
            bytes[doc_bytes.len()..].iter().all(|&b| b == 0),
            "{f}: not zero after the documented bytes"
        );
        assert_eq!(bytes[..doc_bytes.len()], doc_bytes, "{f}: {}", hex(&bytes));
    };
    open_file("q00000");
    open_file("acks");

    q.close().unwrap();
    assert_eq!(
        read("info"),
        block(&doc, "info"),
        "info: {}",
        hex(&read("info"))
    );
    assert_eq!(
        read("acks"),
        Vec::<u8>::new(),
        "the checkpoint empties the journal"
    );
    assert_eq!(
        read("q00000"),
        block(&doc, "q00000"),
        "close leaves the chunk alone"
    );

    // The example's state recovers: "world" is next.
    let q = open();
    assert_eq!(q.get().unwrap(), "world");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x} ")).collect()
}
