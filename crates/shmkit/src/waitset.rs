//! Waiting on many objects at once, without async: [`WaitSet`].

use std::task::Context;
use std::time::{Duration, Instant};

use crate::channel::{Receiver, RpcServer, Sender, Subscriber};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{seen, AsyncWait, Ready};
use crate::sync::{Event, Mutex, Semaphore};
use crate::{Interrupter, Notifier};

/// Blocks until any of a set of channel endpoints, synchronisation objects and
/// OS descriptors is ready, and says which: a `select`/`poll` for shmkit.
///
/// "Ready" means that the object's non-blocking call would not report
/// `WouldBlock` now: a [`Receiver`], [`Subscriber`] or [`RpcServer`] has a
/// message (or an error to report, such as a closed peer), a [`Sender`] has
/// room, a [`Mutex`] is free (or its owner died), a [`Semaphore`] has a unit, an
/// [`Event`] is set, a descriptor is readable (Unix) or a handle signalled
/// (Windows). It is level-triggered, like `poll(2)`: ready objects are reported
/// by every wait until they are taken from. Another process may take first
/// (another subscriber cannot, but another locker can), so the `try_*` call
/// that follows may still find nothing: loop.
///
/// The set borrows its members: build it for each wait (cheap), then act on
/// the ready ones. Nothing polls while it waits: shmkit's reactor watches the
/// objects' words (see [`Receiver::recv_async`]) and the set sleeps in `poll(2)`
/// (Windows: `WaitForMultipleObjects`, at most 63 handles of your own).
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
/// let ia = set.add(&rx_a);
/// let ib = set.add(&rx_b);
/// let ready = set.wait_timeout(Duration::from_secs(5))?;
/// assert_eq!(ready, [ib]);
/// # let _ = ia;
/// assert_eq!(rx_b.try_recv()?, b"on b");
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct WaitSet<'a> {
    members: Vec<Member<'a>>,
    interrupters: Vec<Interrupter>,
    notifier: Option<Notifier>,
}

/// Something a [`WaitSet`] can wait on: made from a reference to a channel
/// endpoint or synchronisation object, or (Unix) a borrowed descriptor, or
/// (Windows) a borrowed handle, by [`WaitSet::add`].
pub struct Member<'a>(Kind<'a>);

