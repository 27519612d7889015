//! Adapters for Windows' named kernel objects, to synchronise with Win32 programs
//! (`CreateSemaphore`, `CreateMutex`, `CreateEvent`) by their exact names.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::name;
use crate::sys::{KernelKind, KernelObject, WaitOutcome};

use super::event::EventMode;
use super::mutex::{LockError, LockResult};
use super::semaphore::SEMAPHORE_MAX;

/// `ERROR_INVALID_HANDLE`: the name belongs to a kernel object of another type.
const ERROR_INVALID_HANDLE: i32 = 6;
/// `ERROR_TOO_MANY_POSTS`: a semaphore release above the maximum.
const ERROR_TOO_MANY_POSTS: i32 = 298;

fn kernel_error(object: &str, op: &'static str, e: std::io::Error, expected: &str) -> Error {
    if e.raw_os_error() == Some(ERROR_INVALID_HANDLE) {
        return Error::WrongKind {
            object: object.into(),
            found: "kernel object of another type".into(),
            expected: expected.into(),
        };
    }
    Error::from_io(object, op, e, 0)
}

/// Opens or creates `os_name`; with `exclusive`, an existing object is
/// `AlreadyExists`.
fn create(os_name: &str, kind: KernelKind, exclusive: bool, what: &str) -> Result<KernelObject> {
    name::validate_raw(os_name)?;
    let (obj, created) = KernelObject::create(os_name, kind)
        .map_err(|e| kernel_error(os_name, "create", e, what))?;
    if exclusive && !created {
        return Err(Error::AlreadyExists {
            object: os_name.into(),
        });
    }
    Ok(obj)
}

fn open(os_name: &str, kind: KernelKind, what: &str) -> Result<KernelObject> {
    name::validate_raw(os_name)?;
    KernelObject::open(os_name, kind).map_err(|e| kernel_error(os_name, "open", e, what))
}

/// What a semaphore wait waits to do, for timeout messages.
const TAKE: &str = "take a unit";
/// What an event wait waits for.
const SEE_SET: &str = "see the event set";

/// Waits on `obj`; a timeout says what the caller was waiting to do (`op`).
fn wait(
    obj: &KernelObject,
    name: &str,
    op: &'static str,
    timeout: Option<Duration>,
) -> Result<WaitOutcome> {
    match obj.wait(timeout) {
        Ok(WaitOutcome::TimedOut) => Err(Error::Timeout {
            object: name.into(),
            op,
            after: timeout.unwrap_or_default(),
        }),
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(Error::from_io(name, "WaitForSingleObject", e, 0)),
    }
}

/// A Windows named semaphore (`CreateSemaphoreW`), by its exact name
/// (`"Local\\WriteMap"`, or `"WriteMap"` as many Win32 programs name them).
pub struct NativeSemaphore {
    obj: KernelObject,
    name: String,
}

impl NativeSemaphore {
    fn kind(initial: u32, max: u32, os_name: &str) -> Result<KernelKind> {
        if max == 0 || max > SEMAPHORE_MAX || initial > max {
            return Err(Error::InvalidArgument {
                object: os_name.into(),
                reason: format!(
                    "need 0 <= initial ({initial}) <= max ({max}), 1 <= max <= {SEMAPHORE_MAX}"
                ),
            });
        }
        Ok(KernelKind::Semaphore {
            initial: initial as i32,
            max: max as i32,
        })
    }

    /// Creates the semaphore; [`Error::AlreadyExists`] if the name exists.
    pub fn create(os_name: &str, initial: u32, max: u32) -> Result<NativeSemaphore> {
        let kind = Self::kind(initial, max, os_name)?;
        Ok(Self::wrap(
            create(os_name, kind, true, "semaphore")?,
            os_name,
        ))
    }

    /// Opens the semaphore, or creates it (Windows' `CreateSemaphoreW` behaviour).
    pub fn create_or_open(os_name: &str, initial: u32, max: u32) -> Result<NativeSemaphore> {
        let kind = Self::kind(initial, max, os_name)?;
        Ok(Self::wrap(
            create(os_name, kind, false, "semaphore")?,
            os_name,
        ))
    }

    /// Opens an existing semaphore; [`Error::NotFound`] naming it if there is none.
    pub fn open(os_name: &str) -> Result<NativeSemaphore> {
        let kind = KernelKind::Semaphore { initial: 0, max: 1 };
        Ok(Self::wrap(open(os_name, kind, "semaphore")?, os_name))
    }

