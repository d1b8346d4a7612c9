//! Tests written for bugs found (regressions) and by hostile reviews.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod regression_buffered_write_failure;
mod regression_extra_records_skipped;
mod regression_inconsistent_chunk_headers;
mod regression_live_verify;
mod regression_middle_chunk_boundary_unknown;
mod regression_power_loss_fuzz;
mod regression_put_returns_before_written;
mod regression_sequence_overflow;
mod regression_single_ack_after_reopen;
mod regression_stale_tail_mark;
mod review17;
mod review17b;
mod review17c;
mod review17d;
mod review17g;
mod review19;
mod review21;
mod review22;
mod review23;
mod review24;
mod review25;
mod review_cli_audit;
mod review_cli_lib;
mod review_info;
mod review_nospace;
