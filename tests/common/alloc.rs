//! A global allocator that counts, per thread, the bytes allocated and not yet freed: a
//! test file that declares it (`#[global_allocator] static A: Counting = Counting;`) can
//! see whether memory stays bounded. Per thread, so that tests running in parallel do not
//! disturb each other (the queue's bookkeeping grows in the caller's thread, under the
//! queue lock).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn add(n: i64) {
    // `try_with`: no counting while the thread-local is torn down.
    let _ = NET.try_with(|c| c.set(c.get() + n));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counting beside it only touches a thread-local `Cell`
// (const-initialized, so no allocation) through `try_with` (no panic while the
// thread-local is torn down).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as i64);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as i64));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as i64);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as i64 - l.size() as i64);
        unsafe { System.realloc(p, l, new) }
    }
}

/// Bytes allocated and not freed by this thread so far.
pub fn net() -> i64 {
    NET.with(Cell::get)
}
