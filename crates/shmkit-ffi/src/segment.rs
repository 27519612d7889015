//! Segments: managed (`shmkit_shm_create`...) and raw (`..._raw`, by OS name).

use crate::args::{bytes, bytes_mut, out, put, text};
use crate::handle::{get, insert, remove, Kind};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure};
use shmkit::{Access, InitState, Lifetime, Shm, ShmOptions};
use std::ffi::{c_char, c_void};

/// An open segment (managed or raw).
pub struct shmkit_shm {
    _opaque: (),
}

/// `flags` bit: the segment stays until removed (default: it goes away when the
/// last process using it closes it).
pub const SHMKIT_PERSISTENT: u32 = 1;

/// `access`: read and write (the default, 0).
pub const SHMKIT_ACCESS_READ_WRITE: u32 = 0;
/// `access`: read only; writes fail with `SHMKIT_ERR_PERMISSION_DENIED`.
pub const SHMKIT_ACCESS_READ_ONLY: u32 = 1;
/// `access`: private copy-on-write; writes stay in this process.
pub const SHMKIT_ACCESS_COPY_ON_WRITE: u32 = 2;

/// Fills a new segment before any other process can open it; returns 0 on
/// success. Anything else fails the creation (`SHMKIT_ERR_CALLBACK` for the
/// creator; `SHMKIT_ERR_INIT_FAILED` for processes waiting to open it).
pub type shmkit_init_fn =
    Option<unsafe extern "C" fn(data: *mut u8, len: u64, user_data: *mut c_void) -> i32>;

/// What a segment's header says (`shmkit_shm_inspect`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmkit_segment_info {
    /// Bytes available to the user.
    pub size: u64,
    /// Bytes of the whole object, header included.
    pub total_size: u64,
    /// Creation time, milliseconds since 1970-01-01 UTC.
    pub created_unix_ms: u64,
    /// Layout version of the header.
    pub layout_version: u32,
    /// Process id of the creator.
    pub creator_pid: u32,
    /// 0 initialising, 1 ready, 2 initialisation failed.
    pub state: u32,
    /// 1 if the creator process still runs.
    pub creator_alive: u8,
    /// 1 if persistent.
    pub persistent: u8,
    /// 1 if every user has left a temporary segment (the next open removes it).
    pub stale: u8,
}

fn access(a: u32) -> Result<Access, Failure> {
    match a {
        SHMKIT_ACCESS_READ_WRITE => Ok(Access::ReadWrite),
        SHMKIT_ACCESS_READ_ONLY => Ok(Access::ReadOnly),
        SHMKIT_ACCESS_COPY_ON_WRITE => Ok(Access::CopyOnWrite),
        other => Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("access {other} is not SHMKIT_ACCESS_READ_WRITE (0), _READ_ONLY (1) or _COPY_ON_WRITE (2)"),
        )),
    }
}

fn options(size: u64, flags: u32) -> Result<ShmOptions, Failure> {
    if flags & !SHMKIT_PERSISTENT != 0 {
        return Err(Failure::new(
            SHMKIT_ERR_INVALID_ARGUMENT,
            format!("unknown flags {flags:#x} (only SHMKIT_PERSISTENT)"),
        ));
    }
    let lifetime = if flags & SHMKIT_PERSISTENT != 0 {
        Lifetime::Persistent
    } else {
        Lifetime::Temporary
    };
    Ok(Shm::options().size(size).lifetime(lifetime))
}

fn hand_out(out_ptr: *mut *mut shmkit_shm, shm: Shm) -> Result<(), Failure> {
    let h = insert(Kind::Shm, shm)?;
    // SAFETY: checked by `out` before anything was created.
    unsafe { put(out_ptr, h as *mut shmkit_shm) };
    Ok(())
}

/// Creates managed segment `name` of `size` zeroed bytes; `SHMKIT_ERR_ALREADY_EXISTS`
/// if the name is taken. `flags`: 0 or `SHMKIT_PERSISTENT`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_create(
    name: *const c_char,
    size: u64,
    flags: u32,
    shm: *mut *mut shmkit_shm,
) -> shmkit_status {
    run("shmkit_shm_create", || {
        out("shm", shm)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        hand_out(shm, options(size, flags)?.create(name)?)
    })
}

/// Opens managed segment `name` (`SHMKIT_ERR_NOT_FOUND` if there is none) with
/// `access` (`SHMKIT_ACCESS_*`).
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_open(
    name: *const c_char,
    access_mode: u32,
    shm: *mut *mut shmkit_shm,
) -> shmkit_status {
    run("shmkit_shm_open", || {
        out("shm", shm)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        hand_out(shm, Shm::options().access(access(access_mode)?).open(name)?)
    })
}

/// Opens segment `name`, or creates it with `size` bytes and runs `init` (may be
/// NULL) on them before any other process can open it. Of several processes racing
/// here exactly one runs `init`; the others wait for it. `created` (may be NULL)
/// tells which happened.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_create_or_open(
    name: *const c_char,
    size: u64,
    flags: u32,
    init: shmkit_init_fn,
    user_data: *mut c_void,
    shm: *mut *mut shmkit_shm,
    created: *mut bool,
) -> shmkit_status {
    run("shmkit_shm_create_or_open", || {
        out("shm", shm)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let mut refused = None;
        let made = options(size, flags)?.create_or_open_with(name, |data| match init {
            None => Ok(()),
            // SAFETY: the caller's callback gets the new segment's bytes, valid
            // for the call, and its own user_data.
            Some(f) => match unsafe { f(data.as_mut_ptr(), data.len() as u64, user_data) } {
                0 => Ok(()),
                code => {
                    refused = Some(code);
                    Err(format!("init returned {code}"))
                }
            },
        });
        let seg = match (made, refused) {
            (Err(_), Some(code)) => {
                return Err(Failure::new(
                    SHMKIT_ERR_CALLBACK,
                    format!("{name}: init returned {code}; the segment was not created"),
                ))
            }
            (made, _) => made?,
        };
        // SAFETY: NULL or writable per the header's conventions.
        unsafe { put(created, seg.created()) };
        hand_out(shm, seg)
    })
}

