//! The 64-byte state block every shmkit synchronisation object keeps in shared
//! memory, and the owned handle ([`Shared`]) the primitives are built on.
//! Byte layout: `docs/LAYOUT.md`, "Synchronisation objects".

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::error::{Error, ObjectName, Result};
use crate::fingerprint::Fingerprint;
use crate::interrupt::InterruptSlot;
use crate::mapping::Mapping;
use crate::name;
use crate::segment::{Lifetime, SegmentKind};
use crate::shm::{Shm, ShmOptions};
use crate::sys::WakeChannel;

use super::protocol::{Attempt, Stop, Waitable, SPINS};

/// `b"shSY"`, little-endian: marks an initialised state block.
pub(crate) const STATE_MAGIC: u32 = u32::from_le_bytes(*b"shSY");
/// Version of the state block layout.
pub(crate) const STATE_VERSION: u32 = 1;
/// Size of the state block; a mutex's guarded value follows it.
pub(crate) const STATE_SIZE: u64 = 64;

/// Which primitive a state block belongs to (stored in `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Mutex = 1,
    Semaphore = 2,
    Event = 3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mutex => "mutex",
            Kind::Semaphore => "semaphore",
            Kind::Event => "event",
        }
    }

    fn segment_kind(self) -> SegmentKind {
        match self {
            Kind::Mutex => SegmentKind::Mutex,
            Kind::Semaphore => SegmentKind::Semaphore,
            Kind::Event => SegmentKind::Event,
        }
    }

    fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Mutex,
            2 => Kind::Semaphore,
            3 => Kind::Event,
            _ => return None,
        })
    }
}

/// The state block. Every field is atomic because other processes write it; the
/// per-kind meaning of `param_a`/`param_b`/`param_c` is in the accessors' users.
#[repr(C)]
pub(crate) struct StateBlock {
    pub magic: AtomicU32,
    pub version: AtomicU32,
    pub kind: AtomicU32,
    /// The futex word: mutex owner pid, semaphore count, event signal.
    pub word: AtomicU32,
    /// How many threads sleep (or are about to) on `word`.
    pub waiters: AtomicU32,
    /// Mutex: flags. Semaphore: maximum count. Event: 1 if manual-reset.
    pub param_a: AtomicU32,
    /// Mutex: owner pid, written after locking (0 while unknown).
    pub param_b: AtomicU32,
    /// Mutex: size of the guarded value.
    pub value_size: AtomicU32,
    /// Mutex: owner's process start time, valid when `param_b` equals `word`.
    pub param_c: AtomicU64,
    pub reserved: [AtomicU64; 3],
}

const _: () = assert!(std::mem::size_of::<StateBlock>() as u64 == STATE_SIZE);

/// Per-kind values written when a state block is initialised.
pub(crate) struct Init<'a> {
    pub kind: Kind,
    pub word: u32,
    pub param_a: u32,
    /// A mutex created locked: its owner's process id and start time.
    pub param_b: u32,
    pub param_c: u64,
    /// A mutex's value type (zero for the other kinds).
    pub value_type: Fingerprint,
    /// A mutex's initial value, stored right after the block.
    pub value: &'a [u8],
}

/// The [`Watched`](crate::readiness::Watched) parts of a synchronisation object:
/// its word, interrupt and name; `$recheck` is how often a waiting task tries
/// again without a wake-up.
macro_rules! watched_via_shared {
    ($ty:ty, $recheck:expr $(, $gen:ident: $bound:path)?) => {
        impl$(<$gen: $bound>)? crate::readiness::Watched for $ty {
            fn bells(&self) -> crate::readiness::Bells<'_> {
                [Some(self.shared.bell()), None]
            }
            fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
                self.shared.interrupt.get_arc()
            }
            fn recheck(&self) -> Option<std::time::Duration> {
                $recheck
            }
            fn object(&self) -> &crate::error::ObjectName {
                self.shared.name()
            }
        }
    };
}
pub(crate) use watched_via_shared;

