//! Bodies of the cargo-fuzz targets in `fuzz/`, as plain functions so that a stable
//! `#[test]` replays the checked-in corpus through exactly the same code. Not public API.
//!
//! Each function accepts any bytes and returns normally unless it catches the library
//! breaking a promise, which it reports with a panic (`assert!`): a panic is a bug, in
//! the library or here.
//!
//! * [`decode`]: every pure decoder of `src/format/` on the bytes (and frames at every
//!   offset); what decodes must encode back to the same bytes. Values of serde's whole
//!   data model built from the bytes must be encoded exactly as bincode encodes them.
//! * [`open_dir`]: the bytes carved into the files of a queue directory (see
//!   [`encode_dir`]), opened, drained, written to and reopened.
//! * [`model`]: the bytes read as a program of queue operations, reopens, crash points
//!   and injected faults (see [`ModelOp`]), checked against a `VecDeque` model.

use crate::format::{
    ACK_ENTRY_LEN, AckEntry, CHUNK_HEADER_LEN, ChunkHeader, FORMAT_VERSION, FRAME_HEADER_LEN,
    FrameError, Info, MAX_ITEM_LEN, decode_frame, is_marked, marked, seal_frame,
};
use crate::reader::{chunk_path, parse_chunk_name};
use crate::storage::{Crash, Fault, Op, SimStorage};
use crate::{Durability, Error, Options, Queue};
use bincode::Options as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

/// The queue directory inside the simulated file system.
const DIR: &str = "/fuzz/q";

/// Length of an `info` file with no single acknowledgements (FORMAT.md §info).
const INFO_LEN: usize = crate::format::INFO_MIN_LEN;

/// FORMAT.md §Payload (the same configuration as the queue's, written out again here).
fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Up to eight bytes at `at`, little-endian, zero-padded past the end.
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    for (i, x) in a.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(a)
}

/// A frame (FORMAT.md §Records) holding `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_HEADER_LEN];
    f.extend_from_slice(payload);
    seal_frame(&mut f);
    f
}

// ---------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------

/// Runs every decoder of the on-disk format over `data`: `info`, chunk headers and
/// journal entries on the whole input and on every window of their length, record
/// frames at every offset, and chunk file names. Whatever decodes must encode back to
/// exactly the bytes it came from; values taken from the bytes must survive an
/// encode/decode round trip; and a frame must be caught after any single flipped bit
/// of its CRC-covered bytes.
pub fn decode(data: &[u8]) {
    let zero = Info::new(0, 0);
    assert_eq!(zero.encode().len(), INFO_LEN);
    check_info(data);
    check_header(data);
    check_ack(data);
    for w in data.windows(INFO_LEN) {
        check_info(w);
    }
    for w in data.windows(CHUNK_HEADER_LEN) {
        check_header(w);
    }
    for w in data.windows(ACK_ENTRY_LEN) {
        check_ack(w);
    }
    for at in 0..=data.len() {
        check_frame(&data[at..]);
    }

    // The journal as recovery reads it: 12-byte entries from the start.
    for e in data.chunks(ACK_ENTRY_LEN) {
        check_ack(e);
    }

    // Values from the bytes, encoded, decode back.
    let (a, b) = (le64(data, 0), le64(data, 8));
    let info = Info {
        acked: a,
        tail_chunk: b,
        tail_end: b,
        tail_count: a,
        tail_last_len: a as u32,
        head_chunk: Some(b ^ 1),
        boot_id: Some(u128::from(a) << 64 | u128::from(b)),
        all_synced: a & 1 == 1,
        singles: vec![a ^ b],
        work: crate::format::WorkState {
            delivered: a,
            attempts: vec![(b, a as u32)],
            delays: vec![(a, b)],
            marks: vec![(b, a)],
        },
        unsynced: b & 1 == 1,
    };
    assert_eq!(Info::decode(&info.encode()), Ok(info.clone()));
    let v2 = Info {
        head_chunk: None,
        boot_id: None,
        all_synced: false,
        work: crate::format::WorkState::default(),
        unsynced: false,
        ..info
    };
    assert_eq!(Info::decode(&v2.encode_as(2)), Ok(v2));
    let header = ChunkHeader {
        chunk: a,
        first_seq: b,
    };
    assert_eq!(ChunkHeader::decode(&header.encode()), Ok(header));
    // Values below 2^62 (`MAX_SEQ`), as every writer's; bit 62 is the sync mark.
    for entry in [AckEntry::Head(a >> 2), AckEntry::Single(b >> 2)] {
        for mark in [false, true] {
            let e = entry.encode_marked(mark);
            assert_eq!(AckEntry::decode_marked(&e), Some((entry, mark)));
        }
    }

    // A frame of (a prefix of) the input decodes back, and no flipped bit of its CRC and
    // payload goes unnoticed (CRC-32 catches every single-bit error).
    let payload = &data[..data.len().min(16)];
    let mut f = frame(payload);
    assert_eq!(decode_frame(&f), Ok((payload, f.len())));
    for bit in 4 * 8..f.len() * 8 {
        f[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            decode_frame(&f),
            Err(FrameError::Checksum),
            "flipped bit {bit} of frame {f:02x?} went unnoticed"
        );
        f[bit / 8] ^= 1 << (bit % 8);
    }

    // Chunk file names: what parses is the canonical name of its number.
    if let Ok(name) = std::str::from_utf8(data) {
        check_name(name);
    }
    check_name(&format!("q{a:05}"));
    assert_eq!(parse_chunk_name(&format!("q{a:05}")), Some(a));

    check_payload_encoding(data);
    check_payload_decoding(data);
}

/// Payloads decode as bincode decodes them (`codec::decode` copies a `Vec<u8>` out whole
/// instead of asking serde for it): the bytes as they come, and framed as a `Vec<u8>`.
fn check_payload_decoding(data: &[u8]) {
    let ours = |p: &[u8]| crate::codec::decode::<Vec<u8>>(p).map_err(|e| e.to_string());
    let theirs = |p: &[u8]| {
        codec()
            .with_limit(p.len() as u64)
            .deserialize::<Vec<u8>>(p)
            .map_err(|e| e.to_string())
    };
    assert_eq!(ours(data), theirs(data));
    let framed = [&(data.len() as u64).to_le_bytes()[..], data].concat();
    assert_eq!(ours(&framed), Ok(data.to_vec()));
    assert_eq!(theirs(&framed), Ok(data.to_vec()));
}

/// diskq writes payloads with its own serializer (`codec::Frames`): a value built from
/// the bytes, through every method of serde's data model, must come out as exactly the
/// bytes bincode writes, in a frame that decodes to them; and a value bincode refuses
/// must be refused with the same error, appending nothing.
fn check_payload_encoding(data: &[u8]) {
    let mut input = Input { data, at: 0 };
    let mut frames = crate::codec::Frames::new();
    frames.push("before").expect("a string encodes");
    let before = frames.bytes().to_vec();
    while input.at < data.len() {
        let value = Value::build(&mut input, 0);
        let start = frames.bytes().len();
        match (frames.push(&value), codec().serialize(&value)) {
            (Ok(end), Ok(theirs)) => {
                let (payload, len) = decode_frame(&frames.bytes()[start..]).expect("own frame");
                assert_eq!(start + len, end);
                assert_eq!(payload, &theirs[..], "{value:?}");
            }
            (Err(Error::Encode(ours)), Err(theirs)) => {
                assert_eq!(ours.to_string(), theirs.to_string(), "{value:?}");
                assert_eq!(
                    frames.bytes().len(),
                    start,
                    "a refused value appended bytes"
                );
            }
            (ours, theirs) => panic!(
                "{value:?}: ours {:?}, bincode's {:?}",
                ours.map(|_| ()),
                theirs.map(|_| ())
            ),
        }
    }
    assert!(frames.bytes().starts_with(&before));
}

/// A value of serde's data model, serialized through the method its variant names.
#[derive(Debug)]
enum Value {
    Bool(bool),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(i128),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    F32(f32),
    F64(f64),
    Char(char),
    Str(String),
    /// `collect_str`: a `Display` value.
    Display(u64),
    Bytes(Vec<u8>),
    /// Serialized by serde's `impl Serialize for Vec<u8>` (`collect_seq`).
    ByteVec(Vec<u8>),
    None,
    Some(Box<Value>),
    Unit,
    UnitStruct,
    UnitVariant(u32),
    NewtypeStruct(Box<Value>),
    NewtypeVariant(u32, Box<Value>),
    /// The elements and whether the length is announced.
    Seq(Vec<Value>, bool),
    Tuple(Vec<Value>),
    TupleStruct(Vec<Value>),
    TupleVariant(u32, Vec<Value>),
    Map(Vec<(Value, Value)>, bool),
    Struct(Vec<Value>),
    StructVariant(u32, Vec<Value>),
    /// `Err(custom)` from the value's own `serialize`.
    Fails,
}

