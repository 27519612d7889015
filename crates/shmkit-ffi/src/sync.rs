//! Named `Mutex` (with owner-died), `Semaphore` and `Event`.

use crate::args::{out, put, text, timeout};
use crate::handle::{get, insert, remove, Kind};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure};
use shmkit::sync::{Event, EventMode, LockError, Mutex, MutexGuard, Semaphore};
use std::ffi::c_char;
use std::sync::Arc;

/// A named cross-process mutex.
pub struct shmkit_mutex {
    _opaque: (),
}

/// A named counting semaphore.
pub struct shmkit_semaphore {
    _opaque: (),
}

/// A named event.
pub struct shmkit_event {
    _opaque: (),
}

/// `shmkit_event_create` flag: each set lets one wait through (default: stays set
/// until reset).
pub const SHMKIT_EVENT_AUTO_RESET: u32 = 1;
/// `shmkit_event_create` flag: created set.
pub const SHMKIT_EVENT_INITIALLY_SET: u32 = 2;

type Guard<'a> = MutexGuard<'a, ()>;

self_cell::self_cell!(
    /// A lock held on a mutex, kept with the mutex it borrows.
    pub(crate) struct HeldLock {
        owner: Arc<Mutex>,
        #[covariant]
        dependent: Guard,
    }
);

// SAFETY: the guard is `!Send` only to keep unlocking on the locking thread, as
// std's guards do; shmkit records a mutex's owner by process id (no thread id in
// its state), so unlocking from another thread of the process follows the
// protocol, and C code may unlock where it likes.
unsafe impl Send for HeldLock {}

pub(crate) struct MutexEntry {
    mutex: Arc<Mutex>,
    /// The lock, while this handle holds it.
    held: std::sync::Mutex<Option<HeldLock>>,
}

fn slot(e: &MutexEntry) -> std::sync::MutexGuard<'_, Option<HeldLock>> {
    e.held.lock().unwrap_or_else(|p| p.into_inner())
}

fn mutex_out(out_ptr: *mut *mut shmkit_mutex, m: Mutex) -> Result<(), Failure> {
    let entry = MutexEntry {
        mutex: Arc::new(m),
        held: std::sync::Mutex::new(None),
    };
    let h = insert(Kind::Mutex, entry)?;
    // SAFETY: checked by `out` first.
    unsafe { put(out_ptr, h as *mut shmkit_mutex) };
    Ok(())
}

/// The body of every `*_open`-like function: check the output, read the name,
/// open, hand out the handle.
unsafe fn open_named<H, T>(
    function: &str,
    name: *const c_char,
    out_handle: *mut *mut H,
    open: impl FnOnce(&str) -> shmkit::Result<T>,
    wrap: fn(*mut *mut H, T) -> Result<(), Failure>,
) -> shmkit_status {
    run(function, || {
        out("the output handle", out_handle)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        wrap(out_handle, open(name)?)
    })
}

/// Creates mutex `name`; `SHMKIT_ERR_ALREADY_EXISTS` if the name is taken.
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_create(
    name: *const c_char,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe {
        open_named(
            "shmkit_mutex_create",
            name,
            mutex,
            |n| Mutex::create(n, ()),
            mutex_out,
        )
    }
}

/// Opens mutex `name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_open(
    name: *const c_char,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe {
        open_named(
            "shmkit_mutex_open",
            name,
            mutex,
            Mutex::<()>::open,
            mutex_out,
        )
    }
}

/// Opens mutex `name`, creating it if needed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_create_or_open(
    name: *const c_char,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe {
        open_named(
            "shmkit_mutex_create_or_open",
            name,
            mutex,
            |n| Mutex::create_or_open(n, ()),
            mutex_out,
        )
    }
}

fn lock(function: &str, m: *mut shmkit_mutex, wait: Option<std::time::Duration>) -> shmkit_status {
    run(function, || {
        let entry = get::<MutexEntry>(m as usize, Kind::Mutex)?;
        let mut died = false;
        let held = HeldLock::try_new(entry.mutex.clone(), |mx| {
            let r = match wait {
                Some(t) if t.is_zero() => mx.try_lock(),
                Some(t) => mx.lock_timeout(t),
                None => mx.lock(),
            };
            match r {
                Ok(g) => Ok(g),
                Err(LockError::OwnerDied(g)) => {
                    died = true;
                    Ok(g)
                }
                Err(LockError::Failed(e)) => Err(e),
            }
        })?;
        *slot(&entry) = Some(held);
        if died {
            return Err(Failure::from(shmkit::Error::OwnerDied {
                object: entry.mutex.name().into(),
            }));
        }
        Ok(())
    })
}

