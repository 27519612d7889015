//! A cross-process mutex that reports a dead owner, optionally guarding a value.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::segment::Lifetime;
use crate::shm::Shm;

use super::owner::{me, owner_alive};
use super::protocol::{mutex_try_lock, mutex_unlock, Attempt};
use super::state::{Init, Kind, Shared, STATE_SIZE};
use crate::readiness::OpFuture;

/// Set while the data may be inconsistent: an owner died (or panicked) holding
/// the lock and nobody has called [`MutexGuard::mark_consistent`] since.
const FLAG_INCONSISTENT: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_INCONSISTENT;

/// How often a blocked `lock` checks whether the owner still lives.
const OWNER_CHECK: Duration = Duration::from_millis(20);

/// A mutex shared between processes, guarding a value of type `T` that lives in
/// shared memory right after the lock (use `()` for a bare lock).
///
/// `T` must be plain old data ([`bytemuck::Pod`]): any bit pattern is a valid
/// `T`, so nothing another process writes can make it invalid. Processes that
/// follow the locking protocol never touch the value while someone else holds the
/// lock, which is what makes the `&mut T` a guard hands out sound.
///
/// # A dead owner
///
/// If a process dies (or a thread panics) while holding the lock, the next
/// `lock` acquires it and returns [`LockError::OwnerDied`] with the guard: the
/// caller repairs the value and calls [`MutexGuard::mark_consistent`]. Until
/// someone does, every later `lock` reports `OwnerDied` again; the mutex is never
/// silently treated as fine. A waiter notices a dead owner within about 20 ms.
///
/// Owner death is detected by recording the owner's process id (the lock word
/// itself) and start time; see the [module documentation](super) for why this
/// and not a robust pthread mutex.
///
/// ```
/// use shmkit::sync::{LockError, Mutex};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-mutex-{}", std::process::id());
/// let counter = Mutex::create(&name, 0u64)?;
/// // Another process: Mutex::<u64>::open(&name)?
/// let mut guard = match counter.lock() {
///     Ok(guard) => guard,
///     Err(LockError::OwnerDied(mut guard)) => {
///         *guard = 0; // repair
///         guard.mark_consistent();
///         guard
///     }
///     Err(LockError::Failed(e)) => return Err(e),
/// };
/// *guard += 1;
/// assert_eq!(*guard, 1);
/// # Ok(()) }
/// ```
pub struct Mutex<T: Pod = ()> {
    shared: Shared,
    /// Created locked and the guard not taken yet (see
    /// [`create_locked`](Mutex::create_locked)).
    initially_held: std::sync::atomic::AtomicBool,
    /// When `try_lock` last asked the OS whether the owner lives (ms since
    /// `epoch()`), so that a caller polling `try_lock` on a busy mutex does not
    /// read `/proc` on every call.
    last_owner_check: AtomicU64,
    _value: PhantomData<T>,
}

/// Process-local origin for `last_owner_check`.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The outcome of a lock call: the guard, or why there is none (or why it comes
/// with a warning).
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// A lock that failed, or succeeded after its previous owner died.
pub enum LockError<G> {
    /// The lock is yours, but a process died (or a thread panicked) while holding
    /// it: the guarded data may be half-updated. Repair it and call
    /// [`MutexGuard::mark_consistent`]; otherwise the next locker is told again.
    OwnerDied(G),
    /// The lock was not acquired: [`Error::Timeout`], [`Error::WouldBlock`] or a
    /// corrupt state.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, if the lock was acquired.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Failed(_) => None,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "a process died while holding this mutex; the data it guards may be inconsistent",
            ),
            LockError::Failed(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// `?` on a lock result: a dead owner becomes [`Error::OwnerDied`] and the guard
/// is dropped, leaving the mutex marked inconsistent for the next locker.
impl<T: Pod> From<LockError<MutexGuard<'_, T>>> for Error {
    fn from(e: LockError<MutexGuard<'_, T>>) -> Error {
        match e {
            LockError::OwnerDied(g) => Error::OwnerDied {
                object: g.mutex.shared.name().clone(),
            },
            LockError::Failed(e) => e,
        }
    }
}

/// `?` on an owned lock result, as for [`MutexGuard`].
impl<T: Pod> From<LockError<ArcMutexGuard<T>>> for Error {
    fn from(e: LockError<ArcMutexGuard<T>>) -> Error {
        match e {
            LockError::OwnerDied(g) => Error::OwnerDied {
                object: g.mutex.shared.name().clone(),
            },
            LockError::Failed(e) => e,
        }
    }
}

