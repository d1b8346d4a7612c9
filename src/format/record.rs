//! Record frames: `len u32 | crc32 u32 | payload`. FORMAT.md §Records.

use super::u32_at;

/// Bytes before the payload: length and CRC.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Largest payload accepted by `put` and by the decoder (1 GiB). A damaged length field
/// beyond this is reported as damage instead of being trusted for an allocation.
pub(crate) const MAX_ITEM_LEN: usize = 1 << 30;

/// Bit 31 of the length field: the *sync mark*, set on the first frame of a write made
/// at `Synced` when every byte before it in the chunk was synced (FORMAT.md §Records):
/// damage before a valid marked frame lies in synced data. Lengths stay below 2^30.
pub(crate) const SYNC_MARK: u32 = 1 << 31;

/// Why the bytes at some offset are not a complete, valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes end before the frame does (`needed` bytes in all).
    Incomplete { needed: usize },
    /// The length field exceeds [`MAX_ITEM_LEN`].
    TooLong(u32),
    /// Length and payload do not match the stored CRC.
    Checksum,
}

/// Computes frame CRCs (FORMAT.md §Records: over the length field, then the payload),
/// keeping the CRC state after the last length field it hashed: frames of one size, the
/// usual batch, then hash only their payloads (a fifth of a 72-byte frame's CRC time).
#[derive(Clone, Debug, Default)]
pub(crate) struct FrameCrc {
    after_len: Option<([u8; 4], crc32fast::Hasher)>,
}

impl FrameCrc {
    pub(crate) const fn new() -> FrameCrc {
        FrameCrc { after_len: None }
    }

    /// The CRC of a frame whose length field is `len_bytes`.
    fn crc(&mut self, len_bytes: [u8; 4], payload: &[u8]) -> u32 {
        let mut h = match &self.after_len {
            Some((l, h)) if *l == len_bytes => h.clone(),
            _ => {
                // A fresh hasher detects the CPU's features each time (2% of a batch
                // put's samples); a copy of one made once does not.
                static FRESH: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
                let mut h = FRESH.get_or_init(crc32fast::Hasher::new).clone();
                h.update(&len_bytes);
                self.after_len = Some((len_bytes, h.clone()));
                h
            }
        };
        h.update(payload);
        h.finalize()
    }

