//! Blocking calls from Python: timeouts given in seconds, waits that release the
//! GIL and wake up often enough to notice Ctrl-C.

use crate::errors::{invalid, to_py};
use pyo3::prelude::*;
use shmkit::Error;
use std::time::{Duration, Instant};

/// The longest a wait sleeps without the GIL before it checks for signals: the
/// bound on how late Ctrl-C is noticed.
const SLICE: Duration = Duration::from_millis(50);

/// Messages at least this long are copied with the GIL released, so that other
/// Python threads run meanwhile; shorter ones are copied faster than the GIL can
/// be handed over and back.
pub(crate) const LARGE: usize = 64 * 1024;

/// A timeout argument: `None` waits forever, a number is seconds (0 does not wait).
pub(crate) fn timeout_arg(
    py: Python<'_>,
    object: &str,
    seconds: Option<f64>,
) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
            invalid(
                py,
                object,
                format!("timeout must be a number of seconds >= 0, not {s}"),
            )
        }),
    }
}

/// Runs `attempt` with the GIL released until it succeeds, fails, or `timeout`
/// passes, giving it at most [`SLICE`] each time so that signal handlers (Ctrl-C's
/// `KeyboardInterrupt`) run in between. `attempt` gets the time it may wait and
/// reports running out of it as [`Error::Timeout`]; the exception raised then
/// names the whole timeout, not the last slice.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> shmkit::Result<T> + Send,
) -> PyResult<T> {
    let start = Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        match py.detach(|| attempt(slice)) {
            Err(Error::Timeout { object, op, .. }) => {
                if left.is_some_and(|l| l <= slice) {
                    let after = timeout.unwrap_or_default();
                    return Err(to_py(py, Error::Timeout { object, op, after }));
                }
                py.check_signals()?;
            }
            done => return done.map_err(|e| to_py(py, e)),
        }
    }
}

/// A raw pointer that may cross into a closure run without the GIL (on the same
/// thread: `Python::detach` runs its closure where it is called).
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: only used to carry a pointer into `Python::detach`, which runs the
// closure on the calling thread before returning; whoever dereferences it
// answers for the pointee's validity, as they would without the wrapper.
unsafe impl<T> Send for SendPtr<T> {}
