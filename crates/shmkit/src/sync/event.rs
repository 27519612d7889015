//! A cross-process event, auto-reset or manual-reset.

use std::fmt;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::Lifetime;
use crate::shm::Shm;

use super::protocol::{event_set, event_try_wait, Attempt};
use super::state::{watched_via_shared, Init, Kind, Shared, STATE_SIZE};
use crate::readiness::OpFuture;

/// How an [`Event`] behaves once set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventMode {
    /// Each `set` lets exactly one `wait` through, then the event is unset again
    /// (a `set` with nobody waiting is kept for the next `wait`).
    AutoReset,
    /// Once set, every `wait` passes until someone calls `reset`.
    ManualReset,
}

/// A signal between processes: `set` it, `wait` for it, `reset` it.
///
/// ```
/// use shmkit::sync::{Event, EventMode};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-event-{}", std::process::id());
/// let ready = Event::create(&name, EventMode::ManualReset, false)?;
/// // In another process: Event::open(&name)?.set()?;
/// ready.set()?;
/// ready.wait_timeout(std::time::Duration::from_secs(1))?;
/// assert!(ready.is_set()?); // manual-reset: still set
/// ready.reset()?;
/// assert!(ready.wait_timeout(std::time::Duration::from_millis(10)).unwrap_err().is_timeout());
/// # Ok(()) }
/// ```
pub struct Event {
    shared: Shared,
}

impl Event {
    fn init(mode: EventMode, set: bool) -> Init<'static> {
        Init {
            kind: Kind::Event,
            word: set as u32,
            param_a: (mode == EventMode::ManualReset) as u32,
            param_b: 0,
            param_c: 0,
            value_type: Default::default(),
            value: &[],
        }
    }

    /// Creates a named event; [`Error::AlreadyExists`] if the name is taken.
    /// Temporary: it goes away when the last process using it closes it.
    pub fn create(name: &str, mode: EventMode, initially_set: bool) -> Result<Event> {
        Ok(Event {
            shared: Shared::create_named(
                name,
                &Self::init(mode, initially_set),
                false,
                Lifetime::Temporary,
            )?,
        })
    }

    /// Opens a named event; [`Error::NotFound`] if there is none.
    pub fn open(name: &str) -> Result<Event> {
        Ok(Event {
            shared: Shared::open_named(name, Kind::Event, None)?,
        })
    }

    /// Opens the named event, or creates it. An existing one of the other mode is
    /// refused with [`Error::Mismatch`].
    pub fn create_or_open(name: &str, mode: EventMode, initially_set: bool) -> Result<Event> {
        let event = Event {
            shared: Shared::create_named(
                name,
                &Self::init(mode, initially_set),
                true,
                Lifetime::Temporary,
            )?,
        };
        let found = event.mode()?;
        if !event.created() && found != mode {
            return Err(Error::Mismatch {
                object: event.shared.name().clone(),
                what: "mode",
                found: format!("{found:?}"),
                asked: format!("{mode:?}"),
            });
        }
        Ok(event)
    }

    /// Bytes an event takes inside a segment.
    pub const SIZE_IN_SEGMENT: u64 = STATE_SIZE;

    /// Initialises a new event at `offset` (8-byte aligned) of `shm`.
    pub fn init_in(shm: &Shm, offset: u64, mode: EventMode, initially_set: bool) -> Result<Event> {
        Ok(Event {
            shared: Shared::init_in(shm, offset, &Self::init(mode, initially_set))?,
        })
    }

    /// Opens the event at `offset` of `shm`.
    pub fn open_in(shm: &Shm, offset: u64) -> Result<Event> {
        Ok(Event {
            shared: Shared::open_in(shm, offset, Kind::Event, None, 0)?,
        })
    }

    /// Name used in errors: the event's name, or `SEGMENT@OFFSET`.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Whether this handle created the named event.
    pub fn created(&self) -> bool {
        self.shared.created()
    }

    /// Auto-reset or manual-reset (validated: a corrupt mode is an error).
    pub fn mode(&self) -> Result<EventMode> {
        match self.shared.block().param_a.load(Relaxed) {
            0 => Ok(EventMode::AutoReset),
            1 => Ok(EventMode::ManualReset),
            other => Err(self.shared.corrupt(format!("event mode {other}"))),
        }
    }

    fn manual(&self) -> Result<bool> {
        Ok(self.mode()? == EventMode::ManualReset)
    }

    /// Sets the event, waking one waiter (auto-reset) or all (manual-reset).
    pub fn set(&self) -> Result<()> {
        event_set(&self.shared.waitable(), self.manual()?);
        Ok(())
    }

    /// Unsets the event.
    pub fn reset(&self) -> Result<()> {
        self.shared.block().word.store(0, SeqCst);
        Ok(())
    }

    /// Whether the event is set now (a snapshot).
    pub fn is_set(&self) -> Result<bool> {
        match self.shared.block().word.load(SeqCst) {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.corrupt_word(other)),
        }
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

    /// Waits until the event is set (and, for auto-reset, takes the signal).
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None, Duration::ZERO)
    }

    /// Like [`wait`](Self::wait), giving up with [`Error::Timeout`] after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout), timeout)
    }

    fn wait_until(&self, deadline: Option<Instant>, timeout: Duration) -> Result<()> {
        let manual = self.manual()?;
        let word = &self.shared.block().word;
        self.shared
            .wait("see the event set", deadline, timeout, || {
                event_try_wait(word, manual)
            })?
            .map_err(|v| self.corrupt_word(v))
    }

    fn corrupt_word(&self, v: u32) -> Error {
        self.shared
            .corrupt(format!("event word {v} (only 0 and 1 are valid)"))
    }
}

impl Event {
    /// [`wait`](Self::wait) as a future: waits without a thread until the
    /// event is set (taking the signal of an auto-reset event). Cancel safe: an
    /// auto-reset signal is taken only in the poll that completes the future.
    pub fn wait_async(&self) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        OpFuture::new(self, "see the event set", |e: &mut &Event| {
            let manual = e.manual()?;
            match event_try_wait(&e.shared.block().word, manual) {
                Attempt::Done(Ok(())) => Ok(()),
                Attempt::Done(Err(v)) => Err(e.corrupt_word(v)),
                Attempt::Sleep(_) => Err(Error::WouldBlock {
                    object: e.shared.name().clone(),
                    op: "see the event set",
                }),
            }
        })
    }
}

watched_via_shared!(Event, None);

impl crate::readiness::Ready for Event {
    fn ready_now(&self, _deep: bool) -> bool {
        self.shared.block().word.load(SeqCst) != 0
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
