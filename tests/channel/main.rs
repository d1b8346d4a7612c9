//! The durable channels beside std mpsc and crossbeam-channel.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod channel_crossbeam;
mod channel_durability;
mod channel_mpsc;