impl<T: Pod> Mutex<T> {
    fn value_size() -> Result<u32> {
        u32::try_from(std::mem::size_of::<T>()).map_err(|_| Error::InvalidSize {
            object: std::any::type_name::<T>().into(),
            reason: "the guarded value must be smaller than 4 GiB".into(),
        })
    }

    fn init(value: &T) -> Init<'_> {
        Init {
            kind: Kind::Mutex,
            word: 0,
            param_a: 0,
            param_b: 0,
            param_c: 0,
            value_type: Fingerprint::of::<T>(),
            value: bytemuck::bytes_of(value),
        }
    }

    /// Writes a free mutex guarding `value` at the start of `bytes` (a segment
    /// still being initialised), for [`open_in`](Self::open_in) later.
    pub(crate) fn init_bytes(bytes: &mut [u8], value: T) -> std::result::Result<(), String> {
        super::state::write_into(bytes, &Self::init(&value))
    }

    fn wrap(shared: Shared) -> Result<Mutex<T>> {
        if shared.after_block() as usize % std::mem::align_of::<T>() != 0 {
            return Err(Error::InvalidSize {
                object: shared.name().clone(),
                reason: format!(
                    "the value would not be aligned to the {} bytes {} needs",
                    std::mem::align_of::<T>(),
                    std::any::type_name::<T>()
                ),
            });
        }
        shared.check_value_type(Fingerprint::of::<T>(), std::any::type_name::<T>())?;
        Ok(Mutex {
            shared,
            initially_held: std::sync::atomic::AtomicBool::new(false),
            last_owner_check: AtomicU64::new(0),
            _value: PhantomData,
        })
    }

    fn value_ptr(&self) -> *mut T {
        self.shared.after_block().cast()
    }

    /// Creates a named mutex guarding `value`; fails with
    /// [`Error::AlreadyExists`] if the name is taken. Temporary: it goes away when
    /// the last process using it closes it.
    pub fn create(name: &str, value: T) -> Result<Mutex<T>> {
        Self::named(name, &Self::init(&value), false, Lifetime::Temporary)
    }

    /// Creates (or, with `open`, opens) the named mutex whose state `init` says.
    fn named(name: &str, init: &Init, open: bool, lifetime: Lifetime) -> Result<Mutex<T>> {
        Self::value_size()?;
        Self::wrap(Shared::create_named(name, init, open, lifetime)?)
    }

    /// Creates a named mutex guarding `value`, already locked by this process,
    /// as Win32's `CreateMutex(.., TRUE, name)` does: no other process can take
    /// the lock between the creation and the first write of the data. Take the
    /// guard with [`initial_guard`](Self::initial_guard); dropping it (or the
    /// mutex, if the guard was never taken) unlocks. [`Error::AlreadyExists`] if
    /// the name is taken.
    ///
    /// ```
    /// use shmkit::sync::Mutex;
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-mutex-locked-{}", std::process::id());
    /// let table = Mutex::create_locked(&name, [0u32; 4])?;
    /// let other = Mutex::<[u32; 4]>::open(&name)?;
    /// assert!(other.try_lock().is_err()); // held from the start
    /// let mut guard = table.initial_guard().expect("created locked");
    /// *guard = [1, 2, 3, 4];
    /// drop(guard);
    /// assert_eq!(*other.lock()?, [1, 2, 3, 4]);
    /// # Ok(()) }
    /// ```
    pub fn create_locked(name: &str, value: T) -> Result<Mutex<T>> {
        let me = me();
        let init = Init {
            word: me.pid,
            param_b: me.pid,
            param_c: me.start_time,
            ..Self::init(&value)
        };
        let mutex = Self::named(name, &init, false, Lifetime::Temporary)?;
        mutex.initially_held.store(true, SeqCst);
        Ok(mutex)
    }

    /// The guard of a mutex made with [`create_locked`](Self::create_locked),
    /// once; `None` if it was not created locked or the guard was taken already.
    pub fn initial_guard(&self) -> Option<MutexGuard<'_, T>> {
        self.initially_held.swap(false, SeqCst).then(|| MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        })
    }

    /// Opens a named mutex; [`Error::NotFound`] if there is none, and
    /// [`Error::WrongKind`] if the name holds another kind of object or a value of
    /// another size.
    pub fn open(name: &str) -> Result<Mutex<T>> {
        let shared = Shared::open_named(name, Kind::Mutex, Some(Self::value_size()?))?;
        Self::wrap(shared)
    }

    /// Opens the named mutex, or creates it guarding `value`.
    /// [`created`](Self::created) tells which happened.
    pub fn create_or_open(name: &str, value: T) -> Result<Mutex<T>> {
        Self::named(name, &Self::init(&value), true, Lifetime::Temporary)
    }

    /// Opens the named mutex, or creates it guarding `value`, **persistent**: it
    /// stays (with its state) when its last user closes it, until
    /// [`Shm::remove`](crate::Shm::remove). So a process that starts after the
    /// owner died (nobody else having it open meanwhile) still finds it, and its
    /// first lock reports [`LockError::OwnerDied`]; a temporary mutex would be
    /// gone, and a fresh one report nothing. (A mutex inside a persistent segment,
    /// [`init_in`](Self::init_in), does the same beside the data it guards.)
    ///
    /// ```
    /// use shmkit::sync::Mutex;
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-mutex-persistent-{}", std::process::id());
    /// let m = Mutex::create_or_open_persistent(&name, 0u64)?;
    /// *m.lock()? += 1;
    /// drop(m);
    /// // Still there, with its value, after its last user closed it.
    /// assert_eq!(*Mutex::<u64>::open(&name)?.lock()?, 1);
    /// shmkit::Shm::remove(&name)?;
    /// # Ok(()) }
    /// ```
    pub fn create_or_open_persistent(name: &str, value: T) -> Result<Mutex<T>> {
        Self::named(name, &Self::init(&value), true, Lifetime::Persistent)
    }

    /// Bytes a mutex guarding a `T` takes inside a segment.
    pub const fn size_in_segment() -> u64 {
        STATE_SIZE + std::mem::size_of::<T>() as u64
    }

    /// Initialises a new mutex at `offset` (8-byte aligned) of `shm`, guarding
    /// `value`, stored right after it. Call this once, before other processes
    /// use the mutex — initialising over a mutex in use breaks it — and let them
    /// [`open_in`](Self::open_in). Takes [`size_in_segment`](Self::size_in_segment)
    /// bytes.
    ///
    /// ```
    /// use shmkit::{sync::Mutex, Shm};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-mutex-in-{}", std::process::id());
    /// let shm = Shm::create(&name, 4096)?;
    /// let m = Mutex::init_in(&shm, 128, [0u32; 4])?;
    /// m.lock()?[2] = 7;
    /// assert_eq!(Mutex::<[u32; 4]>::open_in(&shm, 128)?.lock()?[2], 7);
    /// # Ok(()) }
    /// ```
    pub fn init_in(shm: &Shm, offset: u64, value: T) -> Result<Mutex<T>> {
        Self::value_size()?;
        Self::wrap(Shared::init_in(shm, offset, &Self::init(&value))?)
    }

    /// Opens the mutex at `offset` of `shm`; [`Error::NotShmkit`] if none was
    /// initialised there, [`Error::WrongKind`] for another kind or value size.
    pub fn open_in(shm: &Shm, offset: u64) -> Result<Mutex<T>> {
        let size = Self::value_size()?;
        let shared = Shared::open_in(shm, offset, Kind::Mutex, Some(size), size as u64)?;
        Self::wrap(shared)
    }

    /// Name used in errors: the mutex's name, or `SEGMENT@OFFSET` when embedded.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Ends this mutex's blocked `lock` calls (in this process, through this
    /// handle) from another thread: they return
    /// [`Error::Interrupted`](crate::Error::Interrupted), and so do later waits
    /// until [`Interrupter::clear`](crate::Interrupter::clear).
    pub fn interrupter(&self) -> crate::Interrupter {
        self.shared.interrupt.interrupter()
    }

    /// Shares `to`'s interrupt state (a sender's producer lock is interrupted
    /// with the sender).
    pub(crate) fn link_interrupt(&self, to: &crate::interrupt::InterruptSlot) {
        self.shared.interrupt.link(to);
    }

    /// Whether this handle created the named mutex.
    pub fn created(&self) -> bool {
        self.shared.created()
    }

    /// How many times a blocking call retries, spinning, before it sleeps
    /// (default 200, a few microseconds). Waking a sleeping process costs tens of
    /// microseconds, so spinning wins when the other side answers quickly and has
    /// a CPU of its own; 0 sleeps at once and leaves the CPU to others.
    pub fn set_spins(&mut self, attempts: u32) {
        self.shared.spins = attempts;
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.lock_until(None, None)
    }

    /// Locks if the mutex is free now; [`Error::WouldBlock`] otherwise. A dead
    /// owner is taken over here too (checked at most every 20 ms per handle).
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let me = me();
        match mutex_try_lock(&self.shared.block().word, me.pid) {
            Attempt::Done(()) => self.acquired(false),
            Attempt::Sleep(owner) if self.owner_check_due() => {
                match self.take_over_if_dead(owner) {
                    Some(()) => self.acquired(true),
                    None => Err(self.would_block()),
                }
            }
            Attempt::Sleep(_) => Err(self.would_block()),
        }
    }

    fn would_block(&self) -> LockError<MutexGuard<'_, T>> {
        LockError::Failed(Error::WouldBlock {
            object: self.shared.name().clone(),
            op: "lock",
        })
    }

    /// Whether `try_lock` should check the owner's liveness now: at most once per
    /// `OWNER_CHECK` per handle (the first call always does).
    fn owner_check_due(&self) -> bool {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last_owner_check.load(Relaxed);
        if last != 0 && now - last.min(now) < OWNER_CHECK.as_millis() as u64 {
            return false;
        }
        self.last_owner_check.store(now, Relaxed);
        true
    }

    /// Locks, waiting at most `timeout`; [`Error::Timeout`] after that.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.lock_until(Instant::now().checked_add(timeout), Some(timeout))
    }

    fn lock_until(
        &self,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> LockResult<MutexGuard<'_, T>> {
        let me = me();
        let word = &self.shared.block().word;
        let took_over = self.shared.waitable().block_on(
            deadline,
            Some(OWNER_CHECK),
            || match mutex_try_lock(word, me.pid) {
                Attempt::Done(()) => Attempt::Done(false),
                Attempt::Sleep(owner) => Attempt::Sleep(owner),
            },
            |owner| self.take_over_if_dead(owner).map(|()| true),
        );
        match took_over {
            Ok(died) => self.acquired(died),
            Err(stop) => Err(LockError::Failed(self.shared.stopped(
                stop,
                "lock",
                timeout.unwrap_or_default(),
            ))),
        }
    }

    /// If `owner` (seen in the lock word) is dead, takes the lock from it.
    fn take_over_if_dead(&self, owner: u32) -> Option<()> {
        let b = self.shared.block();
        let recorded_pid = b.param_b.load(Acquire);
        let recorded_start = b.param_c.load(Relaxed);
        if owner == 0 || owner_alive(owner, recorded_pid, recorded_start) {
            return None;
        }
        // Only one taker wins; the compare-exchange also fails if the dead owner's
        // word changed meanwhile (someone else took over and unlocked).
        b.word
            .compare_exchange(owner, me().pid, SeqCst, SeqCst)
            .ok()?;
        b.param_a.fetch_or(FLAG_INCONSISTENT, SeqCst);
        Some(())
    }

    /// Records this process as owner and builds the guard.
    fn acquired(&self, owner_died: bool) -> LockResult<MutexGuard<'_, T>> {
        let b = self.shared.block();
        let me = me();
        b.param_c.store(me.start_time, Relaxed);
        b.param_b.store(me.pid, Release);
        let guard = MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        let flags = b.param_a.load(SeqCst);
        if flags & !KNOWN_FLAGS != 0 {
            // Dropping the guard unlocks; the flags stay as found for inspection.
            return Err(LockError::Failed(
                self.shared
                    .corrupt(format!("mutex flags {flags:#x} has unknown bits set")),
            ));
        }
        if owner_died || flags & FLAG_INCONSISTENT != 0 {
            return Err(LockError::OwnerDied(guard));
        }
        Ok(guard)
    }
}

