//! Queue channels: `Sender` (with zero-copy `reserve`), `Receiver`.

use crate::aio::{coroutine, poll_once, Wakeup};
use crate::errors::{closed, invalid, new_error, IntoPyResult};
use crate::handle::{Handle, Turn};
use crate::region::{contiguous, fill_buffer, size_arg};
use crate::wait::{timeout_arg, wait, wait_whole, Deadline, LARGE};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmkit::channel::{ChannelOptions, OwnedReservation, Receiver, Sender, WaitMode};
use shmkit::{Interrupter, Lifetime};
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

/// The options every `connect` takes, as keyword arguments.
#[derive(Default, Clone, Copy)]
pub(crate) struct Opts {
    pub capacity: Option<i128>,
    pub max_message: Option<i128>,
    pub max_peers: Option<i64>,
    pub persistent: bool,
    pub busy_poll: bool,
    /// `None`: create or open; `Some(true)`: must create; `Some(false)`: must exist.
    pub create: Option<bool>,
}

impl Opts {
    pub(crate) fn build(
        &self,
        py: Python<'_>,
        name: &str,
        broadcast: bool,
    ) -> PyResult<ChannelOptions> {
        let mut o = ChannelOptions::new();
        if let Some(c) = self.capacity {
            o = o.capacity(size_arg(py, name, "capacity", c)?);
        }
        if let Some(m) = self.max_message {
            o = o.max_message(size_arg(py, name, "max_message", m)?);
        }
        if let Some(n) = self.max_peers {
            let n = u32::try_from(n)
                .map_err(|_| invalid(py, name, format!("peer count must be >= 0, not {n}")))?;
            o = if broadcast {
                o.max_subscribers(n)
            } else {
                o.max_senders(n)
            };
        }
        if self.persistent {
            o = o.lifetime(Lifetime::Persistent);
        }
        if self.busy_poll {
            o = o.wait_mode(WaitMode::BusyPoll);
        }
        match self.create {
            Some(true) => o = o.create_new(),
            Some(false) => o = o.open_existing(),
            None => {}
        }
        Ok(o)
    }
}

/// Copies a message into a new `bytes`; a large one without the GIL.
pub(crate) fn to_bytes<'py>(py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, msg.len(), |dst| {
        if msg.len() >= LARGE {
            py.detach(|| dst.copy_from_slice(msg));
        } else {
            dst.copy_from_slice(msg);
        }
        Ok(())
    })
}

/// [`to_bytes`] from code running without the GIL: takes it for the allocation.
pub(crate) fn to_bytes_detached(msg: &[u8]) -> PyResult<Py<PyBytes>> {
    Python::attach(|py| to_bytes(py, msg).map(Bound::unbind))
}

/// The sending end of a queue channel. Many processes may send to one receiver
/// (up to `max_senders`).
///
/// ```python
/// tx = shmkit.Sender.connect("jobs")
/// tx.send(b"hello")
/// with tx.reserve(5) as buf:     # zero-copy: write in place
///     buf[:] = b"world"
/// ```
#[pyclass(name = "Sender", module = "shmkit", frozen)]
pub struct PySender {
    handle: Handle<Sender>,
    wakeup: Wakeup,
    interrupter: Interrupter,
    capacity: u64,
    max_message: u64,
    /// Longer messages are sent in fragments.
    max_record: u64,
}

