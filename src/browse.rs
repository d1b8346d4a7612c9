//! `Queue::browse`: the waiting items in order, read with a reader of their own, none
//! taken.
//!
//! The iterator keeps its own place (sequence number, chunk, offset) and reads each record
//! under the queue lock, so that it sees the engine's state of that moment: items gotten
//! since it passed them are not its concern, items gotten before it reached them are
//! skipped (it starts again from the engine's reader), and items acknowledged out of order
//! before a reopen (not delivered again) are skipped as `get` skips them. A chunk holding
//! an item not yet gotten is never deleted, so the files it reads stay there.

use crate::codec;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::reader::{ChunkReader, Next};
use crate::retries::Loc;
use parking_lot::MutexGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every item waiting when [`Queue::browse`] was called, in order, each as it is read;
/// none is taken. See [`Queue::browse`].
#[derive(Debug)]
pub struct Browse<'a, T> {
    queue: &'a Queue<T>,
    /// The next item to show, and a reader at its record (`None`: start from the
    /// engine's reader).
    seq: u64,
    reader: Option<ChunkReader>,
    /// Items from here on were put after the browse began.
    end: u64,
    done: bool,
    /// Items given back and waiting when the browse began: shown first, as gets take
    /// them first (those taken meanwhile are skipped).
    returned: std::collections::VecDeque<(u64, Loc)>,
}

impl<'a, T: Serialize + DeserializeOwned> Browse<'a, T> {
    pub(crate) fn new(
        queue: &'a Queue<T>,
        seq: u64,
        end: u64,
        returned: std::collections::VecDeque<(u64, Loc)>,
    ) -> Browse<'a, T> {
        Browse {
            queue,
            seq,
            reader: None,
            end,
            done: false,
            returned,
        }
    }

    /// The next item given back that still waits, read again.
    fn step_returned(&mut self, e: &mut MutexGuard<'_, Engine>) -> Result<Option<T>> {
        while let Some((seq, loc)) = self.returned.pop_front() {
            if !e.retries().is_ready(seq) || self.queue.is_exhausted(e, seq) {
                continue;
            }
            return e.decode_again(seq, loc).map(Some);
        }
        Ok(None)
    }

    /// The next item at or after `self.seq`, or `None` past the end.
    fn step(&mut self, e: &mut MutexGuard<'_, Engine>) -> Result<Option<T>> {
        loop {
            e.check()?;
            if self.reader.is_none() || self.seq < e.read() {
                // Not started, or consumers got past us (also while a write below let go
                // of the lock): go on from the engine's reader.
                let mut r = ChunkReader::open(&**e.storage(), e.dir(), e.reader_at().0)?;
                r.seek(e.reader_at().1);
                (self.seq, self.reader) = (e.read(), Some(r));
            }
            // Items a full disk dropped are not waiting any more.
            self.end = self.end.min(e.accepted());
            if self.seq >= self.end {
                return Ok(None);
            }
            if self.seq >= e.written() {
                // Still pending (buffered level), or being written: written first, as
                // `get` does; the lock is let go meanwhile, so look again from the top.
                self.queue.write_pending_for_browse(e)?;
                continue;
            }
            let r = self.reader.as_mut().expect("positioned above");
            match e.next_record(r, self.seq)? {
                Next::Frame { payload, len } => {
                    let seq = self.seq;
                    // Acknowledged before a reopen, or waiting out a delay: not waiting.
                    let skip = e.acks().skips(seq)
                        || e.retries().is_ahead(seq)
                        || self.queue.is_exhausted(e, seq);
                    let item = (!skip).then(|| {
                        codec::decode(r.payload(payload)).map_err(|source| Error::Decode {
                            seq,
                            path: r.path.clone(),
                            offset: r.offset(),
                            source,
                        })
                    });
                    r.advance(len);
                    self.seq += 1;
                    if let Some(item) = item {
                        return item.map(Some);
                    }
                }
                Next::Damaged { detail } => {
                    return Err(Error::corrupt(&r.path, r.offset(), detail));
                }
                Next::End => {
                    return Err(Error::corrupt(
                        &r.path,
                        r.offset(),
                        format!("the file ends before item {}, which was written", self.seq),
                    ));
                }
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for Browse<'_, T> {
    type Item = Result<T>;

    /// The next waiting item. An item that does not decode is an `Err` ([`Error::Decode`])
    /// and the browse goes on after it; damage or a failed read ends it after the `Err`.
    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let mut e = self.queue.lock_engine();
        let res = match self.step_returned(&mut e) {
            Ok(None) => self.step(&mut e),
            other => other,
        };
        match res {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err @ Error::Decode { .. }) => Some(Err(err)),
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}
