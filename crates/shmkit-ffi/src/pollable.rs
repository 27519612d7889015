//! Pollable handles: a descriptor an event loop can wait on, and one-shot
//! callbacks, for every handle that waits (receiver, sender, subscriber, RPC
//! server and client, mutex, semaphore, event).
//!
//! A handle gets its [`Readiness`] (a `shmkit::Notifier` and a list of
//! callbacks) the first time `shmkit_*_pollable` or `shmkit_*_on_ready` is called
//! on it. From then on, its "try once" calls (timeout 0, `try_lock`) clear the
//! notifier and poll the object with the notifier's waker instead of trying once:
//! a `SHMKIT_ERR_WOULD_BLOCK` leaves a wait registered inside the object, and
//! when the object changes (or the handle is closed) the notifier becomes ready
//! and the callbacks run. That is a non-blocking socket's contract, edge-triggered
//! with re-arming: once ready, call the try until it says WOULD_BLOCK.

use crate::args::{out, put};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure, Outcome};
use shmkit::Notifier;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// What an event loop waits on, from a `shmkit_*_pollable` function: on Unix a
/// file descriptor (an `int`: Linux's eventfd, other systems' pipe read end),
/// readable when the handle may be ready; on Windows an event `HANDLE`,
/// signalled when the handle may be ready (usable with `WaitForMultipleObjects`
/// and `RegisterWaitForSingleObject`). A pointer-sized integer (`intptr_t`)
/// holds either: cast it to `int` or `HANDLE`.
pub type shmkit_descriptor = isize;

/// Called once by `shmkit_*_on_ready`, with the `user_data` given there, when the
/// handle may be ready (or is closed). It runs on shmkit's callback thread (one
/// per process, started when needed and gone after 50 ms without work), in the
/// order the wake-ups came; or, if the handle is ready already when
/// `shmkit_*_on_ready` is called, on that thread before it returns. It must
/// return quickly and must not block (the other callbacks wait for it): post an
/// event to your own loop, complete a promise, and return.
pub type shmkit_ready_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A callback registered by `shmkit_*_on_ready`.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the caller of `shmkit_*_on_ready` accepts that its callback is called
// with `user_data` on another thread (the header says so); shmkit only passes
// the pointer along.
unsafe impl Send for Callback {}

impl Callback {
    fn call(self) {
        // SAFETY: the caller's function with the caller's pointer, called once,
        // as `shmkit_ready_fn` documents.
        unsafe { (self.f)(self.user_data) }
    }
}

#[derive(Default)]
struct State {
    /// Woken since the last clear (the notifier is ready).
    ready: bool,
    /// The handle is closed: ready for good.
    closed: bool,
    callbacks: Vec<Callback>,
}

/// What a pollable handle's waits wake: the notifier (its descriptor becomes
/// ready) and the callbacks registered since the last wake-up.
pub(crate) struct Readiness {
    notifier: Notifier,
    /// Kept consistent with the notifier: both change under this lock.
    state: parking_lot::Mutex<State>,
}

impl Readiness {
    fn new() -> Result<Arc<Readiness>, Failure> {
        let notifier = Notifier::new().map_err(|e| {
            Failure::new(
                SHMKIT_ERR_OS,
                format!("cannot make the handle's pollable descriptor: {e}"),
            )
        })?;
        Ok(Arc::new(Readiness {
            notifier,
            state: parking_lot::Mutex::new(State::default()),
        }))
    }

    /// Not ready any more, before a poll (never after it: a wake-up between the
    /// poll and the clear would be lost). A closed handle stays ready.
    fn clear(&self) {
        let mut s = self.state.lock();
        if !s.closed && s.ready {
            s.ready = false;
            self.notifier.clear();
        }
    }

    /// Ready: the descriptor becomes readable and the callbacks run (each once).
    fn fire(&self, close: bool) {
        let callbacks = {
            let mut s = self.state.lock();
            s.closed |= close;
            s.ready = true;
            // Even if it was ready: the caller may have read the descriptor dry.
            self.notifier.notify();
            std::mem::take(&mut s.callbacks)
        };
        dispatch(callbacks);
    }

