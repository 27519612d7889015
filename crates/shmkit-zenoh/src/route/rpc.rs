//! RPC routes: a Zenoh queryable answered by a local server (out), a local
//! server whose requests become Zenoh queries (in).

use shmkit::channel::{RpcClient, RpcServer};
use zenoh::handlers::FifoChannel;
use zenoh::sample::Locality;
use zenoh::Wait;

use super::{RouteCtx, Running, POLL};
use crate::error::BridgeError;

/// Queries waiting for the local server; Zenoh holds further ones back.
const QUERY_BACKLOG: usize = 256;

pub(super) fn start_out(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let queryable = ctx
        .session
        .declare_queryable(ctx.key.clone())
        .allowed_origin(Locality::Remote)
        .with(FifoChannel::new(QUERY_BACKLOG))
        .wait()
        .map_err(ctx.zenoh_error("declaring a queryable on"))?;
    let worker = ctx.clone();
    let thread = ctx.spawn(move || {
        let ctx = worker;
        // Connected at the first query, and again after the server went away:
        // the bridge may start before the server it exports.
        let mut client: Option<RpcClient> = None;
        while !ctx.stopping() {
            let query = match queryable.recv_timeout(POLL) {
                Ok(Some(q)) => q,
                Ok(None) => continue,
                Err(_) => break,
            };
            let request = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
            let answer = match client.as_mut() {
                Some(c) => Ok(c),
                None => ctx
                    .hold_rpc_requests()
                    .and_then(|_hold| RpcClient::connect(&ctx.route.channel))
                    .map(|c| client.insert(c)),
            }
            .and_then(|c| c.call_timeout(&request, ctx.rpc_timeout));
            let sent = match answer {
                Ok(reply) => {
                    let len = reply.len();
                    query
                        .reply(query.key_expr().clone(), reply)
                        .wait()
                        .map(|()| ctx.counters.forwarded(len))
                }
                Err(e) => {
                    ctx.counters.failed();
                    tracing::warn!("route {}: a query: {e}", ctx.route);
                    if e.is_disconnected() || e.is_not_found() {
                        client = None;
                    }
                    query.reply_err(e.to_string()).wait()
                }
            };
            if let Err(e) = sent {
                tracing::warn!("route {}: answering a query: {e}", ctx.route);
            }
        }
    })?;
    Ok(Running {
        _declarations: Vec::new(),
        thread: Some(thread),
    })
}

pub(super) fn start_in(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let hold = ctx.hold_rpc_requests().map_err(ctx.channel_error())?;
    let mut server = RpcServer::bind(&ctx.route.channel).map_err(ctx.channel_error())?;
    drop(hold);
    let querier = ctx
        .session
        .declare_querier(ctx.key.clone())
        .allowed_destination(Locality::Remote)
        .timeout(ctx.rpc_timeout)
        .wait()
        .map_err(ctx.zenoh_error("declaring a querier on"))?;
    let worker = ctx.clone();
    let thread = ctx.spawn(move || {
        let ctx = worker;
        while !ctx.stopping() {
            let request = match server.recv_timeout(POLL) {
                Ok(r) => r,
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    tracing::warn!("route {}: {e}", ctx.route);
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            let replies = match querier.get().payload(request.payload().to_vec()).wait() {
                Ok(r) => r,
                Err(e) => {
                    ctx.counters.failed();
                    tracing::warn!("route {}: zenoh query failed: {e}", ctx.route);
                    continue;
                }
            };
            // The first answer counts; without one the local client times out,
            // as it would with a local server that never answers.
            match replies.recv().map(|r| r.into_result()) {
                Ok(Ok(sample)) => {
                    let reply = sample.payload().to_bytes();
                    match server.reply(&request, &reply) {
                        Ok(()) => ctx.counters.forwarded(reply.len()),
                        Err(e) => {
                            ctx.counters.failed();
                            tracing::warn!("route {}: replying: {e}", ctx.route);
                        }
                    }
                }
                Ok(Err(remote)) => {
                    ctx.counters.failed();
                    tracing::warn!(
                        "route {}: the remote side failed: {}",
                        ctx.route,
                        String::from_utf8_lossy(&remote.payload().to_bytes())
                    );
                }
                Err(_) => {
                    ctx.counters.failed();
                    tracing::warn!(
                        "route {}: no remote server answered within {:?}",
                        ctx.route,
                        ctx.rpc_timeout
                    );
                }
            }
        }
    })?;
    Ok(Running {
        _declarations: Vec::new(),
        thread: Some(thread),
    })
}
