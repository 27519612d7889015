//! Request/response: `RpcServer`, `RpcClient`.

use crate::aio::{coroutine, poll_once, Wakeup};
use crate::channel::{to_bytes, to_bytes_detached};
use crate::errors::{busy, closed, to_py, IntoPyResult};
use crate::handle::{Handle, Turn};
use crate::region::contiguous;
use crate::wait::{timeout_arg, wait, wait_whole, Deadline, LARGE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmkit::channel::{PendingCall, Request, RpcClient, RpcServer, RPC_REPLY_TIMEOUT};
use shmkit::Interrupter;
use std::task::Poll;

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
    wakeup: Wakeup,
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
            wakeup: Wakeup::new(),
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

    /// A coroutine that receives the next request, waiting without blocking the
    /// event loop; `Closed` if `close()` is called meanwhile. Cancel safe: a
    /// request is taken only by the poll that returns it.
    fn recv_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "recv", (slf,))
    }

    /// A coroutine that answers `request` with `payload` (bytes-like, up to
    /// one record of the client's reply queue: 65,520 bytes; longer ones raise
    /// `TooLong`, send them with `reply`, in a thread): at once if the client's
    /// reply queue has room, else when it has, waiting without blocking the
    /// event loop for at most the reply timeout (one second), then `Timeout`
    /// and the reply is dropped, as `reply` does. Cancel safe: the reply goes
    /// whole or not at all.
    fn reply_async<'py>(
        slf: &Bound<'py, Self>,
        request: &Bound<'py, PyRequest>,
        payload: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "reply", (slf, request, payload))
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

    /// One attempt of `recv_async`: the next request, or `None` after
    /// registering the wait.
    fn _poll_recv(&self, py: Python<'_>) -> PyResult<Option<PyRequest>> {
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut server = self.handle.lease(py, "receive", Turn::Prompt)?;
        match poll_once(&waker, |cx| server.poll_recv(cx)) {
            Poll::Ready(got) => got.py_err(py).map(|inner| Some(PyRequest { inner })),
            Poll::Pending => Ok(None),
        }
    }

    /// Gives back the wait of a cancelled `recv_async`.
    fn _cancel_poll(&self, py: Python<'_>) {
        // Closed (the wait went with the server) or in use: nothing to give back.
        if let Ok(mut server) = self.handle.lease(py, "receive", Turn::Prompt) {
            server.cancel_poll();
        }
    }

    /// One attempt of `reply_async`: whether the reply went; if not, `fileno()`
    /// becomes readable when room may have come. `expired` (the coroutine's
    /// reply timeout has passed): a reply that still cannot go is `Timeout`,
    /// dropped, its wait given back.
    #[pyo3(signature = (request, payload, expired = false))]
    fn _poll_reply(
        &self,
        py: Python<'_>,
        request: &PyRequest,
        payload: &Bound<'_, PyAny>,
        expired: bool,
    ) -> PyResult<bool> {
        let buf = contiguous(payload)?;
        let bytes = buf.bytes();
        if bytes.len() > MAX_ASYNC_REPLY {
            return Err(to_py(
                py,
                shmkit::Error::TooLong {
                    object: request.inner.client().into(),
                    len: bytes.len() as u64,
                    max: MAX_ASYNC_REPLY as u64,
                },
            ));
        }
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut server = self.handle.lease(py, "reply", Turn::Prompt)?;
        match poll_once(&waker, |cx| server.poll_reply(cx, &request.inner, bytes)) {
            Poll::Ready(sent) => sent.py_err(py).map(|()| true),
            Poll::Pending if expired => {
                server.cancel_reply(&request.inner);
                Err(to_py(
                    py,
                    shmkit::Error::Timeout {
                        object: request.inner.client().into(),
                        op: "deliver a reply (the client's reply queue stayed full)",
                        after: RPC_REPLY_TIMEOUT,
                    },
                ))
            }
            Poll::Pending => Ok(false),
        }
    }

    /// Gives back the wait of a cancelled `reply_async` (the last one awaiting
    /// room in `request`'s client's queue).
    fn _cancel_reply(&self, py: Python<'_>, request: &PyRequest) {
        if let Ok(mut server) = self.handle.lease(py, "reply", Turn::Prompt) {
            server.cancel_reply(&request.inner);
        }
    }

    /// The reply timeout in seconds: how long `reply_async` waits for room.
    #[getter]
    fn _reply_timeout(&self) -> f64 {
        RPC_REPLY_TIMEOUT.as_secs_f64()
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Stops serving: a `recv` waiting on another thread ends with `Closed`
    /// (so does a coroutine awaiting the server), and once `close()` returns
    /// another server may bind the name.
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
    wakeup: Wakeup,
    /// Where `call_async` is. A reply to another call is dropped when found,
    /// so no other call may run meanwhile.
    pending: std::sync::Mutex<AsyncCall>,
}

