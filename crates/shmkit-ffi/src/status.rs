//! Status codes, the thread-local last error, and the guard every exported
//! function runs in (no panic crosses the boundary).

use shmkit::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a shmkit function returns: `SHMKIT_OK` (0) or why it failed.
/// `shmkit_last_error()` says more (which object, what cause).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum shmkit_status {
    /// Success.
    SHMKIT_OK = 0,
    /// A name, size, offset, option or other argument cannot be used.
    SHMKIT_ERR_INVALID_ARGUMENT = 1,
    /// A pointer argument that must not be NULL is NULL.
    SHMKIT_ERR_NULL_POINTER = 2,
    /// The handle is closed, unknown, or of another kind than the function takes.
    SHMKIT_ERR_BAD_HANDLE = 3,
    /// A name is not valid UTF-8.
    SHMKIT_ERR_INVALID_UTF8 = 4,
    /// No object has that name.
    SHMKIT_ERR_NOT_FOUND = 5,
    /// The name is taken.
    SHMKIT_ERR_ALREADY_EXISTS = 6,
    /// The OS refused access, the mapping is read-only, or the object is not trusted.
    SHMKIT_ERR_PERMISSION_DENIED = 7,
    /// The backing store (/dev/shm, the disk) has no room.
    SHMKIT_ERR_OUT_OF_SPACE = 8,
    /// An access falls outside the object.
    SHMKIT_ERR_OUT_OF_BOUNDS = 9,
    /// An existing object differs from what was asked (kind, size, capacity...).
    SHMKIT_ERR_MISMATCH = 10,
    /// A header or shared state is foreign or corrupt.
    SHMKIT_ERR_CORRUPT = 11,
    /// Another process shrank the object under this mapping.
    SHMKIT_ERR_TRUNCATED = 12,
    /// A segment's creator died or failed while initialising it.
    SHMKIT_ERR_INIT_FAILED = 13,
    /// A wait's timeout passed.
    SHMKIT_ERR_TIMEOUT = 14,
    /// A call that must not wait could not proceed at once.
    SHMKIT_ERR_WOULD_BLOCK = 15,
    /// The peer at the other end closed its end or died.
    SHMKIT_ERR_DISCONNECTED = 16,
    /// A broadcast subscriber missed messages (how many: the call's `missed`).
    SHMKIT_ERR_LAGGED = 17,
    /// The mutex is now held by the caller, but its previous holder died holding
    /// it: repair the data, `shmkit_mutex_mark_consistent`, then unlock.
    SHMKIT_ERR_OWNER_DIED = 18,
    /// A role only one process may hold (receiver, publisher...) is taken.
    SHMKIT_ERR_OCCUPIED = 19,
    /// A message is longer than the channel's limit.
    SHMKIT_ERR_TOO_LONG = 20,
    /// The caller's buffer is too small; the call's length output says how large
    /// it must be, and the message stays queued.
    SHMKIT_ERR_BUFFER_TOO_SMALL = 21,
    /// A semaphore release would pass the maximum count.
    SHMKIT_ERR_ABOVE_MAXIMUM = 22,
    /// Not available on this platform.
    SHMKIT_ERR_UNSUPPORTED = 23,
    /// A callback returned non-zero (the call's effect was abandoned).
    SHMKIT_ERR_CALLBACK = 24,
    /// A bug in shmkit (a caught panic); the message says where.
    SHMKIT_ERR_INTERNAL = 25,
    /// Any other OS failure.
    SHMKIT_ERR_OS = 26,
    /// The handle was closed (by another thread, or from inside a callback) while
    /// the call was waiting on it or about to use it: the call's effect did not
    /// happen. Later calls on the handle get `SHMKIT_ERR_BAD_HANDLE`.
    SHMKIT_ERR_CLOSED = 27,
    /// The handle is in use in a way that forbids the call: the same thread is
    /// already in a call on it (a callback called a function on the handle that
    /// called it), or the call would wait on itself (locking a mutex this thread
    /// already holds through the handle).
    SHMKIT_ERR_BUSY = 28,
    /// Messages of a queue were lost before this receive: a receiver died while
    /// it read messages too long to hold (more than half the ring). Reported
    /// once, by the next receive of the receiver that took over; the message
    /// says how many, and the next call goes on with the next message.
    SHMKIT_ERR_LOST = 29,
}

/// The names of the statuses, from this list of the enum's variants: a variant
/// missing here, or one that does not exist, is a compile error (the match in
/// `name` is exhaustive), and each name is the variant's identifier, so the
/// table cannot drift from the enum. (The enum itself stays written out above,
/// not made by this macro: cbindgen reads it from the source to write
/// `shmkit.h`, and does not expand macros.)
macro_rules! status_names {
    ($($variant:ident),+ $(,)?) => {
        impl shmkit_status {
            /// Every status, in the order of the enum.
            pub(crate) const ALL: &'static [shmkit_status] = &[$(shmkit_status::$variant),+];

            /// The status's name (`"SHMKIT_ERR_TIMEOUT"`), NUL-terminated.
            pub(crate) const fn name(self) -> &'static CStr {
                match self {
                    $(shmkit_status::$variant => cstr(concat!(stringify!($variant), "\0")),)+
                }
            }
        }
    };
}

