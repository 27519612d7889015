//! Named `Mutex` (with owner-died), `Semaphore` and `Event`.

use crate::args::{out, put, text, timeout};
use crate::calls::{this_thread, Gate};
use crate::handle::{get, insert, remove, Kind};
use crate::pollable::{on_ready, pollable, shmkit_descriptor, shmkit_ready_fn, would_block};
use crate::status::{once, run, shmkit_status, shmkit_status::*, Failure};
use shmkit::sync::{ArcMutexGuard, Event, EventMode, LockError, LockResult, Mutex, Semaphore};
use shmkit::{Interrupter, Shm};
use std::ffi::{c_char, c_void};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// A pollable handle's wait in progress (`*_async` of an `Arc` of the object),
/// kept between its try calls; dropped, it has taken nothing.
type Waiting<T> = parking_lot::Mutex<Option<BoxedWait<T>>>;

/// A wait's future, owning what it waits on.
type BoxedWait<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Polls the wait in `slot`, starting it with `start` if none is in progress.
/// `None`: pending (the readiness's waker is registered).
fn poll_waiting<T>(
    slot: &Waiting<T>,
    ready: &Arc<crate::pollable::Readiness>,
    start: impl FnOnce() -> BoxedWait<T>,
) -> Option<T> {
    let mut slot = slot.lock();
    let waiting = slot.get_or_insert_with(start);
    match ready.poll(|cx| waiting.as_mut().poll(cx)) {
        Poll::Ready(out) => {
            *slot = None;
            Some(out)
        }
        Poll::Pending => None,
    }
}

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

/// Bytes a mutex, semaphore or event takes inside a segment
/// (`shmkit_mutex_init_in`, `shmkit_semaphore_init_in`, `shmkit_event_init_in`):
/// give each its own 8-byte aligned range of this many bytes, apart from the data.
pub const SHMKIT_SYNC_SIZE_IN_SEGMENT: u64 = 64;

const _: () = assert!(
    SHMKIT_SYNC_SIZE_IN_SEGMENT == Mutex::<()>::size_in_segment()
        && SHMKIT_SYNC_SIZE_IN_SEGMENT == Semaphore::SIZE_IN_SEGMENT
        && SHMKIT_SYNC_SIZE_IN_SEGMENT == Event::SIZE_IN_SEGMENT
);

/// `shmkit_event_create` flag: each set lets one wait through (default: stays set
/// until reset).
pub const SHMKIT_EVENT_AUTO_RESET: u32 = 1;
/// `shmkit_event_create` flag: created set.
pub const SHMKIT_EVENT_INITIALLY_SET: u32 = 2;

/// A lock held through a handle, and the thread that took it.
struct Held {
    guard: ArcMutexGuard<()>,
    /// From `calls::this_thread` (readable even in a thread-exit destructor).
    thread: usize,
}

pub(crate) struct MutexEntry {
    pub(crate) mutex: Arc<Mutex>,
    /// The segment holding an in-segment mutex (`*_init_in`, `*_open_in`): kept
    /// open with the handle, whatever happens to the segment's own handle.
    _segment: Option<Arc<Shm>>,
    pub(crate) gate: Gate,
    /// The lock, while this handle holds it.
    held: parking_lot::Mutex<Option<Held>>,
    /// A pollable handle's lock in progress.
    waiting: Waiting<LockResult<ArcMutexGuard<()>>>,
}

fn mutex_out(out_ptr: *mut *mut shmkit_mutex, m: Mutex) -> Result<(), Failure> {
    mutex_out_in(out_ptr, m, None)
}

