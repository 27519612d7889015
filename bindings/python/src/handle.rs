//! What a Python object holds its shmkit object in, so that no call keeps a
//! PyO3 borrow while it waits and `close()` works from any thread.
//!
//! - [`Handle`]: an object one call uses at a time (`&mut self` in Rust: channel
//!   endpoints). A call *leases* it: the object moves out to the calling thread
//!   and comes back when the call ends. Another thread's call waits its turn
//!   within its timeout; a re-entrant call on the same thread is `Busy`.
//! - [`Shared`]: an object many threads wait on at once (`&self`: mutex,
//!   semaphore, event), kept in an `Arc` that each call clones.
//!
//! Both keep the object's [`Interrupter`] outside the lock: `close()` marks the
//! object closed, interrupts the calls blocked on it (which raise
//! `shmkit.Closed`) and, for a `Handle`, waits until the call in progress has
//! given the object back, then drops it, freeing its role (receiver, server...)
//! before `close()` returns.

use crate::errors::{busy, closed};
use crate::wait::{Deadline, SLICE};
use pyo3::prelude::*;
use shmkit::Interrupter;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// A call using a [`Handle`]'s object now.
#[derive(Clone, Copy)]
struct User {
    thread: ThreadId,
    op: &'static str,
    /// Whether the call may wait without bound (then calls that cannot wait do
    /// not queue behind it: they are `Busy`).
    blocking: bool,
}

struct Slot<T> {
    /// `None` while leased, lent or closed.
    object: Option<T>,
    user: Option<User>,
    closed: bool,
    /// Lent out for longer than a call (a sender to its open reservation).
    lent: Option<&'static str>,
}

/// An object used by one call at a time; see the module documentation.
pub(crate) struct Handle<T> {
    /// The object's name, for messages.
    name: String,
    slot: Mutex<Slot<T>>,
    /// Notified whenever a lease ends or the object is closed.
    returned: Condvar,
    /// `None` for objects whose calls never wait (a publisher).
    interrupter: Option<Interrupter>,
}

/// How long a call may wait for another thread's call to give the object back.
#[derive(Clone, Copy)]
pub(crate) enum Turn {
    /// Until the deadline (calls with a timeout argument).
    Until(Deadline),
    /// Only behind calls that end promptly; `Busy` if the object is in a blocking
    /// call (a getter must not hang behind another thread's `recv()`).
    Prompt,
}

impl<T> Handle<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // Every change to a slot is made in one step: a poisoned lock is still
        // consistent.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send> Handle<T> {
    /// Wraps `object`; `interrupter` must end its blocking calls (`None` if it
    /// has none).
    pub(crate) fn new(name: &str, interrupter: Option<Interrupter>, object: T) -> Handle<T> {
        Handle {
            name: name.to_owned(),
            slot: Mutex::new(Slot {
                object: Some(object),
                user: None,
                closed: false,
                lent: None,
            }),
            returned: Condvar::new(),
            interrupter,
        }
    }

    /// The object's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether `close()` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes the object for `op` on this thread, waiting for another thread's
    /// call to give it back as `turn` allows.
    pub(crate) fn lease(
        &self,
        py: Python<'_>,
        op: &'static str,
        turn: Turn,
    ) -> PyResult<Lease<'_, T>> {
        let me = std::thread::current().id();
        let blocking = matches!(turn, Turn::Until(_));
        loop {
            let other = {
                let mut slot = self.lock();
                if slot.closed {
                    return Err(closed(py, &self.name));
                }
                if let Some(what) = slot.lent {
                    return Err(busy(
                        py,
                        &self.name,
                        format!("{what} is open; commit or cancel it first"),
                    ));
                }
                match slot.user {
                    None => {
                        let object = slot.object.take();
                        slot.user = Some(User {
                            thread: me,
                            op,
                            blocking,
                        });
                        return Ok(Lease {
                            handle: self,
                            object,
                            ended: false,
                        });
                    }
                    Some(u) => u,
                }
            };
            if other.thread == me {
                return Err(busy(
                    py,
                    &self.name,
                    format!(
                        "{op} called on this thread while its {} on the same object is still running",
                        other.op
                    ),
                ));
            }
            let slice = match turn {
                Turn::Prompt if other.blocking => {
                    return Err(busy(
                        py,
                        &self.name,
                        format!(
                            "in use by another thread's {} (which may wait for a long time); \
                             call {op} when it returns",
                            other.op
                        ),
                    ));
                }
                Turn::Prompt => SLICE,
                Turn::Until(deadline) => match deadline.left() {
                    Some(left) if left.is_zero() => {
                        let e = deadline.expired(&self.name, op);
                        return Err(crate::errors::to_py(py, e));
                    }
                    left => left.map_or(SLICE, |l| l.min(SLICE)),
                },
            };
            py.detach(|| {
                let slot = self.lock();
                if slot.user.is_some() && !slot.closed {
                    drop(self.returned.wait_timeout(slot, slice));
                }
            });
            py.check_signals()?;
        }
    }

    /// Gives back an object lent with [`Lease::lend`]; dropped if the handle was
    /// closed meanwhile.
    pub(crate) fn give_back(&self, object: T) {
        let mut slot = self.lock();
        slot.lent = None;
        let unwanted = if slot.closed {
            Some(object)
        } else {
            slot.object = Some(object);
            None
        };
        drop(slot);
        self.returned.notify_all();
        drop(unwanted);
    }

    /// Closes: ends the call using the object (it raises `shmkit.Closed`), waits
    /// until it has given the object back, and drops the object. `Busy` while the
    /// object is lent. Closing twice does nothing.
    pub(crate) fn close(&self, py: Python<'_>) -> PyResult<()> {
        let me = std::thread::current().id();
        let mut slot = self.lock();
        if slot.closed {
            return Ok(());
        }
        if let Some(what) = slot.lent {
            return Err(busy(
                py,
                &self.name,
                format!("{what} is open; commit or cancel it before closing"),
            ));
        }
        slot.closed = true;
        let object = slot.object.take();
        let user = slot.user;
        drop(slot);
        self.returned.notify_all();
        if let Some(user) = user {
            if let Some(i) = &self.interrupter {
                i.interrupt();
            }
            // On this thread (a finaliser run in the middle of a call), the call
            // drops the object when it returns.
            if user.thread != me {
                py.detach(|| {
                    let mut slot = self.lock();
                    while slot.user.is_some() {
                        slot = self.returned.wait(slot).unwrap_or_else(|e| e.into_inner());
                    }
                });
            }
        }
        // Leaving a channel wakes its peers: no Python needed for that.
        py.detach(move || drop(object));
        Ok(())
    }
}

