//! Helpers shared by the integration tests (each test file includes this module).
#![allow(dead_code, reason = "each test file uses only some of these helpers")]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Tiny deterministic PRNG (xorshift64*), so that no `rand` dependency is needed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every regular file of `dir` (not subdirectories, not `.lock`) with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file() && e.file_name() != ".lock")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Queue files built by hand (FORMAT.md), for regression tests of crafted directories.
pub mod hand_built {
    use diskq::storage::SimStorage;
    use std::path::Path;

    pub const DIR: &str = "/regression/q";

    /// `info` (FORMAT.md §info): acked 0, tail_chunk 0, no single acknowledgements.
    pub fn info() -> Vec<u8> {
        let mut b = b"diskqinf".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// A chunk file (FORMAT.md §Chunk files) holding one-byte `Vec<u8>` items.
    pub fn chunk(no: u64, first_seq: u64, items: &[u8]) -> Vec<u8> {
        let mut b = b"dqck".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&no.to_le_bytes());
        b.extend_from_slice(&first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        for &item in items {
            let payload = [1, 0, 0, 0, 0, 0, 0, 0, item]; // bincode of vec![item]
            let len = (payload.len() as u32).to_le_bytes();
            let mut h = crc32fast::Hasher::new();
            h.update(&len);
            h.update(&payload);
            b.extend_from_slice(&len);
            b.extend_from_slice(&h.finalize().to_le_bytes());
            b.extend_from_slice(&payload);
        }
        b
    }

    pub fn storage(chunks: &[Vec<u8>]) -> SimStorage {
        let st = SimStorage::new();
        let dir = Path::new(DIR);
        st.put_file(&dir.join("info"), &info());
        for (no, c) in chunks.iter().enumerate() {
            st.put_file(&dir.join(format!("q{no:05}")), c);
        }
        st
    }
}