status_names!(
    SHMKIT_OK,
    SHMKIT_ERR_INVALID_ARGUMENT,
    SHMKIT_ERR_NULL_POINTER,
    SHMKIT_ERR_BAD_HANDLE,
    SHMKIT_ERR_INVALID_UTF8,
    SHMKIT_ERR_NOT_FOUND,
    SHMKIT_ERR_ALREADY_EXISTS,
    SHMKIT_ERR_PERMISSION_DENIED,
    SHMKIT_ERR_OUT_OF_SPACE,
    SHMKIT_ERR_OUT_OF_BOUNDS,
    SHMKIT_ERR_MISMATCH,
    SHMKIT_ERR_CORRUPT,
    SHMKIT_ERR_TRUNCATED,
    SHMKIT_ERR_INIT_FAILED,
    SHMKIT_ERR_TIMEOUT,
    SHMKIT_ERR_WOULD_BLOCK,
    SHMKIT_ERR_DISCONNECTED,
    SHMKIT_ERR_LAGGED,
    SHMKIT_ERR_OWNER_DIED,
    SHMKIT_ERR_OCCUPIED,
    SHMKIT_ERR_TOO_LONG,
    SHMKIT_ERR_BUFFER_TOO_SMALL,
    SHMKIT_ERR_ABOVE_MAXIMUM,
    SHMKIT_ERR_UNSUPPORTED,
    SHMKIT_ERR_CALLBACK,
    SHMKIT_ERR_INTERNAL,
    SHMKIT_ERR_OS,
    SHMKIT_ERR_CLOSED,
    SHMKIT_ERR_BUSY,
    SHMKIT_ERR_LOST,
);

/// A `&'static CStr` from a string literal ending in NUL, checked at compile time.
const fn cstr(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("a status name is not NUL-terminated"),
    }
}

