//! Crashes and damage: killed processes, crash points, power losses, torn and damaged files, full disks, repair.
//!
//! One test binary for these files (each a module), so that a change to the library
//! recompiles and links a few test crates instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod crash_corruption;
mod crash_locking;
mod crash_loop;
mod crash_points;
mod crash_sigkill;
mod crash_truncation;
mod faults;
mod full_disk;
mod info_torn;
mod preallocation;
mod repair;
mod repair_singles;
mod restart;
mod restart_review;
