//! Request/response: `shmkit_rpc_server`, `shmkit_rpc_client`.

use crate::args::{bytes, bytes_mut, out, put, text};
use crate::calls::{Serial, Wait};
use crate::channel::{callback_result, shmkit_message_fn};
use crate::handle::{get, insert, remove, Kind};
use crate::pollable::{on_ready, pollable, shmkit_descriptor, shmkit_ready_fn, would_block};
use crate::status::{once, run, shmkit_status, shmkit_status::*, Failure};
use shmkit::channel::{PendingCall, Request, RpcClient, RpcServer};
use shmkit::Error;
use std::ffi::{c_char, c_void};
use std::task::Poll;
use std::time::Duration;

/// The server of a request/response channel.
pub struct shmkit_rpc_server {
    _opaque: (),
}

/// A client of a request/response channel.
pub struct shmkit_rpc_client {
    _opaque: (),
}

/// How long a call without a timeout waits (forever, in practice).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) struct ServerState {
    pub(crate) server: RpcServer,
    /// The request being answered, and whether the caller has had its bytes.
    pub(crate) current: Option<(Request, bool)>,
}

pub(crate) struct ServerEntry(pub(crate) Serial<ServerState>);

struct ClientState {
    client: RpcClient,
    /// A reply too long for the caller's buffer (`shmkit_rpc_client_last_reply`).
    reply: Option<Vec<u8>>,
    /// The call `shmkit_rpc_client_start_call` sent, until its reply is collected.
    call: Option<PendingCall>,
}

pub(crate) struct ClientEntry(Serial<ClientState>);

fn copy_out(data: &[u8], buf: &mut [u8], len: *mut usize) -> Result<(), Failure> {
    // SAFETY: the callers checked `len` with `out`.
    unsafe { put(len, data.len()) };
    if data.len() > buf.len() {
        return Err(Failure::from(Error::BufferTooSmall {
            object: "message".into(),
            len: data.len() as u64,
            capacity: buf.len() as u64,
        }));
    }
    buf[..data.len()].copy_from_slice(data);
    Ok(())
}

/// Serves request/response channel `name` (one server per name:
/// `SHMKIT_ERR_OCCUPIED`, naming the bound server's process, while another is
/// bound).
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_server_bind(
    name: *const c_char,
    server: *mut *mut shmkit_rpc_server,
) -> shmkit_status {
    run("shmkit_rpc_server_bind", || {
        out("server", server)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let server_ = RpcServer::bind(name).map_err(|e| match e {
            // The core names the slot it could not take ("no free receiver
            // slot"); what a C user needs to hear is that a server is bound.
            Error::Occupied { object, reason, .. } => Failure::new(
                SHMKIT_ERR_OCCUPIED,
                format!(
                    "{object}: another RPC server is bound to this name ({reason}); \
                     one server per name"
                ),
            ),
            e => e.into(),
        })?;
        let stop = server_.interrupter();
        let state = ServerState {
            server: server_,
            current: None,
        };
        let h = insert(
            Kind::RpcServer,
            ServerEntry(Serial::new(name, state, Some(stop))),
        )?;
        // SAFETY: checked by `out`.
        unsafe { put(server, h as *mut shmkit_rpc_server) };
        Ok(())
    })
}

/// Receives the next request into `buf`, setting `*len`, waiting up to
/// `timeout_ms` (negative: forever). Answer it with `shmkit_rpc_server_reply`.
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`: `*len` says how long it is; the next call
/// returns the same request. On a pollable handle (`shmkit_rpc_server_pollable`),
/// a WOULD_BLOCK with timeout 0 arms its descriptor.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_server_recv(
    server: *mut shmkit_rpc_server,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_rpc_server_recv", || {
        out("len", len)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<ServerEntry>(server as usize, Kind::RpcServer)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let mut s = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        if !matches!(s.current, Some((_, false))) {
            let request = match (wait, entry.0.polled(), wait.left()) {
                (Wait::Now, Some(r), _) => match r.poll(|cx| s.server.poll_recv(cx)) {
                    Poll::Ready(request) => request?,
                    Poll::Pending => return Err(would_block(entry.0.what(), "no request now")),
                },
                (_, _, Some(t)) => s.server.recv_timeout(t).map_err(once(timeout_ms))?,
                (_, _, None) => s.server.recv()?,
            };
            s.current = Some((request, false));
        }
        let Some((request, delivered)) = s.current.as_mut() else {
            unreachable!("set just above");
        };
        copy_out(request.payload(), buf, len)?;
        *delivered = true;
        Ok(())
    })
}

/// Answers the request last received with `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_server_reply(
    server: *mut shmkit_rpc_server,
    data: *const u8,
    len: usize,
) -> shmkit_status {
    run("shmkit_rpc_server_reply", || {
        let entry = get::<ServerEntry>(server as usize, Kind::RpcServer)?;
        // SAFETY: `len` readable bytes per the header's conventions.
        let data = unsafe { bytes("data", data, len) }?;
        let mut s = entry.0.enter(Wait::Forever, SHMKIT_ERR_TIMEOUT)?;
        match s.current.take() {
            Some((request, true)) => Ok(s.server.reply(&request, data)?),
            other => {
                s.current = other;
                Err(Failure::new(
                    SHMKIT_ERR_INVALID_ARGUMENT,
                    "no request received to reply to (shmkit_rpc_server_recv first)",
                ))
            }
        }
    })
}

