//! Durable channels: the API of `std::sync::mpsc` and crossbeam-channel over a [`Queue`].
//!
//! Design, in brief (the public docs below say what users see):
//!
//! * One `Arc<Shared<T>>` holds the queue, the counts of senders and receivers, and a
//!   mutex with two wait-lists of the channel's own (`WaitList`: a condition variable
//!   that also wakes the futures of `asynchronous.rs`). A send or receive first tries
//!   without waiting (`put_nowait`, `get_delivery_nowait`); only when that fails does it
//!   take the channel mutex, count itself as waiting, try again under the mutex, and
//!   wait. A successful send notifies a
//!   waiting receiver only when the waiting count is non-zero (one atomic load otherwise).
//!   No wakeup is lost: the waiter's increment comes before its second attempt, which
//!   takes the queue's lock; either that attempt comes after the send's enqueue and sees
//!   the item, or it comes before, and then the increment happens before the sender's
//!   load (through the queue's lock), which sends the sender to the channel mutex, which
//!   it gets only once the waiter is waiting. Room for a bounded send works the same way
//!   in the other direction. The last `Sender` (`Receiver`) to go notifies every waiting
//!   receiver (sender) under the mutex, so disconnection wakes blocked calls at once, with
//!   no polling and no change to the core.
//! * Implicit acknowledgement: each `Receiver` remembers the delivery of the item it
//!   handed out last and acknowledges it (`Queue::ack_ticket`) when asked for another
//!   one or when dropped, except while its thread panics.
//! * `Receiver::ready`: a `crossbeam_channel::bounded(1)` per receiver that holds a token
//!   whenever `try_recv` may return something other than `Empty`. It starts with a token;
//!   every send (and the last sender's drop) puts one in every registered ready channel
//!   (a full one keeps its token), and the receiver puts one back in its own after every
//!   call that did not find the channel empty. The same argument through the queue's lock
//!   shows that a token consumed before a `try_recv` that finds nothing is replaced by the
//!   next send.

use crate::delivery::Ticket;
use crate::error::Error;
use crate::options::Options;
use crate::queue::Queue;
use crate::waitlist::WaitList;
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

mod asynchronous;
pub use asynchronous::{IntoStream, RecvStream};

// ---------------------------------------------------------------------------------------
// Constructors.

/// Opens (creating it if missing) the queue in `dir` as an unbounded durable channel,
/// the counterpart of [`std::sync::mpsc::channel`] and `crossbeam_channel::unbounded`.
///
/// Items a previous run left in `dir` (sent and not acknowledged) are received first, in
/// order. The directory is locked while any [`Sender`], [`Receiver`] or
/// [`OwnedDelivery`] of the channel exists: opening it again meanwhile fails with
/// [`Error::Locked`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<String>(dir.path())?;
/// tx.send("hello".to_string())?;
/// assert_eq!(rx.recv()?, "hello");
///
/// // The directory is locked while the channel's ends exist, in this process too:
/// assert!(diskq::channel::<String>(dir.path()).unwrap_err().is_locked());
/// drop((tx, rx));
/// let (_tx, rx) = diskq::channel::<String>(dir.path())?;
/// # drop(rx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Those of [`Options::open`]: [`Error::Locked`] when the directory is open elsewhere,
/// [`Error::Corrupt`] and [`Error::MissingInfo`] for damaged files, [`Error::Io`].
pub fn channel<T: Serialize + DeserializeOwned>(
    dir: impl AsRef<Path>,
) -> Result<(Sender<T>, Receiver<T>), Error> {
    channel_with(&Options::new(), dir)
}

/// Opens the queue in `dir` as a durable channel holding at most `bound` items waiting to
/// be received, the counterpart of [`std::sync::mpsc::sync_channel`] and
/// `crossbeam_channel::bounded`: [`Sender::send`] blocks while the channel is full.
///
/// A bound of 0 is taken as 1: a durable channel keeps its items on disk, so there is no
/// rendezvous channel (std's `sync_channel(0)`, where `send` returns only once a receiver
/// has the item). The bound counts items waiting, not items received and being worked on.
/// Items already on disk beyond the bound at open stay; sends wait until receives bring
/// the length under it.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
/// tx.send(1)?;
/// assert!(tx.try_send(2).unwrap_err().is_full());
/// assert_eq!(rx.recv()?, 1);
/// tx.try_send(2)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Those of [`channel`].
pub fn sync_channel<T: Serialize + DeserializeOwned>(
    dir: impl AsRef<Path>,
    bound: usize,
) -> Result<(Sender<T>, Receiver<T>), Error> {
    channel_with(&Options::new().max_size(bound.max(1)), dir)
}

/// Opens the queue in `dir` with `options` (durability, chunk size, bound) as a durable
/// channel. With [`Options::max_size`] (or [`Options::max_bytes`]) the channel is
/// bounded, as with [`sync_channel`]; without it, unbounded, as with [`channel`].
///
/// A channel has no pause: opening a directory that a [`Queue::pause`](crate::Queue::pause)
/// left paused as a channel resumes it.
///
/// ```
/// use diskq::{Durability, Options};
/// # let dir = tempfile::tempdir()?;
/// let opts = Options::new().durability(Durability::Synced).max_size(100);
/// let (tx, rx) = diskq::channel_with::<u64>(&opts, dir.path())?;
/// assert_eq!(tx.capacity(), Some(100));
/// tx.send(7)?; // on stable storage when this returns
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Those of [`channel`].
pub fn channel_with<T: Serialize + DeserializeOwned>(
    options: &Options,
    dir: impl AsRef<Path>,
) -> Result<(Sender<T>, Receiver<T>), Error> {
    let bound = (options.max_size > 0).then_some(options.max_size);
    let queue: crate::Queue<T> = options.open(dir)?;
    // Receivers would wait for ever (or, with the senders gone, say Disconnected while
    // items wait): nothing in the channel API resumes.
    if queue.is_paused() {
        queue.resume()?;
    }
    let shared = Arc::new(Shared {
        queue,
        bound,
        limited: options.bounded(),
        by_bytes: options.max_bytes > 0,
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        recv_waiting: AtomicUsize::new(0),
        send_waiting: AtomicUsize::new(0),
        lock: Mutex::new(()),
        not_empty: WaitList::new(),
        not_full: WaitList::new(),
        readies: Mutex::new(Vec::new()),
        has_ready: AtomicBool::new(false),
    });
    let tx = Sender {
        shared: shared.clone(),
    };
    Ok((tx, Receiver::new(shared)))
}

