//! Three ways a power loss after an earlier crash broke recovery, found by a long random
//! run of the `model` fuzz body (issue #15); the minimized inputs are in
//! `fuzz/regressions/model/`.
//!
//! * A (`A1-*`, `A2-*`): a checkpoint interrupted after writing `info.tmp` left it
//!   behind; the next checkpoint truncated and reused it, and a power loss below `Synced`
//!   kept the rename but gave the file back its old bytes: a partial `info` (open refused)
//!   or a stale one (acknowledgements of the crashed session re-applied, an item lost from
//!   the front). Now the leftover is removed and a new file made (`write_atomic`).
//! * B (`B-*`): recovery cut a torn record without syncing the cut below `Synced`; the
//!   next record went over it, and a power loss kept the old page under the new length:
//!   zeros completed the cut frame, and the dropped item came back in place of the new
//!   one. Now the cut is synced at every level.
//! * C (`C-*`): at `Synced`, a checkpoint's sync of the emptied journal failed (the
//!   queue poisoned); the reopen in the same boot wrote new entries over old ones that a
//!   power loss could bring back, marked as synced after a torn new one: `Corrupt`. Now
//!   the journal is synced at open at `Synced`.

use std::path::Path;

#[test]
fn the_minimized_inputs_keep_every_promise() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/model");
    let mut n = 0;
    for name in [
        "A1-written-info-corrupt-nofault",
        "A1-written-info-corrupt-shortwrite",
        "A2-buffered-front-loss-nofault",
        "A2-buffered-front-loss-renamefault",
        "B-written-resurrect-nofault",
        "B-written-resurrect-shortwrite",
        "C-synced-acks-corrupt-syncfault",
    ] {
        let data = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        diskq::fuzzing::model(&data);
        n += 1;
    }
    assert_eq!(n, 7);
}
