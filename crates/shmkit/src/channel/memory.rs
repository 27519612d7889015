//! A channel's segment once mapped and validated: typed access to its control
//! words, its endpoint slots and the raw bytes of its ring. This and the ring
//! copies are the only places in the channel code that touch raw shared memory.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use super::doorbell::Doorbell;
use super::layout::*;
use super::ChannelOptions;
use crate::access::Access;
use crate::error::{Error, ObjectName, Result};
use crate::fingerprint::Fingerprint;
use crate::interrupt::InterruptSlot;
use crate::mapping::Mapping;
use crate::name;
use crate::segment::{Lifetime, SegmentKind};
use crate::shm::{Shm, ShmOptions};
use crate::sync::owner::{is_me, me};
use crate::sync::protocol::{Plan, Spin};
use crate::sync::Mutex;
use crate::sys::{self, FaultFlag, ProcessIdentity, WakeChannel};

/// What to create if the channel does not exist yet.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub flavour: Flavour,
    pub capacity: u64,
    pub max_message: u64,
    pub slots: u32,
    pub lifetime: Lifetime,
    pub mode: Option<u32>,
    /// What the caller set explicitly, to be checked against an existing channel.
    pub asked: Asked,
    /// Map the ring read-only (broadcast subscribers: they only read it, and a
    /// stray write of a buggy one must not corrupt what the others read).
    pub read_only_ring: bool,
}

/// The options a caller set explicitly; `None` takes what the channel has.
#[derive(Clone, Debug, Default)]
pub(crate) struct Asked {
    pub capacity: Option<u64>,
    pub max_message: Option<u64>,
    /// Senders (queue) or subscribers (broadcast): endpoint slots less one.
    pub peers: Option<u32>,
    pub message_type: Option<(Fingerprint, &'static str)>,
}

impl Asked {
    /// What `opts` set explicitly; `peers` is its senders or subscribers.
    pub(crate) fn from_options(opts: &ChannelOptions, peers: Option<u32>) -> Asked {
        Asked {
            capacity: opts.capacity,
            max_message: opts.max_message,
            peers,
            message_type: opts.message_type,
        }
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attach {
    Create,
    Open,
    CreateOrOpen,
}

/// The state of an endpoint slot as another process sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Nobody ever held the slot.
    Never,
    /// A live process holds it.
    Attached(u32),
    /// Its holder closed it.
    Left,
    /// Its holder died without closing it.
    Died(u32),
}

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
const ATTACHED: u32 = 2;
const LEFT: u32 = 3;

fn slot_word(pid: u32, state: u32) -> u64 {
    (state as u64) << 32 | pid as u64
}

/// A mapped, validated channel.
#[derive(Debug)]
pub(crate) struct ChannelMem {
    shm: Shm,
    /// The ring mapped on its own, read-only, for a broadcast subscriber; `ring`
    /// then points into it. `None`: the ring is part of `shm`'s mapping.
    ring_view: Option<Mapping>,
    /// The channel's name, lent to errors without allocating.
    object: ObjectName,
    /// Start of the data area (the channel header).
    base: NonNull<u8>,
    ring: NonNull<u8>,
    pub flavour: Flavour,
    pub capacity: u64,
    pub max_message: u64,
    pub slots: u32,
    /// The message type recorded at creation (all zero: none).
    pub message_type: Fingerprint,
    data_wake: WakeChannel,
    space_wake: WakeChannel,
    /// The truncation flags of `shm`'s mapping and of `ring_view`, looked at
    /// after every message: cheaper to read than to reach through the mappings.
    faults: [FaultFlag; 2],
    /// Ends this endpoint's blocked calls from another thread.
    interrupt: InterruptSlot,
}

// SAFETY: the pointers point into memory owned by `shm` (Send + Sync), which lives
// as long as self; shared words are only accessed through atomics, and ring bytes
// only through the copy functions below, whose callers own the range by protocol.
unsafe impl Send for ChannelMem {}
// SAFETY: as for Send.
unsafe impl Sync for ChannelMem {}

impl ChannelMem {
    /// Creates and/or opens the channel `name` and validates its header.
    pub(crate) fn attach(name: &str, how: Attach, cfg: &Config) -> Result<ChannelMem> {
        Self::attach_as(name, how, cfg, Some(cfg.flavour))
    }

