//! Issue #19's open question: at `Durability::Synced` a put's `fdatasync` runs inside
//! `put_async`, blocking the task's worker thread. Would handing it to a blocking thread
//! (`spawn_blocking`) be better? Measured both ways: 8 producer tasks on tokio's
//! multi-threaded runtime (2 workers) put 64-byte items at `Synced`, through
//! `put_async` inline, and through `spawn_blocking(move || q.put(..))`; rounds alternate
//! the two, each on a fresh queue. Prints durable puts/s per round and the medians.
//!
//! `cargo bench -p diskq-bench --bench async_synced`

use diskq::{Durability, Options, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 8;
const PER_TASK: usize = 150;
const ROUNDS: usize = 7;

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `put_async(..).await`: the sync on the worker thread.
    Inline,
    /// `spawn_blocking(move || q.put(..)).await`: the sync on a blocking thread.
    SpawnBlocking,
}

fn run(mode: Mode) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<Queue<Vec<u8>>> = Arc::new(
        Options::new()
            .durability(Durability::Synced)
            .open(dir.path())
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let elapsed = rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|k| {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        let item = vec![(k + i) as u8; 64];
                        match mode {
                            Mode::Inline => q.put_async(&item).await.unwrap(),
                            Mode::SpawnBlocking => {
                                let q = q.clone();
                                tokio::task::spawn_blocking(move || q.put(&item))
                                    .await
                                    .unwrap()
                                    .unwrap()
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        t.elapsed()
    });
    drop(rt);
    assert_eq!(q.len(), TASKS * PER_TASK);
    (TASKS * PER_TASK) as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut inline, mut blocking) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, so that a slow spell falls on both alike.
        let order = if round % 2 == 0 {
            [Mode::Inline, Mode::SpawnBlocking]
        } else {
            [Mode::SpawnBlocking, Mode::Inline]
        };
        for mode in order {
            let r = run(mode);
            println!(
                "round {}/{ROUNDS}: {mode:?}: {r:.0} durable puts/s",
                round + 1
            );
            match mode {
                Mode::Inline => inline.push(r),
                Mode::SpawnBlocking => blocking.push(r),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (i, b) = (median(inline), median(blocking));
    println!(
        "{TASKS} tasks x {PER_TASK} puts at Synced, medians of {ROUNDS}: put_async inline {i:.0}/s, \
         spawn_blocking {b:.0}/s; spawn_blocking / inline = {:.2}",
        b / i
    );
}
