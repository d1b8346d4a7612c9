//! `diskq`: look at, check, pause and repair diskq queue directories from a shell.
//!
//! The read-only commands (`stat`, `verify`, `dump`, `tail`, `dead-letters list`) take no
//! lock and change no file: they work while another process has the queue open. The
//! others (`dead-letters requeue|purge`, `repair`) take the queue's lock and say so when
//! another process has it; `pause` and `resume` only create or remove the `paused` file,
//! which a running queue notices within a second.
//!
//! Exit status: 0; 1 when `verify` finds damage; 2 on an error; 3 when `verify` found
//! the queue changed under every read, so that nothing could be confirmed (busy: try
//! again).

mod commands;
mod show;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "diskq",
    version,
    about = "Inspect and operate diskq queue directories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Items waiting, delivered, delayed, dead letters, oldest age, size on disk, format
    /// version, whether a process has the queue open, whether it is paused.
    Stat {
        dir: PathBuf,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Reads every file and checks every checksum, chain and journal entry; prints each
    /// problem with file and offset. Exit status 0 when healthy, 1 when damage is found,
    /// 3 when the queue's owner changed the files under every read (busy: try again).
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The waiting items in order: seq, length, put time where recorded, payload
    /// (printable text as text, else hex).
    Dump {
        dir: PathBuf,
        /// The first sequence number to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many items.
        #[arg(long)]
        limit: Option<usize>,
        /// The payloads' bytes only, one after the other, as stored.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Follows new items as they are put, like `tail -f` (stop it with Ctrl-C).
    Tail {
        dir: PathBuf,
        /// Start at this sequence number instead of after the newest item.
        #[arg(long)]
        from: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter queue: list (the default), requeue every dead letter, or purge them.
    #[command(name = "dead-letters")]
    DeadLetters {
        dir: PathBuf,
        #[arg(value_enum, default_value = "list")]
        action: commands::DeadAction,
        /// With `list`: one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Pauses consumers: their gets wait (puts go on). A running process notices within a
    /// second.
    Pause { dir: PathBuf },
    /// Lets paused consumers go on.
    Resume { dir: PathBuf },
    /// Runs `diskq::repair` and prints its report. Asks first, unless `--yes`.
    Repair {
        dir: PathBuf,
        #[arg(long, short)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Stat { dir, json } => commands::stat(&dir, json),
        Command::Verify { dir, json } => commands::verify(&dir, json),
        Command::Dump {
            dir,
            from,
            limit,
            raw,
            json,
        } => commands::dump(&dir, from, limit, show::Format::pick(raw, json)),
        Command::Tail { dir, from, json } => commands::tail(&dir, from, json),
        Command::DeadLetters { dir, action, json } => commands::dead_letters(&dir, action, json),
        Command::Pause { dir } => commands::pause(&dir, true),
        Command::Resume { dir } => commands::pause(&dir, false),
        Command::Repair { dir, yes } => commands::repair(&dir, yes),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("diskq: {e}");
            // The queue changed under every read: no answer yet, which is neither damage
            // (1) nor a failure (2).
            let busy = e
                .downcast_ref::<diskq::Error>()
                .is_some_and(|e| e.is_busy());
            ExitCode::from(if busy { 3 } else { 2 })
        }
    }
}
