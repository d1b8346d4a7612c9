//! FORMAT.md §open, step 6: the newest chunk, read from `info`'s tail mark when it is
//! usable, its torn last record cut.

use super::{Error, Result};
use crate::engine::{Writer, create_chunk};
use crate::format::{CHUNK_HEADER_LEN, FRAME_HEADER_LEN, Info};
use crate::reader::{ChunkReader, Next, chunk_path};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::path::Path;

/// Where the newest chunk's records stood at the last checkpoint, if it recorded that.
pub(super) fn mark_of(info: &Info) -> Option<TailMark> {
    (info.tail_end != 0).then_some(TailMark {
        chunk: info.tail_chunk,
        end: info.tail_end,
        count: info.tail_count,
        last_len: info.tail_last_len,
    })
}

/// `info`'s record of the newest chunk at its checkpoint: `count` records end at `end`,
/// the last of them `last_len` bytes long.
#[derive(Debug, Clone, Copy)]
pub(super) struct TailMark {
    chunk: u64,
    end: u64,
    count: u64,
    last_len: u32,
}

impl TailMark {
    /// Whether the mark can describe chunk `no`, a file of `len` bytes: a frame takes at
    /// least its header, which bounds the count, and the last frame lies within the
    /// records.
    fn believable(&self, no: u64, len: u64) -> bool {
        let header = CHUNK_HEADER_LEN as u64;
        let frame = FRAME_HEADER_LEN as u64;
        let last = u64::from(self.last_len);
        self.chunk == no
            && self.end >= header
            && self.end <= len
            && if self.count == 0 {
                self.end == header && last == 0
            } else {
                last >= frame
                    && last <= self.end - header
                    && self.count <= (self.end - header) / frame
            }
    }
}

/// The records of the newest chunk from the checkpoint's mark, if its bytes are still
/// there and every frame after it is valid: `(records, end, last frame's length)`.
/// A power loss below the synced level can leave the file shorter than the mark, or keep
/// its size and lose its last blocks (zeros): the mark's last record then is not a valid
/// frame and ends in zeros. Not a valid frame, but not zeros either, is damage, which
/// `get` reports. `None`: read from the first record instead.
fn from_mark(r: &mut ChunkReader, m: TailMark) -> Result<Option<(u64, u64, u32)>> {
    let confirmed = m.count == 0 || {
        r.seek(m.end - u64::from(m.last_len));
        let valid = matches!(
            r.next()?,
            Next::Frame { len, .. } if len as u64 == u64::from(m.last_len)
        );
        valid || !r.zeros_before(m.end, FRAME_HEADER_LEN)?
    };
    if !confirmed {
        return Ok(None);
    }
    r.seek(m.end);
    let (records, last_len, damage) = scan_frames(r)?;
    if damage.is_some() {
        return Ok(None);
    }
    let last_len = if records == 0 { m.last_len } else { last_len };
    Ok(Some((m.count + records, r.offset(), last_len)))
}

/// The records of the newest chunk from its first: `(records, end, last frame's length)`.
/// An invalid frame with a valid one anywhere after it is damage, not a cut write.
fn from_first(r: &mut ChunkReader) -> Result<(u64, u64, u32)> {
    let (records, last_len, damage) = scan_frames(r)?;
    if let Some(detail) = damage
        && r.valid_frame_follows()?
    {
        return Err(Error::corrupt(
            &r.path,
            r.offset(),
            format!(
                "{detail}, and valid records follow it: this is damage, not an interrupted write"
            ),
        ));
    }
    Ok((records, r.offset(), last_len))
}

/// Reads frames from the reader's offset until the records end or a frame is not valid;
/// returns how many were valid, the length of the last of them (0 if none) and what is
/// wrong with the first invalid one. The reader is left at the end of the last valid
/// frame.
fn scan_frames(r: &mut ChunkReader) -> Result<(u64, u32, Option<String>)> {
    let (mut records, mut last_len) = (0, 0);
    loop {
        match r.next()? {
            Next::Frame { len, .. } => {
                r.advance(len);
                records += 1;
                last_len = len as u32;
            }
            Next::End => return Ok((records, last_len, None)),
            Next::Damaged { detail } => return Ok((records, last_len, Some(detail))),
        }
    }
}

/// Recovers the newest chunk (`newest`: its file, if already open): drops one whose
/// header was never written, cuts a torn last write, and returns the writer placed after
/// its last record, with the chunk's first item.
pub(super) fn recover_tail(
    st: &dyn Storage,
    dir: &Path,
    chunks: &mut Vec<u64>,
    mut newest: Option<Box<dyn StorageFile>>,
    acked: u64,
    sync: bool,
    mark: Option<TailMark>,
) -> Result<(Writer, u64)> {
    loop {
        let no = *chunks.last().expect("not empty");
        let path = chunk_path(dir, no);
        let file = match newest.take() {
            Some(f) => f,
            None => st
                .open(&path, OpenMode::Append)
                .map_err(|e| Error::io("open", &path, e))?,
        };
        let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
        if len < CHUNK_HEADER_LEN as u64 {
            // Created but its header not (fully) written: it holds no records.
            drop(file);
            st.remove(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            if chunks.len() == 1 {
                let w = create_chunk(st, dir, no, acked, sync)?;
                return Ok((w, acked));
            }
            chunks.pop();
            continue;
        }
        // Read through the writer's handle: one open of the file, not two.
        let mut r = ChunkReader::on(file, path.clone(), no)?;
        r.expect_len(len);
        let usable = mark.filter(|m| m.believable(no, len));
        let found = match usable {
            Some(m) => from_mark(&mut r, m)?,
            None => None,
        };
        let (count, end, last_len) = match found {
            Some(found) => found,
            None => {
                // Looked at again from the first record, so that a cut is only ever made
                // on a boundary found by reading every frame before it.
                if usable.is_some() {
                    r = ChunkReader::on(r.into_file(), path.clone(), no)?;
                }
                from_first(&mut r)?
            }
        };
        let first_seq = r.header.first_seq;
        let mut file = r.into_file();
        if end < len {
            // A torn last write: cut it so the next append starts on a frame boundary.
            file.set_len(end)
                .map_err(|e| Error::io("truncate", &path, e))?;
            // Synced at every level, before new records go over the cut ones: a power
            // loss could otherwise give back the cut bytes under a new record's length,
            // zeros completing a cut frame into a valid one, an item that was dropped.
            file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
        }
        return Ok((
            Writer {
                chunk: no,
                path,
                file,
                first_seq,
                count,
                written: end,
                last_len,
                // Not known here: the first synced write then proves nothing, its sync
                // does.
                all_synced: false,
            },
            first_seq,
        ));
    }
}
