//! Time for leases and delays, behind a trait so that tests can drive it by hand.
//!
//! Leases run on a monotonic clock (a lease is a span of the process's life); the due
//! time of a delayed retry is wall-clock milliseconds since the Unix epoch, because it
//! is recorded on disk and must mean the same after a restart.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time for a queue's leases and delays. [`SystemClock`] unless a test sets
/// another with `Options::clock` (feature `__testing`, as the whole module's public
/// items: not in a default build).
#[doc(hidden)]
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time since an arbitrary origin that never goes back.
    fn monotonic(&self) -> Duration;
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> u64;
    /// The same, as cheaply as the system allows (a few milliseconds coarse): taken on
    /// every write, for put times.
    fn coarse_wall_ms(&self) -> u64 {
        self.wall_ms()
    }
    /// Milliseconds since the Unix epoch, rounded up: the base of a due time, so that a
    /// delay is never shortened by the part of a millisecond the reading drops.
    fn wall_ms_ceil(&self) -> u64 {
        self.wall_ms()
    }
    /// Whether blocking calls may sleep until a timer of this clock comes due (false for
    /// a clock that only moves when a test moves it).
    fn sleeps(&self) -> bool {
        true
    }
    /// Whether [`monotonic`](Self::monotonic) is the machine's coarse monotonic clock
    /// ([`coarse_monotonic`]), which a get reads anyway (to poll the pause): a lease's
    /// deadline is then computed from that reading instead of a second one.
    fn is_coarse_monotonic(&self) -> bool {
        false
    }
}

/// The machine's clocks, read coarsely: `CLOCK_MONOTONIC_COARSE` and
/// `CLOCK_REALTIME_COARSE`, the time of the last scheduler tick (1-4 ms), read without a
/// system call or a TSC read. Every lease decision uses the same clock, so a lease still
/// runs out exactly once and a late call after it fails; it just runs out up to a tick
/// late. (A precise clock read on every get and acknowledgement cost more than the rest
/// of a lease's bookkeeping: BENCHMARKS.md, W7.)
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct SystemClock;

#[inline]
fn coarse(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        coarse(rustix::time::ClockId::MonotonicCoarse)
    }

    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn wall_ms_ceil(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, ceil_ms)
    }

    fn coarse_wall_ms(&self) -> u64 {
        coarse(rustix::time::ClockId::RealtimeCoarse).as_millis() as u64
    }

    fn is_coarse_monotonic(&self) -> bool {
        true
    }
}

#[cfg(feature = "__testing")]
pub use manual::ManualClock;

/// Tests only, as `Options::clock`: not in a default build.
#[cfg(feature = "__testing")]
mod manual {
    use super::Clock;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A clock that moves only when told to (tests and the model): both its readings
    /// start at the given wall time and advance together.
    #[doc(hidden)]
    #[derive(Debug, Clone)]
    pub struct ManualClock {
        ms: Arc<AtomicU64>,
    }

    impl ManualClock {
        pub fn new(wall_ms: u64) -> ManualClock {
            ManualClock {
                ms: Arc::new(AtomicU64::new(wall_ms)),
            }
        }

        pub fn advance(&self, d: Duration) {
            self.ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.ms.load(Ordering::SeqCst))
        }

        fn wall_ms(&self) -> u64 {
            self.ms.load(Ordering::SeqCst)
        }

        fn sleeps(&self) -> bool {
            false
        }
    }
}

/// `d` in whole milliseconds, rounded up (saturating): a delay of 0.3 ms waits 1 ms,
/// never 0.
pub(crate) fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(u128::from(u64::MAX)) as u64
}

/// Milliseconds of the coarse monotonic clock (a vDSO read, no system call): for polls
/// that a `ManualClock` must not stop.
pub(crate) fn coarse_ms() -> u64 {
    coarse_monotonic().as_millis() as u64
}

/// The coarse monotonic clock ([`SystemClock::monotonic`]).
#[inline]
pub(crate) fn coarse_monotonic() -> Duration {
    coarse(rustix::time::ClockId::MonotonicCoarse)
}

pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
