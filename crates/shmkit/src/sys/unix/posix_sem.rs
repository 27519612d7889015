//! POSIX named semaphores (`sem_open`), for talking to programs that use them.

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// An open POSIX named semaphore; closed (not removed) on drop.
#[derive(Debug)]
pub(crate) struct PosixSem(NonNull<libc::sem_t>);

// SAFETY: a sem_t from sem_open is process-wide and its functions are thread-safe.
unsafe impl Send for PosixSem {}
// SAFETY: as for Send.
unsafe impl Sync for PosixSem {}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

impl PosixSem {
    /// `sem_open(name, O_CREAT | O_EXCL, mode, initial)`.
    pub(crate) fn create(name: &str, mode: u32, initial: u32) -> io::Result<PosixSem> {
        let n = c_name(name)?;
        // SAFETY: n is NUL-terminated; the variadic arguments are the mode and the
        // initial value that O_CREAT requires, promoted as C expects.
        let p = unsafe {
            libc::sem_open(
                n.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                mode as libc::c_uint,
                initial as libc::c_uint,
            )
        };
        Self::from_ptr(p)
    }

    /// `sem_open(name, 0)`.
    pub(crate) fn open(name: &str) -> io::Result<PosixSem> {
        let n = c_name(name)?;
        // SAFETY: n is NUL-terminated; without O_CREAT no more arguments are read.
        let p = unsafe { libc::sem_open(n.as_ptr(), 0) };
        Self::from_ptr(p)
    }

    fn from_ptr(p: *mut libc::sem_t) -> io::Result<PosixSem> {
        if p == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p)
            .map(PosixSem)
            .ok_or_else(|| io::Error::other("sem_open returned null"))
    }

    /// `sem_unlink(name)`.
    pub(crate) fn unlink(name: &str) -> io::Result<()> {
        let n = c_name(name)?;
        // SAFETY: n is NUL-terminated.
        if unsafe { libc::sem_unlink(n.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `sem_trywait`: true if a unit was taken.
    pub(crate) fn try_wait(&self) -> io::Result<bool> {
        loop {
            // SAFETY: self.0 is an open semaphore.
            if unsafe { libc::sem_trywait(self.0.as_ptr()) } == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(false),
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
    }

    /// Waits for a unit; false if `timeout` passed first.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let done = match deadline {
                None => {
                    // SAFETY: self.0 is an open semaphore.
                    unsafe { libc::sem_wait(self.0.as_ptr()) == 0 }
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return self.try_wait();
                    }
                    if self.wait_for(left)? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            if done {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// One bounded wait of at most `left`; false on timeout or interruption.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn wait_for(&self, left: Duration) -> io::Result<bool> {
        // sem_timedwait takes a CLOCK_REALTIME deadline; the caller loops on the
        // monotonic clock, so a clock step only shortens or lengthens one round.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let nanos = now.tv_nsec as u64 + left.subsec_nanos() as u64;
        let abs = libc::timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(left.as_secs().min(i32::MAX as u64) as libc::time_t)
                .saturating_add((nanos / 1_000_000_000) as libc::time_t),
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: open semaphore, valid timespec.
        if unsafe { libc::sem_timedwait(self.0.as_ptr(), &abs) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ETIMEDOUT) | Some(libc::EINTR) => Ok(false),
            _ => Err(e),
        }
    }

    /// macOS has no sem_timedwait: poll.
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    fn wait_for(&self, left: Duration) -> io::Result<bool> {
        if self.try_wait()? {
            return Ok(true);
        }
        std::thread::sleep(left.min(Duration::from_millis(1)));
        Ok(false)
    }

    /// `sem_post`.
    pub(crate) fn post(&self) -> io::Result<()> {
        // SAFETY: self.0 is an open semaphore.
        if unsafe { libc::sem_post(self.0.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `sem_getvalue`.
    #[cfg(not(target_os = "macos"))]
    pub(crate) fn value(&self) -> io::Result<i32> {
        let mut v = 0;
        // SAFETY: open semaphore, valid out pointer.
        if unsafe { libc::sem_getvalue(self.0.as_ptr(), &mut v) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }

    /// macOS has no `sem_getvalue`.
    #[cfg(target_os = "macos")]
    pub(crate) fn value(&self) -> io::Result<i32> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        // SAFETY: opened by sem_open, closed once here.
        unsafe { libc::sem_close(self.0.as_ptr()) };
    }
}
