//! Watching words in shared memory for a change on behalf of tasks, wait sets
//! and pollable handles, without a thread per waiter and without changing what
//! the waking side does.
//!
//! A waker (a sender ringing a doorbell, an unlock) bumps the word and calls
//! `FUTEX_WAKE` on it only when a waiter is registered in the word's waiter
//! count: exactly what it does for a thread blocked in `futex(2)`. Here the
//! sleeper is one reactor thread per [`PER_SHARD`] watched words, blocked in
//! `futex_waitv(2)` (Linux 5.16) on all of them plus a private control word that
//! new watches bump. When a word changes (or a watch's recheck time comes), the
//! reactor calls the watch's [`Waker`]: a task's, a wait set's, or one that makes
//! an eventfd readable. So a sender still makes no system call when nobody
//! waits, and a process with a thousand idle awaiting tasks has eight sleeping
//! threads.
//!
//! Without `futex_waitv` (older Linux kernels, macOS, FreeBSD) the reactor looks
//! at its words every [`FALLBACK_NAP`] instead while it has any: correct,
//! slower to notice, and not free while something is awaited (it parks when
//! nothing is).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::per_process::{self, PerProcess};
use super::WakeChannel;

/// Words one reactor thread watches: `futex_waitv` takes at most 128, one of
/// which is the control word.
const PER_SHARD: usize = 127;

/// How often the fallback reactor looks at its words.
const FALLBACK_NAP: Duration = Duration::from_millis(1);

/// A registered interest in one word; removed when dropped (if it has not fired).
#[derive(Debug)]
pub(crate) struct Watch {
    shard: Arc<Shard>,
    id: u64,
    /// The fork generation that made it: a forked child leaves the parent's
    /// shards alone (their lock may have been held at the fork).
    generation: u32,
}

impl Watch {
    /// Whether the reactor called this watch's waker (and forgot the watch).
    pub(crate) fn fired(&self) -> bool {
        self.generation == per_process::generation()
            && !self.shard.table().entries.iter().any(|e| e.id == self.id)
    }

    /// Keeps this watch for `expected` with `waker` and `recheck` if it has not
    /// fired and still waits for the word to leave `expected`: no work for the
    /// reactor thread (a task polled again for another reason re-arms for free).
    /// `false`: make a new watch.
    pub(crate) fn refresh(&self, expected: u32, waker: &Waker, recheck: Option<Instant>) -> bool {
        if self.generation != per_process::generation() {
            return false;
        }
        let mut table = self.shard.table();
        let Some(e) = table.entries.iter_mut().find(|e| e.id == self.id) else {
            return false;
        };
        // An earlier recheck than the reactor sleeps for would need its thread
        // woken: make a new watch then.
        let sooner = match (e.recheck, recheck) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(old), Some(new)) => new < old,
        };
        if e.expected != expected || sooner {
            return false;
        }
        e.recheck = recheck;
        if !e.waker.will_wake(waker) {
            e.waker = waker.clone();
        }
        true
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.generation != per_process::generation() {
            return;
        }
        let mut table = self.shard.table();
        if let Some(i) = table.entries.iter().position(|e| e.id == self.id) {
            table.entries.swap_remove(i);
        }
    }
}

/// Calls `waker` once `word` no longer holds `expected`, or at `recheck`,
/// whichever is first. The word must stay mapped until the watch is dropped.
pub(crate) fn watch(
    word: &AtomicU32,
    expected: u32,
    _park: &WakeChannel,
    waker: &Waker,
    recheck: Option<Instant>,
) -> Watch {
    let (shard, id) = add_entry(Entry {
        id: 0,
        word: word as *const AtomicU32 as usize,
        expected,
        waker: waker.clone(),
        recheck,
    });
    // Make the reactor thread look at its table again. Its sleep compares the
    // control word with what it read before its last scan, so it cannot start
    // sleeping on a table without this entry; only a sleeper needs the system
    // call (many watches made at once, by a wait set, cost one or two).
    shard.control.fetch_add(1, SeqCst);
    if shard.sleeping.load(SeqCst) {
        futex_wake_private(&shard.control);
        if NO_WAITV.load(SeqCst) {
            // The fallback reactor parks when it has nothing to watch.
            if let Some(t) = shard.thread.get() {
                t.unpark();
            }
        }
    }
    Watch {
        shard,
        id,
        generation: per_process::generation(),
    }
}

struct Entry {
    id: u64,
    /// Address of the word; valid while the entry is in the table (the watch is
    /// removed before the word's mapping goes).
    word: usize,
    expected: u32,
    waker: Waker,
    recheck: Option<Instant>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    next_id: u64,
}

#[derive(Default)]
struct Shard {
    table: Mutex<Table>,
    /// Bumped whenever the table gains an entry: part of every `futex_waitv`.
    control: AtomicU32,
    /// The reactor thread is in (or about to enter) its sleep.
    sleeping: AtomicBool,
    /// The reactor thread, to unpark where there is no `futex_waitv`.
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").finish_non_exhaustive()
    }
}

