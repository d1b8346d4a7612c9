//! A wait-list that threads and tasks share: a condition variable for blocking callers
//! and an [`event_listener::Event`] for futures, notified together, so that a blocking
//! `get` on a thread and a `get_async` in a task wait for the same items.
//!
//! `event-listener` (the smol project's, used by async-channel and async-lock) gives a
//! `Waker` list with the semantics a condition variable has: a listener registered
//! before a last look at the state misses no notification after it, and a notified
//! listener that is dropped unwoken (a cancelled future) passes its notification on. Its
//! `notify` costs one atomic load while no future has ever listened, so the blocking
//! paths pay nothing for it.

use event_listener::{Event, EventListener, IntoNotification};
use parking_lot::Condvar;
use std::ops::Deref;

/// A condition variable that wakes futures too. Derefs to the [`Condvar`] for the
/// blocking waits; notifying goes through [`notify_one`](Self::notify_one) and
/// [`notify_all`](Self::notify_all), which wake both kinds of waiter.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    cv: Condvar,
    event: Event,
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
        self.event.notify(1.additional());
    }

    /// Wakes every blocked thread and listening future.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.cv.notify_all();
        self.event.notify(usize::MAX);
    }

    /// A listener for the next notification: register it, look at the state again,
    /// then await it if there is still nothing to do.
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }
}

impl Deref for WaitList {
    type Target = Condvar;

    fn deref(&self) -> &Condvar {
        &self.cv
    }
}
