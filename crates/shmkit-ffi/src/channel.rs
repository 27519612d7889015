//! Queue channels: `shmkit_sender` (send, zero-copy reserve/commit) and
//! `shmkit_receiver` (into a buffer, or lent to a callback without a copy).

use crate::args::{bytes, bytes_mut, out, put, text, timeout};
use crate::handle::{get, insert, remove, Kind};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure};
use shmkit::channel::{ChannelOptions, Receiver, Reservation, Sender, WaitMode};
use shmkit::{Error, Lifetime};
use std::ffi::{c_char, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;

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
    /// Senders (queue) or subscribers (broadcast) admitted.
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
/// Channel flag: fail with `SHMKIT_ERR_ALREADY_EXISTS` unless this creates it.
pub const SHMKIT_CHANNEL_CREATE_NEW: u32 = 8;
/// Channel flag: fail with `SHMKIT_ERR_NOT_FOUND` unless it exists.
pub const SHMKIT_CHANNEL_OPEN_EXISTING: u32 = 16;

/// Receives a message without a copy: `data` points into shared memory (or the
/// receiver's reassembly buffer) and is valid only during the call. Return 0;
/// anything else is passed back as `SHMKIT_ERR_CALLBACK` (the message is
/// consumed either way). It must not call functions on the handle that called
/// it (that handle is busy until the callback returns); other handles are fine.
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

/// A sender and the reservation that may borrow it.
pub(crate) struct SenderState {
    /// Borrows `*sender`; dropped (cancelling it) before the sender.
    reservation: Option<Reservation<'static>>,
    /// From `Box::leak`; turned back into a box in `Drop`.
    sender: NonNull<Sender>,
}

// SAFETY: `sender` is a uniquely owned box (Send and Sync as `Box<Sender>`); a
// reservation is `!Send` only through the many-sender lock guard it may hold,
// whose owner shmkit records by process id, so it may end on any thread.
unsafe impl Send for SenderState {}

impl Drop for SenderState {
    fn drop(&mut self) {
        self.reservation = None;
        // SAFETY: nothing borrows the box any more; ownership is taken back once.
        drop(unsafe { Box::from_raw(self.sender.as_ptr()) });
    }
}

impl SenderState {
    fn sender(&mut self) -> Result<&mut Sender, Failure> {
        if self.reservation.is_some() {
            return Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "a reservation is open on this sender: commit or cancel it first",
            ));
        }
        // SAFETY: no reservation borrows the box (checked above), and `&mut self`
        // makes this the only reference.
        Ok(unsafe { self.sender.as_mut() })
    }
}

pub(crate) struct SenderEntry(Mutex<SenderState>);

fn sender_state(h: *mut shmkit_sender) -> Result<std::sync::Arc<SenderEntry>, Failure> {
    get::<SenderEntry>(h as usize, Kind::Sender)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let state = SenderState {
            reservation: None,
            sender: NonNull::from(Box::leak(Box::new(s))),
        };
        let h = insert(Kind::Sender, SenderEntry(Mutex::new(state)))?;
        // SAFETY: checked by `out`.
        unsafe { put(sender, h as *mut shmkit_sender) };
        Ok(())
    })
}

/// Sends `len` bytes, waiting up to `timeout_ms` (negative: forever; 0: not at
/// all, `SHMKIT_ERR_WOULD_BLOCK`) for room. `SHMKIT_ERR_DISCONNECTED` if the
/// receiver is gone.
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_send(
    sender: *mut shmkit_sender,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_sender_send", || {
        let entry = sender_state(sender)?;
        // SAFETY: `len` readable bytes per the header's conventions.
        let data = unsafe { bytes("data", data, len) }?;
        let mut state = lock(&entry.0);
        let tx = state.sender()?;
        match timeout(timeout_ms) {
            Some(t) if t.is_zero() => Ok(tx.try_send(data)?),
            Some(t) => Ok(tx.send_timeout(data, t)?),
            None => Ok(tx.send(data)?),
        }
    })
}

