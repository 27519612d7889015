//! The wait/wake protocol shared by every primitive, written once over two small
//! traits so that the model checker (loom) can run exactly this code on heap
//! atomics, and the primitives run it on words in shared memory.
//!
//! Each waitable object has a *word* (the futex word: owner, count or signal) and a
//! *waiter count*. A blocking call first spins a little, then registers in the
//! waiter count, re-tries, and sleeps on the word only if the word still holds the
//! value it saw. The releasing side changes the word first and reads the waiter
//! count after; both sides use sequentially consistent operations, so either the
//! releaser sees the waiter (and wakes it) or the waiter sees the new word (and
//! does not sleep). That is what makes a lost wake-up impossible, and it lets the
//! releasing side skip the wake system call when nobody sleeps.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::interrupt::{Interrupt, WakeTarget, POLL};

/// The atomic operations the protocol needs from a 32-bit word.
pub(crate) trait Word {
    fn load(&self, order: Ordering) -> u32;
    fn swap(&self, value: u32, order: Ordering) -> u32;
    fn compare_exchange(&self, current: u32, new: u32) -> Result<u32, u32>;
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
}

impl Word for AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline]
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }
    #[inline]
    fn compare_exchange(&self, current: u32, new: u32) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, SeqCst, SeqCst)
    }
    #[inline]
    fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, value, order)
    }
    #[inline]
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, value, order)
    }
}

/// Sleeping on a word: the futex contract. `wait` returns at once if the word no
/// longer holds `expected`, and may return early at any time.
pub(crate) trait Park<W> {
    fn wait(&self, word: &W, expected: u32, timeout: Option<Duration>);
    fn wake(&self, word: &W, n: u32);
}

impl Park<AtomicU32> for crate::sys::WakeChannel {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::sys::WakeChannel::wait(self, word, expected, timeout)
    }
    fn wake(&self, word: &AtomicU32, n: u32) {
        crate::sys::WakeChannel::wake(self, word, n)
    }
}

/// What one attempt at the operation found.
pub(crate) enum Attempt<R> {
    /// Finished with this result.
    Done(R),
    /// Must wait while the word holds this value.
    Sleep(u32),
}

/// How long a waiter spins before it registers as a waiter and sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spin {
    /// This many more attempts, without reading the clock.
    Tries(u32),
    /// For about this long (no spinning for zero).
    For(Duration),
    /// Until done: never sleep (busy poll). Deadline and `idle` still apply.
    Forever,
}

/// How a wait goes: how long it spins, when it gives up, how often it runs its
/// `idle` check (a peer's or an owner's liveness) while waiting, and what may
/// interrupt it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan<'a> {
    pub spin: Spin,
    pub deadline: Option<Instant>,
    pub check_every: Option<Duration>,
    /// Raised from another thread: the wait ends with [`Stop::Interrupted`].
    pub interrupt: Option<&'a Interrupt>,
}

/// Why a wait ended without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The plan's deadline passed.
    Deadline,
    /// The plan's interrupt was raised.
    Interrupted,
}

/// Wakes every sleeper on `word` for an interrupt, bumping the word first when
/// it is a signal (so that a sleeper about to sleep on the old value does not).
///
/// # Safety
/// The target's `word` and `waiters` point to live `W`s, its `park` to a live `P`.
unsafe fn wake_for_interrupt<W: Word, P: Park<W>>(target: &WakeTarget) {
    // SAFETY: per the contract, all three point to live values of these types.
    let (word, waiters, park) = unsafe {
        (
            &*target.word.cast::<W>(),
            &*target.waiters.cast::<W>(),
            &*target.park.cast::<P>(),
        )
    };
    if target.bump {
        word.fetch_add(1, SeqCst);
    }
    // Every sleeper of every process (they look again and sleep on); at least
    // one, the one that registered.
    park.wake(word, waiters.load(SeqCst).max(1));
}

/// Spin attempts between clock readings.
const SPIN_BATCH: u32 = 32;

/// A place in the waiter count, given back however the wait ends: by a result,
/// a timeout, or a panic unwinding out of `attempt` or `idle` (a `recv_with`
/// callback runs inside the wait). A leaked place would make every release pay
/// for a wake-up system call from then on.
struct Registered<'a, W: Word>(&'a W);

