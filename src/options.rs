//! Settings for opening a queue, and the defaults: a leaf module (but for the `Clock`
//! trait), which the engine, recovery and the queue read and which depends on none of
//! them (`Options::open` is in `queue.rs`).

use crate::clock::Clock;
use std::sync::Arc;
use std::time::Duration;

/// Default number of records per chunk file.
pub const DEFAULT_CHUNK_SIZE: usize = 100_000;

/// The journal is folded into `info` (a checkpoint) once it reaches this size, which
/// bounds what recovery reads (while the disk is full, `reserve::SHORT_JOURNAL`). Each
/// checkpoint replaces `info` by a rename and empties the journal, 0.2-0.3 ms here; at
/// 24 journal bytes per item (delivery and acknowledgement) this limit takes one every
/// 87,000 items (BENCHMARKS.md, "The journal's size").
pub(crate) const JOURNAL_LIMIT: u64 = 2 << 20;

/// Chunk files larger than this are not started: the writer moves to a new chunk before
/// a record that would take the current one past it (FORMAT.md §Chunks). It bounds the
/// acknowledged bytes a chunk keeps on disk when items are large.
pub(crate) const CHUNK_BYTES: u64 = 64 << 20;

/// How far an operation's effect has travelled when it returns. See the table in the
/// crate docs for what each level survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Puts and acknowledgements collect in memory and are written in batches (64 KiB of
    /// items, or 4096 acknowledgements), and by [`Queue::flush`](crate::Queue::flush), [`Queue::close`](crate::Queue::close) and drop.
    /// Fastest; a crash loses what was not yet written.
    Buffered,
    /// Each `put` and `task_done` is handed to the operating system before it returns:
    /// its bytes are in the kernel's page cache, copied into a shared mapping of the
    /// file's reserved tail (no syscall) or written with `pwrite`. Survives `kill -9` and
    /// panics; not a power loss or kernel crash.
    #[default]
    Written,
    /// Each `put` and `task_done` is on stable storage (`fdatasync`, and the directory
    /// after files are created or renamed) before it returns. Survives power loss.
    Synced,
}

