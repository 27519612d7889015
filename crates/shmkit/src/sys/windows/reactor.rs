//! Watching words in shared memory for a change on behalf of tasks, wait sets
//! and pollable handles (Windows).
//!
//! A word's sleepers wait on its wake channel, a named semaphore whose permits
//! are wake-ups. A watch asks the system thread pool to wait on that semaphore
//! for it (`RegisterWaitForSingleObject`, once): the pool's wait threads watch up
//! to 63 handles each, so no thread per waiter here either. When a permit comes
//! (or the recheck time), the pool calls the watch's [`Waker`].

use std::ffi::c_void;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;
use std::task::Waker;
use std::time::Instant;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Threading::{
    OpenProcess, RegisterWaitForSingleObject, UnregisterWaitEx, INFINITE,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, WT_EXECUTEINWAITTHREAD,
    WT_EXECUTEONLYONCE,
};

use super::WakeChannel;
use crate::sys::ProcessIdentity;

/// A registered wait on one word's wake channel; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct Watch {
    wait: HANDLE,
    waker: *mut WatchWaker,
    /// The registered wait's time limit (the recheck it was made for).
    recheck: Option<Instant>,
}

/// What the pool's callback reaches: the waker, and whether it ran.
struct WatchWaker {
    waker: std::sync::Mutex<Waker>,
    /// The callback ran (permit or time limit): the one-shot wait is spent.
    ran: std::sync::atomic::AtomicBool,
    fired: std::sync::atomic::AtomicBool,
}

// SAFETY: the wait handle may be unregistered from any thread; the boxed waker is
// Send + Sync and only read by the pool's callback until `UnregisterWaitEx`
// has waited for that callback to finish.
unsafe impl Send for Watch {}
// SAFETY: as for Send; `&Watch` gives no access to either.
unsafe impl Sync for Watch {}

/// Calls `waker` once `word` no longer holds `expected` (a wake-up comes through
/// its wake channel), or at `recheck`. The channel must outlive the watch.
pub(crate) fn watch(
    word: &AtomicU32,
    expected: u32,
    park: &WakeChannel,
    waker: &Waker,
    recheck: Option<Instant>,
) -> Watch {
    let waker = Box::into_raw(Box::new(WatchWaker {
        waker: std::sync::Mutex::new(waker.clone()),
        ran: std::sync::atomic::AtomicBool::new(false),
        fired: std::sync::atomic::AtomicBool::new(false),
    }));
    let mut watch = Watch {
        wait: std::ptr::null_mut(),
        waker,
        recheck,
    };
    if word.load(SeqCst) != expected {
        // SAFETY: our own box, alive until the watch drops.
        unsafe { (*waker).wake() };
        return watch;
    }
    let millis = recheck.map_or(INFINITE, |at| {
        let left = at.saturating_duration_since(Instant::now());
        left.as_millis().min(INFINITE as u128 - 1) as u32
    });
    // SAFETY: the handle is the channel's open semaphore, which the caller keeps
    // open while the watch lives; the context is our boxed waker, freed only
    // after `UnregisterWaitEx` has waited for the callback.
    let ok = unsafe {
        RegisterWaitForSingleObject(
            &mut watch.wait,
            park.handle(),
            Some(fire),
            waker as *const c_void,
            millis,
            WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD,
        )
    };
    if ok == 0 {
        // No wait could be registered: let the caller look again (it polls).
        watch.wait = std::ptr::null_mut();
        // SAFETY: as above.
        unsafe { (*waker).wake() };
    }
    watch
}

impl WatchWaker {
    fn wake(&self) {
        self.waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wake_by_ref();
    }
}

impl Watch {
    /// Whether the pool called this watch's waker.
    pub(crate) fn fired(&self) -> bool {
        // SAFETY: our box, alive until drop.
        unsafe { &*self.waker }.fired.load(SeqCst)
    }

    /// Keeps this registered wait, with `waker`, if it has not fired and was
    /// made for a recheck no later than `recheck`: a semaphore permit is a wake-up whatever the
    /// word's value, so the wait stands (re-registering for every poll would
    /// also risk a permit taken by a wait being unregistered).
    pub(crate) fn refresh(&self, _expected: u32, waker: &Waker, recheck: Option<Instant>) -> bool {
        // A later recheck than the wait was made for only means an early,
        // spurious wake-up; a sooner one needs a new wait.
        let sooner = match (self.recheck, recheck) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(old), Some(new)) => new < old,
        };
        // SAFETY: our box, alive until drop.
        let spent = unsafe { &*self.waker }.ran.load(SeqCst);
        if self.wait.is_null() || spent || sooner {
            return false;
        }
        // SAFETY: our box, alive until drop.
        let mut current = unsafe { &*self.waker }
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !current.will_wake(waker) {
            *current = waker.clone();
        }
        true
    }
}

