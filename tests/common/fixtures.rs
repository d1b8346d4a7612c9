//! Opening checked-in fixture directories of an older format version (`tests/fixtures/v<N>/`):
//! shared by `fixtures_v1_v2.rs`, `fixtures_v4.rs` and `fixtures_v5.rs`. Every check opens a copy in a
//! temporary directory, never the checked-in files: `open` may truncate, checkpoint and
//! delete files.

use diskq::{Error, Queue};
use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A fixture directory: the item numbers (`item-<n>`) it must deliver, in order, whether
/// it is paused, and how many of its items wait out a delay (not delivered, but not
/// finished either).
pub struct Fixture {
    pub name: &'static str,
    pub items: &'static [u32],
    pub paused: bool,
    pub delayed: u64,
}

/// Where `open` must cut a fixture that holds a record torn by a process crash: the chunk
/// file and the offset of its first byte that is not an intact record. A cut in the same
/// boot (FORMAT.md §open, step 6) is not reported in `Queue::recovery()`, which reports
/// what step 3a cut after a restart; it shows in the file, which holds no byte but zeros
/// from there on once `open` returns.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    pub file: &'static str,
    pub at: usize,
}

/// A boot that is not this one (nor unknown).
pub const OTHER_BOOT: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;

/// The boot id the copy's `info` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// As checked in: the boot of the machine that made the fixtures.
    AsWritten,
    /// The running machine's boot: no restart since the checkpoint.
    This,
    /// Another boot: the machine restarted since the checkpoint.
    Other,
}

/// The fixtures of format `version`.
pub struct Set {
    pub version: u32,
    pub fixtures: &'static [Fixture],
}

impl Set {
    pub fn root(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{}", self.version))
    }

    /// The checked-in fixture directory; panics (never skips) when it is missing.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        assert!(
            dir.join("info").is_file(),
            "missing fixture {}: the version {} fixtures must be checked in",
            dir.display(),
            self.version
        );
        dir
    }

    /// The fixture directories on disk are exactly those listed: none missing, none
    /// without a test; and none holds the files `open` makes again.
    pub fn check_complete(&self) {
        let mut on_disk: Vec<String> = fs::read_dir(self.root())
            .unwrap_or_else(|e| panic!("{}: {e}", self.root().display()))
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = self.fixtures.iter().map(|f| f.name.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for name in &listed {
            for (f, _) in files(&self.dir(name)) {
                let base = f.rsplit('/').next().unwrap();
                assert!(
                    ![".lock", "reserve", "info.tmp"].contains(&base),
                    "{name}: {f} checked in"
                );
            }
        }
    }

    pub fn check_all_boots(&self, name: &str) {
        assert_ne!(this_boot(), OTHER_BOOT);
        for boot in [Boot::AsWritten, Boot::This, Boot::Other] {
            self.check(name, boot);
        }
    }

    /// Opens a copy of fixture `name` with `info` carrying `boot`: nothing is cut, and it
    /// delivers exactly the items listed, in order, again after a reopen; keeps a pause;
    /// and keeps working after the upgrade (a put, a close and a reopen).
    pub fn check(&self, name: &str, boot: Boot) {
        self.check_with(name, boot, None);
    }

    /// Like [`check`](Self::check), for a fixture whose first `open` must cut a torn
    /// record exactly at `cut`, and nothing else.
    pub fn check_cut(&self, name: &str, boot: Boot, cut: Cut) {
        self.check_with(name, boot, Some(cut));
    }

    fn check_with(&self, name: &str, boot: Boot, cut: Option<Cut>) {
        let f = self
            .fixtures
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no expectation for fixture {name}"));
        let (expected, paused) = (f.items, f.paused);
        let expected: Vec<String> = expected.iter().map(|i| format!("item-{i}")).collect();
        let what = format!("{name} ({boot:?} boot)");
        let what = what.as_str();
        let src = self.dir(name);
        let before = files(&src);
        if paused {
            assert!(before.contains_key("paused"), "{what}: no paused file");
        }
        let tmp = copy(self, name, boot);
        let dir = tmp.path().join(name);

        let q = open(&dir, what);
        assert!(dir.join(".lock").is_file(), "{what}: open made no .lock");
        let rec = q.recovery();
        match boot {
            Boot::This => assert!(!rec.after_restart, "{what}: {rec:?}"),
            Boot::Other => assert!(rec.after_restart, "{what}: {rec:?}"),
            // Before version 4 `info` records no boot: opened as a process crash left it.
            Boot::AsWritten if self.version < 4 => {
                assert!(!rec.after_restart, "{what}: {rec:?}")
            }
            Boot::AsWritten => {}
        }
        // Every record and journal entry is intact: nothing may be cut or ignored.
        assert_eq!(rec.cut_at, None, "{what}: {rec:?}");
        assert_eq!(
            (rec.bytes_dropped, rec.chunks_dropped, rec.acks_ignored),
            (0, 0, 0),
            "{what}: {rec:?}"
        );
        // But the torn record a fixture was made with, cut by the process-crash rules.
        if let Some(c) = cut {
            let chunk = fs::read(dir.join(c.file)).unwrap();
            let torn = &before[c.file][c.at..];
            assert!(
                chunk.len() >= c.at && torn.iter().any(|&b| b != 0),
                "{what}: {} has nothing to cut at {}",
                c.file,
                c.at
            );
            assert_eq!(chunk[..c.at], before[c.file][..c.at], "{what}: {}", c.file);
            assert!(
                chunk[c.at..].iter().all(|&b| b == 0),
                "{what}: {} not cut at {}",
                c.file,
                c.at
            );
        }
        assert_eq!(q.is_paused(), paused, "{what}: is_paused after open");
        assert_eq!(q.len(), expected.len(), "{what}: len after open");
        let q = if paused {
            assert_eq!(
                drain(&q, true, what),
                Vec::<String>::new(),
                "{what}: items delivered while paused"
            );
            // The pause is kept by a close and a reopen of the upgraded directory.
            q.close().unwrap();
            let q = open(&dir, what);
            assert!(q.is_paused(), "{what}: not paused after reopen");
            assert_eq!(q.len(), expected.len(), "{what}: len after reopen");
            q.resume().unwrap();
            assert!(!q.is_paused(), "{what}: paused after resume");
            q
        } else {
            q
        };

        // Gotten without acknowledgement: delivered again, the same, after a reopen.
        assert_eq!(drain(&q, false, what), expected, "{what}: items delivered");
        q.close().unwrap();
        let q = open(&dir, what);
        assert!(!q.is_paused(), "{what}: paused after reopen");
        assert_eq!(q.len(), expected.len(), "{what}: len after reopen");
        assert_eq!(
            drain(&q, true, what),
            expected,
            "{what}: items delivered after reopen"
        );
        assert_eq!(
            q.unfinished() as u64,
            f.delayed,
            "{what}: unfinished after draining (the delayed items)"
        );
        q.close().unwrap();

        // Acknowledged for good; the upgraded directory keeps working: a new item survives a
        // close and a reopen.
        let q = open(&dir, what);
        assert_eq!(q.len(), 0, "{what}: items left after acknowledging all");
        let new = "after-upgrade".to_string();
        q.put(&new).unwrap();
        q.close().unwrap();
        let q = open(&dir, what);
        assert_eq!(drain(&q, true, what), [new], "{what}: after the upgrade");
        q.close().unwrap();

        assert_eq!(
            files(&src),
            before,
            "{what}: the checked-in fixture changed"
        );
    }
}

