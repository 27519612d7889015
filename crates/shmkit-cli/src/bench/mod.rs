//! `shmkit bench`: shmkit against the hardware floor and the OS's own IPC, two
//! real processes per transport, in one run.
//!
//! Every transport's peers are started first and stay up (asleep between
//! batches). Then rounds run interleaved — one batch of every transport at
//! every size, then the next round — so a noisy moment on a shared machine hurts
//! all transports alike instead of one. A first round calibrates each batch to
//! the time asked for and is not recorded.
//!
//! Latency is a round trip: this process sends a message, the peer sends the
//! same bytes back; the time of each round trip is recorded (one clock read per
//! round trip, on every transport alike) and summarised as percentiles.
//! Throughput is one-way: the peer sends a stream of messages, this process
//! receives them; beside it, a single-thread `memcpy` of the same size measured
//! in the same run.

mod protocol;
mod report;
mod stats;
pub mod system;
mod transport;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::CmdResult;
use report::{FanOut, LatencyRow, Report, Settings, ThroughputRow};
use stats::{Latency, Throughput};
pub use transport::PeerArgs;
use transport::{BenchResult, Kind, Link, Spawner, MAX_SIZE};

/// Options of `shmkit bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Message sizes, comma-separated (at least 8 bytes, at most 1 MiB).
    #[arg(long, value_delimiter = ',', value_parser = parse_size,
          default_value = "64,1KiB,64KiB,1MiB")]
    pub sizes: Vec<usize>,
    /// Only these transports, comma-separated: floor, queue-busy, queue-blocking,
    /// queue-sleep, queue-async, queue-async-sleep, waitset, zero-copy,
    /// broadcast-1, broadcast-4, rpc, pipe, unix-socket, tcp (waitset: sizes up
    /// to 4 KiB).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub only: Vec<String>,
    /// A short run (about 10 seconds): fewer, shorter rounds.
    #[arg(long)]
    pub quick: bool,
    /// Recorded rounds (each runs every transport at every size once).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Pin this process to one CPU and the answering peers to another.
    #[arg(long)]
    pub pin: bool,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Draw latency percentiles and throughput by message size into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Internal: run as a peer of this kind.
    #[arg(long, hide = true)]
    pub peer: Option<String>,
    #[arg(long, hide = true)]
    pub peer_name: Option<String>,
    #[arg(long, hide = true)]
    pub peer_index: Option<String>,
    #[arg(long, hide = true)]
    pub peer_mode: Option<String>,
    #[arg(long, hide = true)]
    pub peer_cpu: Option<usize>,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n = crate::size::parse(s)?;
    if !(8..=MAX_SIZE as u64).contains(&n) {
        return Err(format!(
            "{s}: message sizes run from 8 bytes (the sequence number) to 1 MiB"
        ));
    }
    Ok(n as usize)
}

fn parse_kind(s: &str) -> Result<String, String> {
    match Kind::from_key(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "{s:?} is not a transport; choose from {}",
            Kind::ALL.map(Kind::key).join(", ")
        )),
    }
}

/// How long each part runs.
struct Plan {
    rounds: u32,
    /// Target time of one batch.
    batch: Duration,
    fan_out_publishes: u64,
    idle: Duration,
}

impl Plan {
    fn of(args: &BenchArgs) -> Plan {
        let mut plan = if args.quick {
            Plan {
                rounds: 3,
                batch: Duration::from_millis(50),
                fan_out_publishes: 20_000,
                idle: Duration::from_millis(300),
            }
        } else {
            Plan {
                rounds: 5,
                batch: Duration::from_millis(60),
                fan_out_publishes: 200_000,
                idle: Duration::from_secs(1),
            }
        };
        if let Some(r) = args.rounds {
            plan.rounds = r.max(1);
        }
        plan
    }
}