// ---------------------------------------------------------------------------------------
// Shared state.

struct Shared<T> {
    queue: Queue<T>,
    /// `Some(max_size)` for a channel bounded by count.
    bound: Option<usize>,
    /// Bounded by count or by bytes (`Options::max_bytes`): receives wake senders.
    limited: bool,
    /// Bounded by bytes.
    by_bytes: bool,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Receivers (senders) between counting themselves under `lock` and waking up.
    recv_waiting: AtomicUsize,
    send_waiting: AtomicUsize,
    lock: Mutex<()>,
    not_empty: WaitList,
    not_full: WaitList,
    /// The ready channels of `Receiver::ready`, each `bounded(1)`.
    readies: Mutex<Vec<crossbeam_channel::Sender<()>>>,
    /// Set once the first ready channel exists, so that sends without any skip `readies`.
    has_ready: AtomicBool,
}

/// How long a call may wait.
#[derive(Clone, Copy)]
enum Deadline {
    Now,
    At(Instant),
    Never,
}

impl Deadline {
    /// A timeout too large for `Instant` waits forever, as crossbeam does.
    fn after(timeout: Duration) -> Deadline {
        Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Never, Deadline::At)
    }

    /// The earlier of two deadlines.
    fn earlier(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Deadline::Now, _) | (_, Deadline::Now) => Deadline::Now,
            (Deadline::At(a), Deadline::At(b)) => Deadline::At(a.min(b)),
            (Deadline::At(a), Deadline::Never) | (Deadline::Never, Deadline::At(a)) => {
                Deadline::At(a)
            }
            (Deadline::Never, Deadline::Never) => Deadline::Never,
        }
    }

    fn passed(self) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::At(t) => Instant::now() >= t,
            Deadline::Never => false,
        }
    }

    /// Waits once; callers look again after every wakeup, timed out or not.
    fn wait(self, cv: &Condvar, guard: &mut MutexGuard<'_, ()>) {
        match self {
            Deadline::Now => {}
            Deadline::At(t) => {
                cv.wait_until(guard, t);
            }
            Deadline::Never => cv.wait(guard),
        }
    }
}

/// Why a receive returned no item.
enum RecvFail {
    /// Nothing there by the deadline.
    Empty,
    Disconnected,
    Storage(Error),
}

/// Why a send did not store the item.
enum SendFail {
    /// No room by the deadline.
    Full,
    Disconnected,
    Storage(Error),
}