impl<'a, W: Word> Registered<'a, W> {
    fn new(waiters: &'a W) -> Self {
        waiters.fetch_add(1, SeqCst);
        Registered(waiters)
    }
}

impl<W: Word> Drop for Registered<'_, W> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The one wait loop under every blocking call, channels and sync objects alike:
/// calls `attempt` until it is done, spinning as `plan` says, then registered as
/// a waiter and asleep on `word` between tries; `None` at the deadline.
///
/// `attempt(thorough)`: while spinning, most calls pass `false` and may look only
/// at what is cheapest to watch; every call that decides about sleeping (and the
/// first of each batch of spins) passes `true` and must then read what it waits
/// for with a SeqCst (or stronger) operation. `Attempt::Sleep(v)` sleeps while
/// the word still holds `v`. `idle` runs about every `plan.check_every` with the
/// last value seen and may end the wait itself (a dead peer, a dead owner).
/// `signal`: the word is a doorbell's signal, which an interrupt may bump.
pub(crate) fn wait<W: Word, P: Park<W>, R>(
    word: &W,
    waiters: &W,
    park: &P,
    plan: &Plan,
    signal: bool,
    mut attempt: impl FnMut(bool) -> Attempt<R>,
    mut idle: impl FnMut(u32) -> Option<R>,
) -> Result<R, Stop> {
    // The first attempt is the uncontended fast path: no clock, no waiter count.
    let mut observed = match attempt(false) {
        Attempt::Done(r) => return Ok(r),
        Attempt::Sleep(v) => v,
    };
    let interrupted = || plan.interrupt.is_some_and(Interrupt::raised);
    let mut try_once = |thorough: bool, observed: &mut u32| match attempt(thorough) {
        Attempt::Done(r) => Some(r),
        Attempt::Sleep(v) => {
            *observed = v;
            None
        }
    };
    let mut last_idle = None;
    match plan.spin {
        Spin::Tries(n) => {
            for _ in 0..n {
                std::hint::spin_loop();
                if let Some(r) = try_once(false, &mut observed) {
                    return Ok(r);
                }
            }
        }
        Spin::For(d) if d.is_zero() => {}
        Spin::For(_) | Spin::Forever => {
            // The answer often comes within a few tries: look before reading the
            // clock, which costs as much as several tries.
            for _ in 0..SPIN_BATCH {
                std::hint::spin_loop();
                if let Some(r) = try_once(false, &mut observed) {
                    return Ok(r);
                }
            }
            let started = Instant::now();
            let mut last = started;
            loop {
                for i in 0..SPIN_BATCH {
                    std::hint::spin_loop();
                    if let Some(r) = try_once(i == 0, &mut observed) {
                        return Ok(r);
                    }
                }
                if interrupted() {
                    return Err(Stop::Interrupted);
                }
                let now = Instant::now();
                if plan.deadline.is_some_and(|d| now >= d) {
                    return Err(Stop::Deadline);
                }
                if plan
                    .check_every
                    .is_some_and(|e| now.duration_since(last) >= e)
                {
                    last = now;
                    if let Some(r) = idle(observed) {
                        return Ok(r);
                    }
                }
                if let Spin::For(d) = plan.spin {
                    if now.duration_since(started) >= d {
                        break;
                    }
                }
            }
            last_idle = Some(last);
        }
    }
    let _registered = Registered::new(waiters);
    // Registered before the flag is looked at below: either the interrupter
    // finds this sleeper and wakes it, or this sleeper sees the flag.
    let woken_by_interrupt = plan.interrupt.map(|i| {
        i.register(WakeTarget {
            word: (word as *const W).cast(),
            waiters: (waiters as *const W).cast(),
            park: (park as *const P).cast(),
            bump: signal,
            wake: wake_for_interrupt::<W, P>,
        })
    });
    // A state word cannot be bumped: a sleeper that looked at the flag just
    // before the interrupter's wake would sleep on, so it naps and looks again.
    let poll = woken_by_interrupt
        .as_ref()
        .is_some_and(|r| !signal || !r.woken())
        .then_some(POLL);
    let timed = plan.deadline.is_some() || plan.check_every.is_some() || poll.is_some();
    let mut last_idle = if timed {
        last_idle.or_else(|| Some(Instant::now()))
    } else {
        None
    };
    loop {
        if let Some(r) = try_once(true, &mut observed) {
            return Ok(r);
        }
        if interrupted() {
            return Err(Stop::Interrupted);
        }
        let mut nap = poll;
        if timed {
            let now = Instant::now();
            if let (Some(every), Some(last)) = (plan.check_every, last_idle) {
                let since = now.duration_since(last);
                if since >= every {
                    last_idle = Some(now);
                    if let Some(r) = idle(observed) {
                        return Ok(r);
                    }
                    nap = Some(nap.map_or(every, |n: Duration| n.min(every)));
                } else {
                    nap = Some(nap.map_or(every - since, |n: Duration| n.min(every - since)));
                }
            }
            if let Some(d) = plan.deadline {
                let left = d.saturating_duration_since(now);
                if left.is_zero() {
                    return Err(Stop::Deadline);
                }
                nap = Some(nap.map_or(left, |n: Duration| n.min(left)));
            }
        }
        park.wait(word, observed, nap);
    }
}