/// Keeps the memory a state block lives in mapped.
#[derive(Debug)]
enum Backing {
    /// A named object's own segment.
    Named(Shm),
    /// A view of the caller's segment, held only to keep it mapped.
    Embedded(#[allow(dead_code)] Mapping),
}

/// An open synchronisation object: its mapped state block and wake channel.
#[derive(Debug)]
pub(crate) struct Shared {
    block: NonNull<StateBlock>,
    wake: WakeChannel,
    /// Lent to errors without allocating.
    name: ObjectName,
    backing: Backing,
    /// Attempts made spinning before a wait sleeps.
    pub(crate) spins: u32,
    /// Ends this handle's blocked waits from another thread.
    pub(crate) interrupt: InterruptSlot,
}

// SAFETY: `block` points into memory owned by `backing`, which is Send and Sync and
// lives as long as self; all access to the block goes through atomics.
unsafe impl Send for Shared {}
// SAFETY: as for Send.
unsafe impl Sync for Shared {}

/// The block at the start of `mapping`, which the caller made at least
/// `STATE_SIZE` bytes long.
fn block_ptr(mapping: &Mapping) -> Result<NonNull<StateBlock>> {
    // atomic_u64 checks bounds, 8-byte alignment and writability.
    let first = mapping.atomic_u64(0)?;
    Ok(NonNull::from(first).cast())
}

impl Shared {
    /// Creates a named object: a segment of the kind's type holding the block
    /// (and `extra` bytes after it), initialised before anyone can open it.
    /// `lifetime`: temporary objects go with their last user; persistent ones stay
    /// until removed (`Shm::remove`), and with them their state (a dead owner).
    pub(crate) fn create_named(
        name: &str,
        init: &Init,
        open: bool,
        lifetime: Lifetime,
    ) -> Result<Shared> {
        let opts = ShmOptions::new()
            .size(STATE_SIZE + init.value.len() as u64)
            .lifetime(lifetime);
        let write = |bytes: &mut [u8]| -> std::result::Result<(), String> {
            // SAFETY: the segment layer hands out page-aligned data of the size
            // requested above, STATE_SIZE + value length.
            unsafe { write_block(bytes.as_mut_ptr().cast(), init) };
            Ok(())
        };
        let shm = opts.create_kind(name, init.kind.segment_kind(), open, write)?;
        Self::from_named(shm, init.kind, Some(init.value.len() as u32))
    }

    /// Opens a named object of `kind`.
    pub(crate) fn open_named(name: &str, kind: Kind, value_size: Option<u32>) -> Result<Shared> {
        let shm = ShmOptions::new().open_kind(name, kind.segment_kind())?;
        Self::from_named(shm, kind, value_size)
    }

    fn from_named(shm: Shm, kind: Kind, value_size: Option<u32>) -> Result<Shared> {
        // The header's data size is what was mapped; the block and the value the
        // caller expects must lie inside it.
        let needed = STATE_SIZE + value_size.unwrap_or(0) as u64;
        if (shm.len() as u64) < needed {
            return Err(Error::CorruptHeader {
                object: shm.name().into(),
                reason: format!(
                    "{} data bytes is too small for a {} of {needed} bytes",
                    shm.len(),
                    kind.name()
                ),
            });
        }
        let block = block_ptr(&shm)?;
        let wake = open_wake(shm.name(), shm.os_name(), 0)?;
        let shared = Shared {
            block,
            wake,
            name: shm.name().into(),
            backing: Backing::Named(shm),
            spins: SPINS,
            interrupt: InterruptSlot::default(),
        };
        shared.validate(kind, value_size)?;
        Ok(shared)
    }

    /// Writes a fresh state block at `offset` of `shm` and opens it.
    pub(crate) fn init_in(shm: &Shm, offset: u64, init: &Init) -> Result<Shared> {
        let view = embedded_view(shm, offset, init.value.len() as u64)?;
        let block = block_ptr(&view)?;
        // SAFETY: the view spans STATE_SIZE + value length bytes, and block_ptr
        // checked that its start is 8-byte aligned and writable.
        unsafe { write_block(block.as_ptr(), init) };
        let value_size = Some(init.value.len() as u32);
        Self::from_view(shm, offset, view, block, init.kind, value_size)
    }

    /// Opens the state block at `offset` of `shm`, which must hold a `kind`.
    pub(crate) fn open_in(
        shm: &Shm,
        offset: u64,
        kind: Kind,
        value_size: Option<u32>,
        extra: u64,
    ) -> Result<Shared> {
        let view = embedded_view(shm, offset, extra)?;
        let block = block_ptr(&view)?;
        Self::from_view(shm, offset, view, block, kind, value_size)
    }

