//! What the asyncio coroutines (`python/shmkit/_aio.py`) are driven by.
//!
//! Every waitable object owns a [`Wakeup`]: a [`shmkit::Notifier`] made on first
//! use, whose descriptor (`fileno()`) asyncio's loop watches with `add_reader`.
//! The coroutines call the objects' private `_poll_*` methods, which never wait:
//! each returns the result, or `None` after registering the notifier's waker
//! with the object (the channel endpoints keep that wait inside the Rust object;
//! a mutex, semaphore or event keeps a boxed future per coroutine, in [`Ops`]).
//! Nothing is taken except by the poll that returns it, so a coroutine cancelled
//! between polls has consumed nothing.
//!
//! The notifier is cleared once per wake-up, by the loop's reader callback
//! (`_clear_wakeup`), which then wakes *every* coroutine awaiting the object:
//! each polls again. Clearing inside each poll instead could swallow a wake-up
//! that was meant for another coroutine's wait on the same object.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use shmkit::Notifier;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

static AIO: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A coroutine made by `shmkit._aio.<function>(*args)`: what every
/// `*_async` method returns.
pub(crate) fn coroutine<'py>(
    py: Python<'py>,
    function: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let module = AIO.get_or_try_init(py, || {
        PyModule::import(py, "shmkit._aio").map(Bound::unbind)
    })?;
    module.bind(py).getattr(function)?.call1(args)
}

/// An object's wake-up descriptor, made on first use and kept as long as the
/// Python object (not closed by `close()`: asyncio may still have it registered,
/// and a descriptor number reused meanwhile would confuse its selector).
pub(crate) struct Wakeup(OnceLock<Notifier>);

impl Wakeup {
    pub(crate) fn new() -> Wakeup {
        Wakeup(OnceLock::new())
    }

    fn notifier(&self, name: &str) -> PyResult<&Notifier> {
        if let Some(n) = self.0.get() {
            return Ok(n);
        }
        let made = Notifier::new().map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "{name}: cannot make the wake-up descriptor for asyncio: {e}"
            ))
        })?;
        // Two threads may race here: one notifier wins, the other is dropped.
        Ok(self.0.get_or_init(|| made))
    }

    /// The waker to poll with.
    pub(crate) fn waker(&self, name: &str) -> PyResult<Waker> {
        Ok(self.notifier(name)?.waker())
    }

    /// The descriptor an event loop waits on (readable when woken).
    #[cfg(unix)]
    pub(crate) fn fileno(&self, _py: Python<'_>, name: &str) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        Ok(self.notifier(name)?.as_raw_fd())
    }

    /// asyncio's `add_reader` takes only sockets on Windows: the notifier's
    /// event handle cannot be given to it.
    #[cfg(not(unix))]
    pub(crate) fn fileno(&self, py: Python<'_>, name: &str) -> PyResult<i32> {
        Err(crate::errors::new_error(
            py,
            "Unsupported",
            format!(
                "{name}: the asyncio methods need a Unix event loop (add_reader on a descriptor)"
            ),
        ))
    }

    /// Makes the descriptor not readable (before the coroutines poll again).
    pub(crate) fn clear(&self) {
        if let Some(n) = self.0.get() {
            n.clear();
        }
    }

    /// Makes the descriptor readable: every coroutine awaiting the object polls
    /// again (after `close()`, or when one coroutine's completed poll ended the
    /// wait the others shared).
    pub(crate) fn notify(&self) {
        if let Some(n) = self.0.get() {
            n.notify();
        }
    }
}

/// A boxed `'static` future: a wait on a mutex, semaphore or event that owns an
/// `Arc` of the object.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The waits of one object's coroutines, one future each, by token. Dropping a
/// future gives its wait back.
pub(crate) struct Ops<T> {
    inner: Mutex<OpsInner<T>>,
}

struct OpsInner<T> {
    next: u64,
    live: HashMap<u64, BoxFuture<T>>,
}

impl<T> Ops<T> {
    pub(crate) fn new() -> Ops<T> {
        Ops {
            inner: Mutex::new(OpsInner {
                next: 1,
                live: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OpsInner<T>> {
        // Every change is one insert or removal: a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `future` for a coroutine; the token names it in later calls.
    pub(crate) fn start(&self, future: impl Future<Output = T> + Send + 'static) -> u64 {
        let mut ops = self.lock();
        let token = ops.next;
        ops.next += 1;
        ops.live.insert(token, Box::pin(future));
        token
    }

    /// Polls the future of `token` with `waker`; a finished one is forgotten.
    /// `None` if there is no such future (cancelled, or dropped by `close()`).
    pub(crate) fn poll(&self, token: u64, waker: &Waker) -> Option<Poll<T>> {
        let mut ops = self.lock();
        let future = ops.live.get_mut(&token)?;
        let polled = future.as_mut().poll(&mut Context::from_waker(waker));
        let done = polled.is_ready().then(|| ops.live.remove(&token));
        drop(ops);
        drop(done);
        Some(polled)
    }

    /// Drops the future of `token`, giving its wait back.
    pub(crate) fn cancel(&self, token: u64) {
        let dropped = self.lock().live.remove(&token);
        drop(dropped);
    }

    /// Drops every future (the object was closed).
    pub(crate) fn clear(&self) {
        let dropped = std::mem::take(&mut self.lock().live);
        drop(dropped);
    }
}

/// Polls `f` once with `waker`.
pub(crate) fn poll_once<T>(waker: &Waker, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    f(&mut Context::from_waker(waker))
}
