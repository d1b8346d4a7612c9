//! Property test (issue #17): random programs of put / get / ack / nack / nack_after /
//! dead_letter / drop / clock advance (leases run out) / reopen / kill, on a queue with a
//! lease and `max_deliveries`, driven by a hand-moved clock, checked against a model.
//!
//! The model: each item is waiting, held (by one delivery, until its lease runs out),
//! delayed (until a due time), acknowledged or dead, and counts its deliveries. A get
//! returns the waiting item with the lowest sequence number (given-back items were all
//! delivered before, so they are before every item not yet delivered; an item given back
//! with a delay is appended again, so it takes its place after the items waiting then),
//! moving on the way
//! the ones that used up their deliveries to the dead letters. A kill (SIGKILL, as the
//! simulated storage models it) or a reopen makes every held item waiting again, its
//! delivery counted; delays keep their due time.

use diskq::storage::{Crash, SimStorage};
use diskq::{Delivery, Durability, Error, ManualClock, Options, Queue};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/model/q";
const LEASE_MS: u64 = 10_000;
const MAX: u32 = 3;

#[derive(Debug, Clone, Copy)]
enum Op {
    Put,
    Get,
    Ack(u8),
    Nack(u8),
    NackAfter(u8, u8),
    DeadLetter(u8),
    Drop(u8),
    /// Seconds.
    Advance(u8),
    Reopen,
    Kill,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let i = u8::arbitrary(g);
        match u8::arbitrary(g) % 30 {
            0..=6 => Op::Put,
            7..=13 => Op::Get,
            14..=17 => Op::Ack(i),
            18..=19 => Op::Nack(i),
            20..=21 => Op::NackAfter(i, u8::arbitrary(g) % 30),
            22 => Op::DeadLetter(i),
            23 => Op::Drop(i),
            24..=26 => Op::Advance(u8::arbitrary(g) % 15),
            27 => Op::Reopen,
            _ => Op::Kill,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Waiting,
    /// By delivery `token` (the model's), until `deadline` (ms).
    Held {
        token: u64,
        deadline: u64,
    },
    Delayed {
        due: u64,
    },
    Acked,
    Dead,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    state: State,
    attempts: u32,
    /// Its place in the queue: the order of puts, and of the copies `nack_after` appends.
    pos: u64,
}

struct Model {
    items: Vec<Item>,
    now: u64,
    next_token: u64,
    next_pos: u64,
}

impl Model {
    /// Leases that ran out, delays that ended.
    fn tick(&mut self) {
        for it in &mut self.items {
            match it.state {
                State::Held { deadline, .. } if deadline <= self.now => it.state = State::Waiting,
                State::Delayed { due } if due <= self.now => it.state = State::Waiting,
                _ => {}
            }
        }
    }

    fn count(&self, f: impl Fn(State) -> bool) -> usize {
        self.items.iter().filter(|i| f(i.state)).count()
    }

    /// What a get returns: the lowest waiting item that may still be delivered (those
    /// that used up their deliveries go to the dead letters on the way).
    fn get(&mut self) -> Option<(u32, u32, u64)> {
        self.tick();
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.sort_by_key(|&i| self.items[i].pos);
        for id in order {
            let it = &mut self.items[id];
            if it.state != State::Waiting {
                continue;
            }
            if it.attempts >= MAX {
                it.state = State::Dead;
                continue;
            }
            it.attempts += 1;
            self.next_token += 1;
            it.state = State::Held {
                token: self.next_token,
                deadline: self.now + LEASE_MS,
            };
            return Some((id as u32, it.attempts, self.next_token));
        }
        None
    }

    /// Whether delivery `token` of `id` still holds it (after the clock's effects).
    fn holds(&mut self, id: u32, token: u64) -> bool {
        self.tick();
        matches!(self.items[id as usize].state, State::Held { token: t, .. } if t == token)
    }

    /// Gives `id` back (to the dead letters when it used up its deliveries).
    /// A delay appends a copy at the end (FORMAT.md §nack_after).
    fn give_back(&mut self, id: u32, delay_ms: u64) {
        let it = &mut self.items[id as usize];
        it.state = if it.attempts >= MAX {
            State::Dead
        } else if delay_ms > 0 {
            it.pos = self.next_pos;
            self.next_pos += 1;
            State::Delayed {
                due: self.now + delay_ms,
            }
        } else {
            State::Waiting
        };
    }

    /// A reopen or kill: held items wait again.
    fn restart(&mut self) {
        for it in &mut self.items {
            if let State::Held { .. } = it.state {
                it.state = State::Waiting;
            }
        }
    }
}

fn open(st: &SimStorage, clock: &ManualClock) -> Queue<u32> {
    Options::new()
        .durability(Durability::Written)
        .chunk_size(3)
        .lease(Duration::from_millis(LEASE_MS))
        .max_deliveries(MAX)
        .clock(Arc::new(clock.clone()))
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap()
}

/// A delivery the program holds, with the model's token.
struct Held<'q> {
    d: Delivery<'q, u32>,
    token: u64,
}

