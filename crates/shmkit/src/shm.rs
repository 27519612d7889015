//! Named shared memory: [`Shm`] and its builder [`ShmOptions`].

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use crate::access::Access;
use crate::error::{Error, Result};
use crate::mapping::{Handle, Mapping};
use crate::name::{self, Namespace};
use crate::segment::{self, Lifetime, SegmentInfo, SegmentKind, Spec};
use crate::sys::{self, CreateParams};

/// A named shared-memory region that several processes map at once.
///
/// By default a `Shm` is a *managed segment*: a header in front of the data lets
/// every opener check that it maps a shmkit segment of the right size and layout
/// version, and lets exactly one of several racing processes initialise it (see
/// [`ShmOptions::create_or_open_with`]). The *raw* constructors instead open any
/// OS object by its exact name, to share memory with programs that do not use
/// shmkit.
///
/// `Shm` dereferences to [`Mapping`], which has the byte access methods.
///
/// ```
/// use shmkit::{Shm, ShmOptions};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-shm-{}", std::process::id());
/// // Process A
/// let a = Shm::create(&name, 1024)?;
/// a.write_at(0, b"ping")?;
///
/// // Process B (here the same process, for the example)
/// let b = Shm::open(&name)?;
/// assert_eq!(b.read_vec(0, 4)?, b"ping");
/// assert_eq!(b.len(), 1024);
/// # Ok(()) }
/// ```
///
/// # Platform notes
///
/// - **Linux**: objects live in /dev/shm as `shmkit.NAME` (raw: exactly the given
///   name). They are created with mode 0600 (see [`ShmOptions::mode`]); their memory
///   is reserved at creation, so a full /dev/shm fails the create with
///   [`Error::OutOfSpace`] rather than killing a process with SIGBUS later.
///   A new segment only becomes visible under its name once its header is written.
/// - **Windows**: objects are pagefile-backed sections named `Local\shmkit.NAME`
///   (or `Global\` with [`ShmOptions::namespace`]). Such sections vanish when the
///   last handle closes, so [`Lifetime::Temporary`] is natural there;
///   [`Lifetime::Persistent`] segments are backed by a file in
///   `%TEMP%\shmkit-shm\` instead, which [`Shm::remove`] deletes. The size of a raw
///   section opened by name is rounded up to the page size, since Windows does not
///   report the exact size. Permissions come from the default security descriptor
///   (the creating user); [`ShmOptions::mode`] is ignored.
/// - **macOS**: names are limited to 31 bytes including the `shmkit.` prefix, and
///   memory cannot be reserved up front.
///
/// # Trust
///
/// Header fields are copied out and validated before use, and every access is
/// bounds-checked against the size validated at open, so a peer that scribbles
/// over the header or data cannot make shmkit read out of bounds. A process with
/// write access to the OS object can still shrink it (`ftruncate`); on Unix,
/// touching the lost pages raises SIGBUS. shmkit catches that fault for its own
/// mappings (a handler puts private zero pages over the mapping, as Wayland
/// compositors do for their clients' buffers, and passes faults elsewhere on to
/// the handler that was there before): the access completes, and it and every
/// later one through this handle fail with [`Error::Truncated`]. Channels
/// notice it too, within 50 ms for a blocked call. Objects are owner-only by
/// default, and objects writable by other users are refused (see
/// [`ShmOptions::accept_insecure`]). (Windows cannot shrink a mapped section.)
#[derive(Debug)]
pub struct Shm {
    mapping: Mapping,
    name: String,
    os_name: String,
    info: Option<SegmentInfo>,
    created: bool,
}

/// Options for creating or opening a [`Shm`].
///
/// ```
/// use shmkit::{Access, Lifetime, ShmOptions};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-opts-{}", std::process::id());
/// let shm = ShmOptions::new()
///     .size(64 * 1024)
///     .lifetime(Lifetime::Temporary)
///     .create_or_open_with(&name, |bytes| {
///         bytes[..5].copy_from_slice(b"hello"); // runs in exactly one process
///         Ok::<(), std::convert::Infallible>(())
///     })?;
/// let reader = ShmOptions::new().access(Access::ReadOnly).open(&name)?;
/// assert_eq!(reader.read_vec(0, 5)?, b"hello");
/// assert!(reader.write_at(0, b"x").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ShmOptions {
    size: Option<u64>,
    access: Access,
    /// `None`: temporary for managed segments, persistent for raw objects.
    lifetime: Option<Lifetime>,
    mode: u32,
    namespace: Namespace,
    reserve: bool,
    init_timeout: Duration,
    accept_insecure: bool,
}

