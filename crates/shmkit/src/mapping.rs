//! Mapped windows onto shared-memory objects and files.
//!
//! [`Mapping`] is what [`Shm`](crate::Shm) and [`MappedFile`](crate::MappedFile)
//! dereference to: a window of bytes with bounds-checked copies in and out, atomics
//! for words other processes write, flushing, advice and sub-views.
//!
//! Other processes may write the bytes at any moment, so the safe API copies data
//! (`read_at`, `write_at`) instead of handing out `&[u8]`; the slice accessors are
//! `unsafe` and state what the caller must guarantee.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::access::{Access, Advice};
use crate::error::{Error, Result};
use crate::sys;

/// An open OS object shared by a [`Shm`](crate::Shm) or
/// [`MappedFile`](crate::MappedFile) and all views made from it. Dropping the last
/// reference closes it, removing a temporary object if this was its last user.
#[derive(Debug)]
pub(crate) struct Handle {
    obj: Option<sys::Object>,
    /// The caller's name for the object, used in error messages.
    pub(crate) name: String,
    remove_when_last: AtomicBool,
}

impl Handle {
    pub(crate) fn new(obj: sys::Object, name: String, remove_when_last: bool) -> Handle {
        Handle {
            obj: Some(obj),
            name,
            remove_when_last: AtomicBool::new(remove_when_last),
        }
    }

    /// Decides whether dropping the last reference removes a temporary object.
    pub(crate) fn set_remove_when_last(&self, yes: bool) {
        self.remove_when_last.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn obj(&self) -> &sys::Object {
        self.obj.as_ref().expect("object present until drop")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            if self.remove_when_last.load(Ordering::Relaxed) {
                obj.close_and_remove_if_last();
            }
        }
    }
}

/// A mapped window of bytes of a shared-memory object or file.
///
/// All offsets are relative to the start of the window. Views may start at any
/// offset: shmkit maps from the offset rounded down to the OS allocation
/// granularity (the page size on Unix, 64 KiB on Windows) and hides the difference.
///
/// ```
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-mapping-{}", std::process::id());
/// let shm = shmkit::Shm::create(&name, 4096)?;
/// shm.write_at(10, b"hello")?;
/// let mut buf = [0u8; 5];
/// shm.read_at(10, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert!(shm.read_at(4095, &mut buf).is_err()); // past the end: an error, not a crash
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mapping {
    map: sys::RawMap,
    /// Where the window starts inside `map`.
    start: usize,
    len: usize,
    /// Where the window starts inside the object.
    object_offset: u64,
    access: Access,
    /// Check the object's current size before each copy (files others may truncate).
    check_size: bool,
    handle: Arc<Handle>,
}

