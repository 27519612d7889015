//! Publish/subscribe: `shmkit_publisher`, `shmkit_subscriber` (lag reported).

use crate::args::{bytes, bytes_mut, out, put, text};
use crate::calls::{Serial, Wait};
use crate::channel::{callback_result, channel_options, shmkit_channel_options, shmkit_message_fn};
use crate::handle::{get, insert, remove, Kind};
use crate::pollable::{on_ready, pollable, shmkit_descriptor, shmkit_ready_fn, would_block};
use crate::status::{once, run, shmkit_status, shmkit_status::*, Failure};
use shmkit::channel::{Publisher, Subscriber};
use shmkit::Error;
use std::ffi::{c_char, c_void};
use std::task::Poll;

/// The one publisher of a broadcast channel.
pub struct shmkit_publisher {
    _opaque: (),
}

/// A subscriber of a broadcast channel.
pub struct shmkit_subscriber {
    _opaque: (),
}

pub(crate) struct PublisherEntry(Serial<Publisher>);

pub(crate) struct SubscriberEntry(pub(crate) Serial<SubscriberState>);

pub(crate) struct SubscriberState {
    pub(crate) sub: Subscriber,
    /// A message too long for the caller's buffer, handed out by the next call.
    pub(crate) pending: Option<Vec<u8>>,
}

/// Attaches to broadcast channel `name` as its publisher, creating it if needed
/// (`SHMKIT_CHANNEL_HISTORY` keeps messages for late subscribers).
#[no_mangle]
pub unsafe extern "C" fn shmkit_publisher_connect(
    name: *const c_char,
    opts: *const shmkit_channel_options,
    publisher: *mut *mut shmkit_publisher,
) -> shmkit_status {
    run("shmkit_publisher_connect", || {
        out("publisher", publisher)?;
        // SAFETY: a C string and an options struct per the header's conventions.
        let (name, o) = unsafe { (text("name", name)?, channel_options(opts, true)?) };
        let p = o.publisher(name)?;
        // Publishing never waits: nothing to interrupt.
        let h = insert(Kind::Publisher, PublisherEntry(Serial::new(name, p, None)))?;
        // SAFETY: checked by `out`.
        unsafe { put(publisher, h as *mut shmkit_publisher) };
        Ok(())
    })
}

/// Publishes `len` bytes to every subscriber; never waits. `SHMKIT_ERR_TOO_LONG`
/// above a quarter of the ring.
#[no_mangle]
pub unsafe extern "C" fn shmkit_publisher_publish(
    publisher: *mut shmkit_publisher,
    data: *const u8,
    len: usize,
) -> shmkit_status {
    run("shmkit_publisher_publish", || {
        let entry = get::<PublisherEntry>(publisher as usize, Kind::Publisher)?;
        // SAFETY: `len` readable bytes per the header's conventions.
        let data = unsafe { bytes("data", data, len) }?;
        let mut p = entry.0.enter(Wait::Forever, SHMKIT_ERR_WOULD_BLOCK)?;
        Ok(p.publish(data)?)
    })
}

/// Detaches; subscribers see `SHMKIT_ERR_DISCONNECTED` after reading the rest.
#[no_mangle]
pub extern "C" fn shmkit_publisher_close(publisher: *mut shmkit_publisher) -> shmkit_status {
    run("shmkit_publisher_close", || {
        remove::<PublisherEntry>(publisher as usize, Kind::Publisher)?
            .0
            .close();
        Ok(())
    })
}

/// Attaches to broadcast channel `name` as a subscriber, creating it if needed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_subscriber_connect(
    name: *const c_char,
    opts: *const shmkit_channel_options,
    subscriber: *mut *mut shmkit_subscriber,
) -> shmkit_status {
    run("shmkit_subscriber_connect", || {
        out("subscriber", subscriber)?;
        // SAFETY: a C string and an options struct per the header's conventions.
        let (name, o) = unsafe { (text("name", name)?, channel_options(opts, true)?) };
        let s = o.subscriber(name)?;
        let stop = s.interrupter();
        let state = SubscriberState {
            sub: s,
            pending: None,
        };
        let h = insert(
            Kind::Subscriber,
            SubscriberEntry(Serial::new(name, state, Some(stop))),
        )?;
        // SAFETY: checked by `out`.
        unsafe { put(subscriber, h as *mut shmkit_subscriber) };
        Ok(())
    })
}

/// A receive: polled on a pollable handle with timeout 0 (`None`: pending, the
/// handle is armed), else tried or waited for.
fn recv_with<R>(
    s: &mut SubscriberState,
    polled: Option<&std::sync::Arc<crate::pollable::Readiness>>,
    wait: Wait,
    f: impl FnOnce(&[u8]) -> R,
) -> shmkit::Result<Option<R>> {
    match (wait, polled) {
        (Wait::Now, Some(r)) => match r.poll(|cx| s.sub.poll_recv_with(cx, f)) {
            Poll::Ready(got) => got.map(Some),
            Poll::Pending => Ok(None),
        },
        (_, _) => match wait.left() {
            Some(t) => s.sub.recv_with_timeout(t, f).map(Some),
            None => s.sub.recv_with(f).map(Some),
        },
    }
}

fn nothing_new(entry: &SubscriberEntry) -> Failure {
    would_block(entry.0.what(), "nothing new now")
}

