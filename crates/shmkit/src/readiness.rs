//! Waiting without blocking a thread: what the `*_async` methods, [`WaitSet`]
//! and the bindings' pollable handles are built on.
//!
//! A wait here keeps the protocol of a blocking wait (`sync/protocol.rs`) but
//! spreads it over polls: read the word (a doorbell's signal, a lock word), try
//! the operation without waiting, and if it would block, register in the word's
//! waiter count (then try once more: a waker that changed the word before seeing
//! the registration did not wake anyone) and hand the word and the value seen to
//! the reactor (`sys::watch`), which calls the task's [`Waker`] when the word
//! changes. The waking side is unchanged: it pays a system call only when the
//! waiter count says someone waits, blocking thread or task alike.
//!
//! Nothing is taken until an attempt succeeds, inside one poll: a future dropped
//! between polls gives its place in the waiter count back and has consumed
//! nothing. That is the whole cancellation-safety argument for every
//! `*_async` method.
//!
//! [`WaitSet`]: crate::WaitSet

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, ObjectName, Result};
use crate::interrupt::Interrupt;
use crate::sys::{self, ProcessIdentity, WakeChannel};

/// A word to watch, the waiter count to register in, and its wake channel.
#[derive(Clone, Copy)]
pub(crate) struct Bell<'a> {
    pub word: &'a AtomicU32,
    pub waiters: &'a AtomicU32,
    pub park: &'a WakeChannel,
}

/// The words one operation waits on: at most two (a many-sender channel's
/// sender waits for room and for the producer lock).
pub(crate) type Bells<'a> = [Option<Bell<'a>>; 2];

/// An object a task or wait set can wait on without a thread.
pub(crate) trait Watched {
    /// What to watch while the object's operation would block.
    fn bells(&self) -> Bells<'_>;
    /// Raised from another thread: the wait ends with [`Error::Interrupted`].
    fn interrupt(&self) -> Option<&Arc<Interrupt>>;
    /// How long a waiting task may go without trying again when nothing rings:
    /// the operation itself notices a dead peer or owner when tried.
    fn recheck(&self) -> Option<Duration>;
    /// The processes whose death the operation is waiting to notice (with
    /// `recheck`). If every one can be watched for its exit, the wait needs no
    /// periodic recheck. `None`: not known, recheck.
    fn peers(&self) -> Option<Vec<ProcessIdentity>> {
        None
    }
    /// How long a fresh wait keeps trying before it yields to the executor:
    /// the other side often answers within microseconds, and being woken
    /// through the reactor costs more (the endpoint's spin, see `WaitMode`).
    fn spin(&self) -> Duration {
        Duration::ZERO
    }
    /// For errors.
    fn object(&self) -> &ObjectName;
}

/// An object a [`WaitSet`](crate::WaitSet) can wait on: it can tell, without
/// taking anything, whether its operation would do something now.
pub(crate) trait Ready: Watched + Sync {
    /// Whether an attempt would not block now: something to take, room, a
    /// free lock, or an error to report (a closed peer). `deep` also checks
    /// that peers live (costs a look at each).
    fn ready_now(&self, deep: bool) -> bool;
}

/// The spin of an endpoint's wait mode, for async waits: a busy-polling
/// endpoint cannot poll forever inside an executor, so it spins as long as the
/// default blocking mode does.
pub(crate) fn async_spin(spin: Option<Duration>) -> Duration {
    spin.unwrap_or(Duration::from_micros(20))
}

/// Where a wake-up a cancelled wait took goes: its word, that word's waiter
/// count, and the wake channel (pointers into the watched object, which
/// outlives the wait).
#[derive(Clone, Copy)]
struct PassOn {
    word: NonNull<AtomicU32>,
    waiters: NonNull<AtomicU32>,
    park: NonNull<WakeChannel>,
}

/// The values the bells' words held before an attempt.
pub(crate) type Seen = [u32; 2];

