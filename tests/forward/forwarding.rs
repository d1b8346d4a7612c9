//! Forwarding a queue into a stream: every item once, in order, readable by consumer
//! groups; the encodings, trimming, and what stops a forwarder.

use crate::server::{RedisServer, read_stream};
use crate::{Job, assert_jobs_once_in_order, job};
use diskq::Queue;
use diskq::forward::{Encoding, ForwardError, Forwarder};
use std::collections::BTreeMap;

#[test]
fn forwards_100k_items_each_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let jobs: Vec<Job> = (0..100_000).map(job).collect();
    q.put_many(&jobs).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    assert_eq!(fwd.forward_all().unwrap(), 100_000);
    assert_eq!(fwd.stats().forwarded, 100_000);
    assert_eq!((fwd.stats().duplicates, fwd.stats().retries), (0, 0));
    drop(fwd);
    assert_eq!((q.len(), q.unfinished()), (0, 0), "all acknowledged");
    let entries = read_stream(&mut redis.conn(), "jobs");
    assert_jobs_once_in_order(&entries, 100_000, 0);
    assert!(
        entries.iter().all(|e| e.put_ms.is_some()),
        "put times recorded"
    );
}

#[test]
fn a_consumer_group_reads_each_item_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..5000).map(job).collect::<Vec<_>>()).unwrap();
    Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(100)
        .forward_all()
        .unwrap();
    let mut c = redis.conn();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs")
        .arg("workers")
        .arg("0")
        .query(&mut c)
        .unwrap();
    // Two consumers of the group take turns, acknowledging what they read.
    let mut seen = Vec::new();
    for round in 0.. {
        let consumer = format!("c{}", round % 2);
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg(&consumer)
            .arg("COUNT")
            .arg(333)
            .arg("STREAMS")
            .arg("jobs")
            .arg(">")
            .query(&mut c)
            .unwrap();
        let Some(key) = reply.keys.first() else { break };
        if key.ids.is_empty() {
            break;
        }
        for e in &key.ids {
            let Some(redis::Value::BulkString(data)) = e.map.get("data") else {
                panic!("no data in {e:?}")
            };
            seen.push(serde_json::from_slice::<Job>(data).unwrap().id);
            let _: u64 = redis::cmd("XACK")
                .arg("jobs")
                .arg("workers")
                .arg(&e.id)
                .query(&mut c)
                .unwrap();
        }
    }
    assert_eq!(seen, (0..5000).collect::<Vec<_>>());
}

#[test]
fn bincode_entries_hold_the_stored_bytes_and_trimming_keeps_the_newest() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..20_000).map(job).collect::<Vec<_>>())
        .unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .encoding(Encoding::Bincode)
        .batch_size(100)
        .max_len(1000);
    assert_eq!(fwd.forward_all().unwrap(), 20_000);
    let entries = read_stream(&mut redis.conn(), "jobs");
    // `MAXLEN ~`: about 1,000 kept (whole nodes), the newest.
    assert!(
        (1000..5000).contains(&entries.len()),
        "{} kept",
        entries.len()
    );
    let last = entries.last().unwrap();
    assert_eq!(last.seq, 19_999);
    assert_eq!(
        bincode::deserialize::<Job>(&last.data).unwrap(),
        job(19_999)
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..20_000).collect::<Vec<_>>(), "a gapless tail");
}

