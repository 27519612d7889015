//! Request/response: `RpcServer`, `RpcClient`.

use crate::channel::{to_bytes, to_bytes_detached};
use crate::errors::IntoPyResult;
use crate::handle::{Handle, Turn};
use crate::region::contiguous;
use crate::wait::{timeout_arg, wait, wait_whole, Deadline, LARGE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmkit::channel::{Request, RpcClient, RpcServer};
use shmkit::Interrupter;

/// The server of request/response channel `name`: receives requests from any
/// number of clients and replies to each.
///
/// ```python
/// server = shmkit.RpcServer.bind("math")
/// while True:
///     req = server.recv()
///     server.reply(req, str(sum(map(int, req.payload.split()))).encode())
/// ```
///
/// `close()` from another thread ends a `recv` waiting there (it raises
/// `Closed`) and frees the name for another server.
#[pyclass(name = "RpcServer", module = "shmkit", frozen)]
pub struct PyRpcServer {
    handle: Handle<RpcServer>,
}

/// A request received by an [`PyRpcServer`].
#[pyclass(name = "Request", module = "shmkit", frozen)]
pub struct PyRequest {
    inner: Request,
}

#[pymethods]
impl PyRequest {
    /// The request's bytes.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        to_bytes(py, self.inner.payload())
    }

    /// Which client sent it (its reply queue's name).
    #[getter]
    fn client(&self) -> &str {
        self.inner.client()
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Request from {:?}, {} bytes>",
            self.inner.client(),
            self.inner.payload().len()
        )
    }
}

#[pymethods]
impl PyRpcServer {
    /// Serves `name` (one server per name).
    #[staticmethod]
    fn bind(py: Python<'_>, name: &str) -> PyResult<PyRpcServer> {
        let inner = py.detach(|| RpcServer::bind(name)).py_err(py)?;
        Ok(PyRpcServer {
            handle: Handle::new(name, Some(inner.interrupter()), inner),
        })
    }

    /// The next request, waiting up to `timeout` seconds (`None`: forever).
    /// Raises `Timeout`, or `Closed` if `close()` is called meanwhile.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyRequest> {
        let deadline = Deadline::after(timeout_arg(py, self.handle.name(), timeout)?);
        let mut server = self.handle.lease(py, "receive", Turn::Until(deadline))?;
        let inner = wait(py, deadline, |slice| server.recv_timeout(slice))?;
        Ok(PyRequest { inner })
    }

    /// Answers `request` with `payload` (bytes-like). A client that is gone or
    /// stopped reading is skipped after the reply timeout (one second).
    fn reply(
        &self,
        py: Python<'_>,
        request: &PyRequest,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let buf = contiguous(payload)?;
        let bytes = buf.bytes();
        let mut server = self.handle.lease(py, "reply", Turn::Prompt)?;
        let server = &mut *server;
        py.detach(|| server.reply(&request.inner, bytes)).py_err(py)
    }

    /// Receives one request, calls `handler(payload: bytes)` and replies with
    /// what it returns (bytes-like). Returns whether a request was served
    /// (`False` when `timeout` passed first).
    #[pyo3(signature = (handler, timeout = None))]
    fn serve_one(
        &self,
        py: Python<'_>,
        handler: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let request = match self.recv(py, timeout) {
            Ok(r) => r,
            Err(e) if crate::channel::is_class(py, &e, "Timeout") => return Ok(false),
            Err(e) => return Err(e),
        };
        let answer = handler.call1((request.payload(py)?,))?;
        self.reply(py, &request, &answer)?;
        Ok(true)
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Stops serving: a `recv` waiting on another thread ends with `Closed`, and
    /// once `close()` returns another server may bind the name.
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
        format!("<shmkit.RpcServer {:?}>", self.handle.name())
    }
}

/// A client of an [`PyRpcServer`].
///
/// ```python
/// client = shmkit.RpcClient.connect("math")
/// assert client.call(b"1 2 3", timeout=1.0) == b"6"
/// ```
#[pyclass(name = "RpcClient", module = "shmkit", frozen)]
pub struct PyRpcClient {
    handle: Handle<RpcClient>,
    interrupter: Interrupter,
}

#[pymethods]
impl PyRpcClient {
    /// Connects to the server of `name`.
    #[staticmethod]
    fn connect(py: Python<'_>, name: &str) -> PyResult<PyRpcClient> {
        let inner = py.detach(|| RpcClient::connect(name)).py_err(py)?;
        let interrupter = inner.interrupter();
        Ok(PyRpcClient {
            handle: Handle::new(name, Some(interrupter.clone()), inner),
            interrupter,
        })
    }

    /// Sends `payload` and returns the reply, waiting up to `timeout` seconds
    /// (`None`: forever). Raises `Timeout`, `Disconnected` if the server stops,
    /// or `Closed` if `close()` is called meanwhile.
    #[pyo3(signature = (payload, timeout = None))]
    fn call(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyBytes>> {
        let deadline = Deadline::after(timeout_arg(py, self.handle.name(), timeout)?);
        let buf = contiguous(payload)?;
        let bytes = buf.bytes();
        let mut client = self.handle.lease(py, "call", Turn::Until(deadline))?;
        // A request shorter than LARGE is one record of the server's 1 MiB ring
        // (`RpcServer::bind`): an attempt that times out has sent nothing. A
        // longer one may go in fragments, in one uninterrupted call.
        let call = if bytes.len() < LARGE {
            wait(py, deadline, |slice| client.start_call(bytes, Some(slice)))?
        } else {
            let c = &mut *client;
            wait_whole(py, &self.interrupter, move || {
                c.start_call(bytes, deadline.left())
                    .map_err(|e| deadline.restate(e))
            })?
        };
        // A reply not there yet stays pending: waiting in slices loses nothing.
        wait(py, deadline, |slice| {
            client.finish_call_with(call, slice, to_bytes_detached)
        })?
    }

    /// The server's channel name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Disconnects: a `call` waiting on another thread ends with `Closed`.
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
        format!("<shmkit.RpcClient {:?}>", self.handle.name())
    }
}
