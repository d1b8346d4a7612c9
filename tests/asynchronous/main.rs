//! The async API (issue #19): the queue's and the channel's futures and streams on
//! tokio's multi-threaded and current-thread runtimes and on `futures::executor`,
//! threads and tasks on one queue, waits that end by a timer (delays, leases, pause),
//! and cancellation (`select!` losing branches never lose or take an item).
//!
//! One test binary for these files (each a module).

#[path = "../common/mod.rs"]
mod common;

mod cancel;
mod channel;
mod queue;
mod timers;

/// Fails to compile unless the future is `Send`: it can be spawned on a multi-threaded
/// runtime.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

/// Runs `body` on a thread and fails if it has not finished within `secs`: a lost
/// wake-up shows as a hang, which must fail the test rather than stall CI.
pub fn within<R: Send + 'static>(secs: u64, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(r) => r,
        // The body panicked: report its panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body sent nothing and did not panic"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("still running after {secs} s: a waiting future was never woken")
        }
    }
}
