//! A tokio worker pool on a durable queue: graceful shutdown, then recovery after a kill.
//!
//! 1. Four worker tasks take jobs with `get_delivery_async` while a producer task puts
//!    them. A shutdown signal stops the pool: each worker finishes the job in its hands
//!    and takes no other; the jobs not taken stay on disk, and the next run's pool
//!    finishes them.
//! 2. The example starts itself again as a child process that runs the same pool
//!    without pause, kills it with SIGKILL mid-work, reopens the queue and finishes what
//!    was left. The "work" of a job is to record its id in a second queue (an outbox) and
//!    then acknowledge it, so the check is real: every job the child put is in the outbox
//!    at the end, some twice (done, and killed before the acknowledgement: at least
//!    once), none lost.
//!
//! Run it with `cargo run --release --example async_worker`.

use diskq::{Options, Queue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Serialize, Deserialize, Debug)]
struct Job {
    id: u64,
    url: String,
}

/// The queues a worker uses: its jobs, and the outbox where done jobs are recorded.
#[derive(Clone)]
struct Queues {
    jobs: Arc<Queue<Job>>,
    outbox: Arc<Queue<u64>>,
}

impl Queues {
    fn open(dir: &Path) -> Res<Queues> {
        Ok(Queues {
            // Bounded: a producer ahead of the workers waits in `put_async`.
            jobs: Arc::new(Options::new().max_size(1000).open(dir.join("jobs"))?),
            outbox: Arc::new(Queue::open(dir.join("outbox"))?),
        })
    }
}

/// One worker: takes jobs until `stop` says so. A job in its hands is finished first:
/// the signal is only looked at while waiting for the next job.
async fn worker(q: Queues, mut stop: watch::Receiver<bool>) -> Res<u64> {
    let mut done = 0;
    loop {
        let job = tokio::select! {
            // Cancelling a `get_delivery_async` takes nothing: no job is lost here.
            _ = stop.wait_for(|s| *s) => return Ok(done),
            job = q.jobs.get_delivery_async() => job?,
        };
        tokio::time::sleep(Duration::from_millis(1)).await; // the work
        q.outbox.put_async(&job.id).await?;
        job.ack()?; // a kill before this line: the job is delivered again
        done += 1;
    }
}

/// Runs four workers and a producer of jobs `0..`, `until` the pool is told to stop;
/// returns the jobs done. `report`: print the progress of the puts (for the parent).
async fn pool(q: &Queues, report: bool, until: impl Future<Output = ()>) -> Res<u64> {
    let (stop_tx, stop) = watch::channel(false);
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(worker(q.clone(), stop.clone())))
        .collect();
    let jobs = q.jobs.clone();
    let producer = tokio::spawn(async move {
        for id in 0.. {
            let url = format!("https://example.com/page/{id}");
            jobs.put_async(&Job { id, url }).await?;
            if report && id % 500 == 0 {
                println!("put {id}"); // jobs 0..=id are on disk
            }
        }
        Res::Ok(())
    });
    until.await;
    producer.abort(); // a put cancelled between polls stores nothing
    stop_tx.send(true)?;
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    Ok(done)
}

/// Finishes what a previous run left, with a pool and no producer: until the queue
/// stays empty.
async fn drain(q: &Queues) -> Res<u64> {
    let mut done = 0;
    loop {
        let wait = tokio::time::timeout(Duration::from_millis(200), q.jobs.get_delivery_async());
        let Ok(job) = wait.await else { return Ok(done) };
        let job = job?;
        q.outbox.put_async(&job.id).await?;
        job.ack()?;
        done += 1;
    }
}

/// Part 1: a graceful shutdown after 300 ms, and the next run finishing the rest.
async fn graceful(dir: &Path) -> Res<()> {
    let q = Queues::open(dir)?;
    let done = pool(&q, false, tokio::time::sleep(Duration::from_millis(300))).await?;
    let left = q.jobs.len();
    println!("part 1: 4 workers did {done} jobs, then shut down; {left} jobs wait on disk");
    drop(q);
    let q = Queues::open(dir)?; // the next run
    let finished = drain(&q).await?;
    println!(
        "        the next run finished them: {finished} jobs, {} waiting",
        q.jobs.len()
    );
    assert_eq!(finished as usize, left);
    Ok(())
}

/// The child of part 2: a pool that works until it is killed.
async fn child(dir: &Path) -> Res<()> {
    let q = Queues::open(dir)?;
    pool(&q, true, std::future::pending()).await?;
    Ok(())
}

/// Part 2: kill a child mid-work, reopen, finish, check the outbox.
async fn crash(dir: &Path) -> Res<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut put = 0;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        put = line?.trim_start_matches("put ").parse::<u64>()?;
        if put >= 3000 {
            break;
        }
    }
    child.kill()?; // SIGKILL: no destructor, no flush, no checkpoint
    child.wait()?;
    let q = Queues::open(dir)?;
    let (before, left) = (q.outbox.len(), q.jobs.len());
    let finished = drain(&q).await?;
    let mut seen = BTreeSet::new();
    let mut twice = 0;
    while let Ok(id) = q.outbox.get_nowait() {
        twice += u64::from(!seen.insert(id));
    }
    let lost = (0..=put).filter(|id| !seen.contains(id)).count();
    println!(
        "part 2: killed the child (SIGKILL) after it reported {put} puts; it had recorded \
         {before} jobs done\n        reopened: {left} jobs waited, the new pool did \
         {finished}; jobs done twice (killed between the work and the ack): {twice}; lost: {lost}"
    );
    assert_eq!(lost, 0, "a job the child put was never done");
    println!("ok: every job done at least once, through a kill");
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new()?;
    if args.len() == 3 && args[1] == "child" {
        return rt.block_on(child(Path::new(&args[2])));
    }
    let dir = tempfile::tempdir()?;
    rt.block_on(graceful(&dir.path().join("graceful")))?;
    rt.block_on(crash(&dir.path().join("crash")))
}
