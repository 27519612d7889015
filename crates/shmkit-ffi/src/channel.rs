//! Queue channels: `shmkit_sender` (send, zero-copy reserve/commit) and
//! `shmkit_receiver` (into a buffer, or lent to a callback without a copy).

use crate::args::{bytes, bytes_mut, out, put, text};
use crate::calls::{Serial, Wait};
use crate::handle::{get, insert, remove, Kind};
use crate::pollable::{on_ready, pollable, shmkit_descriptor, shmkit_ready_fn, would_block};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure};
use shmkit::channel::{ChannelOptions, OwnedReservation, Receiver, Sender, WaitMode};
use shmkit::{Error, Lifetime};
use std::ffi::{c_char, c_void};
use std::task::Poll;

/// The sending end of a queue channel.
pub struct shmkit_sender {
    _opaque: (),
}

/// The receiving end of a queue channel.
pub struct shmkit_receiver {
    _opaque: (),
}

/// Options for creating or opening a channel; 0 in any field means "the
/// default, or whatever the existing channel has". Pass NULL for all defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmkit_channel_options {
    /// Ring bytes, a power of two from 256 to 1 GiB (default 1 MiB).
    pub capacity: u64,
    /// Longest message a queue accepts (default 1 GiB).
    pub max_message: u64,
    /// How many processes may hold the shared end at once: for a queue, the
    /// senders (Rust's `max_senders`; **default 1: a queue admits ONE sender**
    /// and a second gets `SHMKIT_ERR_OCCUPIED` until the first closes; up to
    /// 1023); for a broadcast channel, the subscribers (Rust's
    /// `max_subscribers`, default 64). Set when the channel is created.
    pub max_peers: u32,
    /// `SHMKIT_CHANNEL_*` bits.
    pub flags: u32,
}

/// Channel flag: stays until removed.
pub const SHMKIT_CHANNEL_PERSISTENT: u32 = 1;
/// Channel flag: this end spins instead of sleeping when it waits.
pub const SHMKIT_CHANNEL_BUSY_POLL: u32 = 2;
/// Channel flag (broadcast): keep messages for subscribers that join later.
pub const SHMKIT_CHANNEL_HISTORY: u32 = 4;
/// Channel flag: fail with `SHMKIT_ERR_ALREADY_EXISTS` unless this creates it
/// (not with `SHMKIT_CHANNEL_OPEN_EXISTING`: `SHMKIT_ERR_INVALID_ARGUMENT`).
pub const SHMKIT_CHANNEL_CREATE_NEW: u32 = 8;
/// Channel flag: fail with `SHMKIT_ERR_NOT_FOUND` unless it exists (not with
/// `SHMKIT_CHANNEL_CREATE_NEW`).
pub const SHMKIT_CHANNEL_OPEN_EXISTING: u32 = 16;

/// Receives a message without a copy: `data` points into shared memory (or the
/// receiver's reassembly buffer) and is valid only during the call. Return 0;
/// anything else is passed back as `SHMKIT_ERR_CALLBACK` (the message is
/// consumed either way). A call on the handle that called it returns
/// `SHMKIT_ERR_BUSY` (that handle is busy until the callback returns), except
/// its `*_close`, which closes the handle when the callback's call returns;
/// other handles are fine.
pub type shmkit_message_fn =
    Option<unsafe extern "C" fn(data: *const u8, len: usize, user_data: *mut c_void) -> i32>;