/// `shmkit bench`, or one of its peers.
pub fn run(args: BenchArgs) -> CmdResult {
    if let Some(kind) = args.peer {
        return transport::run_peer(PeerArgs {
            kind,
            name: args.peer_name.ok_or("a peer needs --peer-name")?,
            index: args.peer_index,
            mode: args.peer_mode,
            cpu: args.peer_cpu,
        });
    }
    let machine = system::Machine::describe();
    let plan = Plan::of(&args);
    let mut notes = Vec::new();
    let mut kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| args.only.is_empty() || args.only.iter().any(|o| o == k.key()))
        .filter(|k| k.available())
        .collect();
    if machine.cores < 2 {
        kinds.retain(|k| !k.spins());
        notes.push(
            "one CPU: the busy-poll transports (and the floor) are left out, since a \
             spinning process only waits for the other's time slice; nothing is pinned"
                .to_owned(),
        );
    }
    let mut pinned = false;
    let mut peer_cpu = None;
    if args.pin {
        if machine.cores < 2 {
            notes.push("--pin needs two CPUs: not pinned".into());
        } else {
            match system::pin_to(0) {
                Ok(()) => {
                    pinned = true;
                    peer_cpu = Some(1);
                }
                Err(e) => notes.push(format!("not pinned: {e}")),
            }
        }
    }
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let spawner = Spawner {
        base: format!("bench-{}", std::process::id()),
        peer_cpu,
    };

    let stream_kinds: Vec<Kind> = kinds.iter().copied().filter(|k| k.streams()).collect();
    let fan_counts = [1usize, 4, 16];
    let per_round: usize = sizes
        .iter()
        .map(|&size| kinds.iter().filter(|k| k.fits(size)).count() + stream_kinds.len() + 1)
        .sum();
    let batches = (plan.rounds as u64 + 1) * per_round as u64 + 2 * fan_counts.len() as u64 + 1;
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(batches)
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("a valid template"),
    );

    let mut links: BTreeMap<Kind, Box<dyn Link>> = BTreeMap::new();
    progress.set_message("starting peers");
    for &kind in &kinds {
        links.insert(kind, spawner.open(kind)?);
    }
    let measured = measure(&plan, &sizes, &mut links, &stream_kinds, &progress);
    // Stop the peers whatever happened.
    let idle_cpu = match &measured {
        Ok(_) => idle_cpu(&links, plan.idle, &progress),
        Err(_) => None,
    };
    let mut finished = Ok(());
    for (_, link) in std::mem::take(&mut links) {
        if measured.is_err() {
            link.kill();
        } else if let Err(e) = link.finish() {
            finished = Err(e);
        }
    }
    let (latency, throughput) = measured?;
    finished?;

    let mut fan_out = Vec::new();
    // Part of the full run only (not of `--only`), and only where a thread's
    // CPU time can be read.
    if args.only.is_empty() && system::thread_cpu_ns().is_some() {
        for busy in [true, false] {
            if busy && machine.cores < 2 {
                continue;
            }
            for &k in &fan_counts {
                progress.set_message(format!("broadcast fan-out, {k} subscribers"));
                let cpu = transport::fan_out(&spawner, k, busy, plan.fan_out_publishes, 64)?;
                progress.inc(1);
                if let Some(ns) = cpu {
                    fan_out.push(FanOut {
                        subscribers: k,
                        subscribers_busy_poll: busy,
                        size: 64,
                        publisher_cpu_ns_per_message: ns,
                    });
                }
            }
        }
    }
    progress.finish_and_clear();

    let report = Report::build(
        machine,
        Settings {
            sizes: sizes.clone(),
            rounds: plan.rounds,
            batch_ms: plan.batch.as_secs_f64() * 1e3,
            pinned,
            quick: args.quick,
        },
        latency,
        throughput,
        fan_out,
        idle_cpu,
        notes,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if let Some(path) = &args.plot {
        report::plot(&report, path)?;
        if !args.json {
            println!("\nplot written to {}", path.display());
        }
    }
    Ok(())
}

type Measured = (Vec<LatencyRow>, Vec<ThroughputRow>);

