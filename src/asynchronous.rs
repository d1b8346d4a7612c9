//! The async API of [`Queue`]: `put_async`, `get_async`, `get_delivery_async`, waiting
//! on the same wait-lists as the blocking calls (`waitlist.rs`), with no executor and no
//! runtime dependency. The channel's are in `channel/asynchronous.rs`.
//!
//! Every future here does its work in a synchronous call inside one `poll`: it looks
//! (`get_nowait`, `put_nowait`), and if there is nothing to do yet, registers a listener,
//! looks once more, and sleeps until notified. So a future dropped between polls (the
//! losing branch of a `select!`) has taken nothing and stored nothing: cancellation
//! cannot lose an item.

use crate::intake::Intake;
use crate::timer::Sleep;
use crate::{Delivery, Error, Queue, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A notification on a wait-list, or the end of `after`, whichever comes first.
pub(crate) struct Notified<L> {
    listener: L,
    sleep: Option<Sleep>,
}

impl<L: Future<Output = ()> + Unpin> Notified<L> {
    /// `after`: when the waiter must look again by itself (a delay or lease that comes
    /// due, a pause to poll), as the blocking waits' timers.
    pub(crate) fn new(listener: L, after: Option<Duration>) -> Notified<L> {
        let mut n = Notified {
            listener,
            sleep: None,
        };
        n.set_after(after);
        n
    }

    /// Sets the timer: `after` from now, as in [`new`](Self::new).
    pub(crate) fn set_after(&mut self, after: Option<Duration>) {
        self.sleep = after
            .and_then(|t| Instant::now().checked_add(t))
            .map(Sleep::until);
    }

    /// The listener, for its owner to give back to its wait-list.
    pub(crate) fn listener_mut(&mut self) -> &mut L {
        &mut self.listener
    }
}

impl<L: Future<Output = ()> + Unpin> Future for Notified<L> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if Pin::new(&mut this.listener).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match &mut this.sleep {
            Some(sleep) => Pin::new(sleep).poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Counts a waiting task among the buffered intake's sleepers while it lives, so that a
/// put that leaves its item in the intake wakes it (`intake.rs`).
struct Asleep<'a>(&'a Intake);

impl<'a> Asleep<'a> {
    fn new(intake: &'a Intake) -> Asleep<'a> {
        // Whether items came meanwhile does not matter: the caller looks again next.
        let _ = intake.sleeping();
        Asleep(intake)
    }
}

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        self.0.awake();
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Like [`put`](Self::put), for async code: waits without blocking the thread while
    /// the queue is full (`max_size`, `max_bytes`).
    ///
    /// The write itself happens inside the call, as in `put`: a copy into the page cache
    /// at the default level; at [`Durability::Synced`](crate::Durability::Synced) it
    /// blocks the task's thread for one `fdatasync`, shared with concurrent puts (group
    /// commit). Run such puts where blocking a few milliseconds is fine, or on
    /// `spawn_blocking`.
    ///
    /// **Cancellation:** the item is stored in the same `poll` that completes the future,
    /// so a future dropped before it completed did not store its item.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// futures::executor::block_on(async {
    ///     q.put_async(&"resize photo 1".to_string()).await?;
    ///     assert_eq!(q.get_async().await?, "resize photo 1");
    ///     q.task_done()
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`put`](Self::put).
    pub async fn put_async(&self, item: &T) -> Result<()> {
        loop {
            match self.put_nowait(item) {
                Err(Error::Full) => {}
                res => return res,
            }
            let listener = self.not_full.listen();
            match self.put_nowait(item) {
                Err(Error::Full) => {}
                res => return res,
            }
            listener.await;
        }
    }

    /// Like [`get`](Self::get), for async code: waits without blocking the thread while
    /// the queue is empty or paused. The item is acknowledged by
    /// [`task_done`](Self::task_done), as with `get`.
    ///
    /// **Cancellation:** the item is taken in the same `poll` that completes the future,
    /// so a future dropped before it completed (the losing branch of a `select!`) took
    /// nothing.
    ///
    /// A thread blocked in `get` and a task awaiting `get_async` on the same queue both
    /// work, and each item goes to one of them.
    ///
    /// Waiting for an item does not block the thread; taking it may, briefly: at
    /// [`Durability::Synced`](crate::Durability::Synced) with
    /// [`Options::max_deliveries`](crate::Options::max_deliveries) the delivery is synced
    /// before the item is handed out, and at `Buffered` a get may wait for another
    /// thread's write in progress.
    ///
    /// ```
    /// use futures::FutureExt;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// // Polled once on an empty queue, then dropped (a `select!` that took another
    /// // branch): it took nothing.
    /// assert!(q.get_async().now_or_never().is_none());
    /// q.put(&7)?;
    /// assert_eq!(futures::executor::block_on(q.get_async())?, 7);
    /// q.task_done()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`get`](Self::get).
    pub async fn get_async(&self) -> Result<T> {
        self.when_ready(Self::get_nowait).await
    }

    /// Like [`get_delivery`](Self::get_delivery), for async code, with
    /// [`get_async`](Self::get_async)'s waiting and cancellation.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&7)?;
    /// let job = futures::executor::block_on(async {
    ///     let d = q.get_delivery_async().await?;
    ///     d.ack() // returns the item
    /// })?;
    /// assert_eq!(job, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`get`](Self::get).
    pub async fn get_delivery_async(&self) -> Result<Delivery<'_, T>> {
        self.when_ready(Self::get_delivery_nowait).await
    }

    /// Calls `attempt` until it is not [`Error::Empty`], sleeping between calls until
    /// the queue's `not_empty` is notified or a timer of the queue comes due.
    async fn when_ready<'a, R>(&'a self, attempt: fn(&'a Self) -> Result<R>) -> Result<R> {
        loop {
            match attempt(self) {
                Err(Error::Empty) => {}
                res => return res,
            }
            let listener = self.sig.not_empty.listen();
            let _asleep = self.intake().map(Asleep::new);
            match attempt(self) {
                Err(Error::Empty) => {}
                res => return res,
            }
            Notified::new(listener, self.timer()).await;
        }
    }
}
