//! Broadcast routes: a local subscriber feeding a Zenoh publisher (out), a Zenoh
//! subscriber feeding a local publisher (in).

use std::sync::Mutex;

use shmkit::channel::inspect;
use shmkit::Error;
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;
use zenoh::Wait;

use super::{RouteCtx, Running, POLL, RETRY};
use crate::error::BridgeError;

pub(super) fn start_out(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let mut sub = ctx.attach(|o| o.subscriber(&ctx.route.channel))?;
    // Block, not drop, when the network is slower than the publisher: the local
    // subscriber then falls behind and says so (`Lagged`), where a dropping
    // Zenoh publisher would lose messages without a word.
    let publisher = ctx
        .session
        .declare_publisher(ctx.key.clone())
        .congestion_control(CongestionControl::Block)
        .allowed_destination(Locality::Remote)
        .wait()
        .map_err(ctx.zenoh_error("declaring a publisher on"))?;
    let worker = ctx.clone();
    let thread = ctx.spawn(move || {
        let ctx = worker;
        while !ctx.stopping() {
            match sub.recv_timeout(POLL) {
                Ok(msg) => {
                    let len = msg.len();
                    match publisher.put(msg).wait() {
                        Ok(()) => ctx.counters.forwarded(len),
                        Err(e) => {
                            ctx.counters.failed();
                            tracing::warn!("route {}: zenoh put failed: {e}", ctx.route);
                        }
                    }
                }
                Err(Error::Lagged { missed, .. }) => {
                    ctx.counters.missed(missed);
                    tracing::warn!(
                        "route {}: the bridge fell behind the local publisher and missed {missed} messages",
                        ctx.route
                    );
                }
                Err(e) if e.is_timeout() => {}
                // No publisher now; the next one continues the channel.
                Err(e) if e.is_disconnected() => std::thread::sleep(RETRY),
                Err(e) => {
                    tracing::warn!("route {}: {e}", ctx.route);
                    std::thread::sleep(POLL);
                }
            }
        }
    })?;
    Ok(Running {
        _declarations: Vec::new(),
        thread: Some(thread),
    })
}

pub(super) fn start_in(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let publisher = ctx.attach(|o| o.publisher(&ctx.route.channel))?;
    // A broadcast message is one record of the local ring: at most a quarter of
    // it (less a header), whatever the sending side's ring holds.
    let limit = Limit {
        max: publisher.max_message(),
        ring: inspect(&ctx.route.channel).map(|i| i.capacity).ok(),
    };
    tracing::info!(
        "route {}: broadcast messages up to {} bytes fit the local channel ({})",
        ctx.route,
        limit.max,
        limit.why()
    );
    let publisher = Mutex::new(publisher);
    let worker = ctx.clone();
    // Publishing never waits (a broadcast publisher does not wait for its
    // subscribers), so it runs right in Zenoh's callback: no thread hand-off.
    let subscriber = ctx
        .session
        .declare_subscriber(ctx.key.clone())
        .allowed_origin(Locality::Remote)
        .callback(move |sample| {
            let len = sample.payload().len();
            if len as u64 > limit.max {
                worker.counters.failed();
                tracing::warn!(
                    "route {}: dropped a message of {len} bytes from Zenoh: longer than the {} \
                     bytes a broadcast message can have in this channel ({}); give the \
                     channel a larger ring (the route's `capacity`, when the bridge creates it)",
                    worker.route,
                    limit.max,
                    limit.why()
                );
                return;
            }
            let msg = sample.payload().to_bytes();
            let mut publisher = publisher.lock().unwrap_or_else(|p| p.into_inner());
            match publisher.publish(&msg) {
                Ok(()) => worker.counters.forwarded(msg.len()),
                Err(e) => {
                    worker.counters.failed();
                    tracing::warn!(
                        "route {}: a message of {} bytes: {e}",
                        worker.route,
                        msg.len()
                    );
                }
            }
        })
        .wait()
        .map_err(ctx.zenoh_error("declaring a subscriber on"))?;
    Ok(Running {
        _declarations: vec![Box::new(subscriber)],
        thread: None,
    })
}

/// The longest broadcast message the local channel takes, and its ring.
#[derive(Clone, Copy)]
struct Limit {
    max: u64,
    ring: Option<u64>,
}

impl Limit {
    fn why(&self) -> String {
        match self.ring {
            Some(ring) => format!("a quarter of its {ring}-byte ring, less 16 bytes"),
            None => "a quarter of its ring, less 16 bytes".to_owned(),
        }
    }
}
