//! `shmkit-bridge`: carries local shmkit channels over Zenoh.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use shmkit_zenoh::{Bridge, BridgeConfig, ConfigError, Mode, Route};
use tracing_subscriber::EnvFilter;

/// Forwards local shmkit channels to Zenoh key expressions
/// (`<key-prefix>/<domain>/<channel>`) and Zenoh key expressions to local
/// channels. Flags add to (or override) the config file.
#[derive(Parser, Debug)]
#[command(version, after_help = ROUTE_HELP)]
struct Args {
    /// TOML config file (docs/bridge.md describes it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Domain: bridges exchange messages only within one.
    #[arg(long)]
    domain: Option<String>,
    /// First part of every key expression [default: shmkit].
    #[arg(long)]
    key_prefix: Option<String>,
    /// Zenoh mode: peer, client or router [default: peer].
    #[arg(long)]
    mode: Option<Mode>,
    /// A Zenoh endpoint to listen on, such as tcp/10.0.0.1:7447 (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// A Zenoh endpoint to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Do not look for peers by UDP multicast.
    #[arg(long)]
    no_multicast_scouting: bool,
    /// A route, KIND:DIRECTION:CHANNEL (repeatable).
    #[arg(long = "route", short = 'r')]
    routes: Vec<Route>,
    /// Exit with an error (code 1) if none of the --connect endpoints is
    /// connected within SECS seconds of starting. Without it the bridge warns
    /// after 5 s, naming them, and keeps trying.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout: Option<u64>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

/// How long a bridge waits for a `--connect` endpoint before it warns.
const CONNECT_WARNING: Duration = Duration::from_secs(5);

/// The default log filter: the bridge at info, Zenoh at warn.
const LOG: &str = "warn,shmkit_zenoh=info,shmkit_bridge=info";

/// Log lines go to stderr (stdout is for the `ready` line and `--check`),
/// coloured only on a terminal: a file or pipe gets plain text.
fn init_log() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(LOG));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true)
        .try_init();
}

/// What waiting for the `--connect` endpoints came to.
enum Connected {
    /// To at least one (the others named in a warning), or there are none to
    /// wait for.
    Yes,
    /// To none within the time.
    No,
    /// SIGINT or SIGTERM came first.
    Stopped,
}

/// Waits up to `within` for links to all the `--connect` endpoints.
fn wait_connected(
    bridge: &Bridge,
    endpoints: &[String],
    within: Duration,
    stop: &mpsc::Receiver<()>,
) -> Connected {
    let until = Instant::now() + within;
    loop {
        let connected = bridge.connected_endpoints();
        let left = until.saturating_duration_since(Instant::now());
        if connected.len() == endpoints.len() || left.is_zero() {
            if connected.is_empty() && !endpoints.is_empty() {
                return Connected::No;
            }
            let missing: Vec<&String> = endpoints
                .iter()
                .filter(|e| !connected.contains(e))
                .collect();
            if !missing.is_empty() {
                tracing::warn!(
                    "not connected to {} after {} s (Zenoh keeps trying)",
                    join(missing),
                    within.as_secs()
                );
            }
            return Connected::Yes;
        }
        match stop.recv_timeout(left.min(Duration::from_millis(100))) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return Connected::Stopped,
        }
    }
}

fn join<'a>(endpoints: impl IntoIterator<Item = &'a String>) -> String {
    endpoints
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

const ROUTE_HELP: &str = "\
Routes (KIND:DIRECTION:CHANNEL):
  broadcast:out:NAME   local publisher on NAME -> Zenoh
  broadcast:in:NAME    Zenoh -> a local broadcast channel NAME (the bridge publishes)
  queue:out:NAME       local queue NAME (the bridge receives) -> Zenoh
  queue:in:NAME        Zenoh -> local queue NAME (the bridge sends)
  rpc:out:NAME         Zenoh queries -> the local RPC server on NAME
  rpc:in:NAME          local RPC clients on NAME -> Zenoh queries (the bridge serves)

Example:
  host A: shmkit-bridge --domain lab --listen tcp/10.0.0.1:7447 -r broadcast:out:telemetry
  host B: shmkit-bridge --domain lab --connect tcp/10.0.0.1:7447 -r broadcast:in:telemetry

Logging: on stderr; RUST_LOG sets the level (default: info for the bridge,
warnings from Zenoh).";

fn config(args: Args) -> Result<BridgeConfig, ConfigError> {
    let mut config = match (&args.config, &args.domain) {
        (Some(path), _) => BridgeConfig::from_file(path)?,
        (None, Some(domain)) => BridgeConfig::new(domain),
        (None, None) => {
            return Err(ConfigError::Invalid(
                "no domain: give --domain or a config file with `domain = ...`".into(),
            ))
        }
    };
    if let Some(domain) = args.domain {
        config.domain = domain;
    }
    if let Some(prefix) = args.key_prefix {
        config.key_prefix = prefix;
    }
    if let Some(mode) = args.mode {
        config.zenoh.mode = mode;
    }
    config.zenoh.listen.extend(args.listen);
    config.zenoh.connect.extend(args.connect);
    if args.no_multicast_scouting {
        config.zenoh.multicast_scouting = false;
    }
    config.routes.extend(args.routes);
    if config.routes.is_empty() {
        return Err(ConfigError::Invalid(
            "no routes: give --route KIND:DIRECTION:CHANNEL or [[route]] tables".into(),
        ));
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    init_log();
    let args = Args::parse();
    let check = args.check;
    let connect_timeout = args.connect_timeout.map(Duration::from_secs);
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmkit-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        for route in &config.routes {
            // Validated above, so every key exists.
            let key = config
                .key_for(route)
                .map(|k| k.to_string())
                .unwrap_or_default();
            println!("{route} <-> {key}");
        }
        return ExitCode::SUCCESS;
    }
    let (stop_tx, stop_rx) = mpsc::channel();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        eprintln!("shmkit-bridge: cannot handle SIGINT/SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    let bridge = match Bridge::start(&config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shmkit-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One line on stdout once everything is up: scripts (and the tests) wait for it.
    println!(
        "shmkit-bridge ready: domain {}, zenoh id {}, {} routes",
        config.domain,
        bridge.zenoh_id(),
        config.routes.len()
    );
    let endpoints = &config.zenoh.connect;
    let within = connect_timeout.unwrap_or(CONNECT_WARNING);
    let mut code = ExitCode::SUCCESS;
    match wait_connected(&bridge, endpoints, within, &stop_rx) {
        Connected::Yes => {
            let _ = stop_rx.recv();
        }
        Connected::Stopped => {}
        Connected::No if connect_timeout.is_some() => {
            eprintln!(
                "shmkit-bridge: not connected to any --connect endpoint within {} s: {}; \
                 giving up (is a bridge or Zenoh router listening there?)",
                within.as_secs(),
                join(endpoints)
            );
            code = ExitCode::FAILURE;
        }
        Connected::No => {
            tracing::warn!(
                "not connected to any --connect endpoint after {} s: {}; nothing crosses \
                 until one is (Zenoh keeps trying; is a bridge or Zenoh router listening \
                 there? --connect-timeout makes this an error)",
                within.as_secs(),
                join(endpoints)
            );
            let _ = stop_rx.recv();
        }
    }
    for route in bridge.stats() {
        eprintln!("shmkit-bridge: {route}");
    }
    bridge.close();
    code
}
