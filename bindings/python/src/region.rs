//! Mapped memory seen from Python: `Region`, the base class of `Shm` and
//! `MappedFile`, exports the bytes through the buffer protocol so that
//! `memoryview(seg)` and `numpy.frombuffer(seg, ...)` use them without a copy.

use crate::errors::{invalid, new_error, IntoPyResult};
use crate::wait::{SendPtr, LARGE};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmkit::{Access, MappedFile, Mapping, Shm};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a region maps.
pub(crate) enum Backing {
    Shm(Shm),
    File(MappedFile),
}

impl std::ops::Deref for Backing {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        match self {
            Backing::Shm(s) => s,
            Backing::File(f) => f,
        }
    }
}

/// An access mode from Python: `"read"`, `"write"` or `"copy"` (like `mmap`'s
/// `ACCESS_READ`, `ACCESS_WRITE`, `ACCESS_COPY`).
pub(crate) fn access_arg(py: Python<'_>, object: &str, access: &str) -> PyResult<Access> {
    match access {
        "read" => Ok(Access::ReadOnly),
        "write" => Ok(Access::ReadWrite),
        "copy" => Ok(Access::CopyOnWrite),
        other => Err(invalid(
            py,
            object,
            format!("access must be \"read\", \"write\" or \"copy\", not {other:?}"),
        )),
    }
}

/// A size or offset from Python: a negative one is an `InvalidArgument` naming
/// `object` and `what`, not an `OverflowError`.
pub(crate) fn size_arg(py: Python<'_>, object: &str, what: &str, value: i128) -> PyResult<u64> {
    u64::try_from(value)
        .map_err(|_| invalid(py, object, format!("{what} must be >= 0, not {value}")))
}

/// Mapped bytes: the common base of [`Shm`](crate::shm) and `MappedFile`.
///
/// Supports `len()`, `read`, `write`, `flush`, `close`, `with` and the buffer
/// protocol. Views (`memoryview`, numpy arrays) keep the object alive; closing it
/// while a view exists raises `BufferError`, as `mmap.close` does.
#[pyclass(name = "Region", module = "shmkit", subclass)]
pub struct Region {
    backing: Option<Backing>,
    /// Buffers handed out and not yet released.
    exports: AtomicUsize,
    /// For messages: `"shared memory segment 'x'"`.
    label: String,
}

impl Region {
    pub(crate) fn new(backing: Backing, label: String) -> Region {
        Region {
            backing: Some(backing),
            exports: AtomicUsize::new(0),
            label,
        }
    }

    pub(crate) fn backing(&self, py: Python<'_>) -> PyResult<&Backing> {
        self.backing
            .as_ref()
            .ok_or_else(|| new_error(py, "Error", format!("{}: closed", self.label)))
    }

    fn mapping(&self, py: Python<'_>) -> PyResult<&Mapping> {
        self.backing(py).map(|b| &**b)
    }

    /// `[offset, offset + len)` checked against the mapping, as a pointer range.
    fn range(&self, py: Python<'_>, offset: i128, len: Option<i128>) -> PyResult<(*mut u8, usize)> {
        let m = self.mapping(py)?;
        let offset = size_arg(py, &self.label, "offset", offset)?;
        let total = m.len() as u64;
        let len = match len {
            Some(l) => size_arg(py, &self.label, "size", l)?,
            None => total.saturating_sub(offset),
        };
        match offset.checked_add(len) {
            Some(end) if end <= total => Ok((
                m.as_ptr().wrapping_add(offset as usize).cast_mut(),
                len as usize,
            )),
            _ => Err(shmkit::Error::OutOfBounds {
                object: self.label.as_str().into(),
                offset,
                len,
                size: total,
            })
            .py_err(py),
        }
    }
}

