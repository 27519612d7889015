//! Memory-mapped files: [`MappedFile`] and its builder [`MappedFileOptions`].

use std::fs::OpenOptions;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access::Access;
use crate::error::{Error, Result};
use crate::mapping::{Handle, Mapping};
use crate::name::{self, Namespace};
use crate::segment::{self, Lifetime, SegmentKind, Spec};
use crate::sys;

/// A file mapped into memory.
///
/// Capacity rules follow .NET's `MemoryMappedFile`: without a capacity the mapping
/// covers the whole file (an empty file is an error); a capacity larger than the
/// file extends the file (read-write only); a smaller one is an error. Map only part
/// of a file with [`Mapping::view`].
///
/// ```
/// use shmkit::MappedFile;
/// # fn main() -> shmkit::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("shmkit-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("data.bin");
/// let file = MappedFile::options().capacity(8192).create(&path)?;
/// file.write_at(100, b"persisted")?;
/// file.flush()?; // on disk now
/// drop(file);
/// assert_eq!(&std::fs::read(&path).unwrap()[100..109], b"persisted");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
///
/// # Truncation by other processes
///
/// If another process shrinks a mapped file, touching a page past the new end
/// raises SIGBUS on Unix. The safe API avoids it: every `read_at`, `write_at` and
/// `fill` of a file mapping first checks the file's current size and fails with
/// [`Error::Truncated`] instead. A truncation racing with the copy itself can
/// still fault; only the `unsafe` slice accessors skip the check. On Windows a
/// mapped file cannot be shrunk at all, so no check is needed.
///
/// # Names
///
/// [`MappedFileOptions::name`] publishes the mapping under a name, and
/// [`MappedFile::open_named`] opens it from another process without knowing the
/// path. On Windows this is a named file-backed section. On Unix the name is a
/// small shmkit segment that records the file's absolute path; it lives as long
/// as any process has the named mapping open.
#[derive(Debug)]
pub struct MappedFile {
    mapping: Mapping,
    path: Option<PathBuf>,
    /// Unix: the segment that publishes the path under a name.
    _name_record: Option<segment::Segment>,
}

/// Options for mapping a file.
#[derive(Clone, Debug)]
pub struct MappedFileOptions {
    capacity: Option<u64>,
    access: Access,
    name: Option<String>,
    namespace: Namespace,
    reserve: bool,
}

impl Default for MappedFileOptions {
    fn default() -> Self {
        MappedFileOptions {
            capacity: None,
            access: Access::ReadWrite,
            name: None,
            namespace: Namespace::Local,
            reserve: true,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Existing,
    New,
    Either,
}

impl MappedFileOptions {
    /// Defaults: read-write, capacity = file size, no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Size of the mapping in bytes. Extends the file if it is shorter.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// Access mode. [`Access::ReadOnly`] and [`Access::CopyOnWrite`] open the file
    /// read-only and cannot extend it.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Publishes the mapping under `name` for [`MappedFile::open_named`].
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Windows namespace of the name (default [`Namespace::Local`]).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// Whether to allocate disk blocks when extending the file (default `true`), so
    /// that a full disk fails here with [`Error::OutOfSpace`] instead of faulting on
    /// a later write. Turn off for large sparse files.
    pub fn reserve(mut self, reserve: bool) -> Self {
        self.reserve = reserve;
        self
    }

    /// Maps an existing file.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<MappedFile> {
        self.map(path.as_ref(), OpenMode::Existing)
    }

    /// Creates a new file (fails if it exists) of [`capacity`](Self::capacity)
    /// bytes and maps it.
    pub fn create(&self, path: impl AsRef<Path>) -> Result<MappedFile> {
        self.map(path.as_ref(), OpenMode::New)
    }

    /// Maps the file, creating it if it does not exist.
    pub fn open_or_create(&self, path: impl AsRef<Path>) -> Result<MappedFile> {
        self.map(path.as_ref(), OpenMode::Either)
    }

    fn map(&self, path: &Path, mode: OpenMode) -> Result<MappedFile> {
        let shown = path.display().to_string();
        let writable = self.access.needs_writable_object();
        if mode != OpenMode::Existing && !writable {
            return Err(Error::InvalidArgument {
                object: shown.into(),
                reason: format!("cannot create a file with {:?} access", self.access),
            });
        }
        let open = |create_new| {
            let mut opts = OpenOptions::new();
            opts.read(true).write(writable).create_new(create_new);
            crate::sys::never_block_on_open(&mut opts);
            opts.open(path)
        };
        let (file, created) = match mode {
            OpenMode::Existing => (open(false), false),
            OpenMode::New => (open(true), true),
            OpenMode::Either => match open(true) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (open(false), false),
                other => (other, true),
            },
        };
        let file = file.map_err(|e| Error::from_io(&shown, "open", e, 0))?;
        let result = self.map_file(file, path, shown);
        if result.is_err() && created {
            // A failed create leaves nothing behind.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn map_file(&self, file: std::fs::File, path: &Path, shown: String) -> Result<MappedFile> {
        let writable = self.access.needs_writable_object();
        let meta = file
            .metadata()
            .map_err(|e| Error::from_io(&shown, "stat", e, 0))?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument {
                object: shown.into(),
                reason: "not a regular file".into(),
            });
        }
        let file_size = meta.len();
        let capacity = self.capacity_for(&shown, file_size, writable)?;
        if capacity > file_size {
            file.set_len(capacity)
                .map_err(|e| Error::from_io(&shown, "extend", e, capacity))?;
            if self.reserve {
                sys::reserve_file(&file, capacity)
                    .map_err(|e| Error::from_io(&shown, "reserve", e, capacity))?;
            }
        }
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let os_name = match &self.name {
            Some(n) => Some(name::os_name(n, self.namespace)?),
            None => None,
        };
        let section_name = os_name.as_deref().filter(|_| sys::NAMED_FILE_SECTIONS);
        let obj = sys::file_object(file, capacity, self.access, section_name)
            .map_err(|e| Error::from_io(self.name.as_deref().unwrap_or(&shown), "map", e, 0))?;
        let handle = Arc::new(Handle::new(obj, shown, false));
        let mapping = Mapping::new(
            handle,
            0,
            capacity,
            self.access,
            sys::FILES_CAN_SHRINK_WHILE_MAPPED,
        )?;
        let record = match (&self.name, &os_name) {
            (Some(n), Some(os)) if !sys::NAMED_FILE_SECTIONS => {
                Some(publish_path(n, os, &absolute)?)
            }
            _ => None,
        };
        Ok(MappedFile {
            mapping,
            path: Some(absolute),
            _name_record: record,
        })
    }

    fn capacity_for(&self, shown: &str, file_size: u64, writable: bool) -> Result<u64> {
        let bad = |reason: String| {
            Err(Error::InvalidSize {
                object: shown.into(),
                reason,
            })
        };
        match self.capacity {
            None if file_size == 0 => bad("the file is empty; give a capacity to map it".into()),
            None => Ok(file_size),
            Some(0) => bad("capacity must be at least 1 byte".into()),
            Some(c) if c < file_size => bad(format!(
                "capacity {c} is smaller than the file's {file_size} bytes; map part of it with a view"
            )),
            Some(c) if c > file_size && !writable => bad(format!(
                "capacity {c} is larger than the file's {file_size} bytes, and a read-only mapping cannot extend it"
            )),
            Some(c) => Ok(c),
        }
    }
}

