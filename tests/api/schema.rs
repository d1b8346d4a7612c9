//! The item type is checked (issue #16, item 5): a queue records its item type (or an
//! `Options::schema` tag) when it is created, and opening it as another type fails with
//! `Error::TypeMismatch` naming both, instead of returning wrong items; a `Decode` error
//! carries the item's sequence number and cause.

use diskq::storage::SimStorage;
use diskq::{Error, Options, Queue};
use std::path::Path;
use std::sync::Arc;

fn three_u64s(dir: &Path) {
    let q: Queue<u64> = Queue::open(dir).unwrap();
    for i in [5u64, 256, 1 << 40] {
        q.put(&i).unwrap();
    }
}

fn mismatch(e: Error) -> (String, String) {
    match e {
        Error::TypeMismatch {
            stored, requested, ..
        } => (stored.into(), requested.into()),
        e => panic!("expected TypeMismatch, got {e:?}"),
    }
}

#[test]
fn the_new_variant_does_not_make_every_result_larger() {
    // `get` returns `Result<T, Error>`: a larger `Error` costs every call.
    let corrupt = std::mem::size_of::<(std::path::PathBuf, u64, String)>();
    assert!(std::mem::size_of::<Error>() <= corrupt + 8);
}

#[test]
fn u64_reopened_as_string_or_pair_is_refused_naming_both() {
    let d = tempfile::tempdir().unwrap();
    three_u64s(d.path());
    let e = Queue::<String>::open(d.path()).unwrap_err();
    let msg = e.to_string();
    assert!(e.is_type_mismatch() && !e.is_corrupt());
    assert_eq!(mismatch(e), ("u64".into(), "alloc::string::String".into()));
    assert!(
        msg.contains("\"u64\"") && msg.contains("Options::schema"),
        "{msg}"
    );
    let e = Queue::<(u32, u32)>::open(d.path()).unwrap_err();
    assert_eq!(mismatch(e), ("u64".into(), "(u32, u32)".into()));
    // Refusing changed nothing: the right type still gets every item.
    let q: Queue<u64> = Queue::open(d.path()).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
    assert_eq!(got, [5, 256, 1 << 40]);
}

#[test]
fn a_schema_tag_is_checked_instead_of_the_type_name() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new().schema("jobs/v1").open(d.path()).unwrap();
    q.put(&7).unwrap();
    drop(q);
    // The type name alone no longer matches: the tag is what was recorded.
    let e = Queue::<u64>::open(d.path()).unwrap_err();
    assert_eq!(mismatch(e), ("jobs/v1".into(), "u64".into()));
    let e = Options::new()
        .schema("jobs/v2")
        .open::<u64>(d.path())
        .unwrap_err();
    assert_eq!(mismatch(e), ("jobs/v1".into(), "jobs/v2".into()));
    // The same tag opens, whatever the Rust type is called now.
    let q: Queue<u64> = Options::new().schema("jobs/v1").open(d.path()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 7);
}

#[test]
fn an_undecodable_item_names_its_seq_and_cause_and_goes_to_the_dead_letters() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<u64> = Options::new().schema("t").open(d.path()).unwrap();
    q.put(&1).unwrap();
    drop(q);
    // Forced under the same tag, the wrong type: eight bytes are no String of length 1.
    let q: Queue<String> = Options::new().schema("t").open(d.path()).unwrap();
    // `peek` reports it, and leaves it.
    for _ in 0..2 {
        match q.peek().unwrap_err() {
            e @ Error::Decode { seq: 0, .. } => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("item 0 in ") && msg.contains("offset 28"),
                    "{msg}"
                );
                assert!(std::error::Error::source(&e).is_some());
            }
            e => panic!("expected Decode of item 0, got {e:?}"),
        }
    }
    // A get moves it to the dead letters, with the cause, and goes on.
    assert!(q.get_nowait().unwrap_err().is_empty());
    let dl = q.dead_letters();
    let d = dl.iter().next().unwrap().unwrap();
    assert_eq!((d.seq(), d.item()), (0, None));
    assert!(d.reason().contains("do not decode"), "{}", d.reason());
}

#[test]
fn a_queue_without_a_schema_file_records_the_type_it_is_opened_with() {
    // As a version 3 directory, or a creation cut between `info` and `schema`.
    let st = SimStorage::new();
    let dir = Path::new("/sim/q");
    let q: Queue<u64> = Options::new().open_on(Arc::new(st.clone()), dir).unwrap();
    q.put(&3).unwrap();
    drop(q);
    let schema = dir.join("schema");
    assert!(st.file(&schema).is_some());
    let st = st.after_crash(diskq::storage::Crash::Process);
    // Remove the file: a build that never wrote one.
    use diskq::storage::Storage;
    st.remove(&schema).unwrap();
    let q: Queue<u64> = Options::new().open_on(Arc::new(st.clone()), dir).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 3);
    drop(q);
    assert!(st.file(&schema).is_some(), "recorded at open");
    let e = Options::new()
        .open_on::<String>(Arc::new(st.clone()), dir)
        .unwrap_err();
    assert!(e.is_type_mismatch(), "{e:?}");
}

#[test]
fn a_damaged_schema_file_is_corrupt_and_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    three_u64s(d.path());
    let path = d.path().join("schema");
    let mut b = std::fs::read(&path).unwrap();
    b[17] ^= 1;
    std::fs::write(&path, &b).unwrap();
    let e = Queue::<u64>::open(d.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        e.is_corrupt() && msg.contains("schema") && msg.contains("delete it"),
        "{msg}"
    );
    std::fs::remove_file(&path).unwrap();
    let q: Queue<u64> = Queue::open(d.path()).unwrap();
    assert_eq!(q.len(), 3);
}

#[test]
fn version_3_fixtures_are_stamped_with_the_type_they_are_opened_with() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3/clean");
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    assert!(!d.path().join("schema").exists());
    let q: Queue<String> = Queue::open(d.path()).unwrap();
    assert!(!q.is_empty());
    drop(q);
    let e = Queue::<u64>::open(d.path()).unwrap_err();
    assert!(e.is_type_mismatch(), "{e:?}");
}

mod old_home {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Job {
        pub id: u64,
    }
}
mod new_home {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Job {
        pub id: u64,
    }
}

#[test]
fn a_type_moved_to_another_module_is_refused_with_the_tag_that_opens_it() {
    // The same struct moved to another module (or crate) has a new type name: the error
    // names the stored one as the tag to open with, and that tag opens the items.
    let d = tempfile::tempdir().unwrap();
    let q: Queue<old_home::Job> = Queue::open(d.path()).unwrap();
    q.put(&old_home::Job { id: 9 }).unwrap();
    drop(q);
    let e = Queue::<new_home::Job>::open(d.path()).unwrap_err();
    let msg = e.to_string();
    let (stored, _) = mismatch(e);
    assert!(stored.ends_with("old_home::Job"), "{stored}");
    let hint = format!("Options::schema({stored:?})");
    assert!(msg.contains(&hint), "{msg}");
    let q: Queue<new_home::Job> = Options::new().schema(stored).open(d.path()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), new_home::Job { id: 9 });
}
