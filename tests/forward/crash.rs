//! The forwarder killed with SIGKILL at random moments, round after round (between an
//! `XADD` and the local acknowledgement among them): at the end the stream holds every
//! item put, once, in order.

use crate::common::{XorShift, kill::run_and_kill, test_path};
use crate::server::{RedisServer, read_stream};
use crate::{Job, assert_jobs_once_in_order, job};
use diskq::Queue;
use diskq::forward::Forwarder;
use std::io::Write;

const DIR_ENV: &str = "DISKQ_FORWARD_CHILD_DIR";
const URL_ENV: &str = "DISKQ_FORWARD_CHILD_URL";
const ROUNDS: u64 = 60;
const PER_ROUND: u64 = 6000;

fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n@{s}").unwrap();
    out.flush().unwrap();
}

/// The child: forwards what waits in small batches (many pipelines a round, so that
/// most kills land mid-forwarding even on a fast machine), says `DONE` when the queue is
/// empty, and waits to be killed. Does nothing in a normal test run.
#[test]
fn forward_child() {
    let (Some(dir), Ok(url)) = (std::env::var_os(DIR_ENV), std::env::var(URL_ENV)) else {
        return;
    };
    let q: Queue<Job> = crate::common::open_when_free(dir).unwrap();
    let mut fwd = Forwarder::new(&q, &url, "jobs").unwrap().batch_size(50);
    say("READY");
    match fwd.forward_all() {
        Ok(n) => say(&format!("DONE {n} {}", fwd.stats().duplicates)),
        Err(e) => say(&format!("E {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[test]
fn sigkill_the_forwarder_at_random_moments_and_every_item_is_in_the_stream_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let env = [
        (DIR_ENV, d.path().to_str().unwrap().to_string()),
        (URL_ENV, redis.url()),
    ];
    let mut rng = XorShift(0x5eed_f0a4d);
    let mut ready_after = None;
    let (mut put, mut cut_short, mut found_there) = (0, 0, 0);
    for _ in 0..ROUNDS {
        {
            let q: Queue<Job> = Queue::open(d.path()).unwrap();
            q.put_many(&(put..put + PER_ROUND).map(job).collect::<Vec<_>>())
                .unwrap();
            put += PER_ROUND;
        }
        let child = test_path(module_path!(), "forward_child");
        let killed = run_and_kill(&child, &env, &mut rng, &mut ready_after, 0..=40);
        match killed.lines.iter().find(|(tag, _)| tag == "DONE") {
            // "DONE <forwarded> <found in the stream already>"
            Some((_, counts)) => {
                found_there += counts.split(' ').nth(1).unwrap().parse::<u64>().unwrap()
            }
            None => cut_short += 1,
        }
    }
    // What the last child left, forwarded here.
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    fwd.forward_all().unwrap();
    found_there += fwd.stats().duplicates;
    drop(fwd);
    assert_eq!(q.unfinished(), 0);
    let entries = read_stream(&mut redis.conn(), "jobs");
    assert_jobs_once_in_order(&entries, put, 0);
    eprintln!(
        "{ROUNDS} rounds, {cut_short} killed before the queue was empty; {found_there} \
         items found in the stream already after a kill (sent, not acknowledged)"
    );
    assert!(
        cut_short >= ROUNDS / 4,
        "only {cut_short} kills came mid-forwarding"
    );
    // How often a kill fell between Redis taking a batch and the queue acknowledging it
    // is chance (1 to 10 times in 60 here); review20's
    // probe_restart_after_crash_between_xadd_and_ack_bincode_and_json makes that case
    // every time. Either way, the stream is checked above.
}
