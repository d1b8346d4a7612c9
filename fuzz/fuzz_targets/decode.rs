//! Every decoder of the on-disk format on arbitrary bytes; see diskq::fuzzing::decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diskq::fuzzing::decode(data));
