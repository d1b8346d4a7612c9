//! Store and forward: a [`Forwarder`] moves the items of a [`Queue`] into a Redis
//! stream, exactly once, through crashes of the forwarding process and outages of Redis
//! (feature `redis`).
//!
//! Items are put into the local queue at local speed, whether Redis is up or not; the
//! forwarder takes them in order, appends them to the stream with pipelined `XADD`s,
//! and acknowledges them in the queue only after Redis confirmed them, in batches.
//! Consumers on any machine, in any language, read the stream (with `XREAD` or a
//! consumer group).
//!
//! # The entries
//!
//! Item `seq` of the queue becomes the stream entry with ID `<seq + 1>-0` (`0-0` is not
//! a valid ID), with these fields, in this order:
//!
//! | field    | value |
//! |----------|-------|
//! | `seq`    | the item's sequence number in the queue, in decimal |
//! | `put_ms` | when the queue wrote the item, in milliseconds since the Unix epoch, in decimal (below); left out when the queue has no time for the item |
//! | `data`   | the item: JSON text with [`Encoding::Json`] (the default), the bytes the queue stores (bincode) with [`Encoding::Bincode`] |
//!
//! `put_ms` comes from the queue's put-time marks, the ones behind
//! [`Stats::oldest_age`](crate::Stats::oldest_age).
//! When the queue writes items into a chunk file, it notes the first item's sequence
//! number and the time, read from the coarse wall clock (`CLOCK_REALTIME_COARSE`: the
//! last scheduler tick, 1 to 4 ms behind), at most one mark per millisecond. An item's
//! `put_ms` is the time of the newest mark at or before it: a lower bound, never later
//! than the end of the write that stored the item. How close it is:
//!
//! * In the process that put the item, within a tick of the coarse clock and a
//!   millisecond of that write's end. At the default level the write is part of the
//!   `put`, so `put_ms` is at most the time the `put` returned; at
//!   [`Buffered`](crate::Durability::Buffered) it comes later, when the buffer is
//!   written (64 KiB of items, a get that runs out of written items, `flush`), so
//!   `put_ms` may be later than the `put` returned, by as long as the item waited in the
//!   buffer.
//! * A backlog written over more than 4,096 separate milliseconds thins the marks kept
//!   in memory (every other one goes, so that they stay spread evenly over the backlog):
//!   the items between two marks kept get the older one's time.
//! * After a reopen, items put before it have only the 16 marks that the last checkpoint
//!   recorded in `info`, spread over the items waiting then: an item gets the time of
//!   the newest of those at or before it, so it is early by up to the time between two
//!   of them. Items written after that checkpoint, in a process that then crashed,
//!   get the newest mark's time.
//! * `put_ms` is left out when no mark is at or before the item: items from a queue
//!   written in format version 4 or older, items written before a crash that came
//!   before any checkpoint recorded a mark, and after a power loss that tore an unsynced
//!   `info` (FORMAT.md §info: its lists, the marks among them, are dropped).
//!
//! # Exactly once: the mechanism
//!
//! Each entry's ID comes from the item's sequence number in the queue: item `seq` is
//! entry `<seq + 1>-0`. Sequence numbers only grow, and the forwarder sends items in
//! their order, so the IDs it sends grow too; and Redis refuses an `XADD` whose ID is
//! not greater than the stream's last. A forwarder that crashed after Redis took a batch
//! and before the queue recorded its acknowledgement gets the same items again after
//! the restart, with the same sequence numbers: Redis refuses them, and the forwarder
//! reads the entry at that ID (`XRANGE`), finds the same item there (its `seq` and
//! `data` fields compared: byte for byte, or for JSON as values, since a `HashMap`
//! encodes its keys in another order each run), counts it in
//! [`ForwardStats::duplicates`] and acknowledges it. An item is acknowledged only once
//! it is in the stream, so none is lost; it is added only if no entry holds its ID, so
//! none is added twice.
//!
//! # Assumptions
//!
//! * **One forwarder per stream key, and no other writer** (nor a consumer that `XDEL`s
//!   the newest entries). An entry added by someone else with a greater ID makes the
//!   forwarder's next items "not greater": it looks again, finds an entry that is not its
//!   item (or none) and stops with [`ForwardError::Conflict`] instead of skipping anything.
//!   (Its own pipeline applied late, after a timeout and a reconnection, looks the same
//!   at first; looking again tells them apart.)
//! * **The forwarder is the queue's only consumer**, without `Options::lease` (a lease
//!   running out while Redis is down would hand the batch out again) and with
//!   `max_deliveries` unset or generous (each restart of the forwarder counts an attempt
//!   for the items it held). A queue with items waiting out a delay (`nack_after` by an
//!   earlier consumer) is refused ([`ForwardError::Delayed`]): they would come due after
//!   the items behind them were forwarded.
//! * **Redis keeps what it confirmed.** Redis's defaults do not: without `appendonly yes`
//!   a restart of Redis loses everything since its last snapshot. With `appendonly yes`
//!   and the default `appendfsync everysec`, a crash of Redis or its machine may lose the
//!   last second or two of confirmed entries; with `appendfsync always`, nothing. The queue
//!   has acknowledged what Redis confirmed, so entries Redis loses are gone from both:
//!   the stream's IDs show the gap.
//!
//! # After `repair`
//!
//! [`repair`](crate::repair) renumbers the items it salvages from 0, so their IDs fall
//! below the stream's last: the forwarder finds other items at those IDs and stops with
//! [`ForwardError::Conflict`], acknowledging nothing. Forward a repaired queue into a new
//! stream key (or delete the stream once its consumers are done with it). One case it
//! cannot tell apart: a renumbered item whose encoding is byte for byte that of the
//! item that had its ID before (the same `data` at the same position) counts as already
//! forwarded.
//!
//! # Limits
//!
//! * An item that cannot be encoded (JSON cannot encode a map with non-string keys, for
//!   one) goes to the queue's dead letters with the reason, and forwarding goes on.
//! * With [`Encoding::Bincode`], an item whose encoding changes between runs (one holding
//!   a `HashMap`) cannot be recognized after a crash: the forwarder stops with
//!   `Conflict` rather than add it twice. Use `BTreeMap`, or JSON.
//! * Redis dropping the connection on every attempt at one batch while it answers
//!   otherwise (an item over its `proto-max-bulk-len`) ends in
//!   [`ForwardError::Refused`] after 8 attempts.
//! * Blocking I/O cannot be interrupted: `run_until` returns once a send or connection
//!   under way ends, within 10 s when Redis stalls (plus connecting).
//! * A server error on one `XADD` of a pipeline while a later one succeeds (only
//!   possible when memory is freed between them, with `maxmemory` eviction) leaves an
//!   item that can no longer be added in order: [`ForwardError::OutOfOrder`] names it,
//!   and it stays unacknowledged in the queue.
//! * Trimming (`max_len`) must keep more entries than a batch, so that the entries a
//!   restarted forwarder checks are still there: it is raised to twice the batch size.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::atomic::AtomicBool;
//! let q: diskq::Queue<String> = diskq::Queue::open("/var/lib/app/outbox")?;
//! q.put(&"order 17 shipped".to_string())?;
//!
//! let mut fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?;
//! let moved = fwd.forward_all()?; // returns once the queue is empty
//! println!("{moved} forwarded; {:?}", fwd.stats());
//!
//! // Or in a background thread, until told to stop:
//! let stop = AtomicBool::new(false);
//! std::thread::scope(|s| {
//!     s.spawn(|| fwd.run_until(&stop));
//!     // ... put items; at shutdown:
//!     stop.store(true, std::sync::atomic::Ordering::Release);
//! });
//! # Ok(()) }
//! ```

