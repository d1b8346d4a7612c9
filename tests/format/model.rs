//! Property test: random sequences of puts, gets, acknowledgements and reopens, at chunk
//! sizes 1 to 8, checked against a model of the queue: the items waiting, and the items
//! gotten but not acknowledged (which a reopen puts back at the front, in order).

use diskq::{Durability, Error, Options, Queue};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Item {
    id: u16,
    /// Usually empty; sometimes long, so frames vary in size.
    pad: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Put(Item),
    Get,
    TaskDone,
    Reopen,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 20 {
            0..=8 => {
                let id = u16::arbitrary(g);
                let pad = match u8::arbitrary(g) % 8 {
                    0 => {
                        let len = usize::from(u16::arbitrary(g)) % 3000;
                        let b = u8::arbitrary(g);
                        (0..len).map(|i| b.wrapping_add(i as u8)).collect()
                    }
                    1 => vec![u8::arbitrary(g); usize::from(u8::arbitrary(g))],
                    _ => Vec::new(),
                };
                Op::Put(Item { id, pad })
            }
            9..=14 => Op::Get,
            15..=18 => Op::TaskDone,
            _ => Op::Reopen,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Op>> {
        match self {
            // A shorter pad, then none.
            Op::Put(item) if !item.pad.is_empty() => {
                let id = item.id;
                let half = item.pad[..item.pad.len() / 2].to_vec();
                Box::new(
                    [Vec::new(), half]
                        .into_iter()
                        .map(move |pad| Op::Put(Item { id, pad })),
                )
            }
            _ => quickcheck::empty_shrinker(),
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    chunk_size: usize,
    ops: Vec<Op>,
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Scenario {
        let chunk_size = *g.choose(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let n = usize::arbitrary(g) % (g.size() + 1);
        Scenario {
            chunk_size,
            ops: (0..n).map(|_| Op::arbitrary(g)).collect(),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Scenario>> {
        let chunk_size = self.chunk_size;
        let ops = self.ops.clone();
        // Fewer or simpler ops at the same chunk size, then smaller chunk sizes.
        let by_ops = self
            .ops
            .shrink()
            .map(move |ops| Scenario { chunk_size, ops });
        let by_chunk = (1..chunk_size).map(move |c| Scenario {
            chunk_size: c,
            ops: ops.clone(),
        });
        Box::new(by_ops.chain(by_chunk))
    }
}

/// Runs a scenario against the queue and the model; `Err` describes the first mismatch.
fn run(s: &Scenario, durability: Durability) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let opts = Options::new()
        .chunk_size(s.chunk_size)
        .durability(durability);
    let open = || -> Result<Queue<Item>, String> {
        opts.open(dir.path()).map_err(|e| format!("open: {e}"))
    };
    let mut q = Some(open()?);
    let mut waiting: VecDeque<Item> = VecDeque::new();
    let mut in_flight: VecDeque<Item> = VecDeque::new();

    for (step, op) in s.ops.iter().enumerate() {
        let queue = q.as_ref().expect("open");
        let at = format!("step {step} ({op:?})");
        match op {
            Op::Put(item) => {
                queue.put(item).map_err(|e| format!("{at}: put: {e}"))?;
                waiting.push_back(item.clone());
            }
            Op::Get => match (waiting.pop_front(), queue.get_nowait()) {
                (Some(want), Ok(got)) => {
                    if got != want {
                        return Err(format!("{at}: got {got:?}, want {want:?}"));
                    }
                    in_flight.push_back(want);
                }
                (None, Err(Error::Empty)) => {}
                (want, got) => return Err(format!("{at}: got {got:?}, want {want:?}")),
            },
            Op::TaskDone => match (in_flight.pop_front(), queue.task_done()) {
                (Some(_), Ok(())) | (None, Err(Error::NothingToAcknowledge)) => {}
                (want, got) => {
                    return Err(format!("{at}: task_done gave {got:?}, in flight {want:?}"));
                }
            },
            Op::Reopen => {
                let old = q.take().expect("open");
                if durability == Durability::Buffered {
                    old.close().map_err(|e| format!("{at}: close: {e}"))?;
                } else {
                    drop(old);
                }
                q = Some(open().map_err(|e| format!("{at}: {e}"))?);
                while let Some(item) = in_flight.pop_back() {
                    waiting.push_front(item);
                }
            }
        }
        let queue = q.as_ref().expect("open");
        let (len, unfinished) = (queue.len(), queue.unfinished());
        if len != waiting.len() || unfinished != waiting.len() + in_flight.len() {
            return Err(format!(
                "{at}: len {len}, unfinished {unfinished}; model: {} waiting, {} in flight",
                waiting.len(),
                in_flight.len()
            ));
        }
    }

    // Finally: everything not acknowledged survives one more reopen, in order.
    drop(q);
    let q = open()?;
    for (i, want) in in_flight.iter().chain(waiting.iter()).enumerate() {
        match q.get_nowait() {
            Ok(got) if &got == want => {}
            got => return Err(format!("final drain {i}: got {got:?}, want {want:?}")),
        }
    }
    match q.get_nowait() {
        Err(Error::Empty) => Ok(()),
        got => Err(format!("final drain: got {got:?}, want Empty")),
    }
}

fn verdict(s: &Scenario, durability: Durability) -> TestResult {
    match run(s, durability) {
        Ok(()) => TestResult::passed(),
        Err(msg) => TestResult::error(format!(
            "{durability:?}, chunk size {}: {msg}",
            s.chunk_size
        )),
    }
}

fn written(s: Scenario) -> TestResult {
    verdict(&s, Durability::Written)
}

fn buffered(s: Scenario) -> TestResult {
    verdict(&s, Durability::Buffered)
}

/// 200 cases of up to 60 operations each.
fn quickcheck() -> QuickCheck {
    QuickCheck::new().rng(Gen::new(60)).tests(200)
}

#[test]
fn matches_the_model() {
    quickcheck().quickcheck(written as fn(Scenario) -> TestResult);
}

#[test]
fn matches_the_model_buffered_with_close() {
    quickcheck().quickcheck(buffered as fn(Scenario) -> TestResult);
}