#[test]
fn an_item_json_cannot_encode_goes_to_the_dead_letters_and_the_rest_goes_on() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    // JSON has no map with non-string keys.
    let q: Queue<BTreeMap<(u8, u8), u8>> = Queue::open(d.path()).unwrap();
    q.put(&BTreeMap::new()).unwrap();
    q.put(&BTreeMap::from([((1, 2), 3)])).unwrap();
    q.put(&BTreeMap::new()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "maps").unwrap();
    assert_eq!(fwd.forward_all().unwrap(), 2);
    assert_eq!(fwd.stats().dead_lettered, 1);
    drop(fwd);
    let entries = read_stream(&mut redis.conn(), "maps");
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 2]);
    let dl = q.dead_letters();
    let dead: Vec<_> = dl.iter().map(|d| d.unwrap()).collect();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason().contains("cannot encode"),
        "{}",
        dead[0].reason()
    );
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn a_key_of_another_type_stops_the_forwarder_and_keeps_the_items() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _: () = redis::cmd("SET")
        .arg("jobs")
        .arg("not a stream")
        .query(&mut redis.conn())
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..10).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    let err = fwd.forward_all().unwrap_err();
    assert!(matches!(err, ForwardError::Redis { seq: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert!(fwd.stats().last_error.is_some());
    drop(fwd); // gives the taken items back
    assert_eq!(q.len(), 10, "nothing acknowledged");
    assert_eq!(q.get().unwrap(), job(0), "in order, first in line");
}

#[test]
fn a_queue_renumbered_by_repair_is_a_conflict_not_a_skip() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..10).map(job).collect::<Vec<_>>()).unwrap();
    Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .forward_all()
        .unwrap();
    q.put_many(&(10..13).map(job).collect::<Vec<_>>()).unwrap();
    q.close().unwrap();
    // A damaged record (item 0's, acknowledged) makes repair rebuild the queue. After
    // the damage it cannot tell which records were acknowledged, so it keeps them all
    // (at least once): items 1..13, as items 0..12.
    let chunk = d.path().join("q00000");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&chunk, bytes).unwrap();
    let report = diskq::repair(d.path()).unwrap();
    assert!(report.rebuilt, "{report}");
    assert_eq!(report.records_salvaged, 12, "{report}");
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    let err = fwd.forward_all().unwrap_err();
    match &err {
        ForwardError::Conflict { seq, id, found, .. } => {
            assert_eq!((*seq, id.as_str(), *found), (0, "1-0", "another item"));
        }
        e => panic!("expected a conflict, got {e:?}"),
    }
    assert!(err.to_string().contains("new stream key"), "{err}");
    drop(fwd);
    assert_eq!(q.len(), 12, "nothing acknowledged");
    assert_eq!(read_stream(&mut redis.conn(), "jobs").len(), 10);
    // Into a new stream key they go.
    assert_eq!(
        Forwarder::new(&q, &redis.url(), "jobs-2")
            .unwrap()
            .forward_all()
            .unwrap(),
        12
    );
}

#[test]
fn a_url_that_is_not_one_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    let err = Forwarder::new(&q, "http://nowhere", "jobs").unwrap_err();
    assert!(matches!(err, ForwardError::Redis { .. }), "{err:?}");
}

#[test]
fn another_writer_on_the_stream_is_a_conflict_and_nothing_is_skipped() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..5).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    fwd.forward_all().unwrap();
    // Someone else appends, with an ID of the clock (far above the forwarder's).
    let _: String = redis::cmd("XADD")
        .arg("jobs")
        .arg("*")
        .arg("other")
        .arg("writer")
        .query(&mut redis.conn())
        .unwrap();
    q.put_many(&(5..8).map(job).collect::<Vec<_>>()).unwrap();
    // The same forwarder (which knows the stream's top) and a new one both refuse.
    let err = fwd.forward_all().unwrap_err();
    assert!(
        matches!(err, ForwardError::Conflict { seq: 5, .. }),
        "{err:?}"
    );
    drop(fwd);
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs").unwrap();
    let err = fwd.forward_all().unwrap_err();
    assert!(
        matches!(
            err,
            ForwardError::Conflict {
                seq: 5,
                found: "no entry",
                ..
            }
        ),
        "{err:?}"
    );
    drop(fwd);
    assert_eq!(q.len(), 3, "nothing acknowledged");
}

#[test]
fn a_forwarder_stopped_by_a_permanent_error_goes_on_once_the_cause_is_fixed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _: () = redis::cmd("SET")
        .arg("jobs")
        .arg("not a stream")
        .query(&mut redis.conn())
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let q: Queue<Job> = Queue::open(d.path()).unwrap();
    q.put_many(&(0..1000).map(job).collect::<Vec<_>>()).unwrap();
    let mut fwd = Forwarder::new(&q, &redis.url(), "jobs")
        .unwrap()
        .batch_size(100);
    assert!(matches!(fwd.forward_all(), Err(ForwardError::Redis { .. })));
    let _: () = redis::cmd("DEL")
        .arg("jobs")
        .query(&mut redis.conn())
        .unwrap();
    // The same forwarder, its batch still in hand, on a new connection.
    assert_eq!(fwd.forward_all().unwrap(), 1000);
    drop(fwd);
    assert_jobs_once_in_order(&read_stream(&mut redis.conn(), "jobs"), 1000, 0);
}
