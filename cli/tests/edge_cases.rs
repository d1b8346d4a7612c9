//! Edge cases of the `diskq` command: paths that are not queues, each subcommand on a
//! damaged and on an empty queue, `repair`'s prompt, `dump --raw`, `--json` everywhere.

use std::path::Path;
use std::process::{Command, Output};

fn diskq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskq"))
        .args(args)
        .output()
        .expect("run diskq")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2, and stderr says `what` (and names `path`).
fn fails_saying(args: &[&str], path: &Path, what: &str) {
    let out = diskq(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(what) && err.contains(&path.display().to_string()),
        "{args:?}: {err}"
    );
}

#[test]
fn paths_that_are_not_queues_say_so() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    let file = root.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for cmd in [
        "stat",
        "verify",
        "dump",
        "tail",
        "dead-letters",
        "pause",
        "repair",
    ] {
        for (path, why) in [
            (&empty, "holds neither an info file nor a chunk file"),
            (&missing, "does not exist"),
            (&file, "is not a directory"),
        ] {
            let p = path.to_str().unwrap();
            fails_saying(&[cmd, p], path, "is not a diskq queue directory");
            fails_saying(&[cmd, p], path, why);
        }
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing made"
    );
    // Chunk files without info: a queue whose info is missing, which only repair mends.
    let q = root.path().join("q");
    drop(diskq::Queue::<String>::open(&q).unwrap());
    std::fs::remove_file(q.join("info")).unwrap();
    let p = q.to_str().unwrap();
    fails_saying(
        &["dead-letters", p, "purge"],
        &q,
        "has queue files but no info file",
    );
}