/// A [`Handle`]'s object, taken for one call; given back on drop.
pub(crate) struct Lease<'a, T> {
    handle: &'a Handle<T>,
    /// `None` only between [`Lease::take`] and [`Lease::put`], or once lent.
    object: Option<T>,
    /// Lent: the slot was updated already.
    ended: bool,
}

impl<T> Lease<'_, T> {
    /// Moves the object out, for calls that consume it (and give it back).
    pub(crate) fn take(&mut self) -> T {
        self.object.take().expect("leased objects are present")
    }

    /// Puts back an object taken with [`take`](Self::take).
    pub(crate) fn put(&mut self, object: T) {
        self.object = Some(object);
    }

    /// Ends the lease with the object lent out for longer (`what`, e.g. "a
    /// reservation"): calls are `Busy` until [`Handle::give_back`].
    pub(crate) fn lend(mut self, what: &'static str) {
        let mut slot = self.handle.lock();
        slot.lent = Some(what);
        slot.user = None;
        drop(slot);
        self.ended = true;
        self.handle.returned.notify_all();
    }
}

impl<T> Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.object.as_ref().expect("leased objects are present")
    }
}

impl<T> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.object.as_mut().expect("leased objects are present")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut slot = self.handle.lock();
        slot.user = None;
        let unwanted = if slot.closed {
            self.object.take()
        } else {
            slot.object = self.object.take();
            None
        };
        drop(slot);
        self.handle.returned.notify_all();
        drop(unwanted);
    }
}

/// An object many threads use at once; see the module documentation.
pub(crate) struct Shared<T> {
    name: String,
    object: Mutex<Option<Arc<T>>>,
    interrupter: Interrupter,
}

impl<T: Send + Sync> Shared<T> {
    /// Wraps `object`; `interrupter` must end its blocking calls.
    pub(crate) fn new(name: &str, interrupter: Interrupter, object: T) -> Shared<T> {
        Shared {
            name: name.to_owned(),
            object: Mutex::new(Some(Arc::new(object))),
            interrupter,
        }
    }

    /// The object's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<T>>> {
        self.object.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object, or `shmkit.Closed`.
    pub(crate) fn get(&self, py: Python<'_>) -> PyResult<Arc<T>> {
        self.lock().clone().ok_or_else(|| closed(py, &self.name))
    }

    /// The object, or `None` once closed.
    pub(crate) fn get_quietly(&self) -> Option<Arc<T>> {
        self.lock().clone()
    }

    /// Whether `close()` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Closes: calls blocked on the object raise `shmkit.Closed`, later ones too.
    /// The object goes away when the last of them returns.
    pub(crate) fn close(&self) {
        let object = self.lock().take();
        if object.is_some() {
            self.interrupter.interrupt();
        }
        drop(object);
    }
}
