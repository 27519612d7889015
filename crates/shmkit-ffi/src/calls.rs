//! How calls on one handle share it, and how closing a handle ends them.
//!
//! - A channel endpoint takes `&mut self` in the core, so the calls on its handle
//!   run one at a time ([`Serial`]). A call waits for the handle with the same
//!   deadline as for its own wait, so its timeout bounds the whole call; a call
//!   made on a handle that the same thread is already in (from a callback) is
//!   refused with `SHMKIT_ERR_BUSY` instead of waiting on itself.
//! - A mutex, semaphore or event handle lets calls run side by side ([`Gate`]
//!   only counts them).
//! - Closing either kind refuses new calls, interrupts the calls blocked on the
//!   object (they return `SHMKIT_ERR_CLOSED`), waits until they have left and
//!   drops the object, so that a role it held (receiver, publisher, server...) or
//!   a lock is free when the close returns.
//! - Both keep the handle's [`Readiness`](crate::pollable::Readiness), made when
//!   the handle is first made pollable, and make it ready for good on close.

use crate::pollable::{Lazy, Readiness};
use crate::status::{shmkit_status::*, Failure};
use shmkit::Interrupter;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a call may wait, from a C timeout in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// 0: not at all.
    Now,
    /// Positive: until then.
    Until(Instant),
    /// Negative (`SHMKIT_FOREVER`), or too far to represent.
    Forever,
}

impl Wait {
    /// The deadline of a call starting now.
    pub(crate) fn from_ms(ms: i64) -> Wait {
        match u64::try_from(ms) {
            Err(_) => Wait::Forever,
            Ok(0) => Wait::Now,
            Ok(ms) => Instant::now()
                .checked_add(Duration::from_millis(ms))
                .map_or(Wait::Forever, Wait::Until),
        }
    }

    /// What is left of it: `None` forever, zero for [`Wait::Now`] (and for a
    /// deadline already passed, which the core's `*_timeout` calls then report as
    /// a timeout after one look).
    pub(crate) fn left(self) -> Option<Duration> {
        match self {
            Wait::Now => Some(Duration::ZERO),
            Wait::Until(t) => Some(t.saturating_duration_since(Instant::now())),
            Wait::Forever => None,
        }
    }
}

/// A number naming the calling thread among the live ones: the address of a
/// thread-local without a destructor, which is readable at any time (even in a
/// thread-exit destructor) and never 0.
pub(crate) fn this_thread() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| m as *const u8 as usize)
}

fn closed_failure(what: &str) -> Failure {
    Failure::new(
        SHMKIT_ERR_CLOSED,
        format!("{what}: the handle was closed while this call was waiting for it"),
    )
}

/// An object whose calls run one at a time, closed from any thread.
pub(crate) struct Serial<T> {
    /// Names the object in messages.
    what: String,
    /// `None` once closed and dropped.
    state: parking_lot::Mutex<Option<T>>,
    /// `this_thread()` of the thread in a call, 0 if none; only the thread in
    /// the call writes its own number, so a thread that reads its own number here
    /// is in a call on this handle.
    holder: AtomicUsize,
    closed: AtomicBool,
    /// Ends the object's blocked calls when the handle is closed.
    interrupter: Option<Interrupter>,
    /// Once the handle is pollable.
    ready: Lazy,
    /// A pollable handle's try call found the handle in use by another thread:
    /// that call makes the handle ready when it ends (the try could not arm it).
    contended: AtomicBool,
}

/// A call in progress on a [`Serial`]: the object, exclusively.
pub(crate) struct Call<'a, T> {
    serial: &'a Serial<T>,
    /// `None` only while the call ends.
    state: Option<parking_lot::MutexGuard<'a, Option<T>>>,
}

impl<T> Serial<T> {
    pub(crate) fn new(
        what: impl Into<String>,
        object: T,
        interrupter: Option<Interrupter>,
    ) -> Self {
        Serial {
            what: what.into(),
            state: parking_lot::Mutex::new(Some(object)),
            holder: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            interrupter,
            ready: Lazy::default(),
            contended: AtomicBool::new(false),
        }
    }

    /// Names the object in messages.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// Whether the handle was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// What ends the object's blocked calls when the handle is closed.
    pub(crate) fn interrupter(&self) -> Option<&Interrupter> {
        self.interrupter.as_ref()
    }

    /// The handle's readiness, made now if needed: from now on its try calls
    /// poll (see `pollable.rs`).
    pub(crate) fn readiness(&self) -> Result<Arc<Readiness>, Failure> {
        self.ready
            .get_or_make(|| self.closed.load(SeqCst))
            .map(Arc::clone)
    }

    /// The readiness, if the handle is pollable.
    pub(crate) fn polled(&self) -> Option<&Arc<Readiness>> {
        self.ready.get()
    }

