//! The queue's one error type.

use std::io;
use std::path::PathBuf;

/// Everything a [`Queue`](crate::Queue) operation can fail with.
///
/// Messages are lowercase, say what happened and where, and what to do. The variants that
/// carry an underlying cause expose it through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `get_nowait` found no item waiting.
    #[error("the queue is empty")]
    Empty,
    /// `put_nowait` found the queue holding `max_size` items.
    #[error("the queue is full (it holds max_size items); get an item or wait")]
    Full,
    /// A `*_timeout` or `*_deadline` operation ran out of time.
    #[error("timed out waiting on the queue")]
    Timeout,
    /// The directory is open in another `Queue`, in this process or another one.
    #[error(
        "queue directory {} is locked by another open Queue (in this process or another); close that one first",
        .path.display()
    )]
    Locked {
        /// The queue directory.
        path: PathBuf,
    },
    /// The device holding the queue is full (or the user's disk quota is used up). The
    /// queue is not damaged and not poisoned: what was stored before stays, gets and
    /// acknowledgements go on, and a put that failed with this did not store its item.
    #[error(
        "no space left to {op} {}: {source}. Nothing stored was lost and the queue goes \
         on; a put that failed with this did not store its item. Free space (get and \
         acknowledge items, or delete other files on the device), then put again",
        .path.display()
    )]
    NoSpace {
        /// What diskq was doing, e.g. `"append to"`.
        op: &'static str,
        /// The file it was writing.
        path: PathBuf,
        /// The underlying error (`ENOSPC` or `EDQUOT`).
        #[source]
        source: io::Error,
    },
    /// An acknowledgement took effect, but the disk had no room to record it, even after
    /// the queue gave up the room it keeps back for acknowledgements. Unlike
    /// [`Error::NoSpace`] this is not to be retried: the item counts as acknowledged
    /// while the queue is open, and the next acknowledgement, `flush` or `close` that
    /// finds room records it; a crash before then delivers the item again.
    #[error(
        "the acknowledgement took effect but is not recorded on disk: no space left to {op} \
         {}: {source}. Do not acknowledge the item again: the next acknowledgement, flush \
         or close that finds room records it (a crash before then delivers it again). Free \
         space on the device",
        .path.display()
    )]
    AckNotDurable {
        /// What diskq was doing, e.g. `"append to"`.
        op: &'static str,
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `put_many` stored its first `stored` items, then found the disk full: the rest
    /// were not stored.
    #[error("put_many stored its first {stored} items, then: {source}; put the rest again")]
    PartlyStored {
        /// How many of the items, from the first, are in the queue.
        stored: usize,
        /// Why the rest are not ([`Error::NoSpace`]).
        #[source]
        source: Box<Error>,
    },
    /// The queue's directory was deleted while the queue was open. The queue writes only
    /// into the directory it opened, never into one created at the same path since.
    #[error(
        "queue directory {} was deleted while the queue was open: items put since then \
         went with it, and nothing more can be stored there. Drop this Queue and open a \
         queue again (a new one if the directory is gone)",
        .path.display()
    )]
    DirectoryDeleted {
        /// The path the directory had when the queue was opened.
        path: PathBuf,
    },
    /// An operating-system call failed.
    #[error("i/o error: could not {op} {}: {source}", .path.display())]
    Io {
        /// What diskq was doing, e.g. `"append to"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A queue file holds bytes that are not what diskq wrote there.
    #[error(
        "queue file {} is corrupt at offset {offset}: {detail}; no item was returned from there. \
         Restore the queue directory from a backup, or run diskq::repair on it to salvage \
         the intact records (it moves the damaged files aside)",
        .path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The directory has queue files but no `info` checkpoint.
    #[error(
        "queue directory {} has queue files but no info file: it was not created by diskq, or \
         info was deleted (or a repair was interrupted). Nothing was changed; restore info \
         from a backup, or run diskq::repair on the directory to salvage its records",
        .path.display()
    )]
    MissingInfo {
        /// The queue directory.
        path: PathBuf,
    },
    /// The path given to a tool that looks at an existing queue ([`Inspector`],
    /// [`pause`], [`resume`]) is not a queue directory: it does not exist, is not a
    /// directory, or holds neither `info` nor a chunk file. (`Queue::open` creates a
    /// queue there instead.)
    ///
    /// [`Inspector`]: crate::Inspector
    /// [`pause`]: crate::pause
    /// [`resume`]: crate::resume
    #[error(
        "{} is not a diskq queue directory: {reason}. Nothing was changed; check the path \
         (a queue directory holds an info file and chunk files q00000, q00001, ...)",
        .path.display()
    )]
    NotAQueue {
        /// The path given.
        path: PathBuf,
        /// Why not: "it does not exist", "it is not a directory", or "it holds neither an
        /// info file nor a chunk file".
        reason: &'static str,
    },
    /// A read-only look at a queue another process writes ([`Inspector`]) found the files
    /// changed under each of its reads (appends, checkpoints), so nothing it found could
    /// be told from a change seen half-way. Not damage: the queue is busy; try again.
    ///
    /// [`Inspector`]: crate::Inspector
    #[error(
        "queue directory {} changed under each of {reads} reads (the process that has it \
         open appends or checkpoints faster than it can be read): nothing found could be \
         confirmed, which is not damage. Try again, or when the queue is quieter",
        .path.display()
    )]
    Busy {
        /// The queue directory.
        path: PathBuf,
        /// How many times it was read.
        reads: usize,
    },
    /// The queue was created for another item type (or `Options::schema` tag).
    #[error(
        "queue directory {} holds items of type {stored:?}, not {requested:?}: open it with \
         the type (or Options::schema tag) it was created with. If it is the same type under \
         a new name (a renamed module or crate), open with Options::schema({stored:?}). To \
         change the item type, drain the queue first, then delete its schema file (the next \
         open records the new type)",
        .path.display()
    )]
    TypeMismatch {
        /// The queue directory.
        path: PathBuf,
        /// The type name or tag the queue was created with.
        stored: Box<str>,
        /// The type name or tag this open asked for.
        requested: Box<str>,
    },
    /// A stored item does not deserialize as the queue's item type.
    #[error(
        "item {seq} in {} at offset {offset} does not deserialize as this queue's item type: \
         {source}; open the queue with the type it was written with",
        .path.display()
    )]
    Decode {
        /// The item's sequence number (its position in the queue's history).
        seq: u64,
        /// The chunk file holding the item.
        path: PathBuf,
        /// Offset of the item's record in that file.
        offset: u64,
        /// What bincode reported.
        #[source]
        source: bincode::Error,
    },
    /// An item could not be serialized.
    #[error("could not serialize the item: {0}")]
    Encode(#[source] bincode::Error),
    /// An item serializes to more bytes than a record holds.
    #[error("the item serializes to {len} bytes, more than the {max} bytes a record holds")]
    TooLarge {
        /// Serialized length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `task_done` was called more times than items were gotten.
    #[error(
        "task_done called more times than items were gotten; call it once for each item returned by get"
    )]
    NothingToAcknowledge,
    /// A [`Delivery`](crate::Delivery) was acknowledged that already was (by `task_done`
    /// or an earlier `ack`).
    #[error(
        "item {seq} is already acknowledged (by task_done or an earlier ack); nothing was changed"
    )]
    AlreadyAcknowledged {
        /// The item's sequence number.
        seq: u64,
    },
    /// A delivery's lease ran out before its `ack`, `nack`, `dead_letter` or
    /// `extend_lease`: the item was given back to the queue (and may have been delivered
    /// to another consumer), so this holder's call changed nothing.
    #[error(
        "the lease of item {seq} ran out, so it was given back to the queue for another delivery;          this call changed nothing (extend_lease before the lease runs out to keep an item longer)"
    )]
    LeaseExpired {
        /// The item's sequence number.
        seq: u64,
    },
    /// An earlier write or sync failed, so the state on disk is uncertain.
    #[error(
        "an earlier write or sync to the queue failed, so what is on disk is uncertain; \
         drop this Queue and open the directory again to recover"
    )]
    Poisoned,
}

