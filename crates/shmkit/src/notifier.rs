//! A waker that an event loop can wait on: for C, C++, C#, Python and any
//! program with its own `epoll`/`poll`/`select` (or Windows wait) loop.

use std::io;
use std::sync::Arc;
use std::task::{Wake, Waker};

/// A kernel object that becomes ready when its [`waker`](Self::waker) is
/// called: an `eventfd` on Linux (a pipe on other Unixes; readable when woken),
/// an unnamed manual-reset event on Windows (signalled when woken).
///
/// The pattern is the non-blocking socket's: poll an object with this
/// notifier's waker (`Receiver::poll_recv_with`, `Sender::poll_send`, …); on
/// `Pending`, wait for the notifier in your loop, then [`clear`](Self::clear)
/// it and poll again. A wake-up may be spurious (the poll then returns
/// `Pending` again); none is lost.
///
/// ```
/// # #[cfg(unix)] fn main() -> shmkit::Result<()> {
/// use shmkit::channel::{Receiver, Sender};
/// use shmkit::Notifier;
/// use std::os::fd::AsRawFd;
/// use std::task::{Context, Poll};
/// # let name = format!("doc-notifier-{}", std::process::id());
/// let mut rx = Receiver::connect(&name)?;
/// let mut tx = Sender::connect(&name)?;
/// let notifier = Notifier::new().expect("an eventfd");
/// let waker = notifier.waker();
/// let mut cx = Context::from_waker(&waker);
/// assert!(rx.poll_recv_with(&mut cx, |m| m.to_vec()).is_pending());
/// tx.send(b"wake up")?;
/// // The notifier's fd is readable now: poll(2) it, as an event loop would.
/// let mut fds = [libc::pollfd { fd: notifier.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// // SAFETY: one valid pollfd.
/// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) }, 1);
/// notifier.clear();
/// assert!(matches!(rx.poll_recv_with(&mut cx, |m| m.to_vec()), Poll::Ready(Ok(m)) if m == b"wake up"));
/// # Ok(()) }
/// # #[cfg(not(unix))] fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<sys::Signal>,
}

impl Notifier {
    /// A new notifier, not ready.
    pub fn new() -> io::Result<Notifier> {
        Ok(Notifier {
            inner: Arc::new(sys::Signal::new()?),
        })
    }

    /// A waker that makes the notifier ready. Cheap to clone; may be called from
    /// any thread, any number of times.
    pub fn waker(&self) -> Waker {
        Waker::from(self.inner.clone())
    }

    /// Makes the notifier ready now (as its waker does).
    pub fn notify(&self) {
        self.inner.set();
    }

    /// Makes the notifier not ready (drains the eventfd or pipe, resets the
    /// event). Call before polling again, not after: a wake-up between the poll
    /// and a later clear would be lost.
    pub fn clear(&self) {
        self.inner.clear();
    }
}

impl Wake for sys::Signal {
    fn wake(self: Arc<Self>) {
        self.set();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.set();
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Notifier {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.read_end()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Notifier {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `inner`, which lives as long as
        // the borrow of self.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.inner.read_end()) }
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for Notifier {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.inner.handle()
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// An eventfd: readable while its counter is not zero.
    #[derive(Debug)]
    pub(super) struct Signal(OwnedFd);

    impl Signal {
        pub(super) fn new() -> io::Result<Signal> {
            // SAFETY: plain system call; the result is checked.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor that nothing else owns.
            Ok(Signal(unsafe { OwnedFd::from_raw_fd(fd) }))
        }

        pub(super) fn set(&self) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer; a full counter
            // (EAGAIN) is still readable, which is all a wake-up needs.
            unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
        }

        pub(super) fn clear(&self) {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer; EAGAIN when
            // already clear.
            unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }

        pub(super) fn read_end(&self) -> RawFd {
            self.0.as_raw_fd()
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// A non-blocking pipe: readable while it holds a byte.
    #[derive(Debug)]
    pub(super) struct Signal {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Signal {
        pub(super) fn new() -> io::Result<Signal> {
            let mut fds = [0; 2];
            // SAFETY: writes two descriptors into a live array; checked.
            if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            for fd in fds {
                // SAFETY: descriptors we just made.
                unsafe {
                    libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            // SAFETY: fresh descriptors that nothing else owns.
            Ok(unsafe {
                Signal {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            })
        }

        pub(super) fn set(&self) {
            // SAFETY: writes one byte from a live buffer; a full pipe is
            // readable already.
            unsafe { libc::write(self.write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }

        pub(super) fn clear(&self) {
            let mut buf = [0u8; 64];
            // SAFETY: reads into a live buffer until the pipe is empty.
            while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), 64) } > 0 {}
        }

        pub(super) fn read_end(&self) -> RawFd {
            self.read.as_raw_fd()
        }
    }
}

#[cfg(windows)]
mod sys {
    use std::io;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};

    use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, SetEvent};

    /// An unnamed manual-reset event.
    #[derive(Debug)]
    pub(super) struct Signal(OwnedHandle);

    impl Signal {
        pub(super) fn new() -> io::Result<Signal> {
            // SAFETY: no name, default security; the result is checked.
            let h = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
            if h.is_null() {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh handle that nothing else owns.
            Ok(Signal(unsafe { OwnedHandle::from_raw_handle(h) }))
        }

        pub(super) fn set(&self) {
            // SAFETY: an open event handle.
            unsafe { SetEvent(self.0.as_raw_handle()) };
        }

        pub(super) fn clear(&self) {
            // SAFETY: an open event handle.
            unsafe { ResetEvent(self.0.as_raw_handle()) };
        }

        pub(super) fn handle(&self) -> RawHandle {
            self.0.as_raw_handle()
        }
    }
}