/// A word, its waiter count and the way to sleep on it.
pub(crate) struct Waitable<'a, W, P> {
    pub word: &'a W,
    pub waiters: &'a W,
    pub park: &'a P,
    /// Attempts made spinning, after the first, before sleeping: a wake-up of a
    /// sleeping process costs tens of microseconds, a short spin often catches
    /// the release first.
    pub spins: u32,
    /// Raised from another thread: the wait ends with [`Stop::Interrupted`].
    pub interrupt: Option<&'a Interrupt>,
}

/// Default spin count before sleeping.
pub(crate) const SPINS: u32 = 200;

impl<W: Word, P: Park<W>> Waitable<'_, W, P> {
    /// Runs `attempt` until it is done, sleeping between tries; gives up
    /// ([`Stop::Deadline`]) at `deadline`, or when interrupted. While sleeping, `idle` is called about every `check_every`
    /// with the value the word held: it may finish the wait itself (the mutex uses
    /// it to take over from a dead owner).
    pub(crate) fn block_on<R>(
        &self,
        deadline: Option<Instant>,
        check_every: Option<Duration>,
        mut attempt: impl FnMut() -> Attempt<R>,
        idle: impl FnMut(u32) -> Option<R>,
    ) -> Result<R, Stop> {
        let plan = Plan {
            spin: Spin::Tries(self.spins),
            deadline,
            check_every,
            interrupt: self.interrupt,
        };
        wait(
            self.word,
            self.waiters,
            self.park,
            &plan,
            false,
            |_| attempt(),
            idle,
        )
    }

    /// Wakes up to `n` sleepers, skipping the system call when nobody sleeps.
    /// Call after changing the word.
    pub(crate) fn wake(&self, n: u32) {
        let sleeping = self.waiters.load(SeqCst);
        if sleeping > 0 {
            self.park.wake(self.word, n.min(sleeping));
        }
    }
}

/// Mutex word: 0 when free, else the owner's process id.
pub(crate) fn mutex_try_lock<W: Word>(word: &W, me: u32) -> Attempt<()> {
    // Look before writing: a failing compare-and-swap still takes the cache line
    // away from the owner, which slows everyone down while waiters spin.
    let owner = word.load(SeqCst);
    if owner != 0 {
        return Attempt::Sleep(owner);
    }
    match word.compare_exchange(0, me) {
        Ok(_) => Attempt::Done(()),
        Err(owner) => Attempt::Sleep(owner),
    }
}

/// Frees the mutex word and wakes one sleeper if there is one.
pub(crate) fn mutex_unlock<W: Word, P: Park<W>>(w: &Waitable<'_, W, P>) {
    w.word.swap(0, SeqCst);
    w.wake(1);
}