fn check(q: &Queue<u32>, m: &mut Model, held: &[Held<'_>], op: Op) {
    m.tick();
    let s = q.stats();
    let waiting = m.count(|s| s == State::Waiting);
    let delayed = m.count(|s| matches!(s, State::Delayed { .. }));
    let dead = m.count(|s| s == State::Dead);
    let live = m.count(|s| !matches!(s, State::Acked | State::Dead));
    let in_flight = m.count(|s| matches!(s, State::Held { .. }));
    // Items that used up their deliveries wait until a get reaches them.
    assert_eq!(s.len, waiting, "len after {op:?}");
    assert_eq!(s.delayed, delayed, "delayed after {op:?}");
    assert_eq!(s.unfinished, live, "unfinished after {op:?}");
    assert_eq!(s.dead_letters, dead, "dead letters after {op:?}");
    assert_eq!(s.in_flight, in_flight, "in flight after {op:?}");
    // Every item in flight is held by the program (none lost track of).
    assert!(held.len() >= in_flight, "after {op:?}");
}

/// Runs one settling call on held delivery `i` and checks it against the model.
fn settle(m: &mut Model, held: &mut Vec<Held<'_>>, i: u8, op: Op) {
    if held.is_empty() {
        return;
    }
    let h = held.swap_remove(usize::from(i) % held.len());
    let (id, seq) = (*h.d, h.d.seq());
    let holds = m.holds(id, h.token);
    let res = match op {
        Op::Ack(_) => h.d.ack().map(|_| ()),
        Op::Nack(_) => h.d.nack(),
        Op::NackAfter(_, s) => h.d.nack_after(Duration::from_secs(u64::from(s))),
        Op::DeadLetter(_) => h.d.dead_letter("model"),
        _ => {
            drop(h.d);
            Ok(())
        }
    };
    match (holds, res) {
        (true, Ok(())) => match op {
            Op::Ack(_) => m.items[id as usize].state = State::Acked,
            Op::DeadLetter(_) => m.items[id as usize].state = State::Dead,
            Op::NackAfter(_, s) => m.give_back(id, u64::from(s) * 1000),
            _ => m.give_back(id, 0),
        },
        (false, Ok(())) if matches!(op, Op::Drop(_)) => {}
        // A delayed item's copy has a sequence number of its own.
        (false, Err(Error::LeaseExpired { seq: s })) => assert_eq!(s, seq),
        (holds, res) => panic!("{op:?} of item {id} (held: {holds}): {res:?}"),
    }
}

fn run(ops: &[Op]) -> TestResult {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut m = Model {
        items: Vec::new(),
        now: 1_700_000_000_000,
        next_token: 0,
        next_pos: 0,
    };
    let mut st = SimStorage::new();
    let mut ops = ops.iter().copied();
    loop {
        let q = open(&st, &clock);
        let mut held: Vec<Held<'_>> = Vec::new();
        check(&q, &mut m, &held, Op::Reopen);
        let mut end = None;
        for op in ops.by_ref() {
            match op {
                Op::Put => {
                    q.put(&(m.items.len() as u32)).unwrap();
                    m.items.push(Item {
                        state: State::Waiting,
                        attempts: 0,
                        pos: m.next_pos,
                    });
                    m.next_pos += 1;
                }
                Op::Get => {
                    let want = m.get();
                    match q.get_delivery_timeout(Duration::ZERO) {
                        Ok(d) => {
                            let (id, attempt, token) = want.expect("the model has nothing");
                            assert_eq!((*d, d.attempt()), (id, attempt), "get");
                            held.push(Held { d, token });
                        }
                        Err(e) => {
                            assert!(e.is_timeout(), "{e}");
                            assert_eq!(want, None, "the queue said empty");
                        }
                    }
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(u64::from(s)));
                    m.now += u64::from(s) * 1000;
                }
                Op::Reopen | Op::Kill => {
                    end = Some(op);
                    break;
                }
                _ => {
                    let i = match op {
                        Op::Ack(i)
                        | Op::Nack(i)
                        | Op::NackAfter(i, _)
                        | Op::DeadLetter(i)
                        | Op::Drop(i) => i,
                        _ => 0,
                    };
                    settle(&mut m, &mut held, i, op);
                }
            }
            check(&q, &mut m, &held, op);
        }
        // Held deliveries stay in flight, as a process that ends with them would leave them.
        for h in held.drain(..) {
            h.d.into_inner();
        }
        drop(held);
        match end {
            None => return TestResult::passed(),
            Some(Op::Kill) => {
                st = st.after_crash(Crash::Process);
                std::mem::forget(q);
            }
            Some(_) => drop(q),
        }
        m.restart();
    }
}

fn prop(ops: Vec<Op>) -> TestResult {
    run(&ops)
}

#[test]
fn work_queue_matches_the_model() {
    QuickCheck::new()
        .rng(Gen::new(80))
        .tests(300)
        .quickcheck(prop as fn(Vec<Op>) -> TestResult);
}
