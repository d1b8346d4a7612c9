//! `Queue<T>`: the blocking, typed API over the engine, with its lock and condition
//! variables.

use crate::browse::Browse;
use crate::codec::{self, Frames};
use crate::commit::{
    Signals, journal_delivery, journal_through, lead_acks, lead_writes, wait_idle, write_alone,
    write_through,
};
use crate::dead_letters::DeadSlot;
use crate::delivery::{Delivery, Ticket};
use crate::engine::{ACK_BATCH, Engine, Fate, WRITE_BATCH, check_dir};
use crate::error::{Error, Result};
use crate::intake::Intake;
use crate::options::{Durability, Options};
use crate::recovery::{self, LockGuard};
use crate::retries::Handed;
use crate::storage::{FsStorage, Storage};
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many times a consumer looks again for an item before it sleeps, and how long it
/// spins before each look (256 `pause`s are about 6 µs here; with the yield after them,
/// about 40 µs in all). Fewer, longer spins than 20 of 64 (the same time in all) give
/// W2 6-10% more: each look takes the lock from the producer it waits for, and a
/// consumer that comes back later finds more items.
const SPINS: u32 = 6;
const SPIN_PAUSES: u32 = 256;

thread_local! {
    /// Per-thread frame buffer: items are serialized outside the queue lock without an
    /// allocation per put.
    static FRAME: RefCell<Frames> = const { RefCell::new(Frames::new()) };
}

/// A persistent, thread-safe FIFO queue of `T` stored in a directory.
///
/// Share it between threads with [`Arc`] or scoped threads: `Queue<T>` is `Send + Sync`.
/// Items are serialized with bincode; they live on disk, not in memory.
///
/// ```
/// use diskq::Queue;
/// # let dir = tempfile::tempdir()?;
/// let q: Queue<String> = Queue::open(dir.path())?;
/// q.put(&"first".to_string())?;
/// q.put(&"second".to_string())?;
/// assert_eq!(q.get()?, "first");
/// q.task_done()?; // "first" is gone for good
/// drop(q);
///
/// // "second" survived the restart.
/// let q: Queue<String> = Queue::open(dir.path())?;
/// assert_eq!(q.get()?, "second");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    pub(crate) engine: Mutex<Engine>,
    /// Where puts at the buffered level leave their frames without the queue lock, when
    /// the queue is unbounded (`intake.rs`).
    intake: Option<Intake>,
    pub(crate) sig: Signals,
    pub(crate) not_full: crate::waitlist::WaitList,
    pub(crate) all_done: Condvar,
    max_size: u64,
    max_bytes: u64,
    pub(crate) durability: Durability,
    /// `Options::max_deliveries`.
    pub(crate) max_deliveries: Option<u32>,
    /// The dead letters (`dead_letters.rs`).
    pub(crate) dead: DeadSlot,
    dir: PathBuf,
    /// What `open` found and cut after a restart of the machine.
    recovered: crate::Recovery,
    // Dropped after `engine` (field order), so the lock outlives the final checkpoint.
    _lock: LockGuard,
    _item: PhantomData<fn(T) -> T>,
}

