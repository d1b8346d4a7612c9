//! A real full file system (issue #16): a small tmpfs, mounted for the test (root only;
//! skipped with a printed reason where mounting is refused). At each level: puts fill it
//! until `NoSpace`; the queue is not poisoned; a consumer drains it on the full disk,
//! every get and acknowledgement `Ok`; it closes and reopens on the full disk; once space
//! is freed, puts succeed again on the same handle. Nothing is lost or doubled.

use diskq::{Durability, Error, Options, Queue};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const ITEM: usize = 4096;

/// A small file system mounted for the test, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
    _image: Option<tempfile::TempDir>,
}

/// Runs a command; `None` (and the reason printed) when it fails.
fn try_run(what: &str, cmd: &mut Command) -> Option<()> {
    match cmd.output() {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            println!(
                "skipped: cannot {what} here (run as root to test a full disk): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("skipped: cannot {what}: {e}");
            None
        }
    }
}

impl Mount {
    /// A tmpfs of `mib` MiB.
    fn tmpfs(mib: u32) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={mib}m");
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path());
        try_run("mount a tmpfs", &mut cmd)?;
        Some(Mount { dir, _image: None })
    }

    /// An ext4 of `mib` MiB in a loop-mounted image, with no blocks reserved for root
    /// (the tests run as root, which could write into them).
    fn ext4(mib: u32) -> Option<Mount> {
        let image = tempfile::tempdir().unwrap();
        let file = image.path().join("ext4.img");
        File::create(&file)
            .unwrap()
            .set_len(u64::from(mib) << 20)
            .unwrap();
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-m", "0"]).arg(&file);
        try_run("make an ext4 image", &mut mkfs)?;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("mount");
        cmd.args(["-o", "loop"]).arg(&file).arg(dir.path());
        try_run("loop-mount an ext4 image", &mut cmd)?;
        Some(Mount {
            dir,
            _image: Some(image),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn item(i: u32) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; ITEM];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn opts(level: Durability) -> Options {
    // 256 KiB chunks: several fit, so draining deletes some.
    Options::new().durability(level).chunk_size(64)
}

/// Fills what space is left with `filler` (appending), until the disk refuses a byte.
fn fill_up(filler: &Path) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .unwrap();
    for size in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0xAB; size];
        while f.write_all(&buf).is_ok() {}
    }
    // What the page cache took is on the tmpfs already: nothing to flush.
    assert!(f.write(&[1]).is_err(), "the disk is full");
}

fn no_space<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(e) if e.is_no_space() => {}
        other => panic!("{what}: expected NoSpace, got {other:?}"),
    }
}

fn run(level: Durability, m: &Mount) {
    let dir: PathBuf = m.path().join(format!("q-{level:?}"));
    let filler = m.path().join("filler");
    let q: Queue<Vec<u8>> = opts(level).open(&dir).unwrap();
    // Puts until the disk is full.
    let mut stored = 0u32;
    let err = loop {
        match q.put(&item(stored)).and_then(|()| q.flush()) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "{level:?}: the disk never filled");
    };
    assert!(err.is_no_space(), "{level:?}: {err}");
    assert!(stored > 64, "{level:?}: only {stored} items fit");
    println!("{level:?}: {stored} items of {ITEM} bytes filled the disk: {err}");
    // At the buffered level the put that hit the full disk was accepted (buffered
    // puts are): it is among the items, written once there is room.
    let waiting = q.len() as u32;
    assert!(waiting == stored || (level == Durability::Buffered && waiting == stored + 1));
    fill_up(&filler);
    no_space(q.put(&item(99_999)), "a put on the full disk");
    // Drain on the full disk: every get and acknowledgement succeeds.
    for i in 0..waiting {
        let got = q
            .get_nowait()
            .unwrap_or_else(|e| panic!("{level:?} get {i}: {e}"));
        assert_eq!(got, item(i), "{level:?}: item {i}");
        q.task_done()
            .unwrap_or_else(|e| panic!("{level:?} task_done {i}: {e}"));
    }
    assert!(q.get_nowait().unwrap_err().is_empty());
    q.flush().unwrap();
    // Close and reopen on a full disk.
    fill_up(&filler);
    q.close().unwrap();
    let q: Queue<Vec<u8>> = opts(level).open(&dir).unwrap();
    assert_eq!(q.len(), 0, "{level:?}: nothing comes back");
    // Space the chunk file already holds may take a few more items.
    let mut more = 0;
    let err = loop {
        match q.put(&item(more)).and_then(|()| q.flush()) {
            Ok(()) => more += 1,
            Err(e) => break e,
        }
        assert!(more < 1000, "{level:?}: puts never failed on a full disk");
    };
    assert!(err.is_no_space(), "{level:?}: {err}");
    let more = q.len() as u32;
    // Room again: puts go on, on the same handle.
    fs::remove_file(&filler).unwrap();
    for i in 0..10 {
        q.put(&item(100 + i)).unwrap();
    }
    q.flush().unwrap();
    for i in (0..more).chain(100..110) {
        assert_eq!(q.get_nowait().unwrap(), item(i), "{level:?}: item {i}");
    }
    q.task_done_n(more as usize + 10).unwrap();
    q.close().unwrap();
    let q: Queue<Vec<u8>> = opts(level).open(&dir).unwrap();
    assert!(q.is_empty());
    drop(q);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_tmpfs_is_survivable_at_every_level() {
    for level in [
        Durability::Written,
        Durability::Synced,
        Durability::Buffered,
    ] {
        let Some(m) = Mount::tmpfs(4) else { return };
        run(level, &m);
    }
}

#[test]
fn a_full_ext4_is_survivable_at_every_level() {
    for level in [
        Durability::Written,
        Durability::Synced,
        Durability::Buffered,
    ] {
        let Some(m) = Mount::ext4(8) else { return };
        run(level, &m);
    }
}
