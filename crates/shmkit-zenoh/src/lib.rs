//! Bridges shmkit channels between machines over [Zenoh](https://zenoh.io).
//!
//! Shared memory ends at the machine's edge. A [`Bridge`] on each machine carries
//! chosen local channels over Zenoh, so programs keep talking through shmkit
//! channels as before while their peers run elsewhere:
//!
//! | route | on the sending host | Zenoh | on the receiving host |
//! |---|---|---|---|
//! | `broadcast` | the bridge subscribes to the local publisher's channel (`out`) | `put` on the key | the bridge publishes into a local broadcast channel of the same name (`in`) |
//! | `queue` | the bridge is the local queue's receiver (`out`) | `put`, reliable, blocking congestion control | the bridge sends into a local queue of the same name (`in`) |
//! | `rpc` | the bridge serves local clients on the channel (`in`) and makes each call a `get` | `get` / reply | the bridge calls the local [`RpcServer`](shmkit::channel::RpcServer) (`out`) |
//!
//! Every channel `NAME` maps to the key expression `<key_prefix>/<domain>/NAME`
//! (`shmkit/<domain>/NAME` by default). The payload of each Zenoh sample is the
//! message's bytes, untouched, so a plain Zenoh program subscribing to that key
//! gets exactly what the local publisher sent, and what it puts there reaches the
//! local channel. Queue messages also carry a 16-byte attachment
//! ([`wire`]) by which the receiving bridge drops duplicates and counts gaps.
//!
//! Messages never echo: the bridge's Zenoh publishers and queryables only reach
//! remote sessions and its subscribers only hear remote ones (Zenoh's locality
//! filters), and a channel can be bridged in one direction only.
//!
//! # What is guaranteed
//!
//! - While both bridges and the link between them run, a queue delivers every
//!   message once, whole and in order; a slow receiver slows the senders
//!   (Zenoh's blocking congestion control), nothing is dropped. A queue's
//!   messages leave the local ring only while a remote bridge subscribes to
//!   the key; until then they wait there.
//! - Broadcast messages arrive whole and in order; like a local subscriber, the
//!   bridge never slows the publisher down, and when it falls more than a ring
//!   behind it misses messages. That is counted ([`RouteStats::missed`]) and
//!   logged, never hidden.
//! - Across a crash and restart of a bridge, no message is delivered twice to a
//!   local queue receiver: the sending bridge takes each message out of its ring
//!   before handing it to Zenoh, and the receiving one drops numbers it has
//!   seen. Messages in flight at the crash (at most one taken from the ring, and
//!   those in Zenoh's buffers and the network) are lost; the receiving bridge
//!   counts the gap when the sending bridge is the one that survived
//!   ([`RouteStats::lost`]). Messages waiting in a ring are kept: the
//!   restarted bridge carries on with them.
//! - The bridge is an ordinary peer of its local channels: `shmkit ls` shows it
//!   (process `shmkit-bridge`), and when it dies local peers see a dead peer
//!   (`Disconnected` once they have read what it sent), as with any process.
//!
//! ```no_run
//! use shmkit_zenoh::{Bridge, BridgeConfig};
//!
//! let config = BridgeConfig::from_toml(r#"
//!     domain = "lab"
//!     [zenoh]
//!     connect = ["tcp/10.0.0.2:7447"]
//!     multicast_scouting = false
//!     [[route]]
//!     channel = "jobs"
//!     kind = "queue"
//!     direction = "out"
//! "#)?;
//! let bridge = Bridge::start(&config)?;
//! # drop(bridge);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `shmkit-bridge` binary runs a bridge from a config file and command-line
//! flags: `docs/bridge.md`.

mod bridge;
mod config;
mod error;
mod route;
mod stats;
pub mod wire;

pub use bridge::{Bridge, RPC_TIMEOUT};
pub use config::{
    BridgeConfig, Direction, Mode, Route, RouteKind, ZenohSettings, DEFAULT_CAPACITY,
    DEFAULT_KEY_PREFIX,
};
pub use error::{BridgeError, ConfigError};
pub use stats::RouteStats;