pub(crate) fn seen(bells: &Bells<'_>) -> Seen {
    let mut seen = [0; 2];
    for (s, b) in seen.iter_mut().zip(bells) {
        if let Some(b) = b {
            *s = b.word.load(SeqCst);
        }
    }
    seen
}

/// One wait in progress, kept between polls: the waiter counts it holds a place
/// in, the reactor's watches, and its interrupt registration. Dropped or
/// [`finish`](Self::finish)ed, it gives all of them back.
///
/// Holds pointers into the watched object's mapping: it must be finished (or
/// dropped) before that object is, which the futures ensure by borrowing the
/// object and the objects by declaring it before their mapping.
#[derive(Default)]
pub(crate) struct AsyncWait {
    places: [Option<NonNull<AtomicU32>>; 2],
    /// The reactor's watches, each with its word, waiter count and wake
    /// channel (to pass a wake-up on: see `cancel`).
    watches: Vec<(sys::Watch, PassOn)>,
    /// Peers watched for their exit, kept from one arming to the next.
    exits: Vec<sys::ExitWatch>,
    /// When the waiting operation gives up: the reactor wakes the task then.
    deadline: Option<Instant>,
    interrupt: Option<(Arc<Interrupt>, u64)>,
}

// SAFETY: the pointers are to atomics in shared memory (Sync), only used to give
// a place back; the rest is Send + Sync.
unsafe impl Send for AsyncWait {}
// SAFETY: as for Send; `&AsyncWait` reads nothing through the pointers.
unsafe impl Sync for AsyncWait {}

impl std::fmt::Debug for AsyncWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWait")
            .field("registered", &self.places.iter().any(Option::is_some))
            .finish_non_exhaustive()
    }
}

impl AsyncWait {
    /// Whether the wait holds a place in a waiter count.
    pub(crate) fn registered(&self) -> bool {
        self.places.iter().any(Option::is_some)
    }

    /// Gives every place and watch back, after the operation completed.
    pub(crate) fn finish(&mut self) {
        self.watches.clear();
        self.release();
    }

    /// Gives every place and watch back without completing: a wake-up the
    /// wait was given (a release of one unit, an unlock, room for one) and
    /// will not use is passed on to another waiter, who would otherwise sleep
    /// on with the unit free.
    pub(crate) fn cancel(&mut self) {
        let fired: Vec<PassOn> = self
            .watches
            .drain(..)
            .filter(|(w, _)| w.fired())
            .map(|(_, p)| p)
            .collect();
        self.release();
        for p in fired {
            // SAFETY: pointers into the watched object, alive until the wait is
            // finished or cancelled (see the type's docs).
            let (word, waiters, park) =
                unsafe { (p.word.as_ref(), p.waiters.as_ref(), p.park.as_ref()) };
            if waiters.load(SeqCst) > 0 {
                park.wake(word, 1);
            }
        }
    }

    fn release(&mut self) {
        self.exits.clear();
        if let Some((interrupt, key)) = self.interrupt.take() {
            interrupt.remove_waker(key);
        }
        for place in &mut self.places {
            if let Some(p) = place.take() {
                // SAFETY: registered from a live object that this wait's holder
                // keeps alive until after it is finished (see the type's docs).
                unsafe { p.as_ref() }.fetch_sub(1, SeqCst);
            }
        }
    }

