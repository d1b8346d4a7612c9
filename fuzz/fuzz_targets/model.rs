//! Operations, reopens, crash points and faults against a VecDeque model; see diskq::fuzzing::model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diskq::fuzzing::model(data));
