//! Surviving a peer that shrinks a mapped object.
//!
//! Touching a page of a shared mapping that lies past the end of its object
//! raises SIGBUS, and any process with write access to the object can shrink it
//! (`ftruncate`). Like Wayland compositors guarding their clients' `wl_shm`
//! pools, shmkit registers every mapping it makes in a fixed table and installs
//! a SIGBUS handler that, for such a fault inside a registered mapping, maps
//! private anonymous memory over the whole mapping, with the protection the
//! mapping had (a read-only mapping stays read-only), and flags it. The faulting
//! access then completes on zeros instead of killing the process, and the safe
//! API, which looks at the flag after each access, reports `Truncated`.
//!
//! # Which SIGBUS is ours
//!
//! Only a fault the kernel raised for the access itself because its page has no
//! backing any more (`si_code == BUS_ADRERR` on Linux; elsewhere any fault code
//! the kernel raises but a misaligned access), at an address inside a registered
//! mapping, is handled. Every other SIGBUS goes, with its siginfo and context
//! untouched, to the disposition that was in place before ours, as if shmkit had
//! never installed a handler: a fault outside our mappings, a hardware memory
//! error (`BUS_MCEERR_AR`, `BUS_MCEERR_AO`), a misaligned access (`BUS_ADRALN`),
//! `BUS_OBJERR`, and every signal a process sent (`kill`, `raise`, `tgkill`,
//! `sigqueue`: `si_code <= 0`), whatever address its `si_addr` claims. A process
//! cannot forge a positive `si_code` for another one (Linux refuses
//! `rt_sigqueueinfo` with `si_code >= 0` to any process but the caller), and one
//! that forges it for itself could as well unmap its own memory.
//!
//! Passing a signal on means, for the previous disposition:
//! - a handler (`SA_SIGINFO` or not): it is called with the original arguments
//!   and with its own `sa_mask` (and SIGBUS, unless `SA_NODEFER`) blocked, as the
//!   kernel would have called it. If it sets SIGBUS to the default or to ignore
//!   while it runs (`SA_RESETHAND` does, and so does Rust's runtime for any
//!   SIGBUS outside a stack guard page), it meant that for itself: from then on
//!   we pass on to that, and our handler goes back in front;
//! - the default action: it is restored and the signal raised again with its
//!   own siginfo, so that the process ends as it would have (killed by SIGBUS,
//!   with a core dump where enabled). Should the process live on (a debugger
//!   swallowed the signal), our handler is put back;
//! - ignore: a signal a process sent is dropped; a fault the kernel raised for
//!   an access cannot be ignored (the kernel would have restored the default and
//!   killed the process), so it ends the process as with the default.
//!
//! Our handler stays installed through all of this, so a later truncation is
//! still recovered from. A mapping registered after someone reset SIGBUS to the
//! default or to ignore puts our handler back in front of that disposition.
//!
//! # Racing an unmap
//!
//! The handler finds the mapping that holds the fault address, then maps over it
//! with `MAP_FIXED`. Between the two, another thread may drop that mapping, and
//! the address range may already hold something else (a new mapping, a
//! thread's stack): replacing it then would destroy memory that is no longer
//! ours. So the handler first claims the table entry (`Slot::active`), then
//! checks that the entry still describes the mapping it found (same sequence
//! number), and only then maps over it; leaving the table (before the unmap)
//! marks the entry as changing, then waits until no handler holds a claim. The
//! claim and the mark are each followed by a `SeqCst` fence before the other
//! side's word is read (the store-buffering pattern): at least one side sees
//! the other, so either the handler sees the entry change and leaves the memory
//! alone, or the unmap waits until the replacement is done. A handler that lost
//! the race passes the signal on like any fault outside our mappings: the access
//! was to memory another thread unmapped under it, which safe code cannot do.
//! The wait in `Drop` lasts at most one `mmap` of the handler on another
//! thread. The protocol is checked by loom (`tests::model`).
//!
//! # Handlers installed after ours
//!
//! A handler installed later for SIGBUS (a JVM, the Go runtime, Python's
//! `faulthandler`, a crash reporter) runs first; ours runs only if it passes the
//! signal on to the handler it found (the JVM's signal chaining, the Go runtime
//! for faults outside Go code and most crash reporters do). If it does not, a
//! truncation does whatever that handler does with a SIGBUS, typically ending
//! the process. Python's `faulthandler` prints a traceback, puts our handler
//! back and raises the signal again with `raise`, which is a user-sent SIGBUS
//! to us, so the process dies: enable `faulthandler` before shmkit maps
//! anything (`python -X faulthandler`; pytest enables it at start-up), so that
//! ours is in front. Each registration looks at the installed action (one
//! `sigaction` call): someone else's handler there is left alone (passing
//! signals on is its owner's choice, and taking its place back would reorder
//! the chain under it); the default action or ignore there goes behind ours.
//!
//! Every function the handler calls is async-signal-safe: atomics, `mmap`,
//! `sigaction`, `pthread_sigmask`, `raise` and (Linux) `rt_tgsigqueueinfo`.
//! Slots carry a sequence number, odd while a slot is being filled or emptied,
//! so a handler running on another thread never acts on a half-written entry.

