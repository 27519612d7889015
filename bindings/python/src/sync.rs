//! Cross-process `Mutex` (with owner-died), `Semaphore` and `Event`.

use crate::aio::{coroutine, Ops, Wakeup};
use crate::errors::{busy, closed, invalid, new_error, new_error_with, IntoPyResult};
use crate::handle::Shared;
use crate::wait::{timeout_arg, wait, Deadline};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmkit::sync::{
    ArcMutexGuard, Event, EventMode, LockError, LockResult, Mutex, Semaphore, SEMAPHORE_MAX,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::thread::ThreadId;

/// A lock this process holds through a Python guard: which mutex, and the thread
/// that took it. A second `lock` of the same mutex on that thread would wait for
/// itself for ever (the lock belongs to the process, and is not re-entrant).
struct Held {
    guard: u64,
    name: String,
    thread: ThreadId,
}

static HELD: std::sync::Mutex<Vec<Held>> = std::sync::Mutex::new(Vec::new());
static NEXT_GUARD: AtomicU64 = AtomicU64::new(1);

fn held() -> std::sync::MutexGuard<'static, Vec<Held>> {
    // Every change is one push or removal: a poisoned lock is still consistent.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

fn held_by(name: &str, thread: ThreadId) -> bool {
    held().iter().any(|h| h.name == name && h.thread == thread)
}

fn forget_guard(guard: u64) {
    held().retain(|h| h.guard != guard);
}

/// A named mutex shared between processes. If the process holding it dies, the
/// next `lock` raises `OwnerDied`, whose `guard` holds the lock.
///
/// ```python
/// m = shmkit.Mutex.create_or_open("config-lock")
/// with m:                   # or: with m.lock(timeout=1.0):
///     ...
/// ```
///
/// It is not re-entrant: locking it again on the thread that holds it raises
/// `Busy` (it would wait for itself for ever). `close()` from another thread
/// ends a `lock` waiting there (it raises `Closed`).
#[pyclass(name = "Mutex", module = "shmkit", frozen)]
pub struct PyMutex {
    shared: Shared<Mutex<()>>,
    wakeup: Wakeup,
    /// The waits of `lock_async` coroutines.
    ops: Ops<LockResult<ArcMutexGuard<()>>>,
    created: bool,
    /// Guards taken by `with mutex:` blocks, innermost last.
    entered: std::sync::Mutex<Vec<Py<PyMutexGuard>>>,
}

/// Proof of holding a [`PyMutex`]; `unlock()` or the end of a `with` block
/// releases it, and so does its deletion, on any thread.
#[pyclass(name = "MutexGuard", module = "shmkit", frozen)]
pub struct PyMutexGuard {
    held: std::sync::Mutex<Option<ArcMutexGuard<()>>>,
    name: String,
    /// Its entry in [`HELD`].
    id: u64,
}

fn wrap_mutex(m: Mutex<()>) -> PyMutex {
    let name = m.name().to_owned();
    PyMutex {
        created: m.created(),
        shared: Shared::new(&name, m.interrupter(), m),
        wakeup: Wakeup::new(),
        ops: Ops::new(),
        entered: std::sync::Mutex::new(Vec::new()),
    }
}

impl PyMutex {
    /// Locks, waiting up to `timeout`; `Ok(None)` if `try_only` and busy.
    fn acquire(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        try_only: bool,
    ) -> PyResult<Option<Py<PyMutexGuard>>> {
        let name = self.shared.name();
        let deadline = Deadline::after(timeout_arg(py, name, timeout)?);
        let mutex = self.shared.get(py)?;
        let me = std::thread::current().id();
        let taken = |r: shmkit::sync::LockResult<ArcMutexGuard<()>>| match r {
            Ok(g) => Ok((g, false)),
            Err(LockError::OwnerDied(g)) => Ok((g, true)),
            Err(LockError::Failed(e)) => Err(e),
        };
        let (guard, died) = if try_only {
            match taken(mutex.try_lock_arc()) {
                Ok(locked) => locked,
                Err(e) if e.is_would_block() || e.is_timeout() => return Ok(None),
                Err(e) => return Err(e).py_err(py),
            }
        } else {
            if held_by(name, me) {
                return Err(busy(
                    py,
                    name,
                    "already locked by this thread (a nested `with` or a second lock()); \
                     the mutex is not re-entrant: release the first guard before locking again",
                ));
            }
            wait(py, deadline, |slice| taken(mutex.lock_arc_timeout(slice)))?
        };
        self.guard(py, guard, died).map(Some)
    }

    /// A Python guard for a lock taken on this thread; `OwnerDied` (holding it)
    /// if `died`.
    fn guard(
        &self,
        py: Python<'_>,
        guard: ArcMutexGuard<()>,
        died: bool,
    ) -> PyResult<Py<PyMutexGuard>> {
        let name = self.shared.name();
        let id = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
        held().push(Held {
            guard: id,
            name: name.to_owned(),
            thread: std::thread::current().id(),
        });
        let guard = Py::new(
            py,
            PyMutexGuard {
                held: std::sync::Mutex::new(Some(guard)),
                name: name.to_owned(),
                id,
            },
        )?;
        if died {
            let message = shmkit::Error::OwnerDied {
                object: name.into(),
            }
            .to_string();
            return Err(new_error_with(
                py,
                "OwnerDied",
                message,
                &[("guard", guard.into_any())],
            ));
        }
        Ok(guard)
    }

    fn entered(&self) -> std::sync::MutexGuard<'_, Vec<Py<PyMutexGuard>>> {
        // One push or pop at a time: a poisoned lock is still consistent.
        self.entered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyMutex {
    /// Creates mutex `name`; `AlreadyExists` if the name is taken.
    #[staticmethod]
    fn create(py: Python<'_>, name: &str) -> PyResult<PyMutex> {
        py.detach(|| Mutex::create(name, ()))
            .py_err(py)
            .map(wrap_mutex)
    }

    /// Opens mutex `name`; `NotFound` if there is none.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<PyMutex> {
        py.detach(|| Mutex::open(name)).py_err(py).map(wrap_mutex)
    }

    /// Opens mutex `name`, creating it if needed.
    #[staticmethod]
    fn create_or_open(py: Python<'_>, name: &str) -> PyResult<PyMutex> {
        py.detach(|| Mutex::create_or_open(name, ()))
            .py_err(py)
            .map(wrap_mutex)
    }

    /// Locks it, waiting up to `timeout` seconds (`None`: forever) and raising
    /// `Timeout` after that. Raises `OwnerDied` (lock held, in its `guard`) if its
    /// last holder died holding it, `Busy` if this thread holds it already. The
    /// GIL is released while waiting, and Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyMutexGuard>> {
        let guard = self.acquire(py, timeout, false)?;
        guard.ok_or_else(|| new_error(py, "Error", "lock returned nothing".into()))
    }

    /// Locks it if it is free: a guard, or `None` if a holder (this thread
    /// included) has it.
    fn try_lock(&self, py: Python<'_>) -> PyResult<Option<Py<PyMutexGuard>>> {
        self.acquire(py, None, true)
    }

    /// A coroutine that locks it without blocking the event loop and returns
    /// the guard (`async with guard:` releases it at the end of the block).
    /// Raises `OwnerDied` as `lock` does, `Closed` if `close()` is called
    /// meanwhile. Cancel safe: the lock is taken only by the poll that returns
    /// the guard. Not re-entrant: a task awaiting a lock its own task holds
    /// waits for ever (bound it with `asyncio.wait_for`).
    fn lock_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "wait", (slf,))
    }

    /// The descriptor the `*_async` coroutines wait on (an eventfd on Linux),
    /// readable when a wait they registered may have ended. Made on first use,
    /// it lives as long as this object.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.shared.get(py)?;
        self.wakeup.fileno(py, self.shared.name())
    }

    fn _clear_wakeup(&self) {
        self.wakeup.clear();
    }

    fn _wake(&self) {
        self.wakeup.notify();
    }

    /// Starts a `lock_async` wait; the token names it.
    fn _start_wait(&self, py: Python<'_>) -> PyResult<u64> {
        let mutex = self.shared.get(py)?;
        Ok(self.ops.start(async move { mutex.lock_arc_async().await }))
    }

    /// Polls wait `token`: the guard, or `None` (still waiting).
    fn _poll_wait(&self, py: Python<'_>, token: u64) -> PyResult<Option<Py<PyMutexGuard>>> {
        let name = self.shared.name();
        self.shared.get(py)?;
        let waker = self.wakeup.waker(name)?;
        match self.ops.poll(token, &waker) {
            None => Err(closed(py, name)),
            Some(Poll::Pending) => Ok(None),
            Some(Poll::Ready(Ok(g))) => self.guard(py, g, false).map(Some),
            Some(Poll::Ready(Err(LockError::OwnerDied(g)))) => self.guard(py, g, true).map(Some),
            Some(Poll::Ready(Err(LockError::Failed(e)))) => Err(e).py_err(py),
        }
    }

    /// Drops wait `token` (its coroutine was cancelled).
    fn _cancel_wait(&self, token: u64) {
        self.ops.cancel(token);
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        let guard = self.lock(py, None)?;
        self.entered().push(guard);
        Ok(())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let guard = self.entered().pop();
        if let Some(g) = guard {
            g.bind(py).get().unlock();
        }
        Ok(false)
    }

    /// The mutex's name.
    #[getter]
    fn name(&self) -> &str {
        self.shared.name()
    }

    /// Whether this process created it.
    #[getter]
    fn created(&self) -> bool {
        self.created
    }

    /// Closes this handle: a `lock` waiting on another thread ends with
    /// `Closed`, and so do later calls. Guards already taken still hold the
    /// lock until released; a `lock_async` awaiting it raises `Closed`.
    fn close(&self) {
        self.shared.close();
        self.ops.clear();
        self.wakeup.notify();
    }

    fn __repr__(&self) -> String {
        let closed = if self.shared.is_closed() {
            " (closed)"
        } else {
            ""
        };
        format!("<shmkit.Mutex {:?}{closed}>", self.shared.name())
    }
}