    /// After an attempt that would block: registers (first time: `true`, try
    /// again now) or hands the words to the reactor with `cx`'s waker
    /// (`false`: wait for the waker).
    pub(crate) fn arm<O: Watched + ?Sized>(
        &mut self,
        cx: &Context<'_>,
        obj: &O,
        seen: Seen,
    ) -> bool {
        let bells = obj.bells();
        if !self.registered() {
            for (place, bell) in self.places.iter_mut().zip(&bells) {
                if let Some(b) = bell {
                    b.waiters.fetch_add(1, SeqCst);
                    *place = Some(NonNull::from(b.waiters));
                }
            }
            return true;
        }
        let recheck = match obj.recheck() {
            Some(every) if !self.watch_exits(obj.peers(), cx) => Instant::now().checked_add(every),
            _ => None,
        };
        let recheck = match (recheck, self.deadline) {
            (Some(r), Some(d)) => Some(r.min(d)),
            (r, d) => r.or(d),
        };
        let live: Vec<(&Bell<'_>, u32)> = bells
            .iter()
            .zip(seen)
            .filter_map(|(b, s)| b.as_ref().map(|b| (b, s)))
            .collect();
        // Polled again with nothing changed (a select! whose other branch
        // woke): the watches stand, the reactor is not disturbed.
        let unchanged = self.watches.len() == live.len()
            && self
                .watches
                .iter()
                .zip(&live)
                .all(|((w, _), (_, s))| w.refresh(*s, cx.waker(), recheck));
        if !unchanged {
            self.watches.clear();
            for (b, s) in live {
                let pass_on = PassOn {
                    word: NonNull::from(b.word),
                    waiters: NonNull::from(b.waiters),
                    park: NonNull::from(b.park),
                };
                self.watches
                    .push((sys::watch(b.word, s, b.park, cx.waker(), recheck), pass_on));
            }
        }
        match (&self.interrupt, obj.interrupt()) {
            (Some((mine, key)), Some(now)) if Arc::ptr_eq(mine, now) => {
                // Only the latest poll's waker counts.
                mine.update_waker(*key, cx.waker());
            }
            (_, Some(now)) => {
                if let Some((old, key)) = self.interrupt.take() {
                    old.remove_waker(key);
                }
                let key = now.add_waker(cx.waker());
                self.interrupt = Some((now.clone(), key));
            }
            (_, None) => {}
        }
        // Raised after the caller last looked but before the waker was in the
        // list: nobody would wake the task. Let it look again.
        if obj.interrupt().is_some_and(|i| i.raised()) {
            cx.waker().wake_by_ref();
        }
        false
    }
}

impl AsyncWait {
    /// Watches exactly `peers` for their exit (keeping the watches it has);
    /// whether every one is watched, so that no periodic recheck is needed.
    fn watch_exits(&mut self, peers: Option<Vec<ProcessIdentity>>, cx: &Context<'_>) -> bool {
        let Some(peers) = peers else {
            self.exits.clear();
            return false;
        };
        // A watch that fired (its process ended) is spent: dropped here, and
        // the peer, if still listed, is found dead below and left to the
        // periodic recheck (the try that follows reports its death).
        self.exits
            .retain(|w| peers.contains(&w.who()) && w.set_waker(cx.waker()));
        let mut all = true;
        for who in peers {
            if self.exits.iter().any(|w| w.who() == who) {
                continue;
            }
            match sys::watch_exit(who, cx.waker()) {
                Some(w) => self.exits.push(w),
                None => all = false,
            }
        }
        all
    }
}

impl Drop for AsyncWait {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// One poll of an operation on `obj`: tries it (`try_op`, which must not wait
/// and must report "would wait" as [`Error::WouldBlock`]); when it would block,
/// arms `wait` and returns `Pending`. `spin_first`: a fresh wait first keeps
/// trying for the object's spin time (futures do; the `poll_*` methods, made
/// for event loops that drain many objects, do not). `op` names the operation in an
/// [`Error::Interrupted`].
pub(crate) fn poll_op<O: Watched + ?Sized, T>(
    wait: &mut AsyncWait,
    obj: &mut O,
    cx: &mut Context<'_>,
    op: &'static str,
    spin_first: bool,
    mut try_op: impl FnMut(&mut O) -> Result<T>,
) -> Poll<Result<T>> {
    loop {
        let seen = seen(&obj.bells());
        match try_op(obj) {
            Err(e) if e.is_would_block() => {}
            done => {
                wait.finish();
                return Poll::Ready(done);
            }
        }
        if spin_first && !wait.registered() {
            if let Some(done) = spin(obj, &mut try_op) {
                return Poll::Ready(done);
            }
        }
        if obj.interrupt().is_some_and(|i| i.raised()) {
            wait.finish();
            return Poll::Ready(Err(Error::Interrupted {
                object: obj.object().clone(),
                op,
            }));
        }
        if !wait.arm(cx, &*obj, seen) {
            return Poll::Pending;
        }
    }
}

/// [`poll_op`] with the wait an object keeps in itself between polls (its
/// `poll_*` methods and streams): `wait_of` names that field. The wait is
/// moved out for the call, since `try_op` needs the whole object.
pub(crate) fn poll_kept<O: Watched, T>(
    obj: &mut O,
    wait_of: fn(&mut O) -> &mut AsyncWait,
    cx: &mut Context<'_>,
    op: &'static str,
    spin_first: bool,
    try_op: impl FnMut(&mut O) -> Result<T>,
) -> Poll<Result<T>> {
    let mut wait = std::mem::take(wait_of(obj));
    let polled = poll_op(&mut wait, obj, cx, op, spin_first, try_op);
    *wait_of(obj) = wait;
    polled
}

/// Tries `try_op` for the object's spin time (a fresh wait only); the result
/// if it stopped blocking meanwhile.
fn spin<O: Watched + ?Sized, T>(
    obj: &mut O,
    try_op: &mut impl FnMut(&mut O) -> Result<T>,
) -> Option<Result<T>> {
    let spin = obj.spin();
    if spin.is_zero() {
        return None;
    }
    let started = Instant::now();
    loop {
        for _ in 0..SPIN_BATCH {
            std::hint::spin_loop();
            match try_op(obj) {
                Err(e) if e.is_would_block() => {}
                done => return Some(done),
            }
        }
        if started.elapsed() >= spin || obj.interrupt().is_some_and(|i| i.raised()) {
            return None;
        }
    }
}

/// Tries between looks at the clock while spinning.
const SPIN_BATCH: u32 = 8;

/// A future running [`poll_op`] on an object it holds (by reference, usually)
/// until the operation is done; dropped early, it gives its wait back and has
/// taken nothing.
pub(crate) struct OpFuture<O, F> {
    obj: O,
    wait: AsyncWait,
    op: &'static str,
    try_op: F,
}

impl<O: Watched, T, F: FnMut(&mut O) -> Result<T> + Unpin> OpFuture<O, F> {
    pub(crate) fn new(obj: O, op: &'static str, try_op: F) -> Self {
        OpFuture {
            obj,
            wait: AsyncWait::default(),
            op,
            try_op,
        }
    }

