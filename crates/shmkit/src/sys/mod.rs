//! The operating-system layer: the only place in shmkit that calls the OS.
//!
//! Each platform module offers the same set of crate-private items:
//!
//! - `Object`: an open shared-memory object or file that can be mapped;
//! - `shm_create` / `shm_open` / `shm_unlink` / `shm_list` for named objects;
//! - `RawMap`, a mapped range that unmaps itself when dropped;
//! - `allocation_granularity`, and process identity (`current_process`,
//!   `process_alive`).
//!
//! Errors are plain `std::io::Error`s; the layers above add the object's name.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// Parameters for creating a named shared-memory object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateParams {
    /// Size of the object in bytes.
    pub size: u64,
    /// Unix permission bits; ignored on Windows, where the default DACL applies.
    #[cfg_attr(windows, allow(dead_code))]
    pub mode: u32,
    /// Reserve the memory now so that a full store fails here, not later.
    #[cfg_attr(windows, allow(dead_code))]
    pub reserve: bool,
    /// Windows only: back the object by a file so that it outlives its users.
    #[cfg_attr(unix, allow(dead_code))]
    pub persistent: bool,
}

/// Identity of a process that survives PID reuse: its id and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub pid: u32,
    /// Platform-specific start time; 0 when the platform cannot tell.
    pub start_time: u64,
}

/// A mapped range of an object; unmapped on drop. Each platform module adds
/// `flush` and `advise` and provides `unmap`.
#[derive(Debug)]
pub(crate) struct RawMap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// Turns a fault from a peer shrinking the object into a flag (Unix; see
    /// `unix/fault.rs`). Left before the range is unmapped.
    guard: Option<FaultGuard>,
}

// SAFETY: RawMap is an address range owned by this value; which threads touch the
// bytes is governed by the safe wrappers above it, not by the pointer itself.
unsafe impl Send for RawMap {}
// SAFETY: as for Send; &RawMap only exposes the address and flush/advise calls.
unsafe impl Sync for RawMap {}

impl RawMap {
    /// An empty range: nothing is mapped (the OS refuses zero-length mappings).
    fn empty() -> RawMap {
        RawMap {
            ptr: std::ptr::NonNull::dangling(),
            len: 0,
            guard: None,
        }
    }

    /// A fresh mapping of `len` bytes at `ptr`, made with `access`, guarded
    /// against truncation.
    fn guarded(ptr: std::ptr::NonNull<u8>, len: usize, access: crate::access::Access) -> RawMap {
        RawMap {
            ptr,
            len,
            guard: Some(FaultGuard::register(ptr.as_ptr(), len, access)),
        }
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether the object was shrunk under this mapping and an access faulted:
    /// the range then holds anonymous memory, no longer the object's bytes.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        self.guard.as_ref().is_some_and(FaultGuard::hit)
    }

    /// The flag behind [`truncated`](Self::truncated), valid while this map lives.
    #[inline]
    pub(crate) fn fault_flag(&self) -> FaultFlag {
        self.guard
            .as_ref()
            .map(FaultGuard::flag)
            .unwrap_or_default()
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // Out of the fault table first: the addresses may be reused at once.
        drop(self.guard.take());
        if self.len > 0 {
            // SAFETY: ptr/len describe a live mapping made by this module's `map`,
            // unmapped only here.
            unsafe { unmap(self.ptr, self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = current_process();
        assert!(me.start_time != 0);
        assert!(process_alive(me));
        assert!(!process_alive(ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        }));
    }
}