impl Options {
    /// Opens (creating it if missing) and recovers the queue in `dir`.
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked) when another `Queue` has the directory open;
    /// [`Error::Corrupt`](crate::Error::Corrupt) or
    /// [`Error::MissingInfo`](crate::Error::MissingInfo) when the files are damaged beyond a
    /// torn tail; [`Error::Io`](crate::Error::Io) when the file system refuses (for
    /// example, `dir` is a file).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(100).open(dir.path())?;
    /// q.put(&1)?;
    /// let file = dir.path().join("q00000");
    /// assert!(diskq::Options::new().open::<u32>(&file).is_err()); // not a directory
    /// // While `q` has it open, the directory is in use:
    /// let e = diskq::Options::new().open::<u32>(dir.path()).unwrap_err();
    /// assert!(e.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open<T: Serialize + DeserializeOwned>(&self, dir: impl AsRef<Path>) -> Result<Queue<T>> {
        Queue::open_on(Arc::new(FsStorage), self.clone(), dir.as_ref())
    }

    /// Opens the queue on another [`Storage`](crate::storage::Storage) (tests, fuzzing).
    #[cfg(feature = "__testing")]
    #[doc(hidden)]
    pub fn open_on<T: Serialize + DeserializeOwned>(
        &self,
        storage: std::sync::Arc<dyn crate::storage::Storage>,
        dir: impl AsRef<Path>,
    ) -> Result<Queue<T>> {
        Queue::open_on(storage, self.clone(), dir.as_ref())
    }

    /// [`open`](Self::open) on `storage` (the dead letters reach theirs through the
    /// queue's directory handle).
    pub(crate) fn open_with<T: Serialize + DeserializeOwned>(
        &self,
        storage: std::sync::Arc<dyn crate::storage::Storage>,
        dir: &Path,
    ) -> Result<Queue<T>> {
        Queue::open_on(storage, self.clone(), dir)
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Queue");
        d.field("path", &self.dir);
        if let Some(e) = self.engine.try_lock() {
            d.field("len", &(e.len() + self.intake_len()))
                .field("unfinished", &(e.unfinished() + self.intake_len()));
        }
        d.field("max_size", &self.max_size)
            .field("max_bytes", &self.max_bytes)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Opens the queue in `dir` with default [`Options`], creating the directory if
    /// missing and recovering what a previous run left.
    ///
    /// Items that were gotten but not acknowledged with [`task_done`](Self::task_done)
    /// before the queue was closed (or the process died) are delivered again, first.
    ///
    /// # Errors
    /// See [`Options::open`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// assert!(diskq::Queue::<u32>::open(dir.path()).unwrap_err().is_locked());
    /// drop(q);
    /// assert_eq!(diskq::Queue::<u32>::open(dir.path())?.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Queue<T>> {
        Options::new().open(dir)
    }

    pub(crate) fn open_on(
        storage: Arc<dyn Storage>,
        opts: Options,
        dir: &Path,
    ) -> Result<Queue<T>> {
        let schema = opts
            .schema
            .clone()
            .unwrap_or_else(|| std::any::type_name::<T>().to_string());
        let (engine, lock, recovered) = recovery::open(storage, dir, &opts, &schema)?;
        let dead = DeadSlot::open(
            engine.storage().clone(),
            dir,
            engine.retries().clock().clone(),
        )?;
        let intake = (opts.durability == Durability::Buffered && !opts.bounded())
            .then(|| Intake::new(engine.poison_flag(), engine.reserve_short_flag()));
        Ok(Queue {
            engine: Mutex::new(engine),
            intake,
            sig: Signals::default(),
            not_full: crate::waitlist::WaitList::new(),
            all_done: Condvar::new(),
            max_size: opts.max_size as u64,
            max_bytes: opts.max_bytes,
            durability: opts.durability,
            max_deliveries: opts.max_deliveries,
            dead,
            dir: dir.to_path_buf(),
            recovered,
            _lock: lock,
            _item: PhantomData,
        })
    }

    /// Appends an item, blocking while the queue holds `max_size` items.
    ///
    /// When it returns `Ok`, the item has reached the level the queue's [`Durability`]
    /// promises.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&7)?;
    /// assert_eq!(q.len(), 1);
    ///
    /// // An item that serde cannot serialize, such as a path that is not UTF-8:
    /// use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf};
    /// let paths: diskq::Queue<PathBuf> = diskq::Queue::open(dir.path().join("paths"))?;
    /// let bad = PathBuf::from(OsStr::from_bytes(b"photo-\xff.jpg"));
    /// assert!(matches!(paths.put(&bad), Err(diskq::Error::Encode(_))));
    /// assert!(paths.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Encode`] when serde fails to serialize the item (above), and
    /// [`Error::TooLarge`] when it serializes to more than 1 GiB (2^30 bytes, the most a
    /// record holds; not shown above, since that takes a gigabyte of memory): nothing is
    /// written, and the queue goes on. [`Error::NoSpace`] when the disk is full: the item was not stored and
    /// the queue goes on (free space and put again; at [`Durability::Buffered`] the put
    /// whose batch found the disk full succeeds, its item kept in memory, and later puts
    /// fail until there is room). [`Error::DirectoryDeleted`] when the queue's directory
    /// was deleted. [`Error::Io`] when the write or sync fails otherwise, after which the
    /// queue is [poisoned](Error::Poisoned): the outcome of that put is unknown, and after
    /// a reopen the item is either there, whole, or absent.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, Wait::Forever)
    }

    /// Appends an item if there is room, else fails at once with [`Error::Full`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(1).open(dir.path())?;
    /// q.put_nowait(&1)?;
    /// assert!(q.put_nowait(&2).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Full`], and those of [`put`](Self::put).
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_until(item, Wait::No(|| Error::Full))
    }

    /// Appends an item, waiting at most `timeout` for room.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(1).open(dir.path())?;
    /// q.put_timeout(&1, Duration::from_millis(10))?;
    /// let err = q.put_timeout(&2, Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when still full after `timeout`, and those of [`put`](Self::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_until(item, Wait::after(timeout))
    }

    /// Appends an item, waiting until `deadline` at the latest for room.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(1).open(dir.path())?;
    /// q.put(&1)?;
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// assert!(q.put_deadline(&2, deadline).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when still full at `deadline`, and those of [`put`](Self::put).
    pub fn put_deadline(&self, item: &T, deadline: Instant) -> Result<()> {
        self.put_until(item, Wait::Until(deadline))
    }

    /// Whether a bound (`max_size` or `max_bytes`) is set.
    pub(crate) fn bounded(&self) -> bool {
        self.max_size > 0 || self.max_bytes > 0
    }

    /// One item left: wakes a put waiting for room. With `max_bytes` every waiting put,
    /// since puts need different room and the one woken may not fit where another would
    /// (a woken put that does not fit waits again without passing the wake-up on).
    #[inline]
    pub(crate) fn made_room(&self) {
        if self.max_bytes > 0 {
            self.not_full.notify_all();
        } else if self.max_size > 0 {
            self.not_full.notify_one();
        }
    }

    /// How many of `n` frames of `len` bytes each fit under the bounds now.
    fn fits(&self, e: &Engine, n: usize, len: usize) -> usize {
        self.fits_many(e, std::iter::repeat_n(len, n))
    }

    /// How many of the frames, of these lengths in order, fit under the bounds now:
    /// the first always does when nothing waits, however large.
    fn fits_many(&self, e: &Engine, lens: impl ExactSizeIterator<Item = usize>) -> usize {
        if !self.bounded() {
            return lens.len();
        }
        let mut count = e.queued();
        // Nothing waiting takes no room, whatever the count says: records acknowledged
        // out of order before a reopen count until a get skips them (counted at open
        // from the files' sizes), which may hold back puts a little meanwhile, but never
        // a put into a queue with nothing to get.
        let mut bytes = if count == 0 { 0 } else { e.queued_bytes() };
        let mut fit = 0;
        for len in lens {
            let over_count = self.max_size > 0 && count >= self.max_size;
            let over_bytes = self.max_bytes > 0 && bytes > 0 && bytes + len as u64 > self.max_bytes;
            if over_count || over_bytes {
                break;
            }
            (count, bytes, fit) = (count + 1, bytes + len as u64, fit + 1);
        }
        fit
    }

    fn put_until(&self, item: &T, wait: Wait) -> Result<()> {
        // The closure returns whether the put failed, and leaves the error here: a
        // `Result` (an `Error`'s size) returned through `with` was copied with 16-byte
        // loads of a discriminant just stored 8 bytes wide, a stall on every put.
        let mut failed = None;
        // `wait` by reference: moved into the call, it was copied with 16-byte loads of
        // the caller's 8-byte stores, another stall.
        let put = |frame: &mut Frames, failed: &mut Option<Error>| {
            if let Err(e) = self.put_framed(item, &wait, frame) {
                *failed = Some(e);
            }
        };
        FRAME.with(|cell| match cell.try_borrow_mut() {
            Ok(mut frame) => {
                put(&mut frame, &mut failed);
                // Do not keep a huge item's buffer for the thread's lifetime.
                if frame.capacity() > 1 << 20 {
                    *frame = Frames::default();
                }
            }
            // A `Serialize` impl that itself puts: use a buffer of its own.
            Err(_) => put(&mut Frames::default(), &mut failed),
        });
        match failed {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn put_framed(&self, item: &T, wait: &Wait, frame: &mut Frames) -> Result<()> {
        frame.clear();
        frame.push(item)?;
        if let Some(intake) = &self.intake {
            if intake.short() {
                // The disk was full: room first, or this item is refused.
                let mut e = self.engine.lock();
                intake.drain_into(&mut e)?;
                e.room_for_puts()?;
            }
            let pushed = intake.push(frame.bytes())?;
            if pushed.full {
                // A write batch: into the engine, and written.
                let mut e = self.engine.lock();
                intake.drain_into(&mut e)?;
                if e.writer_is_home() {
                    buffered_write(lead_writes(&mut e, &self.sig))?;
                }
            } else if pushed.wake {
                // Through the lock: a consumer holds it from its last look at the intake
                // until it waits, so the wake-up cannot come in between.
                drop(self.engine.lock());
            } else {
                // Consumers that are awake look at the intake themselves.
                return Ok(());
            }
            self.sig.not_empty.notify_one();
            return Ok(());
        }
        let mut e = self.engine.lock();
        while self.bounded() && self.fits(&e, 1, frame.bytes().len()) == 0 {
            wait.wait(&self.not_full, &mut e)?;
        }
        if self.durability == Durability::Written && write_alone(&mut e, &self.sig, frame.bytes())?
        {
            return Ok(());
        }
        e.room_for_puts()?;
        let seq = e.enqueue(frame.bytes())?;
        if self.durability == Durability::Buffered {
            if e.pending_bytes() >= WRITE_BATCH && e.writer_is_home() {
                buffered_write(lead_writes(&mut e, &self.sig))?;
            }
            drop(e);
            self.sig.not_empty.notify_one();
            return Ok(());
        }
        // As leader, or waiting for one (who may hand over to us).
        let fate = e.fate();
        let res = write_through(&mut e, &self.sig, seq, &fate);
        if self.bounded() && matches!(&res, Err(err) if err.is_no_space()) {
            // The items dropped made room: producers waiting for it go on.
            self.not_full.notify_all();
        }
        res
    }

    /// Removes and returns the oldest item, blocking while the queue is empty.
    ///
    /// The item stays on disk until [`task_done`](Self::task_done) acknowledges it: if
    /// the process dies first, the item is delivered again after reopening.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// assert_eq!(q.get()?, 1);
    /// q.task_done()?;
    ///
    /// // A damaged record: the get names the file and offset, and takes nothing.
    /// q.put(&2)?;
    /// q.close()?;
    /// let chunk = dir.path().join("q00000");
    /// let mut bytes = std::fs::read(&chunk)?;
    /// bytes[28 + 12 + 8] ^= 0xff; // past the chunk header and item 1: item 2's payload
    /// std::fs::write(&chunk, bytes)?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(matches!(q.get(), Err(diskq::Error::Corrupt { offset: 40, .. })));
    /// assert!(q.get().unwrap_err().is_corrupt()); // the same, until `diskq::repair`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Items given back ([`Delivery::nack`], a lease that ran out) come first, oldest
    /// first. An item whose bytes do not decode as `T`, or that used up
    /// [`Options::max_deliveries`], is moved to the [dead letters](Self::dead_letters) on
    /// the way, and the get goes on to the next item.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the item's record is damaged: the item is not consumed, so
    /// every later `get` reports the same. [`Error::Io`] when reading fails, or when the
    /// delivery cannot be recorded in the journal (the queue is then poisoned; the item
    /// stays first in line).
    pub fn get(&self) -> Result<T> {
        self.get_until(Wait::Forever)
    }

    /// Removes and returns the oldest item, or fails at once with [`Error::Empty`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// q.put(&1)?;
    /// assert_eq!(q.get_nowait()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Empty`], and those of [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<T> {
        self.get_until(Wait::No(|| Error::Empty))
    }

    /// Removes and returns the oldest item, waiting at most `timeout` for one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when still empty after `timeout`, and those of [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_until(Wait::after(timeout))
    }

    /// Removes and returns the oldest item, waiting until `deadline` at the latest.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&5)?;
    /// assert_eq!(q.get_deadline(Instant::now() + Duration::from_secs(1))?, 5);
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// assert!(q.get_deadline(deadline).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when still empty at `deadline`, and those of [`get`](Self::get).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T> {
        self.get_until(Wait::Until(deadline))
    }

    fn get_until(&self, wait: Wait) -> Result<T> {
        let mut e = self.engine.lock();
        let (item, handed) = self.take_waiting(&mut e, &wait)?;
        self.record_deliveries(&mut e, &[handed])?;
        drop(e);
        self.made_room();
        Ok(item)
    }

    /// Waits for an item and takes it (moving to the dead letters those that may not be
    /// delivered on the way). Inlined into its two callers: its result returned through
    /// memory was copied with 16-byte loads of 8-byte stores, a stall at every get.
    #[inline(always)]
    fn take_waiting(&self, e: &mut MutexGuard<'_, Engine>, wait: &Wait) -> Result<(T, Handed)> {
        loop {
            self.wait_for_item(e, wait)?;
            if let Some(got) = self.take(e)? {
                return Ok(got);
            }
        }
    }

    /// Records deliveries before their items are handed out, as the level requires
    /// (FORMAT.md §Deliveries): written at `Written`; at `Synced` synced when
    /// `max_deliveries` is set (the count then decides the item's fate), else written (a
    /// power loss may forget it: one attempt fewer); at `Buffered` with the next journal
    /// write. When that fails, the items are given back and the error returned instead;
    /// but on a full disk they are handed out, their record kept in memory for the next
    /// journal write that finds room: a full disk must drain.
    fn record_deliveries(&self, e: &mut MutexGuard<'_, Engine>, handed: &[Handed]) -> Result<()> {
        let res = match self.durability {
            // Written with the next journal append or checkpoint, as acknowledgements
            // are: a crash may forget them.
            Durability::Buffered => return Ok(()),
            _ => match journal_delivery(e, &self.sig, self.max_deliveries.is_none()) {
                Some(res) => res,
                None => {
                    let generation = e.note_call();
                    journal_through(e, &self.sig, generation)
                }
            },
        };
        match res {
            Err(err) if err.is_no_space() || matches!(err, Error::AckNotDurable { .. }) => Ok(()),
            Err(err) => {
                e.undeliver(handed);
                self.sig.not_empty.notify_all();
                Err(err)
            }
            // Not `ok => ok`: moving the whole `Result` (an `Error`'s size) copied it
            // with 16-byte loads of what the callee had just stored 8 bytes at a time.
            Ok(()) => Ok(()),
        }
    }

    /// Waits until an item is there and written (at the buffered level, writing pending
    /// items first).
    fn wait_for_item(&self, e: &mut MutexGuard<'_, Engine>, wait: &Wait) -> Result<()> {
        self.wait_for_item_or_pause(e, wait, true)
    }

    /// As [`wait_for_item`](Self::wait_for_item); `paused_waits` false for a call that
    /// is not a get (`peek`), which a pause does not hold back.
    fn wait_for_item_or_pause(
        &self,
        e: &mut MutexGuard<'_, Engine>,
        wait: &Wait,
        paused_waits: bool,
    ) -> Result<()> {
        let mut spins = 0;
        loop {
            // Woken by a writer that failed (a panic, an I/O error) and poisoned the
            // queue: there is nothing more to wait for.
            e.check()?;
            if e.poll_pause() {
                self.sig.not_empty.notify_all();
            }
            if e.paused() && paused_waits {
                // `resume` wakes every waiter; a resume from another process is seen
                // when the pause is looked at again.
                let poll = Duration::from_millis(crate::engine::PAUSE_POLL_MS);
                wait.wait_timer(&self.sig.not_empty, e, Some(poll))?;
                continue;
            }
            e.promote_polled();
            if e.retries().ready() > 0 {
                return Ok(());
            }
            if e.len() == 0 {
                // About to wait: a delay may be over by the precise clock already.
                if e.promote_due_delays() {
                    continue;
                }
                if let Some(intake) = &self.intake
                    && intake.len() > 0
                {
                    intake.drain_into(e)?;
                    continue;
                }
                // A producer is often microseconds away: look again a few times before
                // sleeping, which costs a futex wake-up on both sides.
                if spins < SPINS && wait.may_spin() {
                    spins += 1;
                    MutexGuard::unlocked(e, || {
                        for _ in 0..SPIN_PAUSES {
                            std::hint::spin_loop();
                        }
                        std::thread::yield_now();
                    });
                    continue;
                }
                match &self.intake {
                    Some(intake) => {
                        if intake.sleeping() {
                            intake.awake();
                            continue;
                        }
                        let res = wait.wait_timer(&self.sig.not_empty, e, timer(e));
                        intake.awake();
                        res?;
                    }
                    None => wait.wait_timer(&self.sig.not_empty, e, timer(e))?,
                }
            } else if e.skip_acknowledged()? || e.step_over_delayed()? {
                // An item acknowledged one by one before a reopen: not delivered again;
                // or one waiting out a delay recovered at open.
            } else if e.read() >= e.written() {
                // Buffered level: the item is still pending; write it first. Either way
                // the lock is released meanwhile, so look again from the top.
                e.check()?;
                if e.writer_is_home() {
                    write_pending(e, &self.sig)?;
                } else {
                    self.sig.progress.wait(e);
                }
            } else {
                return Ok(());
            }
        }
    }

    /// Decodes the next item, which is written, without consuming it.
    fn decode_next(e: &mut MutexGuard<'_, Engine>) -> Result<(T, crate::engine::Peeked)> {
        let peeked = e.peek()?;
        // Decoded under the lock: an item that fails to decode must stay unconsumed,
        // and no other consumer may take it meanwhile.
        let payload = e.payload(&peeked);
        let item = codec::decode(payload).map_err(|source| {
            let (path, offset) = e.location();
            Error::Decode {
                seq: e.read(),
                path: path.to_path_buf(),
                offset,
                source,
            }
        })?;
        Ok((item, peeked))
    }

    /// Every item waiting now, in the order gets would take them, none taken: an
    /// iterator of `Result<T>`. Items put after the call are not shown; items gotten by
    /// consumers before the browse reaches them are skipped; an item that does not decode
    /// is an `Err` and the browse goes on after it. Each item is read under the queue
    /// lock, one at a time, so producers and consumers go on meanwhile.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2, 3])?;
    /// let waiting: Vec<u32> = q.browse().collect::<Result<_, _>>()?;
    /// assert_eq!(waiting, [1, 2, 3]);
    /// assert_eq!(q.len(), 3); // nothing taken
    ///
    /// // Bytes that are not the item type's: a producer put raw bytes under the tag of
    /// // a queue of strings, one of them not UTF-8.
    /// use diskq::Options;
    /// let dir = dir.path().join("names");
    /// let raw: diskq::Queue<Vec<u8>> = Options::new().schema("names").open(&dir)?;
    /// raw.put_many(&[b"ada".to_vec(), vec![0xff], b"grace".to_vec()])?;
    /// drop(raw);
    /// let names: diskq::Queue<String> = Options::new().schema("names").open(&dir)?;
    /// let seen: Vec<_> = names.browse().collect();
    /// assert_eq!(seen[0].as_deref().ok(), Some("ada"));
    /// assert!(matches!(seen[1], Err(diskq::Error::Decode { seq: 1, .. }))); // and goes on
    /// assert_eq!(seen[2].as_deref().ok(), Some("grace"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Each item may be [`Error::Decode`]; [`Error::Corrupt`], [`Error::Io`] or
    /// [`Error::Poisoned`] end the browse.
    pub fn browse(&self) -> Browse<'_, T> {
        let mut e = self.engine.lock();
        // This thread's buffered puts are shown too; a failure shows at the first item.
        let _ = self.drain_intake(&mut e);
        e.promote();
        let (read, end) = (e.read(), e.accepted());
        let returned = e.retries().ready_items().collect();
        drop(e);
        Browse::new(self, read, end, returned)
    }

    pub(crate) fn lock_engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock()
    }

    /// Writes pending items for a browse that reached them (buffered level).
    pub(crate) fn write_pending_for_browse(&self, e: &mut MutexGuard<'_, Engine>) -> Result<()> {
        wait_idle(e, &self.sig);
        if e.pending_count() > 0 {
            write_pending(e, &self.sig)?;
        }
        Ok(())
    }

    /// The item the next [`get`](Self::get) would return, without taking it; `None` when
    /// the queue is empty. It stays first in line, for any consumer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// assert_eq!(q.peek()?, None);
    /// q.put(&"first".to_string())?;
    /// q.put(&"second".to_string())?;
    /// assert_eq!(q.peek()?.as_deref(), Some("first"));
    /// assert_eq!(q.len(), 2); // nothing taken
    /// assert_eq!(q.get()?, "first");
    /// assert_eq!(q.peek()?.as_deref(), Some("second"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`get`](Self::get), but never [`Error::Empty`]: the item stays in line
    /// either way.
    pub fn peek(&self) -> Result<Option<T>> {
        let mut e = self.engine.lock();
        loop {
            // Not a get: a pause does not hide the item.
            match self.wait_for_item_or_pause(&mut e, &Wait::No(|| Error::Empty), false) {
                Err(Error::Empty) => return Ok(None),
                r => r?,
            }
            // An item a get would move to the dead letters is moved now, not shown.
            if !self.bury_exhausted_front(&mut e)? {
                break;
            }
        }
        if let Some((seq, loc)) = e.retries().first_ready() {
            return e.decode_again(seq, loc).map(Some);
        }
        Ok(Some(Self::decode_next(&mut e)?.0))
    }

    /// Stops consumers: while paused, gets wait (and `get_nowait` is [`Error::Empty`]),
    /// as if the queue were empty, until [`resume`](Self::resume); puts, acknowledgements,
    /// [`peek`](Self::peek) and [`browse`](Self::browse) go on. The pause is recorded in
    /// the directory (a `paused` file), so it holds across a reopen, made durable at
    /// [`Durability::Synced`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.pause()?;
    /// assert!(q.is_paused());
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// drop(q);
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.is_paused()); // still paused after a reopen
    /// q.resume()?;
    /// assert_eq!(q.get_nowait()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoSpace`] or [`Error::Io`] when the `paused` file cannot be created
    /// (nothing changes then).
    pub fn pause(&self) -> Result<()> {
        self.set_paused(true)
    }

    /// Lets consumers go on after [`pause`](Self::pause), waking those waiting.
    ///
    /// # Errors
    /// [`Error::Io`] when the `paused` file cannot be removed (nothing changes then).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.pause()?;
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// q.resume()?;
    /// assert_eq!(q.get_nowait()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume(&self) -> Result<()> {
        self.set_paused(false)?;
        self.sig.not_empty.notify_all();
        Ok(())
    }

    /// Whether the queue is paused ([`pause`](Self::pause)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(!q.is_paused());
    /// q.pause()?;
    /// assert!(q.is_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_paused(&self) -> bool {
        let mut e = self.engine.lock();
        e.poll_pause();
        e.paused()
    }

    fn set_paused(&self, paused: bool) -> Result<()> {
        let mut e = self.engine.lock();
        e.check()?;
        e.set_paused(paused)
    }

    /// Removes and returns the oldest item together with a handle that acknowledges
    /// exactly this item, in any order relative to other items and consumers. An
    /// acknowledged item never comes back, even when older items are still
    /// unacknowledged at a crash; an item whose [`Delivery`] is dropped unacknowledged is
    /// delivered again after a reopen (or acknowledged by a later FIFO
    /// [`task_done`](Self::task_done), which takes the oldest unacknowledged item however
    /// it was gotten).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"a".to_string())?;
    /// q.put(&"b".to_string())?;
    /// let a = q.get_delivery()?;
    /// let b = q.get_delivery()?;
    /// assert_eq!(*b, "b");
    /// b.ack()?; // "b" is gone for good, though "a" is not acknowledged yet
    /// drop(a);
    /// drop(q);
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// assert_eq!(q.get()?, "a"); // delivered again; "b" is not
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`get`](Self::get).
    pub fn get_delivery(&self) -> Result<Delivery<'_, T>> {
        self.get_delivery_until(Wait::Forever)
    }

    /// Like [`get_delivery`](Self::get_delivery), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and those of [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.get_delivery_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// q.put(&1)?;
    /// q.get_delivery_timeout(Duration::from_secs(1))?.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_delivery_timeout(&self, timeout: Duration) -> Result<Delivery<'_, T>> {
        self.get_delivery_until(Wait::after(timeout))
    }

    /// Like [`get_delivery`](Self::get_delivery), failing at once with [`Error::Empty`]
    /// instead of waiting.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.get_delivery_nowait().unwrap_err().is_empty());
    /// q.put(&1)?;
    /// assert_eq!(q.get_delivery_nowait()?.ack()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Empty`], and those of [`get`](Self::get).
    pub fn get_delivery_nowait(&self) -> Result<Delivery<'_, T>> {
        self.get_delivery_until(Wait::No(|| Error::Empty))
    }

    #[inline(always)]
    fn get_delivery_until(&self, wait: Wait) -> Result<Delivery<'_, T>> {
        let mut e = self.engine.lock();
        let (item, handed) = self.take_waiting(&mut e, &wait)?;
        self.record_deliveries(&mut e, &[handed])?;
        drop(e);
        self.made_room();
        Ok(Delivery::new(self, item, Ticket::new(handed)))
    }

    /// Appends items in order, with one write for all of them (and one sync at
    /// [`Durability::Synced`]): the fast way to put many. Blocks while the queue is full;
    /// with `max_size`, items go in as room allows, so other consumers may see the first
    /// ones before the call returns.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// let items = [1, 2, 3];
    /// match q.put_many(&items) {
    ///     Ok(()) => {}
    ///     // The disk filled after the first `stored` items: put the rest again later.
    ///     Err(diskq::Error::PartlyStored { stored, .. }) => println!("{:?} not stored", &items[stored..]),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// assert_eq!(q.get_many(10)?, vec![1, 2, 3]);
    /// q.task_done_n(3)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`put`](Self::put). When an item cannot be serialized, none is put. On a
    /// full disk, [`Error::NoSpace`] when none of the items was stored and
    /// [`Error::PartlyStored`] when the first `stored` were: when the batch ran past the
    /// end of a chunk file and the disk had no room for the next one, or, with
    /// `max_size` or `max_bytes`, when the items went in as room came, in several writes,
    /// and the disk filled before a later one. (The example cannot fill a disk; the test
    /// suite does, on a small tmpfs.) After an I/O error, any prefix of the items may be
    /// in the queue after a reopen.
    pub fn put_many<'a, I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let items = items.into_iter();
        let mut frames = Frames::default();
        let mut ends = Vec::with_capacity(items.size_hint().0);
        for item in items {
            if ends.len() == 1 {
                // Room for the rest at the first frame's size (up to 1 MiB): growing by
                // doubling instead would copy the frames about twice more.
                frames.reserve(
                    frames
                        .bytes()
                        .len()
                        .saturating_mul(ends.capacity().max(2) - 1)
                        .min(1 << 20),
                );
            }
            ends.push(frames.push(item)?);
        }
        let mut frames = frames.into_vec();
        let mut e = self.engine.lock();
        // This thread's earlier puts may still be in the intake: they go first.
        self.drain_intake(&mut e)?;
        e.room_for_puts()?;
        let (mut done, mut from) = (0, 0);
        while done < ends.len() {
            let sizes = (done..ends.len()).map(|i| ends[i] - if i == 0 { 0 } else { ends[i - 1] });
            let room = loop {
                match self.fits_many(&e, sizes.clone()) {
                    0 => Wait::Forever.wait(&self.not_full, &mut e)?,
                    room => break room,
                }
            };
            let upto = done + room;
            let last = if done == 0 && upto == ends.len() {
                // All of them at once: the buffer itself, without a copy if nothing is
                // pending.
                e.enqueue_vec(&mut frames, ends.len() as u64)?
            } else {
                e.enqueue_many(&frames[from..ends[upto - 1]], (upto - done) as u64)?
            };
            from = ends[upto - 1];
            let before = std::mem::replace(&mut done, upto);
            if self.durability != Durability::Buffered {
                let fate = e.fate();
                if let Err(err) = write_through(&mut e, &self.sig, last, &fate) {
                    return Err(self.put_many_failed(
                        err,
                        &fate,
                        before,
                        last + 1 - (upto - before) as u64,
                    ));
                }
            } else if e.pending_bytes() >= WRITE_BATCH && e.writer_is_home() {
                buffered_write(lead_writes(&mut e, &self.sig))?;
            }
            self.sig.not_empty.notify_all();
        }
        Ok(())
    }

    /// The error of a `put_many` whose items from `done` on, the first of them numbered
    /// `first`, were being written: on a full disk, how many of all its items are stored
    /// (a batch that started a chunk may have stored some before the disk filled).
    fn put_many_failed(&self, err: Error, fate: &Fate, done: usize, first: u64) -> Error {
        if !err.is_no_space() {
            return err;
        }
        if self.bounded() {
            // The items dropped made room: producers waiting for it go on.
            self.not_full.notify_all();
        }
        let stored = done + fate.end().map_or(0, |end| end.saturating_sub(first)) as usize;
        if stored == 0 {
            return err;
        }
        Error::PartlyStored {
            stored,
            source: Box::new(err),
        }
    }

    /// Removes and returns up to `max` of the oldest items, blocking while the queue is
    /// empty: at least one item unless `max` is 0. Acknowledge them with
    /// [`task_done_n`](Self::task_done_n).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2, 3])?;
    /// assert_eq!(q.get_many(2)?, vec![1, 2]);
    /// assert_eq!(q.get_many(2)?, vec![3]);
    /// q.task_done_n(3)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`get`](Self::get). When an item after the first cannot be read, the
    /// items before it are returned and the error comes with the next call.
    pub fn get_many(&self, max: usize) -> Result<Vec<T>> {
        self.get_many_until(max, Wait::Forever)
    }

    /// Like [`get_many`](Self::get_many), waiting at most `timeout` for the first item.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// let err = q.get_many_timeout(10, Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`], and those of [`get_many`](Self::get_many).
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>> {
        self.get_many_until(max, Wait::after(timeout))
    }

    fn get_many_until(&self, max: usize, wait: Wait) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.get_many_into(max, wait, |item, _| out.push(item))?;
        Ok(out)
    }

    /// Up to `max` items, each with its ticket (for an acknowledgement by
    /// [`ack_tickets`](Self::ack_tickets)), waiting at most `timeout` for the first: a
    /// batch of deliveries, recorded with one journal write (the forwarder's).
    #[cfg(feature = "redis")]
    pub(crate) fn get_many_tickets(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<(T, crate::delivery::Ticket)>> {
        let mut out = Vec::new();
        let wait = if timeout.is_zero() {
            Wait::No(|| Error::Empty)
        } else {
            Wait::after(timeout)
        };
        self.get_many_into(max, wait, |item, h| {
            out.push((item, crate::delivery::Ticket::new(*h)))
        })?;
        Ok(out)
    }

    /// Takes up to `max` items, handing each to `sink` with its delivery; returns how
    /// many. An error after the first item ends the batch and comes with the next call.
    fn get_many_into(
        &self,
        max: usize,
        wait: Wait,
        mut sink: impl FnMut(T, &Handed),
    ) -> Result<usize> {
        let mut handed = Vec::new();
        if max == 0 {
            return Ok(0);
        }
        let mut e = self.engine.lock();
        self.wait_for_item(&mut e, &wait)?;
        while handed.len() < max {
            if e.paused() {
                // Paused while a write below let go of the lock: what was taken returns,
                // and a call that took nothing waits as a get does.
                if !handed.is_empty() {
                    break;
                }
                self.wait_for_item(&mut e, &wait)?;
                continue;
            }
            if e.len() == 0 {
                match &self.intake {
                    Some(intake) if intake.len() > 0 => {
                        if let Err(err) = intake.drain_into(&mut e) {
                            return if handed.is_empty() {
                                Err(err)
                            } else {
                                Ok(handed.len())
                            };
                        }
                        continue;
                    }
                    // Every item there went to the dead letters: wait for another.
                    _ if handed.is_empty() => {
                        self.wait_for_item(&mut e, &wait)?;
                        continue;
                    }
                    _ => break,
                }
            }
            // Items given back go first, without the reader.
            if e.retries().ready() == 0 {
                let stepped = e
                    .skip_acknowledged()
                    .and_then(|s| Ok(s || e.step_over_delayed()?));
                match stepped {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // The items taken are returned; the error comes with the next call.
                    Err(err) if handed.is_empty() => return Err(err),
                    Err(_) => break,
                }
                if e.read() >= e.written() {
                    // Buffered: write the rest before reading on.
                    if !e.writer_is_home() {
                        break;
                    }
                    if let Err(err) = lead_writes(&mut e, &self.sig) {
                        return if handed.is_empty() {
                            Err(err)
                        } else {
                            Ok(handed.len())
                        };
                    }
                    continue;
                }
            }
            match self.take(&mut e) {
                Ok(Some((item, h))) => {
                    sink(item, &h);
                    handed.push(h);
                }
                Ok(None) => {}
                Err(err) if handed.is_empty() => return Err(err),
                Err(_) => break,
            }
        }
        if !handed.is_empty() {
            self.record_deliveries(&mut e, &handed)?;
        }
        drop(e);
        if self.bounded() {
            self.not_full.notify_all();
        }
        Ok(handed.len())
    }
}