impl Value {
    fn build(input: &mut Input<'_>, depth: u32) -> Value {
        let kind = input.byte();
        let n =
            |input: &mut Input<'_>, k: usize| -> Vec<u8> { (0..k).map(|_| input.byte()).collect() };
        let le = |input: &mut Input<'_>| -> u128 {
            u128::from_le_bytes(n(input, 16).try_into().expect("16 bytes"))
        };
        let children = |input: &mut Input<'_>| -> Vec<Value> {
            let count = if depth < 3 { input.byte() % 5 } else { 0 };
            (0..count).map(|_| Value::build(input, depth + 1)).collect()
        };
        // Nesting is bounded, so that recursion (building, serializing, dropping) stays
        // shallow whatever the input.
        let child = |input: &mut Input<'_>| {
            Box::new(match depth {
                0..8 => Value::build(input, depth + 1),
                _ => Value::Unit,
            })
        };
        match kind % 33 {
            0 => Value::Bool(input.byte() & 1 == 1),
            1 => Value::I8(input.byte() as i8),
            2 => Value::I16(le(input) as i16),
            3 => Value::I32(le(input) as i32),
            4 => Value::I64(le(input) as i64),
            5 => Value::I128(le(input) as i128),
            6 => Value::U8(input.byte()),
            7 => Value::U16(le(input) as u16),
            8 => Value::U32(le(input) as u32),
            9 => Value::U64(le(input) as u64),
            10 => Value::U128(le(input)),
            11 => Value::F32(f32::from_bits(le(input) as u32)),
            12 => Value::F64(f64::from_bits(le(input) as u64)),
            13 => Value::Char(char::from_u32(le(input) as u32 % 0x11_0000).unwrap_or('\u{fffd}')),
            14 => {
                let len = usize::from(input.byte() % 40);
                Value::Str(String::from_utf8_lossy(&n(input, len)).into_owned())
            }
            15 => Value::Display(le(input) as u64),
            16 => {
                let len = usize::from(input.byte());
                Value::Bytes(n(input, len))
            }
            17 => Value::None,
            18 => Value::Some(child(input)),
            19 => Value::Unit,
            20 => Value::UnitStruct,
            21 => Value::UnitVariant(le(input) as u32),
            22 => Value::NewtypeStruct(child(input)),
            23 => Value::NewtypeVariant(le(input) as u32, child(input)),
            24 => {
                let announced = input.byte() & 1 == 0;
                Value::Seq(children(input), announced)
            }
            25 => Value::Tuple(children(input)),
            26 => Value::TupleStruct(children(input)),
            27 => Value::TupleVariant(le(input) as u32, children(input)),
            28 => {
                let announced = input.byte() & 1 == 0;
                let keys = children(input);
                let values = keys
                    .iter()
                    .map(|_| Value::build(input, depth + 1))
                    .collect::<Vec<_>>();
                Value::Map(keys.into_iter().zip(values).collect(), announced)
            }
            29 => Value::Struct(children(input)),
            30 => Value::StructVariant(le(input) as u32, children(input)),
            31 => Value::Fails,
            // A byte vector handed over one `u8` at a time...
            32..=143 => {
                let len = usize::from(input.byte()) * 4;
                Value::Seq(n(input, len).into_iter().map(Value::U8).collect(), true)
            }
            // ...and as serde's own `Vec<u8>` does it (as a slice, which the encoder
            // copies whole).
            _ => {
                let len = usize::from(input.byte()) * 4;
                Value::ByteVec(n(input, len))
            }
        }
    }
}

