//! Adapters for other programs' named objects: Win32 kernel semaphores, mutexes
//! and events (Windows), POSIX named semaphores (Unix). Each function exists on
//! every platform and returns `SHMKIT_ERR_UNSUPPORTED` where its object does not.

use crate::args::{out, put, text, timeout};
use crate::handle::{get, insert, remove, Kind};
use crate::status::{once, run, shmkit_status, shmkit_status::*, Failure};
use std::ffi::c_char;

/// A Win32 named semaphore (`CreateSemaphore`), by its exact name.
pub struct shmkit_native_semaphore {
    _opaque: (),
}

/// A Win32 named mutex (`CreateMutex`), by its exact name. Win32 mutexes belong
/// to the thread that locked them: unlock on that thread.
pub struct shmkit_native_mutex {
    _opaque: (),
}

/// A Win32 named event (`CreateEvent`), by its exact name.
pub struct shmkit_native_event {
    _opaque: (),
}

/// A POSIX named semaphore (`sem_open`), by its exact name (`/name`).
pub struct shmkit_posix_semaphore {
    _opaque: (),
}

#[allow(dead_code)]
fn unsupported(what: &str) -> Failure {
    Failure::new(
        SHMKIT_ERR_UNSUPPORTED,
        format!("{what} is not available on this platform"),
    )
}

fn hand_out<H, T: Send + Sync + 'static>(
    kind: Kind,
    out_ptr: *mut *mut H,
    object: T,
) -> Result<(), Failure> {
    let h = insert(kind, object)?;
    // SAFETY: checked by `out` first.
    unsafe { put(out_ptr, h as *mut H) };
    Ok(())
}

#[cfg(windows)]
mod imp {
    pub(super) use shmkit::sync::{NativeEvent, NativeSemaphore};
    use shmkit::sync::{NativeMutex, NativeMutexGuard};
    use std::sync::Arc;

    self_cell::self_cell!(
        pub(super) struct HeldNative {
            owner: Arc<NativeMutex>,
            #[covariant]
            dependent: NativeMutexGuard,
        }
    );

    // SAFETY: a Win32 mutex is released by the thread that locked it; releasing
    // it elsewhere fails (the kernel refuses, nothing is corrupted) and the
    // mutex is abandoned when the locking thread ends, which the next locker
    // sees as owner-died. `shmkit_native_mutex_unlock` refuses other threads.
    unsafe impl Send for HeldNative {}

    pub(super) struct NativeMutexEntry {
        pub mutex: Arc<NativeMutex>,
        pub held: std::sync::Mutex<Option<(std::thread::ThreadId, HeldNative)>>,
    }
}

#[cfg(not(windows))]
mod imp {
    pub(super) struct NativeSemaphore;
    pub(super) struct NativeEvent;
    pub(super) struct NativeMutexEntry;
}

use imp::*;

/// Creates or opens (`create`: 1 fails if it exists, 0 opens it if it does)
/// Win32 semaphore `os_name` with `initial` and `max`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_native_semaphore_create(
    os_name: *const c_char,
    initial: u32,
    max: u32,
    exclusive: bool,
    sem: *mut *mut shmkit_native_semaphore,
) -> shmkit_status {
    run("shmkit_native_semaphore_create", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(windows)]
        {
            let s = if exclusive {
                NativeSemaphore::create(os_name, initial, max)?
            } else {
                NativeSemaphore::create_or_open(os_name, initial, max)?
            };
            hand_out(Kind::NativeSemaphore, sem, s)
        }
        #[cfg(not(windows))]
        {
            let _ = (os_name, initial, max, exclusive);
            Err(unsupported("a Win32 semaphore"))
        }
    })
}

/// Opens Win32 semaphore `os_name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_native_semaphore_open(
    os_name: *const c_char,
    sem: *mut *mut shmkit_native_semaphore,
) -> shmkit_status {
    run("shmkit_native_semaphore_open", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(windows)]
        {
            hand_out(Kind::NativeSemaphore, sem, NativeSemaphore::open(os_name)?)
        }
        #[cfg(not(windows))]
        {
            let _ = os_name;
            Err(unsupported("a Win32 semaphore"))
        }
    })
}

