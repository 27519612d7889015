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

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Threading::{
    RegisterWaitForSingleObject, UnregisterWaitEx, INFINITE, WT_EXECUTEINWAITTHREAD,
    WT_EXECUTEONLYONCE,
};

use super::WakeChannel;

/// A registered wait on one word's wake channel; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct Watch {
    wait: HANDLE,
    waker: *mut Waker,
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
    let waker = Box::into_raw(Box::new(waker.clone()));
    let mut watch = Watch {
        wait: std::ptr::null_mut(),
        waker,
    };
    if word.load(SeqCst) != expected {
        // SAFETY: our own box, alive until the watch drops.
        unsafe { (*waker).wake_by_ref() };
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
        unsafe { (*waker).wake_by_ref() };
    }
    watch
}

impl Watch {
    /// Always `false` here: a registered wait is not changed, a new one is made.
    pub(crate) fn refresh(
        &self,
        _expected: u32,
        _waker: &Waker,
        _recheck: Option<Instant>,
    ) -> bool {
        false
    }
}

unsafe extern "system" fn fire(context: *mut c_void, _timed_out: bool) {
    // SAFETY: the context is the watch's boxed waker, alive until the watch has
    // unregistered this wait and waited for this callback to return.
    unsafe { (*(context as *const Waker)).wake_by_ref() };
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

/// Process exits are not watched on Windows yet: waiters look again
/// periodically (their recheck), as blocking waits do.
#[derive(Debug)]
pub(crate) struct ExitWatch(std::convert::Infallible);

impl ExitWatch {
    pub(crate) fn who(&self) -> crate::sys::ProcessIdentity {
        match self.0 {}
    }
    pub(crate) fn set_waker(&self, _waker: &Waker) {
        match self.0 {}
    }
}

/// Always `None` here (see [`ExitWatch`]).
pub(crate) fn watch_exit(_who: crate::sys::ProcessIdentity, _waker: &Waker) -> Option<ExitWatch> {
    None
}
