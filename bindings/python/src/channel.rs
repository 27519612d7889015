//! Queue channels: `Sender` (with zero-copy `reserve`), `Receiver`.

use crate::errors::{invalid, new_error, IntoPyResult};
use crate::region::{contiguous, fill_buffer, size_arg};
use crate::wait::{timeout_arg, wait, LARGE};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmkit::channel::{ChannelOptions, Receiver, Reservation, Sender, WaitMode};
use shmkit::Lifetime;
use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

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
#[pyclass(name = "Sender", module = "shmkit")]
pub struct PySender {
    state: SenderState,
    name: String,
}

enum SenderState {
    Ready(Box<Sender>),
    /// Lent to a `Reservation`, which gives it back on commit or cancel.
    Reserved,
    Closed,
}

impl PySender {
    fn sender(&mut self, py: Python<'_>) -> PyResult<&mut Sender> {
        match &mut self.state {
            SenderState::Ready(s) => Ok(s),
            SenderState::Reserved => Err(new_error(
                py,
                "Error",
                format!(
                    "{}: a reservation is open; commit or cancel it first",
                    self.name
                ),
            )),
            SenderState::Closed => Err(new_error(py, "Error", format!("{}: closed", self.name))),
        }
    }
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
        Ok(PySender {
            state: SenderState::Ready(Box::new(s)),
            name: name.to_owned(),
        })
    }

    /// Sends `data` (any bytes-like object, any length up to `max_message`),
    /// waiting up to `timeout` seconds (`None`: forever) for room; raises
    /// `Timeout`, or `Disconnected` if the receiver is gone.
    #[pyo3(signature = (data, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let buf = contiguous(data)?;
        let msg = buf.bytes();
        let timeout = timeout_arg(py, &self.name, timeout)?;
        let tx = self.sender(py)?;
        if msg.len() < LARGE {
            match tx.try_send(msg) {
                Err(e) if e.is_would_block() => {}
                done => return done.py_err(py),
            }
        }
        wait(py, timeout, |slice| tx.send_timeout(msg, slice))
    }

    /// Sends `data` if there is room now; whether it was sent.
    fn try_send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let buf = contiguous(data)?;
        let tx = self.sender(py)?;
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
        let mut this = slf.borrow_mut();
        let name = this.name.clone();
        let len = size_arg(py, &name, "size", size)?;
        let len =
            usize::try_from(len).map_err(|_| invalid(py, &name, "size does not fit in memory"))?;
        let timeout = timeout_arg(py, &name, timeout)?;
        this.sender(py)?;
        let SenderState::Ready(sender) = std::mem::replace(&mut this.state, SenderState::Reserved)
        else {
            unreachable!("checked just above");
        };
        let sender = NonNull::from(Box::leak(sender));
        match OpenReservation::new(py, sender, len, timeout) {
            Ok(open) => Ok(PyReservation {
                open: Some(open),
                home: slf.clone().unbind(),
                exports: AtomicUsize::new(0),
                len,
                entered: None,
            }),
            Err((sender, e)) => {
                this.state = SenderState::Ready(sender);
                Err(e)
            }
        }
    }

    /// Whether a receiver is attached.
    #[getter]
    fn receiver_connected(&mut self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.sender(py)?.receiver_connected())
    }

    /// Bytes in the ring.
    #[getter]
    fn capacity(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.sender(py)?.capacity())
    }

    /// The longest message the channel accepts.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.sender(py)?.max_message())
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Detaches from the channel (the receiver sees `Disconnected` once every
    /// sender is gone and the queue is empty).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let SenderState::Reserved = self.state {
            return Err(new_error(
                py,
                "Error",
                format!(
                    "{}: a reservation is open; commit or cancel it first",
                    self.name
                ),
            ));
        }
        self.state = SenderState::Closed;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Sender {:?}>", self.name)
    }
}

/// A sender lent to a reservation, and the reservation borrowing it.
struct OpenReservation {
    /// Borrows `*sender`; dropped (cancelling, if not committed) before it.
    reservation: Option<Reservation<'static>>,
    /// From `Box::leak`; turned back into a box on drop or `into_sender`.
    sender: NonNull<Sender>,
}