/// The fixture's files and their bytes, those of a `dead/` subdirectory as `dead/<name>`.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            for (f, b) in files(&e.path()) {
                out.insert(format!("{name}/{f}"), b);
            }
        } else {
            out.insert(name, fs::read(e.path()).unwrap());
        }
    }
    out
}

/// The running machine's boot id, as diskq reads it (Linux).
pub fn this_boot() -> u128 {
    let path = "/proc/sys/kernel/random/boot_id";
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text.trim().chars().filter(|&c| c != '-').collect();
    assert_eq!(hex.len(), 32, "{path}: {text:?}");
    u128::from_str_radix(&hex, 16).unwrap()
}

/// An `info` of format `version` with its boot id (bytes 60..76, little-endian) replaced
/// and its CRC recomputed: in version 4 the last 4 bytes over all before them, in
/// version 5 the header's (bytes 96..100, over 0..96).
pub fn with_boot(info: &[u8], boot: u128, version: u32) -> Vec<u8> {
    assert_eq!(&info[..8], b"diskqinf", "info magic");
    assert_eq!(
        u32::from_le_bytes(info[8..12].try_into().unwrap()),
        version,
        "info version"
    );
    let (covered, at) = match version {
        4 => (info.len() - 4, info.len() - 4),
        5 => (96, 96),
        v => panic!("no boot id in version {v}"),
    };
    assert_eq!(
        crc32fast::hash(&info[..covered]).to_le_bytes(),
        info[at..at + 4],
        "the checked-in info's CRC"
    );
    let mut b = info.to_vec();
    b[60..76].copy_from_slice(&boot.to_le_bytes());
    let crc = crc32fast::hash(&b[..covered]);
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn open(dir: &Path, what: &str) -> Queue<String> {
    match catch_unwind(AssertUnwindSafe(|| Queue::<String>::open(dir))) {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => panic!("{what}: open failed: {e}"),
        Err(_) => panic!("{what}: open panicked"),
    }
}

/// Gets every waiting item, with or without acknowledging each.
pub fn drain(q: &Queue<String>, ack: bool, what: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match q.get_nowait() {
            Ok(item) => {
                got.push(item);
                if ack {
                    q.task_done().unwrap();
                }
            }
            Err(Error::Empty) => return got,
            Err(e) => panic!("{what}: get after {got:?}: {e}"),
        }
    }
}

/// A copy of fixture `name` of `set` in a temporary directory (as `<tmp>/<name>`), with
/// `info` carrying `boot`.
pub fn copy(set: &Set, name: &str, boot: Boot) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    for (file, bytes) in files(&set.dir(name)) {
        let bytes = match (file.as_str(), boot) {
            ("info", Boot::This) => with_boot(&bytes, this_boot(), set.version),
            ("info", Boot::Other) => with_boot(&bytes, OTHER_BOOT, set.version),
            _ => bytes,
        };
        fs::create_dir_all(dir.join(&file).parent().unwrap()).unwrap();
        fs::write(dir.join(&file), bytes).unwrap();
    }
    tmp
}
