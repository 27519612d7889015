//! Windows backend: named sections (`CreateFileMappingW`), views (`MapViewOfFile`).
//!
//! Pagefile-backed sections vanish when their last handle closes: that is
//! shmkit's temporary lifetime. A persistent object is a section over a file in
//! `%TEMP%\shmkit-shm\`; `shm_open` falls back to that file when no section of the
//! name is open, and `shm_unlink` deletes it.

mod kernel;
mod reactor;
pub(crate) use kernel::{KernelKind, KernelObject, WaitOutcome, WakeChannel};
pub(crate) use reactor::{watch, watch_exit, ExitWatch, Watch};

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT, ERROR_DISK_FULL,
    ERROR_FILE_NOT_FOUND, FILETIME, HANDLE, INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::Storage::FileSystem::FlushFileBuffers;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FlushViewOfFile, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile,
    VirtualQuery, FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, PAGE_PROTECTION_FLAGS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_WRITECOPY,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetExitCodeProcess, GetProcessTimes, OpenProcess,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{CreateParams, ProcessIdentity, RawMap};
use crate::access::{Access, Advice};

/// Sections are named at creation, before the creator can fill them.
pub(crate) const ATOMIC_PUBLISH: bool = false;
/// A file-backed section can carry a name.
pub(crate) const NAMED_FILE_SECTIONS: bool = true;
/// Windows refuses to shrink a file that has a mapped section.
pub(crate) const FILES_CAN_SHRINK_WHILE_MAPPED: bool = false;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The last OS error, with "store full" codes mapped to `StorageFull`.
fn last_error() -> io::Error {
    let e = io::Error::last_os_error();
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_COMMITMENT_LIMIT) | Some(ERROR_DISK_FULL) => {
            io::Error::new(io::ErrorKind::StorageFull, e)
        }
        _ => e,
    }
}

fn split(n: u64) -> (u32, u32) {
    ((n >> 32) as u32, n as u32)
}

/// The allocation granularity (64 KiB on x86-64): view offsets are aligned to it.
pub(crate) fn allocation_granularity() -> usize {
    // SAFETY: SYSTEM_INFO is plain data; GetSystemInfo fills it and cannot fail.
    let info = unsafe {
        let mut info: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut info);
        info
    };
    info.dwAllocationGranularity.max(4096) as usize
}

/// The page size: sections are sized in whole pages.
fn page_size() -> u64 {
    // SAFETY: SYSTEM_INFO is plain data; GetSystemInfo fills it and cannot fail.
    let info = unsafe {
        let mut info: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut info);
        info
    };
    (info.dwPageSize as u64).max(1)
}

/// Windows cannot shrink a section while it is mapped (nor a file that backs
/// one), so there is no fault to guard against: the guard is a no-op.
#[derive(Debug)]
pub(crate) struct FaultGuard;

impl FaultGuard {
    pub(crate) fn register(_start: *mut u8, _len: usize, _access: Access) -> FaultGuard {
        FaultGuard
    }

    pub(crate) fn hit(&self) -> bool {
        false
    }

    pub(crate) fn flag(&self) -> FaultFlag {
        FaultFlag
    }
}

/// Never set: see [`FaultGuard`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FaultFlag;

impl FaultFlag {
    #[inline]
    pub(crate) fn hit(self) -> bool {
        false
    }
}

/// Opening a file never blocks on Windows.
pub(crate) fn never_block_on_open(_opts: &mut std::fs::OpenOptions) {}

/// Windows has no `fork`: nothing to run.
pub(crate) fn on_fork_in_child(_handler: extern "C" fn()) {}

/// Windows has no uids; ownership is checked through the default DACL instead.
pub(crate) fn current_uid() -> u32 {
    0
}

