//! Liveness the kernel guarantees (Linux): each process that uses shmkit holds a
//! lock on a token file of its own for as long as it lives, and the kernel drops
//! that lock when the process ends, however it ends.
//!
//! A process id alone does not tell who is alive: in another PID namespace (a
//! container sharing `/dev/shm`) or behind `hidepid=2`, `/proc/<pid>` names
//! another process or nothing, and a live mutex owner would look dead. The token
//! is named by the process's own id and start time (`/dev/shm/shmkit-live.PID.START`),
//! the same pair it records as an owner or endpoint, so any process that shares
//! `/dev/shm` can find it and ask the kernel, with `F_OFD_GETLK`, whether its
//! lock is still held. An open-file-description lock belongs to the open file, not
//! to a process id, and goes away exactly when the owner's last descriptor does:
//! at exit or death.
//!
//! The token is made under a temporary name, locked, and only then linked to its
//! real name (`link` fails if the name exists): nobody ever sees a live
//! process's token unlocked, so a reaper that removes unlocked tokens cannot
//! remove one that is being made, and a name planted in advance is never
//! adopted. A reader trusts a token only if it is a private regular file owned by
//! the reader's own user or root (see [`trusted`]): another user cannot keep a
//! dead process "alive" by planting and locking its token.
//!
//! `fork` copies the token's descriptor, and with it the lock: a child that
//! never uses shmkit would keep its dead parent looking alive. A fork handler
//! closes the copy in the child (a child that uses shmkit makes its own token),
//! and a prepare handler waits for a token being made, so that no half-made
//! token is copied.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64};

/// Where the token of the process `(pid, start)` lives.
fn token_path(pid: u32, start: u64) -> String {
    format!("/dev/shm/shmkit-live.{pid}.{start}")
}

/// The descriptor of this process's token (-1: none), the pid it was made for
/// and its start time. Atomics, not a mutex: the fork handler in the child must
/// reset them whatever another thread of the parent was doing.
static TOKEN_FD: AtomicI32 = AtomicI32::new(-1);
static TOKEN_PID: AtomicU32 = AtomicU32::new(0);
static OWN_START: AtomicU64 = AtomicU64::new(0);
/// Held while a token is made, and by `fork` (from its prepare handler to its
/// parent/child handlers): a spin lock, since the child must be able to
/// release it without the thread that took it.
static BUSY: AtomicBool = AtomicBool::new(false);

