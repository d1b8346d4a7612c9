//! The dead letters: items taken out of the queue for good but kept, with why. They are a
//! diskq queue of their own in the subdirectory `dead` (FORMAT.md §dead), always at
//! [`Durability::Synced`]: an item moves there by a put that is synced before the item is
//! acknowledged in the queue, so a crash at any point leaves it in one of the two, or in
//! both, never in neither.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::options::{Durability, Options};
use crate::queue::Queue;
use crate::storage::Storage;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The dead letters' directory inside the queue's.
pub(crate) const DEAD: &str = "dead";

/// The item type tag of the dead letters' queue (its `schema`).
const SCHEMA: &str = "diskq/dead-letter/v1";

/// One dead letter as stored: the item's bytes as the queue held them, so that an item
/// that does not decode is kept whole and one that does goes back unchanged. Stored as a
/// tuple of its fields in this order (FORMAT.md §dead).
#[derive(Debug, Clone)]
pub(crate) struct DeadRecord {
    /// The item's sequence number in the queue.
    pub(crate) seq: u64,
    /// Its deliveries when it failed.
    pub(crate) attempts: u32,
    pub(crate) reason: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) failed_at: u64,
    pub(crate) payload: Vec<u8>,
}

type Stored = (u64, u32, String, u64, Vec<u8>);

impl Serialize for DeadRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            self.seq,
            self.attempts,
            &self.reason,
            self.failed_at,
            &self.payload,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for DeadRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seq, attempts, reason, failed_at, payload) = Stored::deserialize(d)?;
        Ok(DeadRecord {
            seq,
            attempts,
            reason,
            failed_at,
            payload,
        })
    }
}

/// The dead letters' queue of one queue, opened when it exists or when the first item
/// goes there.
pub(crate) struct DeadSlot {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// Set once, never taken: borrowers see it as long as the queue lives.
    queue: OnceLock<Box<Queue<DeadRecord>>>,
    opening: Mutex<()>,
    /// Held by `requeue_all` and `purge`, one at a time: each acknowledges (FIFO) exactly
    /// the batch it took, which holds only while no other batch is in flight.
    pub(crate) moving: Mutex<()>,
}

impl fmt::Debug for DeadSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadSlot")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DeadSlot {
    /// The dead letters of the queue in `dir` (reached through `storage`, which is
    /// anchored there), opened now if they exist.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<DeadSlot> {
        let slot = DeadSlot {
            storage,
            dir: dir.join(DEAD),
            clock,
            queue: OnceLock::new(),
            opening: Mutex::new(()),
            moving: Mutex::new(()),
        };
        if slot.storage.clone().anchor(&slot.dir).is_ok() {
            let _ = slot.queue.set(Box::new(slot.open_queue()?));
        }
        Ok(slot)
    }

    fn open_queue(&self) -> Result<Queue<DeadRecord>> {
        let mut opts = Options::new().durability(Durability::Synced).schema(SCHEMA);
        // The queue's clock, which a test may drive by hand: a delay means the same in both.
        opts.clock = Some(self.clock.clone());
        opts.open_with(self.storage.clone(), &self.dir)
    }

    /// The dead letters' queue, if there is one.
    pub(crate) fn get(&self) -> Option<&Queue<DeadRecord>> {
        self.queue.get().map(|q| &**q)
    }

    /// The dead letters' queue, created if missing (its directory made durable in the
    /// queue's before anything goes there).
    fn get_or_create(&self) -> Result<&Queue<DeadRecord>> {
        let _opening = self.opening.lock();
        if let Some(q) = self.get() {
            return Ok(q);
        }
        let q = self.open_queue()?;
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        self.storage
            .sync_dir(parent)
            .map_err(|e| Error::io("sync directory", parent, e))?;
        Ok(&**self.queue.get_or_init(|| Box::new(q)))
    }

    /// Stores a dead letter, synced, before its item is acknowledged in the queue.
    pub(crate) fn bury(&self, rec: &DeadRecord) -> Result<()> {
        self.get_or_create()?.put(rec)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.wall_ms()
    }
}

