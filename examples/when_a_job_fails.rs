//! Jobs that fail: four workers take jobs from a queue with `max_deliveries(4)` and a
//! lease; a job fails at random (given back, or retried after a delay), one worker in a
//! while panics (its delivery is dropped, so the job is given back at once), and one job
//! is poison: it fails every time and ends in the dead letters with its reason. At the
//! end every job is either done once or a dead letter, and the dead letters are shown.
//!
//! `cargo run --example when_a_job_fails [dir]`

use diskq::{Options, Queue};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Job {
    id: u64,
    poison: bool,
}

enum Failure {
    /// Worth a retry soon.
    Transient,
    /// Never going to work.
    Permanent(String),
}

/// The "work": fails now and then; the poison job always.
fn run(job: &Job, attempt: u32, roll: u64) -> Result<(), Failure> {
    if job.poison {
        return Err(Failure::Transient);
    }
    match roll % 10 {
        0 if attempt == 1 => Err(Failure::Transient),
        1 if job.id.is_multiple_of(97) => {
            Err(Failure::Permanent(format!("job {} is malformed", job.id)))
        }
        _ => Ok(()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let q: Queue<Job> = Options::new()
        .max_deliveries(4)
        .lease(Duration::from_secs(5))
        .open(&dir)?;
    let jobs: Vec<Job> = (0..1000)
        .map(|id| Job {
            id,
            poison: id == 500,
        })
        .collect();
    q.put_many(&jobs)?;
    // The workers' panics are part of the demonstration: one line each is enough.
    std::panic::set_hook(Box::new(|info| eprintln!("(a worker panicked: {info})")));
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (q, done) = (&q, &done);
            s.spawn(move || {
                let mut roll = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                loop {
                    let d = match q.get_delivery_timeout(Duration::from_millis(200)) {
                        Ok(d) => d,
                        Err(e) if e.is_timeout() && q.unfinished() == 0 => return,
                        Err(e) if e.is_timeout() => continue,
                        Err(e) => panic!("{e}"),
                    };
                    roll ^= roll << 13;
                    roll ^= roll >> 7;
                    roll ^= roll << 17;
                    if roll.is_multiple_of(500) {
                        // A worker that panics: its Delivery is dropped and the job given back.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let _d = d;
                            panic!("worker {w} crashed");
                        }));
                        assert!(r.is_err());
                        continue;
                    }
                    match run(&d, d.attempt(), roll) {
                        Ok(()) => {
                            d.ack().unwrap();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Failure::Transient) => d.nack_after(Duration::from_millis(20)).unwrap(),
                        Err(Failure::Permanent(why)) => d.dead_letter(why).unwrap(),
                    }
                }
            });
        }
    });
    q.join();
    let dl = q.dead_letters();
    println!(
        "{} jobs done, {} dead letters:",
        done.load(Ordering::Relaxed),
        dl.len()
    );
    for d in dl.iter() {
        let d = d?;
        let job = d.item().expect("a Job");
        println!(
            "  job {} (poison: {}) after {} attempts: {}",
            job.id,
            job.poison,
            d.attempts(),
            d.reason()
        );
    }
    assert_eq!(done.load(Ordering::Relaxed) as usize + dl.len(), jobs.len());
    assert!(
        dl.iter()
            .any(|d| d.is_ok_and(|d| d.item().is_some_and(|j| j.poison)))
    );
    let s = q.stats();
    assert_eq!((s.len, s.in_flight, s.delayed, s.unfinished), (0, 0, 0, 0));
    println!("stats: {s:?}");
    Ok(())
}