#[pymethods]
impl PyMutexGuard {
    /// Releases the lock (once; later calls do nothing).
    fn unlock(&self) {
        let guard = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        if guard.is_some() {
            forget_guard(self.id);
        }
        drop(guard);
    }

    /// Declares the guarded data repaired after `OwnerDied`: later lockers are
    /// not told again.
    fn mark_consistent(&self, py: Python<'_>) -> PyResult<()> {
        match self.held.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(g) => {
                g.mark_consistent();
                Ok(())
            }
            None => Err(new_error(
                py,
                "Error",
                format!("{}: the guard was already unlocked", self.name),
            )),
        }
    }

    /// Whether this guard still holds the lock.
    #[getter]
    fn locked(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.unlock();
        false
    }

    /// `async with guard:` (from `lock_async`): the block runs holding the lock.
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "ready", (slf,))
    }

    /// Releases the lock at the end of an `async with` block.
    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.unlock();
        coroutine(py, "ready", (false,))
    }

    fn __repr__(&self) -> String {
        let state = if self.locked() { "held" } else { "released" };
        format!("<shmkit.MutexGuard {:?} ({state})>", self.name)
    }
}

impl Drop for PyMutexGuard {
    fn drop(&mut self) {
        self.unlock();
    }
}

///
/// `close()` from another thread ends a `wait` waiting there (it raises
/// `Closed`).
#[pyclass(name = "Semaphore", module = "shmkit", frozen)]
pub struct PySemaphore {
    shared: Shared<Semaphore>,
    wakeup: Wakeup,
    /// The waits of `wait_async` coroutines.
    ops: Ops<shmkit::Result<()>>,
}