fn mutex_out_in(
    out_ptr: *mut *mut shmkit_mutex,
    m: Mutex,
    segment: Option<Arc<Shm>>,
) -> Result<(), Failure> {
    let entry = MutexEntry {
        _segment: segment,
        gate: Gate::new(m.name(), m.interrupter()),
        mutex: Arc::new(m),
        held: parking_lot::Mutex::new(None),
        waiting: parking_lot::Mutex::new(None),
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

/// Opens mutex `name`, creating it if needed, **persistent**: it stays, with its
/// state, after its last user closes it (until `shmkit_shm_remove(name)`), so a
/// process that starts after an owner died holding it still gets
/// `SHMKIT_ERR_OWNER_DIED` from its first lock. (A temporary mutex would be gone
/// once nobody had it open. A mutex inside a persistent segment,
/// `shmkit_mutex_init_in`, does the same beside the data it guards.)
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_create_or_open_persistent(
    name: *const c_char,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    // SAFETY: the caller's pointers, per the header's conventions.
    unsafe {
        open_named(
            "shmkit_mutex_create_or_open_persistent",
            name,
            mutex,
            |n| Mutex::create_or_open_persistent(n, ()),
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

/// The segment behind `shm` (checked) and the output (checked), for `*_in`.
fn segment_and_out<H>(
    shm: *mut crate::segment::shmkit_shm,
    out_handle: *mut *mut H,
    out_name: &str,
) -> Result<Arc<Shm>, Failure> {
    out(out_name, out_handle)?;
    get::<Shm>(shm as usize, Kind::Shm)
}

/// Initialises a new, unlocked mutex at `offset` (a multiple of 8) of segment
/// `shm`, taking `SHMKIT_SYNC_SIZE_IN_SEGMENT` bytes, and opens it. Do this once,
/// when the segment is made, before other processes `shmkit_mutex_open_in` it:
/// initialising over a mutex in use breaks it.
///
/// A mutex in a segment lives as long as the segment: in a `SHMKIT_PERSISTENT`
/// segment, a holder's death is reported (`SHMKIT_ERR_OWNER_DIED`) even to a
/// process that opens it after every other user has gone. A named mutex
/// (`shmkit_mutex_create`) is temporary: it goes away with its last user, and
/// its owner's death with it. The handle keeps the segment open and mapped,
/// even after `shmkit_shm_close(shm)`.
#[no_mangle]
pub extern "C" fn shmkit_mutex_init_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    run("shmkit_mutex_init_in", || {
        let seg = segment_and_out(shm, mutex, "the output handle")?;
        let m = Mutex::init_in(&seg, offset, ())?;
        mutex_out_in(mutex, m, Some(seg))
    })
}

/// Opens the mutex at `offset` of segment `shm` (made there by
/// `shmkit_mutex_init_in`, in this or another process). `SHMKIT_ERR_CORRUPT` if
/// no shmkit object was initialised there, `SHMKIT_ERR_MISMATCH` if another kind
/// was. The handle keeps the segment open and mapped.
#[no_mangle]
pub extern "C" fn shmkit_mutex_open_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    mutex: *mut *mut shmkit_mutex,
) -> shmkit_status {
    run("shmkit_mutex_open_in", || {
        let seg = segment_and_out(shm, mutex, "the output handle")?;
        let m = Mutex::<()>::open_in(&seg, offset)?;
        mutex_out_in(mutex, m, Some(seg))
    })
}

fn lock(function: &str, m: *mut shmkit_mutex, wait: Option<std::time::Duration>) -> shmkit_status {
    run(function, || {
        let entry = get::<MutexEntry>(m as usize, Kind::Mutex)?;
        let _call = entry.gate.enter()?;
        let me = this_thread();
        if entry.held.lock().as_ref().is_some_and(|h| h.thread == me) {
            return Err(Failure::new(
                SHMKIT_ERR_BUSY,
                format!(
                    "{}: this thread already holds this mutex through this handle \
                     (it is not recursive: unlock it first)",
                    entry.mutex.name()
                ),
            ));
        }
        let taken = match (wait, entry.gate.polled()) {
            (Some(t), Some(r)) if t.is_zero() => {
                let m = &entry.mutex;
                poll_waiting(&entry.waiting, r, || Box::pin(m.lock_arc_async()))
                    .ok_or_else(|| would_block(m.name(), "the mutex is held"))?
            }
            (Some(t), None) if t.is_zero() => entry.mutex.try_lock_arc(),
            (Some(t), _) => entry.mutex.lock_arc_timeout(t),
            (None, _) => entry.mutex.lock_arc(),
        };
        let (guard, died) = match taken {
            Ok(g) => (g, false),
            Err(LockError::OwnerDied(g)) => (g, true),
            Err(LockError::Failed(e)) => return Err(e.into()),
        };
        let mut held = entry.held.lock();
        if entry.gate.is_closed() {
            // Locked just as the handle was closed: the close releases what the
            // handle holds, so this lock goes too.
            drop(guard);
            return Err(entry.gate.closed_failure());
        }
        *held = Some(Held { guard, thread: me });
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
/// `SHMKIT_ERR_BUSY`: this thread already holds it through this handle (the
/// mutex is not recursive). `SHMKIT_ERR_CLOSED`: the handle was closed from
/// another thread while this waited.
#[no_mangle]
pub extern "C" fn shmkit_mutex_lock(m: *mut shmkit_mutex, timeout_ms: i64) -> shmkit_status {
    lock("shmkit_mutex_lock", m, timeout(timeout_ms))
}

/// Locks the mutex if it is free now: `SHMKIT_ERR_WOULD_BLOCK` if not
/// (`SHMKIT_ERR_BUSY` if this thread holds it through this handle). On a
/// pollable handle (`shmkit_mutex_pollable`), WOULD_BLOCK arms its descriptor,
/// and so does `shmkit_mutex_lock` with timeout 0.
#[no_mangle]
pub extern "C" fn shmkit_mutex_try_lock(m: *mut shmkit_mutex) -> shmkit_status {
    lock("shmkit_mutex_try_lock", m, Some(std::time::Duration::ZERO))
}

/// Unlocks the mutex (locked through this handle).
#[no_mangle]
pub extern "C" fn shmkit_mutex_unlock(m: *mut shmkit_mutex) -> shmkit_status {
    run("shmkit_mutex_unlock", || {
        let entry = get::<MutexEntry>(m as usize, Kind::Mutex)?;
        let held = entry.held.lock().take();
        match held {
            Some(h) => {
                drop(h.guard);
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
        let mut held = entry.held.lock();
        match held.as_mut() {
            Some(h) => {
                h.guard.mark_consistent();
                Ok(())
            }
            None => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("{}: not locked through this handle", entry.mutex.name()),
            )),
        }
    })
}

/// Closes the handle, unlocking the mutex if this handle holds it. A lock call
/// blocked on this handle on another thread returns `SHMKIT_ERR_CLOSED`; the
/// close waits for it to leave, so the mutex is free for other handles and
/// processes when this returns.
#[no_mangle]
pub extern "C" fn shmkit_mutex_close(m: *mut shmkit_mutex) -> shmkit_status {
    run("shmkit_mutex_close", || {
        let entry = remove::<MutexEntry>(m as usize, Kind::Mutex)?;
        entry.gate.close();
        let held = entry.held.lock().take();
        drop(held);
        let waiting = entry.waiting.lock().take();
        drop(waiting);
        Ok(())
    })
}

/// A semaphore or event and the calls in progress on its handle.
pub(crate) struct Waitable<T> {
    pub(crate) object: Arc<T>,
    pub(crate) gate: Gate,
    /// The segment holding an in-segment object, kept open with the handle.
    _segment: Option<Arc<Shm>>,
    /// A pollable handle's wait in progress.
    waiting: Waiting<shmkit::Result<()>>,
}

impl<T> Waitable<T> {
    fn new(name: &str, object: T, interrupter: Interrupter, segment: Option<Arc<Shm>>) -> Self {
        Waitable {
            object: Arc::new(object),
            gate: Gate::new(name, interrupter),
            _segment: segment,
            waiting: parking_lot::Mutex::new(None),
        }
    }

    /// A wait with timeout 0: on a pollable handle, polls `wait_async` (kept
    /// between calls); else tries once.
    fn try_wait(
        &self,
        name: &str,
        op: &str,
        wait_async: fn(Arc<T>) -> BoxedWait<shmkit::Result<()>>,
        try_once: impl FnOnce(&T) -> shmkit::Result<()>,
    ) -> Result<(), Failure> {
        match self.gate.polled() {
            Some(r) => poll_waiting(&self.waiting, r, || wait_async(self.object.clone()))
                .ok_or_else(|| would_block(name, op))?
                .map_err(Failure::from),
            None => try_once(&self.object).map_err(|e| once(0)(e).into()),
        }
    }

    fn close(&self) {
        self.gate.close();
        let waiting = self.waiting.lock().take();
        drop(waiting);
    }
}

fn semaphore_out(out_ptr: *mut *mut shmkit_semaphore, s: Semaphore) -> Result<(), Failure> {
    semaphore_out_in(out_ptr, s, None)
}

fn semaphore_out_in(
    out_ptr: *mut *mut shmkit_semaphore,
    s: Semaphore,
    segment: Option<Arc<Shm>>,
) -> Result<(), Failure> {
    let (name, stop) = (s.name().to_string(), s.interrupter());
    let h = insert(Kind::Semaphore, Waitable::new(&name, s, stop, segment))?;
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

/// Initialises a new semaphore with count `initial` and maximum `max` at `offset`
/// (a multiple of 8) of segment `shm`, taking `SHMKIT_SYNC_SIZE_IN_SEGMENT` bytes,
/// and opens it. Do this once, before other processes `shmkit_semaphore_open_in`
/// it. Its count lives as long as the segment; the handle keeps the segment open.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_init_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    initial: u32,
    max: u32,
    sem: *mut *mut shmkit_semaphore,
) -> shmkit_status {
    run("shmkit_semaphore_init_in", || {
        let seg = segment_and_out(shm, sem, "sem")?;
        let s = Semaphore::init_in(&seg, offset, initial, max)?;
        semaphore_out_in(sem, s, Some(seg))
    })
}

/// Opens the semaphore at `offset` of segment `shm` (see
/// `shmkit_semaphore_init_in`). The handle keeps the segment open.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_open_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    sem: *mut *mut shmkit_semaphore,
) -> shmkit_status {
    run("shmkit_semaphore_open_in", || {
        let seg = segment_and_out(shm, sem, "sem")?;
        let s = Semaphore::open_in(&seg, offset)?;
        semaphore_out_in(sem, s, Some(seg))
    })
}

/// Takes one unit, waiting up to `timeout_ms` (negative: forever; 0: not at all,
/// `SHMKIT_ERR_WOULD_BLOCK` if none is free, which on a pollable handle,
/// `shmkit_semaphore_pollable`, arms its descriptor; `SHMKIT_ERR_TIMEOUT` when a
/// positive timeout passes).
#[no_mangle]
pub extern "C" fn shmkit_semaphore_wait(
    sem: *mut shmkit_semaphore,
    timeout_ms: i64,
) -> shmkit_status {
    run("shmkit_semaphore_wait", || {
        let s = get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?;
        let _call = s.gate.enter()?;
        match timeout(timeout_ms) {
            Some(t) if t.is_zero() => s.try_wait(
                s.object.name(),
                "no unit free now (the count is 0)",
                |s| Box::pin(async move { s.wait_async().await }),
                |s| s.wait_timeout(t),
            ),
            Some(t) => Ok(s.object.wait_timeout(t).map_err(once(timeout_ms))?),
            None => Ok(s.object.wait()?),
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
        let s = get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?;
        let before = s.object.release(n)?;
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
        let s = get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?;
        // SAFETY: checked by `out`.
        unsafe { put(count, s.object.count()) };
        Ok(())
    })
}

/// Closes the handle. A wait blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED`; the close waits for it to leave.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_close(sem: *mut shmkit_semaphore) -> shmkit_status {
    run("shmkit_semaphore_close", || {
        remove::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?.close();
        Ok(())
    })
}

fn event_out(out_ptr: *mut *mut shmkit_event, e: Event) -> Result<(), Failure> {
    event_out_in(out_ptr, e, None)
}

fn event_out_in(
    out_ptr: *mut *mut shmkit_event,
    e: Event,
    segment: Option<Arc<Shm>>,
) -> Result<(), Failure> {
    let (name, stop) = (e.name().to_string(), e.interrupter());
    let h = insert(Kind::Event, Waitable::new(&name, e, stop, segment))?;
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

/// Initialises a new event at `offset` (a multiple of 8) of segment `shm`, taking
/// `SHMKIT_SYNC_SIZE_IN_SEGMENT` bytes, and opens it; `flags` as for
/// `shmkit_event_create`. Do this once, before other processes
/// `shmkit_event_open_in` it. The handle keeps the segment open.
#[no_mangle]
pub extern "C" fn shmkit_event_init_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    flags: u32,
    event: *mut *mut shmkit_event,
) -> shmkit_status {
    run("shmkit_event_init_in", || {
        let seg = segment_and_out(shm, event, "event")?;
        let (mode, set) = event_flags(flags)?;
        let e = Event::init_in(&seg, offset, mode, set)?;
        event_out_in(event, e, Some(seg))
    })
}

/// Opens the event at `offset` of segment `shm` (see `shmkit_event_init_in`).
/// The handle keeps the segment open.
#[no_mangle]
pub extern "C" fn shmkit_event_open_in(
    shm: *mut crate::segment::shmkit_shm,
    offset: u64,
    event: *mut *mut shmkit_event,
) -> shmkit_status {
    run("shmkit_event_open_in", || {
        let seg = segment_and_out(shm, event, "event")?;
        let e = Event::open_in(&seg, offset)?;
        event_out_in(event, e, Some(seg))
    })
}

/// Sets the event.
#[no_mangle]
pub extern "C" fn shmkit_event_set(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_set", || {
        Ok(get::<Waitable<Event>>(event as usize, Kind::Event)?
            .object
            .set()?)
    })
}

/// Resets the event.
#[no_mangle]
pub extern "C" fn shmkit_event_reset(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_reset", || {
        Ok(get::<Waitable<Event>>(event as usize, Kind::Event)?
            .object
            .reset()?)
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
        let set = get::<Waitable<Event>>(event as usize, Kind::Event)?
            .object
            .is_set()?;
        // SAFETY: checked by `out`.
        unsafe { put(is_set, set) };
        Ok(())
    })
}

/// Waits until the event is set, up to `timeout_ms` (negative: forever; 0: not
/// at all, `SHMKIT_ERR_WOULD_BLOCK` if it is not set, which on a pollable
/// handle, `shmkit_event_pollable`, arms its descriptor).
#[no_mangle]
pub extern "C" fn shmkit_event_wait(event: *mut shmkit_event, timeout_ms: i64) -> shmkit_status {
    run("shmkit_event_wait", || {
        let e = get::<Waitable<Event>>(event as usize, Kind::Event)?;
        let _call = e.gate.enter()?;
        match timeout(timeout_ms) {
            Some(t) if t.is_zero() => e.try_wait(
                e.object.name(),
                "the event is not set",
                |e| Box::pin(async move { e.wait_async().await }),
                |e| e.wait_timeout(t),
            ),
            Some(t) => Ok(e.object.wait_timeout(t).map_err(once(timeout_ms))?),
            None => Ok(e.object.wait()?),
        }
    })
}

/// Closes the handle. A wait blocked on this handle on another thread returns
/// `SHMKIT_ERR_CLOSED`; the close waits for it to leave.
#[no_mangle]
pub extern "C" fn shmkit_event_close(event: *mut shmkit_event) -> shmkit_status {
    run("shmkit_event_close", || {
        remove::<Waitable<Event>>(event as usize, Kind::Event)?.close();
        Ok(())
    })
}

/// Gives a new descriptor for this mutex handle that an event loop can wait on,
/// owned by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_mutex_try_lock` (or
/// `shmkit_mutex_lock` with timeout 0) that returns `SHMKIT_ERR_WOULD_BLOCK` arms
/// it: it becomes ready when the mutex may be free (or its holder died). Nothing
/// is taken until a try succeeds.
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_pollable(
    m: *mut shmkit_mutex,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_mutex_pollable", || {
        pollable(descriptor, || {
            get::<MutexEntry>(m as usize, Kind::Mutex)?.gate.readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time this mutex may be free, or at
/// once, on this thread, if the handle is ready now; makes the handle pollable.
/// See `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_mutex_on_ready(
    m: *mut shmkit_mutex,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_mutex_on_ready", || {
        on_ready(callback, user_data, || {
            get::<MutexEntry>(m as usize, Kind::Mutex)?.gate.readiness()
        })
    })
}

/// Gives a new descriptor for this semaphore handle that an event loop can wait
/// on, owned by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_semaphore_wait` with
/// timeout 0 that returns `SHMKIT_ERR_WOULD_BLOCK` arms it: it becomes ready when
/// a unit may have been released. Nothing is taken until a wait succeeds.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_pollable(
    sem: *mut shmkit_semaphore,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_semaphore_pollable", || {
        pollable(descriptor, || {
            get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?
                .gate
                .readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time a unit may have been
/// released, or at once, on this thread, if the handle is ready now; makes the
/// handle pollable. See `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_semaphore_on_ready(
    sem: *mut shmkit_semaphore,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_semaphore_on_ready", || {
        on_ready(callback, user_data, || {
            get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore)?
                .gate
                .readiness()
        })
    })
}

