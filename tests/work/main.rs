//! The work queue: attempts, retries, leases, dead letters.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod dead_letters;
mod work_concurrency;
mod work_model;
mod work_queue;