impl Mapping {
    /// Maps `len` bytes of the object from `object_offset`.
    pub(crate) fn new(
        handle: Arc<Handle>,
        object_offset: u64,
        len: u64,
        access: Access,
        check_size: bool,
    ) -> Result<Mapping> {
        let too_big = || Error::InvalidSize {
            object: (&handle.name).into(),
            reason: format!("{len} bytes do not fit in this process's address space"),
        };
        let len = usize::try_from(len).map_err(|_| too_big())?;
        let gran = sys::allocation_granularity() as u64;
        let aligned = object_offset / gran * gran;
        let start = (object_offset - aligned) as usize;
        let map_len = start.checked_add(len).ok_or_else(too_big)?;
        let map = sys::map(handle.obj(), aligned, map_len, access)
            .map_err(|e| Error::from_io(&handle.name, "map", e, map_len as u64))?;
        Ok(Mapping {
            map,
            start,
            len,
            object_offset,
            access,
            check_size,
            handle,
        })
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How this window was mapped.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Checks `[offset, offset + len)` against the window (and, for files, against
    /// the file's current size) and returns the offset as `usize`.
    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let out = || Error::OutOfBounds {
            object: (&self.handle.name).into(),
            offset,
            len: len as u64,
            size: self.len as u64,
        };
        let end = offset.checked_add(len as u64).ok_or_else(out)?;
        if end > self.len as u64 {
            return Err(out());
        }
        self.after_access(offset, len)?;
        if self.check_size && len > 0 {
            let file_size = self
                .handle
                .obj()
                .size()
                .map_err(|e| Error::from_io(&self.handle.name, "fstat", e, 0))?;
            if self.object_offset + end > file_size {
                return Err(Error::Truncated {
                    object: (&self.handle.name).into(),
                    offset,
                    len: len as u64,
                    file_size: file_size.saturating_sub(self.object_offset),
                });
            }
        }
        Ok(offset as usize)
    }

    /// [`Error::Truncated`] if another process shrank the object under this
    /// mapping and an access faulted: the window then holds zeros of our own,
    /// not the object's bytes (see `sys/unix/fault.rs`). Called before and after
    /// every access through the safe API, since the fault happens during it.
    /// The flag that [`after_access`](Self::after_access) looks at, valid while
    /// this mapping lives: for hot paths that keep the mapping and check often.
    #[inline]
    pub(crate) fn fault_flag(&self) -> sys::FaultFlag {
        self.map.fault_flag()
    }

    #[inline]
    pub(crate) fn after_access(&self, offset: u64, len: usize) -> Result<()> {
        if !self.map.truncated() {
            return Ok(());
        }
        let file_size = self.handle.obj().size().unwrap_or(0);
        Err(Error::Truncated {
            object: (&self.handle.name).into(),
            offset,
            len: len as u64,
            file_size: file_size.saturating_sub(self.object_offset),
        })
    }

    fn check_writable(&self) -> Result<()> {
        if self.access.is_writable() {
            Ok(())
        } else {
            Err(Error::ReadOnly {
                object: (&self.handle.name).into(),
            })
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// If another process writes the same bytes meanwhile, `buf` may hold a mix of
    /// old and new bytes; use a lock or a channel when that matters.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.check(offset, buf.len())?;
        self.copy_out(at, buf);
        self.after_access(offset, buf.len())
    }

    /// Copies `len` bytes starting at `offset` into a new vector.
    pub fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        // Checked before allocating, so a bad length cannot ask for a huge vector.
        let at = self.check(offset, len)?;
        let mut v = vec![0; len];
        self.copy_out(at, &mut v);
        self.after_access(offset, len)?;
        Ok(v)
    }

    /// Copies `buf.len()` bytes from window offset `at`, which `check` accepted.
    fn copy_out(&self, at: usize, buf: &mut [u8]) {
        // buf may lie in this very mapping (bindings hand out pointers into it: C
        // `shmkit_shm_data() + n`, a Python memoryview), so the copy allows overlap.
        // SAFETY: check() proved at..at+len lies inside the window, inside the live
        // mapping; buf is writable for its length.
        unsafe { std::ptr::copy(self.as_ptr().add(at), buf.as_mut_ptr(), buf.len()) };
    }

    /// Copies `data` into the window at `offset`. Fails with [`Error::ReadOnly`] on
    /// a read-only mapping.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let at = self.check(offset, data.len())?;
        // SAFETY: check() proved the range lies inside the writable window; data
        // is readable for its length. It may lie in this very mapping (see
        // `copy_out`), so the copy is one that allows overlap.
        unsafe {
            std::ptr::copy(
                data.as_ptr(),
                self.map.ptr().add(self.start + at),
                data.len(),
            )
        };
        self.after_access(offset, data.len())
    }

