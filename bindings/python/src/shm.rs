//! `Shm` (named shared memory) and `MappedFile` (memory-mapped files).

use crate::errors::IntoPyResult;
use crate::region::{access_arg, size_arg, Backing, Region};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyMemoryView};
use shmkit::{Lifetime, MappedFile, SegmentInfo, Shm, ShmOptions};
use std::path::PathBuf;

/// Named shared memory: a managed segment (validated header, create-or-open
/// races settled) or, by OS name, a raw object of another program.
///
/// ```python
/// seg = shmkit.Shm.create("frames", 1 << 20)
/// view = memoryview(seg)        # no copy
/// view[:5] = b"hello"
/// ```
#[pyclass(name = "Shm", module = "shmkit", extends = Region)]
pub struct PyShm {
    name: String,
    os_name: String,
    created: bool,
}

fn options(
    py: Python<'_>,
    name: &str,
    size: Option<i128>,
    persistent: bool,
    mode: Option<u32>,
) -> PyResult<ShmOptions> {
    let mut o = Shm::options().lifetime(if persistent {
        Lifetime::Persistent
    } else {
        Lifetime::Temporary
    });
    if let Some(size) = size {
        o = o.size(size_arg(py, name, "size", size)?);
    }
    if let Some(mode) = mode {
        o = o.mode(mode);
    }
    Ok(o)
}

fn wrap(py: Python<'_>, shm: Shm, label: String) -> PyResult<Py<PyShm>> {
    let sub = PyShm {
        name: shm.name().to_owned(),
        os_name: shm.os_name().to_owned(),
        created: shm.created(),
    };
    let init = PyClassInitializer::from(Region::new(Backing::Shm(shm), label)).add_subclass(sub);
    Py::new(py, init)
}

fn managed(py: Python<'_>, shm: Shm) -> PyResult<Py<PyShm>> {
    let label = format!("shared memory segment {:?}", shm.name());
    wrap(py, shm, label)
}

fn raw(py: Python<'_>, shm: Shm) -> PyResult<Py<PyShm>> {
    let label = format!("raw shared memory {:?}", shm.os_name());
    wrap(py, shm, label)
}

/// Runs a Python `init(memoryview)` for a new segment's bytes. `init` writes
/// into a private buffer, copied into the segment when it returns: a view that
/// `init` keeps (a slice, an array) then points at that buffer, never at the
/// segment, so it cannot outlive the mapping.
fn run_init(py: Python<'_>, init: &Bound<'_, PyAny>, bytes: &mut [u8]) -> PyResult<()> {
    let staging = PyByteArray::new(py, bytes);
    let view = PyMemoryView::from(staging.as_any())?;
    init.call1((&view,))?;
    view.call_method0("release")?;
    // SAFETY: `as_bytes` needs no concurrent resize of the bytearray: only this
    // thread holds it (init may have kept views, which forbid resizing).
    let staged = unsafe { staging.as_bytes() };
    if staged.len() != bytes.len() {
        return Err(pyo3::exceptions::PyBufferError::new_err(
            "init resized the buffer",
        ));
    }
    bytes.copy_from_slice(staged);
    Ok(())
}

#[pymethods]
impl PyShm {
    /// Creates segment `name` of `size` bytes, zero-filled. Raises
    /// `AlreadyExists` if the name is taken. Temporary segments go away when the
    /// last process closes them; `persistent=True` ones stay until `remove`.
    #[staticmethod]
    #[pyo3(signature = (name, size, *, persistent = false, mode = None))]
    fn create(
        py: Python<'_>,
        name: &str,
        size: i128,
        persistent: bool,
        mode: Option<u32>,
    ) -> PyResult<Py<PyShm>> {
        let o = options(py, name, Some(size), persistent, mode)?;
        let shm = py.detach(|| o.create(name)).py_err(py)?;
        managed(py, shm)
    }

    /// Opens segment `name`. `access` is `"write"` (default), `"read"` or
    /// `"copy"` (private copy-on-write).
    #[staticmethod]
    #[pyo3(signature = (name, *, access = "write"))]
    fn open(py: Python<'_>, name: &str, access: &str) -> PyResult<Py<PyShm>> {
        let o = Shm::options().access(access_arg(py, name, access)?);
        let shm = py.detach(|| o.open(name)).py_err(py)?;
        managed(py, shm)
    }