/// Locks the mutex, waiting up to `timeout_ms` (negative: `SHMKIT_FOREVER`).
/// `SHMKIT_ERR_OWNER_DIED` means the lock **is held** but its last holder died
/// holding it: repair the data, `shmkit_mutex_mark_consistent`, then unlock.
#[no_mangle]
pub extern "C" fn shmkit_mutex_lock(m: *mut shmkit_mutex, timeout_ms: i64) -> shmkit_status {
    lock("shmkit_mutex_lock", m, timeout(timeout_ms))
}

/// Locks the mutex if it is free now: `SHMKIT_ERR_WOULD_BLOCK` if not.
#[no_mangle]
pub extern "C" fn shmkit_mutex_try_lock(m: *mut shmkit_mutex) -> shmkit_status {
    lock("shmkit_mutex_try_lock", m, Some(std::time::Duration::ZERO))
}

/// Unlocks the mutex (locked through this handle).
#[no_mangle]
pub extern "C" fn shmkit_mutex_unlock(m: *mut shmkit_mutex) -> shmkit_status {
    run("shmkit_mutex_unlock", || {
        let entry = get::<MutexEntry>(m as usize, Kind::Mutex)?;
        let held = slot(&entry).take();
        match held {
            Some(h) => {
                drop(h);
                Ok(())
            }
            None => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("{}: not locked through this handle", entry.mutex.name()),
            )),
        }
    })
}

/// Declares the guarded data repaired after `SHMKIT_ERR_OWNER_DIED` (the mutex
/// must be held through this handle).
#[no_mangle]
pub extern "C" fn shmkit_mutex_mark_consistent(m: *mut shmkit_mutex) -> shmkit_status {
    run("shmkit_mutex_mark_consistent", || {
        let entry = get::<MutexEntry>(m as usize, Kind::Mutex)?;
        let mut held = slot(&entry);
        match held.as_mut() {
            Some(h) => {
                h.with_dependent_mut(|_, g| g.mark_consistent());
                Ok(())
            }
            None => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("{}: not locked through this handle", entry.mutex.name()),
            )),
        }
    })
}

/// Closes the handle (unlocking the mutex if this handle holds it).
#[no_mangle]
pub extern "C" fn shmkit_mutex_close(m: *mut shmkit_mutex) -> shmkit_status {
    run("shmkit_mutex_close", || remove(m as usize, Kind::Mutex))
}

fn semaphore_out(out_ptr: *mut *mut shmkit_semaphore, s: Semaphore) -> Result<(), Failure> {
    let h = insert(Kind::Semaphore, s)?;
    // SAFETY: checked by `out` first.
    unsafe { put(out_ptr, h as *mut shmkit_semaphore) };
    Ok(())
}

/// Creates semaphore `name` with count `initial` and maximum `max`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_create(
    name: *const c_char,
    initial: u32,
    max: u32,
    sem: *mut *mut shmkit_semaphore,
) -> shmkit_status {
    run("shmkit_semaphore_create", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        semaphore_out(sem, Semaphore::create(name, initial, max)?)
    })
}

/// Opens semaphore `name`, creating it with `initial` and `max` if needed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_create_or_open(
    name: *const c_char,
    initial: u32,
    max: u32,
    sem: *mut *mut shmkit_semaphore,
) -> shmkit_status {
    run("shmkit_semaphore_create_or_open", || {
        out("sem", sem)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        semaphore_out(sem, Semaphore::create_or_open(name, initial, max)?)
    })
}

/// Opens semaphore `name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_open(
    name: *const c_char,
    sem: *mut *mut shmkit_semaphore,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe {
        open_named(
            "shmkit_semaphore_open",
            name,
            sem,
            Semaphore::open,
            semaphore_out,
        )
    }
}

/// Takes one unit, waiting up to `timeout_ms` (negative: forever; 0: not at all,
/// `SHMKIT_ERR_TIMEOUT` if none is free).
#[no_mangle]
pub extern "C" fn shmkit_semaphore_wait(
    sem: *mut shmkit_semaphore,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_semaphore_wait", || {
        let s = get::<Semaphore>(sem as usize, Kind::Semaphore)?;
        match timeout(timeout_ms) {
            Some(t) => Ok(s.wait_timeout(t)?),
            None => Ok(s.wait()?),
        }
    })
}

