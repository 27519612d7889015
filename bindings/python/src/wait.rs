//! Blocking calls from Python: timeouts given in seconds, waits that release the
//! GIL and notice Ctrl-C.
//!
//! Python runs signal handlers (Ctrl-C's `KeyboardInterrupt`) only on the main
//! thread, between bytecodes: a thread blocked in Rust must come back now and
//! then to let them run. Two ways, by what a wait may lose:
//! - [`wait`]: calls that lose nothing when they time out (a receive keeps a
//!   half-assembled message, a lock or a one-record send either happened or did
//!   not) wait in slices of [`SLICE`], checking for signals in between.
//! - [`wait_whole`]: a call that would lose its progress (a fragmented send gives
//!   up the fragments it sent when it times out) runs once, for its whole
//!   timeout, on a helper thread; the calling thread waits for it in slices and,
//!   on a signal, ends it through the object's [`Interrupter`].

use crate::errors::{invalid, to_py};
use pyo3::prelude::*;
use shmkit::{Error, Interrupter};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest a wait sleeps without the GIL before it checks for signals: the
/// bound on how late Ctrl-C is noticed.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

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

/// When a call that may wait must end: its timeout, counted from its start (a
/// call may spend part of it waiting for another thread to finish with the
/// object, and the rest in shmkit).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    start: Instant,
    timeout: Option<Duration>,
}

impl Deadline {
    /// `timeout` from now (`None`: never).
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline {
            start: Instant::now(),
            timeout,
        }
    }

    /// Time left (`None`: no limit).
    pub(crate) fn left(&self) -> Option<Duration> {
        self.timeout.map(|t| t.saturating_sub(self.start.elapsed()))
    }

    /// The error for this deadline having passed while waiting to `op` on
    /// `object`: it names the whole timeout.
    pub(crate) fn expired(&self, object: &str, op: &'static str) -> Error {
        Error::Timeout {
            object: object.into(),
            op,
            after: self.timeout.unwrap_or_default(),
        }
    }
}

impl Deadline {
    /// `e`, with a timeout restated as this whole one (a call given only the time
    /// left reports that).
    pub(crate) fn restate(&self, e: Error) -> Error {
        match e {
            Error::Timeout { object, op, .. } => self.expired(&object, op),
            e => e,
        }
    }
}

/// Runs `attempt` with the GIL released until it succeeds, fails, or `deadline`
/// passes, giving it at most [`SLICE`] each time so that signal handlers run in
/// between. `attempt` gets the time it may wait and reports running out of it as
/// [`Error::Timeout`]; the exception raised then names the whole timeout. Only
/// for calls that lose nothing when they time out.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    deadline: Deadline,
    mut attempt: impl FnMut(Duration) -> shmkit::Result<T> + Send,
) -> PyResult<T> {
    loop {
        let left = deadline.left();
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        match py.detach(|| attempt(slice)) {
            Err(Error::Timeout { object, op, .. }) => {
                if left.is_some_and(|l| l <= slice) {
                    return Err(to_py(py, deadline.expired(&object, op)));
                }
                py.check_signals()?;
            }
            done => return done.map_err(|e| to_py(py, e)),
        }
    }
}

/// Runs `call` once on a helper thread, while this thread waits for it with the
/// GIL released and runs signal handlers every [`SLICE`]. If one raises (Ctrl-C),
/// `interrupter` ends the call (its progress is lost: the user asked to stop),
/// and the handler's exception is raised once the call has returned.
///
/// For calls that would lose their progress if cut into slices. `interrupter`
/// must be the one of the object `call` uses, used by nobody else meanwhile (the
/// caller holds the object exclusively): it is cleared afterwards.
pub(crate) fn wait_whole<T: Send>(
    py: Python<'_>,
    interrupter: &Interrupter,
    call: impl FnOnce() -> shmkit::Result<T> + Send,
) -> PyResult<T> {
    let result = std::thread::scope(|scope| {
        let (done_tx, mut done_rx) = mpsc::sync_channel::<()>(1);
        let helper = scope.spawn(move || {
            let result = call();
            // The receiver may be gone only if this thread panicked.
            let _ = done_tx.send(());
            result
        });
        let mut raised = None;
        loop {
            let (rx, finished) = py.detach(move || {
                let finished = !matches!(
                    done_rx.recv_timeout(SLICE),
                    Err(mpsc::RecvTimeoutError::Timeout)
                );
                (done_rx, finished)
            });
            done_rx = rx;
            if finished {
                break;
            }
            if let Err(e) = py.check_signals() {
                interrupter.interrupt();
                raised = Some(e);
                break;
            }
        }
        let joined = py.detach(move || helper.join());
        if raised.is_some() {
            // Only this call used the interrupter (see above): later calls on the
            // object may wait again.
            interrupter.clear();
        }
        match joined {
            Ok(result) => raised.map_or(Ok(result), Err),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    match result {
        Ok(done) => done.map_err(|e| to_py(py, e)),
        Err(signal) => Err(signal),
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