#[pymethods]
impl PySender {
    /// Attaches to channel `name` as a sender, creating it if needed (unless
    /// `create=False`; `create=True` requires a new one). `capacity`,
    /// `max_message` and `max_senders` apply when creating and must match when
    /// opening. `busy_poll=True` spins instead of sleeping when the ring is full.
    #[staticmethod]
    #[pyo3(signature = (name, *, capacity = None, max_message = None, max_senders = None, persistent = false, busy_poll = false, create = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        name: &str,
        capacity: Option<i128>,
        max_message: Option<i128>,
        max_senders: Option<i64>,
        persistent: bool,
        busy_poll: bool,
        create: Option<bool>,
    ) -> PyResult<PySender> {
        let opts = Opts {
            capacity,
            max_message,
            max_peers: max_senders,
            persistent,
            busy_poll,
            create,
        };
        let o = opts.build(py, name, false)?;
        let s = py.detach(|| o.sender(name)).py_err(py)?;
        let interrupter = s.interrupter();
        Ok(PySender {
            capacity: s.capacity(),
            max_message: s.max_message(),
            max_record: s.max_record(),
            handle: Handle::new(name, Some(interrupter.clone()), s),
            wakeup: Wakeup::new(),
            interrupter,
        })
    }

    /// Sends `data` (any bytes-like object, any length up to `max_message`),
    /// waiting up to `timeout` seconds (`None`: forever) for room; raises
    /// `Timeout`, or `Disconnected` if the receiver is gone. A message longer
    /// than a quarter of the ring goes in fragments as the receiver makes room,
    /// in one uninterrupted call however long that takes (Ctrl-C or `close()`
    /// abandon it: the receiver drops the part it got).
    #[pyo3(signature = (data, timeout = None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let buf = contiguous(data)?;
        let msg = buf.bytes();
        let deadline = Deadline::after(timeout_arg(py, self.handle.name(), timeout)?);
        let mut tx = self.handle.lease(py, "send", Turn::Until(deadline))?;
        if msg.len() < LARGE {
            match tx.try_send(msg) {
                Err(e) if e.is_would_block() => {}
                done => return done.py_err(py),
            }
        }
        if msg.len() as u64 <= self.max_record {
            // One record: a slice that times out has sent nothing.
            return wait(py, deadline, |slice| tx.send_timeout(msg, slice));
        }
        let tx = &mut *tx;
        wait_whole(py, &self.interrupter, move || {
            match deadline.left() {
                None => tx.send(msg),
                Some(left) => tx.send_timeout(msg, left),
            }
            .map_err(|e| deadline.restate(e))
        })
    }

    /// Sends `data` if there is room now; whether it was sent.
    fn try_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let buf = contiguous(data)?;
        let mut tx = self.handle.lease(py, "try_send", Turn::Prompt)?;
        match tx.try_send(buf.bytes()) {
            Ok(()) => Ok(true),
            Err(e) if e.is_would_block() => Ok(false),
            Err(e) => Err(e).py_err(py),
        }
    }

    /// Reserves `size` bytes in the ring, waiting up to `timeout` for room, and
    /// returns them as a `Reservation`: write the message in place, then
    /// `commit()`. As a context manager it gives a writable memoryview and
    /// commits at the end of the block (or cancels, if the block raises).
    #[pyo3(signature = (size, timeout = None))]
    fn reserve(slf: &Bound<'_, Self>, size: i128, timeout: Option<f64>) -> PyResult<PyReservation> {
        let py = slf.py();
        let this = slf.get();
        let name = this.handle.name();
        let len = size_arg(py, name, "size", size)?;
        let len =
            usize::try_from(len).map_err(|_| invalid(py, name, "size does not fit in memory"))?;
        let deadline = Deadline::after(timeout_arg(py, name, timeout)?);
        let mut lease = this.handle.lease(py, "reserve", Turn::Until(deadline))?;
        // A failed attempt gives the sender back, for the next one.
        let mut sender = Some(lease.take());
        let mut attempt = |slice: Option<Duration>| {
            let s = sender.take().expect("put back by every failed attempt");
            match slice {
                None => s.try_reserve_owned(len),
                Some(t) => s.reserve_owned_timeout(len, t),
            }
            .map_err(|(s, e)| {
                sender = Some(s);
                e
            })
        };
        let reserved = match attempt(None) {
            Err(e) if e.is_would_block() => wait(py, deadline, |slice| attempt(Some(slice))),
            done => done.py_err(py),
        };
        match reserved {
            Ok(r) => {
                lease.lend("a reservation");
                Ok(PyReservation {
                    home: slf.clone().unbind(),
                    state: std::sync::Mutex::new(ResState {
                        open: Some(r),
                        entered: None,
                    }),
                    exports: AtomicUsize::new(0),
                    len,
                })
            }
            Err(e) => {
                lease.put(sender.take().expect("a failed attempt gives it back"));
                Err(e)
            }
        }
    }

    /// A coroutine that sends `data` (any bytes-like object up to `max_record`
    /// bytes; longer ones raise `TooLong`: send them with `send`, in a thread),
    /// waiting for room without blocking the event loop. Raises `Disconnected`
    /// if the receiver is gone, `Closed` if `close()` is called meanwhile.
    /// Cancel safe: the message is written whole when there is room, or not at
    /// all; a cancelled send has sent nothing.
    fn send_async<'py>(
        slf: &Bound<'py, Self>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "send", (slf, data))
    }

    /// The descriptor the `*_async` coroutines wait on (an eventfd on Linux),
    /// readable when a wait they registered may have ended. Made on first use,
    /// it lives as long as this object.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.open(py)?;
        self.wakeup.fileno(py, self.handle.name())
    }

    fn _clear_wakeup(&self) {
        self.wakeup.clear();
    }

    fn _wake(&self) {
        self.wakeup.notify();
    }

    /// One attempt of `send_async`: whether `data` went; if not, `fileno()`
    /// becomes readable when room may have come.
    fn _poll_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let buf = contiguous(data)?;
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut tx = self.handle.lease(py, "send", Turn::Prompt)?;
        match poll_once(&waker, |cx| tx.poll_send(cx, buf.bytes())) {
            Poll::Ready(sent) => sent.py_err(py).map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    /// Gives back the wait of a cancelled `send_async`.
    fn _cancel_poll(&self, py: Python<'_>) {
        // Closed (the wait went with the sender) or in use: nothing to give back.
        if let Ok(mut tx) = self.handle.lease(py, "send", Turn::Prompt) {
            tx.cancel_poll();
        }
    }

    /// Whether a receiver is attached.
    #[getter]
    fn receiver_connected(&self, py: Python<'_>) -> PyResult<bool> {
        let tx = self.handle.lease(py, "receiver_connected", Turn::Prompt)?;
        Ok(tx.receiver_connected())
    }

    /// Bytes in the ring.
    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<u64> {
        self.open(py)?;
        Ok(self.capacity)
    }

    /// The longest message the channel accepts.
    #[getter]
    fn max_message(&self, py: Python<'_>) -> PyResult<u64> {
        self.open(py)?;
        Ok(self.max_message)
    }

    /// The longest message that goes as one record (a quarter of the ring,
    /// less an 8-byte header): the limit of `try_send` and `send_async`.
    /// `send` fragments longer ones.
    #[getter]
    fn max_record(&self, py: Python<'_>) -> PyResult<u64> {
        self.open(py)?;
        Ok(self.max_record)
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Detaches from the channel (the receiver sees `Disconnected` once every
    /// sender is gone and the queue is empty). A `send` waiting on another
    /// thread ends with `Closed`, and so does a `send_async` awaiting it.
    /// `Busy` while a reservation is open.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.close(py)?;
        self.wakeup.notify();
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Sender {:?}>", self.handle.name())
    }
}

impl PySender {
    /// `Closed` once closed.
    fn open(&self, py: Python<'_>) -> PyResult<()> {
        if self.handle.is_closed() {
            return Err(closed(py, self.handle.name()));
        }
        Ok(())
    }
}

/// Bytes reserved in a channel's ring: fill them (through `memoryview(res)` or
/// `with res as buf:`), then `commit()` to send them, or `cancel()`.
///
/// The reservation holds the sender: until it ends, the sender's calls raise
/// `Busy`. Dropped unfinished, it is cancelled and the sender is free again.
#[pyclass(name = "Reservation", module = "shmkit", frozen)]
pub struct PyReservation {
    home: Py<PySender>,
    state: std::sync::Mutex<ResState>,
    /// Buffers handed out and not yet released; changed (up) and checked under
    /// `state`'s lock, so that no view is made of bytes being committed.
    exports: AtomicUsize,
    len: usize,
}

struct ResState {
    /// `None` once committed or cancelled.
    open: Option<OwnedReservation>,
    /// The memoryview `__enter__` gave out, released by `__exit__`.
    entered: Option<Py<PyMemoryView>>,
}

impl PyReservation {
    fn state(&self) -> std::sync::MutexGuard<'_, ResState> {
        // Every change is one assignment: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let open = {
            let mut state = self.state();
            let views = self.exports.load(Ordering::SeqCst);
            if views > 0 {
                return Err(PyBufferError::new_err(format!(
                    "{views} view(s) of the reserved bytes still exist; release them before commit or cancel"
                )));
            }
            state.open.take()
        };
        let Some(open) = open else {
            return Err(new_error(
                py,
                "Error",
                "the reservation was already committed or cancelled".into(),
            ));
        };
        let sender = if commit { open.commit() } else { open.cancel() };
        self.home.get().handle.give_back(sender);
        Ok(())
    }
}