use std::cell::UnsafeCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU8, AtomicUsize};
use std::sync::Once;

use crate::access::Access;

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
    /// The protection the mapping was made with, which its replacement gets.
    prot: AtomicI32,
    /// Set by the handler: the mapping now holds anonymous memory.
    hit: AtomicBool,
    /// Handlers that claimed the entry and may be mapping over it: the guard
    /// leaves the table (and the mapping is unmapped) only once this is 0.
    active: AtomicUsize,
}

impl Slot {
    // Only the initialiser of the table's elements: each gets its own copy.
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        seq: AtomicUsize::new(0),
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        prot: AtomicI32::new(libc::PROT_NONE),
        hit: AtomicBool::new(false),
        active: AtomicUsize::new(0),
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

/// What a SIGBUS that is not ours goes to: [`PREVIOUS`], or what replaced it
/// since (the previous handler reset itself, or someone reset SIGBUS and a
/// later registration put our handler back in front).
static PASS_TO: AtomicU8 = AtomicU8::new(PASS_TO_PREVIOUS);
const PASS_TO_PREVIOUS: u8 = 0;
const PASS_TO_DEFAULT: u8 = 1;
const PASS_TO_IGNORE: u8 = 2;

/// A mapping's place in the table; leaves it on drop. Drop it before unmapping.
#[derive(Debug)]
pub(crate) struct FaultGuard {
    slot: Option<usize>,
}

impl FaultGuard {
    /// Guards `len` bytes at `start`, mapped with `access`.
    pub(crate) fn register(start: *mut u8, len: usize, access: Access) -> FaultGuard {
        INSTALL.call_once(install);
        // One sigaction call per mapping: if someone reset SIGBUS to the
        // default or to ignore since, put our handler back in front of that.
        stay_in_front();
        let prot = protection(access);
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .used
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                slot.seq.fetch_add(1, Release); // odd: changing
                slot.start.store(start as usize, Relaxed);
                slot.len.store(len, Relaxed);
                slot.prot.store(prot, Relaxed);
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

/// The protection `map` gives a mapping made with `access`, and so the one its
/// replacement gets: copy-on-write mappings are private and writable.
fn protection(access: Access) -> libc::c_int {
    match access {
        Access::ReadOnly => libc::PROT_READ,
        Access::ReadWrite | Access::CopyOnWrite => libc::PROT_READ | libc::PROT_WRITE,
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
            // Odd: a handler that has not claimed the entry yet never will
            // (see `Found::claim` for the other half of this pattern)...
            slot.seq.fetch_add(1, Relaxed);
            fence(SeqCst);
            // ...and one that has finishes its mapping before ours is unmapped.
            // It holds the claim for one mmap call, on another thread.
            while slot.active.load(Acquire) != 0 {
                std::thread::yield_now();
            }
            slot.len.store(0, Relaxed);
            slot.start.store(0, Relaxed);
            slot.seq.fetch_add(1, Release);
            slot.used.store(false, Release);
        }
    }
}

/// Our SIGBUS action. `SA_ONSTACK`: a thread that overflowed into a guard page
/// or runs Go code needs the alternate stack; `SA_NODEFER`: a fault in a
/// handler we pass a signal on to is delivered, not a deadlock.
fn our_action() -> libc::sigaction {
    // SAFETY: a plain C struct, for which all zeros is a valid value; our
    // handler is an `extern "C" fn(c_int, *mut siginfo_t, *mut c_void)` as
    // SA_SIGINFO wants; sigemptyset only writes the set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        action
    }
}

fn install() {
    let action = our_action();
    // SAFETY: plain C structs filled by sigaction. PREVIOUS is written before
    // the handler exists, and never again.
    unsafe {
        let mut previous: libc::sigaction = std::mem::zeroed();
        *PREVIOUS.0.get() = None;
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
            *PREVIOUS.0.get() = Some(previous);
        }
    }
}

