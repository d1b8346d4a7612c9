//! The buffered level's intake: where puts leave their frames without the queue lock.
//!
//! At [`Durability::Buffered`](crate::Durability::Buffered) a put only has to hand its
//! frame to the queue: nothing reaches the OS before it returns. Taking the queue lock for
//! that made a producer and a consumer thread take turns at one lock for every item, and
//! the producer spent a fifth of its time yielding inside it. So puts of an unbounded queue
//! append to the intake instead, under a lock of its own that consumers take only when
//! they run out of items. The queue moves the intake into the engine's pending buffer
//! (`drain_into`, under the queue lock) when a consumer runs dry, when the intake holds a
//! write batch, and before anything that must see every accepted item (`put_many`, counts,
//! `flush`, `close`). Frames keep their order: they enter the intake in the order their
//! puts take its lock, and leave it whole, always into the end of the pending buffer.
//!
//! A consumer that is about to sleep registers under the intake's lock (`sleeping`), where
//! it also looks at the intake once more; a push sees the registration under the same lock
//! and wakes a consumer, through the queue lock, which the sleeper holds until it waits.

use crate::engine::{Engine, WRITE_BATCH};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The most room the intake keeps after a drain: twice a write batch.
const KEEP: usize = 2 * WRITE_BATCH;

#[derive(Debug)]
pub(crate) struct Intake {
    held: Mutex<Held>,
    /// Items held, readable without the lock (by consumers looking for items).
    len: AtomicU64,
    /// The engine's poisoned flag: no put is taken after a failed write.
    poisoned: Arc<AtomicBool>,
    /// The disk is short of room (`Reserve::short`): puts ask the engine first.
    short: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Held {
    frames: Vec<u8>,
    count: u64,
    /// Consumers asleep on the queue's `not_empty`, or about to be.
    sleepers: u64,
}

/// What a put must do after [`Intake::push`].
pub(crate) struct Pushed {
    /// The intake holds a write batch: drain and write it.
    pub(crate) full: bool,
    /// A consumer may be asleep: wake one.
    pub(crate) wake: bool,
}

impl Intake {
    pub(crate) fn new(poisoned: Arc<AtomicBool>, short: Arc<AtomicBool>) -> Intake {
        Intake {
            held: Mutex::new(Held::default()),
            len: AtomicU64::new(0),
            poisoned,
            short,
        }
    }

    /// Whether puts must ask `Engine::room_for_puts` before they push.
    pub(crate) fn short(&self) -> bool {
        self.short.load(Ordering::Relaxed)
    }

    /// Takes one item's frame.
    pub(crate) fn push(&self, frame: &[u8]) -> Result<Pushed> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(Error::Poisoned);
        }
        let mut h = self.held.lock();
        h.frames.extend_from_slice(frame);
        h.count += 1;
        self.len.store(h.count, Ordering::Relaxed);
        Ok(Pushed {
            full: h.frames.len() >= WRITE_BATCH,
            wake: h.sleepers > 0,
        })
    }

    /// Items held. Without the lock: a push may have just happened.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Moves every held frame to the end of the engine's pending buffer. Called under the
    /// queue lock.
    pub(crate) fn drain_into(&self, e: &mut Engine) -> Result<()> {
        let mut h = self.held.lock();
        if h.count == 0 {
            return Ok(());
        }
        // Copied, not swapped in: the intake keeps its room for the next puts (a written
        // batch leaves the engine an empty buffer, and a producer growing one from
        // nothing after every drain made W2 a fifth slower).
        e.enqueue_many(&h.frames, h.count)?;
        h.frames.clear();
        if h.frames.capacity() > KEEP {
            // Not the room of one huge item for the queue's lifetime.
            h.frames = Vec::new();
        }
        h.count = 0;
        self.len.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// A consumer is about to sleep (under the queue lock): every push after this one wakes
    /// it. Returns whether items came meanwhile, in which case it should look again
    /// instead. Either way it calls [`awake`](Self::awake) afterwards.
    pub(crate) fn sleeping(&self) -> bool {
        let mut h = self.held.lock();
        h.sleepers += 1;
        h.count > 0
    }

    /// Room held for frames, for tests.
    #[cfg(test)]
    pub(crate) fn room(&self) -> usize {
        self.held.lock().frames.capacity()
    }

    /// The consumer that called [`sleeping`](Self::sleeping) is awake.
    pub(crate) fn awake(&self) {
        self.held.lock().sleepers -= 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::{Durability, Options, Queue};

    #[test]
    fn a_huge_item_does_not_leave_its_room_behind() {
        let dir = tempfile::tempdir().unwrap();
        let q: Queue<Vec<u8>> = Options::new()
            .durability(Durability::Buffered)
            .open(dir.path())
            .unwrap();
        q.put(&vec![7; 4 << 20]).unwrap();
        q.put(&vec![1; 100]).unwrap();
        assert_eq!(q.get().unwrap().len(), 4 << 20);
        let room = |q: &Queue<Vec<u8>>| q.intake_room();
        assert!(room(&q) <= super::KEEP, "{} bytes kept", room(&q));
        // Small items keep their room from drain to drain.
        for i in 0..1000u32 {
            q.put(&i.to_le_bytes().to_vec()).unwrap();
        }
        q.get().unwrap();
        assert!(room(&q) > 0);
    }
}
