//! A cross-process counting semaphore with a maximum count.

use std::fmt;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::Lifetime;
use crate::shm::Shm;

use super::protocol::{semaphore_release, semaphore_try_acquire, Attempt, ReleaseError};
use super::state::{watched_via_shared, Init, Kind, Shared, STATE_SIZE};
use crate::readiness::OpFuture;

/// The largest maximum count, the same as Windows' (`LONG` counts).
pub const SEMAPHORE_MAX: u32 = i32::MAX as u32;

/// A counting semaphore shared between processes: `wait` takes one unit (waiting
/// while the count is zero), `release(n)` adds `n` up to a fixed maximum.
///
/// The classic producer/consumer handshake uses two: "WriteMap" starting at 1 and
/// "ReadMap" at 0, both with maximum 1.
///
/// ```
/// use shmkit::sync::Semaphore;
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-sem-{}", std::process::id());
/// let sem = Semaphore::create(&name, 0, 1)?;
/// // In another process: Semaphore::open(&name)?.release(1)?;
/// sem.release(1)?;
/// sem.wait()?;
/// assert!(sem.try_wait()? == false); // count is 0 again
/// assert!(sem.release(2).is_err()); // above the maximum of 1
/// # Ok(()) }
/// ```
pub struct Semaphore {
    shared: Shared,
}