use crate::delivery::Ticket;
use crate::{Error, Queue};
use redis::{Connection, RedisError, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a pipeline's replies may take: a stalled server counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `run_until` waits for items before it looks at `stop` again.
const POLL: Duration = Duration::from_millis(100);
/// Failures in a row of the same batch, with Redis answering otherwise, after which the
/// batch counts as refused.
const REFUSALS: u32 = 8;

/// How an item is written into its entry's `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// JSON text (`serde_json`): readable from any language. The default.
    #[default]
    Json,
    /// The item as the queue stores it (bincode): compact, for Rust readers.
    Bincode,
}

/// What a [`Forwarder`] has done, for monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardStats {
    /// Entries this forwarder added to the stream.
    pub forwarded: u64,
    /// Items found already in the stream (sent before a crash, not yet acknowledged
    /// then) and acknowledged without adding them again.
    pub duplicates: u64,
    /// Times a batch was sent again after Redis failed or could not be reached.
    pub retries: u64,
    /// Items that could not be encoded, moved to the queue's dead letters.
    pub dead_lettered: u64,
    /// The last failure, if any: what a monitor shows while Redis is down.
    pub last_error: Option<String>,
}

/// Why forwarding stopped. Redis being down or unreachable is not one of them: the
/// forwarder retries that, with backoff, until Redis is back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The local queue failed (see [`Error`]).
    #[error(transparent)]
    Queue(#[from] Error),
    /// Redis refused the entries for a reason retrying does not fix (a key of another
    /// type, a failed authentication, a bad configuration).
    #[error(
        "redis stream {stream}: {source}. Nothing after item {seq} was acknowledged in \
         the queue; fix the cause and run the forwarder again"
    )]
    Redis {
        /// The stream key.
        stream: String,
        /// The first item not forwarded.
        seq: u64,
        /// What Redis said.
        #[source]
        source: RedisError,
    },
    /// The stream holds an entry at an item's ID that is not that item, or its ID is
    /// below the stream's last and no entry has it: another writer uses the stream, or
    /// the queue was renumbered by `repair`.
    #[error(
        "redis stream {stream}: entry {id} is not item {seq} of the queue ({found}). \
         Another writer uses the stream, or diskq::repair renumbered the queue. Nothing \
         from item {seq} on was acknowledged; forward into a new stream key, or delete \
         the stream once its consumers are done with it"
    )]
    Conflict {
        /// The stream key.
        stream: String,
        /// The entry ID the item needs.
        id: String,
        /// The item's sequence number.
        seq: u64,
        /// What is at that ID: "another item" or "no entry".
        found: &'static str,
    },
    /// Redis answers, but drops the connection on every attempt to add a batch (an item
    /// larger than its `proto-max-bulk-len`, for one).
    #[error(
        "redis stream {stream}: Redis answers but refused the batch starting at item {seq} \
         {attempts} times ({reason}); an item may exceed its proto-max-bulk-len. Nothing \
         from item {seq} on was acknowledged; raise the limit, or take the item out of the \
         queue"
    )]
    Refused {
        /// The stream key.
        stream: String,
        /// The first item of the batch.
        seq: u64,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The queue holds items waiting out a delay (`nack_after`): they would come due
    /// after the items put after them were forwarded, below the stream's last ID.
    #[error(
        "queue {path}: {delayed} items wait out a delay (nack_after), and would reach the \
         stream out of order; let them come due and take them out, or forward from a \
         queue that only the forwarder consumes"
    )]
    Delayed {
        /// The queue directory.
        path: std::path::PathBuf,
        /// Items delayed.
        delayed: usize,
    },
    /// An `XADD` failed while a later one in the same pipeline succeeded: the item can
    /// no longer be added in order.
    #[error(
        "redis stream {stream}: item {seq} was refused ({reason}) while a later item was \
         added, so it can no longer be added in order. It stays unacknowledged in the \
         queue; add it by hand, or forward the queue into a new stream key"
    )]
    OutOfOrder {
        /// The stream key.
        stream: String,
        /// The item refused.
        seq: u64,
        /// What Redis said about it.
        reason: String,
    },
}