/// Stops serving. A receive blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED`, and the name can be served again when this returns.
#[no_mangle]
pub extern "C" fn shmkit_rpc_server_close(server: *mut shmkit_rpc_server) -> shmkit_status {
    run("shmkit_rpc_server_close", || {
        remove::<ServerEntry>(server as usize, Kind::RpcServer)?
            .0
            .close();
        Ok(())
    })
}

/// Connects to the server of `name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_connect(
    name: *const c_char,
    client: *mut *mut shmkit_rpc_client,
) -> shmkit_status {
    run("shmkit_rpc_client_connect", || {
        out("client", client)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let client_ = RpcClient::connect(name)?;
        let stop = client_.interrupter();
        let state = ClientState {
            client: client_,
            reply: None,
            call: None,
        };
        let h = insert(
            Kind::RpcClient,
            ClientEntry(Serial::new(name, state, Some(stop))),
        )?;
        // SAFETY: checked by `out`.
        unsafe { put(client, h as *mut shmkit_rpc_client) };
        Ok(())
    })
}

/// Sends a request of `request_len` bytes and receives the reply into `buf`,
/// setting `*len`, waiting up to `timeout_ms` (negative: forever; the request
/// is sent first, so 0 gives `SHMKIT_ERR_TIMEOUT` unless the reply is there at
/// once: the request went out, the call did not just "try once").
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`: `*len` says how long the reply is; fetch it
/// with `shmkit_rpc_client_last_reply`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_call(
    client: *mut shmkit_rpc_client,
    request: *const u8,
    request_len: usize,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_rpc_client_call", || {
        out("len", len)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<ClientEntry>(client as usize, Kind::RpcClient)?;
        // SAFETY: buffers per the header's conventions.
        let (request, buf) = unsafe {
            (
                bytes("request", request, request_len)?,
                bytes_mut("buf", buf, capacity)?,
            )
        };
        let mut c = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        c.reply = None;
        c.call = None;
        let t = wait.left().unwrap_or(FOREVER);
        let got = c.client.call_with_timeout(request, t, |r| {
            if r.len() <= buf.len() {
                buf[..r.len()].copy_from_slice(r);
                Ok(r.len())
            } else {
                Err(r.to_vec())
            }
        })?;
        match got {
            Ok(n) => {
                // SAFETY: checked by `out`.
                unsafe { put(len, n) };
                Ok(())
            }
            Err(reply) => {
                let result = copy_out(&reply, buf, len);
                c.reply = Some(reply);
                result
            }
        }
    })
}

/// Copies the reply that did not fit the last `shmkit_rpc_client_call`'s (or
/// `shmkit_rpc_client_finish_call`'s) buffer.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_last_reply(
    client: *mut shmkit_rpc_client,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> shmkit_status {
    run("shmkit_rpc_client_last_reply", || {
        out("len", len)?;
        let entry = get::<ClientEntry>(client as usize, Kind::RpcClient)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let c = entry.0.enter(Wait::Forever, SHMKIT_ERR_TIMEOUT)?;
        match &c.reply {
            Some(r) => copy_out(r, buf, len),
            None => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "no reply is kept (the last call's reply fitted its buffer)",
            )),
        }
    })
}

/// Sends a request and lends the reply to `callback` without a copy.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_call_with(
    client: *mut shmkit_rpc_client,
    request: *const u8,
    request_len: usize,
    callback: shmkit_message_fn,
    user_data: *mut c_void,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_rpc_client_call_with", || {
        let wait = Wait::from_ms(timeout_ms);
        let Some(f) = callback else {
            return Err(Failure::new(SHMKIT_ERR_NULL_POINTER, "callback is NULL"));
        };
        let entry = get::<ClientEntry>(client as usize, Kind::RpcClient)?;
        // SAFETY: `request_len` readable bytes per the header's conventions.
        let request = unsafe { bytes("request", request, request_len) }?;
        let mut c = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        c.call = None;
        let t = wait.left().unwrap_or(FOREVER);
        // SAFETY: the caller's callback gets the reply, valid for the call.
        let code = c
            .client
            .call_with_timeout(request, t, |r| unsafe { f(r.as_ptr(), r.len(), user_data) })?;
        callback_result(code)
    })
}

/// Disconnects. A call blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED` (called from inside this client's callback, the handle
/// closes when that call returns).
#[no_mangle]
pub extern "C" fn shmkit_rpc_client_close(client: *mut shmkit_rpc_client) -> shmkit_status {
    run("shmkit_rpc_client_close", || {
        remove::<ClientEntry>(client as usize, Kind::RpcClient)?
            .0
            .close();
        Ok(())
    })
}

/// Sends a request of `request_len` bytes without waiting for its reply (only,
/// up to `timeout_ms`, for room in the server's request queue: 0 does not wait,
/// `SHMKIT_ERR_WOULD_BLOCK` when it is full; that one does not arm the
/// descriptor). Collect the reply with `shmkit_rpc_client_finish_call`. A
/// `shmkit_rpc_client_call`, `_call_with` or another start abandons a call not
/// finished: its reply is discarded when it comes.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_start_call(
    client: *mut shmkit_rpc_client,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_rpc_client_start_call", || {
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<ClientEntry>(client as usize, Kind::RpcClient)?;
        // SAFETY: `request_len` readable bytes per the header's conventions.
        let request = unsafe { bytes("request", request, request_len) }?;
        let mut c = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        c.call = None;
        c.reply = None;
        let call = c
            .client
            .start_call(request, wait.left())
            .map_err(|e| match e {
                Error::Timeout { object, op, .. } if matches!(wait, Wait::Now) => {
                    Error::WouldBlock { object, op }
                }
                e => e,
            })?;
        c.call = Some(call);
        Ok(())
    })
}