impl<T: Serialize + DeserializeOwned> Shared<T> {
    /// Takes the next item without waiting for one.
    fn take(&self) -> Result<Option<(T, Ticket)>, Error> {
        match self.queue.get_delivery_nowait() {
            Ok(d) => Ok(Some(d.into_parts())),
            Err(Error::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_until(&self, deadline: Deadline) -> Result<(T, Ticket), RecvFail> {
        loop {
            // Loaded before looking: a sender's items are in the queue before its drop.
            // An item waiting out a delay, or held under a lease that may run out, is
            // still to come (asked only when there was nothing: it takes the lock).
            let no_senders = self.senders.load(SeqCst) == 0;
            if let Some(got) = self.take().map_err(RecvFail::Storage)? {
                self.after_take();
                return Ok(got);
            }
            if no_senders && !self.queue.has_timers() {
                return Err(RecvFail::Disconnected);
            }
            if deadline.passed() {
                return Err(RecvFail::Empty);
            }
            let mut guard = self.lock.lock();
            self.recv_waiting.fetch_add(1, SeqCst);
            let disconnected = self.senders.load(SeqCst) == 0 && !self.queue.has_timers();
            let res = self.take();
            if matches!(res, Ok(None)) && !disconnected {
                // A lease that runs out or a delay that ends makes an item deliverable
                // without a send: look again then.
                match self
                    .queue
                    .timer()
                    .and_then(|t| Instant::now().checked_add(t))
                {
                    Some(at) => Deadline::At(at)
                        .earlier(deadline)
                        .wait(&self.not_empty, &mut guard),
                    None => deadline.wait(&self.not_empty, &mut guard),
                }
            }
            self.recv_waiting.fetch_sub(1, SeqCst);
            drop(guard);
            match res {
                Ok(Some(got)) => {
                    self.after_take();
                    return Ok(got);
                }
                Ok(None) if disconnected => return Err(RecvFail::Disconnected),
                Ok(None) => {} // woken, or timed out: look again
                Err(e) => return Err(RecvFail::Storage(e)),
            }
        }
    }

    fn send_until(&self, item: T, deadline: Deadline) -> Result<(), (SendFail, T)> {
        loop {
            if self.receivers.load(SeqCst) == 0 {
                return Err((SendFail::Disconnected, item));
            }
            match self.queue.put_nowait(&item) {
                Ok(()) => {
                    self.after_send();
                    return Ok(());
                }
                Err(Error::Full) => {}
                Err(e) => return Err((SendFail::Storage(e), item)),
            }
            if deadline.passed() {
                return Err((SendFail::Full, item));
            }
            let mut guard = self.lock.lock();
            self.send_waiting.fetch_add(1, SeqCst);
            let disconnected = self.receivers.load(SeqCst) == 0;
            let res = if disconnected {
                Err(Error::Full)
            } else {
                self.queue.put_nowait(&item)
            };
            if matches!(res, Err(Error::Full)) && !disconnected {
                deadline.wait(&self.not_full, &mut guard);
            }
            self.send_waiting.fetch_sub(1, SeqCst);
            drop(guard);
            match res {
                Ok(()) => {
                    self.after_send();
                    return Ok(());
                }
                Err(_) if disconnected => return Err((SendFail::Disconnected, item)),
                Err(Error::Full) => {} // woken, or timed out: look again
                Err(e) => return Err((SendFail::Storage(e), item)),
            }
        }
    }
}

impl<T> Shared<T> {
    fn after_send(&self) {
        if self.recv_waiting.load(SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.not_empty.notify_one();
        }
        if self.has_ready.load(SeqCst) {
            self.signal_ready();
        }
    }

    /// Wakes every waiting receiver: a delay changed when they must look again.
    fn wake_all_receivers(&self) {
        let _guard = self.lock.lock();
        self.not_empty.notify_all();
    }

    fn after_take(&self) {
        if self.limited && self.send_waiting.load(SeqCst) > 0 {
            let _guard = self.lock.lock();
            // Bounded by bytes, senders need different room: all look (see
            // `Queue::made_room`).
            if self.by_bytes {
                self.not_full.notify_all();
            } else {
                self.not_full.notify_one();
            }
        }
    }

    /// Puts a token into every ready channel that has none; forgets those whose
    /// receivers are all gone.
    fn signal_ready(&self) {
        self.readies.lock().retain(|s| {
            !matches!(
                s.try_send(()),
                Err(crossbeam_channel::TrySendError::Disconnected(()))
            )
        });
    }
}

// ---------------------------------------------------------------------------------------
// Sender.

/// The sending half of a durable channel, from [`channel`], [`sync_channel`] or
/// [`channel_with`].
///
/// `Clone + Send + Sync`: clone it for each producer, or share it. When `send` returns
/// `Ok`, the item is stored at the level of the queue's [`Durability`](crate::Durability)
/// (written to the operating system by default): it survives a crash of this process and
/// is received, after a restart, by a new channel on the same directory. When it returns
/// an error, the item was not stored and comes back inside the error.
///
/// ```
/// use std::thread;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// let handles: Vec<_> = (0..4)
///     .map(|i| {
///         let tx = tx.clone();
///         thread::spawn(move || tx.send(i).unwrap())
///     })
///     .collect();
/// drop(tx);
/// for h in handles {
///     h.join().unwrap();
/// }
/// let mut got: Vec<u32> = rx.iter().collect(); // ends: every Sender is gone
/// got.sort();
/// assert_eq!(got, [0, 1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// std's name for the sender of a bounded channel; here both kinds have one sender type,
/// as in crossbeam-channel.
pub type SyncSender<T> = Sender<T>;

impl<T: Serialize + DeserializeOwned> Sender<T> {
    /// Sends an item, blocking while a bounded channel is full.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("job".to_string())?;
    /// drop(rx);
    /// let err = tx.send("another".to_string()).unwrap_err();
    /// assert!(err.is_disconnected());
    /// assert_eq!(err.into_inner(), "another");
    ///
    /// // An item the queue cannot store, such as a path that is not UTF-8:
    /// use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf};
    /// let (tx, _rx) = diskq::channel::<PathBuf>(dir.path().join("paths"))?;
    /// let err = tx.send(PathBuf::from(OsStr::from_bytes(b"\xff"))).unwrap_err();
    /// assert!(matches!(err.storage_error(), Some(diskq::Error::Encode(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`SendError::Disconnected`] when every [`Receiver`] is gone (then the item is not
    /// stored; one stored before that is received after a restart);
    /// [`SendError::Storage`] when the queue cannot store it (serialization failed, too
    /// large, or an I/O error: see [`Queue::put`]).
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.shared
            .send_until(item, Deadline::Never)
            .map_err(|(fail, item)| match fail {
                SendFail::Full | SendFail::Disconnected => SendError::Disconnected(item),
                SendFail::Storage(e) => SendError::Storage(item, e),
            })
    }

    /// Sends an item if there is room, without blocking.
    ///
    /// ```
    /// use diskq::TrySendError;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.try_send(1)?;
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TrySendError::Full`], and the others of [`send`](Self::send).
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.shared
            .send_until(item, Deadline::Now)
            .map_err(|(fail, item)| match fail {
                SendFail::Full => TrySendError::Full(item),
                SendFail::Disconnected => TrySendError::Disconnected(item),
                SendFail::Storage(e) => TrySendError::Storage(item, e),
            })
    }

    /// Sends an item, waiting at most `timeout` for room.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send_timeout(1, Duration::from_millis(10))?;
    /// let err = tx.send_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], and the others of [`send`](Self::send).
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(item, Deadline::after(timeout))
    }

    /// Sends an item, waiting until `deadline` at the latest for room.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send_deadline(1, Instant::now() + Duration::from_secs(1))?;
    /// let err = tx.send_deadline(2, Instant::now() + Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout()); // still full at the deadline
    /// assert_eq!(err.into_inner(), 2); // the item comes back
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], and the others of [`send`](Self::send).
    pub fn send_deadline(&self, item: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(item, Deadline::At(deadline))
    }

    fn send_until(&self, item: T, deadline: Deadline) -> Result<(), SendTimeoutError<T>> {
        self.shared
            .send_until(item, deadline)
            .map_err(|(fail, item)| match fail {
                SendFail::Full => SendTimeoutError::Timeout(item),
                SendFail::Disconnected => SendTimeoutError::Disconnected(item),
                SendFail::Storage(e) => SendTimeoutError::Storage(item, e),
            })
    }
}

impl<T> Sender<T> {
    /// Items waiting to be received (not counting items received and not yet
    /// acknowledged).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// assert_eq!(tx.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when no item waits to be received.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::channel::<u32>(dir.path())?;
    /// assert!(tx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// The bound of a bounded channel, `None` for an unbounded one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 8)?;
    /// assert_eq!(tx.capacity(), Some(8));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.shared.bound
    }

    /// True when a bounded channel holds its bound of items waiting.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send(1)?;
    /// assert!(tx.is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.shared.bound.is_some_and(|b| self.len() >= b)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, SeqCst);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, SeqCst) == 1 {
            // Disconnected: wake every blocked receiver and every ready channel.
            let guard = self.shared.lock.lock();
            self.shared.not_empty.notify_all();
            drop(guard);
            self.shared.signal_ready();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("queue", &self.shared.queue)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Receiver.

/// The receiving half of a durable channel, from [`channel`], [`sync_channel`] or
/// [`channel_with`].
///
/// # Acknowledgement
///
/// An item stays on disk until it is acknowledged; what was not acknowledged when the
/// process died is received again after a restart, first, in order.
///
/// * Implicitly: an item returned by [`recv`](Self::recv), [`try_recv`](Self::try_recv),
///   [`recv_timeout`](Self::recv_timeout), [`recv_deadline`](Self::recv_deadline) or the
///   iterators is acknowledged when this receiver is asked for its next item (by any of
///   those calls, whatever it returns) or is dropped. So `for job in rx { work(job) }`
///   loses nothing and, after a crash, repeats only the job that was in progress. A
///   receiver dropped while its thread panics does not acknowledge: the job whose work
///   panicked is received again after a restart. A receiver dropped because the loop
///   was left early (`break`, `return`, `?`) does acknowledge: its job counts as done.
///   To keep a job that failed, use the explicit form and acknowledge only on success.
/// * Explicitly: [`recv_delivery`](Self::recv_delivery) and its variants return an
///   [`OwnedDelivery`], acknowledged by its [`ack`](OwnedDelivery::ack), in any order,
///   on any thread. Use it to hand items to other threads.
///
/// # Several consumers
///
/// Clone the receiver for each consumer thread (multi-consumer, as in crossbeam-channel);
/// each item goes to one of them. A `Receiver` is `Send` but not `Sync`, as in `std`:
/// each clone has its own item in progress, which a shared one could not track.
///
/// # Disconnection
///
/// When every [`Sender`] is gone and the items are drained, receiving returns the
/// disconnected error; a receive blocked meanwhile wakes at once. Across restarts nothing
/// is lost: a new [`channel`] on the same directory receives what is left.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// tx.send(1)?;
/// tx.send(2)?;
/// drop(tx);
/// assert_eq!(rx.recv()?, 1); // 1 is in progress
/// drop(rx); // acknowledges 1
///
/// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
/// assert_eq!(rx.recv()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The item handed out last, to acknowledge on the next receive or on drop. A `Cell`
    /// also keeps `Receiver` from being `Sync`.
    pending: Cell<Option<Ticket>>,
    /// This receiver's ready channel, once [`Receiver::ready`] made it.
    ready: OnceCell<(
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    )>,
}

impl<T> Receiver<T> {
    fn new(shared: Arc<Shared<T>>) -> Receiver<T> {
        Receiver {
            shared,
            pending: Cell::new(None),
            ready: OnceCell::new(),
        }
    }

    /// Acknowledges the item in progress.
    fn ack_pending(&self) -> Result<(), Error> {
        match self.pending.take() {
            Some(t) => self.shared.queue.ack_ticket(&t),
            None => Ok(()),
        }
    }

    /// Items waiting to be received (not counting items received and not yet
    /// acknowledged).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// rx.recv()?;
    /// assert_eq!(rx.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when no item waits to be received.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert!(rx.is_empty());
    /// tx.send(1)?;
    /// assert!(!rx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// The bound of a bounded channel, `None` for an unbounded one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert_eq!(rx.capacity(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.shared.bound
    }

    /// True when a bounded channel holds its bound of items waiting.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send(1)?;
    /// assert!(rx.is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.shared.bound.is_some_and(|b| self.len() >= b)
    }

    /// A `crossbeam_channel::Receiver<()>` for `crossbeam_channel::select!`, so that a
    /// durable channel can be waited on beside ordinary channels (a shutdown signal, a
    /// ticker).
    ///
    /// It holds a message whenever [`try_recv`](Self::try_recv) on this receiver may
    /// return something other than [`TryRecvError::Empty`]: an item, disconnection, or a
    /// storage error. When `select!` picks it, call `try_recv` (once, or until `Empty`);
    /// an `Empty` then is a spurious wakeup (another clone took the item), not an error.
    /// No wakeup is lost: a message is there at first, every send adds one (unless one is
    /// there already), and every call on this receiver that does not find the channel
    /// empty puts one back. After disconnection it stays ready, like a disconnected
    /// crossbeam receiver: stop selecting on it when `try_recv` says
    /// [`TryRecvError::Disconnected`].
    ///
    /// Every call returns a handle to the same channel; each [`Receiver`] clone has its
    /// own.
    ///
    /// ```
    /// use crossbeam_channel::select;
    /// use diskq::TryRecvError;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// let (_stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    /// let ready = rx.ready();
    /// let producer = std::thread::spawn(move || {
    ///     tx.send("first".to_string()).unwrap();
    ///     tx.send("second".to_string()).unwrap();
    /// }); // then tx is dropped: disconnected
    ///
    /// let mut done = Vec::new();
    /// loop {
    ///     select! {
    ///         recv(ready) -> _ => match rx.try_recv() {
    ///             Ok(job) => done.push(job),
    ///             Err(TryRecvError::Empty) => {} // another clone was faster
    ///             Err(TryRecvError::Disconnected) => break,
    ///             Err(e) => return Err(e.into()),
    ///         },
    ///         recv(stop_rx) -> _ => break, // shutdown
    ///     }
    /// }
    /// producer.join().unwrap();
    /// assert_eq!(done, ["first", "second"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&self) -> crossbeam_channel::Receiver<()> {
        let (_, ready) = self.ready.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = tx.try_send(());
            self.shared.readies.lock().push(tx.clone());
            self.shared.has_ready.store(true, SeqCst);
            (tx, rx)
        });
        ready.clone()
    }

    /// After a receive: keeps the ready channel ready unless the channel was empty.
    fn rearm<X>(&self, res: &Result<X, RecvFail>) {
        if let Some((tx, _)) = self.ready.get()
            && !matches!(res, Err(RecvFail::Empty))
        {
            let _ = tx.try_send(());
        }
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    /// Acknowledges the item in progress, then takes the next one.
    fn recv_until(&self, deadline: Deadline) -> Result<(T, Ticket), RecvFail> {
        let res = match self.ack_pending() {
            Ok(()) => self.shared.recv_until(deadline),
            Err(e) => Err(RecvFail::Storage(e)),
        };
        self.rearm(&res);
        res
    }

    /// Like `recv_until`, leaving the item in progress until the next receive.
    fn recv_implicit(&self, deadline: Deadline) -> Result<T, RecvFail> {
        let (item, ticket) = self.recv_until(deadline)?;
        self.pending.set(Some(ticket));
        Ok(item)
    }

    fn recv_explicit(&self, deadline: Deadline) -> Result<OwnedDelivery<T>, RecvFail> {
        let (item, ticket) = self.recv_until(deadline)?;
        Ok(OwnedDelivery::new(&self.shared, item, ticket))
    }

    /// Receives the next item, blocking while the channel is empty and a [`Sender`]
    /// exists. Acknowledges the item this receiver returned before.
    ///
    /// ```
    /// use std::thread;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// let t = thread::spawn(move || tx.send(5).unwrap());
    /// assert_eq!(rx.recv()?, 5);
    /// t.join().unwrap();
    /// assert!(rx.recv().unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] when the channel is empty and every [`Sender`] is
    /// gone; [`RecvError::Storage`] when reading the item or acknowledging the previous
    /// one fails (see [`Queue::get`] and [`Queue::task_done`]).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_implicit(Deadline::Never)
            .map_err(RecvError::from_fail)
    }

    /// Receives the next item if there is one, without blocking. Acknowledges the item
    /// this receiver returned before.
    ///
    /// ```
    /// use diskq::TryRecvError;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1)?;
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], and the others of [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_implicit(Deadline::Now)
            .map_err(TryRecvError::from_fail)
    }

    /// Receives the next item, waiting at most `timeout` for one. Acknowledges the item
    /// this receiver returned before.
    ///
    /// ```
    /// use diskq::RecvTimeoutError;
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// let res = rx.recv_timeout(Duration::from_millis(10));
    /// assert_eq!(res, Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and the others of [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_implicit(Deadline::after(timeout))
            .map_err(RecvTimeoutError::from_fail)
    }

    /// Receives the next item, waiting until `deadline` at the latest. Acknowledges the
    /// item this receiver returned before.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// # let dir = tempfile::tempdir()?;
    /// use diskq::RecvTimeoutError;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(3)?;
    /// assert_eq!(rx.recv_deadline(Instant::now() + Duration::from_secs(1))?, 3);
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// assert_eq!(rx.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and the others of [`recv`](Self::recv).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_implicit(Deadline::At(deadline))
            .map_err(RecvTimeoutError::from_fail)
    }

    /// Like [`recv`](Self::recv), but the item comes in an [`OwnedDelivery`] that is
    /// acknowledged only by its [`ack`](OwnedDelivery::ack), on whatever thread, in any
    /// order. (The item this receiver returned before from `recv` and its kin is
    /// acknowledged, as by any receive.)
    ///
    /// ```
    /// use std::thread;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("resize image 7".to_string())?;
    /// let job = rx.recv_delivery()?;
    /// let worker = thread::spawn(move || {
    ///     // ... work on *job ...
    ///     job.ack().unwrap(); // now it is gone for good
    /// });
    /// worker.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`recv`](Self::recv).
    pub fn recv_delivery(&self) -> Result<OwnedDelivery<T>, RecvError> {
        self.recv_explicit(Deadline::Never)
            .map_err(RecvError::from_fail)
    }

    /// Like [`try_recv`](Self::try_recv), returning an [`OwnedDelivery`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert!(rx.try_recv_delivery().unwrap_err().is_empty());
    /// tx.send(1)?;
    /// assert_eq!(rx.try_recv_delivery()?.ack()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`try_recv`](Self::try_recv).
    pub fn try_recv_delivery(&self) -> Result<OwnedDelivery<T>, TryRecvError> {
        self.recv_explicit(Deadline::Now)
            .map_err(TryRecvError::from_fail)
    }

    /// Like [`recv_timeout`](Self::recv_timeout), returning an [`OwnedDelivery`].
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// let d = rx.recv_delivery_timeout(Duration::from_secs(1))?;
    /// assert_eq!(*d, 1);
    /// d.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`recv_timeout`](Self::recv_timeout).
    pub fn recv_delivery_timeout(
        &self,
        timeout: Duration,
    ) -> Result<OwnedDelivery<T>, RecvTimeoutError> {
        self.recv_explicit(Deadline::after(timeout))
            .map_err(RecvTimeoutError::from_fail)
    }

    /// A blocking iterator over received items: [`recv`](Self::recv) until the channel is
    /// disconnected. Each item is acknowledged when the next is asked for, or when the
    /// receiver is dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// drop(tx);
    /// assert_eq!(rx.iter().sum::<u32>(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// `next` panics on a storage failure (an I/O error or damaged files), which an
    /// iterator cannot report otherwise and which must not pass for the end of the items.
    /// Call [`recv`](Self::recv) in a loop to handle those errors.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator over the items waiting now: [`try_recv`](Self::try_recv)
    /// until the channel is empty or disconnected.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// As [`iter`](Self::iter), on a storage failure.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Clone for Receiver<T> {
    /// Another consumer of the same channel, with no item in progress and its own ready
    /// channel.
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, SeqCst);
        Receiver::new(self.shared.clone())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // The item in progress is done, unless its work is what panicked.
        if !std::thread::panicking() {
            // Drop cannot report an error; the item is then received again after a
            // restart, which is what an unacknowledged item does.
            let _ = self.ack_pending();
        }
        if self.shared.receivers.fetch_sub(1, SeqCst) == 1 {
            // Disconnected: wake every blocked sender.
            let _guard = self.shared.lock.lock();
            self.shared.not_full.notify_all();
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queue", &self.shared.queue)
            .field("in_progress", &{
                let t = self.pending.take();
                let seq = t.as_ref().map(Ticket::seq);
                self.pending.set(t);
                seq
            })
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Iterators.

/// Blocking iterator from [`Receiver::iter`].
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

/// Non-blocking iterator from [`Receiver::try_iter`].
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

/// Owning blocking iterator from `Receiver::into_iter`: `for job in rx { .. }`.
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

#[track_caller]
fn storage_panic(e: Error) -> ! {
    panic!("diskq channel: {e} (use Receiver::recv to handle storage errors)")
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self.rx.recv() {
            Ok(item) => Some(item),
            Err(RecvError::Disconnected) => None,
            Err(RecvError::Storage(e)) => storage_panic(e),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self.rx.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
            Err(TryRecvError::Storage(e)) => storage_panic(e),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.iter().next()
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: Serialize + DeserializeOwned> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    /// `for job in rx { work(job) }`: each job is acknowledged when the next is asked for,
    /// or when the loop ends (the receiver is dropped).
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Explicit acknowledgement.

/// An item from [`Receiver::recv_delivery`] and its kin, with the means to acknowledge
/// exactly it. It owns what it needs (no borrow of the receiver), so it can move to
/// another thread.
///
/// Dereferences to the item. Dropped without [`ack`](Self::ack) or
/// [`nack`](Self::nack), it is given back at once, as by `nack` (received again, first);
/// [`into_inner`](Self::into_inner) keeps it in flight instead (received again after a
/// restart). While it exists, the queue stays open and its
/// directory locked, even when every sender and receiver is gone.
///
/// ```
/// use std::sync::mpsc;
/// use std::thread;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// for n in 0..4 {
///     tx.send(n)?;
/// }
/// // Hand the items to a pool of threads; each acknowledges its own when done.
/// let (work_tx, work_rx) = mpsc::channel::<diskq::OwnedDelivery<u32>>();
/// let pool = thread::spawn(move || {
///     for d in work_rx {
///         let n = *d * 10; // the work
///         d.ack().unwrap();
///         println!("{n}");
///     }
/// });
/// for _ in 0..4 {
///     work_tx.send(rx.recv_delivery()?)?;
/// }
/// drop(work_tx);
/// pool.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OwnedDelivery<T> {
    item: T,
    hold: OwnedHold<T>,
}

impl<T> OwnedDelivery<T> {
    fn new(shared: &Arc<Shared<T>>, item: T, ticket: Ticket) -> OwnedDelivery<T> {
        OwnedDelivery {
            item,
            hold: OwnedHold {
                shared: shared.clone(),
                ticket,
                settled: false,
            },
        }
    }
}

/// Gives the item back when dropped unsettled, as [`Delivery`](crate::Delivery) does.
struct OwnedHold<T> {
    shared: Arc<Shared<T>>,
    ticket: Ticket,
    settled: bool,
}

impl<T> Drop for OwnedHold<T> {
    fn drop(&mut self) {
        if !self.settled {
            // Nothing to report a failure to: the item stays in flight.
            if self.shared.queue.give_back(&self.ticket, None).is_ok() {
                self.shared.after_send();
            }
        }
    }
}

impl<T> OwnedDelivery<T> {
    /// Acknowledges this item: once this returns `Ok` it is gone for good, at the level
    /// the queue's [`Durability`](crate::Durability) promises. Returns the item.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// let one = rx.recv_delivery()?;
    /// let two = rx.recv_delivery()?;
    /// assert_eq!(two.ack()?, 2); // in any order
    /// let _ = one.into_inner(); // not acknowledged: received again after a restart
    /// drop((tx, rx));
    /// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Delivery::ack`](crate::Delivery::ack).
    pub fn ack(mut self) -> Result<T, Error> {
        self.hold.settled = true;
        self.hold.shared.queue.ack_ticket(&self.hold.ticket)?;
        Ok(self.item)
    }

    /// Gives the item back, to be received again as soon as possible, as
    /// [`Delivery::nack`](crate::Delivery::nack) does.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// rx.recv_delivery()?.nack()?;
    /// let again = rx.recv_delivery()?;
    /// assert_eq!((*again, again.attempt()), (1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Delivery::nack`](crate::Delivery::nack).
    pub fn nack(mut self) -> Result<(), Error> {
        self.hold.settled = true;
        self.hold.shared.queue.give_back(&self.hold.ticket, None)?;
        self.hold.shared.after_send();
        Ok(())
    }

    /// Gives the item back, to be received again no earlier than `delay` from now, as
    /// [`Delivery::nack_after`](crate::Delivery::nack_after) does.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// rx.recv_delivery()?.nack_after(Duration::from_millis(20))?;
    /// assert!(rx.try_recv().is_err());
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Delivery::nack_after`](crate::Delivery::nack_after).
    pub fn nack_after(mut self, delay: Duration) -> Result<(), Error> {
        self.hold.settled = true;
        self.hold
            .shared
            .queue
            .give_back(&self.hold.ticket, Some(delay))?;
        self.hold.shared.wake_all_receivers();
        Ok(())
    }

    /// Keeps this delivery `span` longer from now, as
    /// [`Delivery::extend_lease`](crate::Delivery::extend_lease) does.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// let d = rx.recv_delivery()?;
    /// d.extend_lease(Duration::from_secs(30))?;
    /// d.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Delivery::extend_lease`](crate::Delivery::extend_lease).
    pub fn extend_lease(&self, span: Duration) -> Result<(), Error> {
        let shared = &self.hold.shared;
        shared.queue.extend_ticket(&self.hold.ticket, span)?;
        // Waiting receivers set their timers by the old deadline.
        shared.wake_all_receivers();
        Ok(())
    }

    /// Which delivery of the item this is: 1 the first time, as
    /// [`Delivery::attempt`](crate::Delivery::attempt).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// assert_eq!(rx.recv_delivery()?.attempt(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attempt(&self) -> u32 {
        self.hold.ticket.attempt()
    }

    /// The item, without acknowledging it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("job".to_string())?;
    /// let d = rx.recv_delivery()?;
    /// assert_eq!(d.item(), "job");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The item's sequence number: its position in the queue's whole history.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("job".to_string())?;
    /// let d = rx.recv_delivery()?;
    /// assert_eq!(d.seq(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.hold.ticket.seq()
    }

    /// The item, leaving it in flight (received again after a restart).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("job".to_string())?;
    /// let d = rx.recv_delivery()?;
    /// assert_eq!(d.into_inner(), "job");
    /// drop((tx, rx));
    /// let (_tx, rx) = diskq::channel::<String>(dir.path())?;
    /// assert_eq!(rx.recv()?, "job"); // received again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(mut self) -> T {
        self.hold.settled = true;
        self.item
    }
}

