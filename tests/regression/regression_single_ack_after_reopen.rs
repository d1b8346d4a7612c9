//! Found by the `open_dir` fuzz target (`fuzz/regressions/open_dir/
//! single-ack-absorbed-past-read`; the fuzzer's find was a 133-byte directory).
//!
//! What broke: after a reopen, an item acknowledged one by one (`Delivery::ack`) ahead of
//! the reader is absorbed by the acknowledgement head when `task_done` reaches it, which
//! moves `acked` past `read`. Put items 0 to 3, get 0, 1 and 2 as deliveries, acknowledge
//! only item 2, close, reopen; get and `task_done` items 0 and 1:
//!
//! * debug builds panic in the next `task_done` ("attempt to subtract with overflow" in
//!   `Engine::in_flight`, `read - acked - ...`);
//! * release builds go on with the wrapped counters: the next `get` returns item 2, which
//!   was acknowledged ("never delivered again", FORMAT.md), and item 3, whose put returned
//!   Ok and which nobody acknowledged, is never delivered: `len()` says 0.
//!
//! The reader must skip a single acknowledgement that the head absorbs before the reader
//! gets there (or the head must not pass `read`).

use diskq::storage::{Crash, SimStorage};
use diskq::{Options, Queue};
use std::sync::Arc;

const DIR: &str = "/regression/q";

#[test]
fn an_item_acknowledged_alone_is_not_delivered_again_and_the_rest_are() {
    let st = SimStorage::new();
    {
        let q: Queue<u32> = Options::new().open_on(Arc::new(st.clone()), DIR).unwrap();
        for i in 0..4 {
            q.put(&i).unwrap();
        }
        // Items 0 and 1 are gotten and not acknowledged: delivered again after the reopen.
        assert_eq!(q.get_delivery().unwrap().into_inner(), 0);
        assert_eq!(q.get_delivery().unwrap().into_inner(), 1);
        let d2 = q.get_delivery().unwrap();
        assert_eq!(d2.ack().unwrap(), 2);
        q.close().unwrap();
    }
    let q: Queue<u32> = Options::new()
        .open_on(Arc::new(st.after_crash(Crash::Process)), DIR)
        .unwrap();
    assert_eq!(q.len(), 3, "items 0, 1 and 3 wait");
    let mut got = Vec::new();
    while let Ok(item) = q.get_nowait() {
        got.push(item);
        q.task_done().unwrap();
        assert!(got.len() <= 4, "{got:?}");
    }
    assert_eq!(got, [0, 1, 3], "item 2 was acknowledged, item 3 was not");
    assert_eq!((q.len(), q.unfinished()), (0, 0));
}
