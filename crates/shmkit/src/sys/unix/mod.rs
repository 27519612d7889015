//! Unix backend: POSIX shared-memory objects, `mmap`, `flock`.
//!
//! On Linux, named objects are files in /dev/shm (exactly what glibc's and musl's
//! `shm_open` use), which lets shmkit create an object unnamed (`O_TMPFILE`), size,
//! reserve, lock and fill it, and only then give it its name with `linkat`, which
//! fails if the name exists. Nobody can ever open a half-made object. Elsewhere the
//! object is created with `shm_open(O_CREAT | O_EXCL)` and named from the start.
//!
//! Lifetime: every user of an object holds a shared `flock` on it. A user that wants
//! a temporary object gone when it is no longer used tries to take the lock
//! exclusively when it closes; whoever gets it is the last user and unlinks the name,
//! after checking that the name still refers to the same inode. An opener re-checks
//! the name after taking its shared lock, so it never keeps an object that a last
//! user unlinked under it. The kernel drops the locks of crashed processes.

mod exits;
mod fault;
#[cfg(target_os = "linux")]
mod liveness;
mod per_process;
mod posix_sem;
mod reactor;
mod wait;
pub(crate) use exits::{watch_exit, ExitWatch};
pub(crate) use fault::{FaultFlag, FaultGuard};
#[cfg(target_os = "linux")]
pub(crate) use liveness::reap_dead_tokens;
pub(crate) use posix_sem::PosixSem;
pub(crate) use reactor::{watch, Watch};
pub(crate) use wait::WakeChannel;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{CreateParams, ProcessIdentity, RawMap};
use crate::access::{Access, Advice};

/// Whether a new named object appears under its name only when complete.
pub(crate) const ATOMIC_PUBLISH: bool = cfg!(target_os = "linux");

/// Whether a file mapping can carry a name itself (Windows sections can; on Unix
/// the layer above publishes the path in a small segment).
pub(crate) const NAMED_FILE_SECTIONS: bool = false;

/// Whether another process can shrink a file we have mapped (then touching the
/// lost pages raises SIGBUS, so accesses check the size first).
pub(crate) const FILES_CAN_SHRINK_WHILE_MAPPED: bool = true;

/// How long `shm_open` waits for a last user that is busy removing the object.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// The OS's allocation granularity: view offsets are aligned down to it.
pub(crate) fn allocation_granularity() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// The effective user id, which new objects are owned by.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(target_os = "linux")]
fn shm_path(os_name: &str) -> String {
    format!("/dev/shm{os_name}")
}

/// Opens a named object; `os_name` starts with '/'.
fn open_name(os_name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    let fd = {
        let path = cstring(&shm_path(os_name))?;
        // O_NOFOLLOW refuses symlinks planted in the world-writable /dev/shm;
        // O_NONBLOCK keeps a planted FIFO from blocking the open (callers then
        // refuse it: not a regular file), and changes nothing for regular files.
        // SAFETY: path is a valid C string.
        unsafe {
            libc::open(
                path.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                mode as libc::c_uint,
            )
        }
    };
    #[cfg(not(target_os = "linux"))]
    let fd = {
        let name = cstring(os_name)?;
        // macOS declares shm_open variadic (the mode is promoted to an int);
        // elsewhere it takes a mode_t.
        #[cfg(target_vendor = "apple")]
        let mode = mode as libc::c_uint;
        // SAFETY: name is a valid C string; shm_open sets FD_CLOEXEC itself.
        unsafe { libc::shm_open(name.as_ptr(), flags, mode) }
    };
    let fd = cvt(fd)?;
    // SAFETY: fd was just returned by open/shm_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st points to writable memory of the right size; fstat fills it on success.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Whether `os_name` still names the object described by `st`. On Linux this
/// takes no file descriptor (an `lstat` of the name), so that the last user of a
/// temporary object can remove it even when the process has no descriptor left
/// (EMFILE); a symlink planted under the name is another inode, never a match.
fn names_same_object(os_name: &str, st: &libc::stat) -> bool {
    #[cfg(target_os = "linux")]
    let now = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(shm_path(os_name)).map(|m| (m.dev(), m.ino()))
    };
    #[cfg(not(target_os = "linux"))]
    let now = open_name(os_name, libc::O_RDONLY, 0)
        .and_then(|fd| fstat(fd.as_raw_fd()))
        .map(|now| (now.st_dev as u64, now.st_ino as u64));
    // dev_t and ino_t are not u64 everywhere (macOS has a 32-bit dev_t).
    #[allow(clippy::unnecessary_cast)]
    let same = now.is_ok_and(|(dev, ino)| dev == st.st_dev as u64 && ino == st.st_ino as u64);
    same
}