fn take_busy() {
    while BUSY
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn release_busy() {
    BUSY.store(false, Release);
}

extern "C" fn before_fork() {
    take_busy();
}

extern "C" fn after_fork_in_parent() {
    release_busy();
}

extern "C" fn after_fork_in_child() {
    // Only close(2) and atomic stores: async-signal-safe, as a fork handler in
    // a multi-threaded parent must be. The file stays: it is the parent's.
    let fd = TOKEN_FD.swap(-1, SeqCst);
    if fd >= 0 {
        // SAFETY: our own copy of the token descriptor, closed exactly once.
        unsafe { libc::close(fd) };
    }
    TOKEN_PID.store(0, SeqCst);
    release_busy();
}

fn lock_range(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value, completed below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 1;
    lock
}

fn fcntl_lock(fd: RawFd, cmd: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
    // SAFETY: F_OFD_SETLK/F_OFD_GETLK read (and GETLK writes) the flock we pass.
    if unsafe { libc::fcntl(fd, cmd, lock as *mut libc::flock) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(path: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn open_token(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: c is a valid C string. O_NOFOLLOW and O_NONBLOCK: nothing planted
    // under the name (a symlink, a FIFO) can redirect or hang the open.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0o600 as libc::c_uint,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by open, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes sure this process holds its token, `(pid, start)` being its own
/// identity. Best effort: without a token (no `/dev/shm`, no OFD locks, the
/// name taken), others fall back to `/proc`.
pub(crate) fn hold_token(pid: u32, start: u64) {
    static HANDLERS: std::sync::Once = std::sync::Once::new();
    HANDLERS.call_once(|| {
        // SAFETY: registers plain functions; the child handler is
        // async-signal-safe, the prepare handler only waits for a token
        // being made (which finishes without taking any other lock).
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
    });
    if TOKEN_PID.load(Acquire) == pid {
        return;
    }
    take_busy();
    if TOKEN_PID.load(Acquire) != pid {
        if let Some(fd) = make_token(pid, start) {
            OWN_START.store(start, Relaxed);
            // Kept open for the life of the process: the lock is the proof of life.
            let old = TOKEN_FD.swap(std::os::fd::IntoRawFd::into_raw_fd(fd), SeqCst);
            if old >= 0 {
                // SAFETY: a token descriptor of ours that nothing else uses.
                unsafe { libc::close(old) };
            }
            TOKEN_PID.store(pid, Release);
            static AT_EXIT: std::sync::Once = std::sync::Once::new();
            // SAFETY: registers a plain function; atexit has no other precondition.
            AT_EXIT.call_once(|| unsafe {
                libc::atexit(remove_own_token);
            });
        }
    }
    release_busy();
}

/// Makes the token: a private file under a temporary name, locked, then linked
/// to its real name, which must not exist yet.
fn make_token(pid: u32, start: u64) -> Option<OwnedFd> {
    let path = token_path(pid, start);
    // The temporary name does not parse as a token (`START.new-…` is no number),
    // so reapers leave it alone.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = format!("{path}.new-{nanos}");
    let (Ok(from), Ok(to)) = (c_path(&temp), c_path(&path)) else {
        return None;
    };
    // A reaper may remove the temporary file in the instant between its
    // creation and its lock (it looks like one left by a killed process): then
    // `link` finds nothing, and a second try is made.
    for _ in 0..3 {
        let fd = open_token(&temp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL).ok()?;
        let mut lock = lock_range(libc::F_WRLCK as libc::c_short);
        if fcntl_lock(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock).is_err() {
            let _ = std::fs::remove_file(&temp);
            return None;
        }
        // SAFETY: two valid C strings; link does not follow a symlink at `from`.
        let linked = unsafe { libc::link(from.as_ptr(), to.as_ptr()) } == 0;
        let missing = !linked && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
        let _ = std::fs::remove_file(&temp);
        if linked {
            return Some(fd);
        }
        if !missing {
            return None;
        }
    }
    None
}

/// At a normal exit, the token goes with the process (a killed process's token
/// is removed by the next process that finds it unlocked, or by `shmkit gc`).
extern "C" fn remove_own_token() {
    let pid = TOKEN_PID.load(Acquire);
    // A forked child that never made its own token has nothing to remove: the
    // token under its parent's name is the parent's.
    if pid == 0 || pid != std::process::id() {
        return;
    }
    let _ = std::fs::remove_file(token_path(pid, OWN_START.load(Relaxed)));
}

/// Whether a token may be believed: a regular file, private (no access for
/// group or others), owned by this process's effective user or by root. Another user could plant and lock a file under a predicted name; such a
/// token is ignored (the process is then judged by `/proc`).
fn trusted(fd: &OwnedFd) -> bool {
    // SAFETY: stat is plain data; fstat fills it for a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_mode & 0o077 == 0
        && (st.st_uid == me || st.st_uid == 0)
}

/// Removes (with `remove`) or counts the tokens of processes that are gone;
/// returns how many there were.
pub(crate) fn reap_dead_tokens(remove: bool) -> usize {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return 0;
    };
    let mut dead = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("shmkit-live.")) else {
            continue;
        };
        let Some((pid, start)) = rest.split_once('.') else {
            continue;
        };
        // A token being made (`START.new-N`): it is locked before it is linked
        // to its real name, so one found unlocked belongs to a process killed
        // while making it (or a moment before it locks: that process then
        // tries again, see `make_token`).
        let (start, temp) = match start.split_once(".new-") {
            Some((start, n)) if n.bytes().all(|b| b.is_ascii_digit()) => (start, Some(n)),
            Some(_) => continue,
            None => (start, None),
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        let path = match temp {
            Some(n) => format!("{}.new-{n}", token_path(pid, start)),
            None => token_path(pid, start),
        };
        let Ok(fd) = open_token(&path, libc::O_RDONLY) else {
            continue;
        };
        if !trusted(&fd) {
            continue;
        }
        let mut lock = lock_range(libc::F_WRLCK as libc::c_short);
        if fcntl_lock(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock).is_ok()
            && lock.l_type == libc::F_UNLCK as libc::c_short
        {
            dead += 1;
            if remove {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    dead
}

/// Whether the process `(pid, start)` lives, as the kernel sees its token's
/// lock: `None` if it has no token (it predates tokens, or could not make one).
/// A dead process's token is removed on the way.
pub(crate) fn token_alive(pid: u32, start: u64) -> Option<bool> {
    let path = token_path(pid, start);
    let fd = open_token(&path, libc::O_RDONLY).ok()?;
    if !trusted(&fd) {
        return None;
    }
    let mut lock = lock_range(libc::F_WRLCK as libc::c_short);
    fcntl_lock(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock).ok()?;
    let alive = lock.l_type != libc::F_UNLCK as libc::c_short;
    if !alive {
        let _ = std::fs::remove_file(&path);
    }
    Some(alive)
}