    /// Fills `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: u64, len: usize, byte: u8) -> Result<()> {
        self.check_writable()?;
        let at = self.check(offset, len)?;
        // SAFETY: as in write_at.
        unsafe { std::ptr::write_bytes(self.map.ptr().add(self.start + at), byte, len) };
        self.after_access(offset, len)
    }

    /// In-bounds address of a `T` at `offset`, checked for `T`'s alignment.
    fn aligned_ptr<T>(&self, offset: u64) -> Result<*mut T> {
        let at = self.check(offset, std::mem::size_of::<T>())?;
        let ptr = self.map.ptr().wrapping_add(self.start + at);
        if ptr as usize % std::mem::align_of::<T>() != 0 {
            return Err(Error::InvalidSize {
                object: (&self.handle.name).into(),
                reason: format!(
                    "offset {offset} is not aligned to {} bytes",
                    std::mem::align_of::<T>()
                ),
            });
        }
        Ok(ptr.cast())
    }

    fn atomic_ptr<T>(&self, offset: u64) -> Result<*mut T> {
        self.check_writable()?;
        self.aligned_ptr(offset)
    }

    /// An atomic 32-bit word at `offset` (which must be 4-byte aligned), for state
    /// that several processes read and write. Not available on read-only mappings,
    /// where a store would fault.
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        let ptr = self.atomic_ptr::<AtomicU32>(offset)?;
        // SAFETY: ptr is aligned, in bounds, writable and lives as long as &self;
        // atomics are the correct way to share a word with other processes.
        Ok(unsafe { &*ptr })
    }

    /// An atomic 64-bit word at `offset` (which must be 8-byte aligned).
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        let ptr = self.atomic_ptr::<AtomicU64>(offset)?;
        // SAFETY: as for atomic_u32.
        Ok(unsafe { &*ptr })
    }

    /// Loads a 32-bit word with acquire ordering; works on read-only mappings too.
    pub(crate) fn load_u32_acquire(&self, offset: u64) -> Result<u32> {
        let ptr = self.aligned_ptr::<AtomicU32>(offset)?;
        // SAFETY: aligned, in bounds and mapped. A shared reference to an atomic
        // that is only loaded from is fine even on read-only pages.
        Ok(unsafe { &*ptr }.load(Ordering::Acquire))
    }

    /// Loads a 64-bit word with acquire ordering; works on read-only mappings too.
    pub(crate) fn load_u64_acquire(&self, offset: u64) -> Result<u64> {
        let ptr = self.aligned_ptr::<AtomicU64>(offset)?;
        // SAFETY: as for load_u32_acquire.
        Ok(unsafe { &*ptr }.load(Ordering::Acquire))
    }

    /// Address of the first byte of the window.
    ///
    /// Reading or writing through it is `unsafe`: stay inside `len()` bytes, do not
    /// write through a read-only mapping, and synchronise with other processes.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.ptr().wrapping_add(self.start)
    }

    /// Writable address of the first byte, or [`Error::ReadOnly`].
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        self.check_writable()?;
        Ok(self.map.ptr().wrapping_add(self.start))
    }

    /// The window as a byte slice.
    ///
    /// # Safety
    ///
    /// No process may write these bytes while the slice lives (Rust assumes a `&[u8]`
    /// does not change), and for files, nobody may truncate the file meanwhile.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the window is mapped and readable; the caller upholds the rest.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The window as a mutable byte slice, or [`Error::ReadOnly`].
    ///
    /// # Safety
    ///
    /// No other process may read or write these bytes while the slice lives, and
    /// for files, nobody may truncate the file meanwhile.
    pub unsafe fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        let ptr = self.as_mut_ptr()?;
        // SAFETY: the window is mapped writable and &mut self is unique in this
        // process; the caller upholds exclusivity across processes.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, self.len) })
    }

    /// Writes modified bytes back to the object and waits until they are written.
    /// For files this means the disk; for shared memory it is a cheap no-op.
    pub fn flush(&self) -> Result<()> {
        self.flush_range(0, self.len)
    }

    /// Starts writing modified bytes back without waiting.
    pub fn flush_async(&self) -> Result<()> {
        self.map
            .flush(self.start, self.len, false)
            .map_err(|e| Error::from_io(&self.handle.name, "flush", e, 0))
    }

    /// Like [`flush`](Self::flush) for `len` bytes from `offset`.
    pub fn flush_range(&self, offset: u64, len: usize) -> Result<()> {
        let at = self.check_range_only(offset, len)?;
        self.map
            .flush(self.start + at, len, true)
            .and_then(|()| self.handle.obj().sync_data())
            .map_err(|e| Error::from_io(&self.handle.name, "flush", e, 0))
    }

    /// Tells the OS how the window will be accessed.
    pub fn advise(&self, advice: Advice) -> Result<()> {
        self.advise_range(0, self.len, advice)
    }

    /// Like [`advise`](Self::advise) for `len` bytes from `offset`.
    pub fn advise_range(&self, offset: u64, len: usize, advice: Advice) -> Result<()> {
        let at = self.check_range_only(offset, len)?;
        self.map
            .advise(self.start + at, len, advice)
            .map_err(|e| Error::from_io(&self.handle.name, "advise", e, 0))
    }

    /// Bounds check that ignores the file's current size (flush and advice never
    /// touch the bytes themselves).
    fn check_range_only(&self, offset: u64, len: usize) -> Result<usize> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len as u64 => Ok(offset as usize),
            _ => Err(Error::OutOfBounds {
                object: (&self.handle.name).into(),
                offset,
                len: len as u64,
                size: self.len as u64,
            }),
        }
    }

    /// A new, separate mapping of `len` bytes from `offset` of this window, with the
    /// same access. It keeps the object open even after `self` is dropped.
    pub fn view(&self, offset: u64, len: u64) -> Result<Mapping> {
        self.view_with_access(offset, len, self.access)
    }

    /// Like [`view`](Self::view) with another access mode. A read-write view of a
    /// read-only window is refused with [`Error::ReadOnly`]; copy-on-write views of
    /// any window are allowed, since their writes stay private.
    pub fn view_with_access(&self, offset: u64, len: u64, access: Access) -> Result<Mapping> {
        if access.needs_writable_object() && !self.access.needs_writable_object() {
            return Err(Error::ReadOnly {
                object: (&self.handle.name).into(),
            });
        }
        let usize_len = usize::try_from(len).map_err(|_| Error::InvalidSize {
            object: (&self.handle.name).into(),
            reason: format!("{len} bytes do not fit in this process's address space"),
        })?;
        self.check_range_only(offset, usize_len)?;
        Mapping::new(
            Arc::clone(&self.handle),
            self.object_offset + offset,
            len,
            access,
            self.check_size,
        )
    }
}
