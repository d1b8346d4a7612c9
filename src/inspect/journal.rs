//! Reading the `acks` journal (FORMAT.md §acks), once for every reader: `open`'s strict
//! read (step 4), its lenient read after a restart (step 3a) and `repair`'s. Each entry is
//! classified here; what a damaged one means is the caller's rule.

use crate::error::{Error, Result};
use crate::format::{ACK_ENTRY_LEN, AckEntry, MAX_SEQ, Unit, all_zero};
use crate::storage::{StorageFile, read_full_at};
use std::collections::BTreeSet;
use std::io;
use std::ops::Range;
use std::path::Path;

/// What a journal holds: every valid entry, wherever it is, and where it is not valid.
#[derive(Debug, Default)]
pub(crate) struct JournalScan {
    /// The largest head entry.
    pub(crate) head: Option<u64>,
    /// Every single entry, in file order.
    pub(crate) singles: Vec<u64>,
    /// The largest `Delivered` entry (version 5).
    pub(crate) delivered: Option<u64>,
    /// Every `Attempts` and `Delay` entry, in file order (version 5).
    pub(crate) attempts: Vec<(u64, u32)>,
    pub(crate) delays: Vec<(u64, u64)>,
    /// Where the first entry that is not valid starts (the file's length if every entry
    /// is): the valid prefix ends here.
    pub(crate) valid_end: u64,
    /// A valid entry follows `valid_end`, and one with the sync mark does.
    pub(crate) valid_after: bool,
    pub(crate) marked_after: bool,
    /// Byte ranges that are not valid entries, adjacent ones merged, except zero bytes up
    /// to the end of the file (space reserved after the last entry, FORMAT.md
    /// §Preallocation).
    pub(crate) damaged: Vec<Range<u64>>,
    /// The first entry whose CRC holds but whose value no queue writes (2^62 or more):
    /// its offset and value. Damage, never a torn write.
    pub(crate) impossible: Option<(u64, u64)>,
    /// The file's length.
    pub(crate) len: u64,
}

impl JournalScan {
    /// Entries lost in `damaged`, counted as whole entries.
    pub(crate) fn damaged_entries(&self) -> u64 {
        let bytes: u64 = self.damaged.iter().map(|r| r.end - r.start).sum();
        bytes.div_ceil(ACK_ENTRY_LEN as u64)
    }

    fn damage(&mut self, r: Range<u64>) {
        match self.damaged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.damaged.push(r),
        }
    }
}

/// Reads every entry of the journal `file` (`None`: there is none), in blocks of whole
/// entries, so that a file of any size (damage, or not diskq's) costs a bounded buffer.
pub(crate) fn scan(file: Option<&dyn StorageFile>, path: &Path) -> Result<JournalScan> {
    let mut s = JournalScan::default();
    let Some(file) = file else {
        return Ok(s);
    };
    s.len = file.size().map_err(|e| Error::io("stat", path, e))?;
    s.valid_end = s.len;
    if s.len == 0 {
        // The common case after a clean close (a checkpoint empties the journal).
        return Ok(s);
    }
    let mut entries = JournalEntries::new(file, path, s.len);
    let mut c = Classifier::default();
    // The first unit of a pair, waiting for its second.
    let mut key: Option<(u64, [u8; ACK_ENTRY_LEN])> = None;
    while let Some((at, e)) = entries.next()? {
        if let Some((kat, k)) = key.take() {
            if let Some(pair) = AckEntry::decode_pair(&k, e) {
                c.valid(&mut s, pair);
                continue;
            }
            // A first unit without its second: not a whole entry.
            c.invalid(&mut s, kat, &k, None);
        }
        if e.len() == ACK_ENTRY_LEN && AckEntry::decode_unit(e) == Unit::PairKey {
            key = Some((at, e.try_into().expect("one unit")));
            continue;
        }
        match AckEntry::decode_unit(e) {
            Unit::Entry(entry, mark) if entry.seq() < MAX_SEQ => c.valid(&mut s, (entry, mark)),
            Unit::Entry(entry, _) => c.invalid(&mut s, at, e, Some(entry.seq())),
            _ => c.invalid(&mut s, at, e, None),
        }
    }
    if let Some((kat, k)) = key {
        c.invalid(&mut s, kat, &k, None);
    }
    let invalid = c.invalid;
    if let Some(at) = invalid {
        s.valid_end = at;
    }
    Ok(s)
}

