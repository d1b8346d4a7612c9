//! `Inspector::verify` (`diskq verify`) reported damage in a healthy queue that another
//! process was writing: "damaged acknowledgement entries" in `acks`, in the middle of the
//! file, in 1 or 2 of 4 runs of a debug build next to a process that puts, gets and
//! acknowledges. The owner appends to the journal in place, into zero bytes it reserved
//! after the data; the Inspector read the journal in 48 KiB blocks and checked each block
//! before reading the next, so its read took milliseconds in a debug build. The zeros
//! read in one block then came before entries that the owner had appended by the time
//! the next block was read: in a file at rest that is damage. Every one of its 5 reads
//! could overlap appends so, and it returned the last one's damage.
//!
//! Its counts (`snapshot`, `items`) could lose acknowledgements the same way: it read
//! `info`, the journal, then `info` again, and read again while the two differed; a
//! checkpoint between the first two paired the old `info` with the new, emptied journal,
//! which lacks what the new `info` took in. After 5 such reads it used the last one.
//!
//! The storage here has the owner work in the middle of the Inspector's reads of
//! `acks`, as a busy owner does while a read is under way.

use diskq::storage::{FsStorage, OpenMode, Storage, StorageFile};
use diskq::{Inspector, Options, Queue};
use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Length of a journal entry (a unit; FORMAT.md §acks).
const ENTRY: usize = 12;

/// The real file system, except that the owner works during the first `reads` reads
/// of `acks`.
#[derive(Debug)]
struct Racing {
    owner: Arc<Queue<u32>>,
    reads: AtomicUsize,
    during: During,
}

#[derive(Debug, Clone, Copy)]
enum During {
    /// The read sees the bytes up to a page past the end of the data as they were before
    /// the owner acknowledged items, and the rest as they are after.
    Appends,
    /// The owner acknowledges items and checkpoints before the read.
    Checkpoint,
    /// At the first read of a chunk file, the owner puts `CHUNK * 5 / 2` more items and
    /// acknowledges every item of the three chunks listed before: those are deleted,
    /// newer ones hold what waits.
    Chunks,
}

impl Racing {
    fn new(owner: &Arc<Queue<u32>>, reads: usize, during: During) -> Arc<Racing> {
        Arc::new(Racing {
            owner: owner.clone(),
            reads: AtomicUsize::new(reads),
            during,
        })
    }

    fn ack(&self, n: usize) {
        for _ in 0..n {
            self.owner.get().expect("items wait");
            self.owner.task_done().expect("acknowledged");
        }
    }

    /// `acks` as a read cut in two by appends sees it.
    fn cut_read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let before = std::fs::read(path)?;
        let cut = (data_end(&before) / 4096 + 1) * 4096;
        let mut after = before.clone();
        while data_end(&after) < cut + ENTRY {
            self.ack(50);
            after = std::fs::read(path)?;
        }
        after[..cut].copy_from_slice(&before[..cut]);
        Ok(after)
    }

    /// `acks` after the owner acknowledged items and put enough to start a chunk, which
    /// checkpoints (`info` replaced, the journal emptied).
    fn read_after_checkpoint(&self, path: &Path) -> io::Result<Vec<u8>> {
        let info = std::fs::read(path.with_file_name("info"))?;
        self.ack(3);
        self.owner.put_many(&[7; CHUNK]).unwrap();
        assert_ne!(std::fs::read(path.with_file_name("info"))?, info);
        std::fs::read(path)
    }

    /// True when the owner worked before this read of a chunk file (`During::Chunks`).
    fn race_chunk(&self, path: &Path) -> bool {
        let chunk = path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes()[0] == b'q');
        let racing = matches!(self.during, During::Chunks)
            && chunk
            && self
                .reads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if racing {
            self.owner.put_many(&[7; CHUNK * 5 / 2]).unwrap();
            // The three chunks listed (the test's), and one item more: the reader enters
            // the next chunk, so the last listed one is deleted too.
            self.ack(CHUNK * 3 + 1);
        }
        racing
    }

    fn read_acks(&self, path: &Path) -> Option<io::Result<Vec<u8>>> {
        let racing = !matches!(self.during, During::Chunks)
            && path.ends_with("acks")
            && self
                .reads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        racing.then(|| match self.during {
            During::Appends => self.cut_read(path),
            During::Checkpoint => self.read_after_checkpoint(path),
            During::Chunks => unreachable!("not a read of acks"),
        })
    }
}

/// The offset after the last entry that holds a byte other than zero.
fn data_end(b: &[u8]) -> usize {
    b.iter()
        .rposition(|&x| x != 0)
        .map_or(0, |i| (i + 1).div_ceil(ENTRY) * ENTRY)
}

/// Bytes read before, as a read-only file.
#[derive(Debug)]
struct Bytes(Vec<u8>);