/// A batch's item, encoded, with what acknowledges it.
struct Pending {
    seq: u64,
    put_ms: Option<u64>,
    data: Vec<u8>,
    ticket: Ticket,
}

/// How an attempt to send the pending batch failed.
enum Failure {
    /// Redis down, unreachable, loading, out of memory: try again later.
    Transient(RedisError),
    /// An ID refused as not greater than the stream's: look at the stream again (the
    /// forwarder's own pipeline, applied late, or another writer) and try again now.
    Recheck,
    Permanent(ForwardError),
}

/// Moves a queue's items into a Redis stream, exactly once; see the [module
/// docs](self) for the mechanism, its assumptions and its limits.
pub struct Forwarder<'q, T> {
    queue: &'q Queue<T>,
    client: redis::Client,
    conn: Option<Connection>,
    stream: String,
    encoding: Encoding,
    batch: usize,
    max_len: Option<usize>,
    backoff: (Duration, Duration),
    /// Taken from the queue, not yet confirmed by Redis: sent first, in order.
    pending: Vec<Pending>,
    /// The millisecond part of the stream's last ID as this connection knows it: items
    /// at or below it may be there already and are looked at before anything is added.
    top: Option<u64>,
    stats: ForwardStats,
}

impl<T> std::fmt::Debug for Forwarder<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("stream", &self.stream)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'q, T: Serialize + DeserializeOwned> Forwarder<'q, T> {
    /// A forwarder of `queue` into the stream `stream` of the Redis server at
    /// `redis_url` (`redis://host:port/db`, with a password as `redis://:pw@host/`).
    /// It connects at the first send, and again whenever the connection fails.
    ///
    /// Defaults: JSON entries, batches of 512 items, no trimming, backoff from 50 ms to
    /// 5 s.
    ///
    /// ```
    /// use diskq::forward::{ForwardError, Forwarder};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let fwd = Forwarder::new(&q, "redis://127.0.0.1:6379/0", "orders")?; // no connection yet
    /// assert_eq!(fwd.stream(), "orders");
    ///
    /// let err = Forwarder::new(&q, "http://127.0.0.1/", "orders").unwrap_err();
    /// assert!(matches!(err, ForwardError::Redis { .. })); // not a Redis URL
    ///
    /// // An item waiting out a delay would come due after the items behind it left:
    /// q.put(&"order 17 shipped".to_string())?;
    /// q.get_delivery()?.nack_after(std::time::Duration::from_secs(60))?;
    /// let err = Forwarder::new(&q, "redis://127.0.0.1/", "orders").unwrap_err();
    /// assert!(matches!(err, ForwardError::Delayed { delayed: 1, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ForwardError::Redis`] when the URL is not one; [`ForwardError::Delayed`] when
    /// items of the queue wait out a delay.
    pub fn new(
        queue: &'q Queue<T>,
        redis_url: &str,
        stream: impl Into<String>,
    ) -> Result<Forwarder<'q, T>, ForwardError> {
        let stream = stream.into();
        let delayed = queue.stats().delayed;
        if delayed > 0 {
            return Err(ForwardError::Delayed {
                path: queue.path().to_path_buf(),
                delayed,
            });
        }
        let client = redis::Client::open(redis_url).map_err(|source| ForwardError::Redis {
            stream: stream.clone(),
            seq: 0,
            source,
        })?;
        Ok(Forwarder {
            queue,
            client,
            conn: None,
            stream,
            encoding: Encoding::Json,
            batch: 512,
            max_len: None,
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            pending: Vec::new(),
            top: None,
            stats: ForwardStats::default(),
        })
    }

    /// How items are written into their entries' `data` field (JSON by default).
    ///
    /// ```
    /// use diskq::forward::{Encoding, Forwarder};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<(u64, String)> = diskq::Queue::open(dir.path())?;
    /// // `data` holds the bytes the queue stores, for readers in Rust:
    /// // bincode::deserialize::<(u64, String)>(data)
    /// let fwd = Forwarder::new(&q, "redis://127.0.0.1/", "orders")?.encoding(Encoding::Bincode);
    /// # drop(fwd);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Items per pipeline and per local acknowledgement (512 by default; 0 is taken as
    /// 1). Larger batches move more items per round trip; a crash brings back at most one
    /// batch, which the restarted forwarder finds in the stream.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?
    ///     .batch_size(4096);
    /// # drop(fwd);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Trims the stream to about `n` entries as it grows (`XADD ... MAXLEN ~ n`); at
    /// least twice the batch size (see the module docs, Limits).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?
    ///     .max_len(1_000_000); // the newest million entries, or a few more
    /// # drop(fwd);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = Some(n);
        self
    }

    /// The wait after a failed send: `first`, doubling up to `max`, back to `first`
    /// after a success. A `max` below `first` is taken as `first`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// // While Redis is down: 0.1 s, 0.2 s, 0.4 s, ... then every 30 s.
    /// let fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?
    ///     .backoff(Duration::from_millis(100), Duration::from_secs(30));
    /// # drop(fwd);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// What this forwarder has done.
    ///
    /// ```
    /// use diskq::forward::{ForwardStats, Forwarder};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let fwd = Forwarder::new(&q, "redis://127.0.0.1/", "orders")?;
    /// assert_eq!(fwd.stats(), &ForwardStats::default()); // nothing yet
    /// let s = fwd.stats(); // for a monitor, from the thread that runs the forwarder:
    /// println!("{} forwarded, {} found already there, {} retries", s.forwarded, s.duplicates, s.retries);
    /// if let Some(e) = &s.last_error {
    ///     println!("last failure: {e}"); // Redis down, for one
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// The stream key.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?;
    /// assert_eq!(fwd.stream(), "orders");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Forwards until the queue is empty; returns the items acknowledged (forwarded, or
    /// found already forwarded). While Redis is down it waits and retries, however long.
    ///
    /// ```no_run
    /// use diskq::forward::{ForwardError, Forwarder};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// q.put_many(&["order 17 shipped".to_string(), "order 18 shipped".to_string()])?;
    ///
    /// let mut fwd = Forwarder::new(&q, "redis://127.0.0.1/", "orders")?;
    /// match fwd.forward_all() {
    ///     Ok(n) => assert_eq!((n, q.len()), (2, 0)), // in the stream, gone from the queue
    ///     // Someone else's entry at an item's ID, or a queue renumbered by repair:
    ///     Err(ForwardError::Conflict { id, .. }) => eprintln!("{id} is taken: use a new key"),
    ///     // Refused for good (a key of another type, authentication): fix, run again.
    ///     Err(e @ ForwardError::Redis { .. }) => eprintln!("{e}"),
    ///     // Refused, Delayed, OutOfOrder, Queue: each message says what to do.
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`ForwardError`]; the items not forwarded stay in the queue.
    pub fn forward_all(&mut self) -> Result<u64, ForwardError> {
        let before = self.stats.forwarded + self.stats.duplicates;
        loop {
            if self.pending.is_empty() && !self.take(Duration::ZERO)? {
                return Ok(self.stats.forwarded + self.stats.duplicates - before);
            }
            self.send_with_retry(None)?;
        }
    }

    /// Forwards as items come until `stop` is set, for a background thread. `stop` is
    /// looked at every 100 ms while waiting for items, between retries while Redis is
    /// down, and after each batch; a batch under way is sent first (within 10 s when
    /// Redis stalls). Items taken and not yet confirmed when it stops are given back to
    /// the queue when the forwarder is dropped.
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<String> = diskq::Queue::open(dir.path())?;
    /// let stop = AtomicBool::new(false);
    /// std::thread::scope(|s| {
    ///     let forwarder = s.spawn(|| {
    ///         let mut fwd = diskq::forward::Forwarder::new(&q, "redis://127.0.0.1/", "orders")?;
    ///         fwd.run_until(&stop) // Ok once told to stop
    ///     });
    ///     q.put(&"order 17 shipped".to_string())?; // forwarded as it comes
    ///     // ... at shutdown:
    ///     stop.store(true, Ordering::Release);
    ///     forwarder.join().unwrap()
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`ForwardError`], as [`forward_all`](Self::forward_all) shows.
    pub fn run_until(&mut self, stop: &AtomicBool) -> Result<(), ForwardError> {
        while !stop.load(Ordering::Acquire) {
            if self.pending.is_empty() && !self.take(POLL)? {
                continue;
            }
            self.send_with_retry(Some(stop))?;
        }
        Ok(())
    }

    /// Takes the next batch and encodes it; false when no item came within `wait`.
    fn take(&mut self, wait: Duration) -> Result<bool, ForwardError> {
        let batch = match self.queue.get_many_tickets(self.batch, wait) {
            Ok(batch) => batch,
            Err(Error::Empty | Error::Timeout) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let put_ms = self.queue.put_times_ms(batch.iter().map(|(_, t)| t.seq()));
        let mut rest = batch.into_iter();
        for put_ms in put_ms {
            let Some((item, ticket)) = rest.next() else {
                break;
            };
            let seq = ticket.seq();
            let data = match self.encoding {
                Encoding::Json => serde_json::to_vec(&item).map_err(|e| e.to_string()),
                Encoding::Bincode => bincode::serialize(&item).map_err(|e| e.to_string()),
            };
            match data {
                Ok(data) => self.pending.push(Pending {
                    seq,
                    put_ms,
                    data,
                    ticket,
                }),
                Err(why) => {
                    let reason = format!(
                        "diskq::forward: cannot encode as {:?}: {why}",
                        self.encoding
                    );
                    if let Err(e) = self.queue.dead_letter_ticket(&ticket, reason) {
                        // The rest of the batch back into the queue, not left handed out.
                        for (_, t) in rest {
                            let _ = self.queue.give_back(&t, None);
                        }
                        return Err(e.into());
                    }
                    self.stats.dead_lettered += 1;
                }
            }
        }
        Ok(true)
    }

    /// Sends the pending batch until Redis confirms it, waiting after each transient
    /// failure. Returns early, the batch still pending, once `stop` is set.
    fn send_with_retry(&mut self, stop: Option<&AtomicBool>) -> Result<(), ForwardError> {
        let mut delay = self.backoff.0;
        // Failures in a row of a batch starting at the same item.
        let mut same = (u64::MAX, 0u32);
        while !self.pending.is_empty() {
            let first = self.pending[0].seq;
            match self.send_pending() {
                Ok(()) => {}
                Err(Failure::Permanent(e)) => {
                    self.stats.last_error = Some(e.to_string());
                    // A pipeline may have stopped being read halfway (a reply that does
                    // not parse): replies left on the connection would answer the next
                    // call's commands. A new connection, and a new look, next time.
                    self.conn = None;
                    self.top = None;
                    return Err(e);
                }
                Err(Failure::Recheck) => {
                    self.stats.retries += 1;
                    self.top = None;
                }
                Err(Failure::Transient(e)) => {
                    self.stats.retries += 1;
                    self.stats.last_error = Some(format!("redis stream {}: {e}", self.stream));
                    // The connection may be broken, or the server restarted (and lost
                    // what it had not written yet): a new one, and a new look.
                    self.conn = None;
                    self.top = None;
                    // Only a dropped connection counts towards a refusal: a server that
                    // says it is loading or busy is waited for, however long.
                    let dropped = e.is_connection_dropped() || e.is_io_error();
                    same = match (dropped, same.0 == first) {
                        (false, _) => (u64::MAX, 0),
                        (true, true) => (first, same.1 + 1),
                        (true, false) => (first, 1),
                    };
                    if same.1 >= REFUSALS && self.server_answers() {
                        let e = ForwardError::Refused {
                            stream: self.stream.clone(),
                            seq: first,
                            attempts: same.1,
                            reason: e.to_string(),
                        };
                        self.stats.last_error = Some(e.to_string());
                        return Err(e);
                    }
                    if !pause(delay, stop) {
                        return Ok(());
                    }
                    delay = (delay * 2).min(self.backoff.1);
                }
            }
        }
        Ok(())
    }

    /// Whether Redis answers a `PING` on a new connection: then a batch it keeps
    /// dropping the connection for is refused, not unlucky.
    fn server_answers(&mut self) -> bool {
        let Ok(mut c) = self.client.get_connection_with_timeout(CONNECT_TIMEOUT) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(CONNECT_TIMEOUT));
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }
}