const FIELDS: [&str; 5] = ["a", "b", "c", "d", "e"];

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{
            Error as _, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
            SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
        };
        match self {
            Value::Bool(v) => s.serialize_bool(*v),
            Value::I8(v) => s.serialize_i8(*v),
            Value::I16(v) => s.serialize_i16(*v),
            Value::I32(v) => s.serialize_i32(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::I128(v) => s.serialize_i128(*v),
            Value::U8(v) => s.serialize_u8(*v),
            Value::U16(v) => s.serialize_u16(*v),
            Value::U32(v) => s.serialize_u32(*v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::U128(v) => s.serialize_u128(*v),
            Value::F32(v) => s.serialize_f32(*v),
            Value::F64(v) => s.serialize_f64(*v),
            Value::Char(v) => s.serialize_char(*v),
            Value::Str(v) => s.serialize_str(v),
            Value::Display(v) => s.collect_str(v),
            Value::Bytes(v) => s.serialize_bytes(v),
            Value::ByteVec(v) => v.serialize(s),
            Value::None => s.serialize_none(),
            Value::Some(v) => s.serialize_some(v),
            Value::Unit => s.serialize_unit(),
            Value::UnitStruct => s.serialize_unit_struct("U"),
            Value::UnitVariant(i) => s.serialize_unit_variant("E", *i, "V"),
            Value::NewtypeStruct(v) => s.serialize_newtype_struct("N", v),
            Value::NewtypeVariant(i, v) => s.serialize_newtype_variant("E", *i, "V", v),
            Value::Seq(vs, announced) => {
                let mut seq = s.serialize_seq(announced.then_some(vs.len()))?;
                for v in vs {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Tuple(vs) => {
                let mut t = s.serialize_tuple(vs.len())?;
                for v in vs {
                    t.serialize_element(v)?;
                }
                t.end()
            }
            Value::TupleStruct(vs) => {
                let mut t = s.serialize_tuple_struct("T", vs.len())?;
                for v in vs {
                    t.serialize_field(v)?;
                }
                t.end()
            }
            Value::TupleVariant(i, vs) => {
                let mut t = s.serialize_tuple_variant("E", *i, "V", vs.len())?;
                for v in vs {
                    t.serialize_field(v)?;
                }
                t.end()
            }
            Value::Map(kvs, announced) => {
                let mut m = s.serialize_map(announced.then_some(kvs.len()))?;
                for (k, v) in kvs {
                    m.serialize_key(k)?;
                    m.serialize_value(v)?;
                }
                m.end()
            }
            Value::Struct(vs) => {
                let mut t = s.serialize_struct("S", vs.len())?;
                for (v, name) in vs.iter().zip(FIELDS) {
                    t.serialize_field(name, v)?;
                }
                t.end()
            }
            Value::StructVariant(i, vs) => {
                let mut t = s.serialize_struct_variant("E", *i, "V", vs.len())?;
                for (v, name) in vs.iter().zip(FIELDS) {
                    t.serialize_field(name, v)?;
                }
                t.end()
            }
            Value::Fails => Err(S::Error::custom("this value refuses to serialize")),
        }
    }
}

fn check_info(b: &[u8]) {
    match Info::decode(b) {
        // An older version's info is written back in the current layout.
        // (with 0 for the head chunk, which versions before 3 do not record).
        Ok(info) if b[8..12] != FORMAT_VERSION.to_le_bytes() => {
            let want = Info {
                head_chunk: info.head_chunk.or(Some(0)),
                boot_id: info.boot_id.or(Some(0)),
                ..info.clone()
            };
            assert_eq!(Info::decode(&info.encode()), Ok(want));
        }
        Ok(info) => assert_eq!(
            &info.encode()[..],
            b,
            "info {info:?} re-encodes differently"
        ),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_header(b: &[u8]) {
    match ChunkHeader::decode(b) {
        // An older version's header is written in the current one.
        Ok(h) if b[4..8] != FORMAT_VERSION.to_le_bytes() => {
            assert_eq!(ChunkHeader::decode(&h.encode()), Ok(h));
        }
        Ok(h) => assert_eq!(&h.encode()[..], b, "header {h:?} re-encodes differently"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_ack(b: &[u8]) {
    if let Some((e, mark)) = AckEntry::decode_marked(b) {
        assert_eq!(
            &e.encode_marked(mark)[..],
            b,
            "entry {e:?} re-encodes differently"
        );
    }
}

/// The length a frame's length field gives, without the sync mark (bit 31).
fn field_len(b: &[u8]) -> usize {
    (le64(&b[..4], 0) & 0x7fff_ffff) as usize
}

fn check_frame(b: &[u8]) {
    match decode_frame(b) {
        Ok((payload, total)) => {
            assert_eq!(total, FRAME_HEADER_LEN + payload.len());
            assert!(total <= b.len() && payload.len() <= MAX_ITEM_LEN);
            assert_eq!(payload, &b[FRAME_HEADER_LEN..total]);
            let again = if is_marked(b) {
                marked(&frame(payload))
            } else {
                frame(payload)
            };
            assert_eq!(again, &b[..total], "frame re-encodes differently");
            // A frame does not depend on the bytes after it, and a cut one is incomplete.
            assert_eq!(decode_frame(&b[..total]), Ok((payload, total)));
            assert!(matches!(
                decode_frame(&b[..total - 1]),
                Err(FrameError::Incomplete { .. })
            ));
        }
        Err(FrameError::Incomplete { needed }) => {
            assert!(
                needed > b.len(),
                "incomplete, needing {needed} of {}",
                b.len()
            );
            if b.len() >= FRAME_HEADER_LEN {
                assert_eq!(needed, FRAME_HEADER_LEN + field_len(b));
            } else {
                assert_eq!(needed, FRAME_HEADER_LEN);
            }
        }
        Err(FrameError::TooLong(field)) => {
            assert!(field_len(b) > MAX_ITEM_LEN);
            assert_eq!(u64::from(field), le64(&b[..4], 0));
        }
        Err(FrameError::Checksum) => {
            let len = field_len(b);
            assert!(len <= MAX_ITEM_LEN && FRAME_HEADER_LEN + len <= b.len());
        }
    }
}

fn check_name(name: &str) {
    if let Some(n) = parse_chunk_name(name) {
        let canonical = chunk_path(Path::new(""), n);
        assert_eq!(
            canonical.to_str(),
            Some(name),
            "{name:?} parsed as chunk {n}, whose name is {canonical:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// open_dir
// ---------------------------------------------------------------------------------------

/// File names [`open_dir`] can create: a tag's low three bits index this list. The last
/// is a non-canonical spelling of chunk 1, which the queue must ignore.
pub const DIR_NAMES: [&str; 8] = [
    "info", "acks", "q00000", "q00001", "q00002", "q00003", "info.tmp", "q000001",
];

/// Tag bit: build a well-formed structure from the file's bytes instead of using them
/// as they are (see [`open_dir`]).
pub const SEALED: u8 = 0x08;

/// Serializes a directory for [`open_dir`]: the `config` byte, then each file as its tag
/// (index in [`DIR_NAMES`], plus [`SEALED`] if wanted), a `u16` little-endian length and
/// the bytes. Panics on a name not in [`DIR_NAMES`] or a file over 64 KiB (a helper for
/// writing seeds, not a fuzz target).
pub fn encode_dir(config: u8, files: &[(&str, bool, &[u8])]) -> Vec<u8> {
    let mut out = vec![config];
    for &(name, sealed, bytes) in files {
        let idx = DIR_NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} is not one of {DIR_NAMES:?}"));
        out.push(idx as u8 | if sealed { SEALED } else { 0 });
        let len = u16::try_from(bytes.len()).expect("file too long for the scheme");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The files `data` describes (see [`encode_dir`]); a later file of the same name
/// replaces an earlier one. Lengths running past the end are cut.
fn carve(data: &[u8]) -> (u8, BTreeMap<&'static str, Vec<u8>>) {
    let config = data.first().copied().unwrap_or(0);
    let mut files = BTreeMap::new();
    // The bytes of the last `info` if it was sealed (its tail mark is added at the end,
    // when the chunk files are known).
    let mut sealed_info = None;
    let mut at = 1;
    while at < data.len() {
        let tag = data[at];
        let len = le64(&data[..data.len().min(at + 3)], at + 1) as usize & 0xffff;
        let start = (at + 3).min(data.len());
        let end = (start + len).min(data.len());
        let idx = usize::from(tag & 7);
        let bytes = &data[start..end];
        let content = if tag & SEALED != 0 {
            seal(idx, bytes)
        } else {
            bytes.to_vec()
        };
        if DIR_NAMES[idx] == "info" {
            sealed_info = (tag & SEALED != 0).then(|| bytes.to_vec());
        }
        files.insert(DIR_NAMES[idx], content);
        at = end;
    }
    if let Some(b) = sealed_info
        && b.len() % 8 == 1
    {
        let k = b[b.len() - 1];
        let version = if files["info"][8] == 2 {
            2
        } else {
            FORMAT_VERSION
        };
        let info = with_tail_mark(Info::decode(&files["info"]).expect("sealed"), &files, k);
        files.insert("info", info.encode_as(version));
    }
    (config, files)
}

/// `info` with a true tail mark for its `tail_chunk`, after at most `k` of the chunk's
/// leading valid records (those every reading of the chunk counts). A chunk file that is
/// missing or shorter than a header gets none.
fn with_tail_mark(mut info: Info, files: &BTreeMap<&'static str, Vec<u8>>, k: u8) -> Info {
    let Some(chunk) = files
        .iter()
        .find(|(n, _)| parse_chunk_name(n) == Some(info.tail_chunk))
        .map(|(_, b)| b)
        .filter(|b| b.len() >= CHUNK_HEADER_LEN)
    else {
        return info;
    };
    let (mut at, mut count, mut last) = (CHUNK_HEADER_LEN, 0, 0);
    while count < u64::from(k) {
        match chunk.get(at..).map(decode_frame) {
            Some(Ok((_, n))) => {
                at += n;
                count += 1;
                last = n as u32;
            }
            _ => break,
        }
    }
    info.tail_end = at as u64;
    info.tail_count = count;
    info.tail_last_len = last;
    info
}

/// A well-formed file built from `b`, CRCs computed, so that the fuzzer reaches the
/// checks past the CRCs:
/// * `info`: `acked` from bytes 0..8, `tail_chunk` from 8..13 (zero-padded), `head_chunk`
///   from byte 13, version 2 (no `head_chunk`) if byte 14 is odd, up to four
///   single acknowledgements from the next 8-byte groups; a last byte `k` after whole
///   groups (a length of 8n + 1) adds a true tail mark after at most `k` of
///   `tail_chunk`'s leading valid records;
/// * `acks`: an entry per 8 bytes; a last partial group is appended raw (a torn entry);
/// * chunks: byte 0 added (as `i8`) to the file's number gives the header's chunk
///   number, bytes 1..9 are `first_seq`, then records: a length byte `l` and its bytes;
///   `l < 0x80`: a `Vec<u8>` of `l` bytes (bincode), `0x80 <= l < 0xff`: `l - 0x80` raw
///   payload bytes, `0xff`: the rest of the file raw (a torn or damaged tail);
/// * other names: the bytes as they are.
fn seal(idx: usize, b: &[u8]) -> Vec<u8> {
    match DIR_NAMES[idx] {
        // No recorded tail: recovery scans the newest chunk from its first record, which
        // is what the oracle models (tests/api/reopen.rs covers recorded tails).
        "info" => {
            let v2 = b.get(14).is_some_and(|x| x % 2 == 1);
            Info {
                acked: le64(b, 0),
                tail_chunk: le64(b, 8) & 0xff_ffff_ffff,
                tail_end: 0,
                tail_count: 0,
                tail_last_len: 0,
                head_chunk: (!v2).then(|| u64::from(b.get(13).copied().unwrap_or(0))),
                // The boot of a new `SimStorage`: the directory is what a process crash
                // left, which the oracle models (a restart's recovery is fuzzed by
                // `model`'s page-cache power losses).
                boot_id: (!v2).then_some(1),
                all_synced: false,
                singles: b.get(16..).map_or(Vec::new(), |r| {
                    r.chunks_exact(8).take(4).map(|c| le64(c, 0)).collect()
                }),
                work: crate::format::WorkState::default(),
                unsynced: false,
            }
            .encode_as(if v2 { 2 } else { FORMAT_VERSION })
        }
        "acks" => {
            let mut out = Vec::new();
            let mut groups = b.chunks_exact(8);
            for g in &mut groups {
                // Bit 63 of the value picks a single acknowledgement.
                let v = le64(g, 0);
                let e = if v >> 63 == 1 {
                    AckEntry::Single(v & !(1 << 63))
                } else {
                    AckEntry::Head(v)
                };
                out.extend_from_slice(&e.encode());
            }
            out.extend_from_slice(groups.remainder());
            out
        }
        name if parse_chunk_name(name).is_some() => {
            let no = parse_chunk_name(name).expect("chunk name");
            let delta = i64::from(b.first().copied().unwrap_or(0) as i8);
            let mut out = ChunkHeader {
                chunk: no.wrapping_add_signed(delta),
                first_seq: le64(b, 1),
            }
            .encode()
            .to_vec();
            let mut at = 9;
            while at < b.len() {
                let l = b[at];
                at += 1;
                if l == 0xff {
                    out.extend_from_slice(&b[at..]);
                    break;
                }
                let n = usize::from(l & 0x7f);
                let bytes = &b[at..(at + n).min(b.len())];
                at += bytes.len();
                let payload = if l & 0x80 != 0 {
                    bytes.to_vec()
                } else {
                    codec().serialize(&bytes.to_vec()).expect("serialize")
                };
                out.extend_from_slice(&frame(&payload));
            }
            out
        }
        _ => b.to_vec(),
    }
}

/// Options from `open_dir`'s config byte: bits 0-1 durability, 2-4 chunk size - 1.
fn dir_options(config: u8) -> Options {
    let durability = match config & 3 {
        1 => Durability::Synced,
        2 => Durability::Buffered,
        _ => Durability::Written,
    };
    // One schema tag for both item types the body opens the directory as: the records
    // are read as `Vec<u8>` and as `u64` on purpose.
    Options::new()
        .durability(durability)
        .chunk_size(1 + usize::from((config >> 2) & 7))
        .schema("fuzz")
}

/// Whether the drain acknowledges the `i`-th item it gets (config bits 5-6).
fn dir_acks(config: u8, i: usize) -> bool {
    match (config >> 5) & 3 {
        0 => true,
        1 => false,
        2 => i.is_multiple_of(2),
        _ => i > 0,
    }
}

/// Most items a drain takes (more than any directory of a fuzz-sized input holds).
const MAX_DRAIN: usize = 20_000;

fn storage_with(files: &BTreeMap<&'static str, Vec<u8>>) -> SimStorage {
    let st = SimStorage::new();
    for (name, bytes) in files {
        st.put_file(&Path::new(DIR).join(name), bytes);
    }
    st
}

/// Payloads of the valid records of each chunk file, read from offset 28 the way the
/// queue reads them, chunk after chunk: any item the queue returns must be one of these,
/// in this order.
fn valid_records(files: &BTreeMap<&'static str, Vec<u8>>) -> Vec<Vec<u8>> {
    let mut chunks: Vec<(u64, &Vec<u8>)> = files
        .iter()
        .filter_map(|(n, b)| Some((parse_chunk_name(n)?, b)))
        .collect();
    chunks.sort();
    let mut out = Vec::new();
    for (_, b) in chunks {
        let mut at = CHUNK_HEADER_LEN;
        while let Some(Ok((p, n))) = b.get(at..).map(decode_frame) {
            out.push(p.to_vec());
            at += n;
        }
    }
    out
}

/// What `len()` must be after a successful open, computed from the files as FORMAT.md
/// §open describes: `acked` is the maximum of `info` and the valid journal entries; the
/// newest chunk at least a header long holds `tail - first_seq` valid records back to
/// back (a torn tail is cut); `len = tail - acked`, or 0 when `acked > tail`. `None`
/// where open must have failed anyway (it checks more than this does).
fn expected_len(files: &BTreeMap<&'static str, Vec<u8>>) -> Option<Result<u64, String>> {
    let (acked, singles) = acked_at_open(files)?;
    let chunks = chunks_open_finds(files);
    // A newest chunk shorter than a header is deleted, and the one before is the newest.
    let Some((_, newest)) = chunks
        .iter()
        .rev()
        .find(|(_, b)| b.len() >= CHUNK_HEADER_LEN)
    else {
        return Some(Ok(0)); // created again, empty, at `acked`
    };
    let header = ChunkHeader::decode(&newest[..CHUNK_HEADER_LEN]).ok()?;
    let mut count = 0u64;
    let mut at = CHUNK_HEADER_LEN;
    while let Ok((_, n)) = decode_frame(&newest[at..]) {
        count += 1;
        at += n;
    }
    Some(match header.first_seq.checked_add(count) {
        Some(tail) => {
            let skipped = singles.range(acked..tail.max(acked)).count() as u64;
            Ok(tail.saturating_sub(acked).saturating_sub(skipped))
        }
        None => Err(format!(
            "the newest chunk starts at item {} and holds {count} records: the sequence \
             numbers overflow u64, so the chunk cannot be what diskq wrote",
            header.first_seq
        )),
    })
}

/// The chunk files open works with, in order (FORMAT.md §open, step 5): with a version 3
/// `info` and a journal, from the first file at or after `head_chunk` to the last of the
/// files that follow `tail_chunk` without a gap, if that one exists and the number after
/// the next does not; else every chunk file (listed).
fn chunks_open_finds<'a>(files: &'a BTreeMap<&'static str, Vec<u8>>) -> Vec<(u64, &'a Vec<u8>)> {
    let mut chunks: Vec<(u64, &Vec<u8>)> = files
        .iter()
        .filter_map(|(n, b)| Some((parse_chunk_name(n)?, b)))
        .collect();
    chunks.sort();
    let info = files.get("info").and_then(|b| Info::decode(b).ok());
    let Some((head, tail)) = info.and_then(|i| Some((i.head_chunk?, i.tail_chunk))) else {
        return chunks;
    };
    if !files.contains_key("acks")
        || head > tail
        || tail - head >= 1 << 16
        || tail >= crate::format::MAX_SEQ
    {
        return chunks;
    }
    let has = |no: u64| chunks.iter().any(|&(n, _)| n == no);
    let mut newest = tail;
    while has(newest + 1) {
        newest += 1;
    }
    if has(newest + 2) || !has(newest) {
        return chunks; // listed instead
    }
    let mut oldest = head;
    while oldest < newest {
        if oldest - head >= 64 {
            return chunks; // listed instead
        }
        if has(oldest) {
            break;
        }
        oldest += 1;
    }
    chunks.retain(|&(n, _)| (oldest..=newest).contains(&n));
    chunks
}

/// Acknowledgements as open finds them: the head (the maximum of `info` and the valid
/// head entries, moved past the singles it reaches) and the items acknowledged one by one
/// after it. `None` when `info` is damaged (open fails).
fn acked_at_open(
    files: &BTreeMap<&'static str, Vec<u8>>,
) -> Option<(u64, std::collections::BTreeSet<u64>)> {
    let info = match files.get("info").map(|b| Info::read(b)) {
        Some(Ok(crate::format::InfoRead::Whole(info))) => info,
        // Accepted as torn by a power loss: the header alone counts.
        Some(Ok(crate::format::InfoRead::HeaderOnly(info, _))) => info,
        Some(Err(_)) => return None,
        None => Info::new(0, 0),
    };
    let journal = files.get("acks").map(|b| &b[..]).unwrap_or(&[]);
    let entries: Vec<AckEntry> = journal
        .chunks_exact(ACK_ENTRY_LEN)
        .filter_map(AckEntry::decode)
        .collect();
    let mut acked = entries
        .iter()
        .filter_map(|e| match e {
            AckEntry::Head(s) => Some(*s),
            _ => None,
        })
        .fold(info.acked, u64::max);
    let mut singles: std::collections::BTreeSet<u64> = info.singles.iter().copied().collect();
    singles.extend(entries.iter().filter_map(|e| match e {
        AckEntry::Single(s) => Some(*s),
        _ => None,
    }));
    singles.retain(|&s| s >= acked);
    while singles.remove(&acked) {
        acked += 1;
    }
    Some((acked, singles))
}

/// Asserts that every chunk file of `files` that is gone from `st` held, by its own
/// header and records, only acknowledged items (`first_seq + records <= acked`): a chunk
/// holding records it places at or after `acked` must be reported, never deleted
/// (FORMAT.md: chunk `n+1` must start exactly where chunk `n` ends, so another chunk's
/// header cannot vouch for it). Files without a valid header are not judged.
fn check_deletions(
    st: &SimStorage,
    files: &BTreeMap<&'static str, Vec<u8>>,
    acked: u64,
    when: &str,
) {
    for (name, b) in files {
        let Some(no) = parse_chunk_name(name) else {
            continue;
        };
        if b.len() < CHUNK_HEADER_LEN || st.file(&Path::new(DIR).join(name)).is_some() {
            continue;
        }
        let Ok(h) = ChunkHeader::decode(&b[..CHUNK_HEADER_LEN]) else {
            continue;
        };
        if h.chunk != no {
            continue;
        }
        let mut count = 0u64;
        let mut at = CHUNK_HEADER_LEN;
        while let Ok((_, n)) = decode_frame(&b[at..]) {
            count += 1;
            at += n;
        }
        assert!(
            h.first_seq.saturating_add(count) <= acked,
            "{when}: {name} was deleted, but its header places its {count} records at items \
             {} on, and only {acked} items are acknowledged",
            h.first_seq
        );
    }
}

/// The payloads a drain from open to `Empty` must return, in order, when the chunk files
/// form a consistent chain (each valid header starting where the chunk before ends, by
/// its valid records): those of items `acked..tail` that were not acknowledged one by
/// one. `None` when the files are not such a chain (open or a get must then fail, or the
/// check does not apply).
fn expected_items(files: &BTreeMap<&'static str, Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let (acked, singles) = acked_at_open(files)?;
    let mut chunks = chunks_open_finds(files);
    // A newest chunk shorter than a header holds nothing and is deleted.
    while chunks
        .last()
        .is_some_and(|(_, b)| b.len() < CHUNK_HEADER_LEN)
    {
        chunks.pop();
    }
    let mut first = None;
    let mut records: Vec<&[u8]> = Vec::new();
    for (no, b) in chunks {
        let h = ChunkHeader::decode(b.get(..CHUNK_HEADER_LEN)?).ok()?;
        let next = first.map(|f: u64| f + records.len() as u64);
        if h.chunk != no || next.is_some_and(|n| n != h.first_seq) {
            return None;
        }
        first.get_or_insert(h.first_seq);
        let mut at = CHUNK_HEADER_LEN;
        while let Ok((p, n)) = decode_frame(&b[at..]) {
            records.push(p);
            at += n;
        }
    }
    let Some(first) = first else {
        return Some(Vec::new());
    };
    if acked < first {
        return None; // items were lost: open refuses
    }
    let tail = first.checked_add(records.len() as u64)?;
    Some(
        (acked..tail.max(acked))
            .filter(|s| !singles.contains(s))
            .map(|s| records[(s - first) as usize].to_vec())
            .collect(),
    )
}

/// Asserts that a drain that reached `Empty` returned [`expected_items`].
fn check_clean_drain<T: Serialize + Debug>(
    d: &Drained<T>,
    files: &BTreeMap<&'static str, Vec<u8>>,
) {
    if !d.clean {
        return;
    }
    let Some(want) = expected_items(files) else {
        return;
    };
    // The items gotten and those that went to the dead letters, in queue order.
    let mut all: Vec<(u64, Vec<u8>)> = d
        .seqs
        .iter()
        .zip(&d.items)
        .map(|(&s, i)| (s, codec().serialize(i).expect("serialize")))
        .chain(d.buried.iter().cloned())
        .collect();
    all.sort_by_key(|&(s, _)| s);
    let got: Vec<Vec<u8>> = all.into_iter().map(|(_, b)| b).collect();
    assert!(
        got == want,
        "a drain from open to Empty returned {} items, {:?}, where the files hold {} \
         unacknowledged, {:?} (payloads shown)",
        got.len(),
        got,
        want.len(),
        want
    );
}

/// Checks `len()` right after a successful open against [`expected_len`].
fn check_len_at_open<T>(q: &Queue<T>, files: &BTreeMap<&'static str, Vec<u8>>) {
    match expected_len(files) {
        Some(Ok(len)) => assert_eq!(
            q.len() as u64,
            len,
            "len() after open is not tail - acked as the files give them"
        ),
        Some(Err(why)) => panic!("open succeeded, but {why}"),
        None => {}
    }
}

/// Asserts that `items` serialize to a subsequence of `records`: nothing invented, and
/// FIFO.
fn assert_subsequence<T: Serialize + Debug>(items: &[T], records: &[Vec<u8>]) {
    let mut from = 0;
    for (i, item) in items.iter().enumerate() {
        let bytes = codec().serialize(item).expect("serialize");
        match records[from..].iter().position(|r| *r == bytes) {
            Some(k) => from += k + 1,
            None => panic!(
                "item {i} ({item:?}) returned by get is not a valid record of the directory \
                 after the records of the items before it"
            ),
        }
    }
}

/// What [`drain`] saw.
struct Drained<T> {
    items: Vec<T>,
    /// The sequence numbers of `items`.
    seqs: Vec<u64>,
    /// Items that did not decode, moved to the dead letters on the way: (seq, payload).
    buried: Vec<(u64, Vec<u8>)>,
    /// Items gotten and not acknowledged, in order.
    unacked: Vec<T>,
    /// The drain stopped at `Error::Empty` (rather than an error or the step bound).
    clean: bool,
}

/// Gets until empty, an error, or the bound, acknowledging as `config` says; checks
/// `len` as it goes and that an error consumes nothing.
fn drain<T: Serialize + DeserializeOwned + Clone + PartialEq + Debug>(
    q: &Queue<T>,
    config: u8,
    bound: usize,
) -> Drained<T> {
    let mut d = Drained {
        items: Vec::new(),
        seqs: Vec::new(),
        buried: Vec::new(),
        unacked: Vec::new(),
        clean: false,
    };
    let start_len = q.len();
    assert_eq!(
        q.unfinished(),
        start_len,
        "unfinished != len right after open"
    );
    while d.items.len() < bound {
        let len = q.len();
        // Items that do not decode go to the dead letters on the way (issue #17).
        let buried = q.dead_letters().len();
        assert_eq!(len, start_len - d.items.len() - buried, "len is off");
        match q.get_delivery_timeout(std::time::Duration::ZERO) {
            Ok(delivery) => {
                d.seqs.push(delivery.seq());
                let item = delivery.into_inner();
                let i = d.items.len();
                if dir_acks(config, i) {
                    // FIFO acknowledgement: acknowledge everything gotten so far.
                    for _ in 0..=d.unacked.len() {
                        q.task_done().expect("task_done of a gotten item");
                    }
                    d.unacked.clear();
                } else {
                    d.unacked.push(item.clone());
                }
                d.items.push(item);
            }
            Err(Error::Timeout) => {
                let left = q.len();
                assert_eq!(left, 0, "get said empty while len() is {left}");
                d.clean = true;
                break;
            }
            Err(e) => {
                assert!(len > 0, "get_nowait failed with len() 0: {e}");
                assert!(
                    matches!(e, Error::Corrupt { .. } | Error::Decode { .. }),
                    "get failed with {e:?} on a healthy file system"
                );
                // Nothing was consumed: the next get reports the same.
                let again = q
                    .get_delivery_timeout(std::time::Duration::ZERO)
                    .map(|d| d.into_inner());
                assert!(
                    matches!(
                        (&e, &again),
                        (Error::Corrupt { .. }, Err(Error::Corrupt { .. }))
                            | (Error::Decode { .. }, Err(Error::Decode { .. }))
                    ),
                    "get failed with {e}, then gave {again:?}"
                );
                let buried_now = q.dead_letters().len();
                assert_eq!(
                    q.len() + buried_now,
                    len + buried,
                    "a failed get consumed an item"
                );
                break;
            }
        }
    }
    d.buried = buried(q);
    d
}

/// The items a queue moved to its dead letters: (seq, payload).
fn buried<T: Serialize + DeserializeOwned>(q: &Queue<T>) -> Vec<(u64, Vec<u8>)> {
    q.dead_letters()
        .iter()
        .map_while(|r| r.ok())
        .map(|dl| (dl.seq(), dl.bytes().to_vec()))
        .collect()
}

/// An `info` of zero bytes only (or none), what a power loss leaves when it keeps the
/// rename and not the data: `open` rebuilds it (FORMAT.md §open, step 3a) or refuses
/// with `Corrupt` (a gap in the chunk files); rebuilt, it delivers records of the
/// directory in order, and reopens after a close.
fn lost_info(st: &SimStorage, opts: Options, config: u8, records: &[Vec<u8>]) {
    let q = match opts.open_on::<Vec<u8>>(Arc::new(st.clone()), DIR) {
        Ok(q) => q,
        Err(e) => {
            assert!(e.is_corrupt(), "open of a lost info failed with {e}");
            return;
        }
    };
    let r = q.recovery();
    assert!(r.info_rebuilt && r.after_restart, "{r:?}");
    let d = drain(&q, config, MAX_DRAIN);
    assert_subsequence(&d.items, records);
    q.close().expect("close on a healthy file system");
    opts.open_on::<Vec<u8>>(Arc::new(st.clone()), DIR)
        .expect("reopen after the rebuild");
}

/// Carves `data` into the files of a queue directory (see [`encode_dir`] and the
/// `SEALED` builders), opens it as a `Queue<Vec<u8>>` and as a `Queue<u64>`, drains
/// them, and for the first: puts two items, closes and reopens.
///
/// Errors are fine; what must hold: no panic, hang or huge allocation; a refusal for
/// a missing or damaged `info` changes no file; `len()` at open is `tail - acked` as the
/// files give them, which must not overflow; no chunk file is deleted while its own
/// header and records place items at or after the acknowledged count; a drain that
/// reaches `Empty` over a consistent chain of chunks returns exactly the unacknowledged
/// records (none acknowledged one by one); every item returned is the payload of a
/// valid record, in FIFO order; `len` counts down to `Empty`; a failed `get` consumes
/// nothing; and after a drain that reached `Empty` the directory reopens and delivers
/// exactly the unacknowledged items and then the new ones.
pub fn open_dir(data: &[u8]) {
    let (config, files) = carve(data);
    let opts = dir_options(config);
    let records = valid_records(&files);

    let st = storage_with(&files);
    if files
        .get("info")
        .is_some_and(|b| crate::format::lost_first_sector(b))
    {
        lost_info(&st, opts, config, &records);
        return;
    }
    match opts.open_on::<Vec<u8>>(Arc::new(st.clone()), DIR) {
        Err(e) => {
            let info_named = matches!(&e, Error::Corrupt { path, .. } if path.ends_with("info"));
            if info_named || matches!(e, Error::MissingInfo { .. }) {
                // "open changes nothing in that case" (FORMAT.md §info, §open step 3),
                // a leftover info.tmp included.
                let before = files.clone();
                let dir = Path::new(DIR);
                let after: BTreeMap<&'static str, Vec<u8>> = DIR_NAMES
                    .iter()
                    .filter_map(|n| Some((*n, st.file(&dir.join(n))?)))
                    .collect();
                assert_eq!(before, after, "open refused ({e}) but changed files");
            }
        }
        Ok(q) => {
            check_len_at_open(&q, &files);
            let (acked, singles) = acked_at_open(&files).expect("open succeeded, so info is valid");
            check_deletions(&st, &files, acked, "open");
            let d = drain(&q, config, MAX_DRAIN);
            assert_subsequence(&d.items, &records);
            check_clean_drain(&d, &files);
            let markers = [vec![0xa5u8; 3], Vec::new()];
            if d.clean {
                for m in &markers {
                    q.put(m).expect("put after recovery");
                }
            }
            q.close().expect("close on a healthy file system");
            // The head moved by one per task_done and past the singles it reached: at
            // most this far.
            let acks = (d.items.len() - d.unacked.len() + d.buried.len() + singles.len()) as u64;
            check_deletions(&st, &files, acked + acks, "drain and close");

            match opts.open_on::<Vec<u8>>(Arc::new(st.clone()), DIR) {
                Ok(q) => {
                    let mut want = d.unacked.clone();
                    if d.clean {
                        want.extend(markers.iter().cloned());
                    }
                    let mut stopped = false;
                    for (i, w) in want.iter().enumerate() {
                        match q.get_nowait() {
                            Ok(got) => assert_eq!(&got, w, "item {i} after reopen"),
                            Err(e) => {
                                assert!(
                                    !d.clean || damage_from_the_input(&st, &files, &e),
                                    "item {i} after reopen: {e}"
                                );
                                stopped = true;
                                break;
                            }
                        }
                    }
                    if d.clean && !stopped && !stray_chunk_left(&st, &files) {
                        match q.get_nowait() {
                            Err(Error::Empty) => {}
                            Err(e) if damage_from_the_input(&st, &files, &e) => {}
                            r => panic!("more items after reopen than were left: {r:?}"),
                        }
                    }
                }
                Err(e) => assert!(
                    !d.clean || damage_from_the_input(&st, &files, &e),
                    "reopen after a drain that reached Empty and a close failed: {e}"
                ),
            }
        }
    }

    // The same directory read as another type: decode errors, never a wrong item.
    let st = storage_with(&files);
    if let Ok(q) = opts.open_on::<u64>(Arc::new(st), DIR) {
        check_len_at_open(&q, &files);
        let d = drain(&q, config, MAX_DRAIN);
        assert_subsequence(&d.items, &records);
        check_clean_drain(&d, &files);
    }
}

/// Whether a chunk file of the input that open does not look at (three or more numbers
/// past the newest, FORMAT.md §open, step 5) is still there: the queue takes it in once
/// its own chunks reach it, and reports it then, or, if its header continues the
/// sequence, delivers its records after the queue's own.
fn stray_chunk_left(st: &SimStorage, files: &BTreeMap<&'static str, Vec<u8>>) -> bool {
    let newest = chunks_open_finds(files).last().map(|&(n, _)| n);
    files.keys().any(|n| {
        parse_chunk_name(n).is_some_and(|m| newest.is_some_and(|x| m > x))
            && st.file(&Path::new(DIR).join(n)).is_some()
    })
}

/// Whether `e` reports damage in bytes the input already held and nothing has written
/// since: a file of the input, unchanged from the reported offset to its end. A drain
/// that runs empty where a chunk ends never looks past that chunk's last record; damage
/// after it is reported once something reads there: a reopen that deletes the
/// acknowledged chunk (FORMAT.md §open step 7), or a `get` that leaves the chunk. That
/// is the input's damage, not something drain and close did.
fn damage_from_the_input(
    st: &SimStorage,
    files: &BTreeMap<&'static str, Vec<u8>>,
    e: &Error,
) -> bool {
    let Error::Corrupt { path, offset, .. } = e else {
        return false;
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    // Open does not look at a chunk file three or more numbers past the newest (FORMAT.md
    // §open, step 5): such a file of the input, still there, is damage the queue reports
    // once it has grown next to it, at that file or at the queue's own chunk before it
    // (the reopen that finds it may have cut a torn end off it).
    if stray_chunk_left(st, files) {
        return true;
    }
    let (Some(before), Some(now)) = (files.get(name), st.file(path)) else {
        return false;
    };
    // At the file's end, too: records missing after the last (a chunk that ends before
    // the next one starts), which a reader may never have had to look at when the
    // items there were acknowledged one by one.
    let at = *offset as usize;
    at <= before.len() && now.get(at..) == before.get(at..)
}

// ---------------------------------------------------------------------------------------
// model
// ---------------------------------------------------------------------------------------

/// One operation of a [`model`] program; [`encode_model`] turns a list into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOp {
    /// `put` of an item whose padding length comes from this byte (see `pad_len`).
    Put(u8),
    /// `get_nowait`.
    Get,
    /// `task_done`.
    TaskDone,
    /// Drop the queue and reopen with options from this byte.
    Reopen(u8),
    /// `close` the queue and reopen with options from this byte.
    Close(u8),
    /// Stop the world after this many more mutating storage operations; the second byte
    /// picks a torn write (bit 0) and at the synced level the kind of power loss (bits
    /// 1-2: power loss, power loss keeping prefixes, page-cache power loss, process
    /// crash) or at the written level a power loss instead of a process crash (bits 1-2:
    /// 1 power loss, 2 page-cache power loss, 3 keeping prefixes), at the buffered level
    /// a page-cache power loss (bits 1-2: 1).
    Crash(u8, u8),
    /// Inject a fault: storage operation kind (write, sync, rename, set_len, remove,
    /// sync_dir, read) and fault from the first byte, how many operations of that kind to
    /// skip from the second.
    Fault(u8, u8),
    /// `get_nowait` then `task_done`.
    GetAck,
    /// `task_done` for every item gotten.
    AckAll,
}

const OPS: u8 = 20;

impl ModelOp {
    fn encode(self, out: &mut Vec<u8>) {
        match self {
            ModelOp::Put(b) => out.extend([0, b]),
            ModelOp::Get => out.push(7),
            ModelOp::TaskDone => out.push(11),
            ModelOp::Reopen(b) => out.extend([14, b]),
            ModelOp::Close(b) => out.extend([15, b]),
            ModelOp::Crash(k, f) => out.extend([16, k, f]),
            ModelOp::Fault(kind, skip) => out.extend([17, kind, skip]),
            ModelOp::GetAck => out.push(18),
            ModelOp::AckAll => out.push(19),
        }
    }

    fn decode(input: &mut Input<'_>) -> Option<ModelOp> {
        let op = input.next()?;
        Some(match op % OPS {
            0..=6 => ModelOp::Put(input.byte()),
            7..=10 => ModelOp::Get,
            11..=13 => ModelOp::TaskDone,
            14 => ModelOp::Reopen(input.byte()),
            15 => ModelOp::Close(input.byte()),
            16 => ModelOp::Crash(input.byte(), input.byte()),
            17 => ModelOp::Fault(input.byte(), input.byte()),
            18 => ModelOp::GetAck,
            _ => ModelOp::AckAll,
        })
    }
}

/// The bytes of a [`model`] program: durability (0 written, 1 synced, 2 buffered), the
/// options byte (see [`ModelOp::Reopen`]), then the operations.
pub fn encode_model(level: u8, options: u8, ops: &[ModelOp]) -> Vec<u8> {
    let mut out = vec![level, options];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }

    /// The next byte, 0 past the end.
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

type Item = (u64, Vec<u8>);

fn model_item(id: u64, pad: usize) -> Item {
    (
        id,
        (0..pad)
            .map(|i| (i as u64 ^ id.wrapping_mul(0x9e37)) as u8)
            .collect(),
    )
}

/// Padding lengths: mostly small, sometimes kilobytes so frames straddle read buffers and
/// the buffered level's 64 KiB batches.
fn pad_len(b: u8) -> usize {
    if b < 0xf0 {
        usize::from(b % 64)
    } else {
        usize::from(b - 0xef) * 1024
    }
}

/// Options from a byte: chunk size 1-8 (bits 0-2), journal limit (bits 3-5: one to six
/// entries, or the default 64 KiB), chunks ending before 100 bytes (bit 6; a chunk then
/// ends by size as often as by count).
fn model_options(durability: Durability, b: u8) -> Options {
    let entries = u64::from((b >> 3) & 7);
    let mut opts = Options::new()
        .durability(durability)
        .chunk_size(1 + usize::from(b & 7));
    if b & 0x40 != 0 {
        opts = opts.chunk_bytes(100);
    }
    if entries < 6 {
        opts.journal_limit(ACK_ENTRY_LEN as u64 * (entries + 1))
    } else {
        opts
    }
}

/// Operations a program runs at most (each restart drains the whole queue once more).
const MAX_OPS: usize = 600;

/// Which item an operation that failed when the world stopped may or may not have
/// changed.
#[derive(Debug, Clone)]
enum Uncertain {
    None,
    /// A put that failed: its item may be on disk.
    Put(Item),
    /// A task_done that failed: the oldest gotten item may be acknowledged.
    Ack,
}

/// What a crash or restart must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Promise {
    /// Every put that returned Ok is there, no task_done that returned Ok is undone.
    Keeps,
    /// Recovery opens and returns items in order, invents none; items may be lost and
    /// acknowledged ones may come back (buffered level).
    Opens,
    /// Recovery may refuse with `Error::Corrupt`; if it opens, order is kept and nothing
    /// is invented (power loss below the synced level, in the older models).
    Nothing,
    /// As `Opens`, and what comes back is a prefix of the model's items, after at most
    /// some acknowledged ones that return: nothing missing from the middle (a page-cache
    /// power loss below the synced level, issue #15).
    Run,
}

struct Model {
    durability: Durability,
    opts: Options,
    st: SimStorage,
    q: Option<Queue<Item>>,
    /// Items put and not gotten, oldest first.
    waiting: VecDeque<Item>,
    /// Items gotten and not acknowledged, oldest first.
    in_flight: VecDeque<Item>,
    /// Padding length of every item whose put was attempted, by id.
    pads: Vec<usize>,
    /// The crash armed on `st`, if any.
    armed: Option<Crash>,
    /// A fault was injected on `st` (it may not have fired yet).
    faulted: bool,
    /// An operation of this queue instance failed otherwise than for want of space: only
    /// then may a later one say `Poisoned` (a full disk poisons nothing).
    poison_ok: std::cell::Cell<bool>,
    /// Items whose `task_done` took effect in memory only (`AckNotDurable`, or `NoSpace`
    /// after its reserve was gone), oldest first: a recovery may bring back any suffix
    /// of them, never an item after one it does not bring back.
    soft: Vec<Item>,
}

/// Reads `data` as a program (see [`encode_model`] and [`ModelOp`]) and runs it on a
/// queue in a simulated file system against a model: the items waiting and the items
/// gotten but not acknowledged. Checked: every `get` returns the model's next item (FIFO,
/// nothing invented, nothing lost); `len`, `unfinished`, `Empty` and
/// `NothingToAcknowledge` agree with the model; an operation fails only when the world
/// stopped or a fault was injected; and after every reopen and every crash, recovery
/// returns exactly what the durability level promises: every put that returned Ok
/// still there until acknowledged, no acknowledged item back, with the one operation
/// that failed when the world stopped allowed either outcome.
pub fn model(data: &[u8]) {
    let mut input = Input { data, at: 0 };
    let durability = match input.byte() % 3 {
        1 => Durability::Synced,
        2 => Durability::Buffered,
        _ => Durability::Written,
    };
    let opts = model_options(durability, input.byte());
    let st = SimStorage::new();
    let q = opts
        .open_on(Arc::new(st.clone()), DIR)
        .unwrap_or_else(|e| panic!("creating a queue failed: {e}"));
    let mut m = Model {
        durability,
        opts,
        st,
        q: Some(q),
        waiting: VecDeque::new(),
        in_flight: VecDeque::new(),
        pads: Vec::new(),
        armed: None,
        faulted: false,
        poison_ok: std::cell::Cell::new(false),
        soft: Vec::new(),
    };
    for _ in 0..MAX_OPS {
        let Some(op) = ModelOp::decode(&mut input) else {
            break;
        };
        if !m.step(op) {
            return; // recovery refused where nothing was promised
        }
    }
    // The end: drop the queue (which may hit an armed crash) and check what is left.
    let failed = m.st.crashed();
    m.restart(failed, Uncertain::None);
}

impl Model {
    fn q(&self) -> &Queue<Item> {
        self.q.as_ref().expect("queue open")
    }

    /// An operation failed: allowed only when the world stopped or a fault was injected.
    fn failed(&self, what: &str, e: &Error) {
        if matches!(e, Error::Poisoned) {
            assert!(
                self.st.crashed() || self.poison_ok.get(),
                "{what} says Poisoned, but every earlier failure of this queue was a full disk"
            );
        } else if !e.is_no_space() && !matches!(e, Error::AckNotDurable { .. }) {
            self.poison_ok.set(true);
        }
        assert!(
            self.st.crashed() || self.faulted,
            "{what} failed on a healthy file system: {e}"
        );
    }

    /// [`ModelOp::Crash`]: stops the world after `k` more mutating operations, with the
    /// crash kind `flags` picks; one crash at a time.
    fn arm(&mut self, k: u8, flags: u8) {
        if self.armed.is_some() {
            return;
        }
        let seed = u64::from(flags >> 3) + 1;
        let crash = match (self.durability, (flags >> 1) & 3) {
            (Durability::Synced, 0) => Crash::PowerLoss,
            (Durability::Synced, 1) => Crash::PowerLossPrefix(seed),
            (Durability::Written, 1) => Crash::PowerLoss,
            (Durability::Written, 3) => Crash::PowerLossPrefix(seed),
            (Durability::Synced | Durability::Written, 2) | (Durability::Buffered, 1) => {
                Crash::PowerLossPages(seed)
            }
            _ => Crash::Process,
        };
        self.st
            .crash_after(self.st.ops() + u64::from(k), flags & 1 != 0);
        self.armed = Some(crash);
    }

    /// Runs one operation; false when the run cannot go on.
    fn step(&mut self, op: ModelOp) -> bool {
        let mut uncertain = Uncertain::None;
        let mut failed = false;
        match op {
            ModelOp::Put(b) => {
                let item = model_item(self.pads.len() as u64, pad_len(b));
                self.pads.push(item.1.len());
                match self.q().put(&item) {
                    Ok(()) => self.waiting.push_back(item),
                    // A full disk: the item is not stored, and the queue goes on (the
                    // counters below check that it is not counted).
                    Err(e) if e.is_no_space() && !self.st.crashed() => self.failed("put", &e),
                    Err(e) => {
                        self.failed("put", &e);
                        uncertain = Uncertain::Put(item);
                        failed = true;
                    }
                }
            }
            // A failed get changes nothing and does not poison (FORMAT.md §Failures while
            // open): the run goes on; if the queue was poisoned, the next write fails.
            ModelOp::Get => {
                self.get();
            }
            ModelOp::TaskDone => match self.ack() {
                Ok(()) => {}
                Err(u) => {
                    uncertain = u;
                    failed = true;
                }
            },
            ModelOp::GetAck => {
                if self.get()
                    && let Err(u) = self.ack()
                {
                    uncertain = u;
                    failed = true;
                }
            }
            ModelOp::AckAll => {
                while !self.in_flight.is_empty() {
                    if let Err(u) = self.ack() {
                        uncertain = u;
                        failed = true;
                        break;
                    }
                }
            }
            ModelOp::Reopen(b) | ModelOp::Close(b) => {
                let q = self.q.take().expect("queue open");
                if matches!(op, ModelOp::Close(_)) {
                    if let Err(e) = q.close() {
                        self.failed("close", &e);
                        failed = true;
                    } else if self.durability == Durability::Synced {
                        self.soft.clear(); // its checkpoint recorded them durably
                    }
                } else {
                    drop(q);
                }
                self.opts = model_options(self.durability, b);
                return self.restart(failed || self.st.crashed(), Uncertain::None);
            }
            ModelOp::Crash(k, flags) => self.arm(k, flags),
            ModelOp::Fault(kind, skip) => {
                let ops = [
                    Op::Write,
                    Op::Sync,
                    Op::Rename,
                    Op::SetLen,
                    Op::Remove,
                    Op::SyncDir,
                    Op::Read,
                ];
                let on = ops[usize::from(kind & 7) % ops.len()];
                let fault = if on == Op::Write && kind & 0x80 != 0 {
                    Fault::Short(usize::from(skip >> 3) * 3)
                } else if kind & 0x40 != 0 {
                    Fault::Errno(5) // EIO
                } else {
                    Fault::Errno(28) // ENOSPC
                };
                self.st.inject(on, u64::from(skip & 7), fault);
                self.faulted = true;
            }
        }
        if failed || self.st.crashed() {
            return self.restart(true, uncertain);
        }
        // The counters agree with the model.
        let q = self.q();
        assert_eq!(q.len(), self.waiting.len(), "len after {op:?}");
        assert_eq!(
            q.unfinished(),
            self.waiting.len() + self.in_flight.len(),
            "unfinished after {op:?}"
        );
        true
    }

    /// `get_nowait` against the model; false when it failed (world stopped or fault), which
    /// leaves the model as it was.
    fn get(&mut self) -> bool {
        match self.q().get_nowait() {
            Ok(got) => {
                let want = self.waiting.pop_front();
                assert_eq!(Some(&got), want.as_ref(), "get returned the wrong item");
                self.in_flight.push_back(got);
                true
            }
            Err(Error::Empty) => {
                assert!(
                    self.waiting.is_empty(),
                    "get said empty, but {} items wait",
                    self.waiting.len()
                );
                true
            }
            Err(e) => {
                self.failed("get", &e);
                false
            }
        }
    }

    /// `task_done` against the model.
    fn ack(&mut self) -> Result<(), Uncertain> {
        match self.q().task_done() {
            Ok(()) => {
                assert!(
                    self.in_flight.pop_front().is_some(),
                    "task_done returned Ok with nothing gotten"
                );
                if self.durability != Durability::Buffered {
                    // Its journal entry (a head) covers the ones kept in memory.
                    self.soft.clear();
                }
                Ok(())
            }
            // Acknowledged in memory only: the queue goes on.
            Err(e)
                if (e.is_no_space() || matches!(e, Error::AckNotDurable { .. }))
                    && !self.st.crashed()
                    && self.durability != Durability::Buffered =>
            {
                self.failed("task_done", &e);
                let item = self.in_flight.pop_front();
                self.soft
                    .push(item.expect("task_done took effect with nothing gotten"));
                Ok(())
            }
            Err(Error::NothingToAcknowledge) => {
                assert!(
                    self.in_flight.is_empty(),
                    "task_done found nothing to acknowledge, but {} items were gotten",
                    self.in_flight.len()
                );
                Ok(())
            }
            Err(e) => {
                self.failed("task_done", &e);
                Err(if self.in_flight.is_empty() {
                    Uncertain::None
                } else {
                    Uncertain::Ack
                })
            }
        }
    }

    /// Closes the queue (if still open) and reopens it, as a process restart does. With
    /// `stopped`, the world stopped (crash) or an operation failed: the run goes on with
    /// what the crash (or, after a fault, a process death) leaves. Before the reopen,
    /// recovery is checked on a copy against what the level promises, and the model
    /// becomes what it found. False when recovery refused where nothing was promised.
    fn restart(&mut self, stopped: bool, mut uncertain: Uncertain) -> bool {
        drop(self.q.take());
        let mut stopped = stopped || self.st.crashed();
        loop {
            let promise = if stopped {
                let crash = match self.armed {
                    Some(c) if self.st.crashed() => c,
                    _ => Crash::Process,
                };
                self.st = self.st.after_crash(crash);
                self.armed = None;
                self.faulted = false;
                match (self.durability, crash) {
                    (Durability::Buffered | Durability::Written, Crash::PowerLossPages(_)) => {
                        Promise::Run
                    }
                    (Durability::Buffered, _) => Promise::Opens,
                    (Durability::Written, Crash::PowerLoss | Crash::PowerLossPrefix(_)) => {
                        Promise::Nothing
                    }
                    _ => Promise::Keeps,
                }
            } else if self.durability == Durability::Buffered && self.faulted {
                // Drop may have failed to write what was buffered, silently.
                Promise::Opens
            } else {
                Promise::Keeps
            };
            if !self.verify(promise, &uncertain) {
                return false;
            }
            // A second round (the reopen failed) starts from the model just verified.
            uncertain = Uncertain::None;
            if stopped {
                // The storage is now what the crash left, all of it durable.
                self.soft.clear();
            }
            match self.opts.open_on(Arc::new(self.st.clone()), DIR) {
                Ok(q) => {
                    self.q = Some(q);
                    self.poison_ok.set(false);
                    return true;
                }
                Err(e) => {
                    // The probe opened a copy, so only a crash or a fault explains this.
                    self.failed("reopen", &e);
                    stopped = true;
                }
            }
        }
    }

    /// [`Promise::Keeps`]: the items recovered are the model's, but for the one operation
    /// that failed as the world stopped, and a suffix of the acknowledgements kept in
    /// memory only, in front.
    fn check_keeps(&self, got: &[Item], base: &[Item], uncertain: &Uncertain) {
        let ids = |v: &[Item]| v.iter().map(|i| i.0).collect::<Vec<_>>();
        let check = |base: &[Item]| {
            got == base
                || match uncertain {
                    Uncertain::None => false,
                    Uncertain::Ack => !base.is_empty() && got[..] == base[1..],
                    Uncertain::Put(item) => {
                        got.len() == base.len() + 1
                            && got[..base.len()] == base[..]
                            && got.last() == Some(item)
                    }
                }
        };
        // Acknowledgements kept in memory only: the head on disk may cover any
        // prefix of them, so any suffix may come back, in front.
        let ok = (0..=self.soft.len()).any(|k| {
            let with_soft: Vec<Item> = self.soft[k..].iter().chain(base).cloned().collect();
            check(&with_soft)
        });
        assert!(
            ok,
            "recovery at {:?} gave items {:?}, the model has {:?} (uncertain: {:?})",
            self.durability,
            ids(got),
            ids(base),
            match uncertain {
                Uncertain::Put(i) => format!("put {}", i.0),
                u => format!("{u:?}"),
            }
        );
    }

    /// Opens a copy of the storage, drains it and checks the items against the model
    /// and `promise`; then the model holds what recovery found, all waiting.
    fn verify(&mut self, promise: Promise, uncertain: &Uncertain) -> bool {
        let probe = self.st.after_crash(Crash::Process);
        let q: Queue<Item> = match self.opts.open_on(Arc::new(probe), DIR) {
            Ok(q) => q,
            Err(e) if promise == Promise::Nothing && e.is_corrupt() => return false,
            Err(e) => panic!("recovery failed ({promise:?}): {e}"),
        };
        let len = q.len();
        assert_eq!(q.unfinished(), len, "unfinished != len right after open");
        let mut got = Vec::new();
        loop {
            match q.get_nowait() {
                Ok(item) => {
                    got.push(item);
                    assert!(got.len() <= self.pads.len(), "more items than were put");
                }
                Err(Error::Empty) => break,
                Err(e) if promise == Promise::Nothing && e.is_corrupt() => return false,
                Err(e) => panic!("get after recovery failed ({promise:?}): {e}"),
            }
        }
        assert_eq!(got.len(), len, "len at open was not the number of items");
        let base: Vec<Item> = self
            .in_flight
            .iter()
            .chain(&self.waiting)
            .cloned()
            .collect();
        let ids = |v: &[Item]| v.iter().map(|i| i.0).collect::<Vec<_>>();
        if promise == Promise::Keeps {
            self.check_keeps(&got, &base, uncertain);
        } else {
            for w in got.windows(2) {
                assert!(w[0].0 < w[1].0, "order broken: {:?}", ids(&got));
            }
            if promise == Promise::Run {
                // Acknowledged items may return, first; then a prefix of the model's
                // (with the put that failed as the world stopped, and without the item
                // whose acknowledgement failed then, either way).
                let mut allowed = base.clone();
                if let Uncertain::Put(item) = uncertain {
                    allowed.push(item.clone());
                }
                let first_kept = got.iter().position(|i| allowed.contains(i));
                let kept = &got[first_kept.unwrap_or(got.len())..];
                let prefix_of = |a: &[Item]| kept.len() <= a.len() && kept[..] == a[..kept.len()];
                let ack_went = matches!(uncertain, Uncertain::Ack) && !allowed.is_empty();
                assert!(
                    prefix_of(&allowed) || (ack_went && prefix_of(&allowed[1..])),
                    "recovery at {:?} gave items {:?}: not a prefix of the model's {:?}",
                    self.durability,
                    ids(&got),
                    ids(&base)
                );
            }
            for item in &got {
                let pad = self.pads.get(item.0 as usize).copied();
                assert!(
                    pad.is_some_and(|p| *item == model_item(item.0, p)),
                    "invented or damaged item {} after recovery",
                    item.0
                );
            }
        }
        self.in_flight.clear();
        // Those kept in memory that came back now wait; the older ones, acknowledged in
        // what this probe saw, may still come back after a power loss.
        let back = self.soft.iter().position(|i| got.contains(i));
        self.soft.truncate(back.unwrap_or(self.soft.len()));
        self.waiting = got.into();
        true
    }
}