impl<T> std::ops::Deref for OwnedDelivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: fmt::Debug> fmt::Debug for OwnedDelivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedDelivery")
            .field("seq", &self.seq())
            .field("attempt", &self.attempt())
            .field("item", &self.item)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Errors.
//
// The names, variants and messages of std and crossbeam-channel, plus `Storage` for a
// failure of the queue underneath. A `Storage` error holds a `diskq::Error`, which has no
// equality: a `Storage` error equals nothing, not even itself, so that the comparisons
// of the other variants (`assert_eq!(rx.try_recv(), Err(TryRecvError::Empty))`) work as
// with std.

/// The error of [`Sender::send`]. The item comes back inside it: it was not stored.
///
/// ```
/// use diskq::SendError;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<String>(dir.path())?;
/// drop(rx);
/// match tx.send("job".to_string()) {
///     Err(SendError::Disconnected(job)) => println!("no receiver left for {job}"),
///     Err(SendError::Storage(job, e)) => eprintln!("could not store {job}: {e}"),
///     Ok(()) => unreachable!(),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum SendError<T> {
    /// Every [`Receiver`] is gone (std's and crossbeam's `SendError(T)`).
    Disconnected(T),
    /// The queue could not store the item (see [`Queue::put`]).
    Storage(T, Error),
}

