//! A running bridge: one Zenoh session and a worker per route.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let mut bridge = Bridge {
            session,
            stop: Arc::new(AtomicBool::new(false)),
            routes: Vec::new(),
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

    /// Stops forwarding, closes the local channels (peers see the bridge leave,
    /// not die) and leaves Zenoh.
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
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