    /// Opens segment `name`, or creates it with `size` bytes and calls
    /// `init(memoryview)` to fill them before any other process can open it (the
    /// view is of a staging buffer, copied into the segment when `init` returns). Of many
    /// processes racing here exactly one runs `init`; the others wait for it.
    /// An exception from `init` is raised in the creator (and the others get
    /// `InitFailed`). `created` tells which happened.
    #[staticmethod]
    #[pyo3(signature = (name, size, init = None, *, persistent = false, mode = None))]
    fn create_or_open(
        py: Python<'_>,
        name: &str,
        size: i128,
        init: Option<Bound<'_, PyAny>>,
        persistent: bool,
        mode: Option<u32>,
    ) -> PyResult<Py<PyShm>> {
        let o = options(py, name, Some(size), persistent, mode)?;
        let Some(init) = init else {
            let shm = py.detach(|| o.create_or_open(name)).py_err(py)?;
            return managed(py, shm);
        };
        if !init.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "init must be callable",
            ));
        }
        // Without the GIL: waiting for another creator's `init` (which may be
        // this process's other thread, needing the GIL to run it) must not stall
        // the interpreter. Our own `init` takes the GIL back to run.
        let init = init.unbind();
        let mut raised = None;
        let made = py.detach(|| {
            o.create_or_open_with(name, |bytes| {
                Python::attach(|py| run_init(py, init.bind(py), bytes)).map_err(|e| {
                    let text = e.to_string();
                    raised = Some(e);
                    text
                })
            })
        });
        match (made, raised) {
            (Err(_), Some(e)) => Err(e),
            (made, _) => managed(py, made.py_err(py)?),
        }
    }

    /// Creates a raw object under OS name `os_name` (no shmkit header: other
    /// programs see exactly `size` bytes, as with `shm_open` or
    /// `CreateFileMapping`).
    #[staticmethod]
    #[pyo3(signature = (os_name, size, *, mode = None))]
    fn create_raw(
        py: Python<'_>,
        os_name: &str,
        size: i128,
        mode: Option<u32>,
    ) -> PyResult<Py<PyShm>> {
        let o = options(py, os_name, Some(size), true, mode)?;
        let shm = py.detach(|| o.create_raw(os_name)).py_err(py)?;
        raw(py, shm)
    }

    /// Opens another program's object by OS name (for example a
    /// `multiprocessing.shared_memory.SharedMemory`'s `name`).
    #[staticmethod]
    #[pyo3(signature = (os_name, *, access = "write"))]
    fn open_raw(py: Python<'_>, os_name: &str, access: &str) -> PyResult<Py<PyShm>> {
        let o = Shm::options().access(access_arg(py, os_name, access)?);
        let shm = py.detach(|| o.open_raw(os_name)).py_err(py)?;
        raw(py, shm)
    }

    /// Removes segment `name` (processes that have it open keep their mapping).
    #[staticmethod]
    fn remove(py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| Shm::remove(name)).py_err(py)
    }

    /// Removes the raw object `os_name`.
    #[staticmethod]
    fn remove_raw(py: Python<'_>, os_name: &str) -> PyResult<()> {
        py.detach(|| Shm::remove_raw(os_name)).py_err(py)
    }

    /// What segment `name`'s header says, as a dict (name, kind, size,
    /// total_size, persistent, state, creator_pid, creator_alive, created, stale).
    #[staticmethod]
    fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let info = py.detach(|| Shm::inspect(name)).py_err(py)?;
        info_dict(py, &info)
    }

    /// The name it was opened by (the OS name for raw objects).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The OS's name for it (`/dev/shm/<os_name>` on Linux).
    #[getter]
    fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Whether this call created it (rather than opened an existing one).
    #[getter]
    fn created(&self) -> bool {
        self.created
    }
}

pub(crate) fn info_dict<'py>(py: Python<'py>, info: &SegmentInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &info.name)?;
    d.set_item("kind", info.kind.to_string())?;
    d.set_item("layout_version", info.layout_version)?;
    d.set_item("size", info.size)?;
    d.set_item("total_size", info.total_size)?;
    d.set_item("persistent", info.lifetime == Lifetime::Persistent)?;
    d.set_item("state", format!("{:?}", info.state).to_lowercase())?;
    d.set_item("creator_pid", info.creator_pid)?;
    d.set_item("creator_alive", info.creator_alive)?;
    let created = info
        .created
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    d.set_item("created", created)?;
    d.set_item("stale", info.stale)?;
    Ok(d)
}

