//! [`Delivery`]: an item handed out with the means to settle exactly it (acknowledge it,
//! give it back now or later, send it to the dead letters, keep its lease), and the
//! [`Ticket`] that `OwnedDelivery` shares.

use crate::error::Result;
use crate::leases::Nanos;
use crate::queue::Queue;
use crate::retries::{Handed, Loc};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a holder needs to settle one delivery: its [`Handed`], the deadline kept apart
/// (it changes with `extend_lease`), in as few bytes as it takes, since every
/// `Delivery` is moved by value.
#[derive(Debug)]
pub(crate) struct Ticket {
    seq: u64,
    loc: Loc,
    token: u64,
    attempt: u32,
    /// When the delivery's lease runs out (the queue's, or one `extend_lease` set), in
    /// nanoseconds of the queue's monotonic clock; `leases::NEVER` without one.
    deadline: AtomicU64,
}

impl Ticket {
    #[inline]
    pub(crate) fn new(handed: Handed) -> Ticket {
        Ticket {
            seq: handed.seq,
            loc: handed.loc,
            token: handed.token,
            attempt: handed.attempt,
            deadline: AtomicU64::new(handed.deadline),
        }
    }

    /// The delivery as the engine knows it, with the deadline as it is now.
    #[inline]
    pub(crate) fn handed(&self) -> Handed {
        Handed {
            seq: self.seq,
            loc: self.loc,
            attempt: self.attempt,
            token: self.token,
            deadline: self.deadline.load(Ordering::Relaxed),
        }
    }

    #[inline]
    pub(crate) fn set_deadline(&self, d: Nanos) {
        self.deadline.store(d, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    #[inline]
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// An item from [`Queue::get_delivery`], with the means to settle exactly it: [`ack`]
/// (done), [`nack`] (give it back, to be delivered again as soon as possible),
/// [`nack_after`] (again, after a delay), [`dead_letter`] (never again; kept among the
/// [dead letters](Queue::dead_letters)).
///
/// Dereferences to the item. Dropped without any of these (a worker that panics, or
/// returns early), it is given back at once, as by [`nack`]; [`into_inner`] keeps the
/// item in flight instead (delivered again after a reopen, or when its lease runs out).
///
/// [`ack`]: Delivery::ack
/// [`nack`]: Delivery::nack
/// [`nack_after`]: Delivery::nack_after
/// [`dead_letter`]: Delivery::dead_letter
/// [`into_inner`]: Delivery::into_inner
pub struct Delivery<'q, T> {
    item: T,
    hold: Hold<'q, T>,
}

/// Gives the item back when dropped unsettled.
struct Hold<'q, T> {
    queue: &'q Queue<T>,
    ticket: Ticket,
    settled: bool,
}

impl<T> Drop for Hold<'_, T> {
    fn drop(&mut self) {
        if !self.settled {
            // Nothing to report it to: a failure leaves the item in flight, delivered
            // again after a reopen (or when its lease runs out).
            let _ = self.queue.give_back(&self.ticket, None);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Delivery<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.seq())
            .field("attempt", &self.attempt())
            .field("item", &self.item)
            .finish()
    }
}

impl<T> std::ops::Deref for Delivery<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<'q, T> Delivery<'q, T> {
    pub(crate) fn new(queue: &'q Queue<T>, item: T, ticket: Ticket) -> Delivery<'q, T> {
        Delivery {
            item,
            hold: Hold {
                queue,
                ticket,
                settled: false,
            },
        }
    }

    /// The item and its ticket, settled by someone else (a channel).
    pub(crate) fn into_parts(mut self) -> (T, Ticket) {
        self.hold.settled = true;
        (self.item, Ticket::new(self.hold.ticket.handed()))
    }

    /// The item's sequence number: its position in the queue's whole history.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&["a".to_string(), "b".to_string()])?;
    /// let a = q.get_delivery()?;
    /// let b = q.get_delivery()?;
    /// assert_eq!((a.seq(), b.seq()), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.hold.ticket.seq()
    }

