//! Managed segments: a header at offset 0 that lets openers validate what they map,
//! wait for the creator to finish initialising, and refuse foreign or corrupt
//! objects. The byte layout is specified in `docs/LAYOUT.md`.
//!
//! Initialisation handshake: the creator writes the header with state
//! `INITIALISING`, makes the object visible, runs the caller's initialiser on the
//! data, then stores `READY` (release). Openers wait (acquire) for `READY`, give up
//! at a timeout, and report a creator that died before getting there.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytemuck::{Pod, Zeroable};

use crate::access::Access;
use crate::error::{Error, Result};
use crate::mapping::{Handle, Mapping};
use crate::sys::{self, CreateParams, ProcessIdentity};

/// First eight bytes of every shmkit segment.
pub const MAGIC: [u8; 8] = *b"shmkitSG";
/// Layout version this build writes and understands.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes reserved for the header; user data starts here, page aligned.
pub const HEADER_BLOCK: u64 = 4096;
/// Longest name stored in the header.
const NAME_CAPACITY: usize = 256;

const STATE_UNWRITTEN: u32 = 0;
const STATE_INITIALISING: u32 = 1;
const STATE_READY: u32 = 2;
const STATE_FAILED: u32 = 3;

const FLAG_TEMPORARY: u32 = 1;

/// The segment header, version 1. `#[repr(C)]`, no padding (checked by `Pod`),
/// little-endian (shmkit builds only for little-endian targets).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Header {
    magic: [u8; 8],
    version: u32,
    kind: u32,
    /// Written atomically: one of the `STATE_*` values.
    state: u32,
    flags: u32,
    total_size: u64,
    data_offset: u64,
    data_size: u64,
    creator_pid: u32,
    header_size: u32,
    creator_start_time: u64,
    created_unix_ms: u64,
    name_len: u32,
    reserved0: u32,
    name: [u8; NAME_CAPACITY],
    reserved: [u8; 176],
}

const HEADER_SIZE: usize = std::mem::size_of::<Header>();
const STATE_OFFSET: u64 = std::mem::offset_of!(Header, state) as u64;
const _: () = assert!(HEADER_SIZE == 512);
const _: () = assert!(STATE_OFFSET == 16);

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// Plain bytes, for the caller to use ([`Shm`](crate::Shm)).
    Bytes,
    /// The path of a mapped file published under a name
    /// ([`MappedFile`](crate::MappedFile) on platforms without named file sections).
    FileName,
    /// A named [`Mutex`](crate::sync::Mutex).
    Mutex,
    /// A named [`Semaphore`](crate::sync::Semaphore).
    Semaphore,
    /// A named [`Event`](crate::sync::Event).
    Event,
    /// A message channel ([`channel`](crate::channel)): queue or broadcast.
    Channel,
    /// A kind this build does not know (from a newer shmkit).
    Unknown(u32),
}

impl SegmentKind {
    fn code(self) -> u32 {
        match self {
            SegmentKind::Bytes => 1,
            SegmentKind::FileName => 2,
            SegmentKind::Mutex => 3,
            SegmentKind::Semaphore => 4,
            SegmentKind::Event => 5,
            SegmentKind::Channel => 6,
            SegmentKind::Unknown(c) => c,
        }
    }

    fn from_code(code: u32) -> SegmentKind {
        match code {
            1 => SegmentKind::Bytes,
            2 => SegmentKind::FileName,
            3 => SegmentKind::Mutex,
            4 => SegmentKind::Semaphore,
            5 => SegmentKind::Event,
            6 => SegmentKind::Channel,
            c => SegmentKind::Unknown(c),
        }
    }
}