unsafe extern "system" fn fire(context: *mut c_void, timed_out: bool) {
    // SAFETY: the context is the watch's boxed waker, alive until the watch has
    // unregistered this wait and waited for this callback to return.
    let watch = unsafe { &*(context as *const WatchWaker) };
    // A permit was taken for this wait (or its time came): if the wait is
    // given up unused, the permit is passed on (see AsyncWait::cancel).
    if !timed_out {
        watch.fired.store(true, SeqCst);
    }
    watch.ran.store(true, SeqCst);
    watch.wake();
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.wait.is_null() {
            // SAFETY: a wait we registered; INVALID_HANDLE_VALUE makes the call
            // wait for a running callback, after which the box is unused.
            unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
        }
        // SAFETY: made by Box::into_raw in `watch`, freed once, here.
        drop(unsafe { Box::from_raw(self.waker) });
    }
}

/// A registered wait on a peer process's handle, which Windows signals when the
/// process ends; the pool then calls the waker. Unregistered when dropped.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    who: ProcessIdentity,
    process: HANDLE,
    wait: HANDLE,
    waker: *mut ExitWaker,
}

/// What the pool's callback reaches: the waker, and whether it ran.
struct ExitWaker {
    waker: std::sync::Mutex<Waker>,
    fired: std::sync::atomic::AtomicBool,
}

// SAFETY: as for Watch: the handles may be used and closed from any thread; the
// boxed waker is behind a mutex and freed only after the callback is done.
unsafe impl Send for ExitWatch {}
// SAFETY: as for Send.
unsafe impl Sync for ExitWatch {}

impl ExitWatch {
    /// The process this watch is for.
    pub(crate) fn who(&self) -> ProcessIdentity {
        self.who
    }

    /// Replaces the waker to call; `false` if the watch has fired already
    /// (the process ended: the watch is spent).
    pub(crate) fn set_waker(&self, waker: &Waker) -> bool {
        // SAFETY: our box, alive until drop.
        let exit = unsafe { &*self.waker };
        let mut current = exit.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !current.will_wake(waker) {
            *current = waker.clone();
        }
        !exit.fired.load(SeqCst)
    }
}

unsafe extern "system" fn exited(context: *mut c_void, _timed_out: bool) {
    // SAFETY: the context is the watch's boxed waker, alive until the watch has
    // unregistered this wait and waited for this callback to return.
    let waker = unsafe { &*(context as *const std::sync::Mutex<Waker>) };
    waker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .wake_by_ref();
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // SAFETY: a wait we registered, then the process handle we opened;
        // INVALID_HANDLE_VALUE waits for a running callback, after which the
        // box is unused and freed once, here.
        unsafe {
            UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE);
            CloseHandle(self.process);
            drop(Box::from_raw(self.waker));
        }
    }
}

/// Calls `waker` when process `who` ends. `None` if it cannot be watched (no
/// access to it, or it has ended, or it is another process by now): the caller
/// looks again periodically.
pub(crate) fn watch_exit(who: ProcessIdentity, waker: &Waker) -> Option<ExitWatch> {
    if who.start_time == 0 {
        return None;
    }
    // SAFETY: OpenProcess returns null or a handle we own.
    let process = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            who.pid,
        )
    };
    if process.is_null() {
        return None;
    }
    let close = |h: HANDLE| {
        // SAFETY: a handle we opened, closed once.
        unsafe { CloseHandle(h) };
    };
    // The handle is for whoever has the pid now: the peer only if it started
    // when the peer did.
    if super::creation_time(process) != Some(who.start_time) || !super::process_alive(who) {
        close(process);
        return None;
    }
    let boxed = Box::into_raw(Box::new(ExitWaker {
        waker: std::sync::Mutex::new(waker.clone()),
        fired: std::sync::atomic::AtomicBool::new(false),
    }));
    let mut wait: HANDLE = std::ptr::null_mut();
    // SAFETY: an open process handle (kept open while the wait exists); the
    // context is our box, freed only after UnregisterWaitEx waited for the
    // callback.
    let ok = unsafe {
        RegisterWaitForSingleObject(
            &mut wait,
            process,
            Some(exited),
            boxed as *const c_void,
            INFINITE,
            WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD,
        )
    };
    if ok == 0 {
        close(process);
        // SAFETY: ours, never shared.
        drop(unsafe { Box::from_raw(boxed) });
        return None;
    }
    Some(ExitWatch {
        who,
        process,
        wait,
        waker: boxed,
    })
}
