//! Small file systems mounted for full-disk tests (root only: without it each says why
//! it skipped), and a helper that fills what space is left.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A small file system mounted for the test, unmounted on drop.
pub struct Mount {
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
    pub fn tmpfs(mib: u32) -> Option<Mount> {
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
    pub fn ext4(mib: u32) -> Option<Mount> {
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

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills what space is left with `filler` (appending), until the disk refuses a byte.
pub fn fill_up(filler: &Path) {
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