/// The dead letters of a queue ([`Queue::dead_letters`]): items taken out for good but
/// kept, with the reason, their attempts and the time of the failure. An item goes there
/// by [`Delivery::dead_letter`](crate::Delivery::dead_letter), when it was delivered
/// [`Options::max_deliveries`] times without an acknowledgement, or when its bytes do not
/// decode as the queue's item type.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
/// q.put(&"bad job".to_string())?;
/// q.get_delivery()?.dead_letter("cannot parse")?;
/// let dl = q.dead_letters();
/// assert_eq!(dl.len(), 1);
/// for d in dl.iter() {
///     let d = d?;
///     assert_eq!((d.item().map(String::as_str), d.reason(), d.attempts()), (Some("bad job"), "cannot parse", 1));
/// }
/// assert_eq!(dl.requeue_all()?, 1); // back in the queue, as a new item
/// assert_eq!(q.get()?, "bad job");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DeadLetters<'q, T> {
    queue: &'q Queue<T>,
    dead: Option<&'q Queue<DeadRecord>>,
}

impl<T> fmt::Debug for DeadLetters<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<'q, T> DeadLetters<'q, T> {
    pub(crate) fn new(queue: &'q Queue<T>, dead: Option<&'q Queue<DeadRecord>>) -> Self {
        DeadLetters { queue, dead }
    }

    /// Dead letters kept.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert_eq!(q.dead_letters().len(), 0); // none yet: no `dead` directory either
    /// q.put(&1)?;
    /// q.get_delivery()?.dead_letter("no")?;
    /// assert_eq!(q.dead_letters().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.dead.as_ref().map_or(0, |q| q.len())
    }

    /// True when there is none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.dead_letters().is_empty());
    /// q.put(&1)?;
    /// q.get_delivery()?.dead_letter("bad")?;
    /// assert!(!q.dead_letters().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'q, T: Serialize + DeserializeOwned> DeadLetters<'q, T> {
    /// Every dead letter, oldest first, none taken: an iterator of
    /// `Result<DeadLetter<T>>`.
    ///
    /// # Errors
    /// Each is [`Error::Corrupt`] or [`Error::Io`] when the dead letters' files cannot be
    /// read (which ends the iteration).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// q.get_delivery()?.dead_letter("first")?;
    /// q.get_delivery()?.dead_letter("second")?;
    /// let reasons: Vec<String> = q
    ///     .dead_letters()
    ///     .iter()
    ///     .map(|d| d.map(|d| d.reason().to_string()))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(reasons, ["first", "second"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> DeadLetterIter<'q, T> {
        DeadLetterIter {
            inner: self.dead.as_ref().map(|q| q.browse()),
            _item: PhantomData,
        }
    }

    /// Puts every dead letter back into the queue as a new item (at the end, its
    /// attempts starting again from 0) and removes it from the dead letters. Each batch
    /// is synced in the queue before it leaves the dead letters: a crash leaves an item
    /// in one of the two, or in both, never in neither. Returns how many went back.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert_eq!(q.dead_letters().requeue_all()?, 0);
    /// q.put(&7)?;
    /// q.get_delivery()?.dead_letter("flaky")?;
    /// assert_eq!(q.dead_letters().requeue_all()?, 1);
    /// assert_eq!(q.get_delivery()?.attempt(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Queue::put`] and [`Queue::task_done`]; the items moved before the error
    /// stay moved.
    pub fn requeue_all(&self) -> Result<usize> {
        let Some(dead) = self.dead else {
            return Ok(0);
        };
        let _moving = self.queue.dead.moving.lock();
        let mut moved = 0;
        loop {
            let batch = take_batch(dead)?;
            if batch.is_empty() {
                return Ok(moved);
            }
            let payloads: Vec<&[u8]> = batch.iter().map(|d| &d.payload[..]).collect();
            // On failure the batch is dropped, so given back: still dead letters.
            self.queue.put_raw_synced(&payloads)?;
            let n = batch.len();
            for d in batch {
                d.into_inner();
            }
            // Exactly this batch is in flight (`moving`): one synced entry for all.
            dead.task_done_n(n)?;
            moved += n;
        }
    }

    /// Removes every dead letter for good. Returns how many.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&7)?;
    /// q.get_delivery()?.dead_letter("obsolete")?;
    /// assert_eq!(q.dead_letters().purge()?, 1);
    /// assert!(q.dead_letters().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Queue::task_done`] on the dead letters' queue.
    pub fn purge(&self) -> Result<usize> {
        let Some(dead) = self.dead else {
            return Ok(0);
        };
        let _moving = self.queue.dead.moving.lock();
        let mut purged = 0;
        loop {
            let batch = take_batch(dead)?;
            if batch.is_empty() {
                return Ok(purged);
            }
            let n = batch.len();
            for d in batch {
                d.into_inner();
            }
            dead.task_done_n(n)?;
            purged += n;
        }
    }
}