/// Reads the options, checking the flags.
///
/// # Safety
/// `opts` is NULL or points to a `shmkit_channel_options`.
pub(crate) unsafe fn channel_options(
    opts: *const shmkit_channel_options,
    broadcast: bool,
) -> Result<ChannelOptions, Failure> {
    let o = if opts.is_null() {
        shmkit_channel_options::default()
    } else {
        // SAFETY: not NULL, a struct per the caller's contract.
        unsafe { opts.read_unaligned() }
    };
    let known = SHMKIT_CHANNEL_PERSISTENT
        | SHMKIT_CHANNEL_BUSY_POLL
        | SHMKIT_CHANNEL_HISTORY
        | SHMKIT_CHANNEL_CREATE_NEW
        | SHMKIT_CHANNEL_OPEN_EXISTING;
    if o.flags & !known != 0 {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("unknown channel flags {:#x}", o.flags & !known),
        ));
    }
    let both = SHMKIT_CHANNEL_CREATE_NEW | SHMKIT_CHANNEL_OPEN_EXISTING;
    if o.flags & both == both {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            "flags SHMKIT_CHANNEL_CREATE_NEW and SHMKIT_CHANNEL_OPEN_EXISTING together: \
             nothing can satisfy both (pass one, or neither to create or open)",
        ));
    }
    let mut c = ChannelOptions::new();
    if o.capacity != 0 {
        c = c.capacity(o.capacity);
    }
    if o.max_message != 0 {
        c = c.max_message(o.max_message);
    }
    if o.max_peers != 0 {
        c = if broadcast {
            c.max_subscribers(o.max_peers)
        } else {
            c.max_senders(o.max_peers)
        };
    }
    if o.flags & SHMKIT_CHANNEL_PERSISTENT != 0 {
        c = c.lifetime(Lifetime::Persistent);
    }
    if o.flags & SHMKIT_CHANNEL_BUSY_POLL != 0 {
        c = c.wait_mode(WaitMode::BusyPoll);
    }
    if o.flags & SHMKIT_CHANNEL_HISTORY != 0 {
        c = c.history(true);
    }
    if o.flags & SHMKIT_CHANNEL_CREATE_NEW != 0 {
        c = c.create_new();
    }
    if o.flags & SHMKIT_CHANNEL_OPEN_EXISTING != 0 {
        c = c.open_existing();
    }
    Ok(c)
}

/// A sender, or the reservation that holds it until commit or cancel.
pub(crate) enum SenderSlot {
    Idle(Sender),
    Reserved(OwnedReservation),
    /// Only while a reservation is being made (or after a panic there).
    Gone,
}

impl SenderSlot {
    fn sender(&mut self) -> Result<&mut Sender, Failure> {
        match self {
            SenderSlot::Idle(s) => Ok(s),
            SenderSlot::Reserved(_) => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "a reservation is open on this sender: commit or cancel it first",
            )),
            SenderSlot::Gone => Err(lost()),
        }
    }
}

fn lost() -> Failure {
    Failure::new(
        SHMKIT_ERR_INTERNAL,
        "this sender was lost by an earlier failure inside shmkit: close it",
    )
}

pub(crate) struct SenderEntry(pub(crate) Serial<SenderSlot>);

fn sender_entry(h: *mut shmkit_sender) -> Result<std::sync::Arc<SenderEntry>, Failure> {
    get::<SenderEntry>(h as usize, Kind::Sender)
}

/// Attaches to channel `name` as a sender, creating it if needed (see
/// `shmkit_channel_options`; `opts` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_connect(
    name: *const c_char,
    opts: *const shmkit_channel_options,
    sender: *mut *mut shmkit_sender,
) -> shmkit_status {
    run("shmkit_sender_connect", || {
        out("sender", sender)?;
        // SAFETY: a C string and an options struct per the header's conventions.
        let (name, o) = unsafe { (text("name", name)?, channel_options(opts, false)?) };
        let s = o.sender(name)?;
        let stop = s.interrupter();
        let entry = SenderEntry(Serial::new(name, SenderSlot::Idle(s), Some(stop)));
        let h = insert(Kind::Sender, entry)?;
        // SAFETY: checked by `out`.
        unsafe { put(sender, h as *mut shmkit_sender) };
        Ok(())
    })
}

/// Sends `len` bytes, waiting up to `timeout_ms` (negative: forever; 0: not at
/// all, `SHMKIT_ERR_WOULD_BLOCK`) for room. `SHMKIT_ERR_DISCONNECTED` if the
/// receiver is gone; `SHMKIT_ERR_CLOSED` if the handle is closed meanwhile. On a
/// pollable handle (`shmkit_sender_pollable`), a WOULD_BLOCK with timeout 0 arms
/// its descriptor: it becomes ready when room may have come.
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_send(
    sender: *mut shmkit_sender,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_sender_send", || {
        let wait = Wait::from_ms(timeout_ms);
        let entry = sender_entry(sender)?;
        // SAFETY: `len` readable bytes per the header's conventions.
        let data = unsafe { bytes("data", data, len) }?;
        let mut state = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        let tx = state.sender()?;
        if let (Wait::Now, Some(r)) = (wait, entry.0.polled()) {
            return match r.poll(|cx| tx.poll_send(cx, data)) {
                Poll::Ready(sent) => Ok(sent?),
                Poll::Pending => Err(would_block(entry.0.what(), "no room in the ring now")),
            };
        }
        match (wait, wait.left()) {
            (Wait::Now, _) => Ok(tx.try_send(data)?),
            (_, Some(t)) => Ok(tx.send_timeout(data, t)?),
            (_, None) => Ok(tx.send(data)?),
        }
    })
}