/// The error of [`Sender::try_send`]. The item comes back inside it: it was not stored.
///
/// ```
/// use diskq::TrySendError;
/// # let dir = tempfile::tempdir()?;
/// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
/// tx.try_send(1)?;
/// match tx.try_send(2) {
///     Err(TrySendError::Full(n)) => assert_eq!(n, 2), // try again later
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum TrySendError<T> {
    /// A bounded channel is full.
    Full(T),
    /// Every [`Receiver`] is gone.
    Disconnected(T),
    /// The queue could not store the item (see [`Queue::put`]).
    Storage(T, Error),
}

/// The error of [`Sender::send_timeout`] and [`Sender::send_deadline`]. The item comes
/// back inside it: it was not stored.
///
/// ```
/// use diskq::SendTimeoutError;
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
/// tx.send(1)?;
/// let err = tx.send_timeout(2, Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err, SendTimeoutError::Timeout(2));
/// assert!(err.is_timeout());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum SendTimeoutError<T> {
    /// A bounded channel was still full when the time was up.
    Timeout(T),
    /// Every [`Receiver`] is gone.
    Disconnected(T),
    /// The queue could not store the item (see [`Queue::put`]).
    Storage(T, Error),
}

/// The error of [`Receiver::recv`] and [`Receiver::recv_delivery`].
///
/// ```
/// use diskq::RecvError;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// drop(tx);
/// loop {
///     match rx.recv() {
///         Ok(job) => println!("{job}"),
///         Err(RecvError::Disconnected) => break, // every sender is gone, all received
///         Err(e) => return Err(e.into()),        // the queue failed: see e.storage_error()
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum RecvError {
    /// The channel is empty and every [`Sender`] is gone (std's and crossbeam's
    /// `RecvError`).
    Disconnected,
    /// Reading the next item, or acknowledging the previous one, failed (see
    /// [`Queue::get`]). The item is not consumed.
    Storage(Error),
}

