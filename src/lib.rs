// The crate docs are README.md, so that every example there is compiled and run as a
// doctest (`cargo test --doc`) and the two never drift apart.
#![doc = include_str!("../README.md")]
// docs.rs marks `forward` as needing its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
// three exceptions, each with its proof: the mapping in `storage::fs`, `codec::as_bytes` and `codec::as_byte_vec`
#![warn(missing_docs)]

mod acks;
mod asynchronous;
mod browse;
mod channel;
mod clock;
mod codec;
mod dead_letters;
mod delivery;
mod engine;
// The engine's parts that need its private state (`engine/`), known by their own names.
use engine::{checkpoint, commit};
mod error;
mod format;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod forward;
// The fuzz bodies, the simulated storage, the hidden tuning knobs and the clock tests
// drive by hand are for the test suite and the fuzz targets only: a default build has
// none of them (feature `__testing`, which `[dev-dependencies]` turns on).
#[cfg(feature = "__testing")]
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod inspector;
mod intake;
mod leases;
mod marks;
mod options;
mod pause;
mod queue;
mod reader;
mod recovery;
mod repair;
mod reserve;
mod retries;
mod seqmap;
mod seqset;
mod stats;
mod timer;
mod waitlist;
mod work;
mod writer;

#[cfg(feature = "__testing")]
#[doc(hidden)]
pub mod storage;
#[cfg(not(feature = "__testing"))]
mod storage;

pub use browse::Browse;
pub use channel::{
    IntoIter, IntoStream, Iter, OwnedDelivery, Receiver, RecvError, RecvStream, RecvTimeoutError,
    SendError, SendTimeoutError, Sender, SyncSender, TryIter, TryRecvError, TrySendError, channel,
    channel_with, sync_channel,
};
#[cfg(feature = "__testing")]
#[doc(hidden)]
pub use clock::{Clock, ManualClock, SystemClock};
pub use dead_letters::{DeadLetter, DeadLetterIter, DeadLetters};
pub use delivery::Delivery;
pub use error::{Error, Result};
pub use format::FORMAT_VERSION;
pub use inspector::{Inspector, Listing, RawItem, Snapshot, Verification};
pub use options::{DEFAULT_CHUNK_SIZE, Durability, Options};
pub use pause::{pause, resume};
pub use queue::Queue;
pub use recovery::Recovery;
#[cfg(feature = "__testing")]
pub use repair::repair_on;
pub use repair::{AckState, DamagedRange, MovedFile, RepairReport, repair};
pub use stats::Stats;