impl<T> Queue<T> {
    /// Acknowledges the oldest item that was gotten and not yet acknowledged (FIFO, like
    /// Python's `task_done`, but the k-th call acknowledges the k-th item gotten). An
    /// acknowledged item is gone for good: it is never delivered again, even after a
    /// crash. Unacknowledged items are delivered again after a reopen.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// let item = q.get()?;
    /// q.task_done()?;
    /// assert!(matches!(q.task_done(), Err(diskq::Error::NothingToAcknowledge)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NothingToAcknowledge`] when every gotten item is already acknowledged;
    /// [`Error::AckNotDurable`] when the disk is full even after the queue gave up the
    /// room it keeps back for this: the item is acknowledged in memory (do not call
    /// `task_done` for it again) and journaled by the next acknowledgement that finds
    /// room (a crash before then delivers it again); nothing is poisoned. [`Error::Io`] when the journal write or sync fails otherwise (the
    /// queue is then poisoned, and after a reopen the item is either acknowledged or
    /// delivered again).
    pub fn task_done(&self) -> Result<()> {
        self.task_done_n(1)
    }

    /// Acknowledges the `n` oldest items gotten and not yet acknowledged, with one journal
    /// entry: the same as `n` calls of [`task_done`](Self::task_done), and as fast as one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2, 3])?;
    /// let batch = q.get_many(3)?;
    /// q.task_done_n(batch.len())?;
    /// assert_eq!(q.unfinished(), 0);
    /// assert!(matches!(q.task_done_n(1), Err(diskq::Error::NothingToAcknowledge)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NothingToAcknowledge`] when fewer than `n` items await acknowledgement
    /// (then none is acknowledged), and those of [`task_done`](Self::task_done).
    pub fn task_done_n(&self, n: usize) -> Result<()> {
        let mut e = self.engine.lock();
        let generation = e.ack(n as u64)?;
        self.finish_ack(e, generation)
    }

