//! Ending a blocked call from another thread.
//!
//! A channel endpoint or a synchronisation object can hand out an
//! [`Interrupter`]. Interrupting is sticky: the call blocked on that endpoint or
//! object now, and every blocking call after it, returns
//! [`Error::Interrupted`](crate::Error::Interrupted) until [`Interrupter::clear`].
//! This is how a binding's `close()` stops a reader blocked in `recv` on another
//! thread, and how a program stops a worker without a timeout loop.
//!
//! Waking is exact where the sleeper waits on a doorbell (every channel call): the
//! interrupter bumps the doorbell's signal word after raising its flag, so a
//! sleeper either sees the flag or finds the word changed and does not sleep. A
//! mutex, semaphore or event sleeps on its state word, which an interrupter must
//! not change: it wakes the sleepers, and a sleeper that was between its last
//! look at the flag and its sleep notices within [`POLL`] instead.

use std::fmt;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

/// How late, at worst, an interrupted wait on a mutex, semaphore or event ends
/// (usually it ends at once).
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Ends blocking calls on one channel endpoint or synchronisation object, from
/// any thread; see [`Receiver::interrupter`](crate::channel::Receiver::interrupter).
///
/// Cloning gives another handle to the same switch. An `Interrupter` may outlive
/// the object it came from; interrupting then does nothing.
///
/// ```
/// # fn main() -> shmkit::Result<()> {
/// use shmkit::channel::ChannelOptions;
/// let name = format!("doc-interrupt-{}", std::process::id());
/// let mut rx = ChannelOptions::new().receiver(&name)?;
/// let _tx = ChannelOptions::new().sender(&name)?;
/// let stop = rx.interrupter();
/// let reader = std::thread::spawn(move || rx.recv());
/// stop.interrupt();
/// assert!(reader.join().unwrap().unwrap_err().is_interrupted());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Interrupter {
    state: Arc<Interrupt>,
}

impl Interrupter {
    /// A switch of its own, not tied to an object: for a
    /// [`WaitSet`](crate::WaitSet) or a program's own shutdown flag.
    pub fn new() -> Interrupter {
        Interrupter {
            state: Arc::default(),
        }
    }

    pub(crate) fn state(&self) -> &Arc<Interrupt> {
        &self.state
    }

    /// Ends the calls blocked on the object now and makes later blocking calls
    /// return [`Error::Interrupted`](crate::Error::Interrupted) at once, until
    /// [`clear`](Self::clear). A call that finds its answer without waiting
    /// (a message already queued, a free lock) may still succeed.
    pub fn interrupt(&self) {
        self.state.raise();
    }

    /// Lets blocking calls wait again.
    pub fn clear(&self) {
        self.state.flag.store(false, SeqCst);
    }

    /// Whether the interrupter is raised.
    pub fn is_interrupted(&self) -> bool {
        self.state.raised()
    }
}

impl Default for Interrupter {
    fn default() -> Interrupter {
        Interrupter::new()
    }
}

impl fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupter")
            .field("interrupted", &self.is_interrupted())
            .finish()
    }
}

/// Where an object keeps its interrupt state: made on the first call to
/// `interrupter()`, so that objects nobody interrupts pay nothing.
#[derive(Default, Debug)]
pub(crate) struct InterruptSlot(OnceLock<Arc<Interrupt>>);

impl InterruptSlot {
    pub(crate) fn interrupter(&self) -> Interrupter {
        Interrupter {
            state: self.0.get_or_init(Default::default).clone(),
        }
    }

    /// Makes this slot share `to`'s state: an object made of several (an RPC
    /// client's two queues, a sender and its producer lock) is interrupted as one.
    /// Call before anyone asked this slot for an interrupter.
    pub(crate) fn link(&self, to: &InterruptSlot) {
        let state = to.0.get_or_init(Default::default).clone();
        let _ = self.0.set(state);
    }

    /// The state, if anyone ever asked for an interrupter.
    #[inline]
    pub(crate) fn get(&self) -> Option<&Interrupt> {
        self.0.get().map(|a| &**a)
    }

    /// The shared state, if anyone ever asked for an interrupter.
    #[inline]
    pub(crate) fn get_arc(&self) -> Option<&Arc<Interrupt>> {
        self.0.get()
    }
}

/// The flag and the sleepers to wake when it is raised.
#[derive(Default)]
pub(crate) struct Interrupt {
    flag: AtomicBool,
    sleepers: Mutex<Sleepers>,
    /// Tasks and wait sets waiting on the object without a thread: woken by
    /// [`raise`](Self::raise) through their wakers.
    wakers: Mutex<Vec<(u64, Waker)>>,
    next_waker: AtomicU64,
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupt")
            .field("raised", &self.raised())
            .finish_non_exhaustive()
    }
}