/// A reservation passed out of a wait that ran without the GIL.
struct Reserved(Reservation<'static>);

// SAFETY: a reservation is `!Send` only through the guard of the channel's
// many-sender lock it may hold, whose owner shmkit records by process id (see
// `HeldLock` in sync.rs): releasing it on another thread follows the protocol.
unsafe impl Send for Reserved {}

// SAFETY: the pointer is a uniquely owned box (as `Box<Sender>`, which is Send
// and Sync), reached only through `&mut self` or after the reservation is gone;
// the reservation is Send as `Reserved` explains, and Sync as its parts are.
unsafe impl Send for OpenReservation {}
// SAFETY: as above; `&OpenReservation` gives access to nothing.
unsafe impl Sync for OpenReservation {}

impl OpenReservation {
    /// Reserves `len` bytes from `sender` (a leaked box), or gives the sender
    /// back with the error.
    fn new(
        py: Python<'_>,
        sender: NonNull<Sender>,
        len: usize,
        timeout: Option<std::time::Duration>,
    ) -> Result<OpenReservation, (Box<Sender>, PyErr)> {
        let ptr = crate::wait::SendPtr(sender.as_ptr());
        let reserve = move |slice: std::time::Duration, try_only: bool| {
            let ptr = ptr;
            // SAFETY: `ptr` is the leaked box, alive until `into_sender` or drop,
            // and not otherwise borrowed: each attempt's reservation is either
            // returned (and then the only borrow) or dropped before the next.
            let tx: &'static mut Sender = unsafe { &mut *ptr.0 };
            let r = if try_only {
                tx.try_reserve(len)
            } else {
                tx.reserve_timeout(len, slice)
            };
            r.map(Reserved)
        };
        let first = match reserve(std::time::Duration::ZERO, true) {
            Err(e) if e.is_would_block() => wait(py, timeout, move |slice| reserve(slice, false)),
            done => done.py_err(py),
        };
        match first {
            Ok(Reserved(r)) => Ok(OpenReservation {
                reservation: Some(r),
                sender,
            }),
            // SAFETY: no reservation borrows the box any more (the failed
            // attempts' are gone); this takes back ownership once.
            Err(e) => Err((unsafe { Box::from_raw(sender.as_ptr()) }, e)),
        }
    }

    fn bytes(&mut self) -> Option<&mut [u8]> {
        self.reservation.as_deref_mut()
    }

    /// Commits (or, with `commit == false`, cancels) and returns the sender.
    fn finish(mut self, commit: bool) -> Box<Sender> {
        if let Some(r) = self.reservation.take() {
            if commit {
                r.commit();
            }
        }
        let sender = self.sender;
        std::mem::forget(self);
        // SAFETY: the reservation that borrowed the box is gone; ownership is
        // taken back once (`self` is forgotten, so its Drop does not run).
        unsafe { Box::from_raw(sender.as_ptr()) }
    }
}

impl Drop for OpenReservation {
    fn drop(&mut self) {
        self.reservation = None;
        // SAFETY: as in `finish`: nothing borrows the box any more.
        drop(unsafe { Box::from_raw(self.sender.as_ptr()) });
    }
}

/// Bytes reserved in a channel's ring: fill them (through `memoryview(res)` or
/// `with res as buf:`), then `commit()` to send them, or `cancel()`.
///
/// The reservation holds the sender: until it ends, the sender refuses other
/// calls. Dropped unfinished, it is cancelled.
#[pyclass(name = "Reservation", module = "shmkit")]
pub struct PyReservation {
    open: Option<OpenReservation>,
    home: Py<PySender>,
    exports: AtomicUsize,
    len: usize,
    /// The memoryview `__enter__` gave out, released by `__exit__`.
    entered: Option<Py<PyMemoryView>>,
}

impl PyReservation {
    fn end(&mut self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let views = self.exports.load(Ordering::SeqCst);
        if views > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of the reserved bytes still exist; release them before commit or cancel",
                views
            )));
        }
        let Some(open) = self.open.take() else {
            return Err(new_error(
                py,
                "Error",
                "the reservation was already committed or cancelled".into(),
            ));
        };
        let sender = open.finish(commit);
        self.home.bind(py).borrow_mut().state = SenderState::Ready(sender);
        Ok(())
    }
}

impl Drop for PyReservation {
    /// Cancelled and the sender given back, so that it can send again.
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let sender = open.finish(false);
            Python::attach(|py| {
                if let Ok(mut home) = self.home.bind(py).try_borrow_mut() {
                    home.state = SenderState::Ready(sender);
                }
            });
        }
    }
}

