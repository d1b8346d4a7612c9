//! Payload encoding (FORMAT.md §Payload): bincode 1 with fixed-width little-endian
//! integers. Decoding is bincode's own ([`decode`]; a `Vec<u8>` item is copied out whole);
//! encoding is [`Frames::push`], which writes the same bytes as bincode's serializer,
//! faster, straight into frames.
//!
//! Why not bincode's serializer: serde hands a `Vec<u8>` over one byte at a time, and
//! bincode appends each through `&mut Vec<u8>`, so every byte stores and reloads the
//! vector's length (28% of a Buffered put of 64-byte `Vec<u8>` items). [`Encoder`] keeps
//! its write position in a field of a struct serde borrows mutably, which the compiler
//! can hold in a register across such a loop, and writes into room made ahead of time.
//! A slice or `Vec` of bytes, which serde hands to `collect_seq` as a slice iterator, it
//! copies whole (`as_bytes`).

use crate::error::Error;
use crate::format::{FRAME_HEADER_LEN, FrameCrc, MAX_ITEM_LEN};
use bincode::{ErrorKind, Options as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Serializer};

/// The options payloads are decoded with (and would be encoded with): FORMAT.md §Payload.
pub(crate) fn options() -> impl bincode::Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Decodes a payload as a `T`, as bincode does with [`options`].
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> bincode::Result<T> {
    if let Some(v) = as_byte_vec(payload) {
        return Ok(v);
    }
    options()
        .with_limit(payload.len() as u64)
        .deserialize(payload)
}

/// A payload as a `T` that is `Vec<u8>`, in one copy, when it is a well-formed one:
/// serde's visitor for a `Vec<u8>` takes the bytes one at a time (about 2 ns a byte here).
/// Anything else, including every payload bincode would reject, is left to bincode.
#[allow(unsafe_code)]
fn as_byte_vec<T>(payload: &[u8]) -> Option<T> {
    if typeid::of::<T>() != typeid::of::<Vec<u8>>() {
        return None;
    }
    let (len, bytes) = payload.split_first_chunk::<8>()?;
    if u64::from_le_bytes(*len) != bytes.len() as u64 {
        return None;
    }
    let v = std::mem::ManuallyDrop::new(bytes.to_vec());
    // SAFETY: `typeid::of` erases only lifetimes, and `Vec<u8>` has none, so equal ids
    // mean `T` is `Vec<u8>`: the copy reads a `Vec<u8>` as itself. `v` is not dropped
    // (`ManuallyDrop`), so the buffer has exactly one owner, the returned value.
    Some(unsafe { std::mem::transmute_copy::<Vec<u8>, T>(&v) })
}

/// A buffer of whole frames (FORMAT.md §Records) built from items: `buf[..end]` holds the
/// frames, `buf[end..]` is initialized room kept for the next ones, so that a thread's
/// buffer or a batch does not zero or grow its memory on every item.
#[derive(Default)]
pub(crate) struct Frames {
    buf: Vec<u8>,
    end: usize,
    crc: FrameCrc,
}

impl Frames {
    pub(crate) const fn new() -> Frames {
        Frames {
            buf: Vec::new(),
            end: 0,
            crc: FrameCrc::new(),
        }
    }

    /// The frames pushed since the last [`clear`](Self::clear).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.end]
    }

    pub(crate) fn clear(&mut self) {
        self.end = 0;
    }

    /// The frames, as a vector of exactly their bytes.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        let mut buf = self.buf;
        buf.truncate(self.end);
        buf
    }

    /// Memory held, room included.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Makes capacity for `additional` more bytes of frames, without touching them.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = self.end.saturating_add(additional);
        self.buf.reserve(want.saturating_sub(self.buf.len()));
    }

    /// Appends `item` as one frame and returns where the frames now end. On error nothing
    /// is appended.
    ///
    /// # Errors
    /// [`Error::Encode`] when serde fails, [`Error::TooLarge`] past [`MAX_ITEM_LEN`].
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> crate::Result<usize> {
        let start = self.end;
        // Empty until the buffer is back: a `Serialize` impl that panics leaves an empty
        // `Frames`, not an `end` past a taken buffer.
        self.end = 0;
        let mut enc = Encoder {
            buf: std::mem::take(&mut self.buf),
            pos: start,
        };
        // The header's place; `seal` fills it in.
        enc.bytes(&[0; FRAME_HEADER_LEN]);
        let res = item.serialize(&mut enc);
        let Encoder { buf, pos } = enc;
        self.buf = buf;
        self.end = start;
        res.map_err(Error::Encode)?;
        let len = pos - start - FRAME_HEADER_LEN;
        if len > MAX_ITEM_LEN {
            return Err(Error::TooLarge {
                len,
                max: MAX_ITEM_LEN,
            });
        }
        self.crc.seal(&mut self.buf[start..pos]);
        self.end = pos;
        Ok(pos)
    }
}