/// An open section, plus the file behind it if any.
#[derive(Debug)]
pub(crate) struct Object {
    section: OwnedHandle,
    file: Option<File>,
    /// Exact size of the backing file of a persistent object opened by name.
    backing_len: Option<u64>,
    /// The page-rounded size `size()` reported from `VirtualQuery` (0: none). A
    /// view that reaches it is mapped "to the end of the section" instead, since
    /// the exact end is unknown and a longer view of a file section is refused.
    queried_size: AtomicU64,
}

fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: h is a valid handle that we own from here on.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) })
}

fn create_section(
    file: Option<&File>,
    protect: PAGE_PROTECTION_FLAGS,
    size: u64,
    name: Option<&str>,
) -> io::Result<OwnedHandle> {
    let (hi, lo) = split(size);
    let name = name.map(wide);
    let file_handle = file.map_or(INVALID_HANDLE_VALUE, |f| f.as_raw_handle() as HANDLE);
    // SAFETY: all pointers are valid or null; a null name makes an unnamed section.
    let h = unsafe {
        CreateFileMappingW(
            file_handle,
            std::ptr::null(),
            protect,
            hi,
            lo,
            name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
        )
    };
    // SAFETY: GetLastError has no preconditions; it must be read before other calls.
    let existed = !h.is_null() && unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    let section = owned(h)?;
    if existed {
        drop(section);
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    Ok(section)
}

impl Object {
    fn new(section: OwnedHandle, file: Option<File>, backing_len: Option<u64>) -> Object {
        Object {
            section,
            file,
            backing_len,
            queried_size: AtomicU64::new(0),
        }
    }

    /// Size of the section: exact for file-backed sections (a view may not extend
    /// past the file), rounded up to the page size for pagefile-backed ones.
    pub(crate) fn size(&self) -> io::Result<u64> {
        if let Some(f) = &self.file {
            return Ok(f.metadata()?.len());
        }
        let region = self.query_size()?;
        // A file of the name gives the exact size only if it is this section's:
        // a file left by a persistent object whose section is gone must not
        // answer for a section of the same name that another program made.
        Ok(match self.backing_len {
            Some(len) if len.div_ceil(page_size()) * page_size() == region => len,
            _ => region,
        })
    }

    /// The section's size as the memory manager reports it: rounded up to pages.
    fn query_size(&self) -> io::Result<u64> {
        // SAFETY: maps the whole section read-only, queries, and unmaps it again.
        unsafe {
            let view = MapViewOfFile(
                self.section.as_raw_handle() as HANDLE,
                FILE_MAP_READ,
                0,
                0,
                0,
            );
            if view.Value.is_null() {
                return Err(last_error());
            }
            let mut info: MEMORY_BASIC_INFORMATION = std::mem::zeroed();
            let n = VirtualQuery(
                view.Value,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            );
            let err = last_error();
            UnmapViewOfFile(view);
            if n == 0 {
                return Err(err);
            }
            let size = info.RegionSize as u64;
            self.queried_size.store(size, Ordering::Relaxed);
            Ok(size)
        }
    }

    /// Windows objects have no Unix owner and mode.
    pub(crate) fn owner_and_mode(&self) -> io::Result<Option<(u32, u32)>> {
        Ok(None)
    }

    /// Sections are reference counted by the kernel: there is no lifetime lock.
    pub(crate) fn is_exclusive(&self) -> bool {
        false
    }

    pub(crate) fn share(&self) -> io::Result<()> {
        Ok(())
    }

    /// Sections are named when created.
    pub(crate) fn publish(&self) -> io::Result<()> {
        Ok(())
    }

    /// The kernel removes a pagefile-backed section with its last handle.
    pub(crate) fn close_and_remove_if_last(self) {}

    pub(crate) fn unlink_exclusive(&self) -> io::Result<()> {
        Ok(())
    }

    /// Writes the file's buffers to disk (after `FlushViewOfFile`).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        if let Some(f) = &self.file {
            // SAFETY: a valid file handle.
            if unsafe { FlushFileBuffers(f.as_raw_handle() as HANDLE) } == 0 {
                return Err(last_error());
            }
        }
        Ok(())
    }
}

