//! Cross-process synchronisation: [`Mutex`], [`Semaphore`] and [`Event`], named or
//! embedded in a segment, with timeouts on every wait and dead owners reported.
//!
//! # How they work
//!
//! Each object is a 64-byte state block in shared memory (layout in
//! `docs/LAYOUT.md`): a *word* that holds the object's state (the owner of a
//! mutex, the count of a semaphore, whether an event is set) and a *waiter count*.
//! Taking a free mutex, an available unit or a set event is one atomic operation
//! on the word, with no system call. A caller that must wait spins briefly, then
//! registers as a waiter and sleeps on the word; the releasing side changes the
//! word and makes the wake-up system call only when the waiter count says someone
//! sleeps. Sleeping is a `futex` wait on the shared word on Linux (not the private
//! flavour, so processes meet), and a wait on a named kernel semaphore that serves
//! as the word's wake channel on Windows. The protocol is checked with loom.
//!
//! Named objects are small managed segments of their own kind (listed by
//! `shmkit ls`, temporary: gone when the last user closes them); `init_in` and
//! `open_in` place one at an offset of a segment the caller already has.
//!
//! # Waiter counts and crashed sleepers
//!
//! Every way of waiting (these objects and the channels alike) runs one wait
//! loop, which holds its place in the waiter count through a guard: a wait that
//! ends by a result, a timeout or a panic (a `recv_with` callback that panics)
//! gives the place back. A process killed while asleep runs no destructor and
//! leaves its place counted. That costs nothing in correctness, since the count
//! only tells a releasing process whether to make the wake-up system call, but
//! from then on each release makes that call (about a microsecond). Where one
//! process alone can wait on a word, it clears the count when it attaches: a
//! queue channel's receiver (data doorbell) and the sender of a one-sender queue
//! (space doorbell). Elsewhere (these objects, many-sender queues, broadcast
//! subscribers) a leaked count stays until the object is made anew.
//!
//! # Why not a robust pthread mutex
//!
//! A `PTHREAD_MUTEX_ROBUST` mutex reports a dead owner through the kernel's
//! robust-futex list, but its layout belongs to the C library (glibc and musl
//! differ, Windows has none), so it could not be part of a versioned,
//! cross-platform layout, nor be inspected or validated as hostile input. Instead
//! the lock word holds the owner's process id, and the owner also records its
//! process start time; a waiter checks about every 20 ms whether that process still
//! runs, and a recycled process id does not fool it because the start time
//! differs. A dead owner's lock is taken over with a compare-and-swap, so exactly
//! one waiter wins, and the mutex is marked inconsistent until someone repairs the
//! data ([`LockError::OwnerDied`]).
//!
//! Ownership is per process: threads of one process exclude each other too, but a
//! thread that locks a mutex its own process holds waits (use `lock_timeout`).
//!
//! Whether that process still runs is the kernel's word on Linux: every process
//! that uses shmkit holds an open-file-description lock on a token file of its
//! own, `/dev/shm/shmkit-live.PID.START`, which the kernel releases when the
//! process ends however it ends; a waiter asks the kernel whether that lock is
//! held (`F_OFD_GETLK`). So an owner in another PID namespace (a container
//! sharing `/dev/shm` but not the process tree), or hidden by `hidepid=2`, is
//! neither taken over while it lives nor missed when it dies. A process without
//! a token (another platform, an older shmkit) is judged by `/proc` (Linux), by
//! `kill(pid, 0)` (other Unix) or by a process handle (Windows), which assumes
//! that process ids mean the same thing to every user.
//!
//! # Interoperating with other programs
//!
//! shmkit's objects speak shmkit's protocol. For programs that use the operating
//! system's named objects, use the adapters: `PosixSemaphore` (`sem_open`) on
//! Unix, and `NativeSemaphore`, `NativeMutex` and `NativeEvent`
//! (`CreateSemaphoreW` and friends) on Windows; each exists on its platform only.

mod event;
mod mutex;
pub(crate) mod owner;
pub(crate) mod protocol;
mod semaphore;
mod state;

#[cfg(windows)]
mod native;
#[cfg(unix)]
mod posix;

pub use event::{Event, EventMode};
pub use mutex::{ArcMutexGuard, LockError, LockResult, Mutex, MutexGuard};
pub use semaphore::{Semaphore, SEMAPHORE_MAX};

#[cfg(windows)]
pub use native::{NativeEvent, NativeMutex, NativeMutexGuard, NativeSemaphore};
#[cfg(unix)]
pub use posix::PosixSemaphore;
