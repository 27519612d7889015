//! Sleeping until a 32-bit word in shared memory changes.
//!
//! Linux: `futex(2)` without `FUTEX_PRIVATE_FLAG`, so the kernel keys the wait
//! queue by the physical page and waiters in different processes that mapped the
//! same object meet. The relative timeout of `FUTEX_WAIT` runs on the monotonic
//! clock. Elsewhere (macOS, FreeBSD, which are only type-checked) waiting falls back
//! to short sleeps: correct, but slower to wake.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Per-object wake channel. On Unix the word itself is the channel, so this holds
/// nothing; it exists so that the layer above is the same on every platform.
#[derive(Debug)]
pub(crate) struct WakeChannel(());

impl WakeChannel {
    /// The channel for the word identified by `_key` (used on Windows only).
    pub(crate) fn open(_key: &str) -> std::io::Result<WakeChannel> {
        Ok(WakeChannel(()))
    }

    /// Sleeps while `word` holds `expected`, for at most `timeout` (forever if
    /// `None`). May return early (spuriously): callers re-check the word.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        futex_wait(word, expected, timeout)
    }

    /// Wakes up to `n` processes or threads sleeping on `word`.
    pub(crate) fn wake(&self, word: &AtomicU32, n: u32) {
        futex_wake(word, n)
    }
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the word is a live, aligned u32 for the duration of the call; the
    // kernel only reads it. EAGAIN (value changed), EINTR and ETIMEDOUT are all
    // "go and look again" for the caller, so the result is not needed.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: as for futex_wait; FUTEX_WAKE does not touch the word's contents.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    // No portable cross-process address wait: poll with a short sleep.
    const NAP: Duration = Duration::from_micros(500);
    if word.load(std::sync::atomic::Ordering::Acquire) == expected {
        std::thread::sleep(timeout.map_or(NAP, |t| t.min(NAP)));
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake(_word: &AtomicU32, _n: u32) {}
