//! A queue directory whose files are arbitrary bytes; see diskq::fuzzing::open_dir.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diskq::fuzzing::open_dir(data));