    /// Which delivery of the item this is: 1 the first time. Every earlier delivery that
    /// was not acknowledged counts: given back ([`nack`](Self::nack), a drop), run out
    /// of lease, or cut short by a crash or kill of the process (deliveries are recorded
    /// before the item is handed out; see [`Options::max_deliveries`](crate::Options::max_deliveries)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"job".to_string())?;
    /// let d = q.get_delivery()?;
    /// assert_eq!(d.attempt(), 1);
    /// d.nack()?;
    /// assert_eq!(q.get_delivery()?.attempt(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attempt(&self) -> u32 {
        self.hold.ticket.attempt()
    }

    /// The item, without settling it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&["a".to_string(), "b".to_string()])?;
    /// let d = q.get_delivery()?;
    /// assert_eq!(d.item(), "a");
    /// d.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Acknowledges this item: it is gone for good once this returns `Ok`, at the level
    /// the queue's [`Durability`](crate::Durability) promises. Returns the item.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// let one = q.get_delivery()?;
    /// let two = q.get_delivery()?;
    /// assert_eq!(two.ack()?, 2); // in any order
    /// q.task_done()?; // FIFO: acknowledges the oldest item in flight, 1
    /// assert!(matches!(one.ack(), Err(diskq::Error::AlreadyAcknowledged { seq: 0 })));
    ///
    /// let leased: diskq::Queue<u32> = diskq::Options::new()
    ///     .lease(std::time::Duration::from_millis(30))
    ///     .open(dir.path().join("leased"))?;
    /// leased.put(&3)?;
    /// let slow = leased.get_delivery()?;
    /// std::thread::sleep(std::time::Duration::from_millis(60)); // the lease runs out
    /// assert!(slow.ack().unwrap_err().is_lease_expired());
    /// assert_eq!(leased.get()?, 3); // it was given back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::AlreadyAcknowledged`](crate::Error::AlreadyAcknowledged) when a FIFO
    /// `task_done` acknowledged it first; [`Error::LeaseExpired`](crate::Error::LeaseExpired)
    /// when its lease ran out (it was given back; nothing changes);
    /// [`Error::AckNotDurable`](crate::Error::AckNotDurable) on a full disk, as for
    /// [`Queue::task_done`]; [`Error::Io`](crate::Error::Io) when the journal write fails
    /// (the queue is then poisoned).
    pub fn ack(mut self) -> Result<T> {
        self.hold.settled = true;
        self.hold.queue.ack_ticket(&self.hold.ticket)?;
        Ok(self.item)
    }

    /// Gives the item back, to be delivered again as soon as possible: before any item
    /// not yet delivered (items given back go first, oldest first). Counts as an attempt
    /// for [`Options::max_deliveries`](crate::Options::max_deliveries): the last allowed
    /// delivery given back goes to the dead letters instead.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// let one = q.get_delivery()?;
    /// one.nack()?;
    /// let again = q.get_delivery()?;
    /// assert_eq!((*again, again.attempt()), (1, 2));
    /// q.task_done()?; // FIFO: acknowledges the oldest item in flight, 1 again
    /// assert!(matches!(again.nack(), Err(diskq::Error::AlreadyAcknowledged { seq: 0 })));
    ///
    /// let leased: diskq::Queue<u32> = diskq::Options::new()
    ///     .lease(std::time::Duration::from_millis(30))
    ///     .open(dir.path().join("leased"))?;
    /// leased.put(&3)?;
    /// let slow = leased.get_delivery()?;
    /// std::thread::sleep(std::time::Duration::from_millis(60)); // the lease runs out
    /// assert!(slow.nack().unwrap_err().is_lease_expired()); // given back already
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LeaseExpired`](crate::Error::LeaseExpired) when its lease ran out (it was
    /// given back already); [`Error::AlreadyAcknowledged`](crate::Error::AlreadyAcknowledged)
    /// when `task_done` acknowledged it; [`Error::Poisoned`](crate::Error::Poisoned).
    pub fn nack(mut self) -> Result<()> {
        self.hold.settled = true;
        self.hold.queue.give_back(&self.hold.ticket, None)
    }

    /// Gives the item back, to be delivered again no earlier than `delay` from now,
    /// without holding back the items behind it: it is appended again at the end of the
    /// queue (a copy with a new [`seq`](Self::seq), its attempts kept) and the original
    /// acknowledged. Once due, it comes in that place: after the items waiting now,
    /// before those put after this call. The due time is recorded on disk at the queue's
    /// durability level, so it holds across a reopen (it is wall-clock time). A crash
    /// during the call may leave both the original and the copy (delivered twice, never
    /// lost). The copy is not bounded by [`max_size`](crate::Options::max_size) or
    /// [`max_bytes`](crate::Options::max_bytes): the item was in the queue already, and a
    /// consumer must not wait for room. At [`Buffered`](crate::Durability::Buffered),
    /// when a full disk keeps the
    /// copy waiting for room with the items put before it, the call returns at once; the
    /// original is acknowledged when the copy is written (FORMAT.md §nack_after).
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&[1, 2])?;
    /// q.get_delivery()?.nack_after(Duration::from_millis(50))?;
    /// assert_eq!(q.get()?, 2); // 1 waits; 2 does not wait for it
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// assert_eq!(q.get_timeout(Duration::from_secs(5))?, 1); // due
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`nack`](Self::nack); those of [`ack`](Self::ack) for recording the due
    /// time (the item is given back in memory either way).
    pub fn nack_after(mut self, delay: Duration) -> Result<()> {
        self.hold.settled = true;
        self.hold.queue.give_back(&self.hold.ticket, Some(delay))
    }

    /// Moves the item to the [dead letters](Queue::dead_letters) with `reason`: it is not
    /// delivered again, but kept, with the reason, its attempts and the time, until
    /// [`requeue_all`](crate::DeadLetters::requeue_all) or
    /// [`purge`](crate::DeadLetters::purge). The dead letter is synced before the item is
    /// acknowledged here: after a crash at any point the item is in one of the two queues,
    /// or at worst both, never in neither.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put(&"{not json".to_string())?;
    /// q.get_delivery()?.dead_letter("bad input")?;
    /// assert!(q.is_empty());
    /// assert_eq!(q.unfinished(), 0); // join counts it as done
    /// let d = q.dead_letters().iter().next().unwrap()?;
    /// assert_eq!(d.reason(), "bad input");
    /// q.put(&"next".to_string())?;
    /// let d = q.get_delivery()?;
    /// q.task_done()?;
    /// let late = d.dead_letter("late"); // already acknowledged: nothing changes
    /// assert!(matches!(late, Err(diskq::Error::AlreadyAcknowledged { seq: 1 })));
    /// assert_eq!(q.dead_letters().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`nack`](Self::nack); [`Error::NoSpace`](crate::Error::NoSpace) or
    /// [`Error::Io`](crate::Error::Io) when the dead letter cannot be stored (the item is
    /// given back, as by `nack`); those of [`ack`](Self::ack).
    pub fn dead_letter(mut self, reason: impl Into<String>) -> Result<()>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.hold.settled = true;
        self.hold
            .queue
            .dead_letter_ticket(&self.hold.ticket, reason.into())
    }

    /// Keeps this delivery `span` longer from now: its lease runs out then instead (a
    /// delivery without a lease gets one).
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new()
    ///     .lease(Duration::from_millis(30))
    ///     .open(dir.path())?;
    /// q.put(&1)?;
    /// let d = q.get_delivery()?;
    /// d.extend_lease(Duration::from_secs(60))?; // still working on it
    /// std::thread::sleep(Duration::from_millis(60));
    /// assert!(q.get_nowait().unwrap_err().is_empty()); // still held
    /// d.ack()?;
    /// q.put(&2)?;
    /// let late = q.get_delivery()?;
    /// std::thread::sleep(Duration::from_millis(60)); // its lease runs out
    /// assert!(late.extend_lease(Duration::from_secs(60)).unwrap_err().is_lease_expired());
    /// q.put(&3)?;
    /// let done = q.get_delivery()?;
    /// q.task_done()?; // FIFO: acknowledges the oldest item in flight, this one
    /// let res = done.extend_lease(Duration::from_secs(60));
    /// assert!(matches!(res, Err(diskq::Error::AlreadyAcknowledged { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LeaseExpired`](crate::Error::LeaseExpired) when the lease already ran out;
    /// [`Error::AlreadyAcknowledged`](crate::Error::AlreadyAcknowledged).
    pub fn extend_lease(&self, span: Duration) -> Result<()> {
        self.hold.queue.extend_ticket(&self.hold.ticket, span)
    }

    /// The item, leaving it in flight (delivered again after a reopen or when its lease
    /// runs out, unless `task_done` acknowledges it).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&["a".to_string(), "b".to_string()])?;
    /// let a = q.get_delivery()?.into_inner(); // stays in flight
    /// assert_eq!(a, "a");
    /// q.task_done()?; // FIFO: acknowledges "a"
    /// assert_eq!(q.get()?, "b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(mut self) -> T {
        self.hold.settled = true;
        self.item
    }
}
