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
//! per notification while no task listens, and a producer whose consumer task was woken but has not run yet
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
        debug_assert!(
            inner.listens_to(&self.event),
            "a listener of another wait-list"
        );
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
/// Given back with [`WaitList::unlisten`], always, and before its owner looks at the
/// state again (the module docs' argument needs both). One dropped without that leaves
/// `listening` one high for good (`event-listener` passes a notification it held on by
/// itself, uncounted): safe, but every notification then takes the lock.
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
    use std::sync::atomic::AtomicU64;
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

    // ---- review22 (d6cbf40): probes added by the review, not part of the change ----

    /// A reference of the semantics the skip must keep: FIFO listeners, each notified at
    /// most once; `notify_one` notifies the first listener that holds none (notified or
    /// fired), `notify_all` all of them, a dropped listener holding an unused notification
    /// passes it to the first that holds none.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum RefState {
        Waiting,
        Notified,
        Fired,
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn ref_wake_first(r: &mut [(usize, RefState)]) {
        if let Some(e) = r.iter_mut().find(|e| e.1 == RefState::Waiting) {
            e.1 = RefState::Notified;
        }
    }

    /// Single-threaded random sequences: every observable (which listener is ready) and
    /// both counts match the reference after every step, for `listen` (borrowing) and
    /// `listen_counted` (given back) listeners alike.
    #[test]
    fn probe_review22_random_ops_match_reference_semantics() {
        for seed in 1..400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let w = WaitList::new();
            let mut live: Vec<(usize, Armed)> = Vec::new();
            let mut reference: Vec<(usize, RefState)> = Vec::new();
            let mut next_id = 0;
            for _ in 0..200 {
                match rng.below(6) {
                    0 | 1 => {
                        live.push((next_id, w.listen_counted()));
                        reference.push((next_id, RefState::Waiting));
                        next_id += 1;
                    }
                    2 => {
                        w.notify_one();
                        ref_wake_first(&mut reference);
                    }
                    3 => {
                        w.notify_all();
                        for e in reference.iter_mut().filter(|e| e.1 == RefState::Waiting) {
                            e.1 = RefState::Notified;
                        }
                    }
                    4 if !live.is_empty() => {
                        // Poll one (only once ready: a fired listener is not polled again).
                        let i = rng.below(live.len() as u64) as usize;
                        if reference[i].1 != RefState::Fired {
                            let got = ready(&mut live[i].1);
                            let want = reference[i].1 == RefState::Notified;
                            assert_eq!(got, want, "seed {seed}: poll of listener {}", live[i].0);
                            if got {
                                reference[i].1 = RefState::Fired;
                            }
                        }
                    }
                    5 if !live.is_empty() => {
                        let i = rng.below(live.len() as u64) as usize;
                        let (_, mut l) = live.remove(i);
                        let (_, st) = reference.remove(i);
                        w.unlisten(&mut l);
                        if st == RefState::Notified {
                            ref_wake_first(&mut reference);
                        }
                    }
                    _ => {}
                }
                let armed = reference
                    .iter()
                    .filter(|e| e.1 != RefState::Waiting)
                    .count();
                assert_eq!(counts(&w), (reference.len(), armed as isize), "seed {seed}");
            }
            // Every listener's readiness matches at the end too.
            for (i, (id, l)) in live.iter_mut().enumerate() {
                if reference[i].1 != RefState::Fired {
                    assert_eq!(
                        ready(l),
                        reference[i].1 == RefState::Notified,
                        "seed {seed}: {id}"
                    );
                }
            }
            for (_, mut l) in live {
                w.unlisten(&mut l);
            }
            assert_eq!(counts(&w), (0, 0));
        }
    }

    /// An `Armed` dropped without `unlisten` (the module's "stays safe" claim): the
    /// event-listener's own drop passes its notification on to another listener without
    /// `armed` counting that delivery, and the other listener's end then takes `armed`
    /// down: the counts end at `listening` one high and `armed` exact, as `Armed`'s docs
    /// say; still safe (it only notifies more).
    #[test]
    fn probe_review22_armed_dropped_without_unlisten_drifts_safely() {
        let w = WaitList::new();
        let (a, mut b) = (w.listen_counted(), w.listen_counted());
        w.notify_one(); // to `a`
        assert_eq!(counts(&w), (2, 1));
        drop(a); // not given back: event-listener propagates to `b`, uncounted
        assert!(ready(&mut b));
        w.unlisten(&mut b);
        assert_eq!(counts(&w), (1, 0));
        // A new listener is still woken.
        let mut c = w.listen_counted();
        w.notify_one();
        assert!(ready(&mut c));
        w.unlisten(&mut c);
    }

    /// A bare wait-list guarding a counter of "items", for the stress test below.
    struct Items {
        items: parking_lot::Mutex<u64>,
        w: WaitList,
    }

    impl Items {
        fn take(&self) -> bool {
            let mut g = self.items.lock();
            let had = *g > 0;
            if had {
                *g -= 1;
            }
            had
        }
    }

    /// Takes `n` items: looks, listens, looks again, and awaits the listener, often
    /// racing a `yield_now` (cancelled while registered or notified) or a short timer.
    async fn taker(s: std::sync::Arc<Items>, n: u64, seed: u64, cancels: &AtomicU64) {
        let mut got = 0;
        let mut rng = Rng(seed | 1);
        while got < n {
            if s.take() {
                got += 1;
                continue;
            }
            let l = s.w.listen();
            if s.take() {
                got += 1;
                continue;
            }
            match rng.below(4) {
                0 => tokio::select! {
                    biased;
                    _ = l => {}
                    _ = tokio::task::yield_now() => { cancels.fetch_add(1, SeqCst); }
                },
                1 => tokio::select! {
                    _ = l => {}
                    _ = tokio::time::sleep(std::time::Duration::from_micros(50)) => {
                        cancels.fetch_add(1, SeqCst);
                    }
                },
                _ => l.await,
            }
        }
    }

    /// Adds `n` items one at a time, notifying one (now and then all), with pauses.
    fn putter(s: &Items, n: u64, t: u64) {
        for i in 0..n {
            *s.items.lock() += 1;
            if (i + t).is_multiple_of(97) {
                s.w.notify_all();
            } else {
                s.w.notify_one();
            }
            if i.is_multiple_of(7) {
                std::thread::yield_now();
            }
            if i.is_multiple_of(61) {
                std::thread::sleep(std::time::Duration::from_micros(30));
            }
        }
    }

    /// One round: 6 taker tasks on a runtime of `workers` threads, 3 putter threads.
    /// Returns how many waits were cancelled.
    fn stress_round(workers: usize, seed: u64) -> u64 {
        use std::sync::Arc;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let s = Arc::new(Items {
            items: parking_lot::Mutex::new(0),
            w: WaitList::new(),
        });
        let cancels = Arc::new(AtomicU64::new(0));
        let (takers, per) = (6u64, 300u64);
        let hs: Vec<_> = (0..takers)
            .map(|i| {
                let (s, c) = (s.clone(), cancels.clone());
                rt.spawn(async move { taker(s, per, seed * 31 + i, &c).await })
            })
            .collect();
        let putters: Vec<_> = (0..3)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || putter(&s, takers * per / 3, t))
            })
            .collect();
        for p in putters {
            p.join().unwrap();
        }
        rt.block_on(async {
            for h in hs {
                h.await.unwrap();
            }
        });
        assert_eq!(*s.items.lock(), 0);
        assert_eq!(counts(&s.w), (0, 0));
        cancels.load(SeqCst)
    }

    /// Threads and tasks race on a bare wait-list (`stress_round`). A lost wake-up
    /// leaves takers asleep with items left: the watchdog reports a hang.
    #[test]
    fn probe_review22_stress_bare_waitlist_no_lost_wakeup() {
        use std::time::{Duration, Instant};
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = Instant::now();
            let (mut rounds, mut total_cancels) = (0u64, 0);
            while start.elapsed() < Duration::from_secs(2) {
                rounds += 1;
                total_cancels += stress_round([1, 2, 4][rounds as usize % 3], rounds);
            }
            assert!(total_cancels > 0);
            tx.send((rounds, total_cancels)).unwrap();
        });
        match rx.recv_timeout(Duration::from_secs(40)) {
            Ok((rounds, c)) => eprintln!("probe_review22_stress: {rounds} rounds, {c} cancels"),
            Err(_) => panic!("watchdog: takers asleep with items left (a lost wake-up)"),
        }
    }
}