    fn wrap(obj: KernelObject, name: &str) -> NativeSemaphore {
        NativeSemaphore {
            obj,
            name: name.to_owned(),
        }
    }

    /// The OS name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn wait(&self) -> Result<()> {
        wait(&self.obj, &self.name, TAKE, None).map(drop)
    }

    /// Takes one unit if available now; returns whether it did.
    pub fn try_wait(&self) -> Result<bool> {
        match wait(&self.obj, &self.name, TAKE, Some(Duration::ZERO)) {
            Ok(_) => Ok(true),
            Err(Error::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes one unit, waiting at most `timeout`; [`Error::Timeout`] after that.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        wait(&self.obj, &self.name, TAKE, Some(timeout)).map(drop)
    }

    /// Adds `n`; returns the previous count. [`Error::AboveMaximum`] if that would
    /// pass the maximum (the count is then unchanged, as Windows guarantees).
    pub fn release(&self, n: u32) -> Result<u32> {
        if n == 0 || n > SEMAPHORE_MAX {
            return Err(Error::InvalidArgument {
                object: (&self.name).into(),
                reason: format!("release count {n} is not in 1..={SEMAPHORE_MAX}"),
            });
        }
        match self.obj.release_semaphore(n as i32) {
            Ok(previous) => Ok(previous.max(0) as u32),
            // Windows tells neither the count nor the maximum: none is invented.
            Err(e) if e.raw_os_error() == Some(ERROR_TOO_MANY_POSTS) => Err(Error::AboveMaximum {
                object: (&self.name).into(),
                count: None,
                release: n,
                max: None,
            }),
            Err(e) => Err(Error::from_io(&self.name, "ReleaseSemaphore", e, 0)),
        }
    }
}

/// A Windows named mutex (`CreateMutexW`). Ownership is per thread, as in Win32.
/// An owner that ended without releasing it (`WAIT_ABANDONED`) is reported to the
/// next locker as [`LockError::OwnerDied`]. Windows itself forgets the
/// abandonment after reporting it once; the Win32 program that shares the mutex
/// defines what happens after that, so this adapter cannot keep it poisoned.
pub struct NativeMutex {
    obj: KernelObject,
    name: String,
    /// The thread that created it owned (see [`NativeMutex::create_locked`]).
    created_owned_by: Option<std::thread::ThreadId>,
    /// Created owned, and the guard not taken yet.
    initially_held: std::sync::atomic::AtomicBool,
}

/// Holds a [`NativeMutex`]; releases it when dropped (on the same thread).
pub struct NativeMutexGuard<'a> {
    mutex: &'a NativeMutex,
    _not_send: PhantomData<*const ()>,
}

impl NativeMutex {
    /// Creates the mutex (not owned); [`Error::AlreadyExists`] if the name exists.
    pub fn create(os_name: &str) -> Result<NativeMutex> {
        let kind = KernelKind::Mutex {
            initially_owned: false,
        };
        Ok(Self::wrap(create(os_name, kind, true, "mutex")?, os_name))
    }

    /// Creates the mutex owned by the calling thread, as the classic writer does
    /// with `CreateMutex(NULL, TRUE, name)`: no reader gets in before the data is
    /// written. Take the guard with [`initial_guard`](Self::initial_guard) on this
    /// thread; [`Error::AlreadyExists`] if the name exists.
    pub fn create_locked(os_name: &str) -> Result<NativeMutex> {
        let kind = KernelKind::Mutex {
            initially_owned: true,
        };
        let mut mutex = Self::wrap(create(os_name, kind, true, "mutex")?, os_name);
        mutex.created_owned_by = Some(std::thread::current().id());
        mutex.initially_held = true.into();
        Ok(mutex)
    }

