//! First throughput measurement (issue 2): 1,000,000 items of 64 bytes, put then
//! get + task_done, at each durability level; medians of several runs.
//!
//! `cargo bench --bench throughput` (set DISKQ_BENCH_ITEMS to change the count).
//!
//! It also measures the storage seam: the same 72-byte appends through the queue's
//! `Box<dyn StorageFile>` (`FsStorage`: copies into a shared mapping of reserved space,
//! FORMAT.md §Preallocation) and through `std::fs::File` directly (one `write(2)` each),
//! in one run: the ratio is what the mapping saves per append.

use diskq::storage::{FsStorage, OpenMode, Storage};
use diskq::{Durability, Options, Queue};
use std::io::Write;
use std::time::Instant;

/// Appends per second: (through the seam, straight to `std::fs::File`).
fn seam(n: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let frame = [7u8; 72];
    let mut f = FsStorage
        .open(&dir.path().join("a"), OpenMode::CreateNew)
        .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        f.append(&frame).unwrap();
    }
    let through = n as f64 / t.elapsed().as_secs_f64();
    let mut g = std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(dir.path().join("b"))
        .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        g.write_all(&frame).unwrap();
    }
    (through, n as f64 / t.elapsed().as_secs_f64())
}

fn run(durability: Durability, items: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new()
        .durability(durability)
        .open(dir.path())
        .unwrap();
    let payloads: Vec<Vec<u8>> = (0..256u32)
        .map(|i| (0..64u32).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect();
    let t = Instant::now();
    for i in 0..items {
        q.put(&payloads[i % payloads.len()]).unwrap();
    }
    let put = items as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..items {
        let got = q.get().unwrap();
        debug_assert_eq!(got, payloads[i % payloads.len()]);
        q.task_done().unwrap();
    }
    let get = items as f64 / t.elapsed().as_secs_f64();
    q.close().unwrap();
    (put, get)
}

/// One producer thread and one consumer thread (get + task_done): items/s end to end.
fn interleaved(durability: Durability, items: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<Vec<u8>> = Options::new()
        .durability(durability)
        .open(dir.path())
        .unwrap();
    let payload = vec![5u8; 64];
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..items {
                q.put(&payload).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..items {
                q.get().unwrap();
                q.task_done().unwrap();
            }
        });
    });
    items as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let items: usize = std::env::var("DISKQ_BENCH_ITEMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "{:<10} {:>10} {:>16} {:>22}",
        "level", "items", "put items/s", "get+task_done items/s"
    );
    for (name, level, n, runs) in [
        ("buffered", Durability::Buffered, items, 5),
        ("written", Durability::Written, items, 5),
        ("synced", Durability::Synced, 2_000, 3),
    ] {
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (p, g) = run(level, n);
            puts.push(p);
            gets.push(g);
        }
        println!(
            "{name:<10} {n:>10} {:>16.0} {:>22.0}",
            median(puts),
            median(gets)
        );
    }
    for (name, level) in [
        ("buffered", Durability::Buffered),
        ("written", Durability::Written),
    ] {
        let rates: Vec<f64> = (0..3).map(|_| interleaved(level, items)).collect();
        println!(
            "{name:<10} {items:>10} interleaved (1 producer, 1 consumer): {:.0} items/s",
            median(rates)
        );
    }
    let (mut via, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (a, b) = seam(items);
        via.push(a);
        direct.push(b);
    }
    let (a, b) = (median(via), median(direct));
    println!(
        "storage seam: {a:.0} appends/s through Box<dyn StorageFile> (mapped), {b:.0}/s with std::fs::File (write(2)): ratio {:.3}",
        a / b
    );
}