/// Sleeps `d` in slices, looking at `stop`; false when it was set.
fn pause(d: Duration, stop: Option<&AtomicBool>) -> bool {
    let stopped = || stop.is_some_and(|s| s.load(Ordering::Acquire));
    let mut left = d;
    while !left.is_zero() {
        if stopped() {
            return false;
        }
        let slice = left.min(POLL);
        std::thread::sleep(slice);
        left -= slice;
    }
    !stopped()
}

impl<T: Serialize + DeserializeOwned> Forwarder<'_, T> {
    /// One attempt. Items whose IDs the stream may hold already (sent before a crash or
    /// a failure) are looked at first, and acknowledged if they are there; the rest go
    /// in one pipeline. The items confirmed leave the batch, acknowledged in the queue.
    fn send_pending(&mut self) -> Result<(), Failure> {
        let top = match self.top {
            Some(top) => top,
            None => self.stream_top()?,
        };
        self.top = Some(top);
        let overlap = self.pending.iter().take_while(|p| p.seq < top).count();
        if overlap > 0 {
            let (there, conflict) = self.already_there(overlap)?;
            self.stats.duplicates += there as u64;
            self.acknowledge(there)?;
            if let Some(conflict) = conflict {
                return Err(Failure::Permanent(conflict));
            }
            if self.pending.is_empty() {
                return Ok(());
            }
        }
        let replies = self.xadd_pending()?;
        let mut confirmed = 0;
        let mut failed: Option<Failure> = None;
        for reply in replies {
            match (reply, &failed) {
                (Ok(_), None) => confirmed += 1,
                (Ok(_), Some(_)) => {
                    // An item after a refused one went in: the refused one is stuck.
                    let reason = match failed.take() {
                        Some(Failure::Transient(e)) => e.to_string(),
                        Some(Failure::Permanent(e)) => e.to_string(),
                        Some(Failure::Recheck) | None => unreachable!("ends the loop"),
                    };
                    failed = Some(Failure::Permanent(ForwardError::OutOfOrder {
                        stream: self.stream.clone(),
                        seq: self.pending[confirmed].seq,
                        reason,
                    }));
                    break;
                }
                (Err(e), None) if id_too_small(&e) => {
                    // The items after it were not looked at: the next attempt does.
                    failed = Some(Failure::Recheck);
                    break;
                }
                (Err(e), None) => failed = Some(self.classify(e, self.pending[confirmed].seq)),
                (Err(_), Some(_)) => {}
            }
        }
        if confirmed > 0 {
            self.top = Some(self.pending[confirmed - 1].seq + 1);
        }
        self.stats.forwarded += confirmed as u64;
        self.acknowledge(confirmed)?;
        failed.map_or(Ok(()), Err)
    }

    /// The millisecond part of the stream's last generated ID; 0 for no stream.
    fn stream_top(&mut self) -> Result<u64, Failure> {
        let seq = self.pending[0].seq;
        let mut xinfo = redis::cmd("XINFO");
        xinfo.arg("STREAM").arg(&self.stream);
        let conn = self.connection(seq)?;
        let info: Value = match xinfo.query(conn) {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(0),
            Err(e) => return Err(self.classify(e, seq)),
        };
        let last = field(&info, "last-generated-id").and_then(|id| {
            let (ms, _) = id.split_once('-')?;
            ms.parse::<u64>().ok()
        });
        last.ok_or_else(|| {
            Failure::Permanent(ForwardError::Redis {
                stream: self.stream.clone(),
                seq,
                source: RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "XINFO STREAM gave no last-generated-id",
                )),
            })
        })
    }

    /// Acknowledges the first `n` pending items in the queue, in one journal write.
    fn acknowledge(&mut self, n: usize) -> Result<(), Failure> {
        if n == 0 {
            return Ok(());
        }
        let res = self
            .queue
            .ack_tickets(self.pending[..n].iter().map(|p| &p.ticket));
        self.pending.drain(..n);
        res.map_err(|e| Failure::Permanent(e.into()))?;
        // At `Buffered` acknowledgements wait in memory for thousands more: a crash
        // would bring back more batches than trimming (`max_len`) keeps to be checked.
        if self.queue.durability == crate::Durability::Buffered {
            self.queue
                .flush()
                .map_err(|e| Failure::Permanent(e.into()))?;
        }
        Ok(())
    }

    /// Sends one `XADD` per pending item in a pipeline; one reply each.
    fn xadd_pending(&mut self) -> Result<Vec<redis::RedisResult<Value>>, Failure> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let max_len = self.max_len.map(|n| n.max(2 * self.batch));
        for p in &self.pending {
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if let Some(n) = max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg(entry_id(p.seq)).arg("seq").arg(p.seq);
            if let Some(ms) = p.put_ms {
                cmd.arg("put_ms").arg(ms);
            }
            cmd.arg("data").arg(&p.data[..]);
        }
        let first = self.pending[0].seq;
        let n = self.pending.len();
        let conn = self.connection(first)?;
        query_within(conn, &pipe, n).map_err(|e| self.classify(e, first))
    }

    /// Looks at the entries at the IDs of the first `n` pending items: how many of them,
    /// from the first, are those items (forwarded before a crash or a failure), and the
    /// conflict at the first that is not, if any.
    fn already_there(&mut self, n: usize) -> Result<(usize, Option<ForwardError>), Failure> {
        let mut pipe = redis::pipe();
        for p in &self.pending[..n] {
            let id = entry_id(p.seq);
            pipe.cmd("XRANGE").arg(&self.stream).arg(&id).arg(&id);
        }
        let first = self.pending[0].seq;
        let conn = self.connection(first)?;
        let replies = query_within(conn, &pipe, n).map_err(|e| self.classify(e, first))?;
        let mut found = Vec::with_capacity(n);
        for reply in replies {
            let reply = reply.map_err(|e| self.classify(e, first))?;
            let parsed: redis::streams::StreamRangeReply = redis::from_redis_value(reply)
                .map_err(|e| self.classify(RedisError::from(e), first))?;
            found.push(parsed);
        }
        for (i, (p, found)) in self.pending.iter().zip(&found).enumerate() {
            let same = found.ids.first().is_some_and(|entry| {
                let field = |name: &str| match entry.map.get(name) {
                    Some(Value::BulkString(b)) => Some(&b[..]),
                    _ => None,
                };
                field("seq") == Some(p.seq.to_string().as_bytes())
                    && field("data").is_some_and(|d| same_item(self.encoding, d, &p.data))
            });
            if !same {
                let conflict = ForwardError::Conflict {
                    stream: self.stream.clone(),
                    id: entry_id(p.seq),
                    seq: p.seq,
                    found: if found.ids.is_empty() {
                        "no entry"
                    } else {
                        "another item"
                    },
                };
                return Ok((i, Some(conflict)));
            }
        }
        Ok((n, None))
    }

    /// The connection, made if there is none.
    fn connection(&mut self, seq: u64) -> Result<&mut Connection, Failure> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .map_err(|e| self.classify(e, seq))?;
            // A server that accepts and then stalls counts as down, not as slow.
            let timeouts = c
                .set_read_timeout(Some(IO_TIMEOUT))
                .and_then(|()| c.set_write_timeout(Some(IO_TIMEOUT)));
            timeouts.map_err(|e| self.classify(e, seq))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Transient (retry after a wait) or permanent (stop and say why).
    fn classify(&self, e: RedisError, seq: u64) -> Failure {
        // Codes of a server that cannot take writes for now.
        const PASSING: [&str; 9] = [
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "OOM",
            "MISCONF",
            "READONLY",
            "MASTERDOWN",
            "NOREPLICAS",
            "CLUSTERDOWN",
        ];
        let passing = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.code().is_some_and(|c| PASSING.contains(&c));
        if passing {
            Failure::Transient(e)
        } else {
            Failure::Permanent(ForwardError::Redis {
                stream: self.stream.clone(),
                seq,
                source: e,
            })
        }
    }
}