/// The current SIGBUS action, if sigaction can tell.
fn current_action() -> Option<libc::sigaction> {
    // SAFETY: a plain C struct that sigaction fills; a null new action only
    // queries.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) == 0).then_some(now)
    }
}

/// If SIGBUS was set to the default or to ignore since our handler went in
/// (by the handler we passed a signal on to, resetting itself, or by the
/// program), passes what is not ours on to that from now on and puts our
/// handler back in front. A handler someone installed over ours stays: it is
/// theirs to pass signals on to us. Async-signal-safe.
fn stay_in_front() {
    let Some(now) = current_action() else { return };
    let pass_to = match now.sa_sigaction {
        libc::SIG_DFL => PASS_TO_DEFAULT,
        libc::SIG_IGN => PASS_TO_IGNORE,
        _ => return, // ours, or someone else's handler
    };
    PASS_TO.store(pass_to, Release);
    // SAFETY: installs our action, as `install` did.
    unsafe { libc::sigaction(libc::SIGBUS, &our_action(), std::ptr::null_mut()) };
}

/// Whether the kernel raised this SIGBUS because a page of the mapping has no
/// backing (what touching a truncated object's lost pages gives). Linux says
/// so exactly; a process can only claim it for a signal to itself.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_truncation_fault(code: libc::c_int) -> bool {
    code == libc::BUS_ADRERR
}

/// Elsewhere the code a truncation gives varies between kernels (`BUS_OBJERR`
/// or `BUS_ADRERR`): any fault the kernel raises but a misaligned access. Signals processes send
/// carry codes of 0x10001 and up (macOS, FreeBSD) or of 0 and below (NetBSD,
/// OpenBSD).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_truncation_fault(code: libc::c_int) -> bool {
    kernel_forced(code) && code != libc::BUS_ADRALN
}

/// Whether the kernel raised this SIGBUS for an access by the thread, which it
/// delivers even when SIGBUS is ignored or blocked (by restoring the default
/// and killing the process). `BUS_MCEERR_AO` (memory that went bad somewhere
/// else) is sent like any signal.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_forced(code: libc::c_int) -> bool {
    code > 0 && code != libc::BUS_MCEERR_AO
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_forced(code: libc::c_int) -> bool {
    code > 0 && code < 0x1_0000
}

/// A registered mapping holding a fault address, as its entry described it at
/// sequence number `seq`.
struct Found {
    slot: &'static Slot,
    seq: usize,
    start: usize,
    len: usize,
    prot: libc::c_int,
}

/// The registered mapping holding `addr`.
fn find(addr: usize) -> Option<Found> {
    TABLE.iter().find_map(|slot| {
        let seq = slot.seq.load(Acquire);
        if seq & 1 == 1 || !slot.used.load(Relaxed) {
            return None;
        }
        let start = slot.start.load(Relaxed);
        let len = slot.len.load(Relaxed);
        let prot = slot.prot.load(Relaxed);
        fence(Acquire);
        if slot.seq.load(Relaxed) != seq || len == 0 {
            return None;
        }
        (addr >= start && addr - start < len).then_some(Found {
            slot,
            seq,
            start,
            len,
            prot,
        })
    })
}

impl Found {
    /// Claims the entry if it still describes the mapping found: until
    /// [`release`](Self::release), its guard cannot leave the table, so the
    /// range stays ours (see the module's "Racing an unmap").
    fn claim(&self) -> bool {
        self.slot.active.fetch_add(1, Relaxed);
        fence(SeqCst);
        if self.slot.seq.load(Relaxed) == self.seq {
            return true;
        }
        self.slot.active.fetch_sub(1, Release);
        false
    }

    /// Ends a claim: the mapping over the range (if any) happens before the
    /// guard leaves the table.
    fn release(&self) {
        self.slot.active.fetch_sub(1, Release);
    }