/// Up to 1,024 dead letters, taken (in flight) from the dead letters' queue: given back
/// if dropped.
fn take_batch(dead: &Queue<DeadRecord>) -> Result<Vec<crate::Delivery<'_, DeadRecord>>> {
    let mut batch = Vec::new();
    while batch.len() < 1024 {
        match dead.get_delivery_timeout(Duration::ZERO) {
            Ok(d) => batch.push(d),
            Err(Error::Timeout) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(batch)
}

/// The dead letters, oldest first ([`DeadLetters::iter`]).
pub struct DeadLetterIter<'a, T> {
    inner: Option<crate::Browse<'a, DeadRecord>>,
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for DeadLetterIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterIter").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for DeadLetterIter<'_, T> {
    type Item = Result<DeadLetter<T>>;

    fn next(&mut self) -> Option<Result<DeadLetter<T>>> {
        let rec = self.inner.as_mut()?.next()?;
        Some(rec.map(DeadLetter::new))
    }
}

/// One dead letter: the item (when its bytes decode), why it failed, its attempts and
/// when.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let q: diskq::Queue<u32> = diskq::Options::new().schema("n").open(dir.path())?;
/// q.put(&41)?;
/// let d = q.get_delivery()?;
/// d.dead_letter("out of range")?;
/// let dl = q.dead_letters();
/// let d = dl.iter().next().unwrap()?;
/// assert_eq!((d.seq(), d.attempts(), d.reason(), d.item()), (0, 1, "out of range", Some(&41)));
/// assert!(d.failed_at() <= std::time::SystemTime::now());
/// assert_eq!(d.bytes(), 41u32.to_le_bytes()); // as stored (bincode)
/// drop(q);
/// // Read as another type, its bytes do not decode: `item()` is `None`, the bytes stay.
/// let q: diskq::Queue<String> = diskq::Options::new().schema("n").open(dir.path())?;
/// let dl = q.dead_letters();
/// let d = dl.iter().next().unwrap()?;
/// assert_eq!((d.item(), d.bytes().len()), (None, 4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetter<T> {
    rec: DeadRecord,
    item: Option<T>,
}

impl<T: DeserializeOwned> DeadLetter<T> {
    fn new(rec: DeadRecord) -> DeadLetter<T> {
        let item = crate::codec::decode(&rec.payload).ok();
        DeadLetter { rec, item }
    }
}

impl<T> DeadLetter<T> {
    /// The item's sequence number in the queue it came from.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(d.seq(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.rec.seq
    }

    /// How many times it had been delivered.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(d.attempts(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attempts(&self) -> u32 {
        self.rec.attempts
    }

    /// Why it is here: the reason given to `dead_letter`, the deliveries it used up, or
    /// the error that kept its bytes from decoding.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(d.reason(), "bad input");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reason(&self) -> &str {
        &self.rec.reason
    }

    /// When it came here.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert!(d.failed_at() <= std::time::SystemTime::now());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.rec.failed_at)
    }

    /// The item; `None` when its bytes do not decode as `T` (see
    /// [`bytes`](Self::bytes)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(d.item().map(String::as_str), Some("job"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn item(&self) -> Option<&T> {
        self.item.as_ref()
    }

    /// The item's bytes as the queue stored them (bincode).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(bincode::deserialize::<String>(d.bytes())?, "job");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.rec.payload
    }
}