impl Default for ShmOptions {
    fn default() -> Self {
        ShmOptions {
            size: None,
            access: Access::ReadWrite,
            lifetime: None,
            mode: 0o600,
            namespace: Namespace::Local,
            reserve: true,
            init_timeout: Duration::from_secs(5),
            accept_insecure: false,
        }
    }
}

impl ShmOptions {
    /// Default options: read-write, temporary, mode 0600, memory reserved, a
    /// 5-second wait for a creator that is still initialising.
    pub fn new() -> Self {
        Self::default()
    }

    /// Size in bytes of the data (excluding the header). Needed to create.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// How to map the region. Creating needs [`Access::ReadWrite`].
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Whether the region outlives its users. See [`Lifetime`]. The default is
    /// [`Lifetime::Temporary`] for managed segments. Raw objects default to what
    /// the OS does with such objects, so that shmkit never removes another
    /// program's object unless asked to and a raw name always means the OS object:
    /// [`Lifetime::Persistent`] on Unix (until `shm_unlink`), and on Windows a
    /// pagefile-backed section that goes with its last handle
    /// ([`Lifetime::Temporary`]); a raw object persists on Windows (backed by a
    /// file) only when asked for explicitly.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    fn managed_lifetime(&self) -> Lifetime {
        self.lifetime.unwrap_or(Lifetime::Temporary)
    }

    /// Raw objects live as their OS makes them live unless asked otherwise:
    /// until removed on Unix, with their last handle on Windows (a pagefile-backed
    /// section, as `CreateFileMapping(INVALID_HANDLE_VALUE, ...)` makes).
    fn raw_lifetime(&self) -> Lifetime {
        self.lifetime.unwrap_or(if cfg!(windows) {
            Lifetime::Temporary
        } else {
            Lifetime::Persistent
        })
    }

    /// Unix permission bits for a new object (default `0o600`: owner only). The
    /// umask does not apply. Ignored on Windows.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Windows object namespace (default [`Namespace::Local`]). Ignored on Unix.
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// Whether to reserve the memory at creation (default `true`). Without it a
    /// huge sparse region can be created cheaply, but touching a page when the store
    /// is full kills the process with SIGBUS (Unix).
    pub fn reserve(mut self, reserve: bool) -> Self {
        self.reserve = reserve;
        self
    }

    /// How long `open` waits for a creator that is still initialising (default 5 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Accept existing objects owned by another user or writable by every user
    /// (refused by default with [`Error::Insecure`]). Unix only.
    pub fn accept_insecure(mut self, yes: bool) -> Self {
        self.accept_insecure = yes;
        self
    }

    fn spec_of<'a>(&self, name: &'a str, os_name: &'a str, kind: SegmentKind) -> Spec<'a> {
        Spec {
            name,
            os_name,
            kind,
            access: self.access,
            lifetime: self.managed_lifetime(),
            mode: self.mode,
            reserve: self.reserve,
            init_timeout: self.init_timeout,
            accept_insecure: self.accept_insecure,
        }
    }

    fn required_size(&self, object: &str) -> Result<u64> {
        self.size.ok_or_else(|| Error::InvalidArgument {
            object: object.into(),
            reason: "a size is needed to create shared memory".into(),
        })
    }

    /// Creates a new segment filled with zeros; fails with [`Error::AlreadyExists`]
    /// if the name is taken.
    pub fn create(&self, name: &str) -> Result<Shm> {
        self.create_with(name, |_| Ok::<(), std::convert::Infallible>(()))
    }

    /// Like [`create`](Self::create), running `init` on the data before any other
    /// process can open the segment.
    pub fn create_with<E: std::fmt::Display>(
        &self,
        name: &str,
        init: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<Shm> {
        self.create_kind(name, SegmentKind::Bytes, false, |b| {
            init(b).map_err(|e| e.to_string())
        })
    }

    /// Reads the header of segment `name` without waiting for its initialisation
    /// and without removing it if it is stale, with these options' namespace and
    /// trust settings ([`accept_insecure`](Self::accept_insecure) to look at
    /// another user's segment).
    pub fn inspect(&self, name: &str) -> Result<SegmentInfo> {
        let os = name::os_name(name, self.namespace)?;
        let opts = self.clone().access(Access::ReadOnly);
        segment::inspect(&opts.spec_of(name, &os, SegmentKind::Bytes))
    }

    /// Opens an existing segment; fails with [`Error::NotFound`] if there is none.
    /// The size is the creator's: a [`size`](Self::size) set here must match it,
    /// or the open fails with [`Error::Mismatch`].
    pub fn open(&self, name: &str) -> Result<Shm> {
        self.check_size(self.open_kind(name, SegmentKind::Bytes)?)
    }

    /// A segment opened (not created) with an explicit size must have that size.
    fn check_size(&self, shm: Shm) -> Result<Shm> {
        match (self.size, shm.info()) {
            (Some(asked), Some(info)) if !shm.created() && info.size != asked => {
                Err(Error::Mismatch {
                    object: shm.name().into(),
                    what: "size",
                    found: format!("{} bytes", info.size),
                    asked: format!("{asked} bytes"),
                })
            }
            _ => Ok(shm),
        }
    }

    /// Opens the segment, or creates it if it does not exist;
    /// [`Shm::created`] tells which happened. An existing segment of another
    /// size than the one set is refused with [`Error::Mismatch`].
    pub fn create_or_open(&self, name: &str) -> Result<Shm> {
        self.create_or_open_with(name, |_| Ok::<(), std::convert::Infallible>(()))
    }

    /// Opens the segment, or creates it and runs `init` on its data. Of several
    /// processes racing here, exactly one runs `init`; the others wait (up to
    /// [`init_timeout`](Self::init_timeout)) until it has finished, and get
    /// [`Error::CreatorDied`] if the initialiser's process dies first, or
    /// [`Error::InitFailed`] if `init` returns an error.
    pub fn create_or_open_with<E: std::fmt::Display>(
        &self,
        name: &str,
        init: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<Shm> {
        let shm = self.create_kind(name, SegmentKind::Bytes, true, |b| {
            init(b).map_err(|e| e.to_string())
        })?;
        self.check_size(shm)
    }

    /// `create`, or with `or_open` `create_or_open`, for a segment of any kind.
    pub(crate) fn create_kind(
        &self,
        name: &str,
        kind: SegmentKind,
        or_open: bool,
        init: impl FnOnce(&mut [u8]) -> std::result::Result<(), String>,
    ) -> Result<Shm> {
        let os = name::os_name(name, self.namespace)?;
        let size = self.required_size(name)?;
        let mut init = once(init);
        let spec = self.spec_of(name, &os, kind);
        let seg = if or_open {
            segment::create_or_open(&spec, size, &mut init)
        } else {
            segment::create(&spec, size, &mut init)
        };
        seg.map(|s| Shm::managed(name, os, s))
    }

    /// `open` for a segment of another kind; any other kind is `WrongKind`.
    pub(crate) fn open_kind(&self, name: &str, kind: SegmentKind) -> Result<Shm> {
        let os = name::os_name(name, self.namespace)?;
        segment::open(&self.spec_of(name, &os, kind)).map(|s| Shm::managed(name, os, s))
    }

    /// Creates an OS object with the exact name `os_name` and no shmkit header,
    /// for other programs to open (`"/name"` on Unix, `"Local\\name"` on Windows).
    ///
    /// Raw objects are persistent on Unix and pagefile-backed on Windows unless
    /// [`lifetime`](Self::lifetime) says otherwise. On Unix,
    /// [`Lifetime::Temporary`] applies among shmkit users of the object only: each
    /// of them must open it with the same lifetime, and programs that do not use
    /// shmkit do not count as users.
    pub fn create_raw(&self, os_name: &str) -> Result<Shm> {
        name::validate_raw(os_name)?;
        let size = self.required_size(os_name)?;
        if self.access != Access::ReadWrite {
            return Err(Error::InvalidArgument {
                object: os_name.into(),
                reason: format!("cannot create an object with {:?} access", self.access),
            });
        }
        if size == 0 {
            return Err(Error::InvalidSize {
                object: os_name.into(),
                reason: "size must be at least 1 byte".into(),
            });
        }
        let params = CreateParams {
            size,
            mode: self.mode,
            reserve: self.reserve,
            persistent: self.raw_lifetime() == Lifetime::Persistent,
        };
        let obj = sys::shm_create(os_name, &params)
            .map_err(|e| Error::from_io(os_name, "create", e, size))?;
        let spec = self.spec_of(os_name, os_name, SegmentKind::Bytes);
        segment::check_trust(&spec, &obj, true)?;
        obj.publish()
            .map_err(|e| Error::from_io(os_name, "publish", e, size))?;
        let temporary = self.raw_lifetime() == Lifetime::Temporary;
        let handle = Arc::new(Handle::new(obj, os_name.to_owned(), temporary));
        let mapping = Mapping::new(handle, 0, size, Access::ReadWrite, false)?;
        Ok(Shm::raw(os_name, mapping, true))
    }

    /// Opens an OS object by its exact name, without expecting a shmkit header.
    /// The whole object is mapped.
    ///
    /// On Windows, opening a raw name always prefers the live section of that
    /// name: the file of a persistent object is used only while no section of the
    /// name exists, and never answers for a section another program made.
    pub fn open_raw(&self, os_name: &str) -> Result<Shm> {
        name::validate_raw(os_name)?;
        let obj = sys::shm_open(os_name, self.access.needs_writable_object())
            .map_err(|e| Error::from_io(os_name, "open", e, 0))?;
        let spec = self.spec_of(os_name, os_name, SegmentKind::Bytes);
        segment::check_trust(&spec, &obj, false)?;
        obj.share()
            .map_err(|e| Error::from_io(os_name, "flock", e, 0))?;
        let size = obj
            .size()
            .map_err(|e| Error::from_io(os_name, "fstat", e, 0))?;
        let temporary = self.raw_lifetime() == Lifetime::Temporary;
        let handle = Arc::new(Handle::new(obj, os_name.to_owned(), temporary));
        let mapping = Mapping::new(handle, 0, size, self.access, false)?;
        Ok(Shm::raw(os_name, mapping, false))
    }
}

fn remove_error(object: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::Unsupported => Error::Unsupported {
            object: object.into(),
            what: "removing a temporary (pagefile-backed) segment",
        },
        _ => Error::from_io(object, "remove", e, 0),
    }
}

