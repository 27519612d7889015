//! The workers that carry one route's messages, one module per channel kind.

mod broadcast;
mod queue;
mod rpc;

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shmkit::channel::{ChannelOptions, Sender, WaitMode, RPC_MAX_CLIENTS};
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::Session;

use crate::config::{Direction, Route, RouteKind, DEFAULT_CAPACITY};
use crate::error::BridgeError;
use crate::stats::Counters;

/// How often a waiting worker looks whether the bridge is stopping.
const POLL: Duration = Duration::from_millis(100);

/// How long a worker waits before trying again after a local peer went away.
const RETRY: Duration = Duration::from_millis(20);

/// How long the bridge's local endpoints spin before they sleep.
const BRIDGE_SPIN: Duration = Duration::from_micros(2);

/// What a route's worker needs.
#[derive(Clone)]
pub(crate) struct RouteCtx {
    pub route: Route,
    pub key: OwnedKeyExpr,
    pub session: Session,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    /// This bridge run's number, carried by queue messages (see [`crate::wire`]).
    pub instance: u64,
    pub rpc_timeout: Duration,
}

impl RouteCtx {
    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Opens the route's local channel through `open`: as it is if it exists
    /// (unless the route names a capacity, which must then match), else created
    /// with the route's capacity or [`DEFAULT_CAPACITY`].
    fn attach<T>(
        &self,
        open: impl Fn(ChannelOptions) -> shmkit::Result<T>,
    ) -> Result<T, BridgeError> {
        // The bridge's side of a local channel hardly ever gains by spinning
        // (its peer is a network away, and on a busy host the spinning steals
        // the CPU Zenoh's threads need), so it sleeps almost at once.
        let base = ChannelOptions::new().wait_mode(WaitMode::Blocking { spin: BRIDGE_SPIN });
        let opened = match self.route.capacity {
            Some(c) => open(base.capacity(c)),
            None => match open(base.clone().open_existing()) {
                Err(e) if e.is_not_found() => open(base.capacity(DEFAULT_CAPACITY)),
                other => other,
            },
        };
        opened.map_err(self.channel_error())
    }

    /// Makes the RPC request channel with the ring the bridge gives the channels
    /// it creates (an `RpcServer` or `RpcClient` would make it with shmkit's
    /// default, 1 MiB) unless it exists, and holds it with a sender of its own
    /// until the bridge's server or client has attached (then dropped). A
    /// channel that exists is taken as it is, or checked against the route's
    /// `capacity` if it names one.
    fn hold_rpc_requests(&self) -> shmkit::Result<Option<Sender>> {
        let requests = ChannelOptions::new().max_senders(RPC_MAX_CLIENTS);
        match self.route.capacity {
            Some(c) => requests.capacity(c).sender(&self.route.channel).map(Some),
            None => match requests
                .capacity(DEFAULT_CAPACITY)
                .create_new()
                .sender(&self.route.channel)
            {
                Ok(hold) => Ok(Some(hold)),
                Err(shmkit::Error::AlreadyExists { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    fn channel_error(&self) -> impl FnOnce(shmkit::Error) -> BridgeError + '_ {
        move |source| BridgeError::Channel {
            route: self.route.to_string(),
            source,
        }
    }

    fn zenoh_error<E: std::fmt::Display>(&self, what: &str) -> impl FnOnce(E) -> BridgeError + '_ {
        let what = format!("route {}: {what} {}", self.route, self.key);
        move |e| BridgeError::zenoh(what, e)
    }

    /// Runs `work` on a thread of its own, named after the route.
    fn spawn(&self, work: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, BridgeError> {
        std::thread::Builder::new()
            .name(format!(
                "{}-{}-{}",
                self.route.kind, self.route.direction, self.route.channel
            ))
            .spawn(work)
            .map_err(|e| {
                BridgeError::zenoh(format!("route {}: starting its thread", self.route), e)
            })
    }
}

/// A started route: its Zenoh declarations (undeclared when dropped) and the
/// thread that works for it, if it has one.
pub(crate) struct Running {
    _declarations: Vec<Box<dyn Any + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Waits for the worker thread, which leaves within [`POLL`] of the stop flag
    /// (or once a blocked Zenoh call returns).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the local channel and declares on Zenoh what `ctx.route` needs.
pub(crate) fn start(ctx: RouteCtx) -> Result<Running, BridgeError> {
    match (ctx.route.kind, ctx.route.direction) {
        (RouteKind::Broadcast, Direction::Out) => broadcast::start_out(ctx),
        (RouteKind::Broadcast, Direction::In) => broadcast::start_in(ctx),
        (RouteKind::Queue, Direction::Out) => queue::start_out(ctx),
        (RouteKind::Queue, Direction::In) => queue::start_in(ctx),
        (RouteKind::Rpc, Direction::Out) => rpc::start_out(ctx),
        (RouteKind::Rpc, Direction::In) => rpc::start_in(ctx),
    }
}