    /// Puts private zero pages with the mapping's protection over the whole
    /// mapping. Only under a claim.
    fn replace(&self) -> bool {
        // [start, start + len) is a mapping shmkit made and still owns: its guard
        // is registered and, while we hold the claim, cannot leave the table,
        // which it does before the range is unmapped.
        // SAFETY: so replacing its pages with anonymous memory keeps every
        // address in it valid; mmap is async-signal-safe.
        let replaced = unsafe {
            libc::mmap(
                self.start as *mut libc::c_void,
                self.len,
                self.prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        replaced != libc::MAP_FAILED
    }
}

/// Turns a truncation fault at `addr` into zero pages and the flag; false if
/// no registered mapping holds `addr` (or none does any more).
fn recover(addr: usize) -> bool {
    find(addr).is_some_and(recover_found)
}

fn recover_found(found: Found) -> bool {
    if !found.claim() {
        return false;
    }
    // Already replaced: the fault was raised before that, and the access,
    // run again, lands on the zero pages.
    let done = found.slot.hit.load(Acquire) || found.replace();
    if done {
        found.slot.hit.store(true, Release);
    }
    found.release();
    done
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
        // handler, and so does a handler that passes the signal on to us.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        if is_truncation_fault(code) && recover(addr) {
            return;
        }
    }
    // SAFETY: not ours: hand the signal on as it would have been delivered
    // without us, with the arguments we received.
    unsafe { pass_on(sig, info, ctx) };
}

/// Passes a signal that is not ours on to the previous disposition (see the
/// module's "Which SIGBUS is ours").
///
/// # Safety
///
/// Only from the signal handler, with the arguments it received.
unsafe fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let code = if info.is_null() {
        0
    } else {
        // SAFETY: as in on_sigbus.
        unsafe { (*info).si_code }
    };
    match pass_to() {
        Disposition::Ignore if !kernel_forced(code) => {} // dropped, as the kernel would
        Disposition::Ignore | Disposition::Default => {
            // SAFETY: our arguments, from the handler.
            unsafe { die_as_default(sig, info) }
        }
        Disposition::Handler(previous) => {
            // SAFETY: a handler's action, and our arguments.
            unsafe { call_previous(&previous, sig, info, ctx) }
        }
    }
}

/// Where a signal that is not ours goes.
enum Disposition {
    Default,
    Ignore,
    Handler(libc::sigaction),
}

fn pass_to() -> Disposition {
    match PASS_TO.load(Acquire) {
        PASS_TO_DEFAULT => return Disposition::Default,
        PASS_TO_IGNORE => return Disposition::Ignore,
        _ => {}
    }
    // SAFETY: PREVIOUS was written before our handler was installed.
    match unsafe { *PREVIOUS.0.get() } {
        None => Disposition::Default,
        Some(p) if p.sa_sigaction == libc::SIG_DFL => Disposition::Default,
        Some(p) if p.sa_sigaction == libc::SIG_IGN => Disposition::Ignore,
        Some(p) => Disposition::Handler(p),
    }
}

/// Calls the handler that was there before ours, as the kernel would have.
///
/// # Safety
///
/// `previous` is a handler's action (not SIG_DFL/SIG_IGN); the arguments are
/// those our handler received.
unsafe fn call_previous(
    previous: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: sigset functions on local sets; pthread_sigmask changes only
    // this thread's mask, which is restored below.
    let old = unsafe {
        let mut mask = previous.sa_mask;
        if previous.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut mask, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut old);
        old
    };
    if previous.sa_flags & libc::SA_RESETHAND != 0 {
        // The kernel would have reset it to the default as it delivered this.
        PASS_TO.store(PASS_TO_DEFAULT, Release);
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(previous.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler has this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous.sa_sigaction) };
        f(sig);
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    // If it reset SIGBUS (Rust's runtime does, so that the fault repeats under
    // the default action), that is what it meant for itself: keep our place.
    stay_in_front();
}

