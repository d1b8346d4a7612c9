//! The queue as a library user sees it: FIFO semantics, batches, limits, peek and browse, reopen, schema, the ported pqueue and Python queue suites.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod acknowledgement;
mod batch;
mod chunk_limit;
mod concurrency;
mod delivery;
mod directory;
mod disk_space;
mod group_commit;
mod intake;
mod journal_read;
mod max_bytes;
mod peek_browse;
mod pqueue_port;
mod python_semantics;
mod readme;
mod reopen;
mod schema;