/// Calibrates, then runs the interleaved rounds.
fn measure(
    plan: &Plan,
    sizes: &[usize],
    links: &mut BTreeMap<Kind, Box<dyn Link>>,
    stream_kinds: &[Kind],
    progress: &ProgressBar,
) -> BenchResult<Measured> {
    // Iterations per batch, from a timed warm-up batch.
    let mut counts: BTreeMap<(Kind, usize), u64> = BTreeMap::new();
    let mut stream_counts: BTreeMap<(Kind, usize), u64> = BTreeMap::new();
    let mut memcpy_counts: BTreeMap<usize, u64> = BTreeMap::new();
    let mut scratch = Vec::new();
    let per_batch = |elapsed: Duration, n: u64| {
        let each = elapsed.as_secs_f64() / n as f64;
        ((plan.batch.as_secs_f64() / each.max(1e-9)) as u64).clamp(8, 5_000_000)
    };
    progress.set_message("calibrating");
    for &size in sizes {
        for (&kind, link) in links.iter_mut().filter(|(k, _)| k.fits(size)) {
            scratch.clear();
            let start = Instant::now();
            link.round_trips(16, size, &mut scratch)?;
            counts.insert((kind, size), per_batch(start.elapsed(), 16));
            if kind.streams() {
                let (n, took) = link.stream(256, size)?;
                stream_counts.insert((kind, size), per_batch(took, n.max(1)));
            }
            progress.inc(1);
        }
        let took = memcpy(16, size);
        memcpy_counts.insert(size, per_batch(took, 16));
        progress.inc(1);
    }

    let mut samples: BTreeMap<(Kind, usize), Vec<u64>> = BTreeMap::new();
    let mut streamed: BTreeMap<(Kind, usize), (u64, Duration)> = BTreeMap::new();
    let mut copied: BTreeMap<usize, (u64, Duration)> = BTreeMap::new();
    let kinds: Vec<Kind> = links.keys().copied().collect();
    for round in 1..=plan.rounds {
        progress.set_message(format!("round {round} of {}", plan.rounds));
        // Each round starts with another transport: whatever disturbs the
        // start of a round (the machine settling after the last round's
        // megabyte copies) falls on a different one each time.
        let mut order = kinds.clone();
        let turn = round as usize % order.len().max(1);
        order.rotate_left(turn);
        for &size in sizes {
            for &kind in order.iter().filter(|k| k.fits(size)) {
                let link = links.get_mut(&kind).expect("opened");
                let n = counts[&(kind, size)];
                let out = samples.entry((kind, size)).or_default();
                out.reserve(n as usize);
                link.round_trips(n, size, out)?;
                progress.inc(1);
            }
            for &kind in stream_kinds {
                let link = links.get_mut(&kind).expect("opened");
                let n = stream_counts[&(kind, size)];
                let (timed, took) = link.stream(n, size)?;
                let total = streamed.entry((kind, size)).or_default();
                total.0 += timed;
                total.1 += took;
                progress.inc(1);
            }
            let n = memcpy_counts[&size];
            let took = memcpy(n, size);
            let total = copied.entry(size).or_default();
            total.0 += n;
            total.1 += took;
            progress.inc(1);
        }
    }

    let mut latency = Vec::new();
    for ((kind, size), mut s) in samples {
        if let Some(stats) = Latency::of(&mut s) {
            latency.push(LatencyRow::new(kind.key(), kind.label(), size, stats));
        }
    }
    let mut throughput = Vec::new();
    for ((kind, size), (n, took)) in streamed {
        throughput.push(ThroughputRow::new(
            kind.key(),
            kind.stream_label(),
            size,
            Throughput::of(n, size, took.as_secs_f64()),
        ));
    }
    for (size, (n, took)) in copied {
        throughput.push(ThroughputRow::new(
            "memcpy",
            "memcpy, one thread",
            size,
            Throughput::of(n, size, took.as_secs_f64()),
        ));
    }
    Ok((latency, throughput))
}

/// Single-thread copies of `size` bytes, `n` times: the bar for streaming.
/// Both buffers are written once before the clock starts (no page faults timed).
fn memcpy(n: u64, size: usize) -> Duration {
    let src = protocol::pattern(size);
    let mut dst = protocol::pattern(size);
    let start = Instant::now();
    for _ in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    start.elapsed()
}

/// CPU time the blocking queue's peer uses while it waits with nothing to do,
/// per second of waiting (ms); `None` where it cannot be measured.
fn idle_cpu(
    links: &BTreeMap<Kind, Box<dyn Link>>,
    idle: Duration,
    progress: &ProgressBar,
) -> Option<f64> {
    let link = links.get(&Kind::QueueBlocking)?;
    progress.set_message("an idle blocking receiver's CPU time");
    let pid = link.peer_pid();
    // Let its spin phase end first.
    std::thread::sleep(Duration::from_millis(50));
    let before = system::process_cpu_ns(pid)?;
    std::thread::sleep(idle);
    let after = system::process_cpu_ns(pid)?;
    progress.inc(1);
    Some((after.saturating_sub(before)) as f64 / 1e6 / idle.as_secs_f64())
}
