//! `diskq::forward` (issue #20) against a real `redis-server` started by the tests
//! (`server.rs`): forwarding in order and once, consumer groups, encodings, trimming,
//! items that cannot be encoded, permanent errors, a renumbered queue, Redis stopped
//! mid-run, and forwarders killed with SIGKILL at random moments.
//!
//! Where `redis-server` is missing the tests skip, saying so, unless
//! `DISKQ_REQUIRE_REDIS=1` (as in CI) makes that a failure.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod forwarding;
mod outage;
mod review20;
mod server;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Job {
    pub id: u64,
    pub body: String,
}

pub fn job(id: u64) -> Job {
    Job {
        id,
        body: format!("resize photo {id}.jpg"),
    }
}

/// Asserts that `entries` are jobs `0..n` in order, each once, as JSON, at the IDs the
/// forwarder gives queue items `first_seq..`.
pub fn assert_jobs_once_in_order(entries: &[server::Entry], n: u64, first_seq: u64) {
    assert_eq!(entries.len() as u64, n, "entries in the stream");
    for (i, e) in entries.iter().enumerate() {
        let i = i as u64;
        let seq = first_seq + i;
        assert_eq!(e.seq, seq, "entry {i}: {e:?}");
        assert_eq!(e.id, format!("{}-0", seq + 1));
        let got: Job = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(got, job(i));
    }
}
