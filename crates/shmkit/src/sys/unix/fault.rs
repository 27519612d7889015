//! Surviving a peer that shrinks a mapped object.
//!
//! Touching a page of a shared mapping that lies past the end of its object
//! raises SIGBUS, and any process with write access to the object can shrink it
//! (`ftruncate`). Like Wayland compositors guarding their clients' `wl_shm`
//! pools, shmkit registers every mapping it makes in a fixed table and installs
//! a SIGBUS handler that, for a fault inside a registered mapping, maps private
//! anonymous memory over the whole mapping and flags it. The faulting access
//! then completes on zeros instead of killing the process, and the safe API,
//! which looks at the flag after each access, reports `Truncated`. A fault
//! outside every registered mapping goes to the handler that was installed
//! before (or to the default action, which ends the process as before).
//!
//! The handler only reads atomics and calls `mmap` and `sigaction`, both
//! async-signal-safe. Slots carry a sequence number, odd while a slot is being
//! filled or emptied, so a handler running on another thread never acts on a
//! half-written entry.

use std::cell::UnsafeCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize};
use std::sync::Once;

/// How many mappings are guarded at once; a mapping made while all are taken
/// goes unguarded (and a truncation then ends the process, as without shmkit).
const SLOTS: usize = 4096;

struct Slot {
    /// Even when the entry is stable; odd while it changes.
    seq: AtomicUsize,
    /// Whether a mapping owns the slot.
    used: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Set by the handler: the mapping now holds anonymous memory.
    hit: AtomicBool,
}

impl Slot {
    // Only the initialiser of the table's elements: each gets its own copy.
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        seq: AtomicUsize::new(0),
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        hit: AtomicBool::new(false),
    };
}

static TABLE: [Slot; SLOTS] = [Slot::EMPTY; SLOTS];

/// The SIGBUS action that was in place before ours, written once (inside
/// `INSTALL`, before our handler can run) and only read afterwards.
struct Previous(UnsafeCell<Option<libc::sigaction>>);
// SAFETY: written once under `INSTALL` before the handler that reads it is
// installed; read-only from then on.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(None));
static INSTALL: Once = Once::new();

/// A mapping's place in the table; leaves it on drop. Drop it before unmapping.
#[derive(Debug)]
pub(crate) struct FaultGuard {
    slot: Option<usize>,
}

impl FaultGuard {
    /// Guards `len` bytes at `start`.
    pub(crate) fn register(start: *mut u8, len: usize) -> FaultGuard {
        INSTALL.call_once(install);
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .used
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                slot.seq.fetch_add(1, Release); // odd: changing
                slot.start.store(start as usize, Relaxed);
                slot.len.store(len, Relaxed);
                slot.hit.store(false, Relaxed);
                slot.seq.fetch_add(1, Release); // even: stable
                return FaultGuard { slot: Some(i) };
            }
        }
        FaultGuard { slot: None }
    }

    /// Whether a truncation hit the mapping: its pages are anonymous now.
    #[inline]
    pub(crate) fn hit(&self) -> bool {
        self.flag().hit()
    }

    /// The mapping's flag alone, for hot paths that look at it after every
    /// access: valid while this guard lives.
    #[inline]
    pub(crate) fn flag(&self) -> FaultFlag {
        self.slot
            .map_or_else(FaultFlag::default, |i| FaultFlag(&TABLE[i].hit))
    }
}

/// The flag the handler sets when a truncation hits a mapping (for a mapping
/// that is not guarded, one that is never set). Only meaningful while its
/// guard lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FaultFlag(&'static AtomicBool);

/// The flag of every mapping without a slot: never set.
static NEVER_HIT: AtomicBool = AtomicBool::new(false);

impl Default for FaultFlag {
    fn default() -> FaultFlag {
        FaultFlag(&NEVER_HIT)
    }
}

impl FaultFlag {
    /// Whether a truncation hit the mapping.
    #[inline]
    pub(crate) fn hit(self) -> bool {
        self.0.load(Acquire)
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &TABLE[i];
            slot.seq.fetch_add(1, Release);
            slot.len.store(0, Relaxed);
            slot.start.store(0, Relaxed);
            slot.seq.fetch_add(1, Release);
            slot.used.store(false, Release);
        }
    }
}

fn install() {
    // SAFETY: plain C structs filled by sigaction; our handler is an
    // `extern "C" fn(c_int, *mut siginfo_t, *mut c_void)` as SA_SIGINFO wants.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        // PREVIOUS is written before the handler exists, and never again.
        *PREVIOUS.0.get() = None;
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
            *PREVIOUS.0.get() = Some(previous);
        }
    }
}

/// The registered mapping holding `addr`: its start and length.
fn find(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    TABLE.iter().find_map(|slot| {
        let seq = slot.seq.load(Acquire);
        if seq & 1 == 1 || !slot.used.load(Relaxed) {
            return None;
        }
        let start = slot.start.load(Relaxed);
        let len = slot.len.load(Relaxed);
        fence(Acquire);
        if slot.seq.load(Relaxed) != seq || len == 0 {
            return None;
        }
        (addr >= start && addr - start < len).then_some((slot, start, len))
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some((slot, start, len)) = find(addr) {
        // SAFETY: [start, start + len) is a mapping shmkit made and still owns
        // (its guard is registered); replacing its pages with anonymous memory
        // keeps every address in it valid. mmap is async-signal-safe.
        let replaced = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced != libc::MAP_FAILED {
            slot.hit.store(true, Release);
            return;
        }
    }
    // SAFETY: not ours: hand the signal to whoever had it before, as it would
    // have been delivered without us.
    unsafe { chain(sig, info, ctx) };
}

/// Passes the signal to the previous action; for the default action (or none
/// recorded), restores it, so that the faulting access faults again and the
/// process ends as it would have without shmkit.
///
/// # Safety
///
/// Only from the signal handler, with the arguments it received.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: PREVIOUS was written before our handler was installed.
    let previous = unsafe { *PREVIOUS.0.get() };
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: restoring the default action for SIGBUS; async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        }
        return;
    }
    let flags = previous.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler has this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