    /// Whether an item waits out a delay or is held under a lease: it may become
    /// deliverable without a put.
    /// So is an item held back by a pause: a resume, perhaps from another process,
    /// makes it deliverable.
    pub(crate) fn has_timers(&self) -> bool {
        let mut e = self.engine.lock();
        e.poll_pause();
        e.retries().timers() || (e.paused() && e.len() > 0)
    }

    /// The buffered level's intake, when the queue has one.
    pub(crate) fn intake(&self) -> Option<&Intake> {
        self.intake.as_ref()
    }

    /// When a waiting consumer must look again by itself (see [`timer`]); while paused,
    /// at the latest when the pause is looked at again (a resume from another process
    /// wakes no one).
    pub(crate) fn timer(&self) -> Option<Duration> {
        let e = self.engine.lock();
        let t = timer(&e);
        if e.paused() {
            let poll = Duration::from_millis(crate::engine::PAUSE_POLL_MS);
            return Some(t.map_or(poll, |t| t.min(poll)));
        }
        t
    }

    /// Journals an acknowledgement as the level requires: as leader, or waiting for one.
    pub(crate) fn finish_ack(&self, mut e: MutexGuard<'_, Engine>, generation: u64) -> Result<()> {
        if self.durability == Durability::Buffered {
            if e.acks().unjournaled() >= ACK_BATCH && e.journal_is_home() {
                lead_acks(&mut e, &self.sig)?;
            }
        } else {
            // As leader, or waiting for one (who may hand over to us).
            journal_through(&mut e, &self.sig, generation)?;
        }
        // The intake second: reading its count takes a cache line from the producer.
        let done = e.unfinished() == 0 && self.intake_len() == 0;
        drop(e);
        if done {
            self.all_done.notify_all();
        }
        Ok(())
    }