/// The error of [`Receiver::try_recv`] and [`Receiver::try_recv_delivery`].
///
/// ```
/// use diskq::TryRecvError;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum TryRecvError {
    /// No item is waiting, and a [`Sender`] exists.
    Empty,
    /// The channel is empty and every [`Sender`] is gone.
    Disconnected,
    /// Reading the next item, or acknowledging the previous one, failed.
    Storage(Error),
}

/// The error of [`Receiver::recv_timeout`], [`Receiver::recv_deadline`] and
/// [`Receiver::recv_delivery_timeout`].
///
/// ```
/// use diskq::RecvTimeoutError;
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
/// assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(RecvTimeoutError::Timeout));
/// drop(tx);
/// assert!(rx.recv_timeout(Duration::from_millis(5)).unwrap_err().is_disconnected());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum RecvTimeoutError {
    /// No item came before the time was up.
    Timeout,
    /// The channel is empty and every [`Sender`] is gone.
    Disconnected,
    /// Reading the next item, or acknowledging the previous one, failed.
    Storage(Error),
}

macro_rules! send_error_common {
    ($name:ident, $($variant:ident),+) => {
        impl<T> $name<T> {
            /// The item that was not sent.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// drop(rx);
            /// assert_eq!(tx.send(7).unwrap_err().into_inner(), 7);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(item))|+ => item,
                    $name::Storage(item, _) => item,
                }
            }

            /// True when every [`Receiver`] is gone.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?; // a receiver is there
            /// drop(rx);
            /// let e = tx.send(7).unwrap_err(); // the same on each send error type
            /// assert!(e.is_disconnected());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn is_disconnected(&self) -> bool {
                matches!(self, $name::Disconnected(..))
            }

            /// True for a failure of the queue underneath.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?; // a receiver is there
            /// drop(rx);
            /// let e = tx.send(7).unwrap_err(); // the same on each send error type
            /// assert!(!e.is_storage()); // disconnected, not a storage failure
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn is_storage(&self) -> bool {
                matches!(self, $name::Storage(..))
            }

            /// The queue's error, for a storage failure.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?; // a receiver is there
            /// drop(rx);
            /// let e = tx.send(7).unwrap_err(); // the same on each send error type
            /// assert!(e.storage_error().is_none()); // not a storage failure
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn storage_error(&self) -> Option<&Error> {
                match self {
                    $name::Storage(_, e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<T: PartialEq> PartialEq for $name<T> {
            fn eq(&self, other: &Self) -> bool {
                match (self, other) {
                    $(($name::$variant(a), $name::$variant(b)) => a == b,)+
                    _ => false,
                }
            }
        }

        /// Shows the variant, not the item (which need not be `Debug`), as std does.
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => write!(f, "{}(..)", stringify!($variant)),)+
                    $name::Storage(_, e) => f.debug_tuple("Storage").field(&format_args!("..")).field(e).finish(),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.storage_error().map(|e| e as _)
            }
        }
    };
}