fn wrap_semaphore(s: Semaphore) -> PySemaphore {
    let name = s.name().to_owned();
    PySemaphore {
        shared: Shared::new(&name, s.interrupter(), s),
        wakeup: Wakeup::new(),
        ops: Ops::new(),
    }
}

fn count_arg(py: Python<'_>, name: &str, what: &str, v: i64) -> PyResult<u32> {
    u32::try_from(v).map_err(|_| {
        invalid(
            py,
            name,
            format!("{what} must be between 0 and {}, not {v}", u32::MAX),
        )
    })
}

#[pymethods]
impl PySemaphore {
    /// Creates semaphore `name` with count `initial` and maximum `max`.
    #[staticmethod]
    #[pyo3(signature = (name, initial = 0, max = SEMAPHORE_MAX as i64))]
    fn create(py: Python<'_>, name: &str, initial: i64, max: i64) -> PyResult<PySemaphore> {
        let (i, m) = (
            count_arg(py, name, "initial", initial)?,
            count_arg(py, name, "max", max)?,
        );
        let inner = py.detach(|| Semaphore::create(name, i, m)).py_err(py)?;
        Ok(wrap_semaphore(inner))
    }

    /// Opens semaphore `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<PySemaphore> {
        let inner = py.detach(|| Semaphore::open(name)).py_err(py)?;
        Ok(wrap_semaphore(inner))
    }

    /// Opens semaphore `name`, creating it with `initial` and `max` if needed.
    #[staticmethod]
    #[pyo3(signature = (name, initial = 0, max = SEMAPHORE_MAX as i64))]
    fn create_or_open(py: Python<'_>, name: &str, initial: i64, max: i64) -> PyResult<PySemaphore> {
        let (i, m) = (
            count_arg(py, name, "initial", initial)?,
            count_arg(py, name, "max", max)?,
        );
        let inner = py
            .detach(|| Semaphore::create_or_open(name, i, m))
            .py_err(py)?;
        Ok(wrap_semaphore(inner))
    }

    /// Takes one unit, waiting up to `timeout` seconds (`None`: forever); raises
    /// `Timeout` after that, or `Closed` if `close()` is called meanwhile.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = Deadline::after(timeout_arg(py, self.shared.name(), timeout)?);
        let sem = self.shared.get(py)?;
        wait(py, deadline, |slice| sem.wait_timeout(slice))
    }

    /// A coroutine that takes one unit, waiting without blocking the event
    /// loop; `Closed` if `close()` is called meanwhile. Cancel safe: a unit is
    /// taken only by the poll that completes the wait.
    fn wait_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "wait", (slf,))
    }

    /// The descriptor the `*_async` coroutines wait on (an eventfd on Linux),
    /// readable when a wait they registered may have ended. Made on first use,
    /// it lives as long as this object.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.shared.get(py)?;
        self.wakeup.fileno(py, self.shared.name())
    }

    fn _clear_wakeup(&self) {
        self.wakeup.clear();
    }

    fn _wake(&self) {
        self.wakeup.notify();
    }

    /// Starts a `wait_async` wait; the token names it.
    fn _start_wait(&self, py: Python<'_>) -> PyResult<u64> {
        let sem = self.shared.get(py)?;
        Ok(self.ops.start(async move { sem.wait_async().await }))
    }

    /// Polls wait `token`: `True` once a unit is taken, `None` while waiting.
    fn _poll_wait(&self, py: Python<'_>, token: u64) -> PyResult<Option<bool>> {
        poll_shared(py, &self.shared, &self.wakeup, &self.ops, token)
    }

    /// Drops wait `token` (its coroutine was cancelled).
    fn _cancel_wait(&self, token: u64) {
        self.ops.cancel(token);
    }

    /// Takes one unit if one is free; whether it did.
    fn try_wait(&self, py: Python<'_>) -> PyResult<bool> {
        self.shared.get(py)?.try_wait().py_err(py)
    }

    /// Adds `n` units, waking up to `n` waiters; returns the previous count.
    /// `AboveMaximum` (and no change) if the count would pass the maximum.
    #[pyo3(signature = (n = 1))]
    fn release(&self, py: Python<'_>, n: i64) -> PyResult<u32> {
        let n = count_arg(py, self.shared.name(), "release count", n)?;
        self.shared.get(py)?.release(n).py_err(py)
    }

    /// The current count (it may change at once).
    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.shared.get(py)?.count())
    }

    /// The largest count allowed.
    #[getter]
    fn max_count(&self, py: Python<'_>) -> PyResult<u32> {
        self.shared.get(py)?.max_count().py_err(py)
    }

    /// The semaphore's name.
    #[getter]
    fn name(&self) -> &str {
        self.shared.name()
    }

    /// Closes this handle: a `wait` waiting on another thread ends with
    /// `Closed`, and so do a `wait_async` awaiting it and later calls.
    fn close(&self) {
        self.shared.close();
        self.ops.clear();
        self.wakeup.notify();
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.wait(py, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py, 1)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.shared.get_quietly() {
            Some(s) => format!("<shmkit.Semaphore {:?} count={}>", s.name(), s.count()),
            None => format!("<shmkit.Semaphore {:?} (closed)>", self.shared.name()),
        }
    }
}