impl Error {
    /// True for [`Error::LeaseExpired`].
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new()
    ///     .lease(Duration::from_millis(10))
    ///     .open(dir.path())?;
    /// q.put(&1)?;
    /// let d = q.get_delivery()?;
    /// std::thread::sleep(Duration::from_millis(30));
    /// let err = d.ack().unwrap_err();
    /// assert!(err.is_lease_expired());
    /// assert!(err.to_string().contains("lease of item 0 ran out"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_lease_expired(&self) -> bool {
        matches!(self, Error::LeaseExpired { .. })
    }
    /// True for [`Error::Empty`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(q.get_nowait().unwrap_err().is_empty());
    /// q.put(&1)?;
    /// assert_eq!(q.get_nowait()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, Error::Empty)
    }
    /// True for [`Error::Full`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Options::new().max_size(1).open(dir.path())?;
    /// q.put_nowait(&1)?;
    /// let e = q.put_nowait(&2).unwrap_err();
    /// assert!(e.is_full() && !e.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Full)
    }
    /// True for [`Error::Timeout`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// let e = q.get_timeout(std::time::Duration::from_millis(1)).unwrap_err();
    /// assert!(e.is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
    /// True for [`Error::Locked`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// let e = diskq::Queue::<u32>::open(dir.path()).unwrap_err();
    /// assert!(e.is_locked());
    /// drop(q);
    /// diskq::Queue::<u32>::open(dir.path())?; // free again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }
    /// True for [`Error::NoSpace`]: the disk is full; free space and try again.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// assert!(!q.put(&1).map_err(|e| e.is_no_space()).is_err()); // room here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
    /// True for [`Error::TypeMismatch`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// let e = diskq::Queue::<String>::open(dir.path()).unwrap_err();
    /// assert!(e.is_type_mismatch());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_type_mismatch(&self) -> bool {
        matches!(self, Error::TypeMismatch { .. })
    }
    /// True for damage found on disk ([`Error::Corrupt`] or [`Error::MissingInfo`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let q: diskq::Queue<u32> = diskq::Queue::open(dir.path())?;
    /// q.put(&1)?;
    /// drop(q);
    /// std::fs::write(dir.path().join("info"), b"not an info file")?;
    /// assert!(diskq::Queue::<u32>::open(dir.path()).unwrap_err().is_corrupt());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::MissingInfo { .. })
    }

    /// True for [`Error::Busy`]: the queue changed under every read of an
    /// [`Inspector`](crate::Inspector); try again.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// drop(diskq::Queue::<u32>::open(dir.path())?);
    /// // Nothing changes the files here: every read agrees.
    /// let v = diskq::Inspector::open(dir.path())?.verify().map_err(|e| e.is_busy());
    /// assert!(v.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The error of a write that allocates space (an append, a new file): a full device
    /// is [`Error::NoSpace`], which leaves the queue usable. Not for syncs: a failed sync
    /// leaves what is on disk unknown, whatever its cause.
    pub(crate) fn write(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        if is_no_space(&source) {
            Error::NoSpace {
                op,
                path: path.into(),
                source,
            }
        } else {
            Error::io(op, path, source)
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `ENOSPC` or `EDQUOT`: the write needed blocks the file system would not give.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
