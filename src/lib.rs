//! # diskq: a persistent, thread-safe FIFO queue
//!
//! diskq is for programs that would use a [`std::sync::mpsc`] or `crossbeam-channel`
//! channel between threads, but need the items to survive a crash or a restart: job
//! backlogs, outboxes, crawler frontiers, log shippers' buffers. It follows Python's
//! `queue` / `pqueue` API: [`put`](Queue::put), [`get`](Queue::get),
//! [`task_done`](Queue::task_done), [`join`](Queue::join).
//!
//! ```
//! use diskq::Queue;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Job {
//!     url: String,
//!     attempt: u32,
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let q: Queue<Job> = Queue::open(dir.path())?;
//! q.put(&Job { url: "https://example.com".into(), attempt: 0 })?;
//!
//! let job = q.get()?;
//! // ... process the job; if the process dies here, the job is delivered again ...
//! q.task_done()?; // now it is gone for good
//! # assert_eq!(job.attempt, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Durable channels
//!
//! [`channel`], [`sync_channel`] and [`channel_with`] give a [`Sender`] and a [`Receiver`]
//! with the API of [`std::sync::mpsc`] and crossbeam-channel, over a queue directory.
//! Making a std program durable changes three lines: the `use`, the item type's derive,
//! and the directory given to `channel`.
//!
//! Before, with [`std::sync::mpsc`]:
//!
//! ```
//! use std::sync::mpsc::channel;
//! use std::thread;
//!
//! #[derive(Debug)]
//! struct Job {
//!     id: u64,
//! }
//!
//! fn main() {
//!     let (tx, rx) = channel();
//!     let worker = thread::spawn(move || {
//!         for job in rx {
//!             println!("working on {job:?}");
//!         }
//!     });
//!     for id in 0..3 {
//!         tx.send(Job { id }).unwrap();
//!     }
//!     drop(tx);
//!     worker.join().unwrap();
//! }
//! ```
//!
//! After, with diskq:
//!
//! ```
//! use diskq::channel; // 1
//! use std::thread;
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)] // 2
//! struct Job {
//!     id: u64,
//! }
//!
//! fn main() {
//! #   let tmp = tempfile::tempdir().unwrap();
//! #   let dir = tmp.path().join("jobs");
//!     let (tx, rx) = channel(dir).unwrap(); // 3: a directory, e.g. "/var/lib/app/jobs"
//!     let worker = thread::spawn(move || {
//!         for job in rx {
//!             println!("working on {job:?}");
//!         }
//!     });
//!     for id in 0..3 {
//!         tx.send(Job { id }).unwrap();
//!     }
//!     drop(tx);
//!     worker.join().unwrap();
//! }
//! ```
//!
//! Now the jobs survive a crash, a `kill -9` and a restart: a job is acknowledged when the
//! worker asks for the next one, so if the process dies, the next run's `channel` on the
//! same directory receives the job that was in progress and those not yet received, in
//! order, and nothing that was done. For a consumer that hands items to other threads,
//! [`Receiver::recv_delivery`] returns an [`OwnedDelivery`] to acknowledge explicitly; for
//! `crossbeam_channel::select!`, [`Receiver::ready`] gives a receiver to select on (see
//! `examples/select_shutdown.rs`).
//!
//! What differs from std:
//!
//! * `channel(dir)` returns a `Result`: opening can fail, with [`Error::Locked`] while
//!   another channel or [`Queue`] has the directory open (in this process or another).
//! * Items are `Serialize + DeserializeOwned`; a receiver gets a deserialized copy.
//! * The error types have std's names and one more variant, `Storage`, for a failure of
//!   the queue underneath; [`SendError`] is an enum (`SendError::Disconnected(item)`).
//!   The iterators panic on a storage failure, which they cannot report otherwise.
//! * Disconnection is std's (`recv` fails once every [`Sender`] is gone and the items are
//!   drained; `send` fails once every [`Receiver`] is gone), but dropping the receivers
//!   does not drop the items: they wait on disk for the next channel on the directory.
//! * A [`Receiver`] can be cloned for several consumers, as in crossbeam-channel; like
//!   std's it is `Send` but not `Sync`, since each clone has its own item in progress.
//! * `sync_channel(dir, 0)` holds one item: there is no rendezvous channel on disk.
//!
//! ## Guarantees
//!
//! * FIFO, across restarts.
//! * An item whose `put` returned `Ok` is delivered exactly once unless a crash
//!   intervenes, and at least once if one does.
//! * Acknowledgement is FIFO: the k-th `task_done` acknowledges the k-th item gotten. After
//!   a crash or reopen, items gotten but not acknowledged are delivered again, first, in
//!   their order. An acknowledged item is never delivered again. For items finished out
//!   of order, [`Queue::get_delivery`] hands out an item with its own
//!   [`ack`](Delivery::ack).
//! * Concurrent callers share writes (group commit): at [`Durability::Synced`], N threads
//!   putting at once share one `fdatasync` (a leader waits briefly, at most half a sync,
//!   for the callers the last sync released to put again). Batches ([`Queue::put_many`],
//!   [`Queue::get_many`], [`Queue::task_done_n`]) take one write for many items.
//! * A damaged file gives an [`Error`] naming the file and offset, never a panic, a wrong
//!   item, or a silently emptied queue. What recovery repairs by itself is what a crash
//!   can leave: a record cut short at the end of the newest chunk (it was never
//!   acknowledged to its writer) and, after a restart of the machine, whatever a power
//!   loss tore or lost of the writes not yet synced: `open` keeps the longest intact run
//!   of items and reports what it cut in [`Queue::recovery`]. For anything else,
//!   [`repair`] salvages every intact record into a rebuilt queue and moves the damaged
//!   files aside.
//! * The directory is locked while a `Queue` has it open: a second `open`, from this
//!   process or another, gets [`Error::Locked`].
//!
//! ## Durability
//!
//! | [`Durability`]            | `put`/`task_done` returns after | survives panic / `kill -9` | survives power loss |
//! |---------------------------|----------------------------------|----------------------------|---------------------|
//! | `Buffered`                | copying to a memory buffer       | what was flushed (64 KiB batches, `flush`, `close`, drop) | opens by itself; recent work may be lost |
//! | `Written` (default)       | into the page cache (the OS)     | yes                        | opens by itself; recent work may be lost, acknowledged items may return |
//! | `Synced`                  | `fdatasync(2)` (and directory sync) | yes                     | yes; opens by itself |
//!
//! After a power loss below `Synced`, `open` keeps the longest intact run of items, with
//! nothing missing from the middle, never a damaged or invented one; see
//! [`Queue::recovery`] and FORMAT.md §open, step 3a.
//!
//! ## Performance
//!
//! At the default level a `put` or `task_done` makes no system call: the newest chunk file
//! is grown ahead of its data and records are copied into a shared mapping of that space,
//! which puts them in the kernel's page cache as `write(2)` would. On a 2-core VM that is
//! 4–5 M puts/s and 4–5 M acknowledged gets/s of 64-byte items from one thread, and
//! 2 M items/s from a producer to a consumer thread; `put_many`, `get_many` and
//! `task_done_n` amortize the locking further (10–14 M and 9–10 M items/s). At
//! [`Durability::Synced`] a put writes into zeros written ahead of the data, so
//! `fdatasync` has no size change or block allocation to commit: 7,000–13,000 durable
//! puts/s from one thread there (the disk's speed varies), more than a bare append +
//! `fdatasync` manages, and four to five times that from eight threads sharing syncs.
//! Reopening reads no records of a cleanly closed queue, and finds its files from `info`
//! without listing the directory. BENCHMARKS.md in the repository compares diskq with
//! other queues.
//!
//! A `Queue<Vec<u8>>` writes and reads its items with one copy each. A byte vector inside
//! a larger item is written with one copy too, but serde reads it back one byte at a
//! time: mark such a field `serde_bytes` (the same bytes on disk) to read it in one copy.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Job {
//!     id: u64,
//!     #[serde(with = "serde_bytes")] // or serde_bytes::ByteBuf
//!     body: Vec<u8>,
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let q: diskq::Queue<Job> = diskq::Queue::open(dir.path())?;
//! q.put(&Job { id: 1, body: vec![1, 2, 3] })?;
//! assert_eq!(q.get()?, Job { id: 1, body: vec![1, 2, 3] });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## On disk
//!
//! A queue directory holds `info` (a checkpoint), chunk files `q00000`, `q00001`, ... of
//! CRC-framed records, an acknowledgement journal `acks`, and `.lock`. The format, its
//! crash analysis and its version history are in
//! [FORMAT.md](https://github.com/diskq/diskq/blob/main/FORMAT.md).
#![deny(unsafe_code)]
// three exceptions, each with its proof: the mapping in `storage::fs`, `codec::as_bytes` and `codec::as_byte_vec`
#![warn(missing_docs)]