fn flock(fd: RawFd, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a valid descriptor has no memory-safety preconditions.
    cvt(unsafe { libc::flock(fd, op) }).map(drop)
}

fn unlink_name(os_name: &str) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let path = cstring(&shm_path(os_name))?;
        // SAFETY: path is a valid C string.
        cvt(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let name = cstring(os_name)?;
        // SAFETY: name is a valid C string.
        cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
    }
}

fn to_off_t(n: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(n).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "size or offset too large for off_t",
        )
    })
}

/// Sets the size of `fd` and, if asked, reserves its blocks so that touching any
/// page later cannot fail for lack of space (no SIGBUS on a full /dev/shm).
pub(crate) fn set_size(fd: &impl AsRawFd, size: u64, reserve: bool) -> io::Result<()> {
    let len = to_off_t(size)?;
    let fd = fd.as_raw_fd();
    // SAFETY: ftruncate on a valid descriptor.
    cvt(unsafe { libc::ftruncate(fd, len) })?;
    if reserve && len > 0 {
        reserve_range(fd, len)?;
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn reserve_range(fd: RawFd, len: libc::off_t) -> io::Result<()> {
    // SAFETY: posix_fallocate on a valid descriptor; it returns the error number.
    match unsafe { libc::posix_fallocate(fd, 0, len) } {
        0 => Ok(()),
        // Filesystems without preallocation (some FreeBSD shm objects, NFS): the
        // size is still set, the space is not reserved. Nothing better exists there.
        libc::EINVAL | libc::EOPNOTSUPP | libc::ENODEV => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn reserve_range(_fd: RawFd, _len: libc::off_t) -> io::Result<()> {
    // macOS has no posix_fallocate for shared-memory objects; documented in Shm.
    Ok(())
}

/// An open shared-memory object or file that can be mapped.
#[derive(Debug)]
pub(crate) struct Object {
    fd: OwnedFd,
    /// OS name for named objects; `None` for files.
    os_name: Option<String>,
    /// Set while a new Linux object is still unnamed and waits for `publish`.
    unpublished: AtomicBool,
    /// Whether this handle holds the lifetime lock exclusively.
    exclusive: AtomicBool,
}

impl Object {
    fn from_file(file: File) -> Object {
        Object {
            fd: file.into(),
            os_name: None,
            unpublished: AtomicBool::new(false),
            exclusive: AtomicBool::new(false),
        }
    }

    /// Size of the object in bytes.
    pub(crate) fn size(&self) -> io::Result<u64> {
        Ok(fstat(self.fd.as_raw_fd())?.st_size as u64)
    }

    /// `msync(MS_SYNC)` already wrote the pages to the file: nothing more to do.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    /// Owner uid and permission bits (always known on Unix).
    pub(crate) fn owner_and_mode(&self) -> io::Result<Option<(u32, u32)>> {
        let st = fstat(self.fd.as_raw_fd())?;
        Ok(Some((st.st_uid, st.st_mode as u32 & 0o7777)))
    }

    /// Whether nobody else held the object when it was opened; the lifetime lock is
    /// then held exclusively until [`Object::share`].
    pub(crate) fn is_exclusive(&self) -> bool {
        self.exclusive.load(Ordering::Acquire)
    }

    /// Turns an exclusive lifetime lock into a shared one.
    pub(crate) fn share(&self) -> io::Result<()> {
        if self.exclusive.load(Ordering::Acquire) {
            // Others can only have been waiting for a shared lock, so this cannot block.
            flock(self.fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB)?;
            self.exclusive.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Gives a new object its name. On Linux this is the moment it becomes visible;
    /// fails with `AlreadyExists` if the name was taken meanwhile.
    pub(crate) fn publish(&self) -> io::Result<()> {
        if !self.unpublished.load(Ordering::Acquire) {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            let os_name = self.os_name.as_deref().unwrap_or_default();
            let from = cstring(&format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?;
            let to = cstring(&shm_path(os_name))?;
            // SAFETY: both paths are valid C strings. AT_SYMLINK_FOLLOW makes linkat
            // resolve the /proc magic link to our unnamed file; it fails with EEXIST
            // rather than replace an existing name.
            cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })?;
        }
        self.unpublished.store(false, Ordering::Release);
        Ok(())
    }

    /// Removes the name if this is the last handle to the object anywhere, then
    /// closes. Errors are ignored: this runs from `Drop`.
    pub(crate) fn close_and_remove_if_last(self) {
        let Some(os_name) = self.os_name.as_deref() else {
            return;
        };
        if self.unpublished.load(Ordering::Acquire) {
            return;
        }
        let fd = self.fd.as_raw_fd();
        // A failed upgrade drops our shared lock; harmless, we are closing anyway.
        if flock(fd, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            if let Ok(st) = fstat(fd) {
                if names_same_object(os_name, &st) {
                    let _ = unlink_name(os_name);
                }
            }
        }
    }

    /// Removes the name while this handle holds the object exclusively.
    pub(crate) fn unlink_exclusive(&self) -> io::Result<()> {
        let os_name = self.os_name.as_deref().unwrap_or_default();
        let st = fstat(self.fd.as_raw_fd())?;
        if self.is_exclusive() && names_same_object(os_name, &st) {
            unlink_name(os_name)?;
        }
        Ok(())
    }
}

/// Creates a new named object of `params.size` bytes, held with a shared lifetime
/// lock. On Linux it stays unnamed until [`Object::publish`].
pub(crate) fn shm_create(os_name: &str, params: &CreateParams) -> io::Result<Object> {
    let mode = params.mode as libc::mode_t;
    let (fd, unpublished) = create_unnamed(os_name, mode)?;
    let obj = Object {
        fd,
        os_name: Some(os_name.to_owned()),
        unpublished: AtomicBool::new(unpublished),
        exclusive: AtomicBool::new(false),
    };
    let raw = obj.fd.as_raw_fd();
    let setup = (|| {
        // open() applied the umask; the caller asked for exactly `mode`.
        // SAFETY: fchmod on a valid descriptor.
        cvt(unsafe { libc::fchmod(raw, mode) })?;
        flock(raw, libc::LOCK_SH | libc::LOCK_NB)?;
        set_size(&obj.fd, params.size, params.reserve)
    })();
    if let Err(e) = setup {
        if !unpublished {
            let _ = unlink_name(os_name);
        }
        return Err(e);
    }
    Ok(obj)
}

#[cfg(target_os = "linux")]
fn create_unnamed(os_name: &str, mode: libc::mode_t) -> io::Result<(OwnedFd, bool)> {
    // Fail early, before doing the work, when the name is plainly taken.
    if open_name(os_name, libc::O_RDONLY, 0).is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    let dir = cstring("/dev/shm")?;
    // SAFETY: dir is a valid C string. O_TMPFILE makes an unnamed file in /dev/shm.
    let fd = cvt(unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, true))
}

#[cfg(not(target_os = "linux"))]
fn create_unnamed(os_name: &str, mode: libc::mode_t) -> io::Result<(OwnedFd, bool)> {
    let fd = open_name(os_name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)?;
    Ok((fd, false))
}

/// Opens an existing named object. If no other process holds it, the lifetime lock
/// is taken exclusively (see [`Object::is_exclusive`]) so that the caller can decide
/// whether it is a leftover of crashed processes before anyone else joins.
pub(crate) fn shm_open(os_name: &str, writable: bool) -> io::Result<Object> {
    let flags = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let fd = open_name(os_name, flags, 0)?;
        let raw = fd.as_raw_fd();
        let st = fstat(raw)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular shared-memory object",
            ));
        }
        let exclusive = flock(raw, libc::LOCK_EX | libc::LOCK_NB).is_ok();
        if !exclusive {
            // Blocks only while a last user decides whether to unlink: moments.
            loop {
                match flock(raw, libc::LOCK_SH | libc::LOCK_NB) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "another process holds the object's lifetime lock exclusively",
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if names_same_object(os_name, &st) {
            return Ok(Object {
                fd,
                os_name: Some(os_name.to_owned()),
                unpublished: AtomicBool::new(false),
                exclusive: AtomicBool::new(exclusive),
            });
        }
        // The last user unlinked it while we waited; look again.
    }
}

/// Removes a name. Processes that have the object open keep using it.
pub(crate) fn shm_unlink(os_name: &str) -> io::Result<()> {
    unlink_name(os_name)
}

/// OS names of all named shared-memory objects.
pub(crate) fn shm_list() -> io::Result<Vec<String>> {
    #[cfg(target_os = "linux")]
    {
        let mut names = Vec::new();
        for entry in std::fs::read_dir("/dev/shm")? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(n) = entry.file_name().to_str() {
                    names.push(format!("/{n}"));
                }
            }
        }
        names.sort();
        Ok(names)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this OS has no way to list shared-memory objects",
        ))
    }
}

