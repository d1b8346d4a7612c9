//! [`Queue::stats`]: the numbers monitoring needs, in one snapshot.

use crate::queue::Queue;
use std::time::Duration;

/// What a queue holds, at one moment ([`Queue::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Items a get could take (now, or once resumed): [`Queue::len`].
    pub len: usize,
    /// Items delivered and not yet acknowledged, given back or run out of lease.
    pub in_flight: usize,
    /// Items given back with [`nack_after`](crate::Delivery::nack_after) whose delay is
    /// not over.
    pub delayed: usize,
    /// Items in the [dead letters](Queue::dead_letters).
    pub dead_letters: usize,
    /// Items put and not yet acknowledged (or dead-lettered): [`Queue::unfinished`].
    pub unfinished: usize,
    /// Bytes of the queue's files (the dead letters' included), as the file system
    /// reports their sizes.
    pub bytes_on_disk: u64,
    /// How long ago the oldest item a get could take now was written (not counting
    /// delayed or in-flight items); `None` when there is none, or when it was written by
    /// a version of diskq that did not record put times. Exact to the millisecond for
    /// items written since open while the backlog is short; for older ones, to within
    /// the spacing of the put times kept (FORMAT.md §info, `marks`).
    pub oldest_age: Option<Duration>,
    /// Whether gets are paused ([`Queue::pause`]).
    pub paused: bool,
}

impl<T> Queue<T> {
    /// The queue's numbers for monitoring, in one snapshot: waiting, in flight, delayed,
    /// dead letters, bytes on disk, and the age of the oldest waiting item.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2, 3, 4])?;
    /// let _held = q.get_delivery()?;
    /// q.get_delivery()?.nack_after(Duration::from_secs(60))?;
    /// q.get_delivery()?.dead_letter("bad")?;
    /// let s = q.stats();
    /// assert_eq!((s.len, s.in_flight, s.delayed, s.dead_letters), (1, 1, 1, 1));
    /// assert_eq!(s.unfinished, 3);
    /// assert!(s.oldest_age.is_some() && s.bytes_on_disk > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let mut e = self.engine.lock();
        e.promote();
        // A pause or resume from another process counts as soon as it would for a get.
        e.poll_pause();
        let intake = self.intake_len();
        let len = (e.len() + intake) as usize;
        // The first item a get could take: given back, else the reader's next that is
        // neither acknowledged before a reopen nor waiting out a delay.
        let next_fresh = || {
            let mut s = e.read();
            while s < e.tail() && (e.acks().skips(s) || e.retries().is_ahead(s)) {
                s += 1;
            }
            (s < e.tail()).then_some(s)
        };
        let oldest = e
            .retries()
            .first_ready()
            .map(|(s, _)| s)
            .or_else(next_fresh);
        let now = e.retries().clock().wall_ms();
        let oldest_age = oldest
            .and_then(|s| e.marks().time_of(s))
            .map(|t| Duration::from_millis(now.saturating_sub(t)));
        let stats = Stats {
            len,
            in_flight: e.acks().in_flight(e.read()) as usize,
            delayed: e.retries().delayed() as usize,
            dead_letters: 0,
            unfinished: (e.unfinished() + intake) as usize,
            bytes_on_disk: 0,
            oldest_age: oldest_age.or((intake > 0).then_some(Duration::ZERO)),
            paused: e.paused(),
        };
        let (storage, dir) = (e.storage().clone(), e.dir().clone());
        drop(e);
        let dead = self.dead.get().map(|q| q.stats());
        Stats {
            dead_letters: dead.as_ref().map_or(0, |d| d.len),
            bytes_on_disk: files_bytes(&*storage, &dir) + dead.map_or(0, |d| d.bytes_on_disk),
            ..stats
        }
    }
}

/// The sizes of the regular files in `dir` (best effort: a file deleted meanwhile counts
/// nothing).
fn files_bytes(storage: &dyn crate::storage::Storage, dir: &std::path::Path) -> u64 {
    let Ok(names) = storage.list(dir) else {
        return 0;
    };
    names
        .iter()
        .filter(|n| *n != crate::dead_letters::DEAD)
        .filter_map(|n| {
            let f = storage
                .open(&dir.join(n), crate::storage::OpenMode::Read)
                .ok()?;
            f.size().ok()
        })
        .sum()
}
