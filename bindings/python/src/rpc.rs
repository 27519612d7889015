//! Request/response: `RpcServer`, `RpcClient`.

use crate::channel::{to_bytes, to_bytes_detached};
use crate::errors::{new_error, IntoPyResult};
use crate::region::contiguous;
use crate::wait::{timeout_arg, wait};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmkit::channel::{Request, RpcClient, RpcServer};
use std::time::Duration;

/// The server of request/response channel `name`: receives requests from any
/// number of clients and replies to each.
///
/// ```python
/// server = shmkit.RpcServer.bind("math")
/// while True:
///     req = server.recv()
///     server.reply(req, str(sum(map(int, req.payload.split()))).encode())
/// ```
#[pyclass(name = "RpcServer", module = "shmkit")]
pub struct PyRpcServer {
    inner: RpcServer,
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
        Ok(PyRpcServer { inner })
    }

    /// The next request, waiting up to `timeout` seconds (`None`: forever).
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyRequest> {
        let timeout = timeout_arg(py, self.inner.name(), timeout)?;
        let server = &mut self.inner;
        let inner = wait(py, timeout, |slice| server.recv_timeout(slice))?;
        Ok(PyRequest { inner })
    }

    /// Answers `request` with `payload` (bytes-like). A client that is gone or
    /// stopped reading is skipped after the reply timeout (one second).
    fn reply(
        &mut self,
        py: Python<'_>,
        request: &PyRequest,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let buf = contiguous(payload)?;
        let server = &mut self.inner;
        let bytes = buf.bytes();
        py.detach(|| server.reply(&request.inner, bytes)).py_err(py)
    }

    /// Receives one request, calls `handler(payload: bytes)` and replies with
    /// what it returns (bytes-like). Returns whether a request was served
    /// (`False` when `timeout` passed first).
    #[pyo3(signature = (handler, timeout = None))]
    fn serve_one(
        &mut self,
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
        self.inner.name()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.RpcServer {:?}>", self.inner.name())
    }
}

/// A client of an [`PyRpcServer`].
///
/// ```python
/// client = shmkit.RpcClient.connect("math")
/// assert client.call(b"1 2 3", timeout=1.0) == b"6"
/// ```
#[pyclass(name = "RpcClient", module = "shmkit")]
pub struct PyRpcClient {
    inner: RpcClient,
    name: String,
}

#[pymethods]
impl PyRpcClient {
    /// Connects to the server of `name`.
    #[staticmethod]
    fn connect(py: Python<'_>, name: &str) -> PyResult<PyRpcClient> {
        let inner = py.detach(|| RpcClient::connect(name)).py_err(py)?;
        Ok(PyRpcClient {
            inner,
            name: name.to_owned(),
        })
    }

    /// Sends `payload` and returns the reply, waiting up to `timeout` seconds
    /// (`None`: forever). Raises `Timeout`, or `Disconnected` if the server stops.
    #[pyo3(signature = (payload, timeout = None))]
    fn call(
        &mut self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyBytes>> {
        let timeout = timeout_arg(py, &self.name, timeout)?;
        let buf = contiguous(payload)?;
        let bytes = buf.bytes();
        let client = &mut self.inner;
        let start = std::time::Instant::now();
        let call = wait(py, timeout, |slice| client.start_call(bytes, Some(slice)))?;
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let reply = wait(py, left, |slice| {
            client.finish_call_with(call, slice, to_bytes_detached)
        });
        match reply {
            Err(e) if crate::channel::is_class(py, &e, "Timeout") => Err(new_error(
                py,
                "Timeout",
                format!(
                    "{}: timed out after {:?} waiting to receive a reply",
                    self.name,
                    timeout.unwrap_or(Duration::ZERO)
                ),
            )),
            other => other?,
        }
    }

    /// The server's channel name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.RpcClient {:?}>", self.name)
    }
}