/// Semaphore word: the count. `Done(Err(count))` reports a count above `max`.
pub(crate) fn semaphore_try_acquire<W: Word>(word: &W, max: u32) -> Attempt<Result<(), u32>> {
    let mut count = word.load(SeqCst);
    loop {
        if count > max {
            return Attempt::Done(Err(count));
        }
        if count == 0 {
            return Attempt::Sleep(0);
        }
        match word.compare_exchange(count, count - 1) {
            Ok(_) => return Attempt::Done(Ok(())),
            Err(now) => count = now,
        }
    }
}

/// Why a semaphore release was refused; holds the count seen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReleaseError {
    AboveMaximum(u32),
    Corrupt(u32),
}

/// Adds `n` to the count unless that would pass `max`; wakes up to `n` sleepers.
pub(crate) fn semaphore_release<W: Word, P: Park<W>>(
    w: &Waitable<'_, W, P>,
    n: u32,
    max: u32,
) -> Result<u32, ReleaseError> {
    let mut count = w.word.load(SeqCst);
    loop {
        if count > max {
            return Err(ReleaseError::Corrupt(count));
        }
        if n > max - count {
            return Err(ReleaseError::AboveMaximum(count));
        }
        match w.word.compare_exchange(count, count + n) {
            Ok(_) => break,
            Err(now) => count = now,
        }
    }
    w.wake(n);
    Ok(count)
}

/// Event word: 1 when set, 0 when not. An auto-reset event lets one waiter through
/// per `set` by taking the 1 back; a manual-reset one lets everyone through.
/// `Done(Err(value))` reports a value that is neither.
pub(crate) fn event_try_wait<W: Word>(word: &W, manual_reset: bool) -> Attempt<Result<(), u32>> {
    let mut value = word.load(SeqCst);
    if value == 1 && !manual_reset {
        match word.compare_exchange(1, 0) {
            Ok(_) => return Attempt::Done(Ok(())),
            Err(v) => value = v,
        }
    }
    match value {
        0 => Attempt::Sleep(0),
        1 => Attempt::Done(Ok(())),
        other => Attempt::Done(Err(other)),
    }
}

