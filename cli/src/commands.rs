//! The subcommands. Each returns the exit status: 0, or 1 when `verify` finds damage or
//! when damage stopped the scan of `stat`, `dump`, `tail` or `dead-letters list` (what
//! they show then covers only the records before it); errors go to `main`, which prints
//! them and exits with 2.

use crate::show::{self, Format};
use diskq::{DamagedRange, Inspector, RawItem};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::error::Error;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

type Res = Result<ExitCode, Box<dyn Error>>;

/// The exit status when damage was found (`verify`), or stopped a scan.
const DAMAGE: u8 = 1;

/// Says on stderr that damage stopped a scan of `dir`, so that `shown` covers only the
/// records before it, and where to go from there; the exit status that says so.
fn stopped(dir: &Path, at: &DamagedRange, shown: &str) -> ExitCode {
    eprintln!(
        "diskq: the scan stopped at damage in {} at offset {} ({}): {shown} only the records \
         before it. `diskq verify {}` lists the damage; `diskq repair {}` salvages the intact \
         records after it",
        at.file.display(),
        at.offset,
        at.detail,
        dir.display(),
        dir.display()
    );
    ExitCode::from(DAMAGE)
}

/// The exit status of a scan that `stopped_at` damage, or not.
fn finish(dir: &Path, stopped_at: Option<&DamagedRange>, shown: &str) -> ExitCode {
    stopped_at.map_or(ExitCode::SUCCESS, |at| stopped(dir, at, shown))
}

/// A spinner on stderr for a scan that may take more than a second: it appears only
/// after one second, and only on a terminal.
fn spinner(what: &'static str) -> ProgressBar {
    let pb = ProgressBar::hidden();
    let shown = pb.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        if !shown.is_finished() {
            shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            shown.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap());
            shown.set_message(what);
            shown.enable_steady_tick(Duration::from_millis(100));
        }
    });
    pb
}

fn scan<T>(what: &'static str, f: impl FnOnce() -> diskq::Result<T>) -> diskq::Result<T> {
    let pb = spinner(what);
    let res = f();
    pb.finish_and_clear();
    res
}

pub fn stat(dir: &Path, json: bool) -> Res {
    let i = Inspector::open(dir)?;
    let s = scan("reading the queue", || i.snapshot())?;
    let schema = i.schema()?;
    if json {
        let doc = json!({
            "dir": dir.to_string_lossy(),
            "format_version": s.format_version,
            "schema": schema,
            "waiting": s.waiting,
            "delivered": s.delivered,
            "delayed": s.delayed,
            "dead_letters": s.dead_letters,
            "oldest_seq": s.oldest_seq,
            "oldest_age_ms": s.oldest_age.map(|d| d.as_millis() as u64),
            "next_seq": s.next_seq,
            "bytes_on_disk": s.bytes_on_disk,
            "files": s.files,
            "chunk_files": s.chunk_files,
            "paused": s.paused,
            "open_by_pid": s.owner_pid,
            "stopped_at": s.stopped_at.as_ref().map(show::damage_json),
        });
        println!("{doc}");
        return Ok(finish(dir, s.stopped_at.as_ref(), "the counts cover"));
    }
    println!("queue         {}", dir.display());
    println!("waiting       {}", show::count(s.waiting, "item"));
    println!(
        "  delivered   {} (handed out at least once, not acknowledged)",
        s.delivered
    );
    println!("  delayed     {} (given back until a due time)", s.delayed);
    println!("dead letters  {}", s.dead_letters);
    match (s.oldest_seq, s.oldest_age) {
        (Some(seq), Some(age)) => println!("oldest        item {seq}, put {} ago", show::age(age)),
        (Some(seq), None) => println!("oldest        item {seq} (put time not recorded)"),
        _ => println!("oldest        -"),
    }
    println!("next seq      {}", s.next_seq);
    println!(
        "on disk       {} in {} ({})",
        show::bytes(s.bytes_on_disk),
        show::count(s.files, "file"),
        show::count(s.chunk_files, "chunk file")
    );
    println!(
        "format        version {}, item type {}",
        s.format_version,
        schema.as_deref().unwrap_or("(not recorded)")
    );
    match s.owner_pid {
        Some(pid) => println!("open          yes, by process {pid}"),
        None => println!("open          no"),
    }
    println!("paused        {}", if s.paused { "yes" } else { "no" });
    Ok(finish(dir, s.stopped_at.as_ref(), "the counts above cover"))
}