/// Awaiting the lock, without a thread.
impl<T: Pod> Mutex<T> {
    /// [`lock`](Self::lock) as a future. Cancel safe: the lock is taken only in
    /// the poll that completes the future; dropping it earlier leaves the
    /// mutex as it was. A dead owner is taken over as by `lock` (noticed within
    /// about 20 ms): [`LockError::OwnerDied`].
    ///
    /// The guard is not `Send` (the lock belongs to this process and is
    /// released where it was taken); to hold the lock across an `.await` in a
    /// multi-threaded runtime use [`lock_arc_async`](Self::lock_arc_async).
    pub fn lock_async(
        &self,
    ) -> impl std::future::Future<Output = LockResult<MutexGuard<'_, T>>> + '_ {
        let taking = OpFuture::new(self, "lock", |m: &mut &Mutex<T>| {
            let m: &Mutex<T> = m;
            lift_lock(m.try_lock())
        });
        async move { taking.await.unwrap_or_else(|e| Err(LockError::Failed(e))) }
    }

    /// [`lock_arc`](Self::lock_arc) as a future: an owned guard that may be
    /// held across `.await`s on any thread. Cancel safe as
    /// [`lock_async`](Self::lock_async).
    pub fn lock_arc_async(
        self: &Arc<Self>,
    ) -> impl std::future::Future<Output = LockResult<ArcMutexGuard<T>>> + Send + 'static
    where
        T: Send + Sync,
    {
        let taking = OpFuture::new(self.clone(), "lock", |m: &mut Arc<Mutex<T>>| {
            lift_lock(m.try_lock_arc())
        });
        async move { taking.await.unwrap_or_else(|e| Err(LockError::Failed(e))) }
    }
}