impl StorageFile for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let rest = self.0.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
    fn append(&mut self, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn set_len(&mut self, _: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for Racing {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        FsStorage.try_lock(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(dir)
    }
    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        if self.race_chunk(path) {
            return FsStorage.read_all(path);
        }
        match self.read_acks(path) {
            Some(read) => read.map(Some),
            None => FsStorage.read_all(path),
        }
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        match (mode, self.read_acks(path)) {
            (OpenMode::Read, Some(read)) => Ok(Box::new(Bytes(read?))),
            _ => FsStorage.open(path, mode),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
    fn boot_id(&self) -> u128 {
        FsStorage.boot_id()
    }
    fn anchor(self: Arc<Self>, dir: &Path) -> io::Result<Arc<dyn Storage>> {
        Arc::new(FsStorage).anchor(dir)
    }
    fn reserve_space(&self, path: &Path, len: u64) -> io::Result<()> {
        FsStorage.reserve_space(path, len)
    }
}

/// Items per chunk file of the owner in the checkpoint test.
const CHUNK: usize = 100;

/// A queue open in this process (so the Inspector sees it live) with 20,000 items and
/// a journal of a few KiB, in chunks of `chunk` items.
fn owner(dir: &Path, chunk: usize) -> Arc<Queue<u32>> {
    let q = Arc::new(Options::new().chunk_size(chunk).open(dir).unwrap());
    q.put_many(&(0..20_000).collect::<Vec<u32>>()).unwrap();
    for _ in 0..300 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    q
}

#[test]
fn reads_cut_by_appends_are_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let q = owner(dir.path(), 100_000);
    // As many cut reads as the old code made reads.
    let st = Racing::new(&q, 5, During::Appends);
    let v = Inspector::open_on(st.clone(), dir.path())
        .unwrap()
        .verify()
        .unwrap();
    assert!(v.healthy() && v.live, "{v:?}");
    assert_eq!(st.reads.load(Ordering::SeqCst), 0, "every read was cut");
}

#[test]
fn a_queue_changed_under_every_read_is_busy_not_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let q = owner(dir.path(), 100_000);
    let i = Inspector::open_on(Racing::new(&q, usize::MAX, During::Appends), dir.path()).unwrap();
    let e = i.verify().unwrap_err();
    assert!(e.is_busy(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("not damage"),
        "{text}"
    );
}

/// Real damage stays where it is, read after read: it is reported while the owner's
/// appends cut every read.
#[test]
fn damage_is_reported_while_appends_cut_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let q = owner(dir.path(), 100_000);
    let acks = dir.path().join("acks");
    let at = 10 * ENTRY as u64;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&acks)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_at(&mut b, at + 3).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], at + 3).unwrap();
    }
    let i = Inspector::open_on(Racing::new(&q, usize::MAX, During::Appends), dir.path()).unwrap();
    let v = i.verify().unwrap();
    assert_eq!(v.damage.len(), 1, "{v:?}");
    let d = &v.damage[0];
    assert_eq!(d.file, acks);
    assert!(
        d.offset <= at && at < d.offset + d.len && d.len <= 2 * ENTRY as u64,
        "{d:?}"
    );
}

/// An entry the owner is copying into its reserved zeros, its value there and its check
/// value not yet, is not damage while the owner has the queue open; with no owner, such
/// bytes are.
#[test]
fn an_entry_being_copied_in_at_the_end_is_not_damage() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let q = owner(dir.path(), 100_000);
    let acks = dir.path().join("acks");
    let end = data_end(&std::fs::read(&acks).unwrap()) as u64;
    let f = std::fs::OpenOptions::new().write(true).open(&acks).unwrap();
    f.write_all_at(&301u64.to_le_bytes(), end).unwrap();
    let v = Inspector::open(dir.path()).unwrap().verify().unwrap();
    assert!(v.healthy() && v.live, "{v:?}");

    drop(q); // its checkpoint empties the journal
    std::fs::write(&acks, 301u64.to_le_bytes()).unwrap();
    let v = Inspector::open(dir.path()).unwrap().verify().unwrap();
    assert!(!v.live, "{v:?}");
    assert_eq!(v.damage.len(), 1, "{v:?}");
    assert_eq!((&v.damage[0].file, v.damage[0].offset), (&acks, 0));
}

/// The counts agree with the owner's though it checkpoints during every read.
#[test]
fn a_checkpoint_during_the_read_loses_no_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let q = owner(dir.path(), CHUNK);
    let i =
        Inspector::open_on(Racing::new(&q, usize::MAX, During::Checkpoint), dir.path()).unwrap();
    let s = i.snapshot().unwrap();
    assert_eq!(s.waiting, q.len() as u64, "{s:?}");
    let items = Inspector::open(dir.path())
        .unwrap()
        .items(0, 1)
        .unwrap()
        .items;
    assert_eq!(s.oldest_seq, Some(items[0].seq));
}

/// The owner deleted every chunk file listed (each item in them acknowledged) and wrote
/// newer ones before the Inspector read them: the walk went on with no chunk, and `stat`
/// said "waiting 0" and "next seq 0" next to 4 chunk files (seen under load in the CLI's
/// live test). It now lists the directory again and walks the newer chunks.
#[test]
fn chunks_deleted_and_written_after_the_listing_are_walked() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Options::new().chunk_size(CHUNK).open(dir.path()).unwrap());
    q.put_many(&[1; CHUNK * 5 / 2]).unwrap(); // chunks 0 to 2
    let i = Inspector::open_on(Racing::new(&q, 1, During::Chunks), dir.path()).unwrap();
    let s = i.snapshot().unwrap();
    let put = (CHUNK * 5) as u64;
    assert_eq!(s.next_seq, put, "{s:?}");
    // The counts may lag the owner by its acknowledgements made during the read.
    let waiting = q.len() as u64;
    assert!(
        (waiting..=waiting + 1).contains(&s.waiting),
        "{s:?}, {waiting} wait"
    );
    assert!(s.stopped_at.is_none(), "{s:?}");
}
