//! Who this process is, as a mutex records its owner: process id plus start time,
//! so that a recycled process id is not mistaken for a living owner.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::sys::{self, ProcessIdentity};

static PID: AtomicU32 = AtomicU32::new(0);
static START: AtomicU64 = AtomicU64::new(0);

/// This process's identity, read from the OS once and cached: the lock fast path
/// must not make a system call.
pub(crate) fn me() -> ProcessIdentity {
    let pid = PID.load(Acquire);
    if pid != 0 {
        return ProcessIdentity {
            pid,
            start_time: START.load(Relaxed),
        };
    }
    let id = sys::current_process();
    forget_after_fork();
    START.store(id.start_time, Relaxed);
    PID.store(id.pid, Release);
    id
}

/// A child made by `fork` is another process: make it look itself up again.
fn forget_after_fork() {
    extern "C" fn child() {
        // Only an atomic store: async-signal-safe, as fork handlers must be.
        PID.store(0, Release);
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| sys::on_fork_in_child(child));
}

/// Whether the process recorded as a mutex owner still runs. `pid` comes from the
/// lock word; the start time counts only if it was recorded for that same pid.
/// An owner with this process's pid but another start time is not this process
/// (a dead process of another PID namespace, or one whose pid was reused): it
/// is asked about like any other.
pub(crate) fn owner_alive(pid: u32, recorded_pid: u32, recorded_start: u64) -> bool {
    let start_time = if recorded_pid == pid {
        recorded_start
    } else {
        0
    };
    is_me(pid, start_time) || sys::process_alive(ProcessIdentity { pid, start_time })
}

/// Whether `(pid, start_time)` (a start time of 0: not recorded) names this
/// process. The same pid with another start time is someone else.
pub(crate) fn is_me(pid: u32, start_time: u64) -> bool {
    let me = me();
    pid == me.pid && (start_time == 0 || me.start_time == 0 || start_time == me.start_time)
}
