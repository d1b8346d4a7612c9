//! A wait-list that threads and tasks share: a condition variable for blocking callers
//! and an [`event_listener::Event`] for futures, notified together, so that a blocking
//! `get` on a thread and a `get_async` in a task wait for the same items.
//!
//! `event-listener` (the smol project's, used by async-channel and async-lock) gives a
//! `Waker` list with the semantics a condition variable has: a listener registered
//! before a last look at the state misses no notification after it. Its `notify` locks
//! the list, though, even when no one listens or every listener is already notified; so
//! the wait-list counts its listeners and the notifications they hold, and notifies the
//! `Event` only while some listener holds none. The blocking paths pay one atomic load
//! per notification, and a producer whose consumer task was woken but has not run yet
//! (tokio runs it after the producer's task yields) pays two.
//!
//! Why skipping is safe: `armed` counts notifications delivered (added after the
//! `Event` reports the delivery) and not yet ended, and a listener's notification ends
//! (`armed` down) before the listener stops being counted (`listening` down) and, when
//! it fired, before its owner looks at the state again. So `armed >= listening` at a
//! notification means every counted listener holds a notification, or has just fired
//! and will look again after this change; none sleeps through it. A listener counted
//! after the check looks at the state after its count, so it sees the change. A listener
//! dropped holding a notification (its owner found an item without waiting, or gave up)
//! discards it and passes it on through the same check, as `event-listener` itself does.

use event_listener::{Event, EventListener, IntoNotification, Listener as _};
use parking_lot::Condvar;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

/// A condition variable that wakes futures too. Derefs to the [`Condvar`] for the
/// blocking waits; notifying goes through [`notify_one`](Self::notify_one) and
/// [`notify_all`](Self::notify_all), which wake both kinds of waiter.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    cv: Condvar,
    event: Event,
    /// Live listeners ([`Listener`]s and [`Armed`]s not yet [`unlisten`](Self::unlisten)ed).
    /// Beside the condition variable, not behind a pointer: every notification reads it.
    listening: AtomicUsize,
    /// Notifications delivered to listeners and not yet ended (fired and dropped, or
    /// discarded). Signed: a notification can end before its delivery is counted.
    armed: AtomicIsize,
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
        let listening = self.listening.load(SeqCst);
        if listening > 0 && self.unarmed(listening) {
            self.wake_futures(false);
        }
    }

    /// Wakes every blocked thread and listening future.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.cv.notify_all();
        let listening = self.listening.load(SeqCst);
        if listening > 0 && self.unarmed(listening) {
            self.wake_futures(true);
        }
    }

    /// Whether some of `listening` listeners may hold no notification (module docs).
    #[inline]
    fn unarmed(&self, listening: usize) -> bool {
        self.armed.load(SeqCst) < listening as isize
    }

    /// Out of line and cold: the notifying paths (every put) stay as small as they
    /// were with a bare condition variable, which measured faster (W2).
    #[cold]
    #[inline(never)]
    fn wake_futures(&self, all: bool) {
        let delivered = if all {
            self.event.notify(usize::MAX)
        } else {
            self.event.notify(1.additional())
        };
        self.armed.fetch_add(delivered as isize, SeqCst);
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
    /// holds what holds it): it must give the listener back to
    /// [`unlisten`](Self::unlisten) once done with it.
    pub(crate) fn listen_counted(&self) -> Armed {
        self.listening.fetch_add(1, SeqCst);
        Armed {
            inner: Some(self.event.listen()),
            fired: false,
        }
    }

    /// A listener of [`listen_counted`](Self::listen_counted) is done with: its
    /// notification, if it got one, ends; one it holds unused is passed on.
    pub(crate) fn unlisten(&self, listener: &mut Armed) {
        let Some(inner) = listener.inner.take() else {
            return; // already given back
        };
        let unused = inner.discard();
        if unused || listener.fired {
            self.armed.fetch_sub(1, SeqCst);
        }
        self.listening.fetch_sub(1, SeqCst);
        if unused {
            let listening = self.listening.load(SeqCst);
            if listening > 0 && self.unarmed(listening) {
                self.wake_futures(false);
            }
        }
    }
}

/// A future's registration on a [`WaitList`], not borrowing it: ready once notified.
/// Given back with [`WaitList::unlisten`]. (One dropped without that would leave both
/// counts one high when it held a notification, and `listening` alone when not: the
/// comparison stays safe, it only notifies more.)
#[derive(Debug)]
pub(crate) struct Armed {
    inner: Option<EventListener>,
    /// The notification came and was taken by a `poll`.
    fired: bool,
}

impl Future for Armed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(());
        };
        let res = Pin::new(inner).poll(cx);
        this.fired |= res.is_ready();
        res
    }
}

/// A future's registration on a [`WaitList`]: ready once notified; counted while it
/// lives.
pub(crate) struct Listener<'a> {
    inner: Armed,
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
        self.list.unlisten(&mut self.inner);
    }
}

impl Deref for WaitList {
    type Target = Condvar;

    fn deref(&self) -> &Condvar {
        &self.cv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Polls once: whether the listener has been notified.
    fn ready<F: Future + Unpin>(f: &mut F) -> bool {
        Pin::new(f)
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    fn counts(w: &WaitList) -> (usize, isize) {
        (w.listening.load(SeqCst), w.armed.load(SeqCst))
    }

    #[test]
    fn two_notifications_wake_two_listeners_and_a_third_is_not_lost() {
        let w = WaitList::new();
        let (mut a, mut b) = (w.listen(), w.listen());
        w.notify_one();
        w.notify_one();
        assert!(ready(&mut a) && ready(&mut b));
        // Both hold (fired) notifications: a third is skipped, without a lock.
        w.notify_one();
        assert_eq!(counts(&w), (2, 2));
        // A listener that comes after the skip gets the next notification.
        let mut c = w.listen();
        assert!(!ready(&mut c));
        w.notify_one();
        assert!(ready(&mut c));
        drop((a, b, c));
        assert_eq!(counts(&w), (0, 0));
    }

    #[test]
    fn a_listener_dropped_holding_a_notification_passes_it_on() {
        let w = WaitList::new();
        let (a, mut b) = (w.listen(), w.listen());
        w.notify_one(); // to `a`, the first
        assert!(!ready(&mut b));
        drop(a); // found its item without waiting: the notification goes on to `b`
        assert!(ready(&mut b));
        drop(b);
        assert_eq!(counts(&w), (0, 0));
    }

    #[test]
    fn a_fired_listener_counts_as_armed_until_dropped_then_others_are_woken() {
        let w = WaitList::new();
        let mut a = w.listen();
        w.notify_one();
        assert!(ready(&mut a));
        // `a` will look at the state again: a notification now is not needed.
        w.notify_all();
        assert_eq!(counts(&w), (1, 1));
        drop(a);
        let mut b = w.listen();
        w.notify_all();
        assert!(ready(&mut b));
        drop(b);
        assert_eq!(counts(&w), (0, 0));
    }

    #[test]
    fn given_back_listeners_of_listen_counted_end_their_notifications() {
        let w = WaitList::new();
        let (mut a, mut b) = (w.listen_counted(), w.listen_counted());
        w.notify_one();
        w.unlisten(&mut a); // unused: passed on to `b`
        assert!(ready(&mut b));
        w.unlisten(&mut b);
        w.unlisten(&mut b); // twice is harmless
        assert_eq!(counts(&w), (0, 0));
        // Nobody listens: a notification is dropped, and counts nothing.
        w.notify_one();
        assert_eq!(counts(&w), (0, 0));
    }
}
