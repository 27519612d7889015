//! `shmkit-bridge`: carries local shmkit channels over Zenoh.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use clap::Parser;
use shmkit_zenoh::{Bridge, BridgeConfig, ConfigError, Mode, Route};

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
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
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

Logging: RUST_LOG (default: info for the bridge, warnings from Zenoh).";

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
    zenoh::init_log_from_env_or("warn,shmkit_zenoh=info,shmkit_bridge=info");
    let args = Args::parse();
    let check = args.check;
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
    let _ = stop_rx.recv();
    for route in bridge.stats() {
        eprintln!("shmkit-bridge: {route}");
    }
    bridge.close();
    ExitCode::SUCCESS
}
