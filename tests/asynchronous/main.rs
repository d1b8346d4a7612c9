//! The async API (issue #19): the queue's and the channel's futures and streams on
//! tokio's multi-threaded and current-thread runtimes and on `futures::executor`,
//! threads and tasks on one queue, waits that end by a timer (delays, leases, pause),
//! and cancellation (`select!` losing branches never lose or take an item).
//!
//! One test binary for these files (each a module).

#[path = "../common/mod.rs"]
mod common;
pub use common::within;

mod cancel;
mod channel;
mod queue;
mod timers;
mod wakeups;

/// Fails to compile unless the future is `Send`: it can be spawned on a multi-threaded
/// runtime.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}