/// Creates a raw object `os_name` of `size` bytes with no shmkit header, as
/// `shm_open` or `CreateFileMapping` would (`/name` on POSIX).
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_create_raw(
    os_name: *const c_char,
    size: u64,
    shm: *mut *mut shmkit_shm,
) -> shmkit_status {
    run("shmkit_shm_create_raw", || {
        out("shm", shm)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        hand_out(shm, Shm::options().size(size).create_raw(os_name)?)
    })
}

/// Opens another program's object by its OS name.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_open_raw(
    os_name: *const c_char,
    access_mode: u32,
    shm: *mut *mut shmkit_shm,
) -> shmkit_status {
    run("shmkit_shm_open_raw", || {
        out("shm", shm)?;
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        hand_out(
            shm,
            Shm::options()
                .access(access(access_mode)?)
                .open_raw(os_name)?,
        )
    })
}

/// The segment's bytes: `*data` points at them (valid until `shmkit_shm_close`),
/// `*size` is their number. Writing through the pointer of a read-only segment
/// faults: check `writable` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_data(
    shm: *mut shmkit_shm,
    data: *mut *mut u8,
    size: *mut u64,
    writable: *mut bool,
) -> shmkit_status {
    run("shmkit_shm_data", || {
        out("data", data)?;
        out("size", size)?;
        let seg = get::<Shm>(shm as usize, Kind::Shm)?;
        // SAFETY: checked or NULL-tolerant outputs, per the header's conventions.
        unsafe {
            put(data, seg.as_ptr().cast_mut());
            put(size, seg.len() as u64);
            put(writable, seg.access() != Access::ReadOnly);
        }
        Ok(())
    })
}

/// Copies `len` bytes at `offset` into `buf`; `SHMKIT_ERR_OUT_OF_BOUNDS` past the end.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_read(
    shm: *mut shmkit_shm,
    offset: u64,
    buf: *mut u8,
    len: usize,
) -> shmkit_status {
    run("shmkit_shm_read", || {
        let seg = get::<Shm>(shm as usize, Kind::Shm)?;
        // SAFETY: `len` writable bytes per the header's conventions.
        let buf = unsafe { bytes_mut("buf", buf, len) }?;
        Ok(seg.read_at(offset, buf)?)
    })
}

/// Copies `len` bytes from `data` to `offset`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_write(
    shm: *mut shmkit_shm,
    offset: u64,
    data: *const u8,
    len: usize,
) -> shmkit_status {
    run("shmkit_shm_write", || {
        let seg = get::<Shm>(shm as usize, Kind::Shm)?;
        // SAFETY: `len` readable bytes per the header's conventions.
        let data = unsafe { bytes("data", data, len) }?;
        Ok(seg.write_at(offset, data)?)
    })
}

/// Removes managed segment `name` (processes that have it open keep it).
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_remove(name: *const c_char) -> shmkit_status {
    run("shmkit_shm_remove", || {
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        Ok(Shm::remove(name)?)
    })
}

/// Removes raw object `os_name`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_remove_raw(os_name: *const c_char) -> shmkit_status {
    run("shmkit_shm_remove_raw", || {
        // SAFETY: a C string per the header's conventions.
        let os_name = unsafe { text("os_name", os_name) }?;
        Ok(Shm::remove_raw(os_name)?)
    })
}

/// Reads segment `name`'s header without opening it.
#[no_mangle]
pub unsafe extern "C" fn shmkit_shm_inspect(
    name: *const c_char,
    info: *mut shmkit_segment_info,
) -> shmkit_status {
    run("shmkit_shm_inspect", || {
        out("info", info)?;
        // SAFETY: a C string per the header's conventions.
        let name = unsafe { text("name", name) }?;
        let i = Shm::inspect(name)?;
        let created_unix_ms = i
            .created
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let value = shmkit_segment_info {
            size: i.size,
            total_size: i.total_size,
            created_unix_ms,
            layout_version: i.layout_version,
            creator_pid: i.creator_pid,
            state: match i.state {
                InitState::Initialising => 0,
                InitState::Ready => 1,
                InitState::Failed => 2,
            },
            creator_alive: i.creator_alive.into(),
            persistent: (i.lifetime == Lifetime::Persistent).into(),
            stale: i.stale.into(),
        };
        // SAFETY: checked by `out`.
        unsafe { put(info, value) };
        Ok(())
    })
}

/// Closes the segment (its memory is unmapped: pointers from `shmkit_shm_data`
/// become invalid).
#[no_mangle]
pub extern "C" fn shmkit_shm_close(shm: *mut shmkit_shm) -> shmkit_status {
    run("shmkit_shm_close", || {
        remove::<Shm>(shm as usize, Kind::Shm).map(drop)
    })
}