/// Reserves `len` bytes in the ring (waiting up to `timeout_ms` for room) and
/// points `*data` at them: write the message there, then `shmkit_sender_commit`
/// (or `shmkit_sender_cancel`). Until then the sender refuses other sends.
/// A reservation holds at most a quarter of the ring. (Its WOULD_BLOCK does not
/// arm a pollable handle's descriptor: wait for room with `shmkit_sender_send`.)
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_reserve(
    sender: *mut shmkit_sender,
    len: usize,
    timeout_ms: i64,
    data: *mut *mut u8,
) -> shmkit_status {
    run("shmkit_sender_reserve", || {
        out("data", data)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = sender_entry(sender)?;
        let mut state = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        state.sender()?;
        let SenderSlot::Idle(tx) = std::mem::replace(&mut *state, SenderSlot::Gone) else {
            return Err(lost()); // `sender()` found it idle
        };
        let reserved = match (wait, wait.left()) {
            (Wait::Now, _) => tx.try_reserve_owned(len),
            (_, Some(t)) => tx.reserve_owned_timeout(len, t),
            (_, None) => tx.reserve_owned(len),
        };
        match reserved {
            Ok(mut r) => {
                let bytes = r.as_mut_ptr();
                *state = SenderSlot::Reserved(r);
                // SAFETY: checked by `out`.
                unsafe { put(data, bytes) };
                Ok(())
            }
            Err((tx, e)) => {
                *state = SenderSlot::Idle(tx);
                Err(e.into())
            }
        }
    })
}

fn finish(sender: *mut shmkit_sender, commit: bool) -> Result<(), Failure> {
    let entry = sender_entry(sender)?;
    let mut state = entry.0.enter(Wait::Forever, SHMKIT_ERR_WOULD_BLOCK)?;
    match std::mem::replace(&mut *state, SenderSlot::Gone) {
        SenderSlot::Reserved(r) => {
            *state = SenderSlot::Idle(if commit { r.commit() } else { r.cancel() });
            Ok(())
        }
        other => {
            *state = other;
            state.sender()?;
            Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "no reservation is open on this sender",
            ))
        }
    }
}

/// Sends the reserved bytes as one message.
#[no_mangle]
pub extern "C" fn shmkit_sender_commit(sender: *mut shmkit_sender) -> shmkit_status {
    run("shmkit_sender_commit", || finish(sender, true))
}

/// Drops the reservation: nothing is sent.
#[no_mangle]
pub extern "C" fn shmkit_sender_cancel(sender: *mut shmkit_sender) -> shmkit_status {
    run("shmkit_sender_cancel", || finish(sender, false))
}

/// Detaches (an open reservation is cancelled). The receiver sees
/// `SHMKIT_ERR_DISCONNECTED` once every sender is gone and the queue is empty.
/// A send or reserve blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED`; the close waits for it to leave.
#[no_mangle]
pub extern "C" fn shmkit_sender_close(sender: *mut shmkit_sender) -> shmkit_status {
    run("shmkit_sender_close", || {
        remove::<SenderEntry>(sender as usize, Kind::Sender)?
            .0
            .close();
        Ok(())
    })
}

/// Gives a new descriptor for this sender that an event loop can wait on
/// (Linux: an eventfd, other Unixes: a pipe's read end, both readable when
/// ready; Windows: an event HANDLE, signalled when ready), owned by the caller:
/// release it with `shmkit_pollable_close` after taking it out of the loop.
///
/// The first call makes the handle pollable (as `shmkit_sender_on_ready` does):
/// from then on `shmkit_sender_send` with timeout 0 that returns
/// `SHMKIT_ERR_WOULD_BLOCK` arms the descriptor, which becomes ready when room
/// may have come; every such send clears it first. The loop is a non-blocking
/// socket's, edge-triggered: when the descriptor is ready, send with timeout 0
/// until `SHMKIT_ERR_WOULD_BLOCK` (or until you have nothing to send; a wake-up
/// may be spurious). Do not read from the descriptor. Closing the handle makes it
/// ready for good; the next call on the handle says it is closed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_pollable(
    sender: *mut shmkit_sender,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_sender_pollable", || {
        pollable(descriptor, || sender_entry(sender)?.0.readiness())
    })
}