pub fn verify(dir: &Path, json: bool) -> Res {
    let i = Inspector::open(dir)?;
    let v = scan("checking every file", || i.verify())?;
    if json {
        let damage: Vec<_> = v.damage.iter().map(show::damage_json).collect();
        let doc = json!({
            "dir": dir.to_string_lossy(),
            "healthy": v.healthy(),
            "records": v.records,
            "live": v.live,
            "damage": damage,
            "problems": v.problems,
        });
        println!("{doc}");
    } else {
        for d in &v.damage {
            println!(
                "damage   {} at offset {}, {} bytes: {}",
                d.file.display(),
                d.offset,
                d.len,
                d.detail
            );
        }
        for p in &v.problems {
            println!("problem  {p}");
        }
        let open = if v.live {
            " (open by another process)"
        } else {
            ""
        };
        if v.healthy() {
            println!(
                "healthy: {} checked{open}",
                show::count(v.records, "record")
            );
        } else {
            println!(
                "damaged: {}, {}, {} checked{open}; `diskq repair` salvages the intact records",
                show::count(v.damage.len() as u64, "damaged range"),
                show::count(v.problems.len() as u64, "problem"),
                show::count(v.records, "record")
            );
        }
    }
    Ok(if v.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DAMAGE)
    })
}

/// Writes items to stdout in `format`; false when stdout was closed.
fn write_items(out: &mut impl Write, items: &[RawItem], format: Format) -> bool {
    for it in items {
        let res = match format {
            Format::Raw => out.write_all(&it.payload),
            Format::Json => {
                let mut o = json!({"seq": it.seq, "len": it.payload.len(), "put_at_ms": it.put_at_ms, "attempts": it.attempts});
                o["payload"] = show::payload_json(&it.payload);
                writeln!(out, "{o}")
            }
            Format::Text => {
                let when = it
                    .put_at_ms
                    .map_or(String::new(), |ms| format!("  put {}", show::ago(ms)));
                writeln!(
                    out,
                    "{:>10}  {:>6} B{when}  {}",
                    it.seq,
                    it.payload.len(),
                    show::payload(&it.payload)
                )
            }
        };
        if res.is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

pub fn dump(dir: &Path, from: u64, limit: Option<usize>, format: Format) -> Res {
    let i = Inspector::open(dir)?;
    let listed = scan("reading the items", || {
        i.items(from, limit.unwrap_or(usize::MAX))
    })?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if write_items(&mut out, &listed.items, format) {
        write_stop(&mut out, listed.stopped_at.as_ref(), format);
    }
    let shown = "the items shown are";
    Ok(finish(dir, listed.stopped_at.as_ref(), shown))
}

/// With `--json`, a last line `{"stopped_at": {...}}` after the items when damage
/// stopped the scan (the note itself goes to stderr in every format).
fn write_stop(out: &mut impl Write, stopped_at: Option<&DamagedRange>, format: Format) {
    if let (Some(at), Format::Json) = (stopped_at, format) {
        let _ = writeln!(out, "{}", json!({ "stopped_at": show::damage_json(at) }));
        let _ = out.flush();
    }
}

pub fn tail(dir: &Path, from: Option<u64>, json: bool) -> Res {
    let i = Inspector::open(dir)?;
    let mut next = match from {
        Some(f) => f,
        None => i.snapshot()?.next_seq,
    };
    let format = if json { Format::Json } else { Format::Text };
    loop {
        // Every record, acknowledged or not: an item taken at once is still shown.
        let listed = i.records(next, 10_000)?;
        let mut out = std::io::stdout().lock();
        if !write_items(&mut out, &listed.items, format) {
            return Ok(ExitCode::SUCCESS); // stdout closed
        }
        if let Some(at) = &listed.stopped_at {
            // What follows has no known sequence number: there is nothing to follow.
            write_stop(&mut out, Some(at), format);
            return Ok(stopped(dir, at, "tail follows"));
        }
        match listed.items.last() {
            Some(last) => next = last.seq + 1,
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DeadAction {
    /// Show each dead letter: seq, attempts, when and why it failed, payload.
    List,
    /// Put every dead letter back into the queue, at its tail.
    Requeue,
    /// Delete every dead letter.
    Purge,
}

/// A dead letter as stored (FORMAT.md §dead).
type DeadRecord = (u64, u32, String, u64, Vec<u8>);

pub fn dead_letters(dir: &Path, action: DeadAction, json: bool) -> Res {
    Inspector::open(dir)?;
    match action {
        DeadAction::List => list_dead(dir, json),
        DeadAction::Requeue | DeadAction::Purge => {
            let q = open_untyped(dir)?;
            let dl = q.dead_letters();
            let (n, what) = match action {
                DeadAction::Requeue => (dl.requeue_all()?, "requeued"),
                _ => (dl.purge()?, "purged"),
            };
            q.close()?;
            if json {
                println!("{}", json!({ what: n }));
            } else {
                println!("{what} {}", show::count(n as u64, "dead letter"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list_dead(dir: &Path, json: bool) -> Res {
    let dead = dir.join("dead");
    let (items, stopped_at) = match Inspector::open(&dead) {
        Ok(i) => {
            let listed = i.items(0, usize::MAX)?;
            (listed.items, listed.stopped_at)
        }
        Err(diskq::Error::NotAQueue { .. }) => (Vec::new(), None), // none yet
        Err(e) => return Err(e.into()),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut docs = Vec::new();
    for it in &items {
        let (seq, attempts, reason, failed_at, payload): DeadRecord =
            bincode::deserialize(&it.payload).map_err(|e| {
                format!(
                    "dead letter {} in {} does not decode: {e}",
                    it.seq,
                    dead.display()
                )
            })?;
        if json {
            let mut o = json!({"seq": seq, "attempts": attempts, "reason": reason, "failed_at_ms": failed_at, "len": payload.len()});
            o["payload"] = show::payload_json(&payload);
            docs.push(o);
        } else {
            writeln!(
                out,
                "{seq:>10}  {}  failed {}  {reason:?}  {}",
                show::count(u64::from(attempts), "attempt"),
                show::ago(failed_at),
                show::payload(&payload)
            )?;
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            json!({"dir": dir.to_string_lossy(), "dead_letters": docs, "stopped_at": stopped_at.as_ref().map(show::damage_json)})
        )?;
    } else if items.is_empty() && stopped_at.is_none() {
        writeln!(out, "no dead letters")?;
    }
    out.flush()?;
    Ok(finish(
        &dead,
        stopped_at.as_ref(),
        "the dead letters shown are",
    ))
}

/// Any item type: the commands that take the lock move stored bytes and never decode
/// or encode an item.
struct Untyped;

impl serde::Serialize for Untyped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Untyped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Untyped)
    }
}

/// Opens the queue with the item type it records, whatever it is; says who has it when
/// another process does.
fn open_untyped(dir: &Path) -> Result<diskq::Queue<Untyped>, Box<dyn Error>> {
    let i = Inspector::open(dir)?;
    let mut opts = diskq::Options::new();
    if let Some(tag) = i.schema()? {
        opts = opts.schema(tag);
    }
    opts.open(dir).map_err(|e| match e {
        diskq::Error::Locked { .. } => {
            let by = i.owner_pid();
            let who = by.map_or("another process".to_string(), |p| format!("process {p}"));
            format!(
                "{} is in use by {who}: stop it first (read-only commands work while it runs)",
                dir.display()
            )
            .into()
        }
        e => e.into(),
    })
}

pub fn pause(dir: &Path, paused: bool) -> Res {
    if paused {
        diskq::pause(dir)?;
        println!(
            "paused {}: consumers wait (within a second in a running process); puts go on",
            dir.display()
        );
    } else {
        diskq::resume(dir)?;
        println!("resumed {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn repair(dir: &Path, yes: bool) -> Res {
    let i = Inspector::open(dir)?;
    if let Some(pid) = i.owner_pid() {
        return Err(format!(
            "{} is in use by process {pid}: stop it first",
            dir.display()
        )
        .into());
    }
    if !yes {
        eprint!(
            "repair {}? Damaged files are moved aside into damaged-N and the intact records kept. [y/N] ",
            dir.display()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing done");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = scan("repairing", || diskq::repair(dir))?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
