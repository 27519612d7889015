//! Adapter for POSIX named semaphores, to synchronise with programs that use
//! `sem_open` (C, C++, Python's `posix_ipc`).

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::name;
use crate::sys::PosixSem;

/// A POSIX named semaphore (`sem_open`), by its exact OS name (`"/name"`).
///
/// Use it to talk to programs that are not shmkit's; between shmkit programs,
/// [`Semaphore`](super::Semaphore) is faster (no system call when nobody waits),
/// has a maximum count, and works on Windows too. POSIX semaphores have no
/// maximum, and they persist until [`remove`](Self::remove)d.
///
/// ```
/// use shmkit::sync::PosixSemaphore;
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("/doc-posix-sem-{}", std::process::id());
/// let sem = PosixSemaphore::create(&name, 0)?;
/// // A C program: sem_t *s = sem_open("/name", 0); sem_post(s);
/// sem.post()?;
/// sem.wait_timeout(std::time::Duration::from_secs(1))?;
/// PosixSemaphore::remove(&name)?;
/// # Ok(()) }
/// ```
pub struct PosixSemaphore {
    sem: PosixSem,
    name: String,
}

impl PosixSemaphore {
    /// Creates the semaphore `os_name` with count `initial`, owner-only (0600);
    /// [`Error::AlreadyExists`] if it exists.
    pub fn create(os_name: &str, initial: u32) -> Result<PosixSemaphore> {
        Self::create_with_mode(os_name, initial, 0o600)
    }

    /// Like [`create`](Self::create) with explicit permission bits (the process
    /// umask applies, as with `sem_open`).
    pub fn create_with_mode(os_name: &str, initial: u32, mode: u32) -> Result<PosixSemaphore> {
        name::validate_raw(os_name)?;
        if initial > i32::MAX as u32 {
            return Err(Error::InvalidArgument {
                object: os_name.into(),
                reason: format!("initial count {initial} is above SEM_VALUE_MAX"),
            });
        }
        let sem = PosixSem::create(os_name, mode, initial)
            .map_err(|e| Error::from_io(os_name, "sem_open", e, 0))?;
        Ok(PosixSemaphore {
            sem,
            name: os_name.to_owned(),
        })
    }

    /// Opens the existing semaphore `os_name`; [`Error::NotFound`] if there is none.
    pub fn open(os_name: &str) -> Result<PosixSemaphore> {
        name::validate_raw(os_name)?;
        let sem = PosixSem::open(os_name).map_err(|e| Error::from_io(os_name, "sem_open", e, 0))?;
        Ok(PosixSemaphore {
            sem,
            name: os_name.to_owned(),
        })
    }

    /// Opens the semaphore, or creates it with count `initial`.
    pub fn create_or_open(os_name: &str, initial: u32) -> Result<PosixSemaphore> {
        loop {
            match Self::create(os_name, initial) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Self::open(os_name) {
                // Removed between our create and open: try again.
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
        }
    }

    /// Removes the name (`sem_unlink`); processes that have it open keep using it.
    pub fn remove(os_name: &str) -> Result<()> {
        name::validate_raw(os_name)?;
        PosixSem::unlink(os_name).map_err(|e| Error::from_io(os_name, "sem_unlink", e, 0))
    }

    /// The OS name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one unit, waiting as long as it takes (`sem_wait`).
    pub fn wait(&self) -> Result<()> {
        self.sem
            .wait(None)
            .map(|_| ())
            .map_err(|e| self.io("sem_wait", e))
    }

    /// Takes one unit if available now (`sem_trywait`); returns whether it did.
    pub fn try_wait(&self) -> Result<bool> {
        self.sem.try_wait().map_err(|e| self.io("sem_trywait", e))
    }

    /// Takes one unit, waiting at most `timeout`; [`Error::Timeout`] after that.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        match self.sem.wait(Some(timeout)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout {
                object: (&self.name).into(),
                op: "take a unit",
                after: timeout,
            }),
            Err(e) => Err(self.io("sem_timedwait", e)),
        }
    }

    /// Adds one unit (`sem_post`); an error if the count is at `SEM_VALUE_MAX`.
    pub fn post(&self) -> Result<()> {
        self.sem.post().map_err(|e| self.io("sem_post", e))
    }

    /// The current count (`sem_getvalue`; [`Error::Unsupported`] on macOS,
    /// which lacks it).
    pub fn value(&self) -> Result<u32> {
        match self.sem.value() {
            Ok(v) => Ok(v.max(0) as u32),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Err(Error::Unsupported {
                object: (&self.name).into(),
                what: "reading a POSIX semaphore's count",
            }),
            Err(e) => Err(self.io("sem_getvalue", e)),
        }
    }

    fn io(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::from_io(&self.name, op, e, 0)
    }
}

impl fmt::Debug for PosixSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixSemaphore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