/// [`scan`] of a journal already read into memory (`None`: there is none): the
/// [`Inspector`](crate::Inspector) reads the file in one go, so that its copy is of one
/// moment as nearly as a read can be while the owner appends.
pub(crate) fn scan_bytes(bytes: Option<&[u8]>, path: &Path) -> Result<JournalScan> {
    let file = bytes.map(Bytes);
    scan(file.as_ref().map(|f| f as &dyn StorageFile), path)
}

/// Bytes read before, as a read-only file.
#[derive(Debug)]
struct Bytes<'a>(&'a [u8]);

impl StorageFile for Bytes<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|at| self.0.get(at..))
            .unwrap_or_default();
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

/// Sorts a journal's units into valid entries and damage, in file order.
#[derive(Default)]
struct Classifier {
    /// Where the first unit that is not valid starts.
    invalid: Option<u64>,
    /// Zero bytes not yet known to be damage: they are, once anything else follows them.
    zeros: Option<Range<u64>>,
}

impl Classifier {
    fn valid(&mut self, s: &mut JournalScan, (entry, mark): (AckEntry, bool)) {
        if entry.seq() >= MAX_SEQ {
            return;
        }
        if let Some(z) = self.zeros.take() {
            s.damage(z);
        }
        if self.invalid.is_some() {
            s.valid_after = true;
            s.marked_after |= mark;
        }
        match entry {
            AckEntry::Head(h) => s.head = s.head.max(Some(h)),
            AckEntry::Single(seq) => s.singles.push(seq),
            AckEntry::Delivered(d) => s.delivered = s.delivered.max(Some(d)),
            AckEntry::Attempts { seq, n } => s.attempts.push((seq, n)),
            AckEntry::Delay { seq, due } => s.delays.push((seq, due)),
        }
    }

    /// Bytes `e` at `at` are not a valid entry; `impossible`: they check, but name an
    /// item no queue has.
    fn invalid(&mut self, s: &mut JournalScan, at: u64, e: &[u8], impossible: Option<u64>) {
        let end = at + e.len() as u64;
        if let Some(value) = impossible {
            s.impossible.get_or_insert((at, value));
        } else if all_zero(e) {
            self.invalid.get_or_insert(at);
            self.zeros = Some(self.zeros.take().map_or(at..end, |z| z.start..end));
            return;
        }
        self.invalid.get_or_insert(at);
        if let Some(z) = self.zeros.take() {
            s.damage(z);
        }
        s.damage(at..end);
    }
}

/// The items known to be acknowledged: every item before `head`, and `singles` after it.
/// Empty when neither `info` nor the journal is readable.
#[derive(Debug, Default)]
pub(crate) struct Acknowledged {
    pub(crate) head: u64,
    pub(crate) singles: BTreeSet<u64>,
}

impl Acknowledged {
    /// The head absorbs the singles it reaches, as at `open` (FORMAT.md §State).
    pub(crate) fn new(mut head: u64, singles: impl IntoIterator<Item = u64>) -> Acknowledged {
        let mut singles: BTreeSet<u64> = singles.into_iter().filter(|&s| s >= head).collect();
        while head < u64::MAX && singles.remove(&head) {
            head += 1;
        }
        Acknowledged { head, singles }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        seq < self.head || self.singles.contains(&seq)
    }
}

/// The journal's entries in file order, with their offsets; the last may be short (cut).
pub(crate) struct JournalEntries<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    /// Bytes of `buf` read from the file, and the next entry's index in `buf`.
    filled: usize,
    pos: usize,
}

impl<'a> JournalEntries<'a> {
    /// `len`: the file's size when opened, which bounds the first block (it may grow:
    /// reading goes on to the end of the file). Blocks hold whole entries.
    pub(crate) fn new(file: &'a dyn StorageFile, path: &'a Path, len: u64) -> JournalEntries<'a> {
        let block = ACK_ENTRY_LEN * 4096;
        let rounded = len.div_ceil(ACK_ENTRY_LEN as u64) * ACK_ENTRY_LEN as u64;
        JournalEntries {
            file,
            path,
            buf: vec![0; (rounded.max(ACK_ENTRY_LEN as u64) as usize).min(block)],
            buf_at: 0,
            filled: 0,
            pos: 0,
        }
    }

    pub(crate) fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        if self.pos >= self.filled {
            self.buf_at += self.filled as u64;
            self.filled = read_full_at(self.file, &mut self.buf, self.buf_at)
                .map_err(|e| Error::io("read", self.path, e))?;
            self.pos = 0;
            if self.filled == 0 {
                return Ok(None);
            }
        }
        let start = self.pos;
        self.pos = (start + ACK_ENTRY_LEN).min(self.filled);
        Ok(Some((
            self.buf_at + start as u64,
            &self.buf[start..self.pos],
        )))
    }
}
