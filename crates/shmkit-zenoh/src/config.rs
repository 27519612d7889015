//! What a bridge forwards and how it reaches the network: the config file and its
//! checks.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;
use zenoh::config::EndPoint;
use zenoh::key_expr::OwnedKeyExpr;

use crate::error::ConfigError;

/// The key prefix used unless the configuration names another.
pub const DEFAULT_KEY_PREFIX: &str = "shmkit";

/// The ring size of a channel the bridge creates (broadcast, queue or an RPC
/// server's request channel), unless the route names one: 16 MiB. A broadcast
/// message is one record of the ring, at most a quarter of it less 16 bytes, so
/// broadcast messages up to 4 MiB - 16 bytes (4,194,288) fit; queue and RPC
/// messages are fragmented and have no such limit.
pub const DEFAULT_CAPACITY: u64 = 16 << 20;

/// A bridge's whole configuration.
///
/// Read from a TOML file with [`BridgeConfig::from_toml`] (or built in code) and
/// checked with [`BridgeConfig::validate`], which [`Bridge::start`](crate::Bridge::start)
/// calls too.
///
/// ```
/// use shmkit_zenoh::{BridgeConfig, Direction, RouteKind};
///
/// let config = BridgeConfig::from_toml(r#"
///     domain = "lab"
///
///     [zenoh]
///     mode = "peer"
///     listen = ["tcp/0.0.0.0:7447"]
///     multicast_scouting = false
///
///     [[route]]
///     channel = "telemetry"
///     kind = "broadcast"
///     direction = "out"
/// "#).unwrap();
/// assert_eq!(config.routes[0].kind, RouteKind::Broadcast);
/// assert_eq!(config.routes[0].direction, Direction::Out);
/// assert_eq!(config.key_for(&config.routes[0]).unwrap().as_str(), "shmkit/lab/telemetry");
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Middle part of every key expression, `<key_prefix>/<domain>/<channel>`:
    /// bridges exchange messages only within one domain.
    pub domain: String,
    /// First part of every key expression; [`DEFAULT_KEY_PREFIX`] unless given.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How the bridge joins Zenoh.
    #[serde(default)]
    pub zenoh: ZenohSettings,
    /// The channels it forwards.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
}

fn default_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

/// How the bridge joins Zenoh: the part of Zenoh's own configuration it exposes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZenohSettings {
    /// Peer (the default), client or router.
    #[serde(default)]
    pub mode: Mode,
    /// Endpoints to listen on, such as `tcp/10.0.0.1:7447`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    #[serde(default)]
    pub connect: Vec<String>,
    /// Find peers by UDP multicast (Zenoh's default: on). Off keeps traffic to
    /// the listed endpoints.
    #[serde(default = "yes")]
    pub multicast_scouting: bool,
}

fn yes() -> bool {
    true
}

impl Default for ZenohSettings {
    fn default() -> Self {
        ZenohSettings {
            mode: Mode::Peer,
            listen: Vec::new(),
            connect: Vec::new(),
            multicast_scouting: true,
        }
    }
}

/// Zenoh's session modes.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Talks to other peers directly.
    #[default]
    Peer,
    /// Talks through a router.
    Client,
    /// Routes for others as well.
    Router,
}

impl Mode {
    /// The name Zenoh's configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Peer => "peer",
            Mode::Client => "client",
            Mode::Router => "router",
        }
    }
}

impl FromStr for Mode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "peer" => Ok(Mode::Peer),
            "client" => Ok(Mode::Client),
            "router" => Ok(Mode::Router),
            other => Err(ConfigError::Invalid(format!(
                "unknown Zenoh mode {other:?}: expected peer, client or router"
            ))),
        }
    }
}

/// One forwarded channel.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The local channel's name (also the last part of its key expression).
    pub channel: String,
    /// Which kind of channel it is.
    pub kind: RouteKind,
    /// Which way messages go.
    pub direction: Direction,
    /// Ring size. Unless given, a channel that exists is taken as it is and one
    /// the bridge creates gets [`DEFAULT_CAPACITY`]; given, it must match an
    /// existing channel's.
    #[serde(default)]
    pub capacity: Option<u64>,
    /// Queues the bridge receives from (`kind = "queue"`, `direction = "out"`):
    /// how many local senders the channel admits (1 unless given; given, it must
    /// match an existing channel's).
    #[serde(default)]
    pub max_senders: Option<u32>,
}

