//! Queue routes: a local receiver feeding a Zenoh publisher (out), a Zenoh
//! subscriber feeding a local sender (in). Messages carry a sequence number so
//! the receiving bridge drops duplicates and counts gaps.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use shmkit::channel::Sender;
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;
use zenoh::Wait;

use super::{RouteCtx, Running, POLL, RETRY};
use crate::error::BridgeError;
use crate::wire::{self, Arrival, Sequence};

pub(super) fn start_out(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let mut rx = ctx.attach(|o| match ctx.route.max_senders {
        Some(n) => o.max_senders(n).receiver(&ctx.route.channel),
        None => o.receiver(&ctx.route.channel),
    })?;
    // Block, not drop: a queue loses nothing while both bridges run, so a slow
    // remote side holds messages back in the local queue, up to its senders.
    let publisher = ctx
        .session
        .declare_publisher(ctx.key.clone())
        .congestion_control(CongestionControl::Block)
        .allowed_destination(Locality::Remote)
        .wait()
        .map_err(ctx.zenoh_error("declaring a publisher on"))?;
    // Messages leave the local queue only while a remote bridge subscribes:
    // with none, Zenoh would drop them, so they wait in the queue instead.
    let matched = Arc::new(AtomicBool::new(
        publisher
            .matching_status()
            .wait()
            .map_err(ctx.zenoh_error("asking who subscribes to"))?
            .matching(),
    ));
    let flag = matched.clone();
    let listener = publisher
        .matching_listener()
        .callback(move |status| flag.store(status.matching(), Relaxed))
        .wait()
        .map_err(ctx.zenoh_error("watching who subscribes to"))?;
    let worker = ctx.clone();
    let thread = ctx.spawn(move || {
        let ctx = worker;
        let mut seq = 0u64;
        while !ctx.stopping() {
            if !matched.load(Relaxed) {
                std::thread::sleep(RETRY);
                continue;
            }
            // Taken out of the queue before it goes to Zenoh: a bridge killed in
            // between loses this one message, and never sends one twice.
            match rx.recv_timeout(POLL) {
                Ok(msg) => {
                    seq += 1;
                    let len = msg.len();
                    match publisher
                        .put(msg)
                        .attachment(wire::encode(ctx.instance, seq).to_vec())
                        .wait()
                    {
                        Ok(()) => ctx.counters.forwarded(len),
                        Err(e) => {
                            ctx.counters.failed();
                            tracing::warn!("route {}: zenoh put failed: {e}", ctx.route);
                        }
                    }
                }
                Err(e) if e.is_timeout() => {}
                // No sender now: the queue waits for the next one.
                Err(e) if e.is_disconnected() => std::thread::sleep(RETRY),
                Err(e) => {
                    tracing::warn!("route {}: {e}", ctx.route);
                    std::thread::sleep(POLL);
                }
            }
        }
        drop(listener);
    })?;
    Ok(Running {
        _declarations: Vec::new(),
        thread: Some(thread),
    })
}

pub(super) fn start_in(ctx: RouteCtx) -> Result<Running, BridgeError> {
    let tx = ctx.attach(|o| o.sender(&ctx.route.channel))?;
    let state = Mutex::new((tx, Sequence::default()));
    let worker = ctx.clone();
    // Sending runs in Zenoh's callback. When the local queue is full it waits
    // there, which holds back the link and, through Zenoh's blocking congestion
    // control, the sending bridge: back-pressure end to end, nothing dropped.
    let subscriber = ctx
        .session
        .declare_subscriber(ctx.key.clone())
        .allowed_origin(Locality::Remote)
        .callback(move |sample| {
            let ctx = &worker;
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let (tx, seen) = &mut *state;
            if let Some((instance, seq)) = sample
                .attachment()
                .and_then(|a| wire::decode(&a.to_bytes()))
            {
                match seen.arrive(instance, seq) {
                    Arrival::Next => {}
                    Arrival::AfterGap(n) => {
                        ctx.counters.lost(n);
                        tracing::warn!("route {}: {n} messages never arrived", ctx.route);
                    }
                    Arrival::Duplicate => {
                        ctx.counters.duplicate();
                        return;
                    }
                }
            }
            deliver(ctx, tx, sample.payload());
        })
        .wait()
        .map_err(ctx.zenoh_error("declaring a subscriber on"))?;
    Ok(Running {
        _declarations: vec![Box::new(subscriber)],
        thread: None,
    })
}

/// Sends `msg` into the local queue, waiting for room (and for a receiver, if
/// the last one left a full queue) until the bridge stops.
fn deliver(ctx: &RouteCtx, tx: &mut Sender, msg: &ZBytes) {
    let len = msg.len();
    // A message that fits one record goes from Zenoh's buffers straight into
    // the ring; a longer one is put together first and sent in fragments.
    let fits = len as u64 <= tx.max_record();
    let joined = if fits { None } else { Some(msg.to_bytes()) };
    loop {
        let sent = match &joined {
            None => tx.reserve_timeout(len, POLL).map(|mut room| {
                let mut at = 0;
                for slice in msg.slices() {
                    room[at..at + slice.len()].copy_from_slice(slice);
                    at += slice.len();
                }
                room.commit();
            }),
            Some(bytes) => tx.send_timeout(bytes, POLL),
        };
        match sent {
            Ok(()) => return ctx.counters.forwarded(len),
            Err(e) if e.is_timeout() || e.is_disconnected() => {
                if ctx.stopping() {
                    return;
                }
                if e.is_disconnected() {
                    std::thread::sleep(RETRY);
                }
            }
            Err(e) => {
                ctx.counters.failed();
                tracing::warn!("route {}: a message of {len} bytes: {e}", ctx.route);
                return;
            }
        }
    }
}