use shmkit_status::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failure on its way to C: the status and the message for `shmkit_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: shmkit_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: shmkit_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// The status for a shmkit error.
pub(crate) fn status_of(e: &Error) -> shmkit_status {
    match e {
        Error::InvalidName { .. } | Error::InvalidSize { .. } | Error::InvalidArgument { .. } => {
            SHMKIT_ERR_INVALID_ARGUMENT
        }
        Error::OutOfBounds { .. } => SHMKIT_ERR_OUT_OF_BOUNDS,
        Error::TooLong { .. } => SHMKIT_ERR_TOO_LONG,
        Error::BufferTooSmall { .. } => SHMKIT_ERR_BUFFER_TOO_SMALL,
        Error::AboveMaximum { .. } => SHMKIT_ERR_ABOVE_MAXIMUM,
        Error::NotFound { .. } => SHMKIT_ERR_NOT_FOUND,
        Error::AlreadyExists { .. } => SHMKIT_ERR_ALREADY_EXISTS,
        Error::PermissionDenied { .. } | Error::ReadOnly { .. } | Error::Insecure { .. } => {
            SHMKIT_ERR_PERMISSION_DENIED
        }
        Error::OutOfSpace { .. } => SHMKIT_ERR_OUT_OF_SPACE,
        Error::WrongKind { .. } | Error::Mismatch { .. } | Error::UnsupportedVersion { .. } => {
            SHMKIT_ERR_MISMATCH
        }
        Error::NotShmkit { .. }
        | Error::CorruptHeader { .. }
        | Error::CorruptState { .. }
        | Error::Decode { .. } => SHMKIT_ERR_CORRUPT,
        Error::Truncated { .. } => SHMKIT_ERR_TRUNCATED,
        Error::CreatorDied { .. } | Error::InitFailed { .. } | Error::InitTimeout { .. } => {
            SHMKIT_ERR_INIT_FAILED
        }
        Error::Timeout { .. } => SHMKIT_ERR_TIMEOUT,
        Error::WouldBlock { .. } => SHMKIT_ERR_WOULD_BLOCK,
        Error::Disconnected { .. } => SHMKIT_ERR_DISCONNECTED,
        Error::Lagged { .. } => SHMKIT_ERR_LAGGED,
        Error::OwnerDied { .. } => SHMKIT_ERR_OWNER_DIED,
        Error::Occupied { .. } => SHMKIT_ERR_OCCUPIED,
        Error::Unsupported { .. } => SHMKIT_ERR_UNSUPPORTED,
        // The C ABI interrupts a handle's calls only to close it.
        Error::Interrupted { .. } => SHMKIT_ERR_CLOSED,
        Error::Lost { .. } => SHMKIT_ERR_LOST,
        _ => SHMKIT_ERR_OS,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if let Error::Interrupted { object, op } = &e {
            return Failure::new(
                SHMKIT_ERR_CLOSED,
                format!("{object}: the handle was closed while {op} was waiting on it"),
            );
        }
        Failure::new(status_of(&e), e.to_string())
    }
}

pub(crate) type Outcome = Result<(), Failure>;

/// The one rule for timeout 0 (the header's conventions): it tries once and
/// reports "nothing now" as `SHMKIT_ERR_WOULD_BLOCK`, as the queues' calls do,
/// also where the core's call is a timed wait that gives up with `Timeout`
/// (subscribers, RPC servers, semaphores, events). Use as `.map_err(once(ms))`.
pub(crate) fn once(timeout_ms: i64) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::Timeout { object, op, .. } if timeout_ms == 0 => Error::WouldBlock { object, op },
        e => e,
    }
}

/// Sets this thread's last error, if the thread still has one (not in a
/// destructor run after its thread-local storage was destroyed). Never panics.
fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = text;
        }
    });
}

/// The text of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs an exported function's body: its failure becomes a status and the last
/// error message (cleared on success); a panic becomes `SHMKIT_ERR_INTERNAL`.
///
/// Nothing here unwinds into C: the body, the message and the thread-local
/// storage are all handled inside `catch_unwind`, the thread-local through
/// `try_with` (it may be destroyed already when a thread-exit destructor calls
/// shmkit), and a panic payload that panics when dropped is leaked instead.
pub(crate) fn run(function: &str, body: impl FnOnce() -> Outcome) -> shmkit_status {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let (status, message) = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) => (SHMKIT_OK, String::new()),
            Ok(Err(f)) => (f.status, format!("{function}: {}", f.message)),
            Err(panic) => {
                let text = format!(
                    "{function}: internal error (a bug in shmkit): {}",
                    panic_text(&*panic)
                );
                if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
                    std::mem::forget(again);
                }
                (SHMKIT_ERR_INTERNAL, text)
            }
        };
        set_last_error(&message);
        status
    }));
    match outcome {
        Ok(status) => status,
        // Only a failure to format or store the message can get here.
        Err(panic) => {
            std::mem::forget(panic);
            SHMKIT_ERR_INTERNAL
        }
    }
}

/// The message of the last failed call on this thread, naming the object and the
/// cause (`""` after a successful call). Valid until the next shmkit call on this
/// thread; never NULL. In a thread-exit destructor that runs after shmkit's
/// thread-local storage was destroyed, a fixed text saying that the message is
/// not available (the calls still return their status).
#[no_mangle]
pub extern "C" fn shmkit_last_error() -> *const c_char {
    // Once this thread's message is gone (in a thread-exit destructor run after
    // shmkit's thread-local storage was destroyed) the call still returned its
    // status, but its message could not be kept. A local constant: csbindgen
    // copies a file's constants to C#.
    const NO_MESSAGE: &CStr =
        c"the message is not available: this thread is exiting and its shmkit \
        thread-local storage is destroyed (the status code is still right)";
    let current = catch_unwind(|| {
        LAST_ERROR
            .try_with(|e| e.try_borrow().map(|m| m.as_ptr()).ok())
            .ok()
            .flatten()
    });
    match current {
        Ok(Some(ptr)) => ptr,
        Ok(None) => NO_MESSAGE.as_ptr(),
        Err(panic) => {
            std::mem::forget(panic);
            NO_MESSAGE.as_ptr()
        }
    }
}

/// The name of a status code (`"SHMKIT_ERR_TIMEOUT"`), never NULL;
/// `"unknown status"` for a number that is none.
#[no_mangle]
pub extern "C" fn shmkit_status_name(status: i32) -> *const c_char {
    // An int, not the enum: a C caller may pass any integer.
    shmkit_status::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map_or(c"unknown status", |s| s.name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// The codes are 0, 1, 2... in the enum's order (C and the other bindings
    /// index by them), and each name round-trips through the exported function.
    #[test]
    fn status_codes_are_dense_and_named() {
        for (i, s) in shmkit_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32, "{s:?}");
            // SAFETY: shmkit_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(shmkit_status_name(i as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{s:?}"));
        }
        assert_eq!(SHMKIT_ERR_CLOSED as i32, 27);
        assert_eq!(SHMKIT_ERR_BUSY as i32, 28);
        assert_eq!(SHMKIT_ERR_LOST as i32, 29);
        for bad in [-1, shmkit_status::ALL.len() as i32, i32::MAX, i32::MIN] {
            // SAFETY: as above.
            let name = unsafe { CStr::from_ptr(shmkit_status_name(bad)) };
            assert_eq!(name.to_str().unwrap(), "unknown status");
        }
    }
}