    /// Fills in the length and CRC of a frame whose payload was written in place after
    /// [`FRAME_HEADER_LEN`] reserved bytes, so that an item is serialized straight into
    /// its frame without a copy. The caller has checked the payload against
    /// [`MAX_ITEM_LEN`].
    pub(crate) fn seal(&mut self, frame: &mut [u8]) {
        let payload_len = frame.len() - FRAME_HEADER_LEN;
        debug_assert!(payload_len <= MAX_ITEM_LEN);
        let len = (payload_len as u32).to_le_bytes();
        frame[0..4].copy_from_slice(&len);
        let crc = self.crc(len, &frame[FRAME_HEADER_LEN..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    /// [`decode_frame`], with this CRC state.
    pub(crate) fn decode<'b>(&mut self, b: &'b [u8]) -> Result<(&'b [u8], usize), FrameError> {
        if b.len() < FRAME_HEADER_LEN {
            return Err(FrameError::Incomplete {
                needed: FRAME_HEADER_LEN,
            });
        }
        let field = u32_at(b, 0);
        let len = field & !SYNC_MARK;
        if len as usize > MAX_ITEM_LEN {
            return Err(FrameError::TooLong(field));
        }
        let total = FRAME_HEADER_LEN + len as usize;
        if b.len() < total {
            return Err(FrameError::Incomplete { needed: total });
        }
        let payload = &b[FRAME_HEADER_LEN..total];
        if u32_at(b, 4) != self.crc(field.to_le_bytes(), payload) {
            return Err(FrameError::Checksum);
        }
        Ok((payload, total))
    }
}

/// Appends a frame holding `payload` to `out`.
pub(crate) fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_frame(&mut out[start..]);
}

/// Fills in the length and CRC of a frame whose payload was written in place after
/// [`FRAME_HEADER_LEN`] reserved bytes ([`FrameCrc::seal`], without a kept state).
pub(crate) fn seal_frame(frame: &mut [u8]) {
    FrameCrc::new().seal(frame);
}

/// A copy of the sealed frame `frame` with the sync mark set, and its CRC to match.
#[cfg(any(test, feature = "__testing"))]
pub(crate) fn marked(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    mark(&mut f);
    f
}

/// Sets the sync mark of the sealed frame `frame`, and its CRC to match.
pub(crate) fn mark(frame: &mut [u8]) {
    let field = u32_at(frame, 0) | SYNC_MARK;
    frame[0..4].copy_from_slice(&field.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[0..4]);
    h.update(&frame[FRAME_HEADER_LEN..]);
    let crc = h.finalize();
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Whether the valid frame at the start of `b` carries the sync mark.
pub(crate) fn is_marked(b: &[u8]) -> bool {
    b.len() >= 4 && u32_at(b, 0) & SYNC_MARK != 0
}

/// Decodes the frame at the start of `b`: its payload and the frame's total length.
pub(crate) fn decode_frame(b: &[u8]) -> Result<(&[u8], usize), FrameError> {
    FrameCrc::new().decode(b)
}

/// The first offset at or after `from` where a valid frame starts. Runs of zero bytes
/// are passed over quickly: a frame header is never all zero (its checksum covers the
/// length, and the checksum of four zero bytes is not zero), so no frame starts more
/// than seven bytes before a nonzero byte.
pub(crate) fn find_frame(b: &[u8], mut from: usize) -> Option<usize> {
    let mut crc = FrameCrc::new();
    while from < b.len() {
        let nonzero = from + b[from..].iter().position(|&x| x != 0)?;
        from = from.max(nonzero.saturating_sub(FRAME_HEADER_LEN - 1));
        if crc.decode(&b[from..]).is_ok() {
            return Some(from);
        }
        from += 1;
    }
    None
}

/// True when every byte is zero: space an appending writer reserved after its last
/// record (FORMAT.md §Preallocation), which is the end of the records.
pub(crate) fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_prefix_is_incomplete() {
        let mut b = Vec::new();
        frame_into(&mut b, b"hello");
        frame_into(&mut b, b"");
        let (p, n) = decode_frame(&b).unwrap();
        assert_eq!((p, n), (&b"hello"[..], 13));
        let (p, n2) = decode_frame(&b[n..]).unwrap();
        assert_eq!((p, n2), (&b""[..], 8));
        for cut in 0..13 {
            assert!(matches!(
                decode_frame(&b[..cut]),
                Err(FrameError::Incomplete { .. })
            ));
        }
    }

    /// One `FrameCrc` carried across frames of changing and repeated lengths seals and
    /// checks each as a fresh one would: the CRC of the length field and the payload.
    #[test]
    fn a_kept_crc_state_gives_every_frame_its_own_crc() {
        let mut kept = FrameCrc::new();
        let mut checker = FrameCrc::new();
        for (i, len) in [3usize, 3, 5, 3, 0, 0, 72, 72, 70_000, 72]
            .into_iter()
            .enumerate()
        {
            let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            let mut f = vec![0u8; FRAME_HEADER_LEN + len];
            f[FRAME_HEADER_LEN..].copy_from_slice(&payload);
            kept.seal(&mut f);
            let mut whole = (len as u32).to_le_bytes().to_vec();
            whole.extend_from_slice(&payload);
            assert_eq!(u32_at(&f, 4), crc32fast::hash(&whole), "frame {i}");
            assert_eq!(decode_frame(&f), Ok((&payload[..], f.len())), "frame {i}");
            assert_eq!(checker.decode(&f), Ok((&payload[..], f.len())), "frame {i}");
            // A damaged payload of the same length is caught by the kept state too.
            if len > 0 {
                f[FRAME_HEADER_LEN] ^= 1;
                assert_eq!(checker.decode(&f), Err(FrameError::Checksum), "frame {i}");
            }
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut b = Vec::new();
        frame_into(&mut b, b"payload bytes");
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode_frame(&c).is_err(), "bit {i}");
        }
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert_eq!(decode_frame(&[0u8; 64]), Err(FrameError::Checksum));
    }

    #[test]
    fn find_frame_skips_zeros_and_garbage() {
        let mut b = vec![0u8; 100];
        b.extend_from_slice(&[7, 0, 0]);
        let at = b.len();
        frame_into(&mut b, b"x");
        frame_into(&mut b, b"");
        assert_eq!(find_frame(&b, 0), Some(at));
        assert_eq!(find_frame(&b, at + 1), Some(at + 9));
        assert_eq!(find_frame(&b, at + 10), None);
        assert_eq!(find_frame(&[0u8; 4096], 0), None);
        assert!(all_zero(&[0; 9]) && !all_zero(&[0, 1]));
    }

    #[test]
    fn a_marked_frame_decodes_to_the_same_payload() {
        let mut b = Vec::new();
        frame_into(&mut b, b"synced before");
        let m = marked(&b);
        assert!(is_marked(&m) && !is_marked(&b));
        assert_eq!(decode_frame(&m), Ok((&b"synced before"[..], b.len())));
        for i in 0..m.len() * 8 {
            let mut c = m.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode_frame(&c).is_err(), "bit {i}");
        }
    }

    #[test]
    fn huge_length_is_rejected_before_anything_else() {
        let b = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_eq!(decode_frame(&b), Err(FrameError::TooLong(u32::MAX)));
    }
}
