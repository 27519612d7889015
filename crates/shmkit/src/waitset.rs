//! Waiting on many objects at once, without async: [`WaitSet`].

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use crate::channel::{Receiver, RpcServer, Sender, Subscriber};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{seen, AsyncWait, Ready};
use crate::sync::{Event, Mutex, Semaphore};
use crate::{Interrupter, Notifier};

/// Blocks until any of a set of channel endpoints, synchronisation objects and
/// OS descriptors is ready, and says which: a `select`/`epoll` for shmkit.
///
/// "Ready" means that the object's non-blocking call would not report
/// `WouldBlock` now: a [`Receiver`], [`Subscriber`] or [`RpcServer`] has a
/// message (or an error to report, such as a peer that closed or died), a
/// [`Sender`] has room (or its receiver is gone), a [`Mutex`] is free (or its
/// owner died), a [`Semaphore`] has a unit, an [`Event`] is set, a descriptor
/// is readable (Unix) or a handle signalled (Windows). It is level-triggered,
/// like `poll(2)`: a member reported ready is reported by every wait until it
/// is taken from. Another process may take first (another locker can), so the
/// `try_*` call that follows may still find nothing: loop.
///
/// The set holds its members for its lifetime: endpoints added by `&mut` are
/// reached through [`get_mut`](Self::get_mut) to take from them. Members stay
/// registered with shmkit's reactor between waits, so a wait costs time in
/// proportion to the members that changed, not to all of them (like `epoll`,
/// not `poll`). Meanwhile the members count as waiting: a peer pays one
/// wake-up system call per message while the set exists, as it would for a
/// sleeping receiver. Nothing polls while the set waits; a wait can be
/// interrupted from another thread ([`interrupt_on`](Self::interrupt_on), or a
/// member's own interrupter).
///
/// ```
/// use shmkit::channel::{Receiver, Sender};
/// use shmkit::WaitSet;
/// use std::time::Duration;
/// # fn main() -> shmkit::Result<()> {
/// # let (a, b) = (format!("doc-ws-a-{}", std::process::id()), format!("doc-ws-b-{}", std::process::id()));
/// let mut rx_a = Receiver::connect(&a)?;
/// let mut rx_b = Receiver::connect(&b)?;
/// let mut tx_b = Sender::connect(&b)?;
/// tx_b.send(b"on b")?;
///
/// let mut set = WaitSet::new();
/// let _ia = set.add(&mut rx_a);
/// let ib = set.add(&mut rx_b);
/// for i in set.wait_timeout(Duration::from_secs(5))? {
///     assert_eq!(i, ib);
///     let rx = set.get_mut::<Receiver>(i).expect("added as a receiver");
///     assert_eq!(rx.try_recv()?, b"on b");
/// }
/// # Ok(()) }
/// ```
pub struct WaitSet<'a> {
    slots: Vec<Slot<'a>>,
    interrupters: Vec<(Interrupter, Option<u64>)>,
    shared: Option<Arc<Shared>>,
    /// Members to look at in the next wait whatever fired: new ones, and the
    /// ones last reported ready (level triggering).
    look_again: Vec<usize>,
}

/// Something a [`WaitSet`] can wait on, made by [`WaitSet::add`] from a
/// reference (shared or exclusive) to a channel endpoint or synchronisation
/// object, or (Unix) a borrowed descriptor, or (Windows) a borrowed handle.
pub struct Member<'a>(Object<'a>);