impl Drop for PyReservation {
    /// Cancelled and the sender given back, so that it can send again. Needs no
    /// borrow of the sender's Python object: it may be in the middle of a call.
    fn drop(&mut self) {
        let open = self
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .take();
        if let Some(open) = open {
            self.home.get().handle.give_back(open.cancel());
        }
    }
}

#[pymethods]
impl PyReservation {
    /// Sends the reserved bytes as one message.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, true)
    }

    /// Sends nothing and gives the room back.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, false)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyMemoryView>> {
        let view = PyMemoryView::from(slf.as_any())?.unbind();
        slf.get().state().entered = Some(view.clone_ref(slf.py()));
        Ok(view)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let entered = self.state().entered.take();
        if let Some(view) = entered {
            // Not under the lock: releasing calls back into `__releasebuffer__`.
            // Fails (BufferError) if the block kept a slice of the view.
            view.bind(py).call_method0("release")?;
        }
        if self.state().open.is_some() {
            self.end(py, exc_type.is_none_or(|t| t.is_none()))?;
        }
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let (ptr, len) = {
            let mut state = this.state();
            let bytes = state.open.as_deref_mut().ok_or_else(|| {
                PyBufferError::new_err("the reservation was already committed or cancelled")
            })?;
            // Counted before the lock goes: `end` cannot commit under the view.
            this.exports.fetch_add(1, Ordering::SeqCst);
            (bytes.as_mut_ptr(), bytes.len())
        };
        // SAFETY: CPython passes a valid Py_buffer; the reserved bytes stay
        // reserved while any view exists, because commit and cancel refuse then
        // (and the view keeps this object, so its drop, alive).
        let filled = unsafe { fill_buffer(view, flags, ptr, len, false, slf.clone().into_any()) };
        if filled.is_err() {
            this.exports.fetch_sub(1, Ordering::SeqCst);
        }
        filled
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The receiving end of a queue channel (one per channel).
///
/// ```python
/// rx = shmkit.Receiver.connect("jobs")
/// msg = rx.recv(timeout=1.0)
/// for msg in rx:                 # until every sender is gone
///     ...
/// ```
///
/// `close()` from another thread ends a `recv` waiting there (it raises
/// `Closed`): the way to stop a reader thread.
#[pyclass(name = "Receiver", module = "shmkit", frozen)]
pub struct PyReceiver {
    handle: Handle<Receiver>,
    wakeup: Wakeup,
    capacity: u64,
    max_message: u64,
}