impl Shard {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every change is a push or a remove: a poisoned table is consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reactor shards of this process (a forked child makes its own).
static SHARDS: PerProcess<Vec<Arc<Shard>>> = PerProcess::new();

/// Puts `entry` in a shard with room (starting one if none has), under the
/// shards' lock so that two callers cannot overfill the same shard.
fn add_entry(mut entry: Entry) -> (Arc<Shard>, u64) {
    let mut shards = SHARDS
        .get(Vec::new)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let shard = match shards.iter().find(|s| s.table().entries.len() < PER_SHARD) {
        Some(s) => s.clone(),
        None => new_shard(&mut shards),
    };
    let mut table = shard.table();
    table.next_id += 1;
    entry.id = table.next_id;
    table.entries.push(entry);
    let id = table.next_id;
    drop(table);
    (shard, id)
}

fn new_shard(shards: &mut Vec<Arc<Shard>>) -> Arc<Shard> {
    let shard = Arc::new(Shard::default());
    let run = shard.clone();
    let handle = std::thread::Builder::new()
        .name("shmkit-reactor".into())
        .spawn(move || reactor(&run))
        .expect("cannot start shmkit's reactor thread");
    let _ = shard.thread.set(handle.thread().clone());
    shards.push(shard.clone());
    shard
}

/// The reactor thread: wakes the watches whose word changed or whose recheck
/// time came, then sleeps on all the others and the control word.
fn reactor(shard: &Shard) {
    let mut waitv: Vec<FutexWaitv> = Vec::with_capacity(PER_SHARD + 1);
    let mut fired: Vec<Waker> = Vec::new();
    // The entries behind `waitv`, and the one a FUTEX_WAKE woke last: fired
    // even if its word is back to the value it waits on (an unlock and a
    // relock in between: the wake-up was meant for its waiter).
    let mut ids: Vec<u64> = Vec::with_capacity(PER_SHARD);
    let mut woken: Option<u64> = None;
    loop {
        let control = shard.control.load(SeqCst);
        let mut next_recheck: Option<Instant> = None;
        waitv.clear();
        ids.clear();
        {
            let mut table = shard.table();
            let now = Instant::now();
            table.entries.retain_mut(|e| {
                // SAFETY: an entry's word stays mapped while it is in the table.
                let word = unsafe { &*(e.word as *const AtomicU32) };
                let due = e.recheck.is_some_and(|r| r <= now) || woken == Some(e.id);
                if due || word.load(SeqCst) != e.expected {
                    fired.push(e.waker.clone());
                    return false;
                }
                if let Some(r) = e.recheck {
                    next_recheck = Some(next_recheck.map_or(r, |n| n.min(r)));
                }
                waitv.push(FutexWaitv::shared(word, e.expected));
                ids.push(e.id);
                true
            });
        }
        woken = None;
        for waker in fired.drain(..) {
            waker.wake();
        }
        waitv.push(FutexWaitv::private(&shard.control, control));
        shard.sleeping.store(true, SeqCst);
        let mut index = None;
        if futex_waitv(&waitv, next_recheck, &mut index) {
            woken = index.and_then(|i| ids.get(i).copied());
        } else if waitv.len() == 1 {
            // Nothing to watch: no need to look every FALLBACK_NAP; a new
            // watch unparks this thread (see `watch`), or changed the control
            // word before it could see `sleeping`.
            if shard.control.load(SeqCst) == control {
                std::thread::park();
            }
        } else {
            std::thread::sleep(FALLBACK_NAP);
        }
        shard.sleeping.store(false, SeqCst);
    }
}

/// One entry of `futex_waitv`'s array (`struct futex_waitv`).
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX2_PRIVATE`.
const FUTEX2_PRIVATE: u32 = 128;

impl FutexWaitv {
    /// A word in shared memory: keyed by the page, so that wakes from other
    /// processes reach it.
    fn shared(word: &AtomicU32, expected: u32) -> FutexWaitv {
        FutexWaitv {
            val: expected as u64,
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }

    fn private(word: &AtomicU32, expected: u32) -> FutexWaitv {
        FutexWaitv {
            flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
            ..FutexWaitv::shared(word, expected)
        }
    }
}

/// Whether `futex_waitv` is known to be missing (then the reactor naps).
static NO_WAITV: AtomicBool = AtomicBool::new(false);

/// Sleeps until one of the words differs from its value, is woken, or `until`
/// passes. `false`: this kernel has no `futex_waitv`, or the call failed in a
/// way that would repeat (the caller naps instead).
#[cfg(target_os = "linux")]
fn futex_waitv(waitv: &[FutexWaitv], until: Option<Instant>, woken: &mut Option<usize>) -> bool {
    if NO_WAITV.load(SeqCst) {
        return false;
    }
    let ts = until.map(|at| {
        // futex_waitv takes an absolute CLOCK_MONOTONIC time, which is the
        // clock `Instant` reads on Linux: now on that clock plus what is left.
        let left = at.saturating_duration_since(Instant::now());
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write into.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let nanos = now.tv_nsec as u64 + left.subsec_nanos() as u64;
        libc::timespec {
            tv_sec: now.tv_sec
                + left.as_secs().min(i32::MAX as u64) as libc::time_t
                + (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        }
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // A word unmapped between the table scan and this call makes the kernel
    // return EFAULT; the table is then scanned again without it.
    // SAFETY: valid `futex_waitv` entries of listed (mapped) words; a valid timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waitv.as_ptr(),
            waitv.len() as libc::c_uint,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        *woken = Some(r as usize);
        return true;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // A word changed, time is up, a signal: look again now.
        Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR) => true,
        Some(libc::ENOSYS) => {
            NO_WAITV.store(true, SeqCst);
            false
        }
        // Anything else (a word unmapped under us: EFAULT) would repeat at
        // once: look again after a nap rather than spin.
        _ => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_waitv(_waitv: &[FutexWaitv], _until: Option<Instant>, _woken: &mut Option<usize>) -> bool {
    NO_WAITV.store(true, SeqCst);
    false
}

#[cfg(target_os = "linux")]
fn futex_wake_private(word: &AtomicU32) {
    if NO_WAITV.load(SeqCst) {
        return;
    }
    // SAFETY: the word is a live, aligned u32; FUTEX_WAKE does not touch it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake_private(_word: &AtomicU32) {}