    /// Ready now (a spurious wake-up at worst).
    pub(crate) fn wake_now(&self) {
        self.fire(false);
    }

    /// Ready for good: the handle is closed.
    fn close(&self) {
        self.fire(true);
    }

    /// Runs `callback` at the next wake-up, or now if the handle is ready.
    fn on_ready(&self, callback: Callback) {
        let mut s = self.state.lock();
        if s.ready || s.closed {
            drop(s);
            callback.call();
        } else {
            s.callbacks.push(callback);
        }
    }

    /// Clears, then polls with the waker that makes this ready.
    pub(crate) fn poll<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.clear();
        let waker = Waker::from(self.clone());
        f(&mut Context::from_waker(&waker))
    }

    /// A new descriptor for the notifier, owned by the caller.
    #[cfg(unix)]
    fn descriptor(&self) -> Result<shmkit_descriptor, Failure> {
        use std::os::fd::{AsFd, IntoRawFd};
        let fd = self
            .notifier
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| dup_failed(&e))?;
        Ok(fd.into_raw_fd() as isize)
    }

    /// A new handle for the notifier's event, owned by the caller.
    #[cfg(windows)]
    fn descriptor(&self) -> Result<shmkit_descriptor, Failure> {
        use std::os::windows::io::{AsRawHandle, BorrowedHandle, IntoRawHandle};
        // SAFETY: the notifier owns the event handle and outlives this borrow.
        let event = unsafe { BorrowedHandle::borrow_raw(self.notifier.as_raw_handle()) };
        let owned = event.try_clone_to_owned().map_err(|e| dup_failed(&e))?;
        Ok(owned.into_raw_handle() as isize)
    }
}

fn dup_failed(e: &std::io::Error) -> Failure {
    Failure::new(
        SHMKIT_ERR_OS,
        format!("cannot duplicate the handle's pollable descriptor: {e}"),
    )
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.fire(false);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.fire(false);
    }
}

/// The callbacks waiting for shmkit's callback thread, and whether it runs (in
/// which process: a forked child starts without the thread).
struct Dispatch {
    queue: VecDeque<Callback>,
    running: Option<u32>,
}

static DISPATCH: parking_lot::Mutex<Dispatch> = parking_lot::Mutex::new(Dispatch {
    queue: VecDeque::new(),
    running: None,
});
static WORK: parking_lot::Condvar = parking_lot::Condvar::new();

/// How long the callback thread waits for more work before it ends. It ends
/// because a runtime that adopted it for a callback (Mono does, for C#) waits
/// for it when its process exits.
const LINGER: Duration = Duration::from_millis(50);

/// Hands `callbacks` to the callback thread, starting it if needed. Not run
/// here: wake-ups come on the reactor's and exit watcher's threads, which must
/// not wait for user code, and from inside calls that hold a handle's lock.
fn dispatch(callbacks: Vec<Callback>) {
    if callbacks.is_empty() {
        return;
    }
    let mut d = DISPATCH.lock();
    d.queue.extend(callbacks);
    let pid = std::process::id();
    if d.running == Some(pid) {
        WORK.notify_one();
        return;
    }
    d.running = Some(pid);
    drop(d);
    let started = std::thread::Builder::new()
        .name("shmkit-callbacks".into())
        .spawn(run_callbacks);
    if started.is_err() {
        // No thread to be had: run them here rather than never.
        DISPATCH.lock().running = None;
        let queued = std::mem::take(&mut DISPATCH.lock().queue);
        for c in queued {
            c.call();
        }
    }
}

fn run_callbacks() {
    let mut d = DISPATCH.lock();
    loop {
        while let Some(c) = d.queue.pop_front() {
            parking_lot::MutexGuard::unlocked(&mut d, || c.call());
        }
        if WORK.wait_for(&mut d, LINGER).timed_out() && d.queue.is_empty() {
            d.running = None;
            return;
        }
    }
}

