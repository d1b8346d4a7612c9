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
    about = "Inspect and operate diskq queue directories",
    after_help = "Exit status: 0 when all went well; 1 when damage was found: by `verify`, or \
                  where it stopped the scan of `stat`, `dump`, `tail` or `dead-letters list` \
                  (what they show then covers only the records before it; stderr says where, \
                  and --json output has it in `stopped_at`); 2 on an error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Counts: items waiting, dead letters, oldest age, size; open by whom, paused.
    ///
    /// Items waiting, delivered, delayed, dead letters, oldest age, size on disk, format
    /// version, whether a process has the queue open, whether it is paused. Damage stops
    /// the count: stderr says where (--json: `stopped_at`) and the exit status is 1.
    Stat {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Checks every file; exit status 1 when damage is found.
    ///
    /// Reads every file and checks every checksum, chain and journal entry; prints each
    /// problem with file and offset. Exit status 0 when healthy, 1 when damage is found,
    /// 3 when the queue's owner changed the files under every read (busy: try again).
    Verify {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
        /// One JSON document: `healthy`, `records` checked, `live` (another process has
        /// the queue open), `damage` (each with `file`, `offset`, `len`, `detail`),
        /// `problems`.
        #[arg(long)]
        json: bool,
    },
    /// The waiting items in order.
    ///
    /// The waiting items in order: seq, length, put time where recorded, payload
    /// (printable text as text, else hex). At damage it stops after the items before it:
    /// stderr says where (--json: a last line `{"stopped_at": {...}}`), exit status 1.
    Dump {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
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
    /// Follows new items as they are put, like `tail -f`.
    ///
    /// Follows new items as they are put, like `tail -f` (stop it with Ctrl-C). Ends with
    /// exit status 1 at damage it cannot follow past, saying where on stderr.
    Tail {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
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
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
        #[arg(value_enum, default_value = "list")]
        action: commands::DeadAction,
        /// One JSON document: with `list`, `dead_letters` (and `stopped_at`); with
        /// `requeue` or `purge`, `{"requeued": N}` or `{"purged": N}`.
        #[arg(long)]
        json: bool,
    },
    /// Pauses consumers: their gets wait (puts go on). A running process notices within a
    /// second.
    Pause {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
    },
    /// Lets paused consumers go on.
    Resume {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
    },
    /// Runs `diskq::repair` and prints its report. Asks first, unless `--yes`.
    Repair {
        /// The queue directory (it holds `info` and the chunk files q00000, q00001, ...).
        dir: PathBuf,
        /// Repair without asking first (the question reads its answer from stdin).
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