    /// Opens an existing channel of any flavour, for inspection.
    pub(crate) fn open_any(name: &str) -> Result<ChannelMem> {
        let shm = ShmOptions::new().open_kind(name, SegmentKind::Channel)?;
        Self::validate(shm, None, false)
    }

    fn attach_as(
        name: &str,
        how: Attach,
        cfg: &Config,
        flavour: Option<Flavour>,
    ) -> Result<ChannelMem> {
        let shm = match how {
            Attach::Open => ShmOptions::new().open_kind(name, SegmentKind::Channel)?,
            Attach::Create | Attach::CreateOrOpen => {
                check_config(name, cfg)?;
                let ring = ring_offset(cfg.slots);
                let mut opts = ShmOptions::new()
                    .size(ring + cfg.capacity)
                    .lifetime(cfg.lifetime);
                if let Some(mode) = cfg.mode {
                    opts = opts.mode(mode);
                }
                let or_open = how == Attach::CreateOrOpen;
                opts.create_kind(name, SegmentKind::Channel, or_open, |bytes| {
                    write_header(bytes, cfg)
                })?
            }
        };
        let mem = Self::validate(shm, flavour, cfg.read_only_ring)?;
        mem.check_asked(&cfg.asked)?;
        Ok(mem)
    }

    /// Refuses a channel that differs from what the caller set explicitly.
    fn check_asked(&self, asked: &Asked) -> Result<()> {
        let mismatch = |what, found: String, asked: String| {
            Err(Error::Mismatch {
                object: self.object.clone(),
                what,
                found,
                asked,
            })
        };
        if let Some(c) = asked.capacity.filter(|&c| c != self.capacity) {
            return mismatch("capacity", self.capacity.to_string(), c.to_string());
        }
        if let Some(m) = asked.max_message.filter(|&m| m != self.max_message) {
            return mismatch("max_message", self.max_message.to_string(), m.to_string());
        }
        let peers = self.slots - 1;
        if let Some(p) = asked.peers.filter(|&p| p != peers) {
            let what = match self.flavour {
                Flavour::Queue => "max_senders",
                Flavour::Broadcast => "max_subscribers",
            };
            return mismatch(what, peers.to_string(), p.to_string());
        }
        if let Some((fp, type_name)) = asked.message_type {
            if fp != self.message_type {
                return mismatch(
                    "message type",
                    self.message_type.to_string(),
                    format!("{type_name} ({fp})"),
                );
            }
        }
        Ok(())
    }

