//! Space kept back so that a full disk can be drained (FORMAT.md §reserve).
//!
//! Acknowledging an item appends to the journal, a checkpoint writes a new `info`, and
//! `open` may write both: each needs a few new blocks, which a disk that puts have filled
//! does not have. So a queue keeps `reserve`, a file of zero bytes that it deletes when
//! one of those writes fails for want of space, and then writes again. Puts are refused
//! (`Error::NoSpace`) until the reserve is back, which the queue tries again once
//! acknowledged chunk files are deleted, and before a put when the file system reports
//! room for it (or, where it cannot say, at most every [`RETRY`]): puts cannot eat what
//! draining needs.

use crate::error::{Error, Result, is_no_space};
use crate::storage::{Storage, remove_if_exists};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) const RESERVE: &str = "reserve";
/// Enough for the journal to reach its checkpoint size while the reserve is missing
/// ([`SHORT_JOURNAL`]) with its preallocation window (512 + 256 KiB), a new `info`, and
/// what `open` writes, with room to spare.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;
/// The journal length that wants a checkpoint while the reserve is missing (the disk
/// filled up), when less than the usual one: each checkpoint empties the journal, so it
/// grows and shrinks within the space the reserve gave back, however long the disk
/// stays full.
pub(crate) const SHORT_JOURNAL: u64 = 512 * 1024;
/// How often a put retries making the reserve while it is missing.
const RETRY: Duration = Duration::from_millis(20);

/// Whether the reserve is in place, and when a put last tried to make it.
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    present: bool,
    /// A buffered write failed for want of space and its items are still pending.
    stuck: bool,
    tried: Option<Instant>,
    /// Puts must ask `Engine::room_for_puts` first: the reserve is missing or items are
    /// stuck. Read without the queue lock by buffered puts (`intake.rs`).
    short: Arc<AtomicBool>,
}

impl Reserve {
    /// Makes the reserve if it is missing or short (best effort: a full disk leaves it
    /// missing, which refuses puts until it is made).
    pub(crate) fn ensure(st: &dyn Storage, dir: &Path) -> Result<Reserve> {
        let mut r = Reserve::default();
        r.set_present(make(st, dir)?);
        Ok(r)
    }

    /// The flag buffered puts read (see `short`).
    pub(crate) fn short_flag(&self) -> Arc<AtomicBool> {
        self.short.clone()
    }

    /// Whether puts are refused until `room_for_puts` finds room.
    pub(crate) fn short(&self) -> bool {
        !self.present || self.stuck
    }

    pub(crate) fn stuck(&self) -> bool {
        self.stuck
    }

    pub(crate) fn set_stuck(&mut self, stuck: bool) {
        self.stuck = stuck;
        self.short.store(self.short(), Ordering::Relaxed);
    }

    fn set_present(&mut self, present: bool) {
        self.present = present;
        self.short.store(self.short(), Ordering::Relaxed);
    }

    /// Before open knows: a reserve that `with_room` may give up if there is one.
    pub(crate) fn present_if_any() -> Reserve {
        Reserve {
            present: true,
            ..Reserve::default()
        }
    }

    pub(crate) fn present(&self) -> bool {
        self.present
    }

    /// Runs `op`; when it fails for want of space and the reserve is there, deletes the
    /// reserve and runs it once more. `op` must be safe to repeat after it failed.
    pub(crate) fn with_room<R>(
        &mut self,
        st: &dyn Storage,
        dir: &Path,
        mut op: impl FnMut() -> Result<R>,
    ) -> Result<R> {
        match op() {
            Err(e) if e.is_no_space() && self.release(st, dir)? => op(),
            r => r,
        }
    }

    /// Deletes the reserve; true when there was one to delete.
    pub(crate) fn release(&mut self, st: &dyn Storage, dir: &Path) -> Result<bool> {
        if !self.present {
            return Ok(false);
        }
        self.set_present(false);
        let path = dir.join(RESERVE);
        remove_if_exists(st, &path).map_err(|e| Error::io("remove", &path, e))?;
        Ok(true)
    }

    /// Makes the reserve again if it is missing and there is room for it; with
    /// `throttled`, where free space is unknown, at most every [`RETRY`]. True when it is
    /// in place.
    pub(crate) fn restore(
        &mut self,
        st: &dyn Storage,
        dir: &Path,
        throttled: bool,
    ) -> Result<bool> {
        if self.present {
            return Ok(true);
        }
        // Only where it fits with room to spare (one `statvfs`): writing it to find out
        // would take, for a moment, space that a write in flight (a leader's, without
        // the lock) needs. Where free space is unknown, puts try at most every RETRY.
        let free = st
            .available()
            .map_err(|e| Error::io("check free space for", dir, e))?;
        match free {
            Some(free) if free < 2 * RESERVE_BYTES => return Ok(false),
            Some(_) => {}
            None => {
                let now = Instant::now();
                if throttled && self.tried.is_some_and(|t| now.duration_since(t) < RETRY) {
                    return Ok(false);
                }
                self.tried = Some(now);
            }
        }
        self.set_present(make(st, dir)?);
        Ok(self.present)
    }
}

/// Makes `reserve` whole if it is not; false when the disk has no room for it (then it
/// is not left half made). Its bytes are never read, so nothing is synced: a power loss
/// may leave it short, and the next open makes it whole again.
fn make(st: &dyn Storage, dir: &Path) -> Result<bool> {
    let path = dir.join(RESERVE);
    match st.reserve_space(&path, RESERVE_BYTES) {
        Ok(()) => Ok(true),
        Err(e) if is_no_space(&e) => {
            remove_if_exists(st, &path).map_err(|e| Error::io("remove", &path, e))?;
            Ok(false)
        }
        Err(e) => Err(Error::io("write", &path, e)),
    }
}