/// The kinds of channel a bridge forwards.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Publish/subscribe ([`shmkit::channel::Publisher`]).
    Broadcast,
    /// A queue ([`shmkit::channel::Sender`] → [`shmkit::channel::Receiver`]).
    Queue,
    /// Request/response ([`shmkit::channel::RpcServer`]).
    Rpc,
}

/// Which way a route carries messages.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the local channel to Zenoh: the bridge subscribes to a local
    /// broadcast, receives from a local queue, or makes a local RPC server
    /// answer Zenoh queries.
    Out,
    /// From Zenoh to the local channel: the bridge publishes into a local
    /// broadcast, sends into a local queue, or serves local RPC clients by
    /// querying Zenoh.
    In,
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteKind::Broadcast => "broadcast",
            RouteKind::Queue => "queue",
            RouteKind::Rpc => "rpc",
        })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Out => "out",
            Direction::In => "in",
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.kind, self.direction, self.channel)
    }
}

impl FromStr for Route {
    type Err = ConfigError;

    /// `KIND:DIRECTION:CHANNEL`, as the command line takes it: `queue:out:jobs`.
    fn from_str(s: &str) -> Result<Route, ConfigError> {
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "route {s:?}: {why} (expected KIND:DIRECTION:CHANNEL, such as broadcast:out:telemetry)"
            ))
        };
        let mut parts = s.splitn(3, ':');
        let (Some(kind), Some(direction), Some(channel)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("missing parts"));
        };
        let kind = match kind {
            "broadcast" => RouteKind::Broadcast,
            "queue" => RouteKind::Queue,
            "rpc" => RouteKind::Rpc,
            _ => {
                return Err(bad(
                    "unknown channel kind: expected broadcast, queue or rpc",
                ))
            }
        };
        let direction = match direction {
            "out" => Direction::Out,
            "in" => Direction::In,
            _ => return Err(bad("unknown direction: expected out or in")),
        };
        Ok(Route {
            channel: channel.to_owned(),
            kind,
            direction,
            capacity: None,
            max_senders: None,
        })
    }
}

impl BridgeConfig {
    /// An empty configuration for `domain`: peer mode, no routes.
    pub fn new(domain: &str) -> BridgeConfig {
        BridgeConfig {
            domain: domain.to_owned(),
            key_prefix: default_prefix(),
            zenoh: ZenohSettings::default(),
            routes: Vec::new(),
        }
    }

