//! Publish/subscribe: `shmkit_publisher`, `shmkit_subscriber` (lag reported).

use crate::args::{bytes, bytes_mut, out, put, text};
use crate::calls::{Serial, Wait};
use crate::channel::{callback_result, channel_options, shmkit_channel_options, shmkit_message_fn};
use crate::handle::{get, insert, remove, Kind};
use crate::status::{once, run, shmkit_status, shmkit_status::*, Failure};
use shmkit::channel::{Publisher, Subscriber};
use shmkit::Error;
use std::ffi::{c_char, c_void};

/// The one publisher of a broadcast channel.
pub struct shmkit_publisher {
    _opaque: (),
}

/// A subscriber of a broadcast channel.
pub struct shmkit_subscriber {
    _opaque: (),
}

pub(crate) struct PublisherEntry(Serial<Publisher>);

pub(crate) struct SubscriberEntry(Serial<SubscriberState>);

struct SubscriberState {
    sub: Subscriber,
    /// A message too long for the caller's buffer, handed out by the next call.
    pending: Option<Vec<u8>>,
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

fn recv_with<R>(
    s: &mut SubscriberState,
    wait: Wait,
    f: impl FnOnce(&[u8]) -> R,
) -> shmkit::Result<R> {
    match wait.left() {
        Some(t) => s.sub.recv_with_timeout(t, f),
        None => s.sub.recv_with(f),
    }
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
/// call returns it.
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
        let got = recv_with(&mut s, wait, |m| {
            if m.len() <= buf.len() {
                buf[..m.len()].copy_from_slice(m);
                Ok(m.len())
            } else {
                Err(m.to_vec())
            }
        })
        .map_err(|e| lag(once(timeout_ms)(e), missed))?;
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
        let code = recv_with(&mut s, wait, call).map_err(|e| lag(once(timeout_ms)(e), missed))?;
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