/// Wraps an open file for mapping. Unix files need no section object, so the size,
/// access and name are not needed here.
pub(crate) fn file_object(
    file: File,
    _size: u64,
    _access: Access,
    _name: Option<&str>,
) -> io::Result<Object> {
    Ok(Object::from_file(file))
}

/// Reserves `len` bytes of a file from offset 0 (no-op where unsupported).
pub(crate) fn reserve_file(file: &File, len: u64) -> io::Result<()> {
    let len = to_off_t(len)?;
    if len == 0 {
        return Ok(());
    }
    reserve_range(file.as_raw_fd(), len)
}

/// Maps `len` bytes of `obj` from `offset`, which must be a multiple of
/// [`allocation_granularity`].
pub(crate) fn map(obj: &Object, offset: u64, len: usize, access: Access) -> io::Result<RawMap> {
    if len == 0 {
        return Ok(RawMap::empty());
    }
    let (prot, flags) = match access {
        Access::ReadOnly => (libc::PROT_READ, libc::MAP_SHARED),
        Access::ReadWrite => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
        Access::CopyOnWrite => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE),
    };
    let off = to_off_t(offset)?;
    // SAFETY: a fresh mapping chosen by the kernel (addr NULL) over a valid
    // descriptor; it overlaps no Rust object.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            obj.fd.as_raw_fd(),
            off,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(RawMap::guarded(
        NonNull::new(ptr.cast()).expect("mmap returned NULL without MAP_FIXED"),
        len,
        access,
    ))
}