/// Adapts a `FnOnce` initialiser to the segment layer's `FnMut`.
fn once<E: std::fmt::Display>(
    init: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
) -> impl FnMut(&mut [u8]) -> std::result::Result<(), String> {
    let mut init = Some(init);
    move |bytes| match init.take() {
        Some(f) => f(bytes).map_err(|e| e.to_string()),
        None => Err("initialiser already ran".into()),
    }
}

impl Shm {
    /// Creates a temporary, read-write segment of `size` bytes named `name`.
    /// Shorthand for `ShmOptions::new().size(size).create(name)`.
    pub fn create(name: &str, size: u64) -> Result<Shm> {
        ShmOptions::new().size(size).create(name)
    }

    /// Opens the existing segment `name` for reading and writing.
    pub fn open(name: &str) -> Result<Shm> {
        ShmOptions::new().open(name)
    }

    /// Options for anything beyond the defaults.
    pub fn options() -> ShmOptions {
        ShmOptions::new()
    }

    /// Removes the segment `name` (in the `Local\` namespace on Windows). Processes
    /// that have it open keep their mapping; new opens fail with [`Error::NotFound`].
    ///
    /// On Windows, removing a persistent segment deletes its backing file, but a
    /// section that processes still have open keeps answering to its name until its
    /// last handle closes. A temporary segment cannot be removed there at all (it
    /// goes with its last handle): removing it gives [`Error::Unsupported`].
    pub fn remove(name: &str) -> Result<()> {
        let os = name::os_name(name, Namespace::Local)?;
        sys::shm_unlink(&os).map_err(|e| remove_error(name, e))
    }