    /// Parses a configuration from TOML text and [validates](Self::validate) it.
    pub fn from_toml(text: &str) -> Result<BridgeConfig, ConfigError> {
        let config: BridgeConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(parse_error(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses the file at `path`.
    pub fn from_file(path: &Path) -> Result<BridgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            // "FILE line 3, column 1: ...", as compilers write it.
            ConfigError::Parse(why) if why.starts_with("line ") => {
                ConfigError::Parse(format!("{} {why}", path.display()))
            }
            ConfigError::Parse(why) => ConfigError::Parse(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// The key expression of `route`'s channel: `<key_prefix>/<domain>/<channel>`.
    pub fn key_for(&self, route: &Route) -> Result<OwnedKeyExpr, ConfigError> {
        let key = format!("{}/{}/{}", self.key_prefix, self.domain, route.channel);
        let bad = |why: String| ConfigError::Invalid(format!("route {route}: key {key:?}: {why}"));
        if key.contains(['*', '$', '?', '#']) {
            return Err(bad(
                "the characters * $ ? # are not allowed in a prefix, domain or channel name".into(),
            ));
        }
        OwnedKeyExpr::try_from(key.clone()).map_err(|e| bad(e.to_string()))
    }

    /// Checks everything that can be checked before starting: names, key
    /// expressions, endpoints, and that no channel is bridged in a way that
    /// would echo messages back.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(why));
        if self.domain.is_empty() || self.domain.contains('/') {
            return invalid(format!(
                "domain {:?}: must be one non-empty key expression chunk (no '/')",
                self.domain
            ));
        }
        if self.key_prefix.is_empty() {
            return invalid("key_prefix: must not be empty".into());
        }
        for endpoint in self.zenoh.listen.iter().chain(&self.zenoh.connect) {
            if let Err(why) = check_endpoint(endpoint) {
                return invalid(format!(
                    "endpoint {endpoint:?}: {why} (expected tcp/HOST:PORT or udp/HOST:PORT, such as tcp/10.0.0.1:7447)"
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.channel.is_empty() {
                return invalid(format!("route {}: empty channel name", i + 1));
            }
            self.key_for(route)?;
            if route.capacity == Some(0) {
                return invalid(format!("route {route}: capacity must be positive"));
            }
            if route.max_senders == Some(0) {
                return invalid(format!("route {route}: max_senders must be positive"));
            }
            for earlier in &self.routes[..i] {
                if earlier.channel == route.channel {
                    return invalid(format!(
                        "route {route}: channel {:?} is already bridged ({earlier}); a channel \
                         bridged both ways would send what it receives back out",
                        route.channel
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A TOML error as one line: `line L, column C: MESSAGE`, and for a field that
/// is unknown or missing, the table it belongs to (toml's own text spreads this
/// over five lines, with the field's name last).
fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(span) = e.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    let message = if message.starts_with("unknown field") || message.starts_with("missing field") {
        // After the field's name: "unknown field `foo` in [[route]] number 2, expected ..."
        // A missing field's span is its table's; the whole text for the top level.
        let table = if message.starts_with("missing") && span.start == 0 {
            "at the top level".to_owned()
        } else {
            table_at(text, line)
        };
        match message.find(", ") {
            Some(i) => format!("{} {table}{}", &message[..i], &message[i..]),
            None => format!("{message} {table}"),
        }
    } else {
        message
    };
    format!("line {line}, column {column}: {message}")
}

/// Which table line `line` (from 1) of a config file is in: `in [zenoh]`,
/// `in [[route]] number 2` or `at the top level`.
fn table_at(text: &str, line: usize) -> String {
    let mut table = None;
    let mut routes = 0;
    for l in text.lines().take(line) {
        let l = l.trim_start();
        if let Some(rest) = l.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or(rest).trim().to_owned();
            if name == "route" {
                routes += 1;
            }
            table = Some((name, true));
        } else if let Some(rest) = l.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or(rest).trim().to_owned();
            table = Some((name, false));
        }
    }
    match table {
        None => "at the top level".to_owned(),
        Some((name, true)) if name == "route" => format!("in [[route]] number {routes}"),
        Some((name, true)) => format!("in [[{name}]]"),
        Some((name, false)) => format!("in [{name}]"),
    }
}

/// The protocols this build of the bridge carries.
const PROTOCOLS: [&str; 2] = ["tcp", "udp"];

/// Checks that Zenoh can use `endpoint`: its syntax, a protocol built in, and an
/// address that resolves (a name that does not would only show up later, as a
/// connection that never comes).
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let parsed = EndPoint::from_str(endpoint).map_err(|e| zenoh_message(&e.to_string()))?;
    let protocol = parsed.protocol();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(format!(
            "protocol {:?} is not built into this bridge (it has {})",
            protocol.as_str(),
            PROTOCOLS.join(", ")
        ));
    }
    let address = parsed.address();
    let mut resolved = address
        .as_str()
        .to_socket_addrs()
        .map_err(|e| format!("address {:?}: {e}", address.as_str()))?;
    if resolved.next().is_none() {
        return Err(format!(
            "address {:?} resolves to nothing",
            address.as_str()
        ));
    }
    Ok(())
}

/// Zenoh's error text without the source location it appends.
pub(crate) fn zenoh_message(text: &str) -> String {
    match text.rfind(" at /") {
        Some(i) => text[..i].trim_end_matches('.').to_owned(),
        None => text.to_owned(),
    }
}
