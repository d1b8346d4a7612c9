//! The read-only scan of a queue directory: what its files hold, checked without changing
//! anything. `open` (src/recovery/), `repair` and the coming `verify` command read the
//! journal and check the chunk chain through it, so each rule is written once.

pub(crate) mod chain;
pub(crate) mod journal;