impl SegmentKind {
    /// The kind in a sentence ("is a plain shared-memory segment …, not a
    /// shmkit channel"): `Display`
    /// gives the short names `shmkit ls` prints.
    fn described(self) -> String {
        match self {
            SegmentKind::Bytes => {
                "plain shared-memory segment (not made as a shmkit object)".into()
            }
            SegmentKind::FileName => "mapped-file record".into(),
            SegmentKind::Mutex => "shmkit mutex".into(),
            SegmentKind::Semaphore => "shmkit semaphore".into(),
            SegmentKind::Event => "shmkit event".into(),
            SegmentKind::Channel => "shmkit channel".into(),
            SegmentKind::Unknown(c) => {
                format!("segment of unknown kind {c} (from a newer shmkit?)")
            }
        }
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentKind::Bytes => f.write_str("bytes"),
            SegmentKind::FileName => f.write_str("file-name"),
            SegmentKind::Mutex => f.write_str("mutex"),
            SegmentKind::Semaphore => f.write_str("semaphore"),
            SegmentKind::Event => f.write_str("event"),
            SegmentKind::Channel => f.write_str("channel"),
            SegmentKind::Unknown(c) => write!(f, "unknown kind {c}"),
        }
    }
}

/// How long a segment lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lifetime {
    /// Removed when the last process using it closes it, also when processes
    /// crash (the next process to look for the name finds it gone). The default.
    #[default]
    Temporary,
    /// Stays until removed with [`Shm::remove`](crate::Shm::remove), across process
    /// exits (until reboot on Linux). On Windows this needs a backing file; see
    /// [`Shm`](crate::Shm).
    Persistent,
}

/// Where a segment's initialisation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InitState {
    /// The creator has not finished initialising it.
    Initialising,
    /// Ready for use.
    Ready,
    /// The creator's initialiser failed.
    Failed,
}

/// What a segment's header says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The shmkit name recorded by the creator.
    pub name: String,
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Layout version of the header.
    pub layout_version: u32,
    /// Bytes available to the user.
    pub size: u64,
    /// Bytes of the whole object, header included.
    pub total_size: u64,
    /// Temporary or persistent.
    pub lifetime: Lifetime,
    /// Initialisation state when the header was read.
    pub state: InitState,
    /// Process id of the creator.
    pub creator_pid: u32,
    /// Whether the creator process still runs (PID reuse is detected on Linux).
    pub creator_alive: bool,
    /// When the segment was created.
    pub created: SystemTime,
    /// A temporary segment that no process holds any more: its users all died.
    /// The next `open` or `create` of its name removes it.
    pub stale: bool,
}

/// Everything needed to create or open a segment.
#[derive(Clone, Debug)]
pub(crate) struct Spec<'a> {
    pub name: &'a str,
    pub os_name: &'a str,
    pub kind: SegmentKind,
    pub access: Access,
    pub lifetime: Lifetime,
    pub mode: u32,
    pub reserve: bool,
    pub init_timeout: Duration,
    pub accept_insecure: bool,
}

/// An open managed segment.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The user's bytes.
    pub data: Mapping,
    pub info: SegmentInfo,
    pub created: bool,
}

/// Initialiser run by the one process that creates a segment.
pub(crate) type Init<'f> = &'f mut dyn FnMut(&mut [u8]) -> std::result::Result<(), String>;

fn round_up(n: u64, to: u64) -> Option<u64> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

/// Creates a segment; fails with [`Error::AlreadyExists`] if the name is in use.
pub(crate) fn create(spec: &Spec, data_size: u64, init: Init) -> Result<Segment> {
    match create_once(spec, data_size, init) {
        // A temporary segment all of whose users died still holds the name: opening
        // it removes it, after which the name is free.
        Err(Error::AlreadyExists { .. }) if reclaim_stale(spec) => {
            create_once(spec, data_size, init)
        }
        other => other,
    }
}