/// Receives the reply to the call `shmkit_rpc_client_start_call` sent into `buf`,
/// setting `*len`, waiting up to `timeout_ms` (negative: forever; 0: not at all,
/// `SHMKIT_ERR_WOULD_BLOCK` if it has not come, which on a pollable handle arms
/// the descriptor). A timeout leaves the call pending: ask again.
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`: `*len` says how long the reply is; fetch it
/// with `shmkit_rpc_client_last_reply`. `SHMKIT_ERR_DISCONNECTED` if the server
/// stopped or died; `SHMKIT_ERR_INVALID_ARGUMENT` if no call is pending.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_finish_call(
    client: *mut shmkit_rpc_client,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_rpc_client_finish_call", || {
        out("len", len)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = get::<ClientEntry>(client as usize, Kind::RpcClient)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let mut c = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        let Some(call) = c.call else {
            return Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "no call is pending (shmkit_rpc_client_start_call first)",
            ));
        };
        let keep = |r: &[u8]| {
            if r.len() <= buf.len() {
                buf[..r.len()].copy_from_slice(r);
                Ok(r.len())
            } else {
                Err(r.to_vec())
            }
        };
        let got = match (wait, entry.0.polled()) {
            (Wait::Now, Some(r)) => match r.poll(|cx| c.client.poll_reply_with(cx, call, keep)) {
                Poll::Ready(got) => got,
                Poll::Pending => {
                    return Err(would_block(entry.0.what(), "the reply has not come yet"))
                }
            },
            _ => c
                .client
                .finish_call_with(call, wait.left().unwrap_or(FOREVER), keep)
                .map_err(once(timeout_ms)),
        };
        let got = match got {
            Err(e) if e.is_timeout() || e.is_would_block() => return Err(e.into()),
            other => {
                // Answered, or failed for good: no longer pending.
                c.call = None;
                other?
            }
        };
        match got {
            Ok(n) => {
                // SAFETY: checked by `out`.
                unsafe { put(len, n) };
                Ok(())
            }
            Err(reply) => {
                let result = copy_out(&reply, buf, len);
                c.reply = Some(reply);
                result
            }
        }
    })
}

/// Gives a new descriptor for this server that an event loop can wait on, owned
/// by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_rpc_server_recv` with
/// timeout 0 that returns `SHMKIT_ERR_WOULD_BLOCK` arms it: it becomes ready when
/// a request may have come.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_server_pollable(
    server: *mut shmkit_rpc_server,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_rpc_server_pollable", || {
        pollable(descriptor, || {
            get::<ServerEntry>(server as usize, Kind::RpcServer)?
                .0
                .readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time this server may be ready, or
/// at once, on this thread, if it is ready now; makes the handle pollable. See
/// `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_server_on_ready(
    server: *mut shmkit_rpc_server,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_rpc_server_on_ready", || {
        on_ready(callback, user_data, || {
            get::<ServerEntry>(server as usize, Kind::RpcServer)?
                .0
                .readiness()
        })
    })
}

/// Gives a new descriptor for this client that an event loop can wait on, owned
/// by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_rpc_client_finish_call`
/// with timeout 0 that returns `SHMKIT_ERR_WOULD_BLOCK` arms it: it becomes
/// ready when the reply may have come (or the server stopped).
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_pollable(
    client: *mut shmkit_rpc_client,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_rpc_client_pollable", || {
        pollable(descriptor, || {
            get::<ClientEntry>(client as usize, Kind::RpcClient)?
                .0
                .readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time this client may be ready (its
/// reply may have come), or at once, on this thread, if it is ready now; makes
/// the handle pollable. See `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_rpc_client_on_ready(
    client: *mut shmkit_rpc_client,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_rpc_client_on_ready", || {
        on_ready(callback, user_data, || {
            get::<ClientEntry>(client as usize, Kind::RpcClient)?
                .0
                .readiness()
        })
    })
}