send_error_common!(SendError, Disconnected);
send_error_common!(TrySendError, Full, Disconnected);
send_error_common!(SendTimeoutError, Timeout, Disconnected);

const SENDING_CLOSED: &str = "sending on a disconnected channel";

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str(SENDING_CLOSED),
            SendError::Storage(_, e) => write!(f, "sending on a durable channel failed: {e}"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Disconnected(_) => f.write_str(SENDING_CLOSED),
            TrySendError::Storage(_, e) => write!(f, "sending on a durable channel failed: {e}"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out waiting on send operation"),
            SendTimeoutError::Disconnected(_) => f.write_str(SENDING_CLOSED),
            SendTimeoutError::Storage(_, e) => {
                write!(f, "sending on a durable channel failed: {e}")
            }
        }
    }
}

impl<T> TrySendError<T> {
    /// True when a bounded channel is full.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send(1)?;
    /// assert!(tx.try_send(2).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// True when the time ran out.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, _rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// tx.send(1)?;
    /// let e = tx.send_timeout(2, std::time::Duration::from_millis(1)).unwrap_err();
    /// assert!(e.is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(item) => TrySendError::Disconnected(item),
            SendError::Storage(item, e) => TrySendError::Storage(item, e),
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(item) => SendTimeoutError::Disconnected(item),
            SendError::Storage(item, e) => SendTimeoutError::Storage(item, e),
        }
    }
}