/// How to wake one kind of sleeper: a word, the way to sleep on it, and whether
/// the word may be bumped (a doorbell's signal) or not (a state word).
#[derive(Clone, Copy)]
pub(crate) struct WakeTarget {
    pub word: *const (),
    /// The word's waiter count: how many to wake (a Windows wake channel keeps
    /// surplus wake-ups as permits, so waking "everyone" must mean a number).
    pub waiters: *const (),
    pub park: *const (),
    pub bump: bool,
    /// Bumps (if allowed) and wakes every sleeper on `word`.
    pub wake: unsafe fn(target: &WakeTarget),
}

/// Distinct words sleepers of one object can be on at once (an RPC client waits
/// on two channels; everything else on one word).
const TARGETS: usize = 4;

#[derive(Default)]
struct Sleepers {
    /// A target and how many sleepers registered it.
    entries: [Option<(WakeTarget, usize)>; TARGETS],
}

// SAFETY: the pointers in a target are only dereferenced while the sleeper that
// registered it is inside its wait (it deregisters before returning), where they
// point to live words and wake channels that are Sync.
unsafe impl Send for Sleepers {}

impl Interrupt {
    #[inline]
    pub(crate) fn raised(&self) -> bool {
        self.flag.load(SeqCst)
    }

    fn sleepers(&self) -> std::sync::MutexGuard<'_, Sleepers> {
        // Every change is a single assignment: a poisoned lock is still consistent.
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raise(&self) {
        self.flag.store(true, SeqCst);
        // Woken outside the lock: a waker may poll its task at once, and that
        // task may register or remove its own waker here.
        let wakers: Vec<Waker> = self.wakers().iter().map(|(_, w)| w.clone()).collect();
        for waker in wakers {
            waker.wake();
        }
        let sleepers = self.sleepers();
        for (target, _) in sleepers.entries.iter().flatten() {
            // SAFETY: a registered target's sleeper is still inside its wait (it
            // deregisters under this lock before leaving), so its word and wake
            // channel are alive; `wake` was made for their types.
            unsafe { (target.wake)(target) };
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a waker to call when the flag is raised; returns the key for
    /// [`remove_waker`](Self::remove_waker).
    pub(crate) fn add_waker(&self, waker: &Waker) -> u64 {
        let key = self.next_waker.fetch_add(1, SeqCst);
        self.wakers().push((key, waker.clone()));
        key
    }

    /// Replaces the waker registered under `key` (a task polled with a new one).
    pub(crate) fn update_waker(&self, key: u64, waker: &Waker) {
        let mut wakers = self.wakers();
        if let Some((_, old)) = wakers.iter_mut().find(|(k, _)| *k == key) {
            if !old.will_wake(waker) {
                *old = waker.clone();
            }
        }
    }

    pub(crate) fn remove_waker(&self, key: u64) {
        let mut wakers = self.wakers();
        if let Some(i) = wakers.iter().position(|(k, _)| *k == key) {
            wakers.swap_remove(i);
        }
    }

    /// Registers a sleeper; it is woken by [`raise`](Self::raise) until the
    /// returned registration is dropped. `false` in the registration: no room,
    /// the sleeper must poll.
    pub(crate) fn register(&self, target: WakeTarget) -> Registration<'_> {
        let mut sleepers = self.sleepers();
        let same = |t: &WakeTarget| t.word == target.word && t.park == target.park;
        let index = sleepers
            .entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|(t, _)| same(t)))
            .or_else(|| sleepers.entries.iter().position(Option::is_none));
        if let Some(i) = index {
            let entry = &mut sleepers.entries[i];
            let count = entry.map_or(0, |(_, n)| n);
            *entry = Some((target, count + 1));
        }
        Registration {
            interrupt: self,
            index,
        }
    }
}

/// A sleeper's place in an [`Interrupt`]'s list, given back on drop.
pub(crate) struct Registration<'a> {
    interrupt: &'a Interrupt,
    index: Option<usize>,
}

impl Registration<'_> {
    /// Whether raising the flag will wake this sleeper (else it must poll).
    pub(crate) fn woken(&self) -> bool {
        self.index.is_some()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            let mut sleepers = self.interrupt.sleepers();
            let entry = &mut sleepers.entries[i];
            *entry = match *entry {
                Some((t, n)) if n > 1 => Some((t, n - 1)),
                _ => None,
            };
        }
    }
}