enum Kind<'a> {
    Object(&'a dyn Ready),
    #[cfg(unix)]
    Fd(std::os::fd::BorrowedFd<'a>),
    #[cfg(windows)]
    Handle(std::os::windows::io::BorrowedHandle<'a>),
}

macro_rules! members_from {
    ($($ty:ty),*) => {$(
        impl<'a> From<&'a $ty> for Member<'a> {
            fn from(object: &'a $ty) -> Member<'a> {
                Member(Kind::Object(object))
            }
        }
    )*};
}
members_from!(Receiver, Subscriber, Sender, RpcServer, Semaphore, Event);

impl<'a, T: bytemuck::Pod + Sync> From<&'a Mutex<T>> for Member<'a> {
    fn from(object: &'a Mutex<T>) -> Member<'a> {
        Member(Kind::Object(object))
    }
}

#[cfg(unix)]
impl<'a> From<std::os::fd::BorrowedFd<'a>> for Member<'a> {
    fn from(fd: std::os::fd::BorrowedFd<'a>) -> Member<'a> {
        Member(Kind::Fd(fd))
    }
}

#[cfg(windows)]
impl<'a> From<std::os::windows::io::BorrowedHandle<'a>> for Member<'a> {
    fn from(handle: std::os::windows::io::BorrowedHandle<'a>) -> Member<'a> {
        Member(Kind::Handle(handle))
    }
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// How often a waiting set checks that the peers of its members live, when
/// their exits cannot be watched (as blocking calls do).
const CHECK_EVERY: Duration = crate::channel::memory::CHECK_EVERY;

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> WaitSet<'a> {
        WaitSet::default()
    }

    /// Adds a member and returns its index: members are numbered from 0 in the
    /// order added, and [`wait`](Self::wait) reports ready ones by index.
    pub fn add(&mut self, member: impl Into<Member<'a>>) -> usize {
        self.members.push(member.into());
        self.members.len() - 1
    }

    /// Ends a wait of this set (now, or the next one) with
    /// [`Error::Interrupted`] when `interrupter` is raised, from any thread.
    /// The members' own interrupters end it too.
    pub fn interrupt_on(&mut self, interrupter: &Interrupter) {
        self.interrupters.push(interrupter.clone());
    }

    /// How many members the set has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Waits until at least one member is ready; returns the indices of the
    /// ready ones, in order. An empty set waits until interrupted.
    pub fn wait(&mut self) -> Result<Vec<usize>> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait), for at most `timeout`: an empty list when nothing
    /// became ready in time. A zero timeout looks once without sleeping.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Vec<usize>> {
        self.wait_until(Some(Instant::now().checked_add(timeout)))
    }

    /// `deadline`: `None` waits forever, `Some(None)` is a timeout too long to
    /// represent (forever as well).
    fn wait_until(&mut self, deadline: Option<Option<Instant>>) -> Result<Vec<usize>> {
        let deadline = deadline.flatten();
        if self.notifier.is_none() {
            let notifier = Notifier::new().map_err(|e| Error::Io {
                object: ObjectName::from("wait set"),
                op: "make its notifier",
                source: e,
            })?;
            self.notifier = Some(notifier);
        }
        let notifier = self.notifier.clone().expect("made above");
        let waker = notifier.waker();
        let cx = Context::from_waker(&waker);
        let mut waits: Vec<AsyncWait> = self.members.iter().map(|_| AsyncWait::default()).collect();
        let keys: Vec<u64> = self
            .interrupters
            .iter()
            .map(|i| i.state().add_waker(&waker))
            .collect();
        let result = self.wait_armed(&notifier, &cx, &mut waits, deadline);
        for (i, key) in self.interrupters.iter().zip(keys) {
            i.state().remove_waker(key);
        }
        // Give every place in a waiter count back before the borrow of the
        // members ends.
        drop(waits);
        result
    }

    fn wait_armed(
        &self,
        notifier: &Notifier,
        cx: &Context<'_>,
        waits: &mut [AsyncWait],
        deadline: Option<Instant>,
    ) -> Result<Vec<usize>> {
        // The first look checks the peers too, as does one every CHECK_EVERY.
        let mut last_deep: Option<Instant> = None;
        let mut ready = Vec::new();
        loop {
            notifier.clear();
            let deep = last_deep.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
            if deep {
                last_deep = Some(Instant::now());
            }
            if self.interrupters.iter().any(Interrupter::is_interrupted) {
                return Err(Error::Interrupted {
                    object: ObjectName::from("wait set"),
                    op: "wait",
                });
            }
            let mut rearm = false;
            for (i, (member, wait)) in self.members.iter().zip(waits.iter_mut()).enumerate() {
                match member.0 {
                    Kind::Object(object) => {
                        let bells = object.bells();
                        let seen = seen(&bells);
                        if object.ready_now(deep) {
                            ready.push(i);
                        } else if object.interrupt().is_some_and(|s| s.raised()) {
                            return Err(Error::Interrupted {
                                object: object.object().clone(),
                                op: "wait",
                            });
                        } else if ready.is_empty() && wait.arm(cx, object, seen) {
                            // Registered just now: look again before sleeping.
                            rearm = true;
                        }
                    }
                    #[cfg(unix)]
                    Kind::Fd(_) => {}
                    #[cfg(windows)]
                    Kind::Handle(_) => {}
                }
            }
            if !ready.is_empty() {
                return Ok(ready);
            }
            if rearm {
                continue;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(ready);
                    }
                    Some(left)
                }
            };
            let os_ready = self.sleep(notifier, timeout)?;
            if !os_ready.is_empty() {
                return Ok(os_ready);
            }
        }
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
        for (i, m) in self.members.iter().enumerate() {
            if let Kind::Fd(fd) = m.0 {
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
        for (i, m) in self.members.iter().enumerate() {
            if let Kind::Handle(h) = m.0 {
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
