//! Running a future to completion on the calling thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Runs `future` on this thread until it completes, sleeping between polls
/// (no executor needed): for using the `*_async` methods from plain code, and
/// in examples.
///
/// ```
/// # use shmkit::channel::{Receiver, Sender};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-block-on-{}", std::process::id());
/// let mut rx = Receiver::connect(&name)?;
/// let mut tx = Sender::connect(&name)?;
/// shmkit::block_on(tx.send_async(b"hi"))?;
/// assert_eq!(shmkit::block_on(rx.recv_async())?, b"hi");
/// # Ok(()) }
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // park may return spuriously: sleep until the waker really ran.
        while !unpark.woken.swap(false, SeqCst) {
            std::thread::park();
        }
    }
}

struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        self.thread.unpark();
    }
}