/// File that backs the persistent object `os_name`. Names are percent-encoded,
/// since object names may hold characters file names cannot.
fn backing_path(os_name: &str) -> PathBuf {
    let mut file = String::new();
    for b in os_name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
            file.push(b as char);
        } else {
            file.push_str(&format!("%{b:02X}"));
        }
    }
    backing_dir().join(file)
}

fn backing_dir() -> PathBuf {
    std::env::temp_dir().join("shmkit-shm")
}

fn decode_backing_name(file: &str) -> Option<String> {
    let mut out = Vec::new();
    let b = file.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = file.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Creates a named section of `params.size` bytes; `AlreadyExists` if the name is
/// taken by a section or a persistent object.
pub(crate) fn shm_create(os_name: &str, params: &CreateParams) -> io::Result<Object> {
    let path = backing_path(os_name);
    if path.exists() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    if !params.persistent {
        let section = create_section(None, PAGE_READWRITE, params.size, Some(os_name))?;
        return Ok(Object::new(section, None, None));
    }
    std::fs::create_dir_all(backing_dir())?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let made = file
        .set_len(params.size)
        .and_then(|()| create_section(Some(&file), PAGE_READWRITE, params.size, Some(os_name)));
    match made {
        Ok(section) => Ok(Object::new(section, Some(file), None)),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Opens a named section, or the file of a persistent object nobody has open.
pub(crate) fn shm_open(os_name: &str, writable: bool) -> io::Result<Object> {
    let access = if writable {
        FILE_MAP_READ | FILE_MAP_WRITE
    } else {
        FILE_MAP_READ | FILE_MAP_COPY
    };
    let name = wide(os_name);
    // SAFETY: name is a NUL-terminated UTF-16 string.
    let h = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
    match owned(h) {
        Ok(section) => Ok(Object::new(
            section,
            None,
            std::fs::metadata(backing_path(os_name))
                .ok()
                .map(|m| m.len()),
        )),
        Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => {
            let file = OpenOptions::new()
                .read(true)
                .write(writable)
                .open(backing_path(os_name))?;
            let protect = if writable {
                PAGE_READWRITE
            } else {
                PAGE_READONLY
            };
            let len = file.metadata()?.len();
            let (hi, lo) = split(len);
            // SAFETY: valid file handle and NUL-terminated name.
            let h = unsafe {
                CreateFileMappingW(
                    file.as_raw_handle() as HANDLE,
                    std::ptr::null(),
                    protect,
                    hi,
                    lo,
                    name.as_ptr(),
                )
            };
            // SAFETY: GetLastError has no preconditions; read before other calls.
            let existed = !h.is_null() && unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
            let section = owned(h)?;
            if existed {
                // A program made a section of the name meanwhile: that live
                // section is the object, not our file.
                return Ok(Object::new(section, None, Some(len)));
            }
            Ok(Object::new(section, Some(file), None))
        }
        Err(e) => Err(e),
    }
}

/// Deletes a persistent object's file. A pagefile-backed section cannot be
/// removed; it goes with its last handle.
pub(crate) fn shm_unlink(os_name: &str) -> io::Result<()> {
    match std::fs::remove_file(backing_path(os_name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = wide(os_name);
            // SAFETY: name is a NUL-terminated UTF-16 string.
            let h = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, name.as_ptr()) };
            if owned(h).is_ok() {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a pagefile-backed section goes away when its last handle closes",
                ))
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// OS names of the persistent objects (temporary sections cannot be listed).
pub(crate) fn shm_list() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = match std::fs::read_dir(backing_dir()) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for entry in dir {
        if let Some(n) = entry?.file_name().to_str().and_then(decode_backing_name) {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

/// Makes a section over `file`, named if `name` is given.
pub(crate) fn file_object(
    file: File,
    size: u64,
    access: Access,
    name: Option<&str>,
) -> io::Result<Object> {
    let protect = match access {
        Access::ReadOnly => PAGE_READONLY,
        Access::ReadWrite => PAGE_READWRITE,
        Access::CopyOnWrite => PAGE_WRITECOPY,
    };
    let section = create_section(Some(&file), protect, size, name)?;
    Ok(Object::new(section, Some(file), None))
}

/// Windows allocates file blocks when the file is extended.
pub(crate) fn reserve_file(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Maps `len` bytes of `obj` from `offset` (a multiple of the allocation granularity).
pub(crate) fn map(obj: &Object, offset: u64, len: usize, access: Access) -> io::Result<RawMap> {
    if len == 0 {
        return Ok(RawMap::empty());
    }
    let flags = match access {
        Access::ReadOnly => FILE_MAP_READ,
        Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        Access::CopyOnWrite => FILE_MAP_COPY,
    };
    let (hi, lo) = split(offset);
    let queried = obj.queried_size.load(Ordering::Relaxed);
    let count = if queried != 0 && offset + len as u64 == queried {
        0 // to the end of the section
    } else {
        len
    };
    // SAFETY: maps a fresh view chosen by the system over a valid section handle.
    let view =
        unsafe { MapViewOfFile(obj.section.as_raw_handle() as HANDLE, flags, hi, lo, count) };
    match NonNull::new(view.Value.cast::<u8>()) {
        Some(ptr) => Ok(RawMap::guarded(ptr, len, access)),
        None => Err(last_error()),
    }
}

impl RawMap {
    /// Writes the range's dirty pages to the file (the caller syncs the file).
    pub(crate) fn flush(&self, offset: usize, len: usize, _sync: bool) -> io::Result<()> {
        if len == 0 || self.len == 0 {
            return Ok(());
        }
        let len = len.min(self.len - offset);
        // SAFETY: the range lies inside our view.
        let ok = unsafe { FlushViewOfFile(self.ptr.as_ptr().add(offset).cast(), len) };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Windows has no `madvise`; hints are accepted and ignored.
    pub(crate) fn advise(&self, _offset: usize, _len: usize, _advice: Advice) -> io::Result<()> {
        Ok(())
    }
}

/// Unmaps a view `map` returned.
///
/// # Safety
///
/// `ptr` must be a live view from `map`, not used afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, _len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: ptr.as_ptr().cast(),
        })
    };
}

fn creation_time(process: HANDLE) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: valid process handle and pointers to local FILETIMEs.
    let ok = unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| (created.dwHighDateTime as u64) << 32 | created.dwLowDateTime as u64)
}

/// This process's identity.
pub(crate) fn current_process() -> ProcessIdentity {
    // SAFETY: GetCurrentProcessId and the pseudo-handle need no cleanup.
    let (pid, me) = unsafe { (GetCurrentProcessId(), GetCurrentProcess()) };
    ProcessIdentity {
        pid,
        start_time: creation_time(me).unwrap_or(0),
    }
}

/// Whether the process `id` names still runs (a reused PID has another start time).
pub(crate) fn process_alive(id: ProcessIdentity) -> bool {
    // SAFETY: OpenProcess returns null or a handle we close below.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, id.pid) };
    if h.is_null() {
        // Access denied means it exists; anything else means it does not.
        return io::Error::last_os_error().kind() == io::ErrorKind::PermissionDenied;
    }
    let mut code = 0u32;
    // SAFETY: valid process handle and out pointer.
    let running = unsafe { GetExitCodeProcess(h, &mut code) } != 0 && code == STILL_ACTIVE as u32;
    let same = id.start_time == 0 || creation_time(h) == Some(id.start_time);
    // SAFETY: h came from OpenProcess and is closed once.
    unsafe { CloseHandle(h) };
    running && same
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_names_round_trip() {
        for n in ["Local\\shmkit.a b:c*?", "Global\\shmkit.ünï"] {
            let p = backing_path(n);
            let file = p.file_name().unwrap().to_str().unwrap();
            assert!(!file.contains('\\') && !file.contains(':'));
            assert_eq!(decode_backing_name(file).as_deref(), Some(n));
        }
    }
}