/// Ends the process as the default action of the signal would have.
///
/// # Safety
///
/// The arguments are those our handler received.
unsafe fn die_as_default(sig: libc::c_int, info: *mut libc::siginfo_t) {
    // SAFETY: plain C structs; restores the default action and unblocks the
    // signal for this thread (it is not blocked in our handler, SA_NODEFER,
    // unless a handler we called blocked it).
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(sig, &default, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: as above.
    unsafe { reraise(sig, info) };
    // Still alive: someone (a debugger) swallowed it. Keep guarding.
    // SAFETY: installs our action, as `install` did.
    unsafe { libc::sigaction(sig, &our_action(), std::ptr::null_mut()) };
}

/// Raises `sig` again at this thread with its own siginfo, so that the process
/// ends with what the kernel or sender said (a core dump shows the real
/// `si_code` and `si_addr`). A process may queue any siginfo to its own
/// threads.
///
/// # Safety
///
/// `info` is null or the siginfo our handler received.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn reraise(sig: libc::c_int, info: *mut libc::siginfo_t) {
    if !info.is_null() {
        // SAFETY: getpid/gettid have no preconditions; rt_tgsigqueueinfo only
        // reads the siginfo_t, which the kernel gave us.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                libc::getpid(),
                libc::syscall(libc::SYS_gettid),
                sig,
                info,
            )
        };
        if sent == 0 {
            return;
        }
    }
    // SAFETY: raise has no preconditions.
    unsafe { libc::raise(sig) };
}

