//! The on-disk format: fixtures written by older versions, the worked example, the fuzz corpus and the model.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod fixtures_v1_v2;
mod fixtures_v3;
mod fixtures_v4;
mod fixtures_v5;
mod format_example;
mod fuzz_corpus;
mod model;