#[pymethods]
impl PyReservation {
    /// Sends the reserved bytes as one message.
    fn commit(&mut self, py: Python<'_>) -> PyResult<()> {
        self.end(py, true)
    }

    /// Sends nothing and gives the room back.
    fn cancel(&mut self, py: Python<'_>) -> PyResult<()> {
        self.end(py, false)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyMemoryView>> {
        let view = PyMemoryView::from(slf.as_any())?.unbind();
        slf.borrow_mut().entered = Some(view.clone_ref(slf.py()));
        Ok(view)
    }

    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let entered = slf.borrow_mut().entered.take();
        if let Some(view) = entered {
            // Not while borrowed: releasing calls back into `__releasebuffer__`.
            // Fails (BufferError) if the block kept a slice of the view.
            view.bind(py).call_method0("release")?;
        }
        let mut this = slf.borrow_mut();
        if this.open.is_some() {
            this.end(py, exc_type.is_none_or(|t| t.is_none()))?;
        }
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let mut this = slf.borrow_mut();
            let bytes = this
                .open
                .as_mut()
                .and_then(OpenReservation::bytes)
                .ok_or_else(|| {
                    PyBufferError::new_err("the reservation was already committed or cancelled")
                })?;
            (bytes.as_mut_ptr(), bytes.len())
        };
        // SAFETY: CPython passes a valid Py_buffer; the reserved bytes stay
        // reserved while any view exists, because commit and cancel refuse then.
        unsafe { fill_buffer(view, flags, ptr, len, false, slf.clone().into_any())? };
        slf.borrow().exports.fetch_add(1, Ordering::SeqCst);
        Ok(())
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
#[pyclass(name = "Receiver", module = "shmkit")]
pub struct PyReceiver {
    inner: Option<Receiver>,
    name: String,
}

impl PyReceiver {
    fn rx(&mut self, py: Python<'_>) -> PyResult<&mut Receiver> {
        let name = &self.name;
        self.inner
            .as_mut()
            .ok_or_else(|| new_error(py, "Error", format!("{name}: closed")))
    }
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
            inner: Some(r),
            name: name.to_owned(),
        })
    }

    /// The next message, waiting up to `timeout` seconds (`None`: forever).
    /// Raises `Timeout`, or `Disconnected` once the queue is empty and every
    /// sender has gone.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let timeout = timeout_arg(py, &self.name, timeout)?;
        let rx = self.rx(py)?;
        match rx.try_recv_with(|m| to_bytes(py, m).map(Bound::unbind)) {
            Err(e) if e.is_would_block() => wait(py, timeout, |slice| {
                rx.recv_with_timeout(slice, to_bytes_detached)
            })?,
            done => done.py_err(py)?,
        }
    }

    /// The next message if one is queued, else `None`.
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let rx = self.rx(py)?;
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
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let timeout = timeout_arg(py, &self.name, timeout)?;
        let mut buf = contiguous(buffer)?;
        let name = self.name.clone();
        let dst = buf.bytes_mut().ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{name}: recv_into needs a writable buffer"
            ))
        })?;
        let rx = self.rx(py)?;
        // A large buffer is for large messages: copy them without the GIL.
        if dst.len() < LARGE {
            match rx.try_recv_into(dst) {
                Err(e) if e.is_would_block() => {}
                done => return done.py_err(py),
            }
        }
        wait(py, timeout, |slice| rx.recv_into_timeout(dst, slice))
    }

    /// Process ids of the senders attached now.
    #[getter]
    fn senders(&mut self, py: Python<'_>) -> PyResult<Vec<u32>> {
        Ok(self.rx(py)?.senders())
    }

    /// Bytes in the ring.
    #[getter]
    fn capacity(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.rx(py)?.capacity())
    }

    /// The longest message the channel accepts.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.rx(py)?.max_message())
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Detaches from the channel.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Iteration receives until every sender is gone (`Disconnected` ends it).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.recv(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_class(py, &e, "Disconnected") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Receiver {:?}>", self.name)
    }
}

/// Whether `e` is a `shmkit.<class>`.
pub(crate) fn is_class(py: Python<'_>, e: &PyErr, class: &str) -> bool {
    PyModule::import(py, "shmkit._errors")
        .and_then(|m| m.getattr(class))
        .is_ok_and(|c| e.value(py).is_instance(&c).unwrap_or(false))
}