/// A named event: `set` it in one process, `wait` for it in others.
///
/// `auto_reset=True`: each `set` lets one `wait` through. Otherwise it stays set
/// until `reset`.
///
/// `close()` from another thread ends a `wait` waiting there (it raises
/// `Closed`).
#[pyclass(name = "Event", module = "shmkit", frozen)]
pub struct PyEvent {
    shared: Shared<Event>,
    wakeup: Wakeup,
    /// The waits of `wait_async` coroutines.
    ops: Ops<shmkit::Result<()>>,
}

fn wrap_event(e: Event) -> PyEvent {
    let name = e.name().to_owned();
    PyEvent {
        shared: Shared::new(&name, e.interrupter(), e),
        wakeup: Wakeup::new(),
        ops: Ops::new(),
    }
}

/// Polls wait `token` of a semaphore or event: `True` once done, `None` while
/// waiting, `Closed` once closed.
fn poll_shared<T: Send + Sync>(
    py: Python<'_>,
    shared: &Shared<T>,
    wakeup: &Wakeup,
    ops: &Ops<shmkit::Result<()>>,
    token: u64,
) -> PyResult<Option<bool>> {
    let name = shared.name();
    shared.get(py)?;
    let waker = wakeup.waker(name)?;
    match ops.poll(token, &waker) {
        None => Err(closed(py, name)),
        Some(Poll::Pending) => Ok(None),
        Some(Poll::Ready(done)) => done.py_err(py).map(|()| Some(true)),
    }
}