/// Builder for [`Queue`](crate::Queue): chunk size, bound and durability.
///
/// ```
/// use diskq::{Durability, Options, Queue};
/// # let dir = tempfile::tempdir()?;
/// let q: Queue<String> = Options::new()
///     .chunk_size(1000)
///     .max_size(10_000)
///     .durability(Durability::Synced)
///     .open(dir.path())?;
/// q.put(&"hello".to_string())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) chunk_size: usize,
    pub(crate) max_size: usize,
    pub(crate) max_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) journal_limit: u64,
    pub(crate) chunk_bytes: u64,
    pub(crate) schema: Option<String>,
    pub(crate) max_deliveries: Option<u32>,
    pub(crate) lease: Option<Duration>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Defaults: chunk size [`DEFAULT_CHUNK_SIZE`], no bound, [`Durability::Written`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().open(dir.path())?;
    /// q.put(&1)?;
    /// assert_eq!(q.get()?, 1);
    /// // Defaults or not, a directory has one owner at a time:
    /// assert!(diskq::Options::new().open::<u32>(dir.path()).unwrap_err().is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Options {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_size: 0,
            max_bytes: 0,
            durability: Durability::Written,
            journal_limit: JOURNAL_LIMIT,
            chunk_bytes: CHUNK_BYTES,
            schema: None,
            max_deliveries: None,
            lease: None,
            clock: None,
        }
    }

    /// Records per chunk file (at least 1; 0 is taken as 1). A chunk file is deleted once
    /// all its items are acknowledged, so this is the granularity of reclaimed disk space.
    /// A chunk also ends before 64 MiB (unless its first record alone is larger), so large
    /// items do not make huge files.
    ///
    /// The default, [`DEFAULT_CHUNK_SIZE`], makes chunks of 8 MB with 64-byte `Vec<u8>`
    /// items (80-byte records). Smaller chunks create files more often, which costs
    /// 0.1–0.7 ms each on this project's benchmark machine (ext4 without a journal).
    ///
    /// The value is not stored on disk: on reopen it applies from the next put, and the
    /// chunk being written is closed once it holds this many records.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().chunk_size(2).open(dir.path())?;
    /// q.put_many(&[1, 2, 3])?; // two chunk files: q00000 (1, 2) and q00001 (3)
    /// assert!(dir.path().join("q00001").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn chunk_size(mut self, n: usize) -> Options {
        self.chunk_size = n.max(1);
        self
    }

    /// Bounds [`Queue::len`](crate::Queue::len) (items waiting to be gotten): `put` blocks and `put_nowait`
    /// fails with [`Error::Full`](crate::Error::Full) while the queue holds this many.
    /// 0 (the default) means unbounded, as in Python. Items already on disk beyond the
    /// bound at open stay; puts wait until gets bring the length under it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(1).open(dir.path())?;
    /// q.put(&1)?;
    /// assert!(q.put_nowait(&2).unwrap_err().is_full());
    /// q.get()?;
    /// q.put_nowait(&2)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_size(mut self, n: usize) -> Options {
        self.max_size = n;
        self
    }

    /// Bounds the bytes of the items waiting to be gotten, as [`max_size`](Self::max_size)
    /// bounds their number: `put` blocks and `put_nowait` fails with
    /// [`Error::Full`](crate::Error::Full) while the item would take the waiting bytes past
    /// `n`, so that, say, a log shipper's buffer never grows past a set size on disk. An
    /// item counts its serialized length plus an 8-byte record header (what it takes in
    /// a chunk file); an item larger than `n` is taken when nothing waits. 0 (the
    /// default) means unbounded; both bounds may be set, and each applies.
    ///
    /// Gets free the room at once; the disk space itself goes when the items are
    /// acknowledged. Items already on disk at open count (the waiting part of each chunk
    /// file, found from the files' sizes, one `stat` each); beyond the bound, they stay,
    /// and puts wait until gets bring the bytes under it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<Vec<u8>> = diskq::Options::new().max_bytes(10_000).open(dir.path())?;
    /// q.put(&vec![0; 6_000])?;
    /// assert!(q.put_nowait(&vec![0; 6_000]).unwrap_err().is_full());
    /// q.get()?;
    /// q.put_nowait(&vec![0; 6_000])?; // room again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_bytes(mut self, n: u64) -> Options {
        self.max_bytes = n;
        self
    }

    /// Whether `max_size` or `max_bytes` bounds the queue.
    pub(crate) fn bounded(&self) -> bool {
        self.max_size > 0 || self.max_bytes > 0
    }

    /// The durability level; [`Durability::Written`] by default.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use diskq::{Durability, Options, Queue};
    /// let q: Queue<u32> = Options::new().durability(Durability::Synced).open(dir.path())?;
    /// q.put(&1)?; // synced before it returns
    /// drop(q);
    /// let q: Queue<u32> = Options::new().durability(Durability::Synced).open(dir.path())?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durability(mut self, d: Durability) -> Options {
        self.durability = d;
        self
    }

    /// The tag recorded as the queue's item type when it is created, instead of
    /// [`std::any::type_name`] of the item type (the default). Opening a queue with
    /// another tag (or, without one, another type) fails with
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) instead of returning wrong
    /// items. A tag is recommended for long-lived queues: a type's name changes when a
    /// module is renamed, and is not guaranteed stable across compiler versions. Change
    /// the tag when the item's serialized form changes. Longer than 4,096 bytes: cut
    /// there.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use diskq::{Options, Queue};
    /// let q: Queue<(u64, String)> = Options::new().schema("jobs/v1").open(dir.path())?;
    /// q.put(&(1, "resize".to_string()))?;
    /// drop(q);
    /// let err = Options::new().schema("jobs/v2").open::<(u64, String)>(dir.path()).unwrap_err();
    /// assert!(err.is_type_mismatch());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schema(mut self, tag: impl Into<String>) -> Options {
        let mut tag: String = tag.into();
        if tag.len() > crate::format::schema::MAX_TAG_LEN {
            let mut end = crate::format::schema::MAX_TAG_LEN;
            while !tag.is_char_boundary(end) {
                end -= 1;
            }
            tag.truncate(end);
        }
        self.schema = Some(tag);
        self
    }

    /// How many times an item is delivered without being acknowledged before it goes to
    /// the [dead letters](crate::Queue::dead_letters): the `n`-th delivery is the last.
    /// A delivery that ends in [`nack`](crate::Delivery::nack), a lease that runs out, a
    /// dropped [`Delivery`](crate::Delivery), or a crash or kill of the process counts.
    /// Without it (the default) attempts are still counted and reported by
    /// [`Delivery::attempt`](crate::Delivery::attempt), and nothing goes to the dead
    /// letters by itself. 0 counts as 1.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_deliveries(2).open(dir.path())?;
    /// q.put(&7)?;
    /// q.get_delivery()?.nack()?; // first delivery
    /// let d = q.get_delivery()?; // second, the last
    /// assert_eq!(d.attempt(), 2);
    /// d.nack()?; // to the dead letters instead
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// assert_eq!(q.dead_letters().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_deliveries(mut self, n: u32) -> Options {
        self.max_deliveries = Some(n.max(1));
        self
    }

    /// Gives every delivery a lease of `span`: an item neither acknowledged nor given
    /// back by then is deliverable again at once (to any consumer), and its holder's
    /// later `ack`, `nack` or `dead_letter` fails with
    /// [`Error::LeaseExpired`](crate::Error::LeaseExpired) and changes nothing. A holder
    /// still at work calls [`extend_lease`](crate::Delivery::extend_lease). Without it
    /// (the default) an item is held until it is acknowledged, given back or dropped, or
    /// the process ends.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new()
    ///     .lease(Duration::from_millis(20))
    ///     .open(dir.path())?;
    /// q.put(&7)?;
    /// let d = q.get_delivery()?;
    /// std::thread::sleep(Duration::from_millis(40)); // too slow
    /// let again = q.get_delivery()?; // delivered again
    /// assert_eq!(again.attempt(), 2);
    /// assert!(d.ack().unwrap_err().is_lease_expired());
    /// again.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease(mut self, span: Duration) -> Options {
        self.lease = Some(span);
        self
    }

    /// The clock that leases and delays run on (tests drive one by hand).
    #[cfg(feature = "__testing")]
    #[doc(hidden)]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Options {
        self.clock = Some(clock);
        self
    }

    /// The journal size that triggers a checkpoint (tests use a small one to reach
    /// checkpoints quickly).
    #[cfg(feature = "__testing")]
    #[doc(hidden)]
    pub fn journal_limit(mut self, bytes: u64) -> Options {
        self.journal_limit = bytes.max(1);
        self
    }

    /// The chunk size in bytes past which the writer starts a new chunk (tests use a
    /// small one).
    #[cfg(feature = "__testing")]
    #[doc(hidden)]
    pub fn chunk_bytes(mut self, bytes: u64) -> Options {
        self.chunk_bytes = bytes.max(1);
        self
    }
}