/// # Safety
///
/// None beyond the Linux variant's.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn reraise(sig: libc::c_int, _info: *mut libc::siginfo_t) {
    // SAFETY: raise has no preconditions.
    unsafe { libc::raise(sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private anonymous mapping of `pages` pages filled with `byte`, with
    /// protection `prot` afterwards; unmapped on drop.
    struct Anon {
        ptr: *mut u8,
        len: usize,
    }

    impl Anon {
        fn new(pages: usize, byte: u8, prot: libc::c_int) -> Anon {
            let len = pages * crate::sys::allocation_granularity();
            // SAFETY: a fresh mapping chosen by the kernel, overlapping nothing.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            // SAFETY: the mapping is ours, writable, `len` bytes long.
            unsafe {
                std::ptr::write_bytes(ptr.cast::<u8>(), byte, len);
                assert_eq!(libc::mprotect(ptr, len, prot), 0);
            }
            Anon {
                ptr: ptr.cast(),
                len,
            }
        }

        fn all(&self, byte: u8) -> bool {
            // SAFETY: the mapping is ours, readable and `len` bytes long.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
                .iter()
                .all(|&b| b == byte)
        }

        fn protection(&self) -> String {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let addr = self.ptr as usize;
            maps.lines()
                .find_map(|line| {
                    let (range, rest) = line.split_once(' ')?;
                    let (lo, hi) = range.split_once('-')?;
                    let lo = usize::from_str_radix(lo, 16).ok()?;
                    let hi = usize::from_str_radix(hi, 16).ok()?;
                    (lo..hi).contains(&addr).then(|| rest[..4].to_owned())
                })
                .unwrap()
        }
    }

    impl Drop for Anon {
        fn drop(&mut self) {
            // SAFETY: our own mapping, unmapped once.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn only_a_kernel_address_fault_counts_as_a_truncation() {
        assert!(is_truncation_fault(libc::BUS_ADRERR));
        for code in [
            libc::SI_USER,
            libc::SI_QUEUE,
            libc::SI_TKILL,
            libc::SI_TIMER,
            libc::SI_MESGQ,
            libc::SI_ASYNCIO,
            libc::BUS_ADRALN,
            libc::BUS_OBJERR,
            libc::BUS_MCEERR_AR,
            libc::BUS_MCEERR_AO,
        ] {
            assert!(!is_truncation_fault(code), "si_code {code}");
        }
        // What the kernel would not let a program ignore.
        assert!(kernel_forced(libc::BUS_ADRERR));
        assert!(kernel_forced(libc::BUS_MCEERR_AR));
        assert!(!kernel_forced(libc::BUS_MCEERR_AO));
        assert!(!kernel_forced(libc::SI_USER));
        assert!(!kernel_forced(libc::SI_QUEUE));
        assert!(!kernel_forced(libc::SI_TKILL));
    }

    #[test]
    fn the_zero_pages_keep_the_mappings_protection() {
        for (access, prot, perms) in [
            (Access::ReadOnly, libc::PROT_READ, "r--p"),
            (
                Access::ReadWrite,
                libc::PROT_READ | libc::PROT_WRITE,
                "rw-p",
            ),
            (
                Access::CopyOnWrite,
                libc::PROT_READ | libc::PROT_WRITE,
                "rw-p",
            ),
        ] {
            let map = Anon::new(2, 0xab, prot);
            let guard = FaultGuard::register(map.ptr, map.len, access);
            assert!(!guard.hit());
            assert!(recover(map.ptr as usize + 100), "{access:?}");
            assert!(guard.hit());
            assert!(map.all(0), "{access:?}: not replaced");
            assert_eq!(map.protection(), perms, "{access:?}");
        }
    }

    #[test]
    fn a_fault_outside_every_mapping_is_not_recovered() {
        let map = Anon::new(1, 0xab, libc::PROT_READ);
        assert!(!recover(map.ptr as usize));
        assert!(map.all(0xab));
    }

    #[test]
    fn a_handler_never_maps_over_a_range_whose_guard_left() {
        let map = Anon::new(2, 0xab, libc::PROT_READ | libc::PROT_WRITE);
        let guard = FaultGuard::register(map.ptr, map.len, Access::ReadWrite);
        // The handler found the mapping...
        let found = find(map.ptr as usize).unwrap();
        // ...then another thread dropped it: the range is someone else's now.
        drop(guard);
        assert!(!recover_found(found), "mapped over a range no longer ours");
        assert!(map.all(0xab), "someone else's memory was replaced");

        // Same, when a new mapping was registered at the same address since.
        let guard = FaultGuard::register(map.ptr, map.len, Access::ReadWrite);
        let found = find(map.ptr as usize).unwrap();
        drop(guard);
        let again = FaultGuard::register(map.ptr, map.len, Access::ReadWrite);
        assert!(!recover_found(found), "acted on a stale entry");
        assert!(map.all(0xab));
        assert!(!again.hit());
    }

    #[test]
    fn leaving_the_table_waits_for_a_replacement_in_progress() {
        let map = Anon::new(1, 0xab, libc::PROT_READ | libc::PROT_WRITE);
        let guard = FaultGuard::register(map.ptr, map.len, Access::ReadWrite);
        let found = find(map.ptr as usize).unwrap();
        assert!(found.claim());
        let left = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                drop(guard);
                left.store(true, SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                !left.load(SeqCst),
                "the guard left while a handler held a claim"
            );
            assert!(found.replace());
            found.release();
        });
        assert!(left.load(SeqCst));
    }

    #[cfg(target_os = "linux")]
    mod model {
        //! The claim of a handler against the guard leaving the table, run by
        //! loom over every interleaving within its bounds: the handler found
        //! the entry at sequence 0 and claims it while the owner drops the
        //! guard and then unmaps (here: writes the range, as its next owner
        //! would). loom reports the data race if the handler's replacement
        //! does not happen before the unmap. SeqCst fences, not SeqCst
        //! accesses, which loom models as AcqRel: the code uses fences too.

        use crate::sync::protocol::model::check;
        use loom::cell::UnsafeCell;
        use loom::sync::atomic::{fence, AtomicUsize};
        use loom::sync::Arc;
        use loom::thread;
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

        #[derive(Default)]
        struct Entry {
            seq: AtomicUsize,
            active: AtomicUsize,
            /// The mapped range: replaced by the handler, reused after the unmap.
            range: UnsafeCell<u8>,
        }

        #[test]
        fn a_handler_never_replaces_memory_after_its_unmap() {
            check(|| {
                let e = Arc::new(Entry::default());
                let handler = {
                    let e = e.clone();
                    thread::spawn(move || {
                        // Found::claim
                        e.active.fetch_add(1, Relaxed);
                        fence(SeqCst);
                        if e.seq.load(Relaxed) == 0 {
                            // Found::replace
                            // SAFETY: loom checks that no other access races.
                            e.range.with_mut(|r| unsafe { *r = 0 });
                        }
                        e.active.fetch_sub(1, Release);
                    })
                };
                // FaultGuard::drop
                e.seq.fetch_add(1, Relaxed);
                fence(SeqCst);
                while e.active.load(Acquire) != 0 {
                    thread::yield_now();
                }
                // The unmap, and the range's next owner.
                // SAFETY: loom checks that no other access races.
                e.range.with_mut(|r| unsafe { *r = 7 });
                handler.join().unwrap();
            });
        }
    }
}