#[pymethods]
impl Region {
    /// Bytes mapped.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.mapping(py)?.len())
    }

    /// Bytes mapped (as `len()`).
    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        self.__len__(py)
    }

    /// Whether the mapping is read-only.
    #[getter]
    fn readonly(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.mapping(py)?.access() == Access::ReadOnly)
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.backing.is_none()
    }

    /// Copies `size` bytes from `offset` (default: to the end) into a new `bytes`.
    #[pyo3(signature = (offset = 0, size = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: i128,
        size: Option<i128>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (ptr, len) = self.range(py, offset, size)?;
        let src = SendPtr(ptr);
        PyBytes::new_with(py, len, |dst| {
            let mut copy = move || {
                let src = src;
                // SAFETY: `range` checked [ptr, ptr + len) lies in the mapping, which
                // lives as long as `self` (borrowed for this call). Other processes
                // may write it meanwhile: bytes, never references, are read.
                unsafe { std::ptr::copy_nonoverlapping(src.0, dst.as_mut_ptr(), len) }
            };
            if len >= LARGE {
                py.detach(copy);
            } else {
                copy();
            }
            Ok(())
        })
    }

    /// Writes `data` (any bytes-like object) at `offset`.
    fn write(&self, py: Python<'_>, offset: i128, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let src = contiguous(data)?;
        let m = self.mapping(py)?;
        let offset = size_arg(py, &self.label, "offset", offset)?;
        let bytes = src.bytes();
        if bytes.len() >= LARGE {
            py.detach(|| m.write_at(offset, bytes)).py_err(py)
        } else {
            m.write_at(offset, bytes).py_err(py)
        }
    }

    /// Writes changes to the backing file (mapped files) or does nothing
    /// (shared memory).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let m = self.mapping(py)?;
        py.detach(|| m.flush()).py_err(py)
    }

    /// Unmaps. Raises `BufferError` while a view (memoryview, numpy array) of the
    /// bytes exists: release or delete it first. Closing twice does nothing.
    fn close(&mut self) -> PyResult<()> {
        let views = self.exports.load(Ordering::SeqCst);
        if views > 0 {
            return Err(PyBufferError::new_err(format!(
                "{}: cannot close while {views} view(s) of its memory exist (release the memoryview or delete the array first)",
                self.label
            )));
        }
        self.backing = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    /// Exports the mapped bytes: one-dimensional, unsigned bytes, writable unless
    /// mapped read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let (ptr, len, readonly) = {
            let this = slf.borrow();
            let m = this.mapping(py)?;
            (
                m.as_ptr().cast_mut(),
                m.len(),
                m.access() == Access::ReadOnly,
            )
        };
        // SAFETY: the caller (CPython) passes a valid Py_buffer to fill; the bytes
        // stay mapped while the view holds its reference to `slf`, because
        // `close` refuses while `exports` is above zero.
        unsafe { fill_buffer(view, flags, ptr, len, readonly, slf.clone().into_any())? };
        slf.borrow().exports.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::SeqCst);
    }

    fn __repr__(&self) -> String {
        match &self.backing {
            Some(b) => format!("<{} ({} bytes)>", self.label, b.len()),
            None => format!("<{} (closed)>", self.label),
        }
    }
}

/// Fills a `Py_buffer` describing `len` bytes at `ptr`, owned by `owner`.
///
/// # Safety
/// `view` must be a `Py_buffer` handed to a `bf_getbuffer` slot, and the bytes
/// must stay valid while `owner` lives and the buffer is not released.
pub(crate) unsafe fn fill_buffer(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    ptr: *mut u8,
    len: usize,
    readonly: bool,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no Py_buffer to fill"));
    }
    // SAFETY: PyBuffer_FillInfo fills a one-dimensional byte buffer and takes a
    // new reference to `owner`; `view` is valid per the caller's contract.
    let rc = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            ptr.cast::<c_void>(),
            len as ffi::Py_ssize_t,
            c_int::from(readonly),
            flags,
        )
    };
    if rc < 0 {
        return Err(PyErr::fetch(owner.py()));
    }
    Ok(())
}

/// A C-contiguous buffer of bytes from any object that exports one (`bytes`,
/// `bytearray`, `memoryview`, numpy arrays...), held while in use.
pub(crate) struct Contiguous(PyUntypedBuffer);

impl Contiguous {
    /// The bytes. Another Python thread may change them meanwhile (as with any C
    /// extension reading a buffer); they are read as plain bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = self.0.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: `contiguous` checked the buffer is C-contiguous, so its
        // `len_bytes` bytes start at `buf_ptr`; the buffer is held (not released)
        // as long as `self`, which keeps the memory alive and unresized.
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr().cast::<u8>(), len) }
    }

    /// The bytes, writable. `None` if the buffer is read-only.
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if self.0.readonly() {
            return None;
        }
        let len = self.0.len_bytes();
        if len == 0 {
            return Some(&mut []);
        }
        // SAFETY: as in `bytes`; the exporter said the buffer is writable, and
        // `&mut self` makes this the only slice made from it here.
        Some(unsafe { std::slice::from_raw_parts_mut(self.0.buf_ptr().cast::<u8>(), len) })
    }
}

/// Gets a contiguous byte buffer from `obj`, or raises `TypeError`.
pub(crate) fn contiguous(obj: &Bound<'_, PyAny>) -> PyResult<Contiguous> {
    let buf = PyUntypedBuffer::get(obj).map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "a bytes-like object is required, not '{}'",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err("the buffer must be C-contiguous"));
    }
    Ok(Contiguous(buf))
}
