//! A wait-list that threads and tasks share: a condition variable for blocking callers
//! and an [`event_listener::Event`] for futures, notified together, so that a blocking
//! `get` on a thread and a `get_async` in a task wait for the same items.
//!
//! `event-listener` (the smol project's, used by async-channel and async-lock) gives a
//! `Waker` list with the semantics a condition variable has: a listener registered
//! before a last look at the state misses no notification after it, and a notified
//! listener that is dropped unwoken (a cancelled future) passes its notification on. Its
//! `notify` locks the list, though, even with no one on it; so the wait-list counts its
//! listeners and notifies futures only while some listen: the blocking paths pay one
//! atomic load per notification.

use event_listener::{Event, EventListener, IntoNotification};
use parking_lot::Condvar;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

/// A condition variable that wakes futures too. Derefs to the [`Condvar`] for the
/// blocking waits; notifying goes through [`notify_one`](Self::notify_one) and
/// [`notify_all`](Self::notify_all), which wake both kinds of waiter.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    cv: Condvar,
    event: Event,
    /// Live listeners ([`Listener`]s, and those of [`listen_counted`](Self::listen_counted)
    /// not yet [`unlisten`](Self::unlisten)ed). Beside the condition variable, not
    /// behind a pointer: every notification reads it.
    listening: AtomicUsize,
}

impl WaitList {
    pub(crate) fn new() -> WaitList {
        WaitList::default()
    }

    /// Wakes one blocked thread and one more listening future. A condition variable's
    /// `notify_one` wakes one more waiter each time; `additional` gives futures the
    /// same count, so two puts wake two tasks. Waking one of each may wake one too
    /// many: every waiter looks again and sleeps again when there is nothing for it.
    #[inline]
    pub(crate) fn notify_one(&self) {
        self.cv.notify_one();
        // A listener counts itself before its last look at the state, and the state
        // changed before this notification (published by a lock or a sequentially
        // consistent operation): either that look sees the change or this load sees
        // the listener.
        if self.listening.load(SeqCst) > 0 {
            self.wake_futures(false);
        }
    }

    /// Wakes every blocked thread and listening future.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.cv.notify_all();
        if self.listening.load(SeqCst) > 0 {
            self.wake_futures(true);
        }
    }

    /// Out of line and cold: the notifying paths (every put) stay as small as they
    /// were with a bare condition variable, which measured faster (W2).
    #[cold]
    #[inline(never)]
    fn wake_futures(&self, all: bool) {
        if all {
            self.event.notify(usize::MAX);
        } else {
            self.event.notify(1.additional());
        }
    }

    /// A listener for the next notification: register it, look at the state again,
    /// then await it if there is still nothing to do.
    pub(crate) fn listen(&self) -> Listener<'_> {
        Listener {
            inner: self.listen_counted(),
            list: self,
        }
    }

    /// As [`listen`](Self::listen), for an owner that cannot borrow the wait-list (it
    /// holds what holds it): it must call [`unlisten`](Self::unlisten) once done with
    /// the listener.
    pub(crate) fn listen_counted(&self) -> EventListener {
        self.listening.fetch_add(1, SeqCst);
        self.event.listen()
    }

    /// A listener of [`listen_counted`](Self::listen_counted) is gone.
    pub(crate) fn unlisten(&self) {
        self.listening.fetch_sub(1, SeqCst);
    }
}

/// A future's registration on a [`WaitList`]: ready once notified; counted while it
/// lives.
pub(crate) struct Listener<'a> {
    inner: EventListener,
    list: &'a WaitList,
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.list.unlisten();
    }
}

impl Deref for WaitList {
    type Target = Condvar;

    fn deref(&self) -> &Condvar {
        &self.cv
    }
}