/// Gives a new descriptor for this event handle that an event loop can wait on,
/// owned by the caller (release it with `shmkit_pollable_close`); see
/// `shmkit_sender_pollable` for the contract. A `shmkit_event_wait` with timeout
/// 0 that returns `SHMKIT_ERR_WOULD_BLOCK` arms it: it becomes ready when the
/// event may have been set. (An auto-reset event's signal is taken by the wait
/// that succeeds, not by the descriptor.)
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_pollable(
    event: *mut shmkit_event,
    descriptor: *mut shmkit_descriptor,
) -> shmkit_status {
    run("shmkit_event_pollable", || {
        pollable(descriptor, || {
            get::<Waitable<Event>>(event as usize, Kind::Event)?
                .gate
                .readiness()
        })
    })
}

/// Calls `callback(user_data)` once, the next time the event may have been set,
/// or at once, on this thread, if the handle is ready now; makes the handle
/// pollable. See `shmkit_sender_on_ready`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_event_on_ready(
    event: *mut shmkit_event,
    callback: shmkit_ready_fn,
    user_data: *mut c_void,
) -> shmkit_status {
    run("shmkit_event_on_ready", || {
        on_ready(callback, user_data, || {
            get::<Waitable<Event>>(event as usize, Kind::Event)?
                .gate
                .readiness()
        })
    })
}