    /// Removes the OS object named exactly `os_name`.
    pub fn remove_raw(os_name: &str) -> Result<()> {
        name::validate_raw(os_name)?;
        sys::shm_unlink(os_name).map_err(|e| remove_error(os_name, e))
    }

    /// Reads the header of segment `name` without waiting for its initialisation.
    /// Like [`remove`](Self::remove), it looks in the `Local\` namespace on Windows.
    pub fn inspect(name: &str) -> Result<SegmentInfo> {
        ShmOptions::new().inspect(name)
    }

    /// Counts, and with `remove` deletes, the liveness tokens left by processes
    /// that died (Linux). Every process using shmkit holds a lock on a small
    /// token file, `/dev/shm/shmkit-live.PID.START`, which tells other processes,
    /// in any PID namespace, that it lives; a normal exit removes it, a killed
    /// process leaves it behind until another process finds it unlocked (and
    /// removes it then) or this runs. `shmkit gc` calls it. Always 0 elsewhere.
    pub fn reap_dead_tokens(remove: bool) -> usize {
        #[cfg(target_os = "linux")]
        {
            sys::reap_dead_tokens(remove)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = remove;
            0
        }
    }

    /// Removes the managed segment `name` if it is stale: temporary, and every
    /// process that used it has exited or died without closing it (their
    /// lifetime locks are gone). Returns whether it did. A segment that any live
    /// process has open is never touched; persistent segments are never stale.
    /// `shmkit gc` is built on this.
    ///
    /// ```
    /// use shmkit::Shm;
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-stale-{}", std::process::id());
    /// let live = Shm::create(&name, 4096)?;
    /// assert!(!Shm::remove_if_stale(&name)?); // we still use it
    /// # Ok(()) }
    /// ```
    pub fn remove_if_stale(name: &str) -> Result<bool> {
        let opts = ShmOptions::new();
        let os = name::os_name(name, opts.namespace)?;
        segment::remove_if_stale(&opts.spec_of(name, &os, SegmentKind::Bytes))
    }

