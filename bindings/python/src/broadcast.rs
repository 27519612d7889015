//! Publish/subscribe: `Publisher`, `Subscriber` (with `Lagged`).

use crate::channel::{is_class, to_bytes, to_bytes_detached, Opts};
use crate::errors::{new_error, IntoPyResult};
use crate::region::contiguous;
use crate::wait::{timeout_arg, wait, LARGE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmkit::channel::{Publisher, Subscriber};
use std::time::Duration;

/// The one publisher of a broadcast channel: every subscriber gets every
/// message, and a subscriber too slow to keep up loses the oldest (`Lagged`).
/// Publishing never waits for subscribers.
///
/// ```python
/// pub = shmkit.Publisher.connect("prices", capacity=1 << 20)
/// pub.publish(b"EURUSD 1.0842")
/// ```
#[pyclass(name = "Publisher", module = "shmkit")]
pub struct PyPublisher {
    inner: Option<Publisher>,
    name: String,
}

impl PyPublisher {
    fn publisher(&mut self, py: Python<'_>) -> PyResult<&mut Publisher> {
        let name = &self.name;
        self.inner
            .as_mut()
            .ok_or_else(|| new_error(py, "Error", format!("{name}: closed")))
    }
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
            inner: Some(p),
            name: name.to_owned(),
        })
    }

    /// Publishes `data` (any bytes-like object up to `max_message`) to every
    /// subscriber.
    fn publish(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = contiguous(data)?;
        let msg = buf.bytes();
        let p = self.publisher(py)?;
        if msg.len() >= LARGE {
            py.detach(|| p.publish(msg)).py_err(py)
        } else {
            p.publish(msg).py_err(py)
        }
    }

    /// Process ids of the subscribers attached now.
    #[getter]
    fn subscribers(&mut self, py: Python<'_>) -> PyResult<Vec<u32>> {
        Ok(self.publisher(py)?.subscribers())
    }

    /// The longest message: a quarter of the ring, less 16 header bytes.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.publisher(py)?.max_message())
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Detaches; subscribers get `Disconnected` once they have read the rest.
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

    fn __repr__(&self) -> String {
        format!("<shmkit.Publisher {:?}>", self.name)
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
#[pyclass(name = "Subscriber", module = "shmkit")]
pub struct PySubscriber {
    inner: Option<Subscriber>,
    name: String,
}

impl PySubscriber {
    fn sub(&mut self, py: Python<'_>) -> PyResult<&mut Subscriber> {
        let name = &self.name;
        self.inner
            .as_mut()
            .ok_or_else(|| new_error(py, "Error", format!("{name}: closed")))
    }
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
            inner: Some(s),
            name: name.to_owned(),
        })
    }

    /// The next message, waiting up to `timeout` seconds (`None`: forever).
    /// Raises `Lagged` (with `missed`) when the publisher overwrote messages this
    /// subscriber had not read, `Timeout`, or `Disconnected` once everything is
    /// read and the publisher is gone.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let timeout = timeout_arg(py, &self.name, timeout)?;
        let sub = self.sub(py)?;
        match sub.recv_with_timeout(Duration::ZERO, |m| to_bytes(py, m).map(Bound::unbind)) {
            Err(e) if e.is_timeout() || e.is_would_block() => wait(py, timeout, |slice| {
                sub.recv_with_timeout(slice, to_bytes_detached)
            })?,
            done => done.py_err(py)?,
        }
    }

    /// The next message if there is one, else `None` (`Lagged` as for `recv`).
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.recv(py, Some(0.0)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_class(py, &e, "Timeout") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Detaches.
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

    /// Iteration ends when the publisher is gone; `Lagged` is raised.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.recv(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_class(py, &e, "Disconnected") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Subscriber {:?}>", self.name)
    }
}