    /// The intake's room for frames, for tests.
    #[cfg(test)]
    pub(crate) fn intake_room(&self) -> usize {
        self.intake.as_ref().map_or(0, Intake::room)
    }

    /// Items in the intake, not yet in the engine.
    pub(crate) fn intake_len(&self) -> u64 {
        self.intake.as_ref().map_or(0, Intake::len)
    }

    /// Moves what the intake holds into the engine.
    pub(crate) fn drain_intake(&self, e: &mut Engine) -> Result<()> {
        self.intake.as_ref().map_or(Ok(()), |i| i.drain_into(e))
    }

    /// Blocks until every item put (including items recovered at open) has been gotten
    /// and acknowledged.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.put(&2)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for _ in 0..2 {
    ///             let job = q.get().unwrap();
    ///             // ... work on job ...
    ///             q.task_done().unwrap();
    ///         }
    ///     });
    ///     q.join(); // returns once both jobs are acknowledged
    ///     assert_eq!(q.unfinished(), 0);
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) {
        let mut e = self.engine.lock();
        while e.unfinished() + self.intake_len() > 0 {
            self.all_done.wait(&mut e);
        }
    }

    /// Items waiting to be gotten (Python's `qsize`). Items gotten but not yet
    /// acknowledged do not count; see [`unfinished`](Self::unfinished).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.put(&2)?;
    /// q.get()?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        let mut e = self.engine.lock();
        e.promote();
        (e.len() + self.intake_len()) as usize
    }

    /// True when no item waits to be gotten.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.is_empty());
    /// q.put(&1)?;
    /// assert!(!q.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `open` found and cut after a restart of the machine: after a power loss,
    /// items and acknowledgements that were not yet synced may have been lost, and
    /// `open` recovers by itself, keeping the longest intact run of items. See
    /// [`Recovery`](crate::Recovery) and FORMAT.md §open.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let r = q.recovery();
    /// // No restart since this queue was created in this boot: nothing was checked or cut.
    /// assert!(!r.after_restart);
    /// assert_eq!(r.cut_at, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recovery(&self) -> crate::Recovery {
        self.recovered.clone()
    }

    /// Items put and not yet acknowledged: those waiting plus those gotten but not yet
    /// acknowledged. [`join`](Self::join) waits for this to reach zero.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.get()?;
    /// assert_eq!((q.len(), q.unfinished()), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unfinished(&self) -> usize {
        (self.engine.lock().unfinished() + self.intake_len()) as usize
    }

    /// The queue's directory, as given to `open`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert_eq!(q.path(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes items and acknowledgements buffered at [`Durability::Buffered`] to the
    /// operating system: those of this thread and every item put and acknowledgement
    /// made by any thread before the call. (Puts that other threads make while it writes
    /// are written by later writes, not chased: with producers that never stop, a flush
    /// would never return.) At the other levels there is nothing to write.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new()
    ///     .durability(diskq::Durability::Buffered)
    ///     .open(dir.path())?;
    /// q.put(&1)?;
    /// q.flush()?; // now it survives a crash of this process
    ///
    /// std::fs::remove_dir_all(dir.path())?;
    /// q.put(&2)?; // in memory
    /// assert!(matches!(q.flush(), Err(diskq::Error::DirectoryDeleted { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoSpace`] when the disk has no room for the buffered items (they stay in
    /// memory; flush again once there is room); [`Error::DirectoryDeleted`] when the
    /// queue's directory was deleted; [`Error::Io`] when the write fails otherwise (the
    /// queue is then poisoned); [`Error::Poisoned`].
    pub fn flush(&self) -> Result<()> {
        let mut e = self.engine.lock();
        self.drain_intake(&mut e)?;
        if let Err(err) = check_dir(&**e.storage(), e.dir()) {
            return Err(e.poison(err));
        }
        // What was put before this call; puts made while it writes are not chased (with
        // producers that keep putting, a flush would never return).
        let target = e.accepted();
        let mut acks_journaled = false;
        loop {
            e.check()?;
            wait_idle(&mut e, &self.sig);
            if e.pending_count() > 0 && e.written() < target {
                write_pending(&mut e, &self.sig)?;
            } else if !acks_journaled && (e.acks().unjournaled() > 0 || e.retries().unwritten()) {
                lead_acks(&mut e, &self.sig)?;
                acks_journaled = true;
            } else {
                return Ok(());
            }
        }
    }

    /// Writes what is buffered, records a checkpoint and releases the directory, reporting
    /// errors that dropping the queue would have to ignore.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// q.close()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?; // no longer locked
    /// assert_eq!(q.len(), 1);
    ///
    /// std::fs::remove_dir_all(dir.path())?; // no checkpoint to write into it
    /// assert!(matches!(q.close(), Err(diskq::Error::DirectoryDeleted { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when writing fails; [`Error::Poisoned`] after an earlier failure;
    /// [`Error::DirectoryDeleted`]. [`Error::NoSpace`] when the disk has no room for
    /// what is buffered: at [`Durability::Buffered`] the items not yet written are then
    /// lost with the queue (call [`flush`](Self::flush) until it succeeds before closing
    /// to keep them); at the other levels only the checkpoint is missing, which the next
    /// open does not need.
    pub fn close(self) -> Result<()> {
        let mut e = self.engine.lock();
        let res = if e.writer_is_home() && e.journal_is_home() {
            self.drain_intake(&mut e).and_then(|()| e.checkpoint())
        } else {
            // A leader panicked mid-write; recovery sorts out what reached the disk.
            Err(Error::Poisoned)
        };
        // Keep Drop from checkpointing a second time.
        e.set_poisoned();
        res
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let e = self.engine.get_mut();
        // A file still out means its leader panicked mid-write: leave the disk to recovery.
        if !e.poisoned() && e.writer_is_home() && e.journal_is_home() {
            // Errors cannot be reported from drop; `close` reports them.
            let drained = self.intake.as_ref().map_or(Ok(()), |i| i.drain_into(e));
            let _ = drained.and_then(|()| e.checkpoint());
        }
    }
}