impl RawMap {
    /// Page-aligned sub-range covering `[offset, offset + len)`.
    fn page_range(&self, offset: usize, len: usize) -> (*mut libc::c_void, usize) {
        let page = allocation_granularity();
        let start = offset / page * page;
        let end = (offset + len).min(self.len);
        // SAFETY (of the pointer arithmetic below): start <= offset <= self.len.
        (self.ptr.as_ptr().wrapping_add(start).cast(), end - start)
    }

    /// Writes modified pages in the range back to the object.
    pub(crate) fn flush(&self, offset: usize, len: usize, sync: bool) -> io::Result<()> {
        if len == 0 || self.len == 0 {
            return Ok(());
        }
        let (addr, n) = self.page_range(offset, len);
        let flags = if sync { libc::MS_SYNC } else { libc::MS_ASYNC };
        // SAFETY: addr..addr+n lies inside our mapping and addr is page aligned.
        cvt(unsafe { libc::msync(addr, n, flags) }).map(drop)
    }

    /// Passes an access-pattern hint for the range to the kernel.
    pub(crate) fn advise(&self, offset: usize, len: usize, advice: Advice) -> io::Result<()> {
        if len == 0 || self.len == 0 {
            return Ok(());
        }
        let (addr, n) = self.page_range(offset, len);
        let advice = match advice {
            Advice::Normal => libc::MADV_NORMAL,
            Advice::Sequential => libc::MADV_SEQUENTIAL,
            Advice::Random => libc::MADV_RANDOM,
            Advice::WillNeed => libc::MADV_WILLNEED,
        };
        // SAFETY: addr..addr+n lies inside our mapping; these hints never discard data.
        cvt(unsafe { libc::madvise(addr, n, advice) }).map(drop)
    }
}

