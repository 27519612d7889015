//! Named kernel synchronisation objects: semaphores, mutexes and events.
//!
//! Used two ways: as the wake channel under shmkit's own shared-memory primitives
//! (a semaphore per waitable word), and directly by the `Native*` adapters that
//! interoperate with Win32 programs using the same names.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, HANDLE, WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, CreateSemaphoreW, OpenEventW, OpenMutexW, OpenSemaphoreW,
    ReleaseMutex, ReleaseSemaphore, ResetEvent, SetEvent, WaitForSingleObject, EVENT_MODIFY_STATE,
    INFINITE, MUTEX_MODIFY_STATE, SEMAPHORE_MODIFY_STATE,
};

use super::wide;

/// Which kind of kernel object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelKind {
    /// `CreateSemaphoreW` with an initial and maximum count.
    Semaphore { initial: i32, max: i32 },
    /// `CreateMutexW`; owned by the calling thread from the start if
    /// `initially_owned` (and the call created it).
    Mutex { initially_owned: bool },
    /// `CreateEventW`.
    Event {
        manual_reset: bool,
        initially_set: bool,
    },
}

/// How a wait on a kernel object ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The object was signalled (acquired).
    Signalled,
    /// A mutex whose owner thread ended without releasing it; acquired now.
    Abandoned,
    /// The timeout passed.
    TimedOut,
}

/// An open named kernel object; the handle closes on drop.
#[derive(Debug)]
pub(crate) struct KernelObject(OwnedHandle);

impl KernelObject {
    /// Creates the object, or opens it if the name exists (then `created` is
    /// false and `kind`'s parameters are ignored, as on Windows). A name held by an
    /// object of another type fails with `ERROR_INVALID_HANDLE`.
    pub(crate) fn create(name: &str, kind: KernelKind) -> io::Result<(KernelObject, bool)> {
        let w = wide(name);
        // SAFETY: `w` is a NUL-terminated UTF-16 string that outlives the call; null
        // security attributes mean the default DACL.
        let h = unsafe {
            match kind {
                KernelKind::Semaphore { initial, max } => {
                    CreateSemaphoreW(std::ptr::null(), initial, max, w.as_ptr())
                }
                KernelKind::Mutex { initially_owned } => {
                    CreateMutexW(std::ptr::null(), initially_owned.into(), w.as_ptr())
                }
                KernelKind::Event {
                    manual_reset,
                    initially_set,
                } => CreateEventW(
                    std::ptr::null(),
                    manual_reset.into(),
                    initially_set.into(),
                    w.as_ptr(),
                ),
            }
        };
        // SAFETY: GetLastError has no preconditions; read it before any other call.
        let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
        let obj = Self::from_handle(h)?;
        Ok((obj, !existed))
    }

    /// Opens an existing object of `kind`'s type by name.
    pub(crate) fn open(name: &str, kind: KernelKind) -> io::Result<KernelObject> {
        let w = wide(name);
        // SAFETY: as in `create`; the access masks are the minimum each use needs.
        let h = unsafe {
            match kind {
                KernelKind::Semaphore { .. } => {
                    OpenSemaphoreW(SYNCHRONIZE | SEMAPHORE_MODIFY_STATE, 0, w.as_ptr())
                }
                KernelKind::Mutex { .. } => {
                    OpenMutexW(SYNCHRONIZE | MUTEX_MODIFY_STATE, 0, w.as_ptr())
                }
                KernelKind::Event { .. } => {
                    OpenEventW(SYNCHRONIZE | EVENT_MODIFY_STATE, 0, w.as_ptr())
                }
            }
        };
        Self::from_handle(h)
    }

    fn from_handle(h: HANDLE) -> io::Result<KernelObject> {
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: h is a fresh handle that nothing else owns.
        Ok(KernelObject(unsafe { OwnedHandle::from_raw_handle(h) }))
    }

    fn raw(&self) -> HANDLE {
        self.0.as_raw_handle()
    }

    /// Waits for the object to be signalled, for at most `timeout`.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        // Round up so that a 0.5 ms timeout does not become a poll.
        let ms = timeout.map_or(INFINITE, |t| {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(INFINITE as u128 - 1) as u32
        });
        // SAFETY: the handle is open for as long as self lives.
        match unsafe { WaitForSingleObject(self.raw(), ms) } {
            WAIT_OBJECT_0 => Ok(WaitOutcome::Signalled),
            WAIT_ABANDONED => Ok(WaitOutcome::Abandoned),
            WAIT_TIMEOUT => Ok(WaitOutcome::TimedOut),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// `ReleaseSemaphore`: adds `n`, returns the previous count.
    /// Exceeding the maximum fails with `ERROR_TOO_MANY_POSTS`.
    pub(crate) fn release_semaphore(&self, n: i32) -> io::Result<i32> {
        let mut previous = 0i32;
        // SAFETY: open handle; `previous` is a valid out pointer.
        if unsafe { ReleaseSemaphore(self.raw(), n, &mut previous) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(previous)
    }

    /// `ReleaseMutex`: fails unless the calling thread owns the mutex.
    pub(crate) fn release_mutex(&self) -> io::Result<()> {
        // SAFETY: open handle.
        if unsafe { ReleaseMutex(self.raw()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `SetEvent` or `ResetEvent`.
    pub(crate) fn set_event(&self, set: bool) -> io::Result<()> {
        // SAFETY: open handle.
        let ok = unsafe {
            if set {
                SetEvent(self.raw())
            } else {
                ResetEvent(self.raw())
            }
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Wake channel for a word in shared memory: a named semaphore whose permits are
/// wake-ups. Waiters register in the word's waiter count before sleeping and
/// re-check the word after every return, so a stale permit costs one spurious
/// wake-up, never a lost one.
#[derive(Debug)]
pub(crate) struct WakeChannel(KernelObject);

impl WakeChannel {
    /// Opens (or creates) the channel named `key`.
    pub(crate) fn open(key: &str) -> io::Result<WakeChannel> {
        let kind = KernelKind::Semaphore {
            initial: 0,
            max: i32::MAX,
        };
        KernelObject::create(key, kind).map(|(obj, _)| WakeChannel(obj))
    }

    /// Sleeps while `word` holds `expected`, for at most `timeout`; may return
    /// early.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        if word.load(Ordering::SeqCst) == expected {
            let _ = self.0.wait(timeout);
        }
    }

    /// The semaphore's handle, for a registered wait.
    pub(crate) fn handle(&self) -> windows_sys::Win32::Foundation::HANDLE {
        self.0.raw()
    }

    /// Wakes up to `n` sleepers.
    pub(crate) fn wake(&self, _word: &AtomicU32, n: u32) {
        let n = n.clamp(1, i32::MAX as u32) as i32;
        // Too many posts only means enough wake-ups are pending already.
        let _ = self.0.release_semaphore(n);
    }
}
