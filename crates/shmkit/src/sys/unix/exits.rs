//! Noticing that a peer process ended without looking at it periodically:
//! Linux gives a process descriptor (`pidfd_open`, 5.3) that becomes readable
//! when the process exits. One thread per process waits in `epoll` on the
//! descriptors of every peer some task or wait set depends on, and calls their
//! wakers when one ends; the task then tries its operation, which reports the
//! peer's death as a blocking call would. Idle waiters thus cost no CPU.
//!
//! A peer that cannot be watched this way (another PID namespace whose numbers
//! mean other processes here, a kernel without pidfds, other systems) is left
//! to the caller's periodic recheck.

use std::task::Waker;

use super::super::ProcessIdentity;

/// A waker registered for one process's exit; removed when dropped.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    #[cfg(target_os = "linux")]
    who: ProcessIdentity,
    #[cfg(target_os = "linux")]
    key: u64,
}

impl ExitWatch {
    /// The process this watch is for.
    #[cfg(target_os = "linux")]
    pub(crate) fn who(&self) -> ProcessIdentity {
        self.who
    }
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn who(&self) -> ProcessIdentity {
        unreachable!("no exit watches here")
    }

    /// Replaces the waker to call; `false` if the watch has fired already
    /// (the process ended: the watch is spent).
    pub(crate) fn set_waker(&self, waker: &Waker) -> bool {
        #[cfg(target_os = "linux")]
        return linux::set_waker(self.who, self.key, waker);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = waker;
            false
        }
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        linux::remove(self.who, self.key);
    }
}

/// Calls `waker` when process `who` exits. `None` if that cannot be watched
/// (or it has ended already): the caller must look again periodically.
pub(crate) fn watch_exit(who: ProcessIdentity, waker: &Waker) -> Option<ExitWatch> {
    #[cfg(target_os = "linux")]
    {
        let key = linux::add(who, waker)?;
        Some(ExitWatch { who, key })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (who, waker);
        None
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::super::per_process::PerProcess;

    use super::*;

    /// Watched processes kept with no waker before they are let go.
    const KEEP_IDLE: usize = 1024;

    struct Watched {
        /// Closing it also takes it out of the epoll set.
        _pidfd: OwnedFd,
        wakers: Vec<(u64, Waker)>,
    }

    struct Watcher {
        epoll: OwnedFd,
        watched: HashMap<(u32, u64), Watched>,
        next_key: u64,
    }

    /// This process's watcher (a forked child makes its own: the parent's
    /// thread does not run there); `None` where epoll or a thread cannot be had.
    fn with_watcher<R>(f: impl FnOnce(&mut Watcher) -> Option<R>) -> Option<R> {
        static WATCHER: PerProcess<Option<Watcher>> = PerProcess::new();
        let mut w = WATCHER
            .get(new_watcher)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(w.as_mut()?)
    }

    fn new_watcher() -> Option<Watcher> {
        // SAFETY: plain system call; checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = epoll.as_raw_fd();
        std::thread::Builder::new()
            .name("shmkit-exits".into())
            .spawn(move || run(raw))
            .ok()?;
        Some(Watcher {
            epoll,
            watched: HashMap::new(),
            next_key: 0,
        })
    }

    /// The watcher thread. The epoll descriptor lives as long as the process
    /// (the watcher is never dropped; a forked child's copy is leaked).
    fn run(epoll: libc::c_int) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: a live epoll descriptor and a buffer of 64 events.
            let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, -1) };
            if n <= 0 {
                continue;
            }
            let mut fire = Vec::new();
            with_watcher(|w| {
                for e in &events[..n as usize] {
                    let (pid, start) = (e.u64 as u32, w.start_of(e.u64));
                    if let Some(gone) = w.watched.remove(&(pid, start)) {
                        fire.extend(gone.wakers.into_iter().map(|(_, waker)| waker));
                    }
                }
                Some(())
            });
            for waker in fire {
                waker.wake();
            }
        }
    }

    impl Watcher {
        /// The start time registered for the pid in an epoll event.
        fn start_of(&self, data: u64) -> u64 {
            let pid = data as u32;
            self.watched
                .keys()
                .find(|(p, _)| *p == pid)
                .map_or(0, |(_, s)| *s)
        }
    }

    pub(super) fn add(who: ProcessIdentity, waker: &Waker) -> Option<u64> {
        if who.start_time == 0 {
            return None;
        }
        with_watcher(|w| add_to(w, who, waker))
    }

    fn add_to(w: &mut Watcher, who: ProcessIdentity, waker: &Waker) -> Option<u64> {
        let key = w.next_key;
        w.next_key += 1;
        if let Some(entry) = w.watched.get_mut(&(who.pid, who.start_time)) {
            entry.wakers.push((key, waker.clone()));
            return Some(key);
        }
        // SAFETY: plain system call; checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, who.pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        // The descriptor is for whoever has the pid in *our* namespace now: it
        // is the peer only if that process started when the peer did (start
        // times count from boot, the same in every namespace), and it must not
        // have ended already.
        match super::super::proc_state(who.pid) {
            Some((state, start))
                if start == who.start_time && !matches!(state, 'Z' | 'X' | 'x') => {}
            _ => return None,
        }
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: who.pid as u64,
        };
        // SAFETY: live descriptors and event.
        let r = unsafe {
            libc::epoll_ctl(
                w.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                pidfd.as_raw_fd(),
                &mut event,
            )
        };
        if r != 0 {
            return None;
        }
        w.watched.insert(
            (who.pid, who.start_time),
            Watched {
                _pidfd: pidfd,
                wakers: vec![(key, waker.clone())],
            },
        );
        Some(key)
    }

    pub(super) fn set_waker(who: ProcessIdentity, key: u64, waker: &Waker) -> bool {
        with_watcher(|w| {
            let entry = w.watched.get_mut(&(who.pid, who.start_time))?;
            let (_, old) = entry.wakers.iter_mut().find(|(k, _)| *k == key)?;
            if !old.will_wake(waker) {
                *old = waker.clone();
            }
            Some(())
        })
        .is_some()
    }

    pub(super) fn remove(who: ProcessIdentity, key: u64) {
        with_watcher(|w| {
            if let Some(entry) = w.watched.get_mut(&(who.pid, who.start_time)) {
                entry.wakers.retain(|(k, _)| *k != key);
            }
            // A descriptor without wakers is kept for the next wait on the same
            // peer (a task re-arms for every message), up to a bound.
            if w.watched.len() > KEEP_IDLE {
                w.watched.retain(|_, e| !e.wakers.is_empty());
            }
            Some(())
        });
    }
}