/// Takes one unit, waiting up to `timeout_ms` (negative: forever).
#[no_mangle]
pub extern "C" fn shmkit_native_semaphore_wait(
    sem: *mut shmkit_native_semaphore,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_native_semaphore_wait", || {
        let s = get::<NativeSemaphore>(sem as usize, Kind::NativeSemaphore)?;
        #[cfg(windows)]
        {
            match timeout(timeout_ms) {
                Some(t) => Ok(s.wait_timeout(t).map_err(once(timeout_ms))?),
                None => Ok(s.wait()?),
            }
        }
        #[cfg(not(windows))]
        {
            let _ = (s, timeout(timeout_ms));
            Err(unsupported("a Win32 semaphore"))
        }
    })
}

/// Adds `n` units; `*previous` (may be NULL) gets the count before.
#[no_mangle]
pub unsafe extern "C" fn shmkit_native_semaphore_release(
    sem: *mut shmkit_native_semaphore,
    n: u32,
    previous: *mut u32,
) -> shmkit_status {
    run("shmkit_native_semaphore_release", || {
        let s = get::<NativeSemaphore>(sem as usize, Kind::NativeSemaphore)?;
        #[cfg(windows)]
        {
            let before = s.release(n)?;
            // SAFETY: NULL or writable per the header's conventions.
            unsafe { put(previous, before) };
            Ok(())
        }
        #[cfg(not(windows))]
        {
            let _ = (s, n, previous);
            Err(unsupported("a Win32 semaphore"))
        }
    })
}

/// Closes the handle.
#[no_mangle]
pub extern "C" fn shmkit_native_semaphore_close(
    sem: *mut shmkit_native_semaphore,
) -> shmkit_status {
    run("shmkit_native_semaphore_close", || {
        remove::<NativeSemaphore>(sem as usize, Kind::NativeSemaphore).map(drop)
    })
}

/// Creates or opens Win32 mutex `os_name` (`exclusive`: fail if it exists).
#[no_mangle]
pub unsafe extern "C" fn shmkit_native_mutex_create(
    os_name: *const c_char,
    exclusive: bool,
    mutex: *mut *mut shmkit_native_mutex,
) -> shmkit_status {
    run("shmkit_native_mutex_create", || {
        out("mutex", mutex)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(windows)]
        {
            let m = if exclusive {
                shmkit::sync::NativeMutex::create(os_name)?
            } else {
                shmkit::sync::NativeMutex::create_or_open(os_name)?
            };
            let entry = NativeMutexEntry {
                mutex: std::sync::Arc::new(m),
                held: std::sync::Mutex::new(None),
            };
            hand_out(Kind::NativeMutex, mutex, entry)
        }
        #[cfg(not(windows))]
        {
            let _ = (os_name, exclusive);
            Err(unsupported("a Win32 mutex"))
        }
    })
}

/// Locks Win32 mutex, waiting up to `timeout_ms` (negative: forever);
/// `SHMKIT_ERR_OWNER_DIED`: held, but abandoned by a thread that ended holding it.
#[no_mangle]
pub extern "C" fn shmkit_native_mutex_lock(
    mutex: *mut shmkit_native_mutex,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_native_mutex_lock", || {
        let entry = get::<NativeMutexEntry>(mutex as usize, Kind::NativeMutex)?;
        #[cfg(windows)]
        {
            use shmkit::sync::LockError;
            let mut died = false;
            let wait = timeout(timeout_ms);
            let held = HeldNative::try_new(entry.mutex.clone(), |m| {
                let r = match wait {
                    Some(t) => m.lock_timeout(t),
                    None => m.lock(),
                };
                match r {
                    Ok(g) => Ok(g),
                    Err(LockError::OwnerDied(g)) => {
                        died = true;
                        Ok(g)
                    }
                    Err(LockError::Failed(e)) => Err(once(timeout_ms)(e)),
                }
            })?;
            let mut slot = entry.held.lock().unwrap_or_else(|p| p.into_inner());
            *slot = Some((std::thread::current().id(), held));
            if died {
                return Err(Failure::from(shmkit::Error::OwnerDied {
                    object: entry.mutex.name().into(),
                }));
            }
            Ok(())
        }
        #[cfg(not(windows))]
        {
            let _ = (entry, timeout(timeout_ms));
            Err(unsupported("a Win32 mutex"))
        }
    })
}