/// Sets the event and wakes one sleeper (auto-reset) or all of them (manual).
pub(crate) fn event_set<W: Word, P: Park<W>>(w: &Waitable<'_, W, P>, manual_reset: bool) {
    w.word.swap(1, SeqCst);
    w.wake(if manual_reset { u32::MAX } else { 1 });
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod model {
    //! loom explores every interleaving (within its bounds) of the code above, run
    //! on heap atomics with a futex stand-in, and fails on a deadlock — which is
    //! what a lost wake-up becomes when sleeps have no timeout.

    use super::*;
    use loom::sync::atomic::AtomicU32 as LoomU32;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    impl Word for LoomU32 {
        /// loom models SeqCst as AcqRel (its documented limitation), under which a
        /// load may return a stale value that sequential consistency forbids. Every
        /// access in the protocol is SeqCst, so a SeqCst load reads the latest value
        /// in the single total order: modelled here as a read-modify-write, which
        /// always reads the latest value of the word.
        fn load(&self, order: Ordering) -> u32 {
            if order == SeqCst {
                LoomU32::fetch_add(self, 0, SeqCst)
            } else {
                LoomU32::load(self, order)
            }
        }
        fn swap(&self, value: u32, order: Ordering) -> u32 {
            LoomU32::swap(self, value, order)
        }
        fn compare_exchange(&self, current: u32, new: u32) -> Result<u32, u32> {
            LoomU32::compare_exchange(self, current, new, SeqCst, SeqCst)
        }
        fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
            LoomU32::fetch_add(self, value, order)
        }
        fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
            LoomU32::fetch_sub(self, value, order)
        }
    }

    /// A futex: the kernel checks the word and queues the sleeper atomically with
    /// respect to wakes, which the mutex models; timeouts are not modelled, so
    /// every sleep is "until woken".
    #[derive(Default)]
    pub(crate) struct Futex {
        queue: Mutex<()>,
        cv: Condvar,
    }

    impl Park<LoomU32> for Futex {
        fn wait(&self, word: &LoomU32, expected: u32, _timeout: Option<Duration>) {
            let guard = self.queue.lock().unwrap();
            if word.load(SeqCst) == expected {
                drop(self.cv.wait(guard).unwrap());
            }
        }
        fn wake(&self, _word: &LoomU32, _n: u32) {
            let _guard = self.queue.lock().unwrap();
            self.cv.notify_all();
        }
    }

    /// Every interleaving with up to three preemptions: enough for the two- and
    /// three-party races below, and fast enough to run with the unit tests.
    pub(crate) fn check(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    #[derive(Default)]
    struct Obj {
        word: LoomU32,
        waiters: LoomU32,
        futex: Futex,
        data: LoomU32,
    }

    impl Obj {
        fn waitable(&self) -> Waitable<'_, LoomU32, Futex> {
            Waitable {
                word: &self.word,
                waiters: &self.waiters,
                park: &self.futex,
                spins: 0,
                interrupt: None,
            }
        }
    }

    fn lock(o: &Obj, me: u32) {
        o.waitable()
            .block_on(None, None, || mutex_try_lock(&o.word, me), |_| None)
            .expect("no deadline");
    }

    #[test]
    fn mutex_excludes_and_never_loses_a_wakeup() {
        check(|| {
            let o = Arc::new(Obj::default());
            let handles: Vec<_> = (1..=2)
                .map(|me| {
                    let o = Arc::clone(&o);
                    thread::spawn(move || {
                        lock(&o, me);
                        // Non-atomic increment: a second holder would lose one.
                        let v = o.data.load(SeqCst);
                        o.data.swap(v + 1, SeqCst);
                        mutex_unlock(&o.waitable());
                    })
                })
                .collect();
            lock(&o, 3);
            let v = o.data.load(SeqCst);
            o.data.swap(v + 1, SeqCst);
            mutex_unlock(&o.waitable());
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(o.data.load(SeqCst), 3);
            assert_eq!(o.word.load(SeqCst), 0);
        });
    }

    #[test]
    fn semaphore_ping_pong_never_loses_a_wakeup() {
        check(|| {
            // Two semaphores at 0, max 1: each side waits on its own and releases
            // the other's, twice; a lost wake-up deadlocks.
            let a = Arc::new(Obj::default());
            let b = Arc::new(Obj::default());
            let acquire = |o: &Obj| {
                o.waitable()
                    .block_on(None, None, || semaphore_try_acquire(&o.word, 1), |_| None)
                    .unwrap()
                    .unwrap()
            };
            let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
            let peer = thread::spawn(move || {
                for _ in 0..2 {
                    acquire(&a2);
                    semaphore_release(&b2.waitable(), 1, 1).unwrap();
                }
            });
            for _ in 0..2 {
                semaphore_release(&a.waitable(), 1, 1).unwrap();
                acquire(&b);
            }
            peer.join().unwrap();
            assert_eq!(a.word.load(SeqCst), 0);
            assert_eq!(b.word.load(SeqCst), 0);
        });
    }

    #[test]
    fn auto_reset_event_wakes_each_set() {
        check(|| {
            let ev = Arc::new(Obj::default());
            let done = Arc::new(Obj::default());
            let (ev2, done2) = (Arc::clone(&ev), Arc::clone(&done));
            let waiter = thread::spawn(move || {
                ev2.waitable()
                    .block_on(None, None, || event_try_wait(&ev2.word, false), |_| None)
                    .unwrap()
                    .unwrap();
                event_set(&done2.waitable(), false);
            });
            event_set(&ev.waitable(), false);
            done.waitable()
                .block_on(None, None, || event_try_wait(&done.word, false), |_| None)
                .unwrap()
                .unwrap();
            waiter.join().unwrap();
            assert_eq!(ev.word.load(SeqCst), 0, "the waiter took the signal");
        });
    }

    #[test]
    fn manual_reset_event_releases_every_waiter() {
        check(|| {
            let ev = Arc::new(Obj::default());
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let ev = Arc::clone(&ev);
                    thread::spawn(move || {
                        ev.waitable()
                            .block_on(None, None, || event_try_wait(&ev.word, true), |_| None)
                            .unwrap()
                            .unwrap();
                    })
                })
                .collect();
            event_set(&ev.waitable(), true);
            for w in waiters {
                w.join().unwrap();
            }
        });
    }
}
