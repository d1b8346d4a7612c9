//! The header at the start of every chunk file. FORMAT.md §Chunk files.

use super::{DecodeError, FORMAT_VERSION, check_fixed, u64_at};

const MAGIC: &[u8; 4] = b"dqck";
/// Length of a chunk header; the first record starts at this offset.
pub(crate) const CHUNK_HEADER_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    /// The chunk's number, as in its file name `qNNNNN`.
    pub(crate) chunk: u64,
    /// Sequence number of the chunk's first record.
    pub(crate) first_seq: u64,
}

impl ChunkHeader {
    pub(crate) fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.chunk.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<ChunkHeader, DecodeError> {
        check_fixed(b, CHUNK_HEADER_LEN, MAGIC)?;
        Ok(ChunkHeader {
            chunk: u64_at(b, 8),
            first_seq: u64_at(b, 16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let h = ChunkHeader {
            chunk: 7,
            first_seq: 7000,
        };
        let b = h.encode();
        assert_eq!(ChunkHeader::decode(&b), Ok(h));
        for i in 0..b.len() * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(
                ChunkHeader::decode(&c).is_err(),
                "bit {i} flipped went unnoticed"
            );
        }
    }
}