    /// Names of the shmkit segments that exist now. On Windows only persistent
    /// segments can be listed (Windows has no call that lists sections); on macOS
    /// and FreeBSD nothing can, and this gives [`Error::Unsupported`].
    pub fn list() -> Result<Vec<String>> {
        let all = sys::shm_list().map_err(|e| match e.kind() {
            std::io::ErrorKind::Unsupported => Error::Unsupported {
                object: "shared memory".into(),
                what: "listing objects",
            },
            _ => Error::from_io("shared memory", "list", e, 0),
        })?;
        Ok(all
            .iter()
            .filter_map(|os| name::strip_os_prefix(os))
            .filter(|n| name::validate(n).is_ok())
            .map(str::to_owned)
            .collect())
    }

    fn managed(name: &str, os_name: String, seg: segment::Segment) -> Shm {
        Shm {
            mapping: seg.data,
            name: name.to_owned(),
            os_name,
            info: Some(seg.info),
            created: seg.created,
        }
    }

    fn raw(os_name: &str, mapping: Mapping, created: bool) -> Shm {
        Shm {
            mapping,
            name: os_name.to_owned(),
            os_name: os_name.to_owned(),
            info: None,
            created,
        }
    }

    /// The name this segment was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS object's name (for example `/shmkit.NAME` on Linux).
    pub fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Whether this handle created the segment (as opposed to opening it).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The header's description of a managed segment; `None` for raw objects.
    pub fn info(&self) -> Option<&SegmentInfo> {
        self.info.as_ref()
    }
}

impl Deref for Shm {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.mapping
    }
}

impl DerefMut for Shm {
    fn deref_mut(&mut self) -> &mut Mapping {
        &mut self.mapping
    }
}