fn mode(auto_reset: bool) -> EventMode {
    if auto_reset {
        EventMode::AutoReset
    } else {
        EventMode::ManualReset
    }
}

#[pymethods]
impl PyEvent {
    /// Creates event `name`.
    #[staticmethod]
    #[pyo3(signature = (name, *, auto_reset = false, initially_set = false))]
    fn create(
        py: Python<'_>,
        name: &str,
        auto_reset: bool,
        initially_set: bool,
    ) -> PyResult<PyEvent> {
        let inner = py
            .detach(|| Event::create(name, mode(auto_reset), initially_set))
            .py_err(py)?;
        Ok(wrap_event(inner))
    }

    /// Opens event `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<PyEvent> {
        let inner = py.detach(|| Event::open(name)).py_err(py)?;
        Ok(wrap_event(inner))
    }

    /// Opens event `name`, creating it if needed.
    #[staticmethod]
    #[pyo3(signature = (name, *, auto_reset = false, initially_set = false))]
    fn create_or_open(
        py: Python<'_>,
        name: &str,
        auto_reset: bool,
        initially_set: bool,
    ) -> PyResult<PyEvent> {
        let inner = py
            .detach(|| Event::create_or_open(name, mode(auto_reset), initially_set))
            .py_err(py)?;
        Ok(wrap_event(inner))
    }

    /// Sets it, letting waiters through.
    fn set(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.get(py)?.set().py_err(py)
    }

    /// Unsets it.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.get(py)?.reset().py_err(py)
    }

    /// Whether it is set now.
    fn is_set(&self, py: Python<'_>) -> PyResult<bool> {
        self.shared.get(py)?.is_set().py_err(py)
    }

    /// Waits until it is set, up to `timeout` seconds (`None`: forever); raises
    /// `Timeout` after that, or `Closed` if `close()` is called meanwhile.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = Deadline::after(timeout_arg(py, self.shared.name(), timeout)?);
        let ev = self.shared.get(py)?;
        wait(py, deadline, |slice| ev.wait_timeout(slice))
    }

    /// A coroutine that waits until the event is set (taking the signal of an
    /// auto-reset event), without blocking the event loop; `Closed` if
    /// `close()` is called meanwhile. Cancel safe: an auto-reset signal is
    /// taken only by the poll that completes the wait.
    fn wait_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf.py(), "wait", (slf,))
    }

    /// The descriptor the `*_async` coroutines wait on (an eventfd on Linux),
    /// readable when a wait they registered may have ended. Made on first use,
    /// it lives as long as this object.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.shared.get(py)?;
        self.wakeup.fileno(py, self.shared.name())
    }

    fn _clear_wakeup(&self) {
        self.wakeup.clear();
    }

    fn _wake(&self) {
        self.wakeup.notify();
    }

    /// Starts a `wait_async` wait; the token names it.
    fn _start_wait(&self, py: Python<'_>) -> PyResult<u64> {
        let ev = self.shared.get(py)?;
        Ok(self.ops.start(async move { ev.wait_async().await }))
    }

    /// Polls wait `token`: `True` once the event was seen set, `None` while
    /// waiting.
    fn _poll_wait(&self, py: Python<'_>, token: u64) -> PyResult<Option<bool>> {
        poll_shared(py, &self.shared, &self.wakeup, &self.ops, token)
    }

    /// Drops wait `token` (its coroutine was cancelled).
    fn _cancel_wait(&self, token: u64) {
        self.ops.cancel(token);
    }

    /// Whether each `set` lets only one `wait` through.
    #[getter]
    fn auto_reset(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.shared.get(py)?.mode().py_err(py)? == EventMode::AutoReset)
    }

    /// The event's name.
    #[getter]
    fn name(&self) -> &str {
        self.shared.name()
    }

    /// Closes this handle: a `wait` waiting on another thread ends with
    /// `Closed`, and so do a `wait_async` awaiting it and later calls.
    fn close(&self) {
        self.shared.close();
        self.ops.clear();
        self.wakeup.notify();
    }

    fn __repr__(&self) -> String {
        let closed = if self.shared.is_closed() {
            " (closed)"
        } else {
            ""
        };
        format!("<shmkit.Event {:?}{closed}>", self.shared.name())
    }
}
