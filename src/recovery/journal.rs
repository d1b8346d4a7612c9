//! FORMAT.md §open, step 4 (and step 3a's lenient read, `restart.rs`): reading the
//! acknowledgement journal.

use super::{Error, Result};
use crate::format::{ACK_ENTRY_LEN, AckEntry, MAX_SEQ};
use crate::storage::{StorageFile, read_full_at};
use std::path::Path;

/// Reads the journal: the largest acknowledged count in it and the length of its valid
/// prefix. A damaged entry followed by a valid one is corruption; damage at the end is a
/// torn append and is cut off.
pub(super) fn read(file: Option<&dyn StorageFile>, path: &Path) -> Result<JournalState> {
    let mut state = JournalState {
        head: None,
        singles: Vec::new(),
        valid_len: 0,
    };
    let Some(file) = file else {
        return Ok(state);
    };
    let len = file.size().map_err(|e| Error::io("stat", path, e))?;
    if len == 0 {
        // The common case after a clean close (a checkpoint empties the journal).
        return Ok(state);
    }
    // Read in blocks of whole entries, so that an `acks` file of any size (damage, or
    // not diskq's) costs a bounded buffer, not an allocation of its size.
    let mut entries = JournalEntries::new(file, path, len);
    while let Some((at, e)) = entries.next()? {
        match AckEntry::decode(e) {
            Some(entry) if entry.seq() >= MAX_SEQ => {
                return Err(Error::corrupt(
                    path,
                    at,
                    format!("impossible acknowledged item {}", entry.seq()),
                ));
            }
            Some(AckEntry::Head(acked)) => state.head = state.head.max(Some(acked)),
            Some(AckEntry::Single(seq)) => state.singles.push(seq),
            None => {
                while let Some((_, later)) = entries.next()? {
                    if later.len() == ACK_ENTRY_LEN && AckEntry::decode(later).is_some() {
                        return Err(Error::corrupt(
                            path,
                            at,
                            "damaged acknowledgement entry followed by valid ones",
                        ));
                    }
                }
                state.valid_len = at;
                return Ok(state);
            }
        }
    }
    state.valid_len = entries.at;
    Ok(state)
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
    /// File offset after the last entry returned.
    at: u64,
}

impl<'a> JournalEntries<'a> {
    /// `len`: the file's size when opened, which bounds the first block (it may grow:
    /// reading goes on to the end of the file).
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
            at: 0,
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
        let at = self.buf_at + start as u64;
        self.at = self.buf_at + self.pos as u64;
        Ok(Some((at, &self.buf[start..self.pos])))
    }
}

/// What the journal holds.
pub(super) struct JournalState {
    /// The largest head entry.
    pub(super) head: Option<u64>,
    /// Single acknowledgements.
    pub(super) singles: Vec<u64>,
    /// Length of the valid prefix.
    pub(super) valid_len: u64,
}
