//! Cross-process `Mutex` (with owner-died), `Semaphore` and `Event`.

use crate::errors::{invalid, new_error, new_error_with, IntoPyResult};
use crate::wait::{timeout_arg, wait};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmkit::sync::{Event, EventMode, LockError, Mutex, MutexGuard, Semaphore, SEMAPHORE_MAX};
use std::sync::Arc;

type Guard<'a> = MutexGuard<'a, ()>;

self_cell::self_cell!(
    /// A lock held on a mutex, kept together with the mutex it borrows.
    struct HeldLock {
        owner: Arc<Mutex>,
        #[covariant]
        dependent: Guard,
    }
);

// SAFETY: the guard is `!Send` only to keep unlocking on the locking thread, as
// std's guards do; shmkit records a mutex's owner by process id (the state holds
// no thread id), so unlocking from another thread of the same process follows
// the protocol. Python code may drop a guard on any thread (the garbage
// collector does), and a guard that could not be released there would leave the
// mutex locked until the process exits.
unsafe impl Send for HeldLock {}

/// A named mutex shared between processes. If the process holding it dies, the
/// next `lock` raises `OwnerDied`, whose `guard` holds the lock.
///
/// ```python
/// m = shmkit.Mutex.create_or_open("config-lock")
/// with m:                   # or: with m.lock(timeout=1.0):
///     ...
/// ```
#[pyclass(name = "Mutex", module = "shmkit")]
pub struct PyMutex {
    inner: Arc<Mutex>,
    /// Guards taken by `with mutex:` blocks, innermost last.
    entered: std::sync::Mutex<Vec<Py<PyMutexGuard>>>,
}

/// Proof of holding a [`PyMutex`]; `unlock()` or the end of a `with` block
/// releases it, and so does its deletion.
#[pyclass(name = "MutexGuard", module = "shmkit")]
pub struct PyMutexGuard {
    held: Option<HeldLock>,
    name: String,
}

