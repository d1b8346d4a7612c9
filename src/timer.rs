//! Wakes futures at an instant, for the async waits that must look again by themselves:
//! a delayed retry comes due, a lease runs out, a pause is polled. The library has no
//! executor and depends on none, so it cannot ask tokio or smol for a timer: one thread
//! per process, started at the first sleep, keeps the due times in a heap and wakes
//! each future's `Waker` when its time comes. Sleeps are rare (only a wait with such a
//! timer pending needs one), so one thread serves them all.

use parking_lot::{Condvar, Mutex};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// A future that is ready at `at`. Dropped first, it wakes no one.
#[derive(Debug)]
pub(crate) struct Sleep {
    at: Instant,
    entry: Option<Arc<Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// Taken by the timer thread when due, or by `Sleep::drop`.
    waker: Mutex<Option<Waker>>,
}

impl Sleep {
    pub(crate) fn until(at: Instant) -> Sleep {
        Sleep { at, entry: None }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        match &self.entry {
            // Polled again (woken by something else, or moved to another task): the
            // waker to wake may have changed.
            Some(entry) => {
                let mut w = entry.waker.lock();
                match &mut *w {
                    Some(old) => old.clone_from(cx.waker()),
                    // The timer fired between the check above and here.
                    None => return Poll::Ready(()),
                }
            }
            None => {
                let entry = Arc::new(Entry {
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                match timer() {
                    Some(t) => t.add(self.at, entry.clone()),
                    // No timer thread (the system refused one): look again soon rather
                    // than never. Costs a busy task, never a lost wake-up.
                    None => cx.waker().wake_by_ref(),
                }
                self.entry = Some(entry);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // The entry stays in the heap, without its waker (no task is kept alive by it),
        // until it is due or the heap is compacted: counted dead meanwhile.
        if let Some(entry) = &self.entry
            && entry.waker.lock().take().is_some()
            && let Some(t) = timer()
        {
            t.dead.fetch_add(1, Relaxed);
        }
    }
}

struct Timer {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    changed: Condvar,
    next: AtomicU64,
    /// Entries in the heap whose `Sleep` was dropped before they were due. A wait on a
    /// queue with a long lease or delay starts a sleep that long, and most end early
    /// (an item came): without compaction they would pile up until due.
    dead: AtomicUsize,
}

struct Due {
    at: Instant,
    /// Breaks ties in insertion order; `Instant` ties are common.
    n: u64,
    entry: Arc<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.n) == (other.at, other.n)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        (self.at, self.n).cmp(&(other.at, other.n))
    }
}

/// The process's timer, its thread started at the first call; `None` when the system
/// refused the thread.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        // One per process, for the process's life.
        let t: &'static Timer = Box::leak(Box::new(Timer {
            heap: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
            next: AtomicU64::new(0),
            dead: AtomicUsize::new(0),
        }));
        std::thread::Builder::new()
            .name("diskq-timer".into())
            .spawn(move || run(t))
            .ok()
            .map(|_| t)
    })
}

impl Timer {
    fn add(&self, at: Instant, entry: Arc<Entry>) {
        let n = self.next.fetch_add(1, Relaxed);
        let mut heap = self.heap.lock();
        // Amortized: half the heap must have died since the last compaction.
        if heap.len() >= 64 && self.dead.load(Relaxed) > heap.len() / 2 {
            self.dead.store(0, Relaxed);
            heap.retain(|Reverse(d)| d.entry.waker.lock().is_some());
        }
        let earliest = heap.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.push(Reverse(Due { at, n, entry }));
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }
}

/// The timer thread: wakes what is due, sleeps until the next due time or a new,
/// earlier one.
fn run(t: &Timer) {
    let mut due = Vec::new();
    let mut heap = t.heap.lock();
    loop {
        let now = Instant::now();
        while let Some(Reverse(d)) = heap.peek()
            && d.at <= now
        {
            let Reverse(d) = heap.pop().expect("peeked");
            match d.entry.waker.lock().take() {
                Some(w) => due.push(w),
                None => {
                    // Dead (counted by its `Sleep::drop`), now gone.
                    let _ = t.dead.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
                }
            }
        }
        if !due.is_empty() {
            // Woken outside the lock: a waker may run its task's code (an executor
            // polling inline) or take a while.
            parking_lot::MutexGuard::unlocked(&mut heap, || {
                for w in due.drain(..) {
                    // A waker is the executor's code: one that panics must not take the
                    // process's only timer thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
                }
            });
            continue;
        }
        match heap.peek() {
            Some(Reverse(d)) => {
                let at = d.at;
                t.changed.wait_until(&mut heap, at);
            }
            None => t.changed.wait(&mut heap),
        }
    }
}
