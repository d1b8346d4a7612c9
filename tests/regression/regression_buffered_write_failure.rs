//! Regression: at the buffered level, a `get` that had to write pending items as group-commit
//! leader, and failed (an injected write fault), dropped those items from `len()`: the
//! failed batch's count was neither written nor kept as pending, so `len()` said 0 where
//! 5 items were accepted. Found by the `model` fuzz program below (also checked in as
//! `fuzz/regressions/model/buffered-get-write-failure-len`).

#[test]
fn failed_buffered_write_keeps_len() {
    diskq::fuzzing::model(&[
        176, 0, 0, 30, 2, 181, 6, 251, 137, 0, 197, 0, 0, 40, 0, 38, 237, 72, 0, 0, 0, 126, 241, 0,
        158, 223, 167, 0, 237, 0, 2, 94, 143, 0, 65, 116, 0, 1, 184, 142, 151, 35,
    ]);
}