/// Calls `callback(user_data)` once, the next time this sender may be ready
/// (what makes `shmkit_sender_pollable`'s descriptor ready: room may have come,
/// or the handle was closed), or at once, on this thread, if it is ready now.
/// Makes the handle pollable, as `shmkit_sender_pollable` does: call it, then
/// send with timeout 0, and on `SHMKIT_ERR_WOULD_BLOCK` wait for the callback.
/// See `shmkit_ready_fn` for the thread it runs on. Every callback registered is
/// called exactly once (at the latest soon after the handle is closed), so it may free
/// `user_data`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_on_ready(
    sender: *mut shmkit_sender,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_sender_on_ready", || {
        on_ready(callback, user_data, || sender_entry(sender)?.0.readiness())
    })
}

/// A receiver, and a message too long for the buffer a pollable receive was
/// given (a poll lends the message whole: it is kept here for the next call).
pub(crate) struct ReceiverState {
    pub(crate) rx: Receiver,
    pub(crate) pending: Option<Vec<u8>>,
}

pub(crate) struct ReceiverEntry(pub(crate) Serial<ReceiverState>);

fn receiver_entry(h: *mut shmkit_receiver) -> Result<std::sync::Arc<ReceiverEntry>, Failure> {
    get::<ReceiverEntry>(h as usize, Kind::Receiver)
}

/// Attaches to channel `name` as its receiver, creating it if needed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_connect(
    name: *const c_char,
    opts: *const shmkit_channel_options,
    receiver: *mut *mut shmkit_receiver,
) -> shmkit_status {
    run("shmkit_receiver_connect", || {
        out("receiver", receiver)?;
        // SAFETY: a C string and an options struct per the header's conventions.
        let (name, o) = unsafe { (text("name", name)?, channel_options(opts, false)?) };
        let r = o.receiver(name)?;
        let stop = r.interrupter();
        let state = ReceiverState {
            rx: r,
            pending: None,
        };
        let h = insert(
            Kind::Receiver,
            ReceiverEntry(Serial::new(name, state, Some(stop))),
        )?;
        // SAFETY: checked by `out`.
        unsafe { put(receiver, h as *mut shmkit_receiver) };
        Ok(())
    })
}

