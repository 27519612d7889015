//! Checking what C passes in: pointers, strings, buffers, timeouts.

use crate::status::{shmkit_status::*, Failure};
use std::ffi::{c_char, CStr};
use std::time::Duration;

pub(crate) type Checked<T> = Result<T, Failure>;

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn text<'a>(what: &str, ptr: *const c_char) -> Checked<&'a str> {
    if ptr.is_null() {
        return Err(Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: not NULL; NUL-terminated and alive per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            SHMKIT_ERR_INVALID_UTF8,
            format!(
                "{what} {:?} is not valid UTF-8 ({e})",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// A byte buffer argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes<'a>(what: &str, ptr: *const u8, len: usize) -> Checked<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("{what} is NULL but its length is {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("{what}: length {len} is larger than any buffer"),
        ));
    }
    // SAFETY: not NULL, `len` bytes readable per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A writable byte buffer argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` writable bytes, not otherwise referenced,
/// that outlive `'a`.
pub(crate) unsafe fn bytes_mut<'a>(what: &str, ptr: *mut u8, len: usize) -> Checked<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("{what} is NULL but its length is {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("{what}: length {len} is larger than any buffer"),
        ));
    }
    // SAFETY: not NULL, `len` writable bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A writable array argument of `len` `T`s; NULL is allowed when `len` is 0.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` writable, aligned `T`s, not otherwise
/// referenced, that outlive `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(what: &str, ptr: *mut T, len: usize) -> Checked<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("{what} is NULL but its length is {len}"),
        ));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("{what}: length {len} is larger than any array"),
        ));
    }
    // SAFETY: not NULL, `len` writable `T`s per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Checks that an output pointer is not NULL (before doing anything else, so
/// that a call with a NULL output changes nothing).
pub(crate) fn out<T>(what: &str, ptr: *mut T) -> Checked<()> {
    if ptr.is_null() {
        return Err(Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    Ok(())
}

/// Writes an output that `out` checked.
///
/// # Safety
/// `ptr` is NULL (then nothing is written) or valid for a write of a `T`.
pub(crate) unsafe fn put<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: not NULL, writable per the caller's contract; C does not
        // promise alignment of every output, so write unaligned.
        unsafe { ptr.write_unaligned(value) }
    }
}

/// A timeout in milliseconds: negative waits forever (`SHMKIT_FOREVER`), 0 does
/// not wait.
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}
