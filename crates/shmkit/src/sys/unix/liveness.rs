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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Where the token of the process `(pid, start)` lives.
fn token_path(pid: u32, start: u64) -> String {
    format!("/dev/shm/shmkit-live.{pid}.{start}")
}

/// The token this process holds (a process made by `fork` makes its own).
static TOKEN: Mutex<Option<(u32, OwnedFd)>> = Mutex::new(None);

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

fn open_token(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
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
/// identity. Best effort: without a token (no `/dev/shm`, no OFD locks), others
/// fall back to `/proc`.
pub(crate) fn hold_token(pid: u32, start: u64) {
    let mut token = TOKEN.lock().unwrap_or_else(|e| e.into_inner());
    if token.as_ref().is_some_and(|(p, _)| *p == pid) {
        return;
    }
    let Ok(fd) = open_token(&token_path(pid, start), libc::O_RDWR | libc::O_CREAT) else {
        return;
    };
    let mut lock = lock_range(libc::F_WRLCK as libc::c_short);
    if fcntl_lock(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock).is_ok() {
        // Kept open for the life of the process: the lock is the proof of life.
        *token = Some((pid, fd));
        OWN_START.store(start, std::sync::atomic::Ordering::Relaxed);
        static AT_EXIT: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a plain function; atexit has no other precondition.
        AT_EXIT.call_once(|| unsafe {
            libc::atexit(remove_own_token);
        });
    }
}

static OWN_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// At a normal exit, the token goes with the process (a killed process's token
/// is removed by the next process that finds it unlocked, or by `shmkit gc`).
extern "C" fn remove_own_token() {
    let start = OWN_START.load(std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::remove_file(token_path(std::process::id(), start));
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
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        let path = token_path(pid, start);
        let Ok(fd) = open_token(&path, libc::O_RDONLY) else {
            continue;
        };
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
    let mut lock = lock_range(libc::F_WRLCK as libc::c_short);
    fcntl_lock(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock).ok()?;
    let alive = lock.l_type != libc::F_UNLCK as libc::c_short;
    if !alive {
        let _ = std::fs::remove_file(&path);
    }
    Some(alive)
}