mod acks;
mod browse;
mod channel;
mod clock;
mod codec;
mod dead_letters;
mod delivery;
mod engine;
// The engine's parts that need its private state (`engine/`), known by their own names.
use engine::{checkpoint, commit};
mod error;
mod format;
// The fuzz bodies, the simulated storage and the hidden tuning knobs are for the test
// suite and the fuzz targets only: a default build has none of them (feature `__testing`,
// which `[dev-dependencies]` turns on).
#[cfg(feature = "__testing")]
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod inspector;
mod intake;
mod leases;
mod marks;
mod options;
mod pause;
mod queue;
mod reader;
mod recovery;
mod repair;
mod reserve;
mod retries;
mod seqmap;
mod seqset;
mod stats;
mod work;
mod writer;

#[cfg(feature = "__testing")]
#[doc(hidden)]
pub mod storage;
#[cfg(not(feature = "__testing"))]
mod storage;

pub use browse::Browse;
pub use channel::{
    IntoIter, Iter, OwnedDelivery, Receiver, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, Sender, SyncSender, TryIter, TryRecvError, TrySendError, channel,
    channel_with, sync_channel,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dead_letters::{DeadLetter, DeadLetterIter, DeadLetters};
pub use delivery::Delivery;
pub use error::{Error, Result};
pub use format::FORMAT_VERSION;
pub use inspector::{Inspector, RawItem, Snapshot, Verification};
pub use options::{DEFAULT_CHUNK_SIZE, Durability, Options};
pub use pause::{pause, resume};
pub use queue::Queue;
pub use recovery::Recovery;
#[cfg(feature = "__testing")]
pub use repair::repair_on;
pub use repair::{AckState, DamagedRange, MovedFile, RepairReport, repair};
pub use stats::Stats;