/// Writes at `pos` in `buf`; `buf[pos..]` is room for what comes next. Keeping the room
/// initialized lets every write be a checked slice write, with no unsafe code.
struct Encoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Encoder {
    #[inline]
    fn byte(&mut self, b: u8) {
        // One comparison on the fast path (a check and then an index would be two).
        match self.buf.get_mut(self.pos) {
            Some(slot) => *slot = b,
            None => {
                self.make_room(1);
                self.buf[self.pos] = b;
            }
        }
        self.pos += 1;
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        if end > self.buf.len() {
            self.make_room(b.len());
        }
        self.buf[self.pos..end].copy_from_slice(b);
        self.pos = end;
    }

    #[inline]
    fn len(&mut self, n: usize) {
        // bincode writes lengths as u64; usize is at most 64 bits on supported targets.
        self.bytes(&(n as u64).to_le_bytes());
    }

    /// Makes at least `n` bytes of room, and some slack so that small writes after it
    /// do not come back here. The vector is moved through a value so
    /// that `self` is never handed to an out-of-line call, which is what lets the hot
    /// loops keep `pos` in a register.
    #[inline(always)]
    fn make_room(&mut self, n: usize) {
        self.buf = grown(std::mem::take(&mut self.buf), self.pos, n);
    }

    /// Room for a sequence or map of `n` elements, each usually at least one byte: one
    /// growth up front instead of several (a `Vec<u8>` then takes exactly this). Capped,
    /// since elements can take no bytes and a `Serialize` impl may announce more than it
    /// gives.
    #[inline]
    fn expect(&mut self, n: usize) {
        let n = n.min(64 << 10);
        if self.buf.len() - self.pos < n {
            self.make_room(n);
        }
    }
}

/// The bytes `iter` has left when it is an iterator over a byte slice.
#[allow(unsafe_code)]
fn as_bytes<I>(iter: &I) -> Option<&[u8]> {
    if typeid::of::<I>() != typeid::of::<std::slice::Iter<'static, u8>>() {
        return None;
    }
    // SAFETY: the type ids are equal, and `typeid::of` erases only lifetimes, so `I` is
    // `slice::Iter<'x, u8>` for some `'x`. Lifetimes do not change a type's layout, so
    // the cast reads an `I` as itself. The reference `&'r I` exists, so `I: 'r`, that is
    // `'x: 'r`: the slice, borrowed for `'r`, is within what the iterator borrows.
    let iter = unsafe { &*(iter as *const I).cast::<std::slice::Iter<'_, u8>>() };
    Some(iter.as_slice())
}

/// Slack zeroed past what a write needs.
const SLACK: usize = 256;

#[cold]
#[inline(never)]
fn grown(mut buf: Vec<u8>, pos: usize, n: usize) -> Vec<u8> {
    // `resize` grows the capacity geometrically. The room grows with what is written,
    // by up to 64 KiB at a time, so a long value comes back here once per 64 KiB at most,
    // and the unused room at the end is at most half of what was written (or 64 KiB).
    let slack = SLACK.max((pos / 2).min(64 << 10));
    buf.resize(pos + n + slack, 0);
    buf
}