macro_rules! recv_error_common {
    ($name:ident, $($variant:ident),+) => {
        impl $name {
            /// True when the channel is empty and every [`Sender`] is gone.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?;
            /// drop(tx);
            /// assert_eq!(rx.recv()?, 1); // drained, then:
            /// let e = rx.recv().unwrap_err(); // the same on each receive error type
            /// assert!(e.is_disconnected());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn is_disconnected(&self) -> bool {
                matches!(self, $name::Disconnected)
            }

            /// True for a failure of the queue underneath.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?;
            /// drop(tx);
            /// assert_eq!(rx.recv()?, 1); // drained, then:
            /// let e = rx.recv().unwrap_err(); // the same on each receive error type
            /// assert!(!e.is_storage());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn is_storage(&self) -> bool {
                matches!(self, $name::Storage(_))
            }

            /// The queue's error, for a storage failure.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?;
            /// drop(tx);
            /// assert_eq!(rx.recv()?, 1); // drained, then:
            /// let e = rx.recv().unwrap_err(); // the same on each receive error type
            /// assert!(e.storage_error().is_none());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn storage_error(&self) -> Option<&Error> {
                match self {
                    $name::Storage(e) => Some(e),
                    _ => None,
                }
            }

            /// The queue's error, for a storage failure.
            ///
            /// ```
            /// # let dir = tempfile::tempdir()?;
            /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
            /// tx.send(1)?;
            /// drop(tx);
            /// assert_eq!(rx.recv()?, 1); // drained, then:
            /// let e = rx.recv().unwrap_err(); // the same on each receive error type
            /// assert!(e.into_storage_error().is_none());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn into_storage_error(self) -> Option<Error> {
                match self {
                    $name::Storage(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                match (self, other) {
                    $(($name::$variant, $name::$variant) => true,)+
                    _ => false,
                }
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.storage_error().map(|e| e as _)
            }
        }
    };
}

recv_error_common!(RecvError, Disconnected);
recv_error_common!(TryRecvError, Empty, Disconnected);
recv_error_common!(RecvTimeoutError, Timeout, Disconnected);

impl RecvError {
    fn from_fail(fail: RecvFail) -> RecvError {
        match fail {
            RecvFail::Empty | RecvFail::Disconnected => RecvError::Disconnected,
            RecvFail::Storage(e) => RecvError::Storage(e),
        }
    }
}

impl TryRecvError {
    fn from_fail(fail: RecvFail) -> TryRecvError {
        match fail {
            RecvFail::Empty => TryRecvError::Empty,
            RecvFail::Disconnected => TryRecvError::Disconnected,
            RecvFail::Storage(e) => TryRecvError::Storage(e),
        }
    }

    /// True when no item is waiting and a [`Sender`] exists.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert!(rx.try_recv().unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }
}

impl RecvTimeoutError {
    fn from_fail(fail: RecvFail) -> RecvTimeoutError {
        match fail {
            RecvFail::Empty => RecvTimeoutError::Timeout,
            RecvFail::Disconnected => RecvTimeoutError::Disconnected,
            RecvFail::Storage(e) => RecvTimeoutError::Storage(e),
        }
    }

    /// True when the time ran out.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let (_tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// assert!(rx.recv_timeout(Duration::ZERO).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => {
                f.write_str("receiving on an empty and disconnected channel")
            }
            RecvError::Storage(e) => write!(f, "receiving on a durable channel failed: {e}"),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => {
                f.write_str("receiving on an empty and disconnected channel")
            }
            TryRecvError::Storage(e) => write!(f, "receiving on a durable channel failed: {e}"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on receive operation"),
            RecvTimeoutError::Disconnected => f.write_str("channel is empty and disconnected"),
            RecvTimeoutError::Storage(e) => {
                write!(f, "receiving on a durable channel failed: {e}")
            }
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Storage(e) => TryRecvError::Storage(e),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Storage(e) => RecvTimeoutError::Storage(e),
        }
    }
}