/// Names of the shmkit segments that exist now (Linux and Windows).
#[pyfunction]
pub(crate) fn ls(py: Python<'_>) -> PyResult<Vec<String>> {
    py.detach(Shm::list).py_err(py)
}

/// Removes the liveness tokens (`/dev/shm/shmkit-live.PID.START`) of processes
/// that died without removing theirs — killed ones, and children that left with
/// `os._exit`, as `multiprocessing`'s forked workers do — and returns how many.
/// Other processes remove such a token when they find it; this does it now.
#[pyfunction]
pub(crate) fn reap_dead_tokens(py: Python<'_>) -> usize {
    py.detach(|| Shm::reap_dead_tokens(true))
}

/// A memory-mapped file.
///
/// ```python
/// f = shmkit.MappedFile.create("data.bin", 4096)
/// f[0:4]  # via memoryview(f)
/// ```
#[pyclass(name = "MappedFile", module = "shmkit", extends = Region)]
pub struct PyMappedFile {
    path: Option<PathBuf>,
}

fn file_wrap(py: Python<'_>, file: MappedFile, shown: &str) -> PyResult<Py<PyMappedFile>> {
    let sub = PyMappedFile {
        path: file.path().map(PathBuf::from),
    };
    let label = format!("mapped file {shown:?}");
    Py::new(
        py,
        PyClassInitializer::from(Region::new(Backing::File(file), label)).add_subclass(sub),
    )
}

fn file_options(
    py: Python<'_>,
    path: &str,
    access: &str,
    capacity: Option<i128>,
    name: Option<&str>,
) -> PyResult<shmkit::MappedFileOptions> {
    let mut o = MappedFile::options().access(access_arg(py, path, access)?);
    if let Some(c) = capacity {
        o = o.capacity(size_arg(py, path, "capacity", c)?);
    }
    if let Some(n) = name {
        o = o.name(n);
    }
    Ok(o)
}

#[pymethods]
impl PyMappedFile {
    /// Maps an existing file, all of it, or `capacity` bytes (the file grows to
    /// that size if shorter).
    #[staticmethod]
    #[pyo3(signature = (path, *, access = "write", capacity = None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        access: &str,
        capacity: Option<i128>,
    ) -> PyResult<Py<PyMappedFile>> {
        let shown = path.display().to_string();
        let o = file_options(py, &shown, access, capacity, None)?;
        let f = py.detach(|| o.open(&path)).py_err(py)?;
        file_wrap(py, f, &shown)
    }

    /// Creates a new file of `capacity` bytes and maps it; `name` also publishes
    /// it under a shmkit name for `open_named`.
    #[staticmethod]
    #[pyo3(signature = (path, capacity, *, name = None))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        capacity: i128,
        name: Option<&str>,
    ) -> PyResult<Py<PyMappedFile>> {
        let shown = path.display().to_string();
        let o = file_options(py, &shown, "write", Some(capacity), name)?;
        let f = py.detach(|| o.create(&path)).py_err(py)?;
        file_wrap(py, f, &shown)
    }

    /// Maps the file, creating it with `capacity` bytes if it does not exist.
    #[staticmethod]
    #[pyo3(signature = (path, capacity, *, name = None))]
    fn open_or_create(
        py: Python<'_>,
        path: PathBuf,
        capacity: i128,
        name: Option<&str>,
    ) -> PyResult<Py<PyMappedFile>> {
        let shown = path.display().to_string();
        let o = file_options(py, &shown, "write", Some(capacity), name)?;
        let f = py.detach(|| o.open_or_create(&path)).py_err(py)?;
        file_wrap(py, f, &shown)
    }

    /// Maps the file another process published under `name`.
    #[staticmethod]
    #[pyo3(signature = (name, *, access = "write"))]
    fn open_named(py: Python<'_>, name: &str, access: &str) -> PyResult<Py<PyMappedFile>> {
        let a = access_arg(py, name, access)?;
        let f = py.detach(|| MappedFile::open_named(name, a)).py_err(py)?;
        file_wrap(py, f, name)
    }

    /// The file's absolute path (`None` when opened by name on Windows).
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }
}