/// Sends `pipe` and reads its `n` replies, giving up at the first read that times out
/// ([`IO_TIMEOUT`], the connection's read timeout) or once the replies took longer than
/// that in all. (The `redis` crate's pipelined query waits out its read timeout once
/// per reply still to come: a server that stalls held a batch of 512 for 85 minutes.)
/// A server error is that reply's `Err`; a failure to send or read is the whole call's.
fn query_within(
    conn: &mut Connection,
    pipe: &redis::Pipeline,
    n: usize,
) -> redis::RedisResult<Vec<redis::RedisResult<Value>>> {
    let start = std::time::Instant::now();
    conn.send_packed_command(&pipe.get_packed_pipeline())?;
    let mut replies = Vec::with_capacity(n);
    for i in 0..n {
        // (No read timeout set per reply: a system call each, a third of a batch's time.)
        if i % 64 == 63 && start.elapsed() > IO_TIMEOUT {
            return Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )));
        }
        replies.push(match conn.recv_response()? {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        });
    }
    Ok(replies)
}

/// The stream entry ID of item `seq` (`0-0` is not a valid ID, hence `+ 1`).
fn entry_id(seq: u64) -> String {
    format!("{}-0", seq + 1)
}

/// The value of `name` in a reply that is a map (RESP3) or a flat list of keys and
/// values (RESP2), as text.
fn field(reply: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match reply {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(text)),
        _ => None,
    }
}

/// Whether an entry's `data` is this item's encoding: the same bytes, or for JSON the
/// same value (a map encodes its keys in an order that may change between runs, as a
/// `HashMap`'s does).
fn same_item(encoding: Encoding, found: &[u8], ours: &[u8]) -> bool {
    if found == ours {
        return true;
    }
    let value = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
    encoding == Encoding::Json && value(found).is_some_and(|f| Some(f) == value(ours))
}

/// Redis's refusal of an ID not greater than the stream's last.
fn id_too_small(e: &RedisError) -> bool {
    e.to_string()
        .contains("equal or smaller than the target stream top item")
}

impl<T> Drop for Forwarder<'_, T> {
    fn drop(&mut self) {
        // Taken and not confirmed: back into the queue, first in line, for the next
        // forwarder (a crash instead leaves them for the next open, the same way).
        for p in self.pending.drain(..) {
            let _ = self.queue.give_back(&p.ticket, None);
        }
    }
}