/// A handle's readiness, made on first use.
#[derive(Default)]
pub(crate) struct Lazy(OnceLock<Arc<Readiness>>);

impl Lazy {
    /// The readiness, if the handle is pollable (its try calls then poll).
    pub(crate) fn get(&self) -> Option<&Arc<Readiness>> {
        self.0.get()
    }

    /// The readiness, made now if needed. `closed` tells whether the handle is
    /// closed already: its close may have looked for a readiness before this one
    /// existed, so a readiness made then is closed here.
    pub(crate) fn get_or_make(
        &self,
        closed: impl FnOnce() -> bool,
    ) -> Result<&Arc<Readiness>, Failure> {
        if let Some(r) = self.0.get() {
            return Ok(r);
        }
        let made = Readiness::new()?;
        let r = self.0.get_or_init(|| made);
        // Pairs with the fence in `close`: either this sees the handle closed or
        // the close sees this readiness.
        fence(SeqCst);
        if closed() {
            r.close();
        }
        Ok(r)
    }

    /// After the handle was marked closed: makes the descriptor ready for good
    /// and runs the callbacks.
    pub(crate) fn close(&self) {
        fence(SeqCst);
        if let Some(r) = self.0.get() {
            r.close();
        }
    }
}

/// `SHMKIT_ERR_WOULD_BLOCK` from a poll that armed the handle.
pub(crate) fn would_block(what: &str, why: &str) -> Failure {
    Failure::new(
        SHMKIT_ERR_WOULD_BLOCK,
        format!(
            "{what}: {why} (the handle's pollable descriptor becomes ready when that \
             may change)"
        ),
    )
}

/// The body of every `shmkit_*_pollable`.
pub(crate) fn pollable(
    descriptor: *mut shmkit_descriptor,
    readiness: impl FnOnce() -> Result<Arc<Readiness>, Failure>,
) -> Outcome {
    out("descriptor", descriptor)?;
    let d = readiness()?.descriptor()?;
    // SAFETY: checked by `out`.
    unsafe { put(descriptor, d) };
    Ok(())
}

/// The body of every `shmkit_*_on_ready`.
pub(crate) fn on_ready(
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
    readiness: impl FnOnce() -> Result<Arc<Readiness>, Failure>,
) -> Outcome {
    let Some(f) = callback else {
        return Err(Failure::new(SHMKIT_ERR_NULL_POINTER, "callback is NULL"));
    };
    readiness()?.on_ready(Callback { f, user_data });
    Ok(())
}

/// Closes a descriptor made by a `shmkit_*_pollable` function (Unix: `close`;
/// Windows: `CloseHandle`). Close it after taking it out of your event loop; it
/// stays valid, and ready, after its handle is closed.
#[no_mangle]
pub extern "C" fn shmkit_pollable_close(descriptor: shmkit_descriptor) -> shmkit_status {
    run("shmkit_pollable_close", || close_descriptor(descriptor))
}

#[cfg(unix)]
fn close_descriptor(descriptor: shmkit_descriptor) -> Outcome {
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    let fd = RawFd::try_from(descriptor)
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| {
            Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("{descriptor} is not a descriptor"),
            )
        })?;
    // SAFETY: the caller hands over a descriptor it owns (one a
    // `shmkit_*_pollable` function gave it), per this function's contract.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

#[cfg(windows)]
fn close_descriptor(descriptor: shmkit_descriptor) -> Outcome {
    use std::os::windows::io::{FromRawHandle, OwnedHandle};
    if descriptor == 0 || descriptor == -1 {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("{descriptor} is not a handle"),
        ));
    }
    // SAFETY: the caller hands over a handle it owns (one a `shmkit_*_pollable`
    // function gave it), per this function's contract.
    drop(unsafe { OwnedHandle::from_raw_handle(descriptor as _) });
    Ok(())
}
