//! The channel's async API (flume's names): `send_async`, `recv_async`,
//! `recv_delivery_async`, and the receiver as a `futures_core::Stream`.
//!
//! As in `asynchronous.rs`, every item moves in a synchronous call inside one `poll`
//! (`send_until` and `recv_until` with `Deadline::Now`); between polls a future holds
//! only a listener on the channel's wait-list, so dropping it loses and takes nothing.
//! A waiting future counts itself in `recv_waiting` (`send_waiting`) as a blocked
//! thread does, so that the sends (receives) that skip the wake-up when nobody waits
//! wake it too.
//!
//! The receiving calls take `&mut self`: a `Receiver` has one item in progress and is
//! not `Sync`, and a future holding `&mut Receiver` is `Send`, so it can be spawned on a
//! multi-threaded runtime. Clone the receiver for each task that receives.

use super::{Deadline, OwnedDelivery, Receiver, RecvError, RecvFail, SendError, SendFail};
use super::{Sender, Shared};
use crate::asynchronous::Notified;
use crate::delivery::Ticket;
use crate::waitlist::{Armed, WaitList};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

/// A future's place among the waiters: counted while it lives.
struct Waiting<T> {
    shared: Arc<Shared<T>>,
    notified: Notified<Armed>,
    side: Side,
}

/// Which wait-list a future is on.
#[derive(Clone, Copy)]
enum Side {
    /// Receivers: `not_empty`, counted in `recv_waiting`.
    Recv,
    /// Senders: `not_full`, counted in `send_waiting`.
    Send,
}

impl Side {
    fn of<T>(self, shared: &Shared<T>) -> (&AtomicUsize, &WaitList) {
        match self {
            Side::Recv => (&shared.recv_waiting, &shared.not_empty),
            Side::Send => (&shared.send_waiting, &shared.not_full),
        }
    }
}

impl<T> Waiting<T> {
    /// Counts the caller among the waiters of its side, then listens: the other side
    /// notifies once it sees the count, and the listener catches it.
    fn new(shared: &Arc<Shared<T>>, side: Side) -> Waiting<T> {
        let (count, list) = side.of(shared);
        count.fetch_add(1, SeqCst);
        let mut waiting = Waiting {
            shared: shared.clone(),
            notified: Notified::new(list.listen_counted(), None),
            side,
        };
        // After listening (a delay added meanwhile notifies the listener), and with the
        // count and the listener owned: a panicking clock gives both back (`Drop`).
        waiting.notified.set_after(shared.queue.timer());
        waiting
    }
}

impl<T> Drop for Waiting<T> {
    fn drop(&mut self) {
        let (count, list) = self.side.of(&self.shared);
        list.unlisten(self.notified.listener_mut());
        count.fetch_sub(1, SeqCst);
    }
}

/// A receive in progress: whether the item handed out before was acknowledged yet, and
/// the wait, if any.
pub(super) struct RecvState<T> {
    acked: bool,
    waiting: Option<Waiting<T>>,
}

impl<T> RecvState<T> {
    fn new() -> RecvState<T> {
        RecvState {
            acked: false,
            waiting: None,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    /// Polls a receive: acknowledges the item handed out before (once per receive), then
    /// takes the next item, or registers to be woken when one may be there.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        st: &mut RecvState<T>,
    ) -> Poll<Result<(T, Ticket), RecvFail>> {
        if !st.acked {
            st.acked = true;
            if let Err(e) = self.ack_pending() {
                return Poll::Ready(Err(RecvFail::Storage(e)));
            }
        }
        loop {
            if let Some(w) = &mut st.waiting {
                if Pin::new(&mut w.notified).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                st.waiting = None;
            }
            match self.shared.recv_until(Deadline::Now) {
                Err(RecvFail::Empty) => {}
                res => return Poll::Ready(self.rearmed(res)),
            }
            st.waiting = Some(Waiting::new(&self.shared, Side::Recv));
            match self.shared.recv_until(Deadline::Now) {
                Err(RecvFail::Empty) => {} // poll the listener: registers the waker
                res => {
                    st.waiting = None;
                    return Poll::Ready(self.rearmed(res));
                }
            }
        }
    }

    fn rearmed(&self, res: Result<(T, Ticket), RecvFail>) -> Result<(T, Ticket), RecvFail> {
        self.rearm(&res);
        res
    }

    /// Polls a receive whose item stays in progress until the next receive.
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        st: &mut RecvState<T>,
    ) -> Poll<Result<T, RecvFail>> {
        let res = std::task::ready!(self.poll_take(cx, st));
        Poll::Ready(res.map(|(item, ticket)| {
            self.pending.set(Some(ticket));
            item
        }))
    }