    fn from_view(
        shm: &Shm,
        offset: u64,
        view: Mapping,
        block: NonNull<StateBlock>,
        kind: Kind,
        value_size: Option<u32>,
    ) -> Result<Shared> {
        let name = format!("{}@{offset}", shm.name());
        let shared = Shared {
            block,
            wake: open_wake(&name, shm.os_name(), offset)?,
            name: name.into(),
            backing: Backing::Embedded(view),
            spins: SPINS,
            interrupt: InterruptSlot::default(),
        };
        shared.validate(kind, value_size)?;
        Ok(shared)
    }

    fn validate(&self, kind: Kind, value_size: Option<u32>) -> Result<()> {
        let b = self.block();
        let not_ours = |reason: String| {
            Err(Error::NotShmkit {
                object: self.name.clone(),
                reason,
            })
        };
        let magic = b.magic.load(Acquire);
        if magic != STATE_MAGIC {
            return not_ours(format!(
                "no synchronisation object here (tag {magic:#010x})"
            ));
        }
        let version = b.version.load(Relaxed);
        if version != STATE_VERSION {
            return Err(Error::UnsupportedVersion {
                object: self.name.clone(),
                found: version,
                supported: STATE_VERSION,
            });
        }
        let found = b.kind.load(Relaxed);
        if found != kind as u32 {
            return Err(Error::WrongKind {
                object: self.name.clone(),
                found: Kind::from_code(found)
                    .map_or_else(|| format!("unknown kind {found}"), |k| k.name().into()),
                expected: kind.name().into(),
            });
        }
        if let Some(want) = value_size {
            let have = b.value_size.load(Relaxed);
            if have != want {
                return Err(Error::WrongKind {
                    object: self.name.clone(),
                    found: format!("mutex guarding {have} bytes"),
                    expected: format!("mutex guarding {want} bytes"),
                });
            }
        }
        Ok(())
    }

    /// Refuses a mutex whose recorded value type (if any) is not `want`.
    pub(crate) fn check_value_type(&self, want: Fingerprint, type_name: &str) -> Result<()> {
        let b = self.block();
        let found = Fingerprint {
            size: b.value_size.load(Relaxed),
            align: u32::try_from(b.reserved[1].load(Relaxed)).unwrap_or(u32::MAX),
            name_hash: b.reserved[0].load(Relaxed),
        };
        // A hash of zero: made without a type (by another program, or an older
        // shmkit); the value size was checked already.
        if found.name_hash == 0 || found == want {
            return Ok(());
        }
        Err(Error::Mismatch {
            object: self.name.clone(),
            what: "guarded value type",
            found: found.to_string(),
            asked: format!("{type_name} ({want})"),
        })
    }

    /// The state block.
    pub(crate) fn block(&self) -> &StateBlock {
        // SAFETY: validated as in bounds, aligned and writable at construction;
        // `backing` keeps it mapped for as long as self lives.
        unsafe { self.block.as_ref() }
    }

    /// Address just past the state block, where a mutex keeps its value.
    pub(crate) fn after_block(&self) -> *mut u8 {
        self.block
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(STATE_SIZE as usize)
    }

    /// The word, its waiter count and wake channel, for a wait without a thread.
    pub(crate) fn bell(&self) -> crate::readiness::Bell<'_> {
        let b = self.block();
        crate::readiness::Bell {
            word: &b.word,
            waiters: &b.waiters,
            park: &self.wake,
        }
    }