/// Unlocks the Win32 mutex, on the thread that locked it.
#[no_mangle]
pub extern "C" fn shmkit_native_mutex_unlock(mutex: *mut shmkit_native_mutex) -> shmkit_status {
    run("shmkit_native_mutex_unlock", || {
        let entry = get::<NativeMutexEntry>(mutex as usize, Kind::NativeMutex)?;
        #[cfg(windows)]
        {
            let mut slot = entry.held.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some((thread, held)) if thread == std::thread::current().id() => {
                    drop(held);
                    Ok(())
                }
                Some(other) => {
                    *slot = Some(other);
                    Err(Failure::new(
                        SHMKIT_ERR_INVALID_ARGUMENT,
                        format!(
                            "{}: a Win32 mutex is unlocked by the thread that locked it",
                            entry.mutex.name()
                        ),
                    ))
                }
                None => Err(Failure::new(
                    SHMKIT_ERR_INVALID_ARGUMENT,
                    format!("{}: not locked through this handle", entry.mutex.name()),
                )),
            }
        }
        #[cfg(not(windows))]
        {
            let _ = entry;
            Err(unsupported("a Win32 mutex"))
        }
    })
}

/// Closes the handle.
#[no_mangle]
pub extern "C" fn shmkit_native_mutex_close(mutex: *mut shmkit_native_mutex) -> shmkit_status {
    run("shmkit_native_mutex_close", || {
        remove::<NativeMutexEntry>(mutex as usize, Kind::NativeMutex).map(drop)
    })
}

/// Creates or opens Win32 event `os_name` (`flags` as for `shmkit_event_create`).
#[no_mangle]
pub unsafe extern "C" fn shmkit_native_event_create(
    os_name: *const c_char,
    flags: u32,
    exclusive: bool,
    event: *mut *mut shmkit_native_event,
) -> shmkit_status {
    run("shmkit_native_event_create", || {
        out("event", event)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(windows)]
        {
            use crate::sync::{SHMKIT_EVENT_AUTO_RESET, SHMKIT_EVENT_INITIALLY_SET};
            use shmkit::sync::EventMode;
            let mode = if flags & SHMKIT_EVENT_AUTO_RESET != 0 {
                EventMode::AutoReset
            } else {
                EventMode::ManualReset
            };
            let set = flags & SHMKIT_EVENT_INITIALLY_SET != 0;
            let e = if exclusive {
                NativeEvent::create(os_name, mode, set)?
            } else {
                NativeEvent::create_or_open(os_name, mode, set)?
            };
            hand_out(Kind::NativeEvent, event, e)
        }
        #[cfg(not(windows))]
        {
            let _ = (os_name, flags, exclusive);
            Err(unsupported("a Win32 event"))
        }
    })
}

/// Sets the Win32 event.
#[no_mangle]
pub extern "C" fn shmkit_native_event_set(event: *mut shmkit_native_event) -> shmkit_status {
    run("shmkit_native_event_set", || {
        let e = get::<NativeEvent>(event as usize, Kind::NativeEvent)?;
        #[cfg(windows)]
        {
            Ok(e.set()?)
        }
        #[cfg(not(windows))]
        {
            let _ = e;
            Err(unsupported("a Win32 event"))
        }
    })
}

/// Waits for the Win32 event, up to `timeout_ms` (negative: forever).
#[no_mangle]
pub extern "C" fn shmkit_native_event_wait(
    event: *mut shmkit_native_event,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_native_event_wait", || {
        let e = get::<NativeEvent>(event as usize, Kind::NativeEvent)?;
        #[cfg(windows)]
        {
            match timeout(timeout_ms) {
                Some(t) => Ok(e.wait_timeout(t).map_err(once(timeout_ms))?),
                None => Ok(e.wait()?),
            }
        }
        #[cfg(not(windows))]
        {
            let _ = (e, timeout(timeout_ms));
            Err(unsupported("a Win32 event"))
        }
    })
}