#[pymethods]
impl PyReceiver {
    /// Attaches to channel `name` as its receiver, creating it if needed (see
    /// `Sender.connect` for the options).
    #[staticmethod]
    #[pyo3(signature = (name, *, capacity = None, max_message = None, max_senders = None, persistent = false, busy_poll = false, create = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        name: &str,
        capacity: Option<i128>,
        max_message: Option<i128>,
        max_senders: Option<i64>,
        persistent: bool,
        busy_poll: bool,
        create: Option<bool>,
    ) -> PyResult<PyReceiver> {
        let opts = Opts {
            capacity,
            max_message,
            max_peers: max_senders,
            persistent,
            busy_poll,
            create,
        };
        let o = opts.build(py, name, false)?;
        let r = py.detach(|| o.receiver(name)).py_err(py)?;
        Ok(PyReceiver {
            capacity: r.capacity(),
            max_message: r.max_message(),
            handle: Handle::new(name, Some(r.interrupter()), r),
            wakeup: Wakeup::new(),
        })
    }

    /// The next message, waiting up to `timeout` seconds (`None`: forever).
    /// Raises `Timeout`, `Disconnected` once the queue is empty and every
    /// sender has gone, or `Closed` if `close()` is called meanwhile.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let deadline = Deadline::after(timeout_arg(py, self.handle.name(), timeout)?);
        let mut rx = self.handle.lease(py, "receive", Turn::Until(deadline))?;
        match rx.try_recv_with(|m| to_bytes(py, m).map(Bound::unbind)) {
            Err(e) if e.is_would_block() => wait(py, deadline, |slice| {
                rx.recv_with_timeout(slice, to_bytes_detached)
            })?,
            done => done.py_err(py)?,
        }
    }

    /// The next message if one is queued, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let mut rx = self.handle.lease(py, "try_recv", Turn::Prompt)?;
        match rx.try_recv_with(|m| to_bytes(py, m).map(Bound::unbind)) {
            Ok(b) => b.map(Some),
            Err(e) if e.is_would_block() => Ok(None),
            Err(e) => Err(e).py_err(py),
        }
    }

    /// Receives the next message into `buffer` (any writable bytes-like object)
    /// and returns its length. A message longer than the buffer stays queued:
    /// `BufferTooSmall`, whose `needed` says how long it is.
    #[pyo3(signature = (buffer, timeout = None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let name = self.handle.name();
        let deadline = Deadline::after(timeout_arg(py, name, timeout)?);
        let mut buf = contiguous(buffer)?;
        let dst = buf.bytes_mut().ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{name}: recv_into needs a writable buffer"
            ))
        })?;
        let mut rx = self.handle.lease(py, "receive", Turn::Until(deadline))?;
        // A large buffer is for large messages: copy them without the GIL.
        if dst.len() < LARGE {
            match rx.try_recv_into(dst) {
                Err(e) if e.is_would_block() => {}
                done => return done.py_err(py),
            }
        }
        wait(py, deadline, |slice| rx.recv_into_timeout(dst, slice))
    }

    /// A coroutine that receives the next message, waiting without blocking the
    /// event loop. Raises `Disconnected` once the queue is empty and every
    /// sender has gone, or `Closed` if `close()` is called meanwhile. Cancel
    /// safe: a message is taken only by the poll that returns it, so a
    /// cancelled receive (`asyncio.wait_for` timing out) has taken nothing.
    fn recv_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "recv", (slf,))
    }

    /// A coroutine that receives the next message into `buffer` (a writable
    /// bytes-like object) and returns its length; `BufferTooSmall` (with
    /// `needed`) leaves a longer message queued. Cancel safe as `recv_async`.
    fn recv_into_async<'py>(
        slf: &Bound<'py, Self>,
        buffer: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "recv_into", (slf, buffer))
    }

    /// The descriptor the `*_async` coroutines wait on (an eventfd on Linux),
    /// readable when a wait they registered may have ended. Made on first use,
    /// it lives as long as this object.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        if self.handle.is_closed() {
            return Err(closed(py, self.handle.name()));
        }
        self.wakeup.fileno(py, self.handle.name())
    }

    fn _clear_wakeup(&self) {
        self.wakeup.clear();
    }

    fn _wake(&self) {
        self.wakeup.notify();
    }

    /// One attempt of `recv_async`: the next message, or `None` after
    /// registering the wait (`fileno()` becomes readable when one may have come).
    fn _poll_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut rx = self.handle.lease(py, "receive", Turn::Prompt)?;
        match poll_once(&waker, |cx| {
            rx.poll_recv_with(cx, |m| to_bytes(py, m).map(Bound::unbind))
        }) {
            Poll::Ready(got) => got.py_err(py)?.map(Some),
            Poll::Pending => Ok(None),
        }
    }

    /// One attempt of `recv_into_async`: the length received into `buffer`, or
    /// `None` after registering the wait. A message longer than `buffer` is not
    /// taken: `BufferTooSmall`, and it stays queued.
    fn _poll_recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<Option<usize>> {
        let name = self.handle.name();
        let mut buf = contiguous(buffer)?;
        let dst = buf.bytes_mut().ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{name}: recv_into_async needs a writable buffer"
            ))
        })?;
        let waker = self.wakeup.waker(name)?;
        let mut rx = self.handle.lease(py, "receive", Turn::Prompt)?;
        match poll_once(&waker, |cx| rx.poll_recv_into(cx, dst)) {
            Poll::Ready(got) => got.py_err(py).map(Some),
            Poll::Pending => Ok(None),
        }
    }

    /// Gives back the wait of a cancelled `recv_async`.
    fn _cancel_poll(&self, py: Python<'_>) {
        // Closed (the wait went with the receiver) or in use: nothing to give back.
        if let Ok(mut rx) = self.handle.lease(py, "receive", Turn::Prompt) {
            rx.cancel_poll();
        }
    }

    /// Process ids of the senders attached now.
    #[getter]
    fn senders(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        let rx = self.handle.lease(py, "senders", Turn::Prompt)?;
        Ok(rx.senders())
    }

    /// Bytes in the ring.
    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<u64> {
        if self.handle.is_closed() {
            return Err(closed(py, self.handle.name()));
        }
        Ok(self.capacity)
    }

    /// The longest message the channel accepts.
    #[getter]
    fn max_message(&self, py: Python<'_>) -> PyResult<u64> {
        if self.handle.is_closed() {
            return Err(closed(py, self.handle.name()));
        }
        Ok(self.max_message)
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Detaches from the channel. A call waiting on another thread ends with
    /// `Closed`, and so does a coroutine awaiting it; once `close()` returns
    /// another receiver may attach.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.close(py)?;
        self.wakeup.notify();
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Iteration receives until every sender is gone (`Disconnected` ends it).
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.recv(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_class(py, &e, "Disconnected") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// `async for` receives until every sender is gone (`Disconnected` ends it).
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "anext", (slf,))
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Receiver {:?}>", self.handle.name())
    }
}

/// Whether `e` is a `shmkit.<class>`.
pub(crate) fn is_class(py: Python<'_>, e: &PyErr, class: &str) -> bool {
    PyModule::import(py, "shmkit._errors")
        .and_then(|m| m.getattr(class))
        .is_ok_and(|c| e.value(py).is_instance(&c).unwrap_or(false))
}