/// A try-lock's result for the async wait: "would block" is the error that
/// makes it wait; everything else (taken, owner died, failed) is the answer.
fn lift_lock<G>(r: LockResult<G>) -> Result<LockResult<G>> {
    match r {
        Err(LockError::Failed(e)) if e.is_would_block() => Err(e),
        other => Ok(other),
    }
}

impl<T: Pod + Sync> crate::readiness::Ready for Mutex<T> {
    fn ready_now(&self, deep: bool) -> bool {
        let b = self.shared.block();
        let owner = b.word.load(SeqCst);
        if owner == 0 {
            return true;
        }
        let dead = deep && !owner_alive(owner, b.param_b.load(Acquire), b.param_c.load(Relaxed));
        if dead {
            // The next try_lock takes over at once instead of waiting out its
            // own check interval.
            self.last_owner_check.store(0, Relaxed);
        }
        dead
    }
}

impl<T: Pod> crate::readiness::Watched for Mutex<T> {
    fn bells(&self) -> crate::readiness::Bells<'_> {
        [Some(self.shared.bell()), None]
    }
    fn interrupt(&self) -> Option<&Arc<crate::interrupt::Interrupt>> {
        self.shared.interrupt.get_arc()
    }
    fn recheck(&self) -> Option<Duration> {
        Some(OWNER_CHECK)
    }
    fn object(&self) -> &crate::error::ObjectName {
        self.shared.name()
    }
    fn peers(&self) -> Option<Vec<crate::sys::ProcessIdentity>> {
        // The owner recorded with the lock (a word without a record yet: the
        // owner is just taking it; look again periodically).
        let b = self.shared.block();
        let owner = b.word.load(SeqCst);
        let pid = b.param_b.load(Acquire);
        if owner == 0 {
            return Some(Vec::new());
        }
        (pid == owner).then(|| {
            vec![crate::sys::ProcessIdentity {
                pid,
                start_time: b.param_c.load(Relaxed),
            }]
        })
    }
}