fn lag(e: Error, missed: *mut u64) -> Failure {
    if let Error::Lagged { missed: n, .. } = &e {
        // SAFETY: NULL or writable per the header's conventions.
        unsafe { put(missed, *n) };
    }
    e.into()
}

/// Receives the next message into `buf`, setting `*len`, waiting up to
/// `timeout_ms` (negative: forever; 0: `SHMKIT_ERR_WOULD_BLOCK` if nothing is new).
/// `SHMKIT_ERR_LAGGED`: this subscriber fell behind and `*missed` (may be NULL)
/// messages were overwritten; call again for the oldest one still held.
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`: `*len` says how long the message is; the next
/// call returns it. On a pollable handle (`shmkit_subscriber_pollable`), a
/// WOULD_BLOCK with timeout 0 arms its descriptor.
#[no_mangle]
pub unsafe extern "C" fn shmkit_subscriber_recv(
    subscriber: *mut shmkit_subscriber,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_ms: i64,
    missed: *mut u64,
) -> shmkit_status {
    run("shmkit_subscriber_recv", || {
        out("len", len)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<SubscriberEntry>(subscriber as usize, Kind::Subscriber)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let mut s = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        let too_small = |n: usize| {
            Failure::new(
                SHMKIT_ERR_BUFFER_TOO_SMALL,
                format!("next message is {n} bytes, the buffer holds only {capacity}"),
            )
        };
        if let Some(msg) = s.pending.take() {
            // SAFETY: checked by `out`.
            unsafe { put(len, msg.len()) };
            if msg.len() > buf.len() {
                let n = msg.len();
                s.pending = Some(msg);
                return Err(too_small(n));
            }
            buf[..msg.len()].copy_from_slice(&msg);
            return Ok(());
        }
        let got = recv_with(&mut s, entry.0.polled(), wait, |m| {
            if m.len() <= buf.len() {
                buf[..m.len()].copy_from_slice(m);
                Ok(m.len())
            } else {
                Err(m.to_vec())
            }
        })
        .map_err(|e| lag(once(timeout_ms)(e), missed))?
        .ok_or_else(|| nothing_new(&entry))?;
        match got {
            Ok(n) => {
                // SAFETY: checked by `out`.
                unsafe { put(len, n) };
                Ok(())
            }
            Err(msg) => {
                let n = msg.len();
                // SAFETY: checked by `out`.
                unsafe { put(len, n) };
                s.pending = Some(msg);
                Err(too_small(n))
            }
        }
    })
}

/// Receives the next message and lends it to `callback` (see
/// `shmkit_subscriber_recv` for timeouts and lag).
#[no_mangle]
pub unsafe extern "C" fn shmkit_subscriber_recv_with(
    subscriber: *mut shmkit_subscriber,
    callback: shmkit_message_fn,
    user_data: *mut c_void,
    timeout_ms: i64,
    missed: *mut u64,
) -> shmkit_status {
    run("shmkit_subscriber_recv_with", || {
        let Some(f) = callback else {
            return Err(Failure::new(SHMKIT_ERR_NULL_POINTER, "callback is NULL"));
        };
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<SubscriberEntry>(subscriber as usize, Kind::Subscriber)?;
        let mut s = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        // SAFETY: the caller's callback gets the message, valid for the call.
        let call = |m: &[u8]| unsafe { f(m.as_ptr(), m.len(), user_data) };
        if let Some(msg) = s.pending.take() {
            return callback_result(call(&msg));
        }
        let code = recv_with(&mut s, entry.0.polled(), wait, call)
            .map_err(|e| lag(once(timeout_ms)(e), missed))?
            .ok_or_else(|| nothing_new(&entry))?;
        callback_result(code)
    })
}

/// Detaches. A receive blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED`, and the subscriber's slot is free when this returns
/// (called from inside this subscriber's callback, when that receive returns).
#[no_mangle]
pub extern "C" fn shmkit_subscriber_close(subscriber: *mut shmkit_subscriber) -> shmkit_status {
    run("shmkit_subscriber_close", || {
        remove::<SubscriberEntry>(subscriber as usize, Kind::Subscriber)?
            .0
            .close();
        Ok(())
    })
}

/// Gives a new descriptor for this subscriber that an event loop can wait on,
/// owned by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_subscriber_recv` or
/// `_recv_with` with timeout 0 that returns `SHMKIT_ERR_WOULD_BLOCK` arms it: it
/// becomes ready when a message may have been published (or the publisher is
/// gone). When it is ready, receive with timeout 0 until WOULD_BLOCK
/// (`SHMKIT_ERR_LAGGED` included: call again).
#[no_mangle]
pub unsafe extern "C" fn shmkit_subscriber_pollable(
    subscriber: *mut shmkit_subscriber,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_subscriber_pollable", || {
        pollable(descriptor, || {
            get::<SubscriberEntry>(subscriber as usize, Kind::Subscriber)?
                .0
                .readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time this subscriber may be ready,
/// or at once, on this thread, if it is ready now; makes the handle pollable. See
/// `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_subscriber_on_ready(
    subscriber: *mut shmkit_subscriber,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_subscriber_on_ready", || {
        on_ready(callback, user_data, || {
            get::<SubscriberEntry>(subscriber as usize, Kind::Subscriber)?
                .0
                .readiness()
        })
    })
}