    /// Like [`recv`](Self::recv), for async code: waits without blocking the thread
    /// while the channel is empty and a [`Sender`] exists. Acknowledges the item this
    /// receiver returned before, at the first poll.
    ///
    /// **Cancellation:** the item is taken in the same `poll` that completes the future,
    /// so a future dropped before it completed (the losing branch of a `select!`) took
    /// nothing; the item returned before is acknowledged all the same once the future
    /// was polled, since the receiver asked for the next one.
    ///
    /// Takes `&mut self` so that the future is `Send` (a `Receiver` is not `Sync`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, mut rx) = diskq::channel::<u32>(dir.path())?;
    /// futures::executor::block_on(async {
    ///     tx.send_async(5).await?;
    ///     drop(tx);
    ///     assert_eq!(rx.recv_async().await?, 5);
    ///     assert!(rx.recv_async().await.unwrap_err().is_disconnected());
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`recv`](Self::recv).
    pub async fn recv_async(&mut self) -> Result<T, RecvError> {
        // (The closure borrows `self` mutably: a shared borrow would make the future
        // `!Send`, `Receiver` not being `Sync`.)
        let mut st = RecvState::new();
        poll_fn(|cx| self.poll_recv(cx, &mut st))
            .await
            .map_err(RecvError::from_fail)
    }

    /// Like [`recv_delivery`](Self::recv_delivery), for async code, with
    /// [`recv_async`](Self::recv_async)'s waiting and cancellation.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, mut rx) = diskq::channel::<String>(dir.path())?;
    /// tx.send("resize photo 3".to_string())?;
    /// futures::executor::block_on(async {
    ///     let job = rx.recv_delivery_async().await?;
    ///     // ... work on *job, on any task or thread ...
    ///     job.ack()?;
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`recv`](Self::recv).
    pub async fn recv_delivery_async(&mut self) -> Result<OwnedDelivery<T>, RecvError> {
        let mut st = RecvState::new();
        let (item, ticket) = poll_fn(|cx| self.poll_take(cx, &mut st))
            .await
            .map_err(RecvError::from_fail)?;
        Ok(OwnedDelivery::new(&self.shared, item, ticket))
    }

    /// The received items as a [`Stream`](futures_core::Stream), borrowing the
    /// receiver: each item is acknowledged when the next is asked for, or when the
    /// receiver is dropped, as with [`iter`](Self::iter). The stream ends when the
    /// channel is disconnected.
    ///
    /// ```
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, mut rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// drop(tx);
    /// let sum = futures::executor::block_on(rx.stream().fold(0, |a, b| async move { a + b }));
    /// assert_eq!(sum, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On a storage failure, as the iterators do: a stream of `T` cannot report it, and
    /// it must not pass for the end of the items. Loop on
    /// [`recv_async`](Self::recv_async) to handle those errors.
    pub fn stream(&mut self) -> RecvStream<'_, T> {
        RecvStream {
            rx: self,
            st: RecvState::new(),
        }
    }

    /// The received items as a [`Stream`](futures_core::Stream) that owns the
    /// receiver; see [`stream`](Self::stream).
    ///
    /// ```
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// drop(tx);
    /// let items: Vec<u32> = futures::executor::block_on(rx.into_stream().collect());
    /// assert_eq!(items, [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// As [`stream`](Self::stream).
    pub fn into_stream(self) -> IntoStream<T> {
        IntoStream {
            rx: self,
            st: RecvState::new(),
        }
    }
}