/// Adds `n` units; `*previous` (may be NULL) gets the count before.
/// `SHMKIT_ERR_ABOVE_MAXIMUM` (and no change) past the maximum.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_release(
    sem: *mut shmkit_semaphore,
    n: u32,
    previous: *mut u32,
) -> shmkit_status {
    run("shmkit_semaphore_release", || {
        let s = get::<Semaphore>(sem as usize, Kind::Semaphore)?;
        let before = s.release(n)?;
        // SAFETY: NULL or writable per the header's conventions.
        unsafe { put(previous, before) };
        Ok(())
    })
}

/// The current count (it may change at once).
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_count(
    sem: *mut shmkit_semaphore,
    count: *mut u32,
) -> shmkit_status {
    run("shmkit_semaphore_count", || {
        out("count", count)?;
        let s = get::<Semaphore>(sem as usize, Kind::Semaphore)?;
        // SAFETY: checked by `out`.
        unsafe { put(count, s.count()) };
        Ok(())
    })
}

/// Closes the handle.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_close(sem: *mut shmkit_semaphore) -> shmkit_status {
    run("shmkit_semaphore_close", || {
        remove(sem as usize, Kind::Semaphore)
    })
}

fn event_out(out_ptr: *mut *mut shmkit_event, e: Event) -> Result<(), Failure> {
    let h = insert(Kind::Event, e)?;
    // SAFETY: checked by `out` first.
    unsafe { put(out_ptr, h as *mut shmkit_event) };
    Ok(())
}

fn event_flags(flags: u32) -> Result<(EventMode, bool), Failure> {
    if flags & !(SHMKIT_EVENT_AUTO_RESET | SHMKIT_EVENT_INITIALLY_SET) != 0 {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("unknown event flags {flags:#x}"),
        ));
    }
    let mode = if flags & SHMKIT_EVENT_AUTO_RESET != 0 {
        EventMode::AutoReset
    } else {
        EventMode::ManualReset
    };
    Ok((mode, flags & SHMKIT_EVENT_INITIALLY_SET != 0))
}

/// Creates event `name`; `flags`: `SHMKIT_EVENT_AUTO_RESET`, `SHMKIT_EVENT_INITIALLY_SET`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_create(
    name: *const c_char,
    flags: u32,
    event: *mut *mut shmkit_event,
) -> shmkit_status {
    run("shmkit_event_create", || {
        out("event", event)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let (mode, set) = event_flags(flags)?;
        event_out(event, Event::create(name, mode, set)?)
    })
}

/// Opens event `name`, creating it with `flags` if needed.
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_create_or_open(
    name: *const c_char,
    flags: u32,
    event: *mut *mut shmkit_event,
) -> shmkit_status {
    run("shmkit_event_create_or_open", || {
        out("event", event)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let (mode, set) = event_flags(flags)?;
        event_out(event, Event::create_or_open(name, mode, set)?)
    })
}

/// Opens event `name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_open(
    name: *const c_char,
    event: *mut *mut shmkit_event,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe { open_named("shmkit_event_open", name, event, Event::open, event_out) }
}

/// Sets the event.
#[no_mangle]
pub extern "C" fn shmkit_event_set(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_set", || {
        Ok(get::<Event>(event as usize, Kind::Event)?.set()?)
    })
}

/// Resets the event.
#[no_mangle]
pub extern "C" fn shmkit_event_reset(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_reset", || {
        Ok(get::<Event>(event as usize, Kind::Event)?.reset()?)
    })
}

/// Whether the event is set now.
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_is_set(
    event: *mut shmkit_event,
    is_set: *mut bool,
) -> shmkit_status {
    run("shmkit_event_is_set", || {
        out("is_set", is_set)?;
        let set = get::<Event>(event as usize, Kind::Event)?.is_set()?;
        // SAFETY: checked by `out`.
        unsafe { put(is_set, set) };
        Ok(())
    })
}

/// Waits until the event is set, up to `timeout_ms` (negative: forever).
#[no_mangle]
pub extern "C" fn shmkit_event_wait(event: *mut shmkit_event, timeout_ms: i64) -> shmkit_status {
    run("shmkit_event_wait", || {
        let e = get::<Event>(event as usize, Kind::Event)?;
        match timeout(timeout_ms) {
            Some(t) => Ok(e.wait_timeout(t)?),
            None => Ok(e.wait()?),
        }
    })
}

/// Closes the handle.
#[no_mangle]
pub extern "C" fn shmkit_event_close(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_close", || remove(event as usize, Kind::Event))
}