/// Opens a segment, or creates it if the name is free. Exactly one of several
/// racing processes creates and initialises it; the others wait for it.
pub(crate) fn create_or_open(spec: &Spec, data_size: u64, init: Init) -> Result<Segment> {
    let mut last = None;
    for _ in 0..8 {
        match create_once(spec, data_size, init) {
            Err(Error::AlreadyExists { .. }) => {}
            other => return other,
        }
        match open(spec) {
            // Removed (or found stale) between our create and our open: try again.
            Err(e @ Error::NotFound { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("loop ran"))
}

/// Removes the segment under `spec`'s name if it is stale; true if the name is free.
fn reclaim_stale(spec: &Spec) -> bool {
    // inspect() does not wait for a live creator; open() of a stale segment
    // removes it and reports NotFound.
    matches!(inspect(spec), Ok(info) if info.stale)
        && matches!(open(spec), Err(Error::NotFound { .. }))
}

fn create_once(spec: &Spec, data_size: u64, init: Init) -> Result<Segment> {
    if spec.access != Access::ReadWrite {
        return Err(Error::InvalidArgument {
            object: spec.name.into(),
            reason: format!("cannot create a segment with {:?} access", spec.access),
        });
    }
    if data_size == 0 {
        return Err(Error::InvalidSize {
            object: spec.name.into(),
            reason: "size must be at least 1 byte".into(),
        });
    }
    let total = round_up(data_size, HEADER_BLOCK)
        .and_then(|d| d.checked_add(HEADER_BLOCK))
        .filter(|t| *t <= i64::MAX as u64)
        .ok_or_else(|| Error::InvalidSize {
            object: spec.name.into(),
            reason: format!("{data_size} bytes is larger than any object can be"),
        })?;
    let params = CreateParams {
        size: total,
        mode: spec.mode,
        reserve: spec.reserve,
        persistent: spec.lifetime == Lifetime::Persistent,
    };
    let obj = sys::shm_create(spec.os_name, &params)
        .map_err(|e| Error::from_io(spec.name, "create", e, total))?;
    check_trust(spec, &obj, true)?;
    let temporary = spec.lifetime == Lifetime::Temporary;
    let handle = Arc::new(Handle::new(obj, spec.name.to_owned(), temporary));
    let head = Mapping::new(
        Arc::clone(&handle),
        0,
        HEADER_BLOCK,
        Access::ReadWrite,
        false,
    )?;

    let me = sys::current_process();
    let mut h = Header::zeroed();
    h.magic = MAGIC;
    h.version = LAYOUT_VERSION;
    h.kind = spec.kind.code();
    h.state = STATE_INITIALISING;
    h.flags = if temporary { FLAG_TEMPORARY } else { 0 };
    h.total_size = total;
    h.data_offset = HEADER_BLOCK;
    h.data_size = data_size;
    h.creator_pid = me.pid;
    h.header_size = HEADER_SIZE as u32;
    h.creator_start_time = me.start_time;
    h.created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let name = truncate_utf8(spec.name, NAME_CAPACITY);
    h.name_len = name.len() as u32;
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    // The magic goes last, with release ordering: where the object is visible by
    // name before this point (Windows, macOS, FreeBSD), an opener that sees the
    // magic (acquire) sees the whole header, never a half-written one.
    h.magic = [0; 8];
    head.write_at(0, bytemuck::bytes_of(&h))?;
    head.atomic_u64(0)?.store(
        u64::from_le_bytes(MAGIC),
        std::sync::atomic::Ordering::Release,
    );
    h.magic = MAGIC;

    handle
        .obj()
        .publish()
        .map_err(|e| Error::from_io(spec.name, "publish", e, total))?;

    let mut data = Mapping::new(handle, HEADER_BLOCK, data_size, Access::ReadWrite, false)?;
    let state = head.atomic_u32(STATE_OFFSET)?;
    // SAFETY: nobody else writes the data while the state is INITIALISING: openers
    // wait for READY before mapping it (a process ignoring the protocol could, but
    // it could scribble anywhere anyway; it cannot make this slice dangle).
    let result = init(unsafe { data.as_mut_slice() }?);
    if let Err(reason) = result {
        state.store(STATE_FAILED, std::sync::atomic::Ordering::Release);
        if !temporary {
            let _ = sys::shm_unlink(spec.os_name);
        }
        return Err(Error::InitFailed {
            object: spec.name.into(),
            reason,
        });
    }
    state.store(STATE_READY, std::sync::atomic::Ordering::Release);
    let info = decode(&h, STATE_READY, true, false);
    Ok(Segment {
        data,
        info,
        created: true,
    })
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Refuses objects whose owner or permissions shmkit should not trust.
pub(crate) fn check_trust(spec: &Spec, obj: &sys::Object, created: bool) -> Result<()> {
    let Some((uid, mode)) = obj
        .owner_and_mode()
        .map_err(|e| Error::from_io(spec.name, "fstat", e, 0))?
    else {
        return Ok(());
    };
    let insecure = |reason: String| {
        Err(Error::Insecure {
            object: spec.name.into(),
            reason,
        })
    };
    let me = sys::current_uid();
    if created {
        if uid != me || mode != spec.mode {
            return insecure(format!(
                "created with owner {uid} and mode {mode:o}, asked for owner {me} and mode {:o}",
                spec.mode
            ));
        }
        return Ok(());
    }
    if spec.accept_insecure {
        return Ok(());
    }
    if uid != me {
        return insecure(format!(
            "owned by uid {uid}, not by this user (uid {me}); use accept_insecure to allow"
        ));
    }
    if mode & 0o002 != 0 {
        return insecure(format!(
            "writable by every user (mode {mode:o}); use accept_insecure to allow"
        ));
    }
    Ok(())
}

fn read_header(head: &Mapping) -> Result<Header> {
    let mut bytes = [0u8; HEADER_SIZE];
    head.read_at(0, &mut bytes)?;
    Ok(bytemuck::pod_read_unaligned(&bytes))
}

/// Checks a header copy against the object's real size and the wanted kind.
fn validate(
    spec_name: &str,
    h: &Header,
    actual_size: u64,
    kind: Option<SegmentKind>,
) -> Result<()> {
    let corrupt = |reason: String| {
        Err(Error::CorruptHeader {
            object: spec_name.into(),
            reason,
        })
    };
    if h.magic != MAGIC {
        return Err(Error::NotShmkit {
            object: spec_name.into(),
            reason: format!("first bytes are {:02x?}, expected {:02x?}", h.magic, MAGIC),
        });
    }
    if h.version != LAYOUT_VERSION {
        return Err(Error::UnsupportedVersion {
            object: spec_name.into(),
            found: h.version,
            supported: LAYOUT_VERSION,
        });
    }
    if h.header_size as usize != HEADER_SIZE {
        return corrupt(format!(
            "header size {} (expected {HEADER_SIZE})",
            h.header_size
        ));
    }
    if h.total_size != actual_size {
        return corrupt(format!(
            "header says {} bytes, the object has {actual_size}",
            h.total_size
        ));
    }
    if h.data_offset != HEADER_BLOCK {
        return corrupt(format!(
            "data offset {} (expected {HEADER_BLOCK})",
            h.data_offset
        ));
    }
    if h.data_size == 0 || h.data_size > h.total_size.saturating_sub(HEADER_BLOCK) {
        return corrupt(format!(
            "data size {} does not fit a {}-byte object",
            h.data_size, h.total_size
        ));
    }
    if h.name_len as usize > NAME_CAPACITY {
        return corrupt(format!("name length {}", h.name_len));
    }
    if let Some(kind) = kind {
        if h.kind != kind.code() {
            return Err(Error::WrongKind {
                object: spec_name.into(),
                found: SegmentKind::from_code(h.kind).described(),
                expected: kind.described(),
            });
        }
    }
    Ok(())
}

/// The fuzz target's body: validation of arbitrary header bytes never panics,
/// and what it accepts is consistent.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_header(bytes: &[u8], actual_size: u64) {
    let mut raw = [0u8; HEADER_SIZE];
    let n = bytes.len().min(HEADER_SIZE);
    raw[..n].copy_from_slice(&bytes[..n]);
    let h: Header = bytemuck::pod_read_unaligned(&raw);
    if validate("fuzz", &h, actual_size, None).is_ok() {
        assert_eq!(h.total_size, actual_size);
        assert!(h.data_size >= 1 && HEADER_BLOCK + h.data_size <= actual_size);
        let info = decode(&h, h.state, false, false);
        assert!(info.name.len() <= NAME_CAPACITY * 3);
        assert_eq!(info.size, h.data_size);
    }
}

fn decode(h: &Header, state: u32, creator_alive: bool, stale: bool) -> SegmentInfo {
    let name_len = (h.name_len as usize).min(NAME_CAPACITY);
    SegmentInfo {
        name: String::from_utf8_lossy(&h.name[..name_len]).into_owned(),
        kind: SegmentKind::from_code(h.kind),
        layout_version: h.version,
        size: h.data_size,
        total_size: h.total_size,
        lifetime: if h.flags & FLAG_TEMPORARY != 0 {
            Lifetime::Temporary
        } else {
            Lifetime::Persistent
        },
        state: match state {
            STATE_READY => InitState::Ready,
            STATE_FAILED => InitState::Failed,
            _ => InitState::Initialising,
        },
        creator_pid: h.creator_pid,
        creator_alive,
        // Peer-written: an absurd time must not overflow SystemTime (a panic).
        created: UNIX_EPOCH
            .checked_add(Duration::from_millis(h.created_unix_ms))
            .unwrap_or(UNIX_EPOCH),
        stale,
    }
}

fn creator(h: &Header) -> ProcessIdentity {
    ProcessIdentity {
        pid: h.creator_pid,
        start_time: h.creator_start_time,
    }
}

/// Maps the header of an existing object for reading or writing. Where objects
/// are named before they are sized (macOS, FreeBSD: `shm_open`, then
/// `ftruncate`), a new object may still be empty: that is waited out, up to
/// `wait` (the init timeout; zero for a look that must not wait).
fn open_head(spec: &Spec, wait: Duration) -> Result<(Arc<Handle>, Mapping, u64)> {
    let obj = sys::shm_open(spec.os_name, spec.access.needs_writable_object())
        .map_err(|e| Error::from_io(spec.name, "open", e, 0))?;
    check_trust(spec, &obj, false)?;
    let start = Instant::now();
    let size = loop {
        let size = obj
            .size()
            .map_err(|e| Error::from_io(spec.name, "fstat", e, 0))?;
        if size >= HEADER_BLOCK || sys::ATOMIC_PUBLISH || start.elapsed() >= wait {
            break size;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if size < HEADER_BLOCK {
        return Err(Error::NotShmkit {
            object: spec.name.into(),
            reason: format!("only {size} bytes, too small for a segment header"),
        });
    }
    let handle = Arc::new(Handle::new(obj, spec.name.to_owned(), false));
    let head_access = if spec.access.needs_writable_object() {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let head = Mapping::new(Arc::clone(&handle), 0, HEADER_BLOCK, head_access, false)?;
    Ok((handle, head, size))
}

/// Opens an existing segment, waiting up to `spec.init_timeout` for its creator to
/// finish initialising it.
pub(crate) fn open(spec: &Spec) -> Result<Segment> {
    let start = Instant::now();
    let (handle, head, size) = open_head(spec, spec.init_timeout)?;
    let mut pause = Duration::from_micros(50);
    let h = loop {
        // The magic first (acquire): the creator stores it last (release).
        let magic = head.load_u64_acquire(0)?;
        let h = read_header(&head)?;
        let waited = start.elapsed();
        if magic == 0 && !sys::ATOMIC_PUBLISH {
            // Where objects are named before they are filled (Windows, BSD), the
            // creator may not have written the header yet.
            if waited >= spec.init_timeout {
                return Err(Error::NotShmkit {
                    object: spec.name.into(),
                    reason: format!("no header was written within {waited:?}"),
                });
            }
        } else if let Err(e) = validate(spec.name, &h, size, Some(spec.kind)) {
            // A header with our magic that does not validate yet, on a segment
            // still being initialised, is not ready yet (a creator of an older
            // shmkit that wrote the magic first, or a size not yet settled);
            // it is refused only if it stays so until the init timeout.
            let initialising = matches!(
                head.load_u32_acquire(STATE_OFFSET)?,
                STATE_UNWRITTEN | STATE_INITIALISING
            );
            if h.magic != MAGIC || !initialising || waited >= spec.init_timeout {
                return Err(e);
            }
        } else {
            let temporary = h.flags & FLAG_TEMPORARY != 0;
            handle.set_remove_when_last(temporary);
            let state = head.load_u32_acquire(STATE_OFFSET)?;
            // Liveness costs a /proc read (Linux): asked only where it decides.
            let creator_dead = || !sys::process_alive(creator(&h));
            if temporary && handle.obj().is_exclusive() {
                // Nobody else holds a temporary segment: its users are all gone.
                handle
                    .obj()
                    .unlink_exclusive()
                    .map_err(|e| Error::from_io(spec.name, "remove stale", e, 0))?;
                handle.set_remove_when_last(false);
                if state != STATE_READY && creator_dead() {
                    return Err(Error::CreatorDied {
                        object: spec.name.into(),
                        pid: h.creator_pid,
                    });
                }
                return Err(Error::NotFound {
                    object: spec.name.into(),
                });
            }
            match state {
                STATE_READY => break h,
                STATE_FAILED => {
                    return Err(Error::InitFailed {
                        object: spec.name.into(),
                        reason: "its initialiser returned an error in the creating process".into(),
                    })
                }
                STATE_UNWRITTEN | STATE_INITIALISING => {
                    if creator_dead() {
                        return Err(Error::CreatorDied {
                            object: spec.name.into(),
                            pid: h.creator_pid,
                        });
                    }
                    if waited >= spec.init_timeout {
                        return Err(Error::InitTimeout {
                            object: spec.name.into(),
                            waited,
                        });
                    }
                }
                other => {
                    return Err(Error::CorruptHeader {
                        object: spec.name.into(),
                        reason: format!("unknown state {other}"),
                    })
                }
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    handle
        .obj()
        .share()
        .map_err(|e| Error::from_io(spec.name, "flock", e, 0))?;
    let data = Mapping::new(handle, HEADER_BLOCK, h.data_size, spec.access, false)?;
    Ok(Segment {
        data,
        info: decode(&h, STATE_READY, sys::process_alive(creator(&h)), false),
        created: false,
    })
}

/// Removes the segment if it is stale (temporary, and every process that used
/// it is gone); whether it did. A segment any live process holds is never
/// touched: users hold the lifetime lock shared, and the removal needs it
/// exclusively.
pub(crate) fn remove_if_stale(spec: &Spec) -> Result<bool> {
    let (handle, head, size) = open_head(spec, Duration::ZERO)?;
    let h = read_header(&head)?;
    validate(spec.name, &h, size, None)?;
    let stale = h.flags & FLAG_TEMPORARY != 0 && handle.obj().is_exclusive();
    handle.set_remove_when_last(false);
    if stale {
        handle
            .obj()
            .unlink_exclusive()
            .map_err(|e| Error::from_io(spec.name, "remove stale", e, 0))?;
    }
    Ok(stale)
}

/// Reads a segment's header without waiting for initialisation and without
/// removing it if it is stale.
pub(crate) fn inspect(spec: &Spec) -> Result<SegmentInfo> {
    let (handle, head, size) = open_head(spec, Duration::ZERO)?;
    let h = read_header(&head)?;
    validate(spec.name, &h, size, None)?;
    let temporary = h.flags & FLAG_TEMPORARY != 0;
    let stale = temporary && handle.obj().is_exclusive();
    // Take part in the lifetime protocol like any user, unless the segment is stale
    // (then it stays for `open`, `create` or `shmkit rm` to deal with).
    handle.set_remove_when_last(temporary && !stale);
    let _ = handle.obj().share();
    let state = head.load_u32_acquire(STATE_OFFSET)?;
    Ok(decode(&h, state, sys::process_alive(creator(&h)), stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_field_offsets_match_layout_md() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(Header, magic), 0);
        assert_eq!(offset_of!(Header, version), 8);
        assert_eq!(offset_of!(Header, kind), 12);
        assert_eq!(offset_of!(Header, state), 16);
        assert_eq!(offset_of!(Header, flags), 20);
        assert_eq!(offset_of!(Header, total_size), 24);
        assert_eq!(offset_of!(Header, data_offset), 32);
        assert_eq!(offset_of!(Header, data_size), 40);
        assert_eq!(offset_of!(Header, creator_pid), 48);
        assert_eq!(offset_of!(Header, header_size), 52);
        assert_eq!(offset_of!(Header, creator_start_time), 56);
        assert_eq!(offset_of!(Header, created_unix_ms), 64);
        assert_eq!(offset_of!(Header, name_len), 72);
        assert_eq!(offset_of!(Header, name), 80);
        assert_eq!(offset_of!(Header, reserved), 336);
        assert_eq!(HEADER_SIZE, 512);
    }

    fn good() -> Header {
        let mut h = Header::zeroed();
        h.magic = MAGIC;
        h.version = LAYOUT_VERSION;
        h.kind = 1;
        h.header_size = HEADER_SIZE as u32;
        h.total_size = 8192;
        h.data_offset = HEADER_BLOCK;
        h.data_size = 100;
        h
    }

    #[test]
    fn validation_names_each_problem() {
        validate("s", &good(), 8192, Some(SegmentKind::Bytes)).unwrap();
        type Mutation = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|h| h.magic = *b"notours!"), "not a shmkit segment"),
            (Box::new(|h| h.version = 2), "unsupported layout version 2"),
            (Box::new(|h| h.header_size = 7), "header size 7"),
            (Box::new(|h| h.total_size = 4096), "header says 4096 bytes"),
            (Box::new(|h| h.data_offset = 0), "data offset 0"),
            (Box::new(|h| h.data_size = 5000), "data size 5000"),
            (Box::new(|h| h.data_size = 0), "data size 0"),
            (Box::new(|h| h.name_len = 9999), "name length 9999"),
            (
                Box::new(|h| h.kind = 2),
                "is a mapped-file record, not a plain shared-memory segment",
            ),
        ];
        for (mutate, expect) in cases {
            let mut h = good();
            mutate(&mut h);
            let err = validate("s", &h, 8192, Some(SegmentKind::Bytes)).unwrap_err();
            assert!(err.to_string().contains(expect), "{err} lacks {expect:?}");
        }
    }

    #[test]
    fn random_headers_never_panic_and_accepted_ones_are_consistent() {
        // xorshift: deterministic, so a failure reproduces.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let sizes = [0u64, 4096, 8192, 1 << 20, u64::MAX];
        for round in 0..20_000 {
            let mut bytes = [0u8; HEADER_SIZE];
            for b in bytes.iter_mut() {
                *b = next() as u8;
            }
            let mut h: Header = bytemuck::pod_read_unaligned(&bytes);
            // Get past the first checks most of the time to reach the deeper ones.
            if round % 4 != 0 {
                h.magic = MAGIC;
                h.version = LAYOUT_VERSION;
                h.header_size = HEADER_SIZE as u32;
                h.data_offset = HEADER_BLOCK;
                h.total_size = sizes[(next() % 4) as usize];
                h.data_size = next() % (h.total_size + 2);
                h.name_len %= 300;
            }
            if round % 3 == 0 {
                h.created_unix_ms = u64::MAX - next() % 1000;
            }
            let actual = sizes[(next() % 5) as usize];
            if validate("fuzz", &h, actual, None).is_ok() {
                assert_eq!(h.total_size, actual);
                assert!(h.data_size >= 1 && HEADER_BLOCK + h.data_size <= actual);
                let info = decode(&h, h.state, false, false);
                assert!(info.name.len() <= NAME_CAPACITY * 3);
            }
        }
    }

    #[test]
    fn names_are_cut_on_char_boundaries() {
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