impl<T: Pod> Drop for Mutex<T> {
    /// A mutex created locked whose guard was never taken is unlocked here, as
    /// that guard would have been.
    fn drop(&mut self) {
        drop(self.initial_guard());
    }
}

impl<T: Pod> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]; unlocks when dropped. Dereferences to the
/// guarded value.
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    /// The lock belongs to this thread's process id; keep the guard on the thread
    /// (like std's guards) so that unlocking happens where locking did.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing &MutexGuard only shares &T, which is fine for Pod T (Sync).
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<T: Pod> MutexGuard<'_, T> {
    /// Declares the guarded data repaired after [`LockError::OwnerDied`]: later
    /// lockers get plain `Ok` again.
    pub fn mark_consistent(&mut self) {
        self.mutex
            .shared
            .block()
            .param_a
            .fetch_and(!FLAG_INCONSISTENT, SeqCst);
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: aligned and in bounds (checked in `wrap`), any bits are a valid
        // T, and holding the lock means no process following the protocol writes it.
        unsafe { &*self.mutex.value_ptr() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for deref; the lock makes this the only access.
        unsafe { &mut *self.mutex.value_ptr() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: Pod> Mutex<T> {
    /// Unlocks a lock whose guard a sender's [`OwnedReservation`] let go of
    /// (`mem::forget`) when it took the reservation over.
    ///
    /// [`OwnedReservation`]: crate::channel::OwnedReservation
    pub(crate) fn unlock_for_owned_reservation(&self) {
        self.unlock();
    }

    /// What dropping a guard does.
    fn unlock(&self) {
        let b = self.shared.block();
        if std::thread::panicking() {
            // Like std's poisoning: a panic may have left the value half-updated.
            b.param_a.fetch_or(FLAG_INCONSISTENT, SeqCst);
        }
        b.param_b.store(0, Relaxed);
        mutex_unlock(&self.shared.waitable());
    }

    /// [`lock`](Self::lock) through an `Arc`, for a guard that owns its mutex
    /// (no lifetime): what a binding keeps between calls.
    ///
    /// ```
    /// # fn main() -> shmkit::Result<()> {
    /// use std::sync::Arc;
    /// use shmkit::sync::Mutex;
    /// # let name = format!("doc-lock-arc-{}", std::process::id());
    /// let mutex = Arc::new(Mutex::create(&name, 0u32)?);
    /// let mut guard = mutex.lock_arc()?;
    /// *guard += 1;
    /// // The guard may move to and be dropped on another thread of the process.
    /// std::thread::spawn(move || drop(guard)).join().unwrap();
    /// assert_eq!(*mutex.try_lock()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn lock_arc(self: &Arc<Self>) -> LockResult<ArcMutexGuard<T>> {
        self.owned(self.lock())
    }

    /// [`try_lock`](Self::try_lock) through an `Arc`; see [`lock_arc`](Self::lock_arc).
    pub fn try_lock_arc(self: &Arc<Self>) -> LockResult<ArcMutexGuard<T>> {
        self.owned(self.try_lock())
    }

    /// [`lock_timeout`](Self::lock_timeout) through an `Arc`; see
    /// [`lock_arc`](Self::lock_arc).
    pub fn lock_arc_timeout(self: &Arc<Self>, timeout: Duration) -> LockResult<ArcMutexGuard<T>> {
        self.owned(self.lock_timeout(timeout))
    }

    fn owned(self: &Arc<Self>, r: LockResult<MutexGuard<'_, T>>) -> LockResult<ArcMutexGuard<T>> {
        let own = |g: MutexGuard<'_, T>| {
            // The lock passes to the owned guard: the borrowed one must not unlock.
            std::mem::forget(g);
            ArcMutexGuard {
                mutex: self.clone(),
            }
        };
        match r {
            Ok(g) => Ok(own(g)),
            Err(LockError::OwnerDied(g)) => Err(LockError::OwnerDied(own(g))),
            Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
        }
    }
}

/// A [`MutexGuard`] that owns (an `Arc` of) its mutex, from
/// [`Mutex::lock_arc`]. Unlike `MutexGuard` it is `Send`: the lock belongs to
/// the process (a mutex records its owner by process id), so unlocking on another
/// thread of the same process follows the protocol.
pub struct ArcMutexGuard<T: Pod> {
    mutex: Arc<Mutex<T>>,
}

impl<T: Pod> ArcMutexGuard<T> {
    /// Declares the guarded data repaired; see [`MutexGuard::mark_consistent`].
    pub fn mark_consistent(&mut self) {
        self.mutex
            .shared
            .block()
            .param_a
            .fetch_and(!FLAG_INCONSISTENT, SeqCst);
    }

    /// The mutex this guard holds.
    pub fn mutex(&self) -> &Arc<Mutex<T>> {
        &self.mutex
    }
}

impl<T: Pod> Deref for ArcMutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: as for MutexGuard: aligned, in bounds, any bits valid, and the
        // lock is held.
        unsafe { &*self.mutex.value_ptr() }
    }
}

impl<T: Pod> DerefMut for ArcMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for deref; the lock makes this the only access.
        unsafe { &mut *self.mutex.value_ptr() }
    }
}

impl<T: Pod> Drop for ArcMutexGuard<T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArcMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