/// Reserves `len` bytes in the ring (waiting up to `timeout_ms` for room) and
/// points `*data` at them: write the message there, then `shmkit_sender_commit`
/// (or `shmkit_sender_cancel`). Until then the sender refuses other sends.
/// A reservation holds at most a quarter of the ring.
#[no_mangle]
pub unsafe extern "C" fn shmkit_sender_reserve(
    sender: *mut shmkit_sender,
    len: usize,
    timeout_ms: i64,
    data: *mut *mut u8,
) -> shmkit_status {
    run("shmkit_sender_reserve", || {
        out("data", data)?;
        let entry = sender_state(sender)?;
        let mut state = lock(&entry.0);
        state.sender()?;
        let ptr = state.sender.as_ptr();
        // SAFETY: no reservation borrows the box (checked by `sender()`); the
        // one made here is stored beside it and dropped first (`Drop`).
        let tx: &'static mut Sender = unsafe { &mut *ptr };
        let mut r = match timeout(timeout_ms) {
            Some(t) if t.is_zero() => tx.try_reserve(len)?,
            Some(t) => tx.reserve_timeout(len, t)?,
            None => tx.reserve(len)?,
        };
        let bytes = r.as_mut_ptr();
        state.reservation = Some(r);
        // SAFETY: checked by `out`.
        unsafe { put(data, bytes) };
        Ok(())
    })
}

fn finish(sender: *mut shmkit_sender, commit: bool) -> Result<(), Failure> {
    let entry = sender_state(sender)?;
    let mut state = lock(&entry.0);
    match state.reservation.take() {
        Some(r) if commit => {
            r.commit();
            Ok(())
        }
        Some(_) => Ok(()),
        None => Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            "no reservation is open on this sender",
        )),
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
#[no_mangle]
pub extern "C" fn shmkit_sender_close(sender: *mut shmkit_sender) -> shmkit_status {
    run("shmkit_sender_close", || {
        remove(sender as usize, Kind::Sender)
    })
}

pub(crate) struct ReceiverEntry(Mutex<Receiver>);

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
        let h = insert(Kind::Receiver, ReceiverEntry(Mutex::new(r)))?;
        // SAFETY: checked by `out`.
        unsafe { put(receiver, h as *mut shmkit_receiver) };
        Ok(())
    })
}

/// Receives the next message into `buf` (`capacity` bytes) and sets `*len` to its
/// length, waiting up to `timeout_ms` (negative: forever; 0: not at all,
/// `SHMKIT_ERR_WOULD_BLOCK`). A longer message stays queued:
/// `SHMKIT_ERR_BUFFER_TOO_SMALL`, and `*len` says how long it is.
/// `SHMKIT_ERR_DISCONNECTED` once the queue is empty and every sender is gone.
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
        let entry = receiver_entry(receiver)?;
        // SAFETY: `capacity` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, capacity) }?;
        let mut rx = lock(&entry.0);
        let got = match timeout(timeout_ms) {
            Some(t) if t.is_zero() => rx.try_recv_into(buf),
            Some(t) => rx.recv_into_timeout(buf, t),
            None => rx.recv_into(buf),
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
/// `SHMKIT_ERR_CALLBACK`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_receiver_recv_with(
    receiver: *mut shmkit_receiver,
    callback: shmkit_message_fn,
    user_data: *mut c_void,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_receiver_recv_with", || {
        let Some(f) = callback else {
            return Err(Failure::new(SHMKIT_ERR_NULL_POINTER, "callback is NULL"));
        };
        let entry = receiver_entry(receiver)?;
        let mut rx = lock(&entry.0);
        // SAFETY: the caller's callback gets the message, valid for the call.
        let call = |m: &[u8]| unsafe { f(m.as_ptr(), m.len(), user_data) };
        let code = match timeout(timeout_ms) {
            Some(t) if t.is_zero() => rx.try_recv_with(call)?,
            Some(t) => rx.recv_with_timeout(t, call)?,
            None => rx.recv_with(call)?,
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

/// Detaches from the channel.
#[no_mangle]
pub extern "C" fn shmkit_receiver_close(receiver: *mut shmkit_receiver) -> shmkit_status {
    run("shmkit_receiver_close", || {
        remove(receiver as usize, Kind::Receiver)
    })
}
