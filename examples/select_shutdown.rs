//! A worker that waits on a durable work channel and a shutdown signal in one
//! `crossbeam_channel::select!` loop, beside a ticker; then a restart that finishes the
//! work the first run left.
//!
//! `Receiver::ready()` is what makes the durable channel selectable: a
//! `crossbeam_channel::Receiver<()>` that holds a message whenever `try_recv` may return
//! something other than `Empty`. When `select!` picks it, call `try_recv`.
//!
//! Run it with `cargo run --release --example select_shutdown [DIR]`.

use crossbeam_channel::{Receiver, select, tick};
use diskq::TryRecvError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug)]
struct Job {
    id: u32,
    url: String,
}

const JOBS: u32 = 30;

/// The worker loop: jobs from the durable channel until shutdown or disconnection.
/// Returns the ids it finished.
fn worker(rx: &diskq::Receiver<Job>, shutdown: &Receiver<()>) -> Result<Vec<u32>, TryRecvError> {
    let ready = rx.ready();
    let ticker = tick(Duration::from_millis(100));
    let mut done = Vec::new();
    loop {
        select! {
            recv(shutdown) -> _ => {
                println!("  shutdown: stopping with {} jobs waiting", rx.len());
                break;
            }
            recv(ready) -> _ => match rx.try_recv() {
                Ok(job) => {
                    // The job is acknowledged when this receiver is asked for the next one
                    // (or dropped): if the process died here, it would come back.
                    thread::sleep(Duration::from_millis(15)); // "fetch" job.url
                    done.push(job.id);
                }
                Err(TryRecvError::Empty) => {} // a wakeup with nothing left: wait again
                Err(TryRecvError::Disconnected) => {
                    println!("  every sender is gone and the channel is drained");
                    break;
                }
                Err(e) => return Err(e),
            },
            recv(ticker) -> _ => println!("  tick: {} done, {} waiting", done.len(), rx.len()),
        }
    }
    Ok(done)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = match std::env::args().nth(1) {
        Some(d) => d.into(),
        None => tmp.path().join("jobs"),
    };

    println!("run 1: a producer sends {JOBS} jobs, a worker does them; shutdown after 250 ms");
    let (tx, rx) = diskq::channel::<Job>(&dir)?;
    let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded::<()>(1);
    let producer = thread::spawn(move || {
        for id in 0..JOBS {
            let url = format!("https://example.com/page/{id}");
            tx.send(Job { id, url }).expect("send");
            thread::sleep(Duration::from_millis(5));
        }
    });
    // A Ctrl-C handler would do this.
    let signal = thread::spawn(move || {
        thread::sleep(Duration::from_millis(250));
        let _ = shutdown_tx.send(());
    });
    let first = worker(&rx, &shutdown_rx)?;
    producer.join().expect("producer");
    signal.join().expect("signal");
    drop(rx); // acknowledges the last job done; the rest stays on disk
    println!("  finished {} jobs: {:?}", first.len(), first);

    println!("run 2: a restart on the same directory; no new jobs, so it ends when drained");
    let (tx, rx) = diskq::channel::<Job>(&dir)?;
    println!("  {} jobs survived the shutdown", rx.len());
    drop(tx);
    let (_never, shutdown_rx) = crossbeam_channel::bounded::<()>(1);
    let second = worker(&rx, &shutdown_rx)?;
    println!("  finished {} jobs: {:?}", second.len(), second);

    let all: BTreeSet<u32> = first.iter().chain(&second).copied().collect();
    let each_once = all.len() == first.len() + second.len();
    assert!(
        each_once && all == (0..JOBS).collect(),
        "lost or repeated jobs"
    );
    println!("ok: every job done exactly once across the shutdown and restart");
    Ok(())
}