impl Semaphore {
    fn init(initial: u32, max: u32, object: &str) -> Result<Init<'static>> {
        if max == 0 || max > SEMAPHORE_MAX {
            return Err(Error::InvalidArgument {
                object: object.into(),
                reason: format!("maximum count {max} is not in 1..={SEMAPHORE_MAX}"),
            });
        }
        if initial > max {
            return Err(Error::InvalidArgument {
                object: object.into(),
                reason: format!("initial count {initial} is above the maximum {max}"),
            });
        }
        Ok(Init {
            kind: Kind::Semaphore,
            word: initial,
            param_a: max,
            param_b: 0,
            param_c: 0,
            value_type: Default::default(),
            value: &[],
        })
    }

    /// Creates a named semaphore with count `initial` and maximum `max`
    /// (`1..=SEMAPHORE_MAX`); [`Error::AlreadyExists`] if the name is taken.
    /// Temporary: it goes away when the last process using it closes it.
    pub fn create(name: &str, initial: u32, max: u32) -> Result<Semaphore> {
        let init = Self::init(initial, max, name)?;
        Ok(Semaphore {
            shared: Shared::create_named(name, &init, false, Lifetime::Temporary)?,
        })
    }

    /// Opens a named semaphore; [`Error::NotFound`] naming it if there is none.
    pub fn open(name: &str) -> Result<Semaphore> {
        Ok(Semaphore {
            shared: Shared::open_named(name, Kind::Semaphore, None)?,
        })
    }

    /// Opens the named semaphore, or creates it with `initial` and `max`. An
    /// existing one with another maximum is refused with [`Error::Mismatch`].
    pub fn create_or_open(name: &str, initial: u32, max: u32) -> Result<Semaphore> {
        let init = Self::init(initial, max, name)?;
        let sem = Semaphore {
            shared: Shared::create_named(name, &init, true, Lifetime::Temporary)?,
        };
        let found = sem.max_count()?;
        if !sem.created() && found != max {
            return Err(Error::Mismatch {
                object: sem.shared.name().clone(),
                what: "maximum count",
                found: found.to_string(),
                asked: max.to_string(),
            });
        }
        Ok(sem)
    }

    /// Bytes a semaphore takes inside a segment.
    pub const SIZE_IN_SEGMENT: u64 = STATE_SIZE;

    /// Initialises a new semaphore at `offset` (8-byte aligned) of `shm`. Do this
    /// once, before other processes [`open_in`](Self::open_in) it.
    pub fn init_in(shm: &Shm, offset: u64, initial: u32, max: u32) -> Result<Semaphore> {
        let init = Self::init(initial, max, shm.name())?;
        Ok(Semaphore {
            shared: Shared::init_in(shm, offset, &init)?,
        })
    }

    /// Opens the semaphore at `offset` of `shm`.
    pub fn open_in(shm: &Shm, offset: u64) -> Result<Semaphore> {
        Ok(Semaphore {
            shared: Shared::open_in(shm, offset, Kind::Semaphore, None, 0)?,
        })
    }

    /// Name used in errors: the semaphore's name, or `SEGMENT@OFFSET`.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Whether this handle created the named semaphore.
    pub fn created(&self) -> bool {
        self.shared.created()
    }

    /// The maximum count, validated: a corrupt stored maximum is an error.
    fn max(&self) -> Result<u32> {
        let max = self.shared.block().param_a.load(Relaxed);
        if max == 0 || max > SEMAPHORE_MAX {
            return Err(self.shared.corrupt(format!("maximum count {max}")));
        }
        Ok(max)
    }

    /// The maximum count.
    pub fn max_count(&self) -> Result<u32> {
        self.max()
    }

    /// The current count (a snapshot: other processes may change it at once).
    pub fn count(&self) -> u32 {
        self.shared.block().word.load(SeqCst)
    }

    /// How many times a blocking call retries, spinning, before it sleeps
    /// (default 200, a few microseconds). Waking a sleeping process costs tens of
    /// microseconds, so spinning wins when the other side answers quickly and has
    /// a CPU of its own; 0 sleeps at once and leaves the CPU to others.
    pub fn set_spins(&mut self, attempts: u32) {
        self.shared.spins = attempts;
    }

    /// Ends this handle's blocked waits from another thread: they return
    /// [`Error::Interrupted`](crate::Error::Interrupted), and so do later waits
    /// until [`Interrupter::clear`](crate::Interrupter::clear).
    pub fn interrupter(&self) -> crate::Interrupter {
        self.shared.interrupt.interrupter()
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None, Duration::ZERO)
    }

    /// Takes one unit if the count is above zero; returns whether it did.
    pub fn try_wait(&self) -> Result<bool> {
        match semaphore_try_acquire(&self.shared.block().word, self.max()?) {
            Attempt::Done(r) => r.map(|()| true).map_err(|c| self.corrupt_count(c)),
            Attempt::Sleep(_) => Ok(false),
        }
    }

    /// Takes one unit, waiting at most `timeout`; [`Error::Timeout`] after that.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout), timeout)
    }

    fn wait_until(&self, deadline: Option<Instant>, timeout: Duration) -> Result<()> {
        let max = self.max()?;
        let word = &self.shared.block().word;
        self.shared
            .wait("take a unit", deadline, timeout, || {
                semaphore_try_acquire(word, max)
            })?
            .map_err(|c| self.corrupt_count(c))
    }

    /// Adds `n` to the count, waking up to `n` waiters; returns the previous
    /// count. [`Error::AboveMaximum`] (and no change) if the count would pass the
    /// maximum, as on Windows; releasing 0 is [`Error::InvalidArgument`].
    pub fn release(&self, n: u32) -> Result<u32> {
        if n == 0 {
            return Err(Error::InvalidArgument {
                object: self.shared.name().clone(),
                reason: "release count must be at least 1".into(),
            });
        }
        let max = self.max()?;
        semaphore_release(&self.shared.waitable(), n, max).map_err(|e| match e {
            ReleaseError::AboveMaximum(count) => Error::AboveMaximum {
                object: self.shared.name().clone(),
                count: Some(count),
                release: n,
                max: Some(max),
            },
            ReleaseError::Corrupt(count) => self.corrupt_count(count),
        })
    }

    fn corrupt_count(&self, count: u32) -> Error {
        let max = self.shared.block().param_a.load(Relaxed);
        self.shared
            .corrupt(format!("count {count} is above the maximum {max}"))
    }
}

impl Semaphore {
    /// [`wait`](Self::wait) as a future: takes one unit, waiting without a
    /// thread. Cancel safe: a unit is taken only in the poll that completes the
    /// future; dropping it earlier takes nothing.
    ///
    /// ```
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-sem-async-{}", std::process::id());
    /// let sem = shmkit::sync::Semaphore::create(&name, 0, 1)?;
    /// sem.release(1)?;
    /// shmkit::block_on(sem.wait_async())?;
    /// assert_eq!(sem.count(), 0);
    /// # Ok(()) }
    /// ```
    pub fn wait_async(&self) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        OpFuture::new(self, "take a unit", |s: &mut &Semaphore| {
            match s.try_wait()? {
                true => Ok(()),
                false => Err(Error::WouldBlock {
                    object: s.shared.name().clone(),
                    op: "take a unit",
                }),
            }
        })
    }
}

watched_via_shared!(Semaphore, None);

impl crate::readiness::Ready for Semaphore {
    fn ready_now(&self, _deep: bool) -> bool {
        self.count() != 0
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name())
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}
