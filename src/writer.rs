//! The writer: appending frames to the newest chunk file, starting the next chunk at the
//! limit, and creating a chunk. Called by a write leader without the queue lock
//! (`commit.rs`) or by the engine under it.

use crate::engine::{ChunkLimit, ChunkMeta, create_error};
use crate::error::{Error, Result};
use crate::format::{CHUNK_HEADER_LEN, ChunkHeader, FRAME_HEADER_LEN, mark};
use crate::reader::chunk_path;
use crate::storage::{OpenMode, Storage, StorageFile};
use std::path::{Path, PathBuf};

/// The chunk being appended to.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) chunk: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) first_seq: u64,
    /// Records written to the chunk.
    pub(crate) count: u64,
    /// Bytes handed to the OS (header included).
    pub(crate) written: u64,
    /// Length of the last record's frame, 0 if there is none (for `info`'s tail mark).
    pub(crate) last_len: u32,
    /// Every byte of the chunk is synced: the next synced write marks its first frame
    /// (FORMAT.md §Records, sync mark).
    pub(crate) all_synced: bool,
}

/// Appends a batch of frames to the writer's chunk, starting new chunks at `limit`
/// (each full chunk synced first at the synced level) and listing them in `started`.
/// On a full disk (`NoSpace`) the frames before the failed append are written, and
/// nothing of the rest is left in any file.
pub(crate) fn write_frames(
    storage: &dyn Storage,
    dir: &Path,
    w: &mut Writer,
    mut batch: &[u8],
    limit: ChunkLimit,
    sync: bool,
    started: &mut Vec<ChunkMeta>,
) -> Result<()> {
    while !batch.is_empty() {
        // Whatever fits by count and by size; an empty chunk takes its first record
        // whatever its size. Nothing fits: the chunk is full.
        let room = limit.bytes.saturating_sub(w.written);
        let (bytes, n, last_len) = split_frames(
            batch,
            limit.records.saturating_sub(w.count),
            room,
            w.count == 0,
        );
        if n == 0 {
            // Give back the space reserved after the last record: a full chunk ends at
            // its last record (FORMAT.md §Preallocation).
            w.file
                .set_len(w.written)
                .map_err(|e| Error::io("truncate", &w.path, e))?;
            if sync {
                w.file
                    .sync_data()
                    .map_err(|e| Error::io("sync", &w.path, e))?;
            }
            *w = create_chunk(storage, dir, w.chunk + 1, w.first_seq + w.count, sync)?;
            started.push(ChunkMeta {
                no: w.chunk,
                first_seq: Some(w.first_seq),
            });
            continue;
        }
        append_frames(w, &batch[..bytes], sync)?;
        w.count += n;
        w.written += bytes as u64;
        w.last_len = last_len;
        batch = &batch[bytes..];
    }
    if sync {
        w.file
            .sync_data()
            .map_err(|e| Error::io("sync", &w.path, e))?;
        w.all_synced = true;
    }
    Ok(())
}

/// Appends whole frames to the writer's chunk. A synced write into a chunk whose every
/// byte is synced gives its first frame the sync mark, in a copy of the batch (which may
/// be handed to a reader as it is; one copy costs less than a second `pwrite`, next to
/// the `fdatasync` that follows): a valid marked frame on disk proves that everything
/// before it was synced, which is how recovery after a restart tells damage from a torn
/// write.
fn append_frames(w: &mut Writer, frames: &[u8], sync: bool) -> Result<()> {
    let res = if sync && w.all_synced {
        let len = u32::from_le_bytes(frames[..4].try_into().expect("4 bytes"));
        let first = FRAME_HEADER_LEN + len as usize;
        let mut buf = frames.to_vec();
        mark(&mut buf[..first]);
        w.file.append(&buf)
    } else {
        w.file.append(frames)
    };
    w.all_synced = false;
    let Err(e) = res else { return Ok(()) };
    let err = Error::write("append to", &w.path, e);
    if err.is_no_space() {
        // A write cut short by a full disk may have left part of the frames: cut them
        // off, so that the file ends at its last whole record again.
        w.file
            .set_len(w.written)
            .map_err(|e| Error::io("truncate", &w.path, e))?;
    }
    Err(err)
}

/// The length and count of the leading frames of `batch`, at most `max` of them and at
/// most `room` bytes (but the first one regardless when `first_free`), and the length of
/// the last of those frames. The frames were built by this process, so their length
/// fields are trusted.
pub(crate) fn split_frames(
    batch: &[u8],
    max: u64,
    room: u64,
    first_free: bool,
) -> (usize, u64, u32) {
    let (mut at, mut n, mut last) = (0, 0, 0);
    while at < batch.len() && n < max {
        let len = u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes"));
        let frame = FRAME_HEADER_LEN as u32 + len;
        if (at + frame as usize) as u64 > room && !(n == 0 && first_free) {
            break;
        }
        last = frame;
        at += frame as usize;
        n += 1;
    }
    (at, n, last)
}

/// Creates chunk file `chunk` holding only its header.
pub(crate) fn create_chunk(
    storage: &dyn Storage,
    dir: &Path,
    chunk: u64,
    first_seq: u64,
    sync: bool,
) -> Result<Writer> {
    let path = chunk_path(dir, chunk);
    let mut file = storage
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| create_error(storage, dir, &path, e))?;
    let header = ChunkHeader { chunk, first_seq }.encode();
    if let Err(e) = file.append(&header) {
        let err = Error::write("write", &path, e);
        // A chunk without its header would be damage: a full disk leaves no file.
        drop(file);
        return match storage.remove(&path) {
            Err(e) if err.is_no_space() => Err(Error::io("remove", &path, e)),
            _ => Err(err),
        };
    }
    if sync {
        file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(Writer {
        chunk,
        path,
        file,
        first_seq,
        count: 0,
        written: CHUNK_HEADER_LEN as u64,
        last_len: 0,
        all_synced: sync,
    })
}