/// Closes the handle.
#[no_mangle]
pub extern "C" fn shmkit_native_event_close(event: *mut shmkit_native_event) -> shmkit_status {
    run("shmkit_native_event_close", || {
        remove::<NativeEvent>(event as usize, Kind::NativeEvent).map(drop)
    })
}

#[cfg(unix)]
use shmkit::sync::PosixSemaphore;
#[cfg(not(unix))]
struct PosixSemaphore;

/// Creates (`exclusive`: fail if it exists) or opens POSIX semaphore `os_name`
/// (`/name`) with value `initial`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_posix_semaphore_create(
    os_name: *const c_char,
    initial: u32,
    exclusive: bool,
    sem: *mut *mut shmkit_posix_semaphore,
) -> shmkit_status {
    run("shmkit_posix_semaphore_create", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(unix)]
        {
            let s = if exclusive {
                PosixSemaphore::create(os_name, initial)?
            } else {
                PosixSemaphore::create_or_open(os_name, initial)?
            };
            hand_out(Kind::PosixSemaphore, sem, s)
        }
        #[cfg(not(unix))]
        {
            let _ = (os_name, initial, exclusive);
            Err(unsupported("a POSIX semaphore"))
        }
    })
}

/// Opens POSIX semaphore `os_name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_posix_semaphore_open(
    os_name: *const c_char,
    sem: *mut *mut shmkit_posix_semaphore,
) -> shmkit_status {
    run("shmkit_posix_semaphore_open", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(unix)]
        {
            hand_out(Kind::PosixSemaphore, sem, PosixSemaphore::open(os_name)?)
        }
        #[cfg(not(unix))]
        {
            let _ = os_name;
            Err(unsupported("a POSIX semaphore"))
        }
    })
}

/// `sem_wait` with a timeout in milliseconds (negative: forever).
#[no_mangle]
pub extern "C" fn shmkit_posix_semaphore_wait(
    sem: *mut shmkit_posix_semaphore,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_posix_semaphore_wait", || {
        let s = get::<PosixSemaphore>(sem as usize, Kind::PosixSemaphore)?;
        #[cfg(unix)]
        {
            match timeout(timeout_ms) {
                Some(t) => Ok(s.wait_timeout(t).map_err(once(timeout_ms))?),
                None => Ok(s.wait()?),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (s, timeout(timeout_ms));
            Err(unsupported("a POSIX semaphore"))
        }
    })
}

/// `sem_post`.
#[no_mangle]
pub extern "C" fn shmkit_posix_semaphore_post(sem: *mut shmkit_posix_semaphore) -> shmkit_status {
    run("shmkit_posix_semaphore_post", || {
        let s = get::<PosixSemaphore>(sem as usize, Kind::PosixSemaphore)?;
        #[cfg(unix)]
        {
            Ok(s.post()?)
        }
        #[cfg(not(unix))]
        {
            let _ = s;
            Err(unsupported("a POSIX semaphore"))
        }
    })
}

/// `sem_unlink`: removes the name.
#[no_mangle]
pub unsafe extern "C" fn shmkit_posix_semaphore_remove(os_name: *const c_char) -> shmkit_status {
    run("shmkit_posix_semaphore_remove", || {
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        #[cfg(unix)]
        {
            Ok(PosixSemaphore::remove(os_name)?)
        }
        #[cfg(not(unix))]
        {
            let _ = os_name;
            Err(unsupported("a POSIX semaphore"))
        }
    })
}

/// Closes the handle (`sem_close`).
#[no_mangle]
pub extern "C" fn shmkit_posix_semaphore_close(sem: *mut shmkit_posix_semaphore) -> shmkit_status {
    run("shmkit_posix_semaphore_close", || {
        remove::<PosixSemaphore>(sem as usize, Kind::PosixSemaphore).map(drop)
    })
}