    fn validate(shm: Shm, expected: Option<Flavour>, read_only_ring: bool) -> Result<ChannelMem> {
        let object = ObjectName::from(shm.name());
        let corrupt = |reason: String| Error::CorruptHeader {
            object: (&object).into(),
            reason,
        };
        let len = shm.len() as u64;
        if len < OFF_SLOTS_TABLE {
            return Err(corrupt(format!("{len} data bytes cannot hold a channel")));
        }
        let word = |off: u64| shm.load_u32_acquire(off);
        let magic = word(OFF_MAGIC)?;
        if magic != MAGIC {
            return Err(Error::NotShmkit {
                object,
                reason: format!("no channel header (tag {magic:#010x})"),
            });
        }
        let version = word(OFF_VERSION)?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                object,
                found: version,
                supported: VERSION,
            });
        }
        let found = word(OFF_FLAVOUR)?;
        let flavour = match (Flavour::from_code(found), expected) {
            (Some(f), None) => f,
            (Some(f), Some(e)) if f == e => f,
            (found_flavour, expected) => {
                return Err(Error::WrongKind {
                    object,
                    found: found_flavour.map_or_else(
                        || format!("channel of unknown flavour {found}"),
                        |f| f.name().into(),
                    ),
                    expected: expected.map_or("channel", |e| e.name()).into(),
                })
            }
        };
        let slots = word(OFF_SLOTS)?;
        let capacity = shm.atomic_u64(OFF_CAPACITY)?.load(Relaxed);
        let max_message = shm.atomic_u64(OFF_MAX_MESSAGE)?.load(Relaxed);
        let ring = shm.atomic_u64(OFF_RING)?.load(Relaxed);
        let message_type = Fingerprint {
            size: word(OFF_TYPE_SIZE)?,
            align: word(OFF_TYPE_ALIGN)?,
            name_hash: shm.atomic_u64(OFF_TYPE_HASH)?.load(Relaxed),
        };
        if !(2..=MAX_SLOTS).contains(&slots) {
            return Err(corrupt(format!("{slots} endpoint slots")));
        }
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(corrupt(format!("ring capacity {capacity}")));
        }
        if ring != ring_offset(slots) {
            return Err(corrupt(format!("ring at offset {ring} for {slots} slots")));
        }
        if len < ring + capacity {
            return Err(corrupt(format!(
                "{len} data bytes cannot hold a ring of {capacity} at offset {ring}"
            )));
        }
        let base = NonNull::new(shm.as_mut_ptr()?).expect("mappings are never null");
        let ring_view = if read_only_ring {
            Some(shm.view_with_access(ring, capacity, Access::ReadOnly)?)
        } else {
            None
        };
        let ring_ptr = match &ring_view {
            Some(view) => NonNull::new(view.as_ptr().cast_mut()).expect("mappings are never null"),
            // SAFETY: ring + capacity <= len was checked just above.
            None => unsafe { base.add(ring as usize) },
        };
        let wake = |off: u64| {
            WakeChannel::open(&name::wake_key(shm.os_name(), off))
                .map_err(|e| Error::from_io(shm.name(), "open wake channel", e, 0))
        };
        let faults = [
            shm.fault_flag(),
            ring_view
                .as_ref()
                .map(Mapping::fault_flag)
                .unwrap_or_default(),
        ];
        Ok(ChannelMem {
            faults,
            interrupt: InterruptSlot::default(),
            object: object.clone(),
            ring_view,
            data_wake: wake(OFF_DATA_SIGNAL)?,
            space_wake: wake(OFF_SPACE_SIGNAL)?,
            base,
            ring: ring_ptr,
            flavour,
            capacity,
            max_message,
            slots,
            message_type,
            shm,
        })
    }

    /// The channel's name.
    pub(crate) fn name(&self) -> &ObjectName {
        &self.object
    }

    #[inline]
    pub(crate) fn u64_at(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < OFF_SLOTS_TABLE + SLOT_SIZE * self.slots as u64);
        // SAFETY: every offset passed is one of the layout constants below the
        // ring (or a slot inside the table), 8-byte aligned, inside the mapping
        // (validate checked the ring follows them); shared words are atomics.
        unsafe { &*self.base.as_ptr().add(off as usize).cast::<AtomicU64>() }
    }

    #[inline]
    pub(crate) fn u32_at(&self, off: u64) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off < OFF_SLOTS_TABLE);
        // SAFETY: as for u64_at.
        unsafe { &*self.base.as_ptr().add(off as usize).cast::<AtomicU32>() }
    }

    #[inline]
    pub(crate) fn head(&self) -> &AtomicU64 {
        self.u64_at(OFF_HEAD)
    }

    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.u64_at(OFF_TAIL)
    }

    /// Messages lost to receiver crashes (see `OFF_LOST`).
    #[inline]
    pub(crate) fn lost(&self) -> &AtomicU64 {
        self.u64_at(OFF_LOST)
    }

    /// The message a receiver reads unheld (see `OFF_UNHELD`).
    #[inline]
    pub(crate) fn unheld(&self) -> &AtomicU64 {
        self.u64_at(OFF_UNHELD)
    }

    /// The doorbell receivers sleep on while there is nothing to read.
    #[inline]
    pub(crate) fn data_bell(&self) -> Doorbell<'_, AtomicU32, WakeChannel> {
        Doorbell {
            signal: self.u32_at(OFF_DATA_SIGNAL),
            waiters: self.u32_at(OFF_DATA_WAITERS),
            park: &self.data_wake,
        }
    }

    /// The doorbell senders sleep on while the ring is full.
    #[inline]
    pub(crate) fn space_bell(&self) -> Doorbell<'_, AtomicU32, WakeChannel> {
        Doorbell {
            signal: self.u32_at(OFF_SPACE_SIGNAL),
            waiters: self.u32_at(OFF_SPACE_WAITERS),
            park: &self.space_wake,
        }
    }

    /// The many-producer lock of a queue.
    pub(crate) fn producer_lock(&self) -> Result<Mutex<()>> {
        Mutex::open_in(&self.shm, OFF_LOCK)
    }

    // ---- endpoint slots ----

    fn slot(&self, i: u32) -> (&AtomicU64, &AtomicU64) {
        let off = OFF_SLOTS_TABLE + SLOT_SIZE * i.min(self.slots - 1) as u64;
        (self.u64_at(off), self.u64_at(off + 8))
    }

    /// Takes the first slot in `range` that is free, closed, or held by a dead
    /// process; `Occupied` if there is none.
    pub(crate) fn claim_slot(
        &self,
        range: std::ops::Range<u32>,
        role: &'static str,
    ) -> Result<u32> {
        let me = me();
        let mut holders = Vec::new();
        for i in range.clone() {
            let (word, start) = self.slot(i);
            let mut seen = word.load(Acquire);
            loop {
                let pid = seen as u32;
                let takeable = match (seen >> 32) as u32 {
                    ATTACHED | CLAIMING => !matches!(self.peer(i), Peer::Attached(_)),
                    _ => true,
                };
                if !takeable {
                    holders.push(pid);
                    break;
                }
                match word.compare_exchange(seen, slot_word(me.pid, CLAIMING), SeqCst, Acquire) {
                    Ok(_) => {
                        start.store(me.start_time, Relaxed);
                        word.store(slot_word(me.pid, ATTACHED), Release);
                        return Ok(i);
                    }
                    Err(now) => seen = now,
                }
            }
        }
        let reason = if range.len() == 1 {
            format!("process {} holds it", holders.first().copied().unwrap_or(0))
        } else {
            format!("all {} are held by live processes", range.len())
        };
        Err(Error::Occupied {
            object: self.name().into(),
            role,
            reason,
        })
    }

    /// Marks our slot closed.
    pub(crate) fn leave_slot(&self, i: u32) {
        let (word, _) = self.slot(i);
        let mine = slot_word(me().pid, ATTACHED);
        let _ = word.compare_exchange(mine, slot_word(me().pid, LEFT), SeqCst, Relaxed);
    }

    /// Who holds slot `i`, if an attached process does (without checking that
    /// it lives): for watching its exit.
    pub(crate) fn peer_identity(&self, i: u32) -> Option<ProcessIdentity> {
        let (word, start) = self.slot(i);
        let w = word.load(Acquire);
        ((w >> 32) as u32 == ATTACHED).then(|| ProcessIdentity {
            pid: w as u32,
            start_time: start.load(Relaxed),
        })
    }

    /// The attached processes among slots `range`, for watching their exits.
    pub(crate) fn peer_identities(&self, range: std::ops::Range<u32>) -> Vec<ProcessIdentity> {
        range.filter_map(|i| self.peer_identity(i)).collect()
    }

    /// The state of slot `i`, checking the holder's liveness.
    pub(crate) fn peer(&self, i: u32) -> Peer {
        let (word, start) = self.slot(i);
        let w = word.load(Acquire);
        let recorded = start.load(Relaxed);
        if word.load(Acquire) != w {
            // Someone is attaching or leaving right now.
            return Peer::Attached(w as u32);
        }
        let pid = w as u32;
        match (w >> 32) as u32 {
            FREE => Peer::Never,
            LEFT => Peer::Left,
            state => {
                let start_time = if state == ATTACHED { recorded } else { 0 };
                if is_me(pid, start_time) || sys::process_alive(ProcessIdentity { pid, start_time })
                {
                    Peer::Attached(pid)
                } else {
                    Peer::Died(pid)
                }
            }
        }
    }

    /// [`Error::Truncated`] once another process has shrunk the channel's
    /// object under our mapping (an access faulted, and the ring now holds
    /// zeros of our own): nothing sent or received since can be trusted.
    #[inline]
    pub(crate) fn intact(&self) -> Result<()> {
        if !self.faults[0].hit() && !self.faults[1].hit() {
            return Ok(());
        }
        self.truncated()
    }

    /// The error for a truncation seen by [`intact`](Self::intact).
    #[cold]
    fn truncated(&self) -> Result<()> {
        self.shm.after_access(0, 0)?;
        match &self.ring_view {
            Some(view) => view.after_access(0, 0),
            None => Ok(()),
        }
    }

    /// `CorruptState` naming the channel, for `reason`.
    pub(crate) fn corrupt(&self, reason: String) -> Error {
        Error::CorruptState {
            object: self.object.clone(),
            reason,
        }
    }

    /// `Disconnected`, for `reason`.
    pub(crate) fn disconnected(&self, reason: String) -> Error {
        Error::Disconnected {
            object: self.name().into(),
            reason,
        }
    }

    /// Whether slot `i` was closed (cheap: no liveness check).
    pub(crate) fn slot_left(&self, i: u32) -> bool {
        (self.slot(i).0.load(Relaxed) >> 32) as u32 == LEFT
    }

    /// The state of slot `i` as recorded, without asking whether its holder lives.
    pub(crate) fn peer_recorded(&self, i: u32) -> Peer {
        let w = self.slot(i).0.load(Acquire);
        match (w >> 32) as u32 {
            FREE => Peer::Never,
            LEFT => Peer::Left,
            _ => Peer::Attached(w as u32),
        }
    }

    /// The holders of slots `range` that are attached and alive.
    pub(crate) fn live_peers(&self, range: std::ops::Range<u32>) -> Vec<u32> {
        range
            .filter_map(|i| match self.peer(i) {
                Peer::Attached(pid) => Some(pid),
                _ => None,
            })
            .collect()
    }

    // ---- ring bytes ----

    /// Stores a record header at ring offset `idx` (8-byte aligned, inside), after
    /// everything written before it (release): a receiver that sees the header
    /// sees the record.
    #[inline]
    pub(crate) fn store_header(&self, idx: u64, header: u64) {
        self.ring_word(idx).store(header, Release);
    }

    /// Loads the record header at ring offset `idx` (acquire).
    #[inline]
    pub(crate) fn load_header(&self, idx: u64) -> u64 {
        self.ring_word(idx).load(Acquire)
    }

    /// The header word of the record at ring *position* `pos` (not an offset):
    /// the position is wrapped onto the ring and rounded down to a word, so the
    /// word is inside the ring and aligned by construction, with no check to pay
    /// on the hot paths. Positions are multiples of 8 (validated where they come
    /// from shared memory), so the rounding never changes a valid one.
    #[inline(always)]
    pub(crate) fn header_at(&self, pos: u64) -> &AtomicU64 {
        // The capacity is a power of two of at least 256 (validated at attach).
        let idx = pos & (self.capacity - 8);
        // SAFETY: idx <= capacity - 8 and is a multiple of 8; the ring lies inside
        // the mapping and starts on a 64-byte boundary.
        unsafe { &*self.ring.as_ptr().add(idx as usize).cast::<AtomicU64>() }
    }

    #[inline]
    fn ring_word(&self, idx: u64) -> &AtomicU64 {
        assert!(idx % 8 == 0 && idx + 8 <= self.capacity, "ring word {idx}");
        // SAFETY: in bounds (asserted; the ring lies inside the mapping) and
        // 8-byte aligned (the ring starts on a 64-byte boundary).
        unsafe { &*self.ring.as_ptr().add(idx as usize).cast::<AtomicU64>() }
    }

    /// Copies `data` into the ring at `idx`.
    #[inline]
    pub(crate) fn write(&self, idx: u64, data: &[u8]) {
        self.check_range(idx, data.len());
        debug_assert!(self.ring_view.is_none(), "a write to a read-only ring");
        // SAFETY: the range is inside the ring (checked); the caller owns it by
        // protocol (between its unpublished head and the reader's tail), and the
        // source is our own memory, so they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ring.as_ptr().add(idx as usize),
                data.len(),
            )
        }
    }

    /// Copies a record's payload into the ring after its header at `idx`: the
    /// part beyond the header's cache line first, the part on that line last, so
    /// that the header store that follows finds the line still owned.
    #[inline]
    pub(crate) fn write_payload(&self, idx: u64, data: &[u8]) {
        let start = idx + RECORD_HEADER;
        self.check_range(start, data.len());
        debug_assert!(self.ring_view.is_none(), "a write to a read-only ring");
        let on_header_line = ((idx | 63) + 1 - start).min(data.len() as u64) as usize;
        let (near, far) = data.split_at(on_header_line);
        // SAFETY: `start..start + data.len()` is inside the ring (checked above)
        // and owned by the caller by protocol, as for `write`; the source is our
        // own memory.
        unsafe {
            let dst = self.ring.as_ptr().add(start as usize);
            std::ptr::copy_nonoverlapping(far.as_ptr(), dst.add(near.len()), far.len());
            std::ptr::copy_nonoverlapping(near.as_ptr(), dst, near.len());
        }
    }

    /// Copies ring bytes at `idx` into `out`.
    ///
    /// The source may be written by another process while it is copied: in a
    /// queue only by a writer that breaks the protocol; in a broadcast channel by
    /// the publisher itself, which overwrites the ring without waiting for anyone.
    /// The copy may then be torn (old and new bytes mixed). Callers never trust
    /// such a copy: a queue validates what it parses, and a broadcast subscriber
    /// uses a copy only after checking, behind an acquire fence, that the
    /// publisher's claim had not yet reached the range (the seqlock read).
    #[inline]
    pub(crate) fn read(&self, idx: u64, out: &mut [u8]) {
        self.check_range(idx, out.len());
        // What a racing writer changes is only which bytes arrive, as in every
        // seqlock (crossbeam's `AtomicCell` fallback makes the same bet): the ring
        // lives in a mapping that the other process writes outside this program's
        // view, the copy yields some bytes, and the callers discard torn ones.
        // SAFETY: inside the ring (checked); `out` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ring.as_ptr().add(idx as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// Appends ring bytes at `idx` to `out`; may be torn as [`read`](Self::read)
    /// says, and is trusted no more.
    pub(crate) fn append(&self, idx: u64, len: usize, out: &mut Vec<u8>) {
        self.check_range(idx, len);
        out.reserve(len);
        // A racing writer changes only which bytes arrive (see `read`). `reserve`
        // made room for `len` more bytes, initialised by the copy before `set_len`.
        // SAFETY: the source is inside the ring (checked); the room is reserved.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ring.as_ptr().add(idx as usize),
                out.as_mut_ptr().add(out.len()),
                len,
            );
            out.set_len(out.len() + len);
        }
    }

    /// The ring bytes `idx..idx + len`.
    ///
    /// # Safety
    ///
    /// Nobody may write the range while the slice lives: the caller holds it by
    /// protocol (reserved and unpublished, or published and not yet released).
    #[inline]
    pub(crate) unsafe fn slice(&self, idx: u64, len: usize) -> &[u8] {
        self.check_range(idx, len);
        // SAFETY: inside the ring (checked); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ring.as_ptr().add(idx as usize), len) }
    }

    /// The ring bytes `idx..idx + len`, writable.
    ///
    /// # Safety
    ///
    /// As for [`slice`](Self::slice), and no other reference to the range may live.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn slice_mut(&self, idx: u64, len: usize) -> &mut [u8] {
        self.check_range(idx, len);
        // SAFETY: inside the ring (checked); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ring.as_ptr().add(idx as usize), len) }
    }

    #[inline]
    fn check_range(&self, idx: u64, len: usize) {
        // Callers validate every index and length read from shared memory before
        // coming here; this catches our own mistakes, never a peer's.
        assert!(
            idx <= self.capacity && len as u64 <= self.capacity - idx,
            "ring range {idx}+{len} outside {}",
            self.capacity
        );
    }

    /// The plan of a wait until `deadline` that spins for `spin` (`None`: busy
    /// poll), checks the peer every [`CHECK_EVERY`] and ends when this
    /// endpoint's interrupter is raised.
    pub(crate) fn plan(
        &self,
        spin: Option<Duration>,
        deadline: Option<std::time::Instant>,
    ) -> Plan<'_> {
        Plan {
            spin: spin.map_or(Spin::Forever, Spin::For),
            deadline,
            check_every: Some(CHECK_EVERY),
            interrupt: self.interrupt.get(),
        }
    }

    /// This endpoint's [`Interrupter`](crate::Interrupter).
    pub(crate) fn interrupter(&self) -> crate::Interrupter {
        self.interrupt.interrupter()
    }

    /// This endpoint's interrupt state, to share with the parts of one object.
    pub(crate) fn interrupt_slot(&self) -> &InterruptSlot {
        &self.interrupt
    }
}

