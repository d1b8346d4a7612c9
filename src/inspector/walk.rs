//! The walk over a queue's records in sequence order that `snapshot`, `items` and
//! `records` share, and where damage stops it: past a damaged range of a chunk file the
//! records' sequence numbers are unknown (up to the next chunk's first one), so what
//! follows cannot be listed in order or counted.

use super::{ATTEMPTS, Inspector, State, owner_pid};
use crate::error::Result;
use crate::format::decode_frame;
use crate::inspect::dir::{chunk_name, scan_chunk};
use crate::repair::DamagedRange;
use std::time::Duration;

/// Where a walk over the records ended.
pub(super) struct Walked {
    /// Chunk files listed.
    pub(super) chunk_files: u64,
    /// The sequence number after the last intact record of the last chunk read: after
    /// the newest chunk's records, unless the walk stopped before.
    pub(super) next_seq: u64,
    /// The damage the walk stopped at: the records after it were not walked.
    pub(super) stopped_at: Option<DamagedRange>,
}

impl Inspector {
    /// Calls `f` with each intact record from `from` on, in order, until it returns
    /// false: the waiting ones (not acknowledged) with `state`, every one still in the
    /// files without.
    ///
    /// At damage in a chunk file the walk stops, unless the next chunk's first sequence
    /// number shows that every record hidden in the damage is below `from` or
    /// acknowledged. A record being written at the end of the newest chunk of a queue
    /// another process has open is not damage (as in `verify`).
    pub(super) fn each_record(
        &self,
        state: Option<&State>,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Walked> {
        let chunks = self.chunks()?;
        let live = owner_pid(&self.dir).is_some();
        // Damage that hides only records below this one hides nothing asked for.
        let wanted = from.max(state.map_or(0, |s| s.acked.head));
        let mut walked = Walked {
            chunk_files: chunks.len() as u64,
            next_seq: 0,
            stopped_at: None,
        };
        // Damage met, and the first sequence number it may hide.
        let mut hiding: Option<(DamagedRange, u64)> = None;
        for (idx, &no) in chunks.iter().enumerate() {
            let Some(bytes) = self.chunk_bytes(no)? else {
                continue; // deleted by the owner: every item in it was acknowledged
            };
            let scan = scan_chunk(&bytes, no);
            if let Some((damage, first_hidden)) = hiding.take() {
                match scan.header {
                    Some(h) if h.first_seq <= wanted.max(first_hidden) => {}
                    _ => {
                        walked.stopped_at = Some(damage);
                        return Ok(walked);
                    }
                }
            }
            if let Some(h) = scan.header {
                walked.next_seq = h.first_seq + scan.intact as u64;
            }
            for (i, r) in scan.frames.iter().enumerate() {
                let Some(seq) = scan.seq(i) else { break };
                if seq < from || state.is_some_and(|s| s.acked.contains(seq)) {
                    continue;
                }
                let Ok((payload, _)) = decode_frame(&bytes[r.clone()]) else {
                    continue;
                };
                if !f(seq, payload) {
                    return Ok(walked);
                }
            }
            let newest = idx + 1 == chunks.len();
            let being_written =
                |off: u64, len: u64| live && newest && off + len == bytes.len() as u64;
            hiding = scan
                .damage
                .into_iter()
                .find(|&(off, len, _)| !being_written(off, len))
                .map(|(offset, len, detail)| {
                    let file = self.dir.join(chunk_name(no));
                    let range = DamagedRange {
                        file,
                        offset,
                        len,
                        detail,
                    };
                    (range, walked.next_seq)
                });
        }
        walked.stopped_at = hiding.map(|(damage, _)| damage);
        Ok(walked)
    }

    /// Runs `read` again, a few times, while what it read shows damage and another
    /// process has the queue open: the owner may have changed the files between the
    /// reads, so a second look comes before calling anything damage.
    pub(super) fn again_while_damaged<T>(
        &self,
        mut read: impl FnMut() -> Result<T>,
        damaged: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let mut v = read()?;
        for _ in 1..ATTEMPTS {
            if !damaged(&v) || owner_pid(&self.dir).is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            v = read()?;
        }
        Ok(v)
    }
}