    /// Starts a call: waits for the calls before it on other threads, until
    /// `wait`'s deadline. `now` is the status when `wait` is [`Wait::Now`] and
    /// the handle is in use (what the call itself returns when it cannot proceed
    /// at once).
    pub(crate) fn enter(
        &self,
        wait: Wait,
        now: crate::status::shmkit_status,
    ) -> Result<Call<'_, T>, Failure> {
        let me = this_thread();
        if self.holder.load(SeqCst) == me {
            return Err(Failure::new(
                SHMKIT_ERR_BUSY,
                format!(
                    "{}: this thread is already in a call on this handle (a callback \
                     must not call functions on the handle that called it)",
                    self.what
                ),
            ));
        }
        if self.closed.load(SeqCst) {
            return Err(closed_failure(&self.what));
        }
        let state = match wait {
            Wait::Forever => Some(self.state.lock()),
            Wait::Now => self.state.try_lock().or_else(|| {
                // A pollable handle's try must arm it: the call in the way makes
                // it ready when it ends (and if it just ended, try again).
                self.ready.get()?;
                self.contended.store(true, SeqCst);
                self.state.try_lock()
            }),
            Wait::Until(t) => self.state.try_lock_until(t),
        };
        let Some(state) = state else {
            let (status, how) = match wait {
                Wait::Now => (now, "at once".to_string()),
                _ => (SHMKIT_ERR_TIMEOUT, "before the timeout".to_string()),
            };
            return Err(Failure::new(
                status,
                format!(
                    "{}: another thread's call on this handle did not end {how} \
                     (calls on one handle run one at a time)",
                    self.what
                ),
            ));
        };
        if state.is_none() || self.closed.load(SeqCst) {
            return Err(closed_failure(&self.what));
        }
        self.holder.store(me, SeqCst);
        Ok(Call {
            serial: self,
            state: Some(state),
        })
    }

    /// Closes: later calls are refused, blocked ones interrupted; the object is
    /// dropped once the calls in progress have left, before this returns, or,
    /// when called from inside a call on this handle (a callback), at the end of
    /// that call.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        if let Some(i) = &self.interrupter {
            i.interrupt();
        }
        if self.holder.load(SeqCst) != this_thread() {
            // (From inside a call, `Call::drop` drops the object.)
            let object = self.state.lock().take();
            drop(object);
        }
        self.ready.close();
    }
}

impl<T> std::ops::Deref for Call<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.state
            .as_ref()
            .and_then(|s| s.as_ref())
            .expect("a call's object is present until it ends")
    }
}

impl<T> std::ops::DerefMut for Call<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.state
            .as_mut()
            .and_then(|s| s.as_mut())
            .expect("a call's object is present until it ends")
    }
}

impl<T> Drop for Call<'_, T> {
    fn drop(&mut self) {
        self.serial.holder.store(0, SeqCst);
        let Some(mut state) = self.state.take() else {
            return;
        };
        if self.serial.closed.load(SeqCst) {
            // Closed from inside this call: the object goes now, before the
            // handle's lock is released.
            drop(state.take());
        }
        // Released before looking at `contended`: a try that failed to take
        // the lock set it before its second attempt, so either that attempt
        // succeeds or this sees the flag.
        drop(state);
        if self.serial.contended.swap(false, SeqCst) {
            if let Some(r) = self.serial.ready.get() {
                r.wake_now();
            }
        }
    }
}

/// Counts the calls in progress on an object whose calls run side by side
/// (mutex, semaphore, event), so that closing can end them and wait for them.
pub(crate) struct Gate {
    what: String,
    /// Calls in progress, and whether the handle is closed (under one lock, so
    /// that no call starts after a close has counted).
    calls: parking_lot::Mutex<(usize, bool)>,
    left: parking_lot::Condvar,
    interrupter: Interrupter,
    /// Once the handle is pollable.
    ready: Lazy,
}

/// A call in progress through a [`Gate`].
pub(crate) struct Pass<'a>(&'a Gate);

impl Gate {
    pub(crate) fn new(what: impl Into<String>, interrupter: Interrupter) -> Gate {
        Gate {
            what: what.into(),
            calls: parking_lot::Mutex::new((0, false)),
            left: parking_lot::Condvar::new(),
            interrupter,
            ready: Lazy::default(),
        }
    }

    /// The handle's readiness, made now if needed (see [`Serial::readiness`]).
    pub(crate) fn readiness(&self) -> Result<Arc<Readiness>, Failure> {
        self.ready.get_or_make(|| self.is_closed()).map(Arc::clone)
    }

    /// The readiness, if the handle is pollable.
    pub(crate) fn polled(&self) -> Option<&Arc<Readiness>> {
        self.ready.get()
    }

    pub(crate) fn enter(&self) -> Result<Pass<'_>, Failure> {
        let mut c = self.calls.lock();
        if c.1 {
            return Err(closed_failure(&self.what));
        }
        c.0 += 1;
        Ok(Pass(self))
    }

    /// Whether the handle was closed (a call that got what it waited for after
    /// the close gives it back).
    pub(crate) fn is_closed(&self) -> bool {
        self.calls.lock().1
    }

    pub(crate) fn closed_failure(&self) -> Failure {
        closed_failure(&self.what)
    }

    /// Refuses new calls, interrupts the blocked ones and waits until every call
    /// has left.
    pub(crate) fn close(&self) {
        self.calls.lock().1 = true;
        self.interrupter.interrupt();
        let mut c = self.calls.lock();
        while c.0 > 0 {
            self.left.wait(&mut c);
        }
        drop(c);
        self.ready.close();
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut c = self.0.calls.lock();
        c.0 -= 1;
        if c.0 == 0 {
            self.0.left.notify_all();
        }
    }
}