/// The result of a write a buffered put made: a full disk leaves the items pending
/// (`Engine::unstored`), this put's among them, so the put succeeded as buffered puts do;
/// the next ones are refused until the items are written.
fn buffered_write(res: Result<()>) -> Result<()> {
    match res {
        Err(e) if e.is_no_space() => Ok(()),
        r => r,
    }
}

/// Writes the pending items (buffered level). On a full disk, acknowledgements waiting
/// to be journaled go first and the write is tried again: they may let chunk files go,
/// and a consumer draining a full disk must not wait for room its own acknowledgements
/// would make.
fn write_pending(e: &mut MutexGuard<'_, Engine>, sig: &Signals) -> Result<()> {
    match lead_writes(e, sig) {
        Err(err) if err.is_no_space() && e.acks().unjournaled() > 0 => {
            wait_idle(e, sig);
            match lead_acks(e, sig) {
                // No room for them either: the items' write is what failed.
                Err(a) if a.is_no_space() || matches!(a, Error::AckNotDurable { .. }) => {
                    return Err(err);
                }
                r => r?,
            }
            lead_writes(e, sig)
        }
        r => r,
    }
}

/// When a waiting consumer must look again by itself: the next lease to run out or
/// delay to end, and at the latest a lease's span (a lease taken while it sleeps runs
/// out no earlier). `None` with a clock that does not sleep.
fn timer(e: &Engine) -> Option<Duration> {
    if !e.retries().clock().sleeps() {
        return None;
    }
    let next = e.retries().next_timer();
    match (next, e.retries().lease()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long a blocking call may wait.
enum Wait {
    Forever,
    Until(Instant),
    /// Do not wait; fail with this error.
    No(fn() -> Error),
}

impl Wait {
    /// A timeout too large for `Instant` waits forever, as crossbeam does.
    fn after(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(d) => Wait::Until(d),
            None => Wait::Forever,
        }
    }

    /// Whether waiting may start with a spin: not when the call must not wait, nor when
    /// its deadline has passed (`get_timeout(Duration::ZERO)`, a channel's `try_recv`).
    fn may_spin(&self) -> bool {
        match self {
            Wait::Forever => true,
            Wait::Until(deadline) => Instant::now() < *deadline,
            Wait::No(_) => false,
        }
    }

    /// As [`wait`](Self::wait), but waking by `timer` at the latest (a lease that runs
    /// out, a delay that ends).
    fn wait_timer(
        &self,
        cv: &Condvar,
        guard: &mut MutexGuard<'_, Engine>,
        timer: Option<Duration>,
    ) -> Result<()> {
        let Some(at) = timer.and_then(|t| Instant::now().checked_add(t)) else {
            return self.wait(cv, guard);
        };
        match self {
            Wait::Forever => {
                cv.wait_until(guard, at);
                Ok(())
            }
            Wait::Until(deadline) => {
                if Instant::now() >= *deadline {
                    return Err(Error::Timeout);
                }
                cv.wait_until(guard, at.min(*deadline));
                Ok(())
            }
            Wait::No(error) => Err(error()),
        }
    }

    /// Waits once on `cv`; `Err` when the time is up. Callers re-check their condition
    /// after every wakeup, so a notification that races a timeout is not lost.
    fn wait(&self, cv: &Condvar, guard: &mut MutexGuard<'_, Engine>) -> Result<()> {
        match self {
            Wait::Forever => {
                cv.wait(guard);
                Ok(())
            }
            Wait::Until(deadline) => {
                if Instant::now() >= *deadline {
                    return Err(Error::Timeout);
                }
                cv.wait_until(guard, *deadline);
                Ok(())
            }
            Wait::No(error) => Err(error()),
        }
    }
}