    /// The word, waiter count and wake channel, ready for the protocol.
    pub(crate) fn waitable(&self) -> Waitable<'_, AtomicU32, WakeChannel> {
        let b = self.block();
        Waitable {
            word: &b.word,
            waiters: &b.waiters,
            park: &self.wake,
            spins: self.spins,
            interrupt: self.interrupt.get(),
        }
    }

    /// Waits (with `attempt` as in [`Waitable::block_on`]) until `deadline`;
    /// [`Error::Timeout`] for `op` after that.
    pub(crate) fn wait<R>(
        &self,
        op: &'static str,
        deadline: Option<Instant>,
        timeout: Duration,
        attempt: impl FnMut() -> Attempt<R>,
    ) -> Result<R> {
        self.waitable()
            .block_on(deadline, None, attempt, |_| None)
            .map_err(|stop| self.stopped(stop, op, timeout))
    }

    /// The error for a wait that ended without a result.
    pub(crate) fn stopped(&self, stop: Stop, op: &'static str, timeout: Duration) -> Error {
        match stop {
            Stop::Deadline => Error::Timeout {
                object: self.name.clone(),
                op,
                after: timeout,
            },
            Stop::Interrupted => Error::Interrupted {
                object: self.name.clone(),
                op,
            },
        }
    }

    /// The name used in errors: the object's name, or `SEGMENT@OFFSET`.
    pub(crate) fn name(&self) -> &ObjectName {
        &self.name
    }

    /// Whether this handle created a named object (false for opened or embedded).
    pub(crate) fn created(&self) -> bool {
        match &self.backing {
            Backing::Named(shm) => shm.created(),
            Backing::Embedded(_) => false,
        }
    }

    pub(crate) fn corrupt(&self, reason: String) -> Error {
        Error::CorruptState {
            object: self.name.clone(),
            reason,
        }
    }
}

/// Writes a block: the magic cleared first, then everything else, the magic last
/// (release), so that a concurrent opener sees either no object or a complete one.
///
/// # Safety
///
/// `block` must point to `STATE_SIZE + init.value.len()` writable bytes, 8-byte
/// aligned, that stay mapped during the call.
unsafe fn write_block(block: *mut StateBlock, init: &Init) {
    // SAFETY: in bounds and aligned (caller); the block is only ever accessed
    // through atomics, so a shared reference aliases nothing else.
    let b = unsafe { &*block };
    b.magic.store(0, Relaxed);
    // SAFETY: the value's bytes follow the block inside the caller's range; the
    // source is a separate Rust value, so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            init.value.as_ptr(),
            block.cast::<u8>().add(STATE_SIZE as usize),
            init.value.len(),
        )
    };
    b.version.store(STATE_VERSION, Relaxed);
    b.kind.store(init.kind as u32, Relaxed);
    b.word.store(init.word, Relaxed);
    b.waiters.store(0, Relaxed);
    b.param_a.store(init.param_a, Relaxed);
    b.param_b.store(init.param_b, Relaxed);
    b.value_size.store(init.value.len() as u32, Relaxed);
    b.param_c.store(init.param_c, Relaxed);
    b.reserved[0].store(init.value_type.name_hash, Relaxed);
    b.reserved[1].store(init.value_type.align as u64, Relaxed);
    b.reserved[2].store(0, Relaxed);
    b.magic.store(STATE_MAGIC, Release);
}

/// Writes a fresh state block at the start of `bytes`, for objects built into a
/// segment that is still being initialised (nobody else can see it yet).
pub(crate) fn write_into(bytes: &mut [u8], init: &Init) -> std::result::Result<(), String> {
    let need = STATE_SIZE as usize + init.value.len();
    if bytes.len() < need || bytes.as_ptr() as usize % 8 != 0 {
        return Err(format!(
            "no room for a {}: {} bytes, {need} needed, 8-byte aligned",
            init.kind.name(),
            bytes.len()
        ));
    }
    // SAFETY: length and alignment checked above; the exclusive borrow means
    // nothing else in this process touches the bytes during the call.
    unsafe { write_block(bytes.as_mut_ptr().cast(), init) };
    Ok(())
}

fn embedded_view(shm: &Shm, offset: u64, extra: u64) -> Result<Mapping> {
    if offset % 8 != 0 {
        return Err(Error::InvalidSize {
            object: shm.name().into(),
            reason: format!("offset {offset} is not aligned to 8 bytes"),
        });
    }
    shm.view(offset, STATE_SIZE + extra)
}

/// The wake channel of the block at `offset` of the object `os_name`. Only Windows
/// uses the key (a named semaphore); futexes need none.
fn open_wake(object: &str, os_name: &str, offset: u64) -> Result<WakeChannel> {
    let key = name::wake_key(os_name, offset);
    WakeChannel::open(&key).map_err(|e| Error::from_io(object, "open wake channel", e, 0))
}