impl Serializer for &mut Encoder {
    type Ok = ();
    type Error = bincode::Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> bincode::Result<()> {
        self.byte(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> bincode::Result<()> {
        self.byte(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> bincode::Result<()> {
        self.byte(v as u8);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> bincode::Result<()> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    /// As bincode 1: the UTF-8 bytes, no length.
    fn serialize_char(self, v: char) -> bincode::Result<()> {
        self.bytes(v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> bincode::Result<()> {
        self.len(v.len());
        self.bytes(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> bincode::Result<()> {
        self.len(v.len());
        self.bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> bincode::Result<()> {
        self.byte(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> bincode::Result<()> {
        self.byte(1);
        v.serialize(self)
    }
    fn serialize_unit(self) -> bincode::Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> bincode::Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
    ) -> bincode::Result<()> {
        self.serialize_u32(idx)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> bincode::Result<()> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        v: &T,
    ) -> bincode::Result<()> {
        self.bytes(&idx.to_le_bytes());
        v.serialize(self)
    }
    /// Serde's `Serialize` for `[T]` and `Vec<T>` hands the slice's iterator here. A slice
    /// of bytes is written with one copy; its elements would each have written their one
    /// byte (`serialize_u8`), so the bytes are the same (6x faster for 4 KiB `Vec<u8>`s).
    fn collect_seq<I>(self, iter: I) -> bincode::Result<()>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let iter = iter.into_iter();
        if let Some(bytes) = as_bytes(&iter) {
            self.len(bytes.len());
            self.bytes(bytes);
            return Ok(());
        }
        // Serde's own default.
        let len = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let mut seq = self.serialize_seq(len)?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> bincode::Result<Self> {
        let len = len.ok_or(ErrorKind::SequenceMustHaveLength)?;
        self.len(len);
        self.expect(len);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> bincode::Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> bincode::Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        _: usize,
    ) -> bincode::Result<Self> {
        self.bytes(&idx.to_le_bytes());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> bincode::Result<Self> {
        let len = len.ok_or(ErrorKind::SequenceMustHaveLength)?;
        self.len(len);
        self.expect(len);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> bincode::Result<Self> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        _: usize,
    ) -> bincode::Result<Self> {
        self.bytes(&idx.to_le_bytes());
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// One impl for every compound: bincode writes elements, fields, keys and values back to
/// back, with nothing between or after them.
macro_rules! compound {
    ($($trait:ident :: $method:ident ($($key:ty)?);)*) => {$(
        impl ser::$trait for &mut Encoder {
            type Ok = ();
            type Error = bincode::Error;
            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $(_: $key,)?
                v: &T,
            ) -> bincode::Result<()> {
                v.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> bincode::Result<()> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element();
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(&'static str);
    SerializeStructVariant::serialize_field(&'static str);
}

impl ser::SerializeMap for &mut Encoder {
    type Ok = ();
    type Error = bincode::Error;
    fn serialize_key<K: Serialize + ?Sized>(&mut self, k: &K) -> bincode::Result<()> {
        k.serialize(&mut **self)
    }
    fn serialize_value<V: Serialize + ?Sized>(&mut self, v: &V) -> bincode::Result<()> {
        v.serialize(&mut **self)
    }
    fn end(self) -> bincode::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame_into;
    use quickcheck::{Arbitrary, Gen, QuickCheck};
    use serde::ser::SerializeSeq;
    use std::collections::{BTreeMap, HashMap};

    /// The bytes bincode's own serializer writes.
    fn reference<T: Serialize + ?Sized>(v: &T) -> bincode::Result<Vec<u8>> {
        options().serialize(v)
    }

    /// Frames of bincode's encodings of `values`, one after another.
    fn framed(values: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            frame_into(&mut out, &reference(v).unwrap());
        }
        out
    }

    /// Ours, pushed after a frame already in the buffer (as in a batch), checked against
    /// bincode's payload framed by `frame_into`.
    fn same<T: Serialize + ?Sized>(prefix: &[u8], v: &T) -> bool {
        let mut frames = Frames::default();
        frames.push(prefix).unwrap();
        let before = frames.bytes().to_vec();
        match (frames.push(v), reference(v)) {
            (Ok(end), Ok(theirs)) => {
                let mut expected = before;
                frame_into(&mut expected, &theirs);
                end == expected.len() && frames.bytes() == expected
            }
            (Err(Error::Encode(a)), Err(b)) => {
                a.to_string() == b.to_string() && frames.bytes() == before
            }
            _ => false,
        }
    }

    #[derive(Serialize, Clone, Debug)]
    enum Shape {
        Unit,
        Newtype(i16),
        Tuple(u8, String),
        Struct { x: f32, tag: Option<char> },
    }

    impl Arbitrary for Shape {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 4 {
                0 => Shape::Unit,
                1 => Shape::Newtype(i16::arbitrary(g)),
                2 => Shape::Tuple(u8::arbitrary(g), String::arbitrary(g)),
                _ => Shape::Struct {
                    x: f32::arbitrary(g),
                    tag: Option::arbitrary(g),
                },
            }
        }
    }

    #[derive(Serialize, Clone, Debug)]
    struct Record {
        bytes: Vec<u8>,
        #[serde(with = "serde_bytes")]
        raw: Vec<u8>,
        text: String,
        ints: (u16, u32, u64, i8, i32, i64, u128, i128),
        floats: (f64, bool, char, ()),
        shapes: Vec<Shape>,
        nested: Vec<Vec<String>>,
        map: BTreeMap<u8, Option<u64>>,
        hash: HashMap<String, Vec<u8>>,
        unit: Marker,
        newtype: Wrap,
    }

    #[derive(Serialize, Clone, Debug)]
    struct Marker;

    #[derive(Serialize, Clone, Debug)]
    struct Wrap(u64);

    impl Arbitrary for Record {
        fn arbitrary(g: &mut Gen) -> Self {
            Record {
                bytes: Arbitrary::arbitrary(g),
                raw: Arbitrary::arbitrary(g),
                text: Arbitrary::arbitrary(g),
                ints: Arbitrary::arbitrary(g),
                floats: Arbitrary::arbitrary(g),
                shapes: Arbitrary::arbitrary(g),
                nested: Arbitrary::arbitrary(g),
                map: Arbitrary::arbitrary(g),
                hash: Arbitrary::arbitrary(g),
                unit: Marker,
                newtype: Wrap(Arbitrary::arbitrary(g)),
            }
        }
    }

    #[test]
    fn writes_what_bincode_writes() {
        fn prop(prefix: Vec<u8>, r: Record) -> bool {
            same(&prefix, &r)
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, Record) -> bool);
    }

    #[test]
    fn writes_what_bincode_writes_for_large_byte_vectors() {
        for len in [0, 1, 63, 64, 255, 256, 257, 4096, 70_000, (1 << 20) + 3] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert!(same(b"", &v), "len {len}");
            assert!(same(&[9; 300], &v), "len {len} after a prefix");
            assert!(
                same(b"", &(v.clone(), "tail".to_string())),
                "len {len} then more"
            );
        }
    }

    #[test]
    fn byte_slices_in_every_form_write_what_bincode_writes() {
        use std::borrow::Cow;
        use std::collections::{BTreeSet, VecDeque};
        let v: Vec<u8> = (0..300).map(|i| (i * 5) as u8).collect();
        // The forms serde hands over as a slice iterator (the one-copy path)...
        assert!(same(b"", &v[..]));
        assert!(same(b"", &v.clone().into_boxed_slice()));
        assert!(same(b"", &Cow::<[u8]>::Borrowed(&v)));
        assert!(same(b"", &(7u8, &v[10..20], vec![v.clone(), Vec::new()])));
        // ...and others that must go element by element: other iterators over bytes,
        // and slices of other types, however alike.
        assert!(same(b"", &v.iter().copied().collect::<VecDeque<u8>>()));
        assert!(same(b"", &v.iter().copied().collect::<BTreeSet<u8>>()));
        assert!(same(b"", &v.iter().map(|&b| b as i8).collect::<Vec<i8>>()));
        assert!(same(b"", &v.iter().map(|&b| b != 0).collect::<Vec<bool>>()));
        assert!(same(
            b"",
            &v.iter().map(|&b| b as u16).collect::<Vec<u16>>()
        ));
        assert!(same(b"", &[&v[..3], &v[3..]]));
    }

    #[test]
    fn byte_vectors_decode_as_bincode_decodes_them() {
        /// Ours against bincode's: the same vector, or errors that read the same.
        fn prop(payload: Vec<u8>) -> bool {
            let ours = decode::<Vec<u8>>(&payload).map_err(|e| e.to_string());
            let theirs = options()
                .with_limit(payload.len() as u64)
                .deserialize::<Vec<u8>>(&payload)
                .map_err(|e| e.to_string());
            ours == theirs
        }
        let framed = |v: &[u8], len: u64| [&len.to_le_bytes()[..], v].concat();
        for len in [0, 1, 64, 4096] {
            let v: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
            let good = framed(&v, len as u64);
            assert_eq!(decode::<Vec<u8>>(&good).unwrap(), v);
            assert!(prop(good.clone()));
            // A length that lies either way, a cut length, bytes after the vector.
            assert!(prop(framed(&v, len as u64 + 1)));
            assert!(prop(framed(&v, (len as u64).wrapping_sub(1))));
            assert!(prop(framed(&v, u64::MAX)));
            assert!(prop(good[..good.len().min(5)].to_vec()));
            assert!(prop([&good[..], &[0]].concat()));
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
        // Other types are bincode's alone, also those that look like a byte vector.
        let v = framed(b"abc", 3);
        assert_eq!(decode::<String>(&v).unwrap(), "abc");
        assert_eq!(decode::<Vec<i8>>(&v).unwrap(), vec![97, 98, 99]);
        assert_eq!(decode::<(u64, [u8; 3])>(&v).unwrap(), (3, *b"abc"));
    }

    /// Announces `claimed` elements and gives `given`; an unknown length when `None`.
    struct Lying {
        claimed: Option<usize>,
        given: usize,
    }

    impl Serialize for Lying {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(self.claimed)?;
            for i in 0..self.given {
                seq.serialize_element(&(i as u32))?;
            }
            seq.end()
        }
    }

    #[test]
    fn sequence_lengths_are_written_as_announced_without_trusting_them() {
        // bincode writes the announced length and the elements given; so do we, and a
        // huge announcement makes room for at most 1 MiB, not for what it claims.
        for (claimed, given) in [(0, 3), (5, 2), (usize::MAX, 1), (1 << 40, 0)] {
            let lying = Lying {
                claimed: Some(claimed),
                given,
            };
            assert!(same(b"x", &lying), "claimed {claimed}, given {given}");
        }
        let mut frames = Frames::default();
        let lying = Lying {
            claimed: Some(usize::MAX),
            given: 0,
        };
        frames.push(&lying).unwrap();
        assert_eq!(frames.bytes()[FRAME_HEADER_LEN..], usize::MAX.to_le_bytes());
        assert!(
            frames.capacity() < 4 << 20,
            "capacity {}",
            frames.capacity()
        );
    }

    #[test]
    fn unknown_lengths_and_custom_errors_fail_as_in_bincode() {
        let unknown = Lying {
            claimed: None,
            given: 2,
        };
        match Frames::default().push(&unknown) {
            Err(Error::Encode(e)) => assert!(matches!(*e, ErrorKind::SequenceMustHaveLength)),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(same(b"", &unknown));

        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("not today"))
            }
        }
        match Frames::default().push(&(1u8, Refuses)) {
            Err(Error::Encode(e)) => assert_eq!(e.to_string(), "not today"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(same(b"", &(1u8, Refuses)));
    }

    #[test]
    fn a_failed_push_leaves_the_frames_as_they_were() {
        let mut frames = Frames::default();
        frames.push("first").unwrap();
        let before = frames.bytes().to_vec();
        let unknown = Lying {
            claimed: None,
            given: 0,
        };
        // Fails after writing its first bytes into the room.
        frames.push(&(vec![7u8; 5000], unknown)).unwrap_err();
        assert_eq!(frames.bytes(), before);
        frames.push("second").unwrap();
        assert_eq!(frames.bytes(), framed(&["first", "second"]));
        frames.clear();
        assert!(frames.bytes().is_empty());
        frames.push("third").unwrap();
        assert_eq!(frames.bytes(), framed(&["third"]));
    }

    #[test]
    fn zero_sized_elements_do_not_make_room_for_themselves() {
        let mut frames = Frames::new();
        assert!(same(b"", &vec![(); 1 << 20]));
        frames.push(&vec![(); 1 << 20]).unwrap();
        assert_eq!(frames.bytes().len(), FRAME_HEADER_LEN + 8);
        assert!(
            frames.capacity() < 256 << 10,
            "capacity {}",
            frames.capacity()
        );
    }

    #[test]
    fn a_panicking_item_leaves_usable_frames() {
        struct Panics;
        impl Serialize for Panics {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("serialize panics")
            }
        }
        let mut frames = Frames::new();
        frames.push("before").unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = frames.push(&(1u32, Panics));
        }));
        assert!(caught.is_err());
        assert!(frames.bytes().is_empty());
        frames.push("after").unwrap();
        assert_eq!(frames.bytes(), framed(&["after"]));
    }
}
