//! The `schema` file: the item type a queue was created for. FORMAT.md §schema.

use super::{DecodeError, check_magic_and_crc, u32_at};

const MAGIC: &[u8; 8] = b"diskqsch";
/// The layout version of the `schema` file.
const SCHEMA_VERSION: u32 = 1;
/// Magic, version, length, then the tag, then the CRC.
const FIXED_LEN: usize = 8 + 4 + 4 + 4;
/// The longest tag stored; a longer length field is damage, refused before allocating.
pub(crate) const MAX_TAG_LEN: usize = 4096;

/// Encodes the item type's tag.
pub(crate) fn encode(tag: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(FIXED_LEN + tag.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    b.extend_from_slice(&(tag.len() as u32).to_le_bytes());
    b.extend_from_slice(tag.as_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a `schema` file: the tag it records.
pub(crate) fn decode(b: &[u8]) -> Result<String, DecodeError> {
    check_magic_and_crc(b, FIXED_LEN, FIXED_LEN, MAGIC)?;
    let version = u32_at(b, 8);
    if version != SCHEMA_VERSION {
        return Err(DecodeError::Version(version));
    }
    let len = u32_at(b, 12) as usize;
    if len > MAX_TAG_LEN || b.len() != FIXED_LEN + len {
        return Err(DecodeError::Length {
            expected: FIXED_LEN + len.min(MAX_TAG_LEN),
            found: b.len(),
        });
    }
    String::from_utf8(b[16..16 + len].to_vec()).map_err(|_| DecodeError::Magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        for tag in ["", "u64", "jobs/v1", "alloc::vec::Vec<(u32, u32)>"] {
            let b = encode(tag);
            assert_eq!(decode(&b).as_deref(), Ok(tag));
            for i in 0..b.len() * 8 {
                let mut c = b.clone();
                c[i / 8] ^= 1 << (i % 8);
                assert!(decode(&c).is_err(), "{tag}: bit {i}");
            }
            assert!(decode(&b[..b.len() - 1]).is_err());
        }
    }

    #[test]
    fn a_huge_length_is_refused() {
        let mut b = encode("x");
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::Length { .. })));
    }
}