/// Unmaps a range `map` returned.
///
/// # Safety
///
/// `ptr`/`len` must be exactly a live mapping from `map`, not used afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// Makes `opts` open without blocking, so that a FIFO planted where a file is
/// expected cannot hang the open (the caller then refuses it: not a regular
/// file). Regular files behave as before.
pub(crate) fn never_block_on_open(opts: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.custom_flags(libc::O_NONBLOCK);
}

/// Runs `handler` in the child after every `fork` of this process (registered
/// once per call site's `Once`). The handler must be async-signal-safe.
pub(crate) fn on_fork_in_child(handler: extern "C" fn()) {
    // SAFETY: registers a handler; pthread_atfork has no other precondition, and
    // the caller promises the handler is async-signal-safe, as fork handlers
    // must be.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

/// This process's identity; on Linux it also starts holding its liveness
/// token (see `liveness.rs`), so call it before recording itself anywhere.
pub(crate) fn current_process() -> ProcessIdentity {
    let pid = std::process::id();
    // Our own start time from /proc/self: in another PID namespace, /proc/<our
    // pid> may be a different process.
    let start_time = own_start_time().unwrap_or(0);
    #[cfg(target_os = "linux")]
    liveness::hold_token(pid, start_time);
    ProcessIdentity { pid, start_time }
}

/// Whether the process `id` names still runs (false for zombies and reused PIDs).
pub(crate) fn process_alive(id: ProcessIdentity) -> bool {
    #[cfg(target_os = "linux")]
    {
        // The kernel's word first: the process's token lock, if it has one.
        if id.start_time != 0 {
            if let Some(alive) = liveness::token_alive(id.pid, id.start_time) {
                return alive;
            }
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", id.pid)) else {
            return false;
        };
        let Some((state, start)) = parse_proc_stat(&stat) else {
            return false;
        };
        if matches!(state, 'Z' | 'X' | 'x') {
            return false;
        }
        id.start_time == 0 || id.start_time == start
    }
    #[cfg(not(target_os = "linux"))]
    {
        let Ok(pid) = libc::pid_t::try_from(id.pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

/// The state letter and start time of process `pid` as this process's /proc
/// shows it.
#[cfg(target_os = "linux")]
pub(crate) fn proc_state(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&stat)
}

#[cfg(target_os = "linux")]
fn own_start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_proc_stat(&stat).map(|(_, start)| start)
}

#[cfg(not(target_os = "linux"))]
fn own_start_time() -> Option<u64> {
    None
}

/// State letter and start time (field 22) from /proc/PID/stat. The command name
/// (field 2) may contain spaces and parentheses, so parse from the last ')'.
#[cfg(target_os = "linux")]
fn parse_proc_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was the state; the start time is field 22, 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parsing_survives_odd_command_names() {
        let line = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19";
        assert_eq!(parse_proc_stat(line), Some(('S', 777)));
        assert_eq!(parse_proc_stat("garbage"), None);
    }
}