fn record_spec<'a>(name: &'a str, os_name: &'a str, access: Access) -> Spec<'a> {
    Spec {
        name,
        os_name,
        kind: SegmentKind::FileName,
        access,
        lifetime: Lifetime::Temporary,
        mode: 0o600,
        reserve: true,
        init_timeout: Duration::from_secs(5),
        accept_insecure: false,
    }
}

/// Publishes `path` under `name` as a small segment: a little-endian u32 length,
/// then the path's bytes.
fn publish_path(name: &str, os_name: &str, path: &Path) -> Result<segment::Segment> {
    let bytes = path.as_os_str().as_encoded_bytes();
    let len = u32::try_from(bytes.len()).map_err(|_| Error::InvalidArgument {
        object: name.into(),
        reason: "path too long to publish".into(),
    })?;
    let mut init = |data: &mut [u8]| {
        data[..4].copy_from_slice(&len.to_le_bytes());
        data[4..].copy_from_slice(bytes);
        Ok(())
    };
    segment::create(
        &record_spec(name, os_name, Access::ReadWrite),
        4 + bytes.len() as u64,
        &mut init,
    )
}

impl MappedFile {
    /// Maps all of an existing file for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<MappedFile> {
        MappedFileOptions::new().open(path)
    }

    /// Maps all of an existing file read-only.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<MappedFile> {
        MappedFileOptions::new().access(Access::ReadOnly).open(path)
    }

    /// Options for anything beyond the defaults.
    pub fn options() -> MappedFileOptions {
        MappedFileOptions::new()
    }

    /// Opens a file mapping that another process published with
    /// [`MappedFileOptions::name`]. On Windows the length is rounded up to the page
    /// size, because Windows does not report a section's exact size.
    pub fn open_named(name: &str, access: Access) -> Result<MappedFile> {
        let os = name::os_name(name, Namespace::Local)?;
        if sys::NAMED_FILE_SECTIONS {
            let obj = sys::shm_open(&os, access.needs_writable_object())
                .map_err(|e| Error::from_io(name, "open", e, 0))?;
            let size = obj
                .size()
                .map_err(|e| Error::from_io(name, "query size", e, 0))?;
            let handle = Arc::new(Handle::new(obj, name.to_owned(), false));
            let mapping = Mapping::new(handle, 0, size, access, false)?;
            return Ok(MappedFile {
                mapping,
                path: None,
                _name_record: None,
            });
        }
        let record = segment::open(&record_spec(name, &os, Access::ReadOnly))?;
        let data = &record.data;
        let mut len = [0u8; 4];
        data.read_at(0, &mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        let bytes = data.read_vec(4, len).map_err(|_| Error::CorruptHeader {
            object: name.into(),
            reason: format!("path length {len} exceeds the record"),
        })?;
        let path = path_from_bytes(bytes);
        let mut file = MappedFileOptions::new().access(access).open(&path)?;
        file._name_record = Some(record);
        Ok(file)
    }

    /// The mapped file's absolute path (`None` when opened by name on Windows).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

impl Deref for MappedFile {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.mapping
    }
}

impl DerefMut for MappedFile {
    fn deref_mut(&mut self) -> &mut Mapping {
        &mut self.mapping
    }
}