/// Polls the next item of a stream: `None` once disconnected.
fn poll_next_item<T: Serialize + DeserializeOwned>(
    rx: &mut Receiver<T>,
    st: &mut RecvState<T>,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    let res = std::task::ready!(rx.poll_recv(cx, st));
    // The next item acknowledges this one first.
    *st = RecvState::new();
    Poll::Ready(match res {
        Ok(item) => Some(item),
        Err(RecvFail::Disconnected) => None,
        Err(RecvFail::Empty) => unreachable!("a receive that waits is never Empty"),
        Err(RecvFail::Storage(e)) => panic!("diskq channel stream: {e}"),
    })
}

/// A [`Stream`](futures_core::Stream) of received items, borrowing the receiver
/// ([`Receiver::stream`]).
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, T> {
    rx: &'a mut Receiver<T>,
    st: RecvState<T>,
}

/// A [`Stream`](futures_core::Stream) of received items, owning the receiver
/// ([`Receiver::into_stream`]).
#[must_use = "streams do nothing unless polled"]
pub struct IntoStream<T> {
    rx: Receiver<T>,
    st: RecvState<T>,
}

impl<T: Serialize + DeserializeOwned> futures_core::Stream for RecvStream<'_, T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        poll_next_item(this.rx, &mut this.st, cx)
    }
}

impl<T: Serialize + DeserializeOwned> futures_core::Stream for IntoStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        poll_next_item(&mut this.rx, &mut this.st, cx)
    }
}

impl<T> IntoStream<T> {
    /// The receiver back (its item in progress, if any, still unacknowledged).
    ///
    /// ```
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::channel::<u32>(dir.path())?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// let mut items = rx.into_stream();
    /// assert_eq!(futures::executor::block_on(items.next()), Some(1));
    /// let rx = items.into_inner(); // item 1 not acknowledged yet: the next receive does it
    /// assert_eq!(rx.recv()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(self) -> Receiver<T> {
        self.rx
    }
}

impl<T> std::fmt::Debug for RecvStream<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for IntoStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntoStream").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> Sender<T> {
    /// Like [`send`](Self::send), for async code: waits without blocking the thread
    /// while a bounded channel is full.
    ///
    /// The write happens inside the call, as in `send`: at
    /// [`Durability::Synced`](crate::Durability::Synced) it blocks the task's thread for
    /// one `fdatasync`, shared with concurrent sends.
    ///
    /// **Cancellation:** the item is stored in the same `poll` that completes the future,
    /// so a future dropped before it completed did not store its item (and drops it).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let (tx, rx) = diskq::sync_channel::<u32>(dir.path(), 1)?;
    /// futures::executor::block_on(tx.send_async(1))?;
    /// assert_eq!(rx.try_recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`send`](Self::send).
    pub async fn send_async(&self, item: T) -> Result<(), SendError<T>> {
        let shared = &self.shared;
        let mut item = item;
        loop {
            item = match shared.send_until(item, Deadline::Now) {
                Err((SendFail::Full, item)) => item,
                res => return res.map_err(send_error),
            };
            let waiting = Waiting::new(shared, Side::Send);
            item = match shared.send_until(item, Deadline::Now) {
                Err((SendFail::Full, item)) => item,
                res => return res.map_err(send_error),
            };
            waiting.await;
        }
    }
}

fn send_error<T>((fail, item): (SendFail, T)) -> SendError<T> {
    match fail {
        SendFail::Full | SendFail::Disconnected => SendError::Disconnected(item),
        SendFail::Storage(e) => SendError::Storage(item, e),
    }
}

impl<T> Future for Waiting<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.notified).poll(cx)
    }
}