enum Object<'a> {
    Shared(&'a dyn DynReady),
    Exclusive(&'a mut dyn DynReady),
    #[cfg(unix)]
    Fd(std::os::fd::BorrowedFd<'a>),
    #[cfg(windows)]
    Handle(std::os::windows::io::BorrowedHandle<'a>),
}

impl Object<'_> {
    fn ready(&self) -> Option<&dyn DynReady> {
        match self {
            Object::Shared(o) => Some(*o),
            Object::Exclusive(o) => Some(&**o),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// A shmkit object behind `dyn`, reachable again as its own type.
trait DynReady: Ready {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Ready + Any> DynReady for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

macro_rules! members_from {
    ($($ty:ty),*) => {$(
        impl<'a> From<&'a $ty> for Member<'a> {
            fn from(object: &'a $ty) -> Member<'a> {
                Member(Object::Shared(object))
            }
        }
        impl<'a> From<&'a mut $ty> for Member<'a> {
            fn from(object: &'a mut $ty) -> Member<'a> {
                Member(Object::Exclusive(object))
            }
        }
    )*};
}
members_from!(Receiver, Subscriber, Sender, RpcServer, Semaphore, Event);

impl<'a, T: bytemuck::Pod + Sync> From<&'a Mutex<T>> for Member<'a> {
    fn from(object: &'a Mutex<T>) -> Member<'a> {
        Member(Object::Shared(object))
    }
}

#[cfg(unix)]
impl<'a> From<std::os::fd::BorrowedFd<'a>> for Member<'a> {
    fn from(fd: std::os::fd::BorrowedFd<'a>) -> Member<'a> {
        Member(Object::Fd(fd))
    }
}

#[cfg(windows)]
impl<'a> From<std::os::windows::io::BorrowedHandle<'a>> for Member<'a> {
    fn from(handle: std::os::windows::io::BorrowedHandle<'a>) -> Member<'a> {
        Member(Object::Handle(handle))
    }
}

/// One member and its standing wait.
struct Slot<'a> {
    object: Object<'a>,
    /// Declared after `object` but dropped explicitly first (see `Drop`).
    wait: AsyncWait,
    /// Wakes the set and names this member (`member`'s, once the set waited).
    waker: Waker,
    member: Option<Arc<MemberWaker>>,
    /// When this member's peers were last checked for life.
    last_deep: Instant,
}

/// What the members' wakers share with the waiting thread.
struct Shared {
    notifier: Notifier,
    /// Members whose waker was called since the set last looked.
    fired: std::sync::Mutex<Vec<usize>>,
}

/// A member's waker: queues its index and wakes the set.
struct MemberWaker {
    shared: Arc<Shared>,
    index: usize,
    queued: AtomicBool,
}

impl Wake for MemberWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, SeqCst) {
            self.shared
                .fired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.index);
        }
        self.shared.notifier.notify();
    }
}

impl Default for WaitSet<'_> {
    fn default() -> Self {
        WaitSet::new()
    }
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("members", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// How often a member's peers are checked for life when their exits cannot
/// be watched (as blocking calls do).
const CHECK_EVERY: Duration = crate::channel::memory::CHECK_EVERY;

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> WaitSet<'a> {
        WaitSet {
            slots: Vec::new(),
            interrupters: Vec::new(),
            shared: None,
            look_again: Vec::new(),
        }
    }
    fn shared(&mut self) -> Result<Arc<Shared>> {
        if let Some(s) = &self.shared {
            return Ok(s.clone());
        }
        let notifier = Notifier::new().map_err(|e| Error::Io {
            object: ObjectName::from("wait set"),
            op: "make its notifier",
            source: e,
        })?;
        let shared = Arc::new(Shared {
            notifier,
            fired: Default::default(),
        });
        self.shared = Some(shared.clone());
        Ok(shared)
    }

    /// Adds a member and returns its index: members are numbered from 0 in the
    /// order added, and [`wait`](Self::wait) reports ready ones by index.
    pub fn add(&mut self, member: impl Into<Member<'a>>) -> usize {
        let index = self.slots.len();
        // The waker is made when the set first waits (that can fail); until
        // then a placeholder that does nothing.
        self.slots.push(Slot {
            object: member.into().0,
            wait: AsyncWait::default(),
            waker: Waker::noop().clone(),
            member: None,
            last_deep: Instant::now(),
        });
        self.look_again.push(index);
        index
    }

    /// The member at `index` as the `T` it was added as, if it was added by
    /// exclusive reference (`set.add(&mut receiver)`): to take from it.
    pub fn get_mut<T: Any>(&mut self, index: usize) -> Option<&mut T> {
        match &mut self.slots.get_mut(index)?.object {
            Object::Exclusive(o) => o.as_any_mut().downcast_mut::<T>(),
            _ => None,
        }
    }

    /// The member at `index` as the `T` it was added as (shmkit objects only).
    pub fn get<T: Any>(&self, index: usize) -> Option<&T> {
        self.slots
            .get(index)?
            .object
            .ready()?
            .as_any()
            .downcast_ref::<T>()
    }

    /// Ends a wait of this set (now, or the next one) with
    /// [`Error::Interrupted`] when `interrupter` is raised, from any thread.
    /// The members' own interrupters end it too.
    pub fn interrupt_on(&mut self, interrupter: &Interrupter) {
        self.interrupters.push((interrupter.clone(), None));
    }

    /// How many members the set has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Waits until at least one member is ready; returns the indices of the
    /// ready ones, in order. An empty set waits until interrupted.
    pub fn wait(&mut self) -> Result<Vec<usize>> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait), for at most `timeout`: an empty list when nothing
    /// became ready in time. A zero timeout looks once without sleeping.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Vec<usize>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_until(Some(deadline)),
            None => self.wait_until(None),
        }
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Vec<usize>> {
        let shared = self.shared()?;
        let set_waker = shared.notifier.waker();
        for (interrupter, key) in &mut self.interrupters {
            if key.is_none() {
                *key = Some(interrupter.state().add_waker(&set_waker));
            }
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.object.ready().is_some() && slot.member.is_none() {
                let member = Arc::new(MemberWaker {
                    shared: shared.clone(),
                    index,
                    queued: AtomicBool::new(false),
                });
                slot.waker = Waker::from(member.clone());
                slot.member = Some(member);
            }
        }
        let mut look: Vec<usize> = std::mem::take(&mut self.look_again);
        loop {
            shared.notifier.clear();
            look.append(&mut shared.fired.lock().unwrap_or_else(|e| e.into_inner()));
            look.sort_unstable();
            look.dedup();
            let ready = self.look_at(&look)?;
            if !ready.is_empty() {
                self.look_again = ready.clone();
                // Descriptors that are ready too are reported with them (a
                // busy channel must not hide a ready timer or socket).
                let mut all = ready;
                all.extend(self.sleep(&shared.notifier, Some(Duration::ZERO))?);
                all.sort_unstable();
                return Ok(all);
            }
            look.clear();
            if self.interrupters.iter().any(|(i, _)| i.is_interrupted()) {
                return Err(Error::Interrupted {
                    object: ObjectName::from("wait set"),
                    op: "wait",
                });
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // The descriptors get their look too.
                        return self.sleep(&shared.notifier, Some(Duration::ZERO));
                    }
                    Some(left)
                }
            };
            let os_ready = self.sleep(&shared.notifier, timeout)?;
            if !os_ready.is_empty() {
                return Ok(os_ready);
            }
        }
    }

    /// Looks at the members `look` (indices): the ready ones; the others are
    /// (re-)armed with the reactor.
    fn look_at(&mut self, look: &[usize]) -> Result<Vec<usize>> {
        let mut ready = Vec::new();
        for &i in look {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let Some(object) = slot.object.ready() else {
                continue;
            };
            if let Some(m) = &slot.member {
                m.queued.store(false, SeqCst);
            }
            let cx = Context::from_waker(&slot.waker);
            if !slot.wait.registered() {
                // Registered first, then looked at: a change after the look
                // rings for us.
                slot.wait.arm(&cx, object, [0; 2]);
            }
            let seen = seen(&object.bells());
            let deep = slot.last_deep.elapsed() >= CHECK_EVERY;
            if deep {
                slot.last_deep = Instant::now();
            }
            if object.ready_now(deep) {
                ready.push(i);
            } else if object.interrupt().is_some_and(|s| s.raised()) {
                return Err(Error::Interrupted {
                    object: object.object().clone(),
                    op: "wait",
                });
            } else {
                slot.wait.arm(&cx, object, seen);
            }
        }
        Ok(ready)
    }

    /// Sleeps until the notifier or one of the OS members is ready, or the
    /// timeout passes; the indices of the ready OS members.
    #[cfg(unix)]
    fn sleep(&self, notifier: &Notifier, timeout: Option<Duration>) -> Result<Vec<usize>> {
        use std::os::fd::AsRawFd;
        let mut fds = vec![libc::pollfd {
            fd: notifier.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut index = Vec::new();
        for (i, m) in self.slots.iter().enumerate() {
            if let Object::Fd(fd) = m.object {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                index.push(i);
            }
        }
        let ms = timeout.map_or(-1, |t| {
            // Round up: a timeout of 0.3 ms must not become a busy loop.
            t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
        });
        // SAFETY: `fds` is a live array of `fds.len()` pollfd entries whose
        // descriptors are borrowed for the set's lifetime.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(Error::Io {
                object: ObjectName::from("wait set"),
                op: "poll",
                source: e,
            });
        }
        Ok(fds[1..]
            .iter()
            .zip(index)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, i)| i)
            .collect())
    }

    #[cfg(windows)]
    fn sleep(&self, notifier: &Notifier, timeout: Option<Duration>) -> Result<Vec<usize>> {
        use std::os::windows::io::{AsHandle, AsRawHandle};
        use windows_sys::Win32::Foundation::{WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
        use windows_sys::Win32::System::Threading::{WaitForMultipleObjects, INFINITE};
        let mut handles = vec![notifier.as_raw_handle()];
        let mut index = Vec::new();
        for (i, m) in self.slots.iter().enumerate() {
            if let Object::Handle(h) = m.object {
                handles.push(h.as_handle().as_raw_handle());
                index.push(i);
            }
        }
        if handles.len() > 64 {
            return Err(Error::InvalidArgument {
                object: ObjectName::from("wait set"),
                reason: format!(
                    "{} handles of your own; Windows waits on at most 63 beside shmkit's",
                    handles.len() - 1
                ),
            });
        }
        let ms = timeout.map_or(INFINITE, |t| {
            t.as_nanos().div_ceil(1_000_000).min(INFINITE as u128 - 1) as u32
        });
        // SAFETY: a live array of open handles, borrowed for the set's lifetime.
        let r =
            unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr().cast(), 0, ms) };
        if r == WAIT_FAILED {
            return Err(Error::Io {
                object: ObjectName::from("wait set"),
                op: "WaitForMultipleObjects",
                source: std::io::Error::last_os_error(),
            });
        }
        if r == WAIT_TIMEOUT || r == WAIT_OBJECT_0 {
            return Ok(Vec::new());
        }
        // WAIT_OBJECT_0 + k: the k-th handle, the notifier being the 0th.
        // (Waiting takes the signal of auto-reset events and semaphores, as
        // any Windows wait does; the others are seen by the next wait.)
        Ok(index
            .get((r - WAIT_OBJECT_0) as usize - 1)
            .into_iter()
            .copied()
            .collect())
    }
}

impl Drop for WaitSet<'_> {
    fn drop(&mut self) {
        for (interrupter, key) in &self.interrupters {
            if let Some(key) = key {
                interrupter.state().remove_waker(*key);
            }
        }
        // The waits point into the members, which outlive the set: give their
        // places back now.
        for slot in &mut self.slots {
            slot.wait.cancel();
        }
    }
}