/// Receives the next message into `buf` (`capacity` bytes) and sets `*len` to its
/// length, waiting up to `timeout_ms` (negative: forever; 0: not at all,
/// `SHMKIT_ERR_WOULD_BLOCK`). A longer message stays queued:
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`, and `*len` says how long it is.
/// `SHMKIT_ERR_DISCONNECTED` once the queue is empty and every sender is gone;
/// `SHMKIT_ERR_CLOSED` if the handle is closed (from another thread) meanwhile.
/// On a pollable handle (`shmkit_receiver_pollable`), a WOULD_BLOCK with timeout
/// 0 arms its descriptor: it becomes ready when a message may have come.
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_recv(
    receiver: *mut shmkit_receiver,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_receiver_recv", || {
        out("len", len)?;
        let wait = Wait::from_ms(timeout_ms);
        let entry = receiver_entry(receiver)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let mut st = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        let cap = buf.len();
        let too_small = |n: usize| {
            Failure::from(Error::BufferTooSmall {
                object: entry.0.what().into(),
                len: n as u64,
                capacity: cap as u64,
            })
        };
        if let Some(msg) = st.pending.take() {
            // SAFETY: checked by `out`.
            unsafe { put(len, msg.len()) };
            if msg.len() > buf.len() {
                let n = msg.len();
                st.pending = Some(msg);
                return Err(too_small(n));
            }
            buf[..msg.len()].copy_from_slice(&msg);
            return Ok(());
        }
        if let (Wait::Now, Some(r)) = (wait, entry.0.polled()) {
            let polled = r.poll(|cx| {
                st.rx.poll_recv_with(cx, |m| {
                    if m.len() <= cap {
                        buf[..m.len()].copy_from_slice(m);
                        Ok(m.len())
                    } else {
                        Err(m.to_vec())
                    }
                })
            });
            let got = match polled {
                Poll::Pending => return Err(would_block(entry.0.what(), "no message now")),
                Poll::Ready(got) => got?,
            };
            return match got {
                Ok(n) => {
                    // SAFETY: checked by `out`.
                    unsafe { put(len, n) };
                    Ok(())
                }
                Err(msg) => {
                    let n = msg.len();
                    // SAFETY: checked by `out`.
                    unsafe { put(len, n) };
                    st.pending = Some(msg);
                    Err(too_small(n))
                }
            };
        }
        let rx = &mut st.rx;
        let got = match (wait, wait.left()) {
            (Wait::Now, _) => rx.try_recv_into(buf),
            (_, Some(t)) => rx.recv_into_timeout(buf, t),
            (_, None) => rx.recv_into(buf),
        };
        match got {
            Ok(n) => {
                // SAFETY: checked by `out`.
                unsafe { put(len, n) };
                Ok(())
            }
            Err(e) => {
                if let Error::BufferTooSmall { len: needed, .. } = &e {
                    // SAFETY: checked by `out`.
                    unsafe { put(len, *needed as usize) };
                }
                Err(e.into())
            }
        }
    })
}

/// Receives the next message and lends it to `callback` without copying it,
/// waiting up to `timeout_ms`. The callback's non-zero return comes back as
/// `SHMKIT_ERR_CALLBACK`. Timeout 0 on a pollable handle arms it as
/// `shmkit_receiver_recv` does.
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_recv_with(
    receiver: *mut shmkit_receiver,
    callback: shmkit_message_fn,
    user_data: *mut c_void,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_receiver_recv_with", || {
        let wait = Wait::from_ms(timeout_ms);
        let Some(f) = callback else {
            return Err(Failure::new(SHMKIT_ERR_NULL_POINTER, "callback is NULL"));
        };
        let entry = receiver_entry(receiver)?;
        let mut st = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        // SAFETY: the caller's callback gets the message, valid for the call.
        let call = |m: &[u8]| unsafe { f(m.as_ptr(), m.len(), user_data) };
        if let Some(msg) = st.pending.take() {
            return callback_result(call(&msg));
        }
        if let (Wait::Now, Some(r)) = (wait, entry.0.polled()) {
            return match r.poll(|cx| st.rx.poll_recv_with(cx, call)) {
                Poll::Pending => Err(would_block(entry.0.what(), "no message now")),
                Poll::Ready(code) => callback_result(code?),
            };
        }
        let rx = &mut st.rx;
        let code = match (wait, wait.left()) {
            (Wait::Now, _) => rx.try_recv_with(call)?,
            (_, Some(t)) => rx.recv_with_timeout(t, call)?,
            (_, None) => rx.recv_with(call)?,
        };
        callback_result(code)
    })
}

pub(crate) fn callback_result(code: i32) -> Result<(), Failure> {
    match code {
        0 => Ok(()),
        c => Err(Failure::new(
            SHMKIT_ERR_CALLBACK,
            format!("the callback returned {c}"),
        )),
    }
}

/// Detaches from the channel. A receive blocked on this handle on another thread
/// returns `SHMKIT_ERR_CLOSED`, and the receiver role is free when this returns
/// (called from inside this receiver's callback, when that receive returns).
#[no_mangle]
pub extern "C" fn shmkit_receiver_close(receiver: *mut shmkit_receiver) -> shmkit_status {
    run("shmkit_receiver_close", || {
        remove::<ReceiverEntry>(receiver as usize, Kind::Receiver)?
            .0
            .close();
        Ok(())
    })
}

/// Gives a new descriptor for this receiver that an event loop can wait on, owned
/// by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for what it is on each system and for the contract.
/// From the first call on, a `shmkit_receiver_recv` or `_recv_with` with timeout 0
/// that returns `SHMKIT_ERR_WOULD_BLOCK` arms the descriptor, which becomes ready
/// when a message may have come (or the senders are gone). When it is ready,
/// receive with timeout 0 until `SHMKIT_ERR_WOULD_BLOCK`:
///
/// ```c
/// intptr_t fd;
/// shmkit_receiver_pollable(rx, &fd);
/// struct epoll_event ev = {.events = EPOLLIN, .data.ptr = rx};
/// epoll_ctl(ep, EPOLL_CTL_ADD, (int)fd, &ev);
/// for (;;) {
///     epoll_wait(ep, &ev, 1, -1);
///     while ((s = shmkit_receiver_recv(rx, buf, sizeof buf, &len, 0)) == SHMKIT_OK)
///         handle(buf, len);
///     if (s != SHMKIT_ERR_WOULD_BLOCK) break; /* DISCONNECTED, BAD_HANDLE... */
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_pollable(
    receiver: *mut shmkit_receiver,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_receiver_pollable", || {
        pollable(descriptor, || receiver_entry(receiver)?.0.readiness())
    })
}

/// Calls `callback(user_data)` once, the next time this receiver may be ready (a
/// message may have come, or the handle was closed), or at once, on this thread,
/// if it is ready now; makes the handle pollable. See `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_on_ready(
    receiver: *mut shmkit_receiver,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_receiver_on_ready", || {
        on_ready(callback, user_data, || {
            receiver_entry(receiver)?.0.readiness()
        })
    })
}