/// The state of a client's `call_async`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AsyncCall {
    /// None in progress.
    Idle,
    /// Waiting to send its request.
    Starting,
    /// Sent, waiting for the reply.
    Awaiting(PendingCall),
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
            wakeup: Wakeup::new(),
            pending: std::sync::Mutex::new(AsyncCall::Idle),
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
        self.no_async_call(py)?;
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

    /// A coroutine that sends `payload` (bytes-like, up to one record of the
    /// server's request queue: a quarter of its 1 MiB ring less the request's
    /// header, about 256 KiB; longer ones raise `TooLong`: use `call`, in a
    /// thread) and returns the reply, without blocking the event loop: it waits
    /// for room in the request queue, then for the reply. Raises `Disconnected`
    /// if the server stops or dies, `Closed` if `close()` is called meanwhile,
    /// `Busy` while another call on this client is in progress (one at a time).
    /// Cancel safe: cancelled before the request went, nothing was sent; after,
    /// the server still answers and the next call discards that reply.
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        payload: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "call", (slf, payload))
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

    /// Starts a `call_async`: `Busy` if a call is in progress.
    fn _begin_call(&self, py: Python<'_>) -> PyResult<()> {
        // A blocking call on another thread: `Busy` from the lease.
        let _client = self.handle.lease(py, "call", Turn::Prompt)?;
        let mut pending = self.pending();
        if *pending != AsyncCall::Idle {
            return Err(self.call_in_progress(py));
        }
        *pending = AsyncCall::Starting;
        Ok(())
    }

    /// One attempt to send the request of `call_async`: whether it went; if
    /// not, `fileno()` becomes readable when room may have come. The request
    /// goes as one record or not at all, so an attempt that finds no room has
    /// sent nothing.
    fn _poll_start_call(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<bool> {
        let buf = contiguous(payload)?;
        let bytes = buf.bytes();
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut client = self.handle.lease(py, "call", Turn::Prompt)?;
        self.in_step(py, AsyncCall::Starting)?;
        match poll_once(&waker, |cx| client.poll_start_call(cx, bytes)) {
            Poll::Ready(Ok(call)) => {
                *self.pending() = AsyncCall::Awaiting(call);
                Ok(true)
            }
            Poll::Ready(Err(e)) => {
                *self.pending() = AsyncCall::Idle;
                Err(to_py(py, payload_too_long(e, bytes.len())))
            }
            Poll::Pending => Ok(false),
        }
    }

    /// Ends a `call_async` cancelled before its request went (nothing sent).
    fn _cancel_start_call(&self, py: Python<'_>) {
        *self.pending() = AsyncCall::Idle;
        // Closed (the wait went with the client) or in use: nothing to give back.
        if let Ok(mut client) = self.handle.lease(py, "call", Turn::Prompt) {
            client.cancel_start_call();
        }
    }

    /// One attempt to collect the reply of `call_async`: the reply, or `None`
    /// after registering the wait (which a server that dies also ends).
    fn _poll_reply(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let waker = self.wakeup.waker(self.handle.name())?;
        let mut client = self.handle.lease(py, "call", Turn::Prompt)?;
        let AsyncCall::Awaiting(call) = *self.pending() else {
            return Err(self.not_in_step(py));
        };
        match poll_once(&waker, |cx| {
            client.poll_reply_with(cx, call, |m| to_bytes(py, m).map(Bound::unbind))
        }) {
            Poll::Ready(got) => {
                *self.pending() = AsyncCall::Idle;
                got.py_err(py)?.map(Some)
            }
            Poll::Pending => Ok(None),
        }
    }

    /// Forgets the call of a cancelled `call_async` and gives its wait back:
    /// its reply, if it comes, is discarded by the next call.
    fn _abandon_call(&self, py: Python<'_>) {
        *self.pending() = AsyncCall::Idle;
        if let Ok(mut client) = self.handle.lease(py, "call", Turn::Prompt) {
            client.cancel_poll();
        }
    }

    /// The server's channel name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Disconnects: a `call` waiting on another thread ends with `Closed`, and
    /// so does a `call_async` awaiting a reply.
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
        format!("<shmkit.RpcClient {:?}>", self.handle.name())
    }
}

impl PyRpcClient {
    fn pending(&self) -> std::sync::MutexGuard<'_, AsyncCall> {
        // One assignment at a time: a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call_in_progress(&self, py: Python<'_>) -> PyErr {
        busy(
            py,
            self.handle.name(),
            "a call_async on this client is in progress; one call at a time",
        )
    }

    /// `Busy` while a `call_async` is in progress (call under a lease): a call
    /// now would drop its reply as a late one.
    fn no_async_call(&self, py: Python<'_>) -> PyResult<()> {
        if *self.pending() != AsyncCall::Idle {
            return Err(self.call_in_progress(py));
        }
        Ok(())
    }

    /// An error unless `call_async` is at `step` (its steps run in order).
    fn in_step(&self, py: Python<'_>, step: AsyncCall) -> PyResult<()> {
        if *self.pending() != step {
            return Err(self.not_in_step(py));
        }
        Ok(())
    }

    fn not_in_step(&self, py: Python<'_>) -> PyErr {
        crate::errors::new_error(
            py,
            "Error",
            format!("{}: no call_async in progress", self.handle.name()),
        )
    }
}

/// The longest reply `reply_async` sends: one record of a client's reply queue
/// (`RpcClient::connect` makes its ring 256 KiB; a record is a quarter of the
/// ring less an 8-byte header) less the reply's 8-byte call id. Checked here,
/// before the core's `poll_reply`, because that drops the server's sender to
/// the client on any error, `TooLong` too: the client's pending call would then
/// end with `Disconnected` although the server is there to answer it.
const MAX_ASYNC_REPLY: usize = 256 * 1024 / 4 - 8 - 8;

/// A `TooLong` of a request (header and payload, as the core sends it)
/// restated for the `payload_len` bytes the caller gave.
fn payload_too_long(e: shmkit::Error, payload_len: usize) -> shmkit::Error {
    match e {
        shmkit::Error::TooLong { object, len, max } => {
            let header = len.saturating_sub(payload_len as u64);
            shmkit::Error::TooLong {
                object,
                len: payload_len as u64,
                max: max.saturating_sub(header),
            }
        }
        e => e,
    }
}
