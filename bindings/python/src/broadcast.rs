//! Publish/subscribe: `Publisher`, `Subscriber` (with `Lagged`).

use crate::aio::{coroutine, poll_once, Wakeup};
use crate::channel::{is_class, to_bytes, to_bytes_detached, Opts};
use crate::errors::{closed, IntoPyResult};
use crate::handle::{Handle, Turn};
use crate::region::contiguous;
use crate::wait::{timeout_arg, wait, Deadline, LARGE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmkit::channel::{Publisher, Subscriber};
use std::task::Poll;
use std::time::Duration;

/// The one publisher of a broadcast channel: every subscriber gets every
/// message, and a subscriber too slow to keep up loses the oldest (`Lagged`).
/// Publishing never waits for subscribers.
///
/// ```python
/// pub = shmkit.Publisher.connect("prices", capacity=1 << 20)
/// pub.publish(b"EURUSD 1.0842")
/// ```
#[pyclass(name = "Publisher", module = "shmkit", frozen)]
pub struct PyPublisher {
    handle: Handle<Publisher>,
    max_message: u64,
}

#[pymethods]
impl PyPublisher {
    /// Attaches to broadcast channel `name` as its publisher, creating it if
    /// needed. `history=True` keeps the messages in the ring for subscribers
    /// that join later.
    #[staticmethod]
    #[pyo3(signature = (name, *, capacity = None, max_subscribers = None, history = false, persistent = false, create = None))]
    fn connect(
        py: Python<'_>,
        name: &str,
        capacity: Option<i128>,
        max_subscribers: Option<i64>,
        history: bool,
        persistent: bool,
        create: Option<bool>,
    ) -> PyResult<PyPublisher> {
        let opts = Opts {
            capacity,
            max_peers: max_subscribers,
            persistent,
            create,
            ..Opts::default()
        };
        let o = opts.build(py, name, true)?.history(history);
        let p = py.detach(|| o.publisher(name)).py_err(py)?;
        Ok(PyPublisher {
            max_message: p.max_message(),
            // Publishing never waits: nothing to interrupt.
            handle: Handle::new(name, None, p),
        })
    }

    /// Publishes `data` (any bytes-like object up to `max_message`) to every
    /// subscriber.
    fn publish(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = contiguous(data)?;
        let msg = buf.bytes();
        let mut p = self.handle.lease(py, "publish", Turn::Prompt)?;
        if msg.len() >= LARGE {
            py.detach(|| p.publish(msg)).py_err(py)
        } else {
            p.publish(msg).py_err(py)
        }
    }

    /// Process ids of the subscribers attached now.
    #[getter]
    fn subscribers(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        let p = self.handle.lease(py, "subscribers", Turn::Prompt)?;
        Ok(p.subscribers())
    }

    /// The longest message: a quarter of the ring, less 16 header bytes.
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

    /// Detaches; subscribers get `Disconnected` once they have read the rest.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.close(py)
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
        format!("<shmkit.Publisher {:?}>", self.handle.name())
    }
}

/// A subscriber of a broadcast channel.
///
/// ```python
/// sub = shmkit.Subscriber.connect("prices")
/// try:
///     msg = sub.recv(timeout=1.0)
/// except shmkit.Lagged as e:
///     print("missed", e.missed)   # the next recv goes on with the oldest kept
/// ```
///
/// `close()` from another thread ends a `recv` waiting there (it raises
/// `Closed`).
#[pyclass(name = "Subscriber", module = "shmkit", frozen)]
pub struct PySubscriber {
    handle: Handle<Subscriber>,
    wakeup: Wakeup,
}

#[pymethods]
impl PySubscriber {
    /// Attaches to broadcast channel `name` as a subscriber, creating it if
    /// needed.
    #[staticmethod]
    #[pyo3(signature = (name, *, capacity = None, max_subscribers = None, history = false, persistent = false, busy_poll = false, create = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        name: &str,
        capacity: Option<i128>,
        max_subscribers: Option<i64>,
        history: bool,
        persistent: bool,
        busy_poll: bool,
        create: Option<bool>,
    ) -> PyResult<PySubscriber> {
        let opts = Opts {
            capacity,
            max_peers: max_subscribers,
            persistent,
            busy_poll,
            create,
            ..Opts::default()
        };
        let o = opts.build(py, name, true)?.history(history);
        let s = py.detach(|| o.subscriber(name)).py_err(py)?;
        Ok(PySubscriber {
            handle: Handle::new(name, Some(s.interrupter()), s),
            wakeup: Wakeup::new(),
        })
    }

    /// The next message, waiting up to `timeout` seconds (`None`: forever).
    /// Raises `Lagged` (with `missed`) when the publisher overwrote messages this
    /// subscriber had not read, `Timeout`, `Disconnected` once everything is
    /// read and the publisher is gone, or `Closed` if `close()` is called
    /// meanwhile.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let deadline = Deadline::after(timeout_arg(py, self.handle.name(), timeout)?);
        let mut sub = self.handle.lease(py, "receive", Turn::Until(deadline))?;
        match sub.recv_with_timeout(Duration::ZERO, |m| to_bytes(py, m).map(Bound::unbind)) {
            Err(e) if e.is_timeout() || e.is_would_block() => wait(py, deadline, |slice| {
                sub.recv_with_timeout(slice, to_bytes_detached)
            })?,
            done => done.py_err(py)?,
        }
    }

    /// The next message if there is one, else `None` (`Lagged` as for `recv`).
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let mut sub = self.handle.lease(py, "try_recv", Turn::Prompt)?;
        match sub.recv_with_timeout(Duration::ZERO, |m| to_bytes(py, m).map(Bound::unbind)) {
            Ok(m) => m.map(Some),
            Err(e) if e.is_timeout() || e.is_would_block() => Ok(None),
            Err(e) => Err(e).py_err(py),
        }
    }

    /// A coroutine that receives the next message, waiting without blocking the
    /// event loop; raises as `recv` does. Cancel safe: a message is taken only
    /// by the poll that returns it; a cancelled receive skips nothing.
    fn recv_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "recv", (slf,))
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
    /// registering the wait.
    fn _poll_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut sub = self.handle.lease(py, "receive", Turn::Prompt)?;
        match poll_once(&waker, |cx| {
            sub.poll_recv_with(cx, |m| to_bytes(py, m).map(Bound::unbind))
        }) {
            Poll::Ready(got) => got.py_err(py)?.map(Some),
            Poll::Pending => Ok(None),
        }
    }

    /// Gives back the wait of a cancelled `recv_async`.
    fn _cancel_poll(&self, py: Python<'_>) {
        // Closed (the wait went with the subscriber) or in use: nothing to give back.
        if let Ok(mut sub) = self.handle.lease(py, "receive", Turn::Prompt) {
            sub.cancel_poll();
        }
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Detaches. A `recv` waiting on another thread ends with `Closed`, and so
    /// does a coroutine awaiting it.
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

    /// Iteration ends when the publisher is gone; `Lagged` is raised.
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

    /// `async for` ends when the publisher is gone; `Lagged` is raised.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "anext", (slf,))
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Subscriber {:?}>", self.handle.name())
    }
}
