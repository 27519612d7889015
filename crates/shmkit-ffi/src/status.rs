//! Status codes, the thread-local last error, and the guard every exported
//! function runs in (no panic crosses the boundary).

use shmkit::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
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
}

use shmkit_status::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failure on its way to C: the status and the message for `shmkit_last_error`.
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
        _ => SHMKIT_ERR_OS,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(status_of(&e), e.to_string())
    }
}

pub(crate) type Outcome = Result<(), Failure>;

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs an exported function's body: its failure becomes a status and the last
/// error message (cleared on success); a panic becomes `SHMKIT_ERR_INTERNAL`.
pub(crate) fn run(function: &str, body: impl FnOnce() -> Outcome) -> shmkit_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            SHMKIT_OK
        }
        Ok(Err(f)) => {
            set_last_error(&format!("{function}: {}", f.message));
            f.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "{function}: internal error (a bug in shmkit): {what}"
            ));
            SHMKIT_ERR_INTERNAL
        }
    }
}

/// The message of the last failed call on this thread, naming the object and the
/// cause (`""` after a successful call). Valid until the next shmkit call on this
/// thread; never NULL.
#[no_mangle]
pub extern "C" fn shmkit_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code (`"SHMKIT_ERR_TIMEOUT"`), never NULL.
#[no_mangle]
pub extern "C" fn shmkit_status_name(status: i32) -> *const c_char {
    // An int, not the enum: a C caller may pass any integer.
    let code = status;
    let names: &[&'static [u8]] = &[
        b"SHMKIT_OK\0",
        b"SHMKIT_ERR_INVALID_ARGUMENT\0",
        b"SHMKIT_ERR_NULL_POINTER\0",
        b"SHMKIT_ERR_BAD_HANDLE\0",
        b"SHMKIT_ERR_INVALID_UTF8\0",
        b"SHMKIT_ERR_NOT_FOUND\0",
        b"SHMKIT_ERR_ALREADY_EXISTS\0",
        b"SHMKIT_ERR_PERMISSION_DENIED\0",
        b"SHMKIT_ERR_OUT_OF_SPACE\0",
        b"SHMKIT_ERR_OUT_OF_BOUNDS\0",
        b"SHMKIT_ERR_MISMATCH\0",
        b"SHMKIT_ERR_CORRUPT\0",
        b"SHMKIT_ERR_TRUNCATED\0",
        b"SHMKIT_ERR_INIT_FAILED\0",
        b"SHMKIT_ERR_TIMEOUT\0",
        b"SHMKIT_ERR_WOULD_BLOCK\0",
        b"SHMKIT_ERR_DISCONNECTED\0",
        b"SHMKIT_ERR_LAGGED\0",
        b"SHMKIT_ERR_OWNER_DIED\0",
        b"SHMKIT_ERR_OCCUPIED\0",
        b"SHMKIT_ERR_TOO_LONG\0",
        b"SHMKIT_ERR_BUFFER_TOO_SMALL\0",
        b"SHMKIT_ERR_ABOVE_MAXIMUM\0",
        b"SHMKIT_ERR_UNSUPPORTED\0",
        b"SHMKIT_ERR_CALLBACK\0",
        b"SHMKIT_ERR_INTERNAL\0",
        b"SHMKIT_ERR_OS\0",
    ];
    let name = usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
        .unwrap_or(b"unknown status\0");
    name.as_ptr().cast()
}
