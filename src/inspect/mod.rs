//! The read-only scan of a queue directory: what its files hold, checked without changing
//! anything. `open` (src/recovery/) reads the journal and checks the chunk chain through
//! it; `repair` and the coming `verify` command scan the whole directory (`dir.rs`),
//! with the same journal and chain code. Each rule is written once.

pub(crate) mod chain;
pub(crate) mod dir;
pub(crate) mod journal;