fn wrap_mutex(m: Mutex) -> PyMutex {
    PyMutex {
        inner: Arc::new(m),
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
        let name = self.inner.name().to_owned();
        let timeout = if try_only {
            Some(std::time::Duration::ZERO)
        } else {
            timeout_arg(py, &name, timeout)?
        };
        let mutex = &self.inner;
        let locked = wait(py, timeout, |slice| {
            let mut died = false;
            let held = HeldLock::try_new(mutex.clone(), |m| match m.lock_timeout(slice) {
                Ok(g) => Ok(g),
                Err(LockError::OwnerDied(g)) => {
                    died = true;
                    Ok(g)
                }
                Err(LockError::Failed(e)) => Err(e),
            })?;
            Ok((held, died))
        });
        let (held, died) = match locked {
            Ok(l) => l,
            Err(e) if try_only && e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let guard = Py::new(
            py,
            PyMutexGuard {
                held: Some(held),
                name: name.clone(),
            },
        )?;
        if died {
            let message = shmkit::Error::OwnerDied {
                object: name.as_str().into(),
            }
            .to_string();
            return Err(new_error_with(
                py,
                "OwnerDied",
                message,
                &[("guard", guard.into_any())],
            ));
        }
        Ok(Some(guard))
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
    /// last holder died holding it. The GIL is released while waiting, and
    /// Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyMutexGuard>> {
        let guard = self.acquire(py, timeout, false)?;
        guard.ok_or_else(|| new_error(py, "Error", "lock returned nothing".into()))
    }

    /// Locks it if it is free: a guard, or `None` if another holder has it.
    fn try_lock(&self, py: Python<'_>) -> PyResult<Option<Py<PyMutexGuard>>> {
        self.acquire(py, None, true)
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let guard = slf.borrow().lock(py, None)?;
        let this = slf.borrow();
        let mut entered = this.entered.lock().unwrap_or_else(|e| e.into_inner());
        entered.push(guard);
        Ok(())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let guard = self.entered.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(g) = guard {
            g.bind(py).borrow_mut().unlock();
        }
        Ok(false)
    }

    /// The mutex's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Whether this process created it.
    #[getter]
    fn created(&self) -> bool {
        self.inner.created()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Mutex {:?}>", self.inner.name())
    }
}

#[pymethods]
impl PyMutexGuard {
    /// Releases the lock (once; later calls do nothing).
    fn unlock(&mut self) {
        self.held = None;
    }

    /// Declares the guarded data repaired after `OwnerDied`: later lockers are
    /// not told again.
    fn mark_consistent(&mut self, py: Python<'_>) -> PyResult<()> {
        match &mut self.held {
            Some(h) => {
                h.with_dependent_mut(|_, g| g.mark_consistent());
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
        self.held.is_some()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) -> bool {
        self.unlock();
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.held.is_some() {
            "held"
        } else {
            "released"
        };
        format!("<shmkit.MutexGuard {:?} ({state})>", self.name)
    }
}

/// A counting semaphore shared between processes.
///
/// ```python
/// slots = shmkit.Semaphore.create_or_open("slots", initial=4)
/// slots.wait(timeout=2.0)
/// slots.release()
/// ```
#[pyclass(name = "Semaphore", module = "shmkit")]
pub struct PySemaphore {
    inner: Semaphore,
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
        Ok(PySemaphore { inner })
    }

    /// Opens semaphore `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<PySemaphore> {
        let inner = py.detach(|| Semaphore::open(name)).py_err(py)?;
        Ok(PySemaphore { inner })
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
        Ok(PySemaphore { inner })
    }

    /// Takes one unit, waiting up to `timeout` seconds (`None`: forever); raises
    /// `Timeout` after that.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = timeout_arg(py, self.inner.name(), timeout)?;
        let sem = &self.inner;
        wait(py, t, |slice| sem.wait_timeout(slice))
    }

    /// Takes one unit if one is free; whether it did.
    fn try_wait(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.try_wait().py_err(py)
    }

    /// Adds `n` units, waking up to `n` waiters; returns the previous count.
    /// `AboveMaximum` (and no change) if the count would pass the maximum.
    #[pyo3(signature = (n = 1))]
    fn release(&self, py: Python<'_>, n: i64) -> PyResult<u32> {
        let n = count_arg(py, self.inner.name(), "release count", n)?;
        self.inner.release(n).py_err(py)
    }

    /// The current count (it may change at once).
    #[getter]
    fn count(&self) -> u32 {
        self.inner.count()
    }

    /// The largest count allowed.
    #[getter]
    fn max_count(&self, py: Python<'_>) -> PyResult<u32> {
        self.inner.max_count().py_err(py)
    }

    /// The semaphore's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.borrow().wait(slf.py(), None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py, 1)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Semaphore {:?} count={}>",
            self.inner.name(),
            self.inner.count()
        )
    }
}

/// A named event: `set` it in one process, `wait` for it in others.
///
/// `auto_reset=True`: each `set` lets one `wait` through. Otherwise it stays set
/// until `reset`.
#[pyclass(name = "Event", module = "shmkit")]
pub struct PyEvent {
    inner: Event,
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
        Ok(PyEvent { inner })
    }

    /// Opens event `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<PyEvent> {
        let inner = py.detach(|| Event::open(name)).py_err(py)?;
        Ok(PyEvent { inner })
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
        Ok(PyEvent { inner })
    }

    /// Sets it, letting waiters through.
    fn set(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.set().py_err(py)
    }

    /// Unsets it.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.reset().py_err(py)
    }

    /// Whether it is set now.
    fn is_set(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.is_set().py_err(py)
    }

    /// Waits until it is set, up to `timeout` seconds (`None`: forever); raises
    /// `Timeout` after that.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = timeout_arg(py, self.inner.name(), timeout)?;
        let ev = &self.inner;
        wait(py, t, |slice| ev.wait_timeout(slice))
    }

    /// Whether each `set` lets only one `wait` through.
    #[getter]
    fn auto_reset(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.inner.mode().py_err(py)? == EventMode::AutoReset)
    }

    /// The event's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Event {:?}>", self.inner.name())
    }
}