    /// The guard of a mutex made with [`create_locked`](Self::create_locked),
    /// once, on the thread that created it (Win32 mutexes belong to a thread);
    /// `None` otherwise.
    pub fn initial_guard(&self) -> Option<NativeMutexGuard<'_>> {
        if self.created_owned_by != Some(std::thread::current().id()) {
            return None;
        }
        self.initially_held
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            .then(|| NativeMutexGuard {
                mutex: self,
                _not_send: PhantomData,
            })
    }

    /// Opens the mutex, or creates it.
    pub fn create_or_open(os_name: &str) -> Result<NativeMutex> {
        Ok(Self::wrap(
            create(
                os_name,
                KernelKind::Mutex {
                    initially_owned: false,
                },
                false,
                "mutex",
            )?,
            os_name,
        ))
    }

    /// Opens an existing mutex; [`Error::NotFound`] if there is none.
    pub fn open(os_name: &str) -> Result<NativeMutex> {
        Ok(Self::wrap(
            open(
                os_name,
                KernelKind::Mutex {
                    initially_owned: false,
                },
                "mutex",
            )?,
            os_name,
        ))
    }

    fn wrap(obj: KernelObject, name: &str) -> NativeMutex {
        NativeMutex {
            obj,
            name: name.to_owned(),
            created_owned_by: None,
            initially_held: false.into(),
        }
    }

    /// The OS name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> LockResult<NativeMutexGuard<'_>> {
        self.lock_for(None)
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<NativeMutexGuard<'_>> {
        self.lock_for(Some(timeout))
    }

    /// Locks if free now; [`Error::WouldBlock`] otherwise.
    pub fn try_lock(&self) -> LockResult<NativeMutexGuard<'_>> {
        match self.lock_for(Some(Duration::ZERO)) {
            Err(LockError::Failed(Error::Timeout { .. })) => {
                Err(LockError::Failed(Error::WouldBlock {
                    object: (&self.name).into(),
                    op: "lock",
                }))
            }
            other => other,
        }
    }

    fn lock_for(&self, timeout: Option<Duration>) -> LockResult<NativeMutexGuard<'_>> {
        let outcome = wait(&self.obj, &self.name, "lock", timeout).map_err(LockError::Failed)?;
        let guard = NativeMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match outcome {
            WaitOutcome::Abandoned => Err(LockError::OwnerDied(guard)),
            _ => Ok(guard),
        }
    }
}

impl Drop for NativeMutex {
    /// A mutex created locked whose guard was never taken is released here (on
    /// the creating thread; elsewhere Windows refuses, and the thread's exit
    /// abandons it).
    fn drop(&mut self) {
        drop(self.initial_guard());
    }
}

impl Drop for NativeMutexGuard<'_> {
    fn drop(&mut self) {
        // Fails only if this thread does not own it, which the guard rules out.
        let _ = self.mutex.obj.release_mutex();
    }
}

/// A Windows named event (`CreateEventW`), auto-reset or manual-reset.
pub struct NativeEvent {
    obj: KernelObject,
    name: String,
}

impl NativeEvent {
    fn kind(mode: EventMode, set: bool) -> KernelKind {
        KernelKind::Event {
            manual_reset: mode == EventMode::ManualReset,
            initially_set: set,
        }
    }

    /// Creates the event; [`Error::AlreadyExists`] if the name exists.
    pub fn create(os_name: &str, mode: EventMode, initially_set: bool) -> Result<NativeEvent> {
        let kind = Self::kind(mode, initially_set);
        Ok(Self::wrap(create(os_name, kind, true, "event")?, os_name))
    }

    /// Opens the event, or creates it.
    pub fn create_or_open(
        os_name: &str,
        mode: EventMode,
        initially_set: bool,
    ) -> Result<NativeEvent> {
        let kind = Self::kind(mode, initially_set);
        Ok(Self::wrap(create(os_name, kind, false, "event")?, os_name))
    }

    /// Opens an existing event; [`Error::NotFound`] if there is none.
    pub fn open(os_name: &str) -> Result<NativeEvent> {
        let kind = Self::kind(EventMode::AutoReset, false);
        Ok(Self::wrap(open(os_name, kind, "event")?, os_name))
    }

    fn wrap(obj: KernelObject, name: &str) -> NativeEvent {
        NativeEvent {
            obj,
            name: name.to_owned(),
        }
    }

    /// The OS name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `SetEvent`.
    pub fn set(&self) -> Result<()> {
        self.obj
            .set_event(true)
            .map_err(|e| Error::from_io(&self.name, "SetEvent", e, 0))
    }

    /// `ResetEvent`.
    pub fn reset(&self) -> Result<()> {
        self.obj
            .set_event(false)
            .map_err(|e| Error::from_io(&self.name, "ResetEvent", e, 0))
    }

    /// Waits until set.
    pub fn wait(&self) -> Result<()> {
        wait(&self.obj, &self.name, SEE_SET, None).map(drop)
    }

    /// Waits until set, at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        wait(&self.obj, &self.name, SEE_SET, Some(timeout)).map(drop)
    }
}

macro_rules! debug_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("name", &self.name).finish_non_exhaustive()
            }
        }
    )*};
}
debug_by_name!(NativeSemaphore, NativeMutex, NativeEvent);
