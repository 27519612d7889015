//! shmkit errors as Python exceptions.
//!
//! The exception classes are defined in Python (`shmkit/_errors.py`) so that they
//! can also derive from the built-in ones (`NotFound` is a `FileNotFoundError`);
//! this module raises them.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use shmkit::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A new exception of class `class` (a name in `shmkit._errors`) with `message`.
pub(crate) fn new_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || {
            PyModule::import(py, "shmkit._errors").map(Bound::unbind)
        })?;
        let class = module.bind(py).getattr(class)?;
        let value = class.call1((message,))?;
        Ok(PyErr::from_value(value))
    })();
    made.unwrap_or_else(|e| e)
}

/// Like [`new_error`], with attributes set on the exception value.
pub(crate) fn new_error_with(
    py: Python<'_>,
    class: &str,
    message: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyErr {
    let err = new_error(py, class, message);
    for (name, value) in attrs {
        if let Err(e) = err.value(py).setattr(*name, value) {
            return e;
        }
    }
    err
}

/// `shmkit.InvalidArgument` naming `object`.
pub(crate) fn invalid(py: Python<'_>, object: &str, reason: impl std::fmt::Display) -> PyErr {
    new_error(py, "InvalidArgument", format!("{object}: {reason}"))
}

/// `shmkit.Closed`: `object` was closed before this call.
pub(crate) fn closed(py: Python<'_>, object: &str) -> PyErr {
    new_error(py, "Closed", format!("{object}: closed"))
}

/// `shmkit.Busy` naming `object`.
pub(crate) fn busy(py: Python<'_>, object: &str, reason: impl std::fmt::Display) -> PyErr {
    new_error(py, "Busy", format!("{object}: {reason}"))
}

/// The exception class for a Rust error.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidName { .. } | Error::InvalidSize { .. } | Error::InvalidArgument { .. } => {
            "InvalidArgument"
        }
        Error::OutOfBounds { .. } => "OutOfBounds",
        Error::TooLong { .. } => "TooLong",
        Error::BufferTooSmall { .. } => "BufferTooSmall",
        Error::AboveMaximum { .. } => "AboveMaximum",
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::PermissionDenied { .. } | Error::ReadOnly { .. } | Error::Insecure { .. } => {
            "PermissionDenied"
        }
        Error::OutOfSpace { .. } => "OutOfSpace",
        Error::WrongKind { .. } | Error::Mismatch { .. } | Error::UnsupportedVersion { .. } => {
            "Mismatch"
        }
        Error::NotShmkit { .. }
        | Error::CorruptHeader { .. }
        | Error::CorruptState { .. }
        | Error::Decode { .. } => "Corrupt",
        Error::Truncated { .. } => "Truncated",
        Error::CreatorDied { .. } | Error::InitFailed { .. } | Error::InitTimeout { .. } => {
            "InitFailed"
        }
        Error::Timeout { .. } => "Timeout",
        Error::WouldBlock { .. } => "WouldBlock",
        Error::Disconnected { .. } => "Disconnected",
        Error::Lagged { .. } => "Lagged",
        Error::Lost { .. } => "Lost",
        Error::OwnerDied { .. } => "OwnerDied",
        Error::Occupied { .. } => "Occupied",
        Error::Unsupported { .. } => "Unsupported",
        // Python interrupts a call only to close its object (Ctrl-C raises
        // KeyboardInterrupt instead: see wait.rs).
        Error::Interrupted { .. } => "Closed",
        Error::Io { .. } => "Error",
        // A kind added to the core after this binding: tests/test_package.py
        // fails until it is mapped above.
        _ => "Error",
    }
}

/// The Python exception for a Rust error, with the same message.
pub(crate) fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Lagged { missed, .. } => {
            new_error_with(py, "Lagged", message, &[("missed", int(py, missed))])
        }
        Error::Lost { count, .. } => {
            new_error_with(py, "Lost", message, &[("count", int(py, count))])
        }
        Error::BufferTooSmall { len, .. } => {
            new_error_with(py, "BufferTooSmall", message, &[("needed", int(py, len))])
        }
        Error::Interrupted { object, op } => new_error(
            py,
            "Closed",
            format!("{object}: closed (by close() on another thread) while waiting to {op}"),
        ),
        e => new_error(py, class_of(&e), message),
    }
}

fn int(py: Python<'_>, v: u64) -> Py<PyAny> {
    let Ok(v) = v.into_pyobject(py);
    v.into_any().unbind()
}

/// `Result::map_err(to_py)` with the GIL token at hand.
pub(crate) trait IntoPyResult<T> {
    /// Converts the error into the matching Python exception.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for shmkit::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
