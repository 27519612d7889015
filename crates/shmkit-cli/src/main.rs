//! `shmkit`: inspect, create, remove, read and write shared memory, and send and
//! receive on channels, from the shell.
//!
//! Every command takes a shmkit name; with `--raw` it takes the exact OS name of an
//! object made by another program instead (`/psm_1234`, `Local\MyMap`). Errors are
//! one line on stderr and exit status 1.

mod bench;
mod channels;
mod commands;
mod demo;
mod hexdump;
mod size;
mod time;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Named shared memory from the command line.
#[derive(Parser)]
#[command(name = "shmkit", version, about)]
struct Cli {
    /// Accept segments owned by another user, or writable by every user
    /// (refused by default: such a segment may have been planted).
    #[arg(long, global = true)]
    accept_insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List shmkit segments: name, kind, size, lifetime, creator and whether it runs.
    Ls,
    /// List stale segments: temporary ones whose every user has exited or died
    /// without closing them. Removes them with --force; never touches a segment
    /// a live process has open, nor persistent ones.
    Gc {
        /// Remove the stale segments (without it, only list them).
        #[arg(long)]
        force: bool,
    },
    /// Show what a segment's header says (or an object's size, with --raw).
    Info {
        /// Segment name.
        name: String,
        /// NAME is an exact OS name; no shmkit header is expected.
        #[arg(long)]
        raw: bool,
    },
    /// Create a persistent segment; it outlives this command until `shmkit rm`.
    Create {
        /// Segment name.
        name: String,
        /// Size of the data, e.g. 4096, 64KiB, 1GiB.
        #[arg(long, value_parser = size::parse)]
        size: u64,
        /// Unix permission bits in octal (default 600: owner only).
        #[arg(long, value_parser = parse_mode, default_value = "600")]
        mode: u32,
        /// NAME is an exact OS name; create the object without a shmkit header.
        #[arg(long)]
        raw: bool,
    },
    /// Remove a segment. Processes that have it open keep their mapping.
    Rm {
        /// Segment name.
        name: String,
        /// NAME is an exact OS name.
        #[arg(long)]
        raw: bool,
    },
    /// Print a segment's bytes (all of them, or --len bytes from --offset).
    Cat {
        /// Segment name.
        name: String,
        /// First byte to print.
        #[arg(long, value_parser = size::parse, default_value = "0")]
        offset: u64,
        /// Number of bytes (default: to the end).
        #[arg(long, value_parser = size::parse)]
        len: Option<u64>,
        /// Print a hex dump instead of raw bytes.
        #[arg(long)]
        hex: bool,
        /// NAME is an exact OS name.
        #[arg(long)]
        raw: bool,
    },
    /// Write DATA (or standard input) into a segment at --offset.
    Write {
        /// Segment name.
        name: String,
        /// Bytes to write; read from standard input when absent.
        data: Option<String>,
        /// Where to write.
        #[arg(long, value_parser = size::parse, default_value = "0")]
        offset: u64,
        /// NAME is an exact OS name.
        #[arg(long)]
        raw: bool,
    },
    /// Send messages into a queue channel: each MESSAGE, or else each line of
    /// standard input. Creates the channel (persistent) if needed.
    Send {
        /// Channel name.
        channel: String,
        /// Messages to send; lines of standard input when absent.
        messages: Vec<String>,
        /// Ring size (a power of two) if the channel is created, default 1 MiB;
        /// given for an existing channel, it must match.
        #[arg(long, value_parser = size::parse)]
        capacity: Option<u64>,
        /// Give up if the ring stays full this many seconds.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// Receive messages from queue channels and print each on its own line:
    /// one message, --count N, or --follow for all that come. Waits for senders
    /// to come, and for new ones when they leave (or for --timeout). Given
    /// several channels, waits on all at once and prints each message after
    /// its channel's name (`jobs: resize 1.png`).
    Recv {
        /// Channel names (one or more).
        #[arg(required = true, value_name = "CHANNEL")]
        channels: Vec<String>,
        /// How many messages to receive (from all channels together).
        #[arg(long)]
        count: Option<u64>,
        /// Keep receiving until interrupted.
        #[arg(long)]
        follow: bool,
        /// Give up after this many seconds.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Ring size (a power of two) if the channel is created, default 1 MiB;
        /// given for an existing channel, it must match.
        #[arg(long, value_parser = size::parse)]
        capacity: Option<u64>,
    },
    /// Publish messages on a broadcast channel (MESSAGEs or lines of standard
    /// input). Never waits for subscribers.
    Pub {
        /// Channel name.
        channel: String,
        /// Messages to publish; lines of standard input when absent.
        messages: Vec<String>,
        /// Ring size (a power of two) if the channel is created, default 1 MiB;
        /// given for an existing channel, it must match.
        #[arg(long, value_parser = size::parse)]
        capacity: Option<u64>,
    },
    /// Subscribe to broadcast channels and print each message on its own line.
    /// Given several channels, waits on all at once and prints each message
    /// after its channel's name (`prices: EURUSD 1.08`).
    Sub {
        /// Channel names (one or more).
        #[arg(required = true, value_name = "CHANNEL")]
        channels: Vec<String>,
        /// How many messages to receive (from all channels together).
        #[arg(long)]
        count: Option<u64>,
        /// Keep receiving until interrupted.
        #[arg(long)]
        follow: bool,
        /// Give up after this many seconds.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Start with the messages the ring still holds.
        #[arg(long)]
        history: bool,
        /// Ring size (a power of two) if the channel is created, default 1 MiB;
        /// given for an existing channel, it must match.
        #[arg(long, value_parser = size::parse)]
        capacity: Option<u64>,
    },
    /// Measure shmkit against the hardware floor, pipes and sockets: round-trip
    /// percentiles and throughput between two processes, in one interleaved run.
    Bench(bench::BenchArgs),
    /// Two processes talking through channels: messages of growing size up to
    /// 16 MiB, round-trip time and throughput, every byte checked.
    Demo {
        /// Internal: run as the demo's second process, on this segment.
        #[arg(long, hide = true)]
        peer: Option<String>,
    },
}

/// A number of seconds (fractions allowed) as a duration.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s} seconds is not a duration (negative, infinite or too long)"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if mode > 0o777 {
        return Err(format!("mode {s} has bits beyond 777"));
    }
    Ok(mode)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::set_accept_insecure(cli.accept_insecure);
    let result = match cli.command {
        Command::Ls => commands::ls(),
        Command::Gc { force } => commands::gc(force),
        Command::Info { name, raw } => commands::info(&name, raw),
        Command::Create {
            name,
            size,
            mode,
            raw,
        } => commands::create(&name, size, mode, raw),
        Command::Rm { name, raw } => commands::rm(&name, raw),
        Command::Cat {
            name,
            offset,
            len,
            hex,
            raw,
        } => commands::cat(&name, offset, len, hex, raw),
        Command::Write {
            name,
            data,
            offset,
            raw,
        } => commands::write(&name, data, offset, raw),
        Command::Send {
            channel,
            messages,
            capacity,
            timeout,
        } => channels::send(&channel, messages, capacity, timeout),
        Command::Recv {
            channels,
            count,
            follow,
            timeout,
            capacity,
        } => channels::recv(
            &channels,
            capacity,
            &channels::Listen {
                count,
                follow,
                timeout,
            },
        ),
        Command::Pub {
            channel,
            messages,
            capacity,
        } => channels::publish(&channel, messages, capacity),
        Command::Sub {
            channels,
            count,
            follow,
            timeout,
            history,
            capacity,
        } => channels::subscribe(
            &channels,
            capacity,
            history,
            &channels::Listen {
                count,
                follow,
                timeout,
            },
        ),
        Command::Bench(args) => bench::run(args),
        Command::Demo { peer: None } => demo::run(),
        Command::Demo { peer: Some(name) } => demo::peer(&name),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmkit: {e}");
            ExitCode::FAILURE
        }
    }
}