    /// Makes sure the future is polled again at `deadline` (its `try_op`
    /// decides what happens then).
    pub(crate) fn until(mut self, deadline: Option<Instant>) -> Self {
        self.wait.deadline = deadline;
        self
    }
}

impl<O: Watched + Unpin, T, F: FnMut(&mut O) -> Result<T> + Unpin> std::future::Future
    for OpFuture<O, F>
{
    type Output = Result<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        poll_op(
            &mut this.wait,
            &mut this.obj,
            cx,
            this.op,
            true,
            &mut this.try_op,
        )
    }
}

macro_rules! forward_watched {
    ($($ref:ty),*) => {$(
        impl<T: Watched + ?Sized> Watched for $ref {
            fn bells(&self) -> Bells<'_> {
                (**self).bells()
            }
            fn interrupt(&self) -> Option<&Arc<Interrupt>> {
                (**self).interrupt()
            }
            fn recheck(&self) -> Option<Duration> {
                (**self).recheck()
            }
            fn object(&self) -> &ObjectName {
                (**self).object()
            }
            fn peers(&self) -> Option<Vec<ProcessIdentity>> {
                (**self).peers()
            }
            fn spin(&self) -> Duration {
                (**self).spin()
            }
        }
    )*};
}
forward_watched!(&T, &mut T, Arc<T>);
