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
    /// Chunk files read (those the owner deleted before they were read not counted).
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
    ///
    /// A live owner may delete the newest chunks listed (every item in them acknowledged)
    /// and write newer ones before they are read: the walk then lists the directory again
    /// and goes on into those (a few times at most), or it would end with no record and
    /// a next sequence number of 0 (seen under load: `stat` said "waiting 0").
    pub(super) fn each_record(
        &self,
        state: Option<&State>,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Walked> {
        let mut walk = Walk {
            state,
            from,
            live: owner_pid(&self.dir).is_some(),
            // Damage that hides only records below this one hides nothing asked for.
            wanted: from.max(state.map_or(0, |s| s.acked.head)),
            walked: Walked {
                chunk_files: 0,
                next_seq: 0,
                stopped_at: None,
            },
            hiding: None,
        };
        let mut chunks = self.chunks()?;
        let mut relists = 0;
        loop {
            let mut newest_gone = false;
            for (idx, &no) in chunks.iter().enumerate() {
                let newest = idx + 1 == chunks.len();
                let Some(bytes) = self.chunk_bytes(no)? else {
                    // Deleted by the owner: every item in it was acknowledged.
                    newest_gone = newest;
                    continue;
                };
                walk.walked.chunk_files += 1;
                if walk.chunk(self, no, &bytes, newest, &mut f) {
                    return Ok(walk.walked);
                }
            }
            let last = chunks.last().copied();
            if !newest_gone || relists == ATTEMPTS {
                break;
            }
            relists += 1;
            chunks = self.chunks()?;
            chunks.retain(|&no| Some(no) > last);
        }
        walk.walked.stopped_at = walk.hiding.map(|(damage, _)| damage);
        Ok(walk.walked)
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

/// The state of a walk over the chunk files (see `Inspector::each_record`).
struct Walk<'a> {
    /// With the acknowledgements: only the waiting records are walked.
    state: Option<&'a State>,
    /// The first sequence number asked for.
    from: u64,
    /// Another process has the queue open.
    live: bool,
    /// Damage that hides only records below this one hides nothing asked for.
    wanted: u64,
    walked: Walked,
    /// Damage met, and the first sequence number it may hide.
    hiding: Option<(DamagedRange, u64)>,
}

impl Walk<'_> {
    /// Walks the records of chunk `no` (`bytes`). True when the walk ends here: `f`
    /// returned false, or damage before this chunk hides records asked for.
    fn chunk(
        &mut self,
        inspector: &Inspector,
        no: u64,
        bytes: &[u8],
        newest: bool,
        f: &mut impl FnMut(u64, &[u8]) -> bool,
    ) -> bool {
        let scan = scan_chunk(bytes, no);
        if let Some((damage, first_hidden)) = self.hiding.take() {
            match scan.header {
                Some(h) if h.first_seq <= self.wanted.max(first_hidden) => {}
                _ => {
                    self.walked.stopped_at = Some(damage);
                    return true;
                }
            }
        }
        if let Some(h) = scan.header {
            self.walked.next_seq = h.first_seq + scan.intact as u64;
        }
        for (i, r) in scan.frames.iter().enumerate() {
            let Some(seq) = scan.seq(i) else { break };
            if seq < self.from || self.state.is_some_and(|s| s.acked.contains(seq)) {
                continue;
            }
            let Ok((payload, _)) = decode_frame(&bytes[r.clone()]) else {
                continue;
            };
            if !f(seq, payload) {
                return true;
            }
        }
        let live = self.live;
        let being_written = |off: u64, len: u64| live && newest && off + len == bytes.len() as u64;
        let next_seq = self.walked.next_seq;
        self.hiding = scan
            .damage
            .into_iter()
            .find(|&(off, len, _)| !being_written(off, len))
            .map(|(offset, len, detail)| {
                let file = inspector.dir.join(chunk_name(no));
                let range = DamagedRange {
                    file,
                    offset,
                    len,
                    detail,
                };
                (range, next_seq)
            });
        false
    }
}
