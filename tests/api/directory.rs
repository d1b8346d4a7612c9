//! The directory is the queue's identity (issue #16): a queue keeps working in its
//! directory when that is renamed, fails (instead of returning `Ok`) when it is deleted,
//! and never writes into another queue's directory that took its path.

use diskq::{Durability, Error, Options, Queue};
use std::fs;
use std::path::Path;

const LEVELS: [Durability; 3] = [
    Durability::Buffered,
    Durability::Written,
    Durability::Synced,
];

/// Small chunks, so that a few puts create files (and checkpoint).
fn opts(level: Durability) -> Options {
    Options::new().durability(level).chunk_size(4)
}

fn drain(dir: &Path) -> Vec<String> {
    let q: Queue<String> = Options::new().open(dir).unwrap();
    let mut out = Vec::new();
    while let Ok(s) = q.get_nowait() {
        out.push(s);
    }
    q.task_done_n(out.len()).unwrap();
    out
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn renamed_directory_keeps_every_put() {
    for level in LEVELS {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let q: Queue<String> = opts(level).open(&a).unwrap();
        let want = names("x", 30);
        for s in &want[..10] {
            q.put(s).unwrap();
        }
        fs::rename(&a, &b).unwrap();
        // Chunk rollovers (new files, checkpoints) after the rename.
        for s in &want[10..] {
            q.put(s).unwrap();
        }
        assert_eq!(q.get().unwrap(), "x0");
        q.task_done().unwrap();
        q.flush().unwrap();
        q.close().unwrap();
        assert!(
            !a.exists(),
            "{level:?}: nothing was created at the old path"
        );
        assert_eq!(drain(&b), want[1..], "{level:?}");
    }
}

#[test]
fn deleted_directory_fails_instead_of_ok() {
    for level in LEVELS {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let q: Queue<String> = opts(level).open(&a).unwrap();
        q.put(&"before".to_string()).unwrap();
        q.flush().unwrap();
        fs::remove_dir_all(&a).unwrap();
        // Puts into the open chunk may still return Ok (the file lives until closed);
        // the one that must create the next chunk fails, and so does everything after.
        let mut failed = None;
        for s in names("lost", 12) {
            if let Err(e) = q.put(&s).and_then(|()| q.flush()) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.unwrap_or_else(|| panic!("{level:?}: puts into a deleted directory all Ok"));
        assert!(
            matches!(e, Error::DirectoryDeleted { .. }),
            "{level:?}: {e}"
        );
        assert!(e.to_string().contains("was deleted"), "{e}");
        assert!(q.flush().is_err(), "{level:?}: flush after the deletion");
        assert!(q.close().is_err(), "{level:?}: close after the deletion");
        assert!(!a.exists(), "{level:?}: the directory was not re-created");
    }
}

#[test]
fn flush_and_close_report_a_deleted_directory() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let q: Queue<u32> = Options::new().open(&a).unwrap();
    q.put(&1).unwrap();
    fs::remove_dir_all(&a).unwrap();
    let e = q.flush().unwrap_err();
    assert!(
        matches!(e, Error::DirectoryDeleted { ref path } if path == &a),
        "{e}"
    );
    let q: Queue<u32> = Options::new().open(root.path().join("b")).unwrap();
    let b = root.path().join("b");
    q.put(&1).unwrap();
    fs::remove_dir_all(&b).unwrap();
    let e = q.close().unwrap_err();
    assert!(matches!(e, Error::DirectoryDeleted { .. }), "{e}");
    assert!(!b.exists());
}

#[test]
fn a_new_queue_at_the_old_path_gets_none_of_the_old_items() {
    for level in LEVELS {
        for delete in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let (a, b) = (root.path().join("a"), root.path().join("b"));
            let old: Queue<String> = opts(level).open(&a).unwrap();
            old.put(&"old0".to_string()).unwrap();
            if delete {
                fs::remove_dir_all(&a).unwrap();
            } else {
                fs::rename(&a, &b).unwrap();
            }
            let new: Queue<String> = opts(level).open(&a).unwrap();
            let fresh = names("new", 10);
            // The two interleaved, with chunk rollovers and checkpoints on both sides.
            let mut old_ok = vec!["old0".to_string()];
            for (i, s) in fresh.iter().enumerate() {
                new.put(s).unwrap();
                let o = format!("old{}", i + 1);
                if old.put(&o).and_then(|()| old.flush()).is_ok() {
                    old_ok.push(o);
                }
            }
            new.close().unwrap();
            let closed = old.close();
            assert_eq!(
                drain(&a),
                fresh,
                "{level:?} delete={delete}: only its own items"
            );
            if delete {
                assert!(closed.is_err(), "{level:?}: close of the deleted queue");
            } else {
                closed.unwrap();
                assert_eq!(
                    drain(&b),
                    old_ok,
                    "{level:?}: every Ok put, in the renamed dir"
                );
            }
        }
    }
}