/// How often a blocked call checks that its peer still lives: the bound on how
/// long a dead peer goes unnoticed.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(50);

fn check_config(object: &str, cfg: &Config) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::InvalidSize {
            object: object.into(),
            reason,
        })
    };
    if !cfg.capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cfg.capacity) {
        return bad(format!(
            "ring capacity {} is not a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}",
            cfg.capacity
        ));
    }
    if !(2..=MAX_SLOTS).contains(&cfg.slots) {
        return Err(Error::InvalidArgument {
            object: object.into(),
            reason: format!(
                "{} endpoints; 1 to {} are possible",
                cfg.slots - 1,
                MAX_SLOTS - 1
            ),
        });
    }
    Ok(())
}

/// Writes a fresh channel header into the data area of a segment being created.
fn write_header(bytes: &mut [u8], cfg: &Config) -> std::result::Result<(), String> {
    let ring = ring_offset(cfg.slots) as usize;
    if bytes.len() < ring {
        return Err(format!("{} bytes cannot hold a channel", bytes.len()));
    }
    bytes[..ring].fill(0);
    let mut put = |off: u64, value: &[u8]| {
        bytes[off as usize..off as usize + value.len()].copy_from_slice(value)
    };
    put(OFF_VERSION, &VERSION.to_le_bytes());
    put(OFF_FLAVOUR, &(cfg.flavour as u32).to_le_bytes());
    put(OFF_SLOTS, &cfg.slots.to_le_bytes());
    put(OFF_CAPACITY, &cfg.capacity.to_le_bytes());
    put(OFF_MAX_MESSAGE, &cfg.max_message.to_le_bytes());
    put(OFF_RING, &(ring as u64).to_le_bytes());
    if let Some((fp, _)) = cfg.asked.message_type {
        put(OFF_TYPE_SIZE, &fp.size.to_le_bytes());
        put(OFF_TYPE_ALIGN, &fp.align.to_le_bytes());
        put(OFF_TYPE_HASH, &fp.name_hash.to_le_bytes());
    }
    put(OFF_MAGIC, &MAGIC.to_le_bytes());
    Mutex::<()>::init_bytes(&mut bytes[OFF_LOCK as usize..OFF_SLOTS_TABLE as usize], ())
}
