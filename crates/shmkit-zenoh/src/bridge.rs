//! A running bridge: one Zenoh session and a worker per route.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use zenoh::config::EndPoint;
use zenoh::sample::SampleKind;
use zenoh::session::{Link, LinkEventsListener};
use zenoh::{Session, Wait};

use crate::config::{BridgeConfig, Route};
use crate::error::BridgeError;
use crate::route::{self, RouteCtx, Running};
use crate::stats::{Counters, RouteStats};

/// How long an RPC call forwarded over Zenoh may take, end to end.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A bridge between local shmkit channels and Zenoh, running on threads of its
/// own until [`close`](Self::close)d or dropped.
///
/// ```no_run
/// use shmkit_zenoh::{Bridge, BridgeConfig};
///
/// let mut config = BridgeConfig::new("lab");
/// config.zenoh.connect.push("tcp/10.0.0.2:7447".into());
/// config.routes.push("broadcast:out:telemetry".parse()?);
/// let bridge = Bridge::start(&config)?;
/// // ... telemetry published on this host now reaches bridges of domain "lab".
/// for route in bridge.stats() {
///     println!("{route}");
/// }
/// bridge.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Bridge {
    session: Session,
    stop: Arc<AtomicBool>,
    routes: Vec<(Route, Arc<Counters>, Option<Running>)>,
    /// The configuration's `connect` endpoints.
    targets: Arc<Vec<Target>>,
    /// Logs links as they come and go.
    link_log: Option<LinkEventsListener<()>>,
}

impl Bridge {
    /// Checks `config`, joins Zenoh, opens every local channel and starts
    /// forwarding. Fails, having started nothing, on the first route that
    /// cannot start.
    pub fn start(config: &BridgeConfig) -> Result<Bridge, BridgeError> {
        config.validate()?;
        let session = zenoh::open(zenoh_config(config)?)
            .wait()
            .map_err(|e| BridgeError::zenoh("opening the session", e))?;
        let targets = Arc::new(
            config
                .zenoh
                .connect
                .iter()
                .map(|e| Target::new(e))
                .collect(),
        );
        let link_log = log_links(&session, &targets)?;
        let mut bridge = Bridge {
            session,
            stop: Arc::new(AtomicBool::new(false)),
            routes: Vec::new(),
            targets,
            link_log: Some(link_log),
        };
        let instance = instance_number();
        for route in &config.routes {
            let counters = Arc::new(Counters::default());
            let running = route::start(RouteCtx {
                route: route.clone(),
                key: config.key_for(route)?,
                session: bridge.session.clone(),
                stop: bridge.stop.clone(),
                counters: counters.clone(),
                instance,
                rpc_timeout: RPC_TIMEOUT,
            })?;
            bridge.routes.push((route.clone(), counters, Some(running)));
        }
        Ok(bridge)
    }

    /// Each route's counters.
    pub fn stats(&self) -> Vec<RouteStats> {
        self.routes
            .iter()
            .map(|(route, counters, _)| counters.snapshot(route))
            .collect()
    }

    /// This bridge's Zenoh session id.
    pub fn zenoh_id(&self) -> String {
        self.session.zid().to_string()
    }

    /// The configuration's `connect` endpoints that a Zenoh link reaches now.
    /// (Zenoh keeps trying the others in the background; the log says when
    /// each link comes and goes.)
    pub fn connected_endpoints(&self) -> Vec<String> {
        let links: Vec<Link> = self.session.info().links().wait().collect();
        self.targets
            .iter()
            .filter(|t| links.iter().any(|l| t.reached_by(l)))
            .map(|t| t.endpoint.clone())
            .collect()
    }

    /// Stops forwarding, closes the local channels (peers see the bridge leave,
    /// not die) and leaves Zenoh.
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        // Our own leaving is no news: the links closing now go unlogged.
        drop(self.link_log.take());
        self.stop.store(true, Relaxed);
        for (_, _, running) in &mut self.routes {
            if let Some(r) = running.take() {
                r.join();
            }
        }
        let _ = self.session.close().wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A `connect` endpoint of the configuration and the addresses it names, to
/// tell which links reach it.
struct Target {
    endpoint: String,
    protocol: String,
    addresses: Vec<SocketAddr>,
}

impl Target {
    fn new(endpoint: &str) -> Target {
        // Checked by `validate`; a name that no longer resolves matches no link.
        let parsed = EndPoint::from_str(endpoint).ok();
        let protocol = parsed
            .as_ref()
            .map(|e| e.protocol().as_str().to_owned())
            .unwrap_or_default();
        let addresses = parsed
            .and_then(|e| e.address().as_str().to_socket_addrs().ok())
            .map(|a| a.collect())
            .unwrap_or_default();
        Target {
            endpoint: endpoint.to_owned(),
            protocol,
            addresses,
        }
    }

    /// Whether `link` goes to this endpoint (its remote end is one of its
    /// addresses, by the same protocol).
    fn reached_by(&self, link: &Link) -> bool {
        let remote = link.dst();
        remote.protocol().as_str() == self.protocol
            && remote
                .address()
                .as_str()
                .parse::<SocketAddr>()
                .is_ok_and(|a| self.addresses.contains(&a))
    }
}

/// Logs each link of the session as it comes (those made while the session
/// opened included) and goes, naming the `connect` endpoint it reaches.
fn log_links(
    session: &Session,
    targets: &Arc<Vec<Target>>,
) -> Result<LinkEventsListener<()>, BridgeError> {
    let targets = targets.clone();
    session
        .info()
        .link_events_listener()
        .history(true)
        .callback(move |event| {
            let link = event.link();
            let target = targets.iter().find(|t| t.reached_by(link));
            match (event.kind(), target) {
                (SampleKind::Put, Some(t)) => {
                    tracing::info!("connected to {} (zenoh id {})", t.endpoint, link.zid())
                }
                (SampleKind::Put, None) => {
                    tracing::info!("linked with {} (zenoh id {})", link.dst(), link.zid())
                }
                (SampleKind::Delete, Some(t)) => tracing::warn!(
                    "lost the link to {} (zenoh id {}); Zenoh keeps trying to reconnect",
                    t.endpoint,
                    link.zid()
                ),
                (SampleKind::Delete, None) => tracing::info!(
                    "the link with {} closed (zenoh id {})",
                    link.dst(),
                    link.zid()
                ),
            }
        })
        .wait()
        .map_err(|e| BridgeError::zenoh("watching the session's links", e))
}

/// Zenoh's configuration from ours.
fn zenoh_config(config: &BridgeConfig) -> Result<zenoh::Config, BridgeError> {
    let mut z = zenoh::Config::default();
    let mut set = |key: &str, value: &dyn erased_json::Value| {
        let value = value.json();
        z.insert_json5(key, &value)
            .map_err(|e| BridgeError::zenoh(format!("setting {key} to {value}"), e))
    };
    let settings = &config.zenoh;
    set("mode", &settings.mode.as_str())?;
    set("listen/endpoints", &settings.listen)?;
    set("connect/endpoints", &settings.connect)?;
    set("scouting/multicast/enabled", &settings.multicast_scouting)?;
    Ok(z)
}

/// JSON text of a configuration value (a closure cannot be generic).
mod erased_json {
    pub trait Value {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Value for T {
        fn json(&self) -> String {
            // Strings, lists of strings and booleans always serialise.
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// A number that differs between runs of a bridge (so a restarted bridge's
/// queue messages are not taken for an old run's).
fn instance_number() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
