//! Pure byte encoding and decoding of every on-disk structure. No I/O, no panics:
//! decoders take `&[u8]` and return `Result`, and a length is checked against the bytes
//! that are there before anything is allocated. FORMAT.md is the specification.

mod ack;
mod chunk;
mod info;
mod record;
pub(crate) mod schema;

pub(crate) use ack::{ACK_ENTRY_LEN, AckEntry, Unit};
pub(crate) use chunk::{CHUNK_HEADER_LEN, ChunkHeader};
#[cfg(any(test, feature = "__testing"))]
pub(crate) use info::INFO_MIN_LEN;
pub(crate) use info::{INFO_HEADER_LEN, Info, Read as InfoRead, WorkState, lost_first_sector};
pub(crate) use record::frame_into;
pub(crate) use record::{
    FRAME_HEADER_LEN, FrameCrc, FrameError, MAX_ITEM_LEN, all_zero, decode_frame, find_frame,
    is_marked, mark,
};
#[cfg(any(test, feature = "__testing"))]
pub(crate) use record::{marked, seal_frame};

/// Sequence numbers at or above this are refused as damage: diskq would need centuries to
/// put this many items, and the headroom keeps every `seq + count` from overflowing.
pub(crate) const MAX_SEQ: u64 = 1 << 62;

/// The on-disk format version written by this build. FORMAT.md §Version history.
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format version this build reads (its files differ only in `info`).
pub(crate) const OLDEST_READABLE_VERSION: u32 = 1;

fn readable(version: u32) -> bool {
    (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version)
}

/// Why a fixed-size structure did not decode. Callers add the file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer (or more) bytes than the structure's fixed length.
    Length { expected: usize, found: usize },
    /// The magic bytes are not ours: not a diskq file.
    Magic,
    /// The CRC stored in the structure does not match its bytes.
    Checksum { stored: u32, computed: u32 },
    /// Written by a format version this build does not read.
    Version(u32),
    /// Flag bits this build does not know (`info`, version 4 on).
    Flags(u32),
    /// A reserved field that is not zero (`info`, version 5).
    Reserved(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Length { expected, found } => {
                write!(f, "expected {expected} bytes, found {found}")
            }
            DecodeError::Magic => f.write_str("magic bytes do not match: not a diskq file"),
            DecodeError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            DecodeError::Version(v) => write!(
                f,
                "format version {v} is not supported by this build (it reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
            ),
            DecodeError::Flags(flags) => write!(
                f,
                "unknown flags {flags:#x}: written by a newer build, or damaged"
            ),
            DecodeError::Reserved(v) => write!(
                f,
                "reserved field holds {v:#x}, not zero: written by a newer build, or damaged"
            ),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the magic and the trailing CRC-32 (over every byte before it) of a structure of
/// variable length, at least `min` bytes long; `expected` is the length an error names.
fn check_magic_and_crc(
    b: &[u8],
    min: usize,
    expected: usize,
    magic: &[u8],
) -> Result<(), DecodeError> {
    if b.len() < min {
        return Err(DecodeError::Length {
            expected,
            found: b.len(),
        });
    }
    if &b[..magic.len()] != magic {
        return Err(DecodeError::Magic);
    }
    let stored = u32_at(b, b.len() - 4);
    let computed = crc32fast::hash(&b[..b.len() - 4]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(())
}

/// Checks length, magic, version and the trailing CRC of a fixed-size structure whose
/// last four bytes are a CRC-32 over all the bytes before them.
fn check_fixed(b: &[u8], len: usize, magic: &[u8]) -> Result<(), DecodeError> {
    if b.len() != len {
        return Err(DecodeError::Length {
            expected: len,
            found: b.len(),
        });
    }
    if &b[..magic.len()] != magic {
        return Err(DecodeError::Magic);
    }
    let stored = u32_at(b, len - 4);
    let computed = crc32fast::hash(&b[..len - 4]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let version = u32_at(b, magic.len());
    if !readable(version) {
        return Err(DecodeError::Version(version));
    }
    Ok(())
}
