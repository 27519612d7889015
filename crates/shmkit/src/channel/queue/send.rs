//! The sending end of a queue: the write cursor, the fast and general send
//! paths, fragmentation, zero-copy reservations and the many-sender lock.

use std::sync::atomic::Ordering::{Release, SeqCst};
use std::time::{Duration, Instant};

use super::open_queue;
use crate::channel::layout::*;
use crate::channel::memory::{ChannelMem, Peer, CHECK_EVERY};
use crate::channel::wait::{spin_of, Deadline};
use crate::channel::{ChannelOptions, WaitMode};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{AsyncWait, Bell, Bells, OpFuture, Watched};
use crate::sync::protocol::Stop;
use crate::sync::{LockError, Mutex, MutexGuard};

mod fragments_async;

/// The sending end of a queue channel.
///
/// Created by [`ChannelOptions::sender`] (or [`Sender::connect`]). A channel made
/// with [`max_senders`](ChannelOptions::max_senders) above 1 takes that many
/// senders, in any processes; otherwise a second live sender is refused with
/// [`Error::Occupied`]. A sender may take over the place of one that died.
///
/// ```
/// use shmkit::channel::{Receiver, Sender};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-sender-{}", std::process::id());
/// let mut tx = Sender::connect(&name)?;
/// let mut rx = Receiver::connect(&name)?;
/// std::thread::scope(|s| {
///     s.spawn(move || -> shmkit::Result<()> {
///         tx.send(b"hello")?;
///         // Far larger than the 1 MiB ring: sent in fragments as the receiver
///         // makes room, delivered whole.
///         tx.send(&vec![7u8; 5_000_000])
///     });
///     assert_eq!(rx.recv()?, b"hello");
///     assert_eq!(rx.recv()?.len(), 5_000_000);
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug)]
pub struct Sender {
    /// The wait of `poll_send`, kept between polls. Declared first: it points
    /// into `mem` and must go before it.
    waiting: AsyncWait,
    /// When an async send first found no room (the receiver's death is looked
    /// for every CHECK_EVERY after that).
    full_since: Option<Instant>,
    /// A wait set found the receiver gone: the next `try_send` that finds no
    /// room looks at once.
    check_now: std::sync::atomic::AtomicBool,
    mem: ChannelMem,
    cursor: WriteCursor,
    slot: u32,
    lock: Option<Mutex<()>>,
    spin: Option<Duration>,
    /// The longest message the fast path takes (one record, within the
    /// channel's maximum); `None` with the producer lock, which it never takes.
    fast_max: Option<u64>,
}

/// The sender's view of the ring: its own head and the last tail it saw.
#[derive(Debug)]
struct WriteCursor {
    head: u64,
    cached_tail: u64,
}

impl WriteCursor {
    /// Loads and checks the shared head and tail (attach, or after taking the
    /// producer lock). With `roll_forward` (the previous sender may have died),
    /// records that were written whole but whose head update died with their
    /// sender are counted as published: the receiver may be reading them already.
    fn load(mem: &ChannelMem, roll_forward: bool) -> Result<WriteCursor> {
        let cap = mem.capacity;
        let head = mem.head().load(SeqCst);
        let tail = mem.tail().load(SeqCst);
        if !is_position(head) || !is_position(tail) || head.abs_diff(tail) > cap {
            return Err(mem.corrupt(format!(
                "head {head} and tail {tail} do not describe a ring of {cap}"
            )));
        }
        // The receiver reads stamped records without waiting for the head, so it
        // may be past a head that a dead sender did not get to move.
        let mut head = head.max(tail);
        if roll_forward {
            while head - tail < cap {
                let idx = head & (cap - 1);
                let size = match Header::decode(mem.load_header(idx), head) {
                    Header::Record(Tag::Pad, _) => cap - idx,
                    Header::Record(_, len) => RECORD_HEADER + align8(len as u64),
                    Header::NotYet | Header::Bad(_) => break,
                };
                if size > cap - idx || size > cap - (head - tail) {
                    break;
                }
                head += size;
            }
            mem.head().fetch_max(head, SeqCst);
        }
        Ok(WriteCursor {
            head,
            cached_tail: tail,
        })
    }

    /// Makes room for a record of `len` payload bytes at the head, padding to the
    /// ring's end first if the record would not fit before it. `None` if the ring
    /// lacks the room now. Returns the record's ring offset.
    #[inline]
    fn try_reserve(&mut self, mem: &ChannelMem, len: u64) -> Result<Option<u64>> {
        let cap = mem.capacity;
        let need = RECORD_HEADER + align8(len);
        let idx = self.head & (cap - 1);
        let to_end = cap - idx;
        let mut pad = if need > to_end { to_end } else { 0 };
        if pad == 0 && idx != 0 && need >= REWIND_MIN && self.ring_is_empty(mem)? {
            // Nothing is queued: start the ring over rather than go on into
            // memory no cache holds (see REWIND_MIN).
            if to_end + need + RECORD_HEADER <= cap {
                pad = to_end;
            }
        }
        if cap - (self.head - self.cached_tail) < pad + need {
            let tail = self.fresh_tail(mem)?;
            if cap - (self.head - tail) < pad + need {
                return Ok(None);
            }
        }
        if pad > 0 {
            let header = Tag::Pad.encode((pad - RECORD_HEADER) as u32, self.head);
            mem.store_header(idx, header);
            self.head += pad;
        }
        // A zero word after the record, so that the receiver, reading on, finds
        // "nothing yet" rather than a header left from a much earlier lap. Written
        // now, before the payload: the receiver polls the header's cache line, and
        // the fewer other lines the sender touches between writing that line's
        // payload and its header, the less that line moves back and forth.
        let end = self.head + need;
        if cap - (end - self.cached_tail) >= RECORD_HEADER {
            mem.store_header(end & (cap - 1), 0);
        }
        Ok(Some(self.head & (cap - 1)))
    }

    /// Whether the receiver has released everything sent (a fresh look at the
    /// shared tail).
    fn ring_is_empty(&mut self, mem: &ChannelMem) -> Result<bool> {
        Ok(self.fresh_tail(mem)? == self.head)
    }

    /// Loads and checks the shared tail, and keeps it as the cached one: it can
    /// only have moved forward from there, and never past our head.
    fn fresh_tail(&mut self, mem: &ChannelMem) -> Result<u64> {
        let tail = mem.tail().load(SeqCst);
        if tail < self.cached_tail || tail > self.head || !is_position(tail) {
            return Err(mem.corrupt(format!(
                "tail {tail} outside {}..={}",
                self.cached_tail, self.head
            )));
        }
        self.cached_tail = tail;
        Ok(tail)
    }

    /// The fast path of a one-record message: appends it if it fits before the
    /// ring's end with room for the zero word after it, by the tail last seen.
    /// `false` writes nothing and leaves the rest (pads, a fresh look at the
    /// tail) to `try_reserve`.
    #[inline(always)]
    fn try_append(&mut self, mem: &ChannelMem, msg: &[u8]) -> bool {
        let Some(idx) = self.try_room(mem, msg.len() as u64) else {
            return false;
        };
        mem.write_payload(idx, msg);
        self.publish(mem, Tag::Single, msg.len() as u64);
        true
    }

    /// The fast half of `try_reserve`: room for a record of `len` payload bytes
    /// before the ring's end and for the zero word after it, by the tail last
    /// seen. Returns the record's ring offset; `None` leaves the rest (pads, a
    /// fresh look at the tail) to `try_reserve`.
    #[inline(always)]
    fn try_room(&mut self, mem: &ChannelMem, len: u64) -> Option<u64> {
        let cap = mem.capacity;
        let size = RECORD_HEADER + align8(len);
        let head = self.head;
        let idx = head & (cap - 1);
        if size > cap - idx
            || size + RECORD_HEADER > cap - (head - self.cached_tail)
            || size >= REWIND_MIN
        {
            return None;
        }
        // The zero word first, as in `try_reserve`.
        mem.header_at(head + size).store(0, Release);
        Some(idx)
    }

    /// Publishes the record at the head: its header, then the new head.
    #[inline]
    fn publish(&mut self, mem: &ChannelMem, tag: Tag, len: u64) {
        let pos = self.head;
        let end = pos + RECORD_HEADER + align8(len);
        mem.header_at(pos)
            .store(tag.encode(len as u32, pos), Release);
        self.head = end;
        mem.head().swap(end, SeqCst);
        mem.data_bell().ring();
    }

    /// Reserves, waiting for room until `deadline`.
    fn reserve(
        &mut self,
        mem: &ChannelMem,
        len: u64,
        deadline: Deadline,
        spin: Option<Duration>,
    ) -> Result<u64> {
        if let Some(idx) = self.try_reserve(mem, len)? {
            return Ok(idx);
        }
        if let Some(gone) = receiver_gone(mem, false) {
            return Err(gone);
        }
        if matches!(deadline, Deadline::Now) {
            return Err(deadline.expired(mem.name(), "send"));
        }
        let plan = mem.plan(spin, deadline.instant());
        let ready = |_thorough| match self.try_reserve(mem, len) {
            Ok(Some(idx)) => Some(Ok(idx)),
            Ok(None) if mem.slot_left(0) => receiver_gone(mem, false).map(Err),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        mem.space_bell()
            .wait(&plan, ready, || receiver_gone(mem, true).map(Err))
            .unwrap_or_else(|stop| Err(deadline.stopped(stop, mem.name(), "send")))
    }
}

/// Records this large go to the ring's start when the ring is empty and they
/// fit before the point where the head stands (a pad fills the rest of the lap). Request/response traffic then reuses the same
/// memory, still in the caches of both sides, instead of walking the whole
/// ring; a stream, which never empties the ring, is unaffected. Smaller records
/// go on where they are: for them, the extra look at the shared tail and the
/// pad would cost more than the cache misses they save.
const REWIND_MIN: u64 = 16 << 10;

/// `Disconnected` if the receiver closed its end (or, with `check_alive`, died).
fn receiver_gone(mem: &ChannelMem, check_alive: bool) -> Option<Error> {
    if let Err(truncated) = mem.intact() {
        return Some(truncated);
    }
    let peer = if check_alive {
        mem.peer(0)
    } else if mem.slot_left(0) {
        Peer::Left
    } else {
        return None;
    };
    let reason = match peer {
        Peer::Left => "the receiver closed the channel".to_owned(),
        Peer::Died(pid) => format!("the receiver (process {pid}) died"),
        Peer::Never | Peer::Attached(_) => return None,
    };
    Some(mem.disconnected(reason))
}

impl Sender {
    /// Ends this sender's blocked calls (waiting for room, or for the other
    /// senders' lock) from another thread: they return
    /// [`Error::Interrupted`], and so do later waits until
    /// [`Interrupter::clear`](crate::Interrupter::clear). A long message whose
    /// fragments were partly sent is abandoned, as at a timeout.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.mem.interrupter()
    }

    pub(crate) fn interrupt_slot(&self) -> &crate::interrupt::InterruptSlot {
        self.mem.interrupt_slot()
    }

    /// Opens the channel `name` as a sender, creating it with default options if
    /// it does not exist yet: [`ChannelOptions::new`]`.sender(name)`.
    pub fn connect(name: &str) -> Result<Sender> {
        ChannelOptions::new().sender(name)
    }

    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Sender> {
        let mem = open_queue(name, opts)?;
        let slot = mem.claim_slot(1..mem.slots, "sender")?;
        let lock = if mem.slots > 2 {
            let lock = mem.producer_lock()?;
            lock.link_interrupt(mem.interrupt_slot());
            Some(lock)
        } else {
            // The only sender is the only one that sleeps on the space doorbell:
            // a count left there was leaked by a sender that died asleep.
            mem.space_bell().forget_waiters();
            None
        };
        let cursor = match WriteCursor::load(&mem, true) {
            Ok(c) => c,
            Err(e) => {
                mem.leave_slot(slot);
                return Err(e);
            }
        };
        let fast_max = match lock {
            Some(_) => None,
            None => Some(max_record(mem.capacity).min(mem.max_message)),
        };
        // A receiver waiting without a thread watches the senders it knows of
        // for their exit: let it look again and see this one.
        mem.data_bell().ring();
        Ok(Sender {
            waiting: AsyncWait::default(),
            full_since: None,
            check_now: std::sync::atomic::AtomicBool::new(false),
            mem,
            cursor,
            slot,
            lock,
            spin: spin_of(opts.wait),
            fast_max,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.mem.name()
    }

    /// Bytes in the ring.
    pub fn capacity(&self) -> u64 {
        self.mem.capacity
    }

    /// The longest message the channel accepts.
    pub fn max_message(&self) -> u64 {
        self.mem.max_message
    }

    /// The longest message that fits one record: the limit of
    /// [`reserve`](Self::reserve) and [`try_send`](Self::try_send) (a quarter of
    /// the ring, less an 8-byte header). Longer messages are fragmented by
    /// [`send`](Self::send).
    pub fn max_record(&self) -> u64 {
        max_record(self.mem.capacity)
    }

    /// Changes how blocking calls wait.
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        self.spin = spin_of(mode);
    }

    /// Whether a live receiver is attached now.
    pub fn receiver_connected(&self) -> bool {
        matches!(self.mem.peer(0), Peer::Attached(_))
    }

    /// Sends `msg` (any length up to [`max_message`](Self::max_message)), waiting
    /// for room as long as it takes.
    ///
    /// Like a POSIX message queue, the channel outlives its receiver: a message
    /// that fits is queued for the next receiver to attach. A send that has to
    /// wait for room fails with [`Error::Disconnected`] if the receiver has closed
    /// its end or dies while it waits (noticed within 50 ms): nobody would make
    /// room.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.send_now(msg) {
            return self.mem.intact();
        }
        self.send_slow(msg, Deadline::Never)
    }

    /// Sends `msg` only if it fits the free space now, without waiting:
    /// [`Error::WouldBlock`] if it does not, [`Error::TooLong`] for messages
    /// longer than [`max_record`](Self::max_record), which only [`send`](Self::send)
    /// and [`send_timeout`](Self::send_timeout) can carry.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        if self.send_now(msg) {
            return self.mem.intact();
        }
        self.send_slow(msg, Deadline::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room; [`Error::Timeout`] after
    /// that. A long message that timed out halfway is not delivered at all.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        if self.send_now(msg) {
            return self.mem.intact();
        }
        self.send_slow(msg, Deadline::after(timeout))
    }

    /// Everything the fast path leaves: out of line, so that the fast path stays
    /// a small function (this one saves and restores far more registers).
    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        if matches!(deadline, Deadline::Now) {
            self.check_len(msg.len() as u64, self.max_record())?;
        }
        let sent = self.send_until(msg, deadline);
        self.mem.intact()?;
        if matches!(&sent, Err(e) if e.is_would_block()) && self.check_now.swap(false, SeqCst) {
            if let Some(gone) = receiver_gone(&self.mem, true) {
                return Err(gone);
            }
        }
        sent
    }

    /// The fast path: a one-record message on a one-sender channel with room for
    /// it now. `false` sends nothing and leaves the rest (waiting, fragments, the
    /// lock, every error) to the general path.
    #[inline]
    fn send_now(&mut self, msg: &[u8]) -> bool {
        match self.fast_max {
            Some(max) if msg.len() as u64 <= max => self.cursor.try_append(&self.mem, msg),
            _ => false,
        }
    }

    /// Reserves `len` bytes in the ring for a message that the caller writes in
    /// place (zero-copy) and then [`commit`](Reservation::commit)s. Waits for room.
    /// At most [`max_record`](Self::max_record) bytes.
    ///
    /// For streams of small messages prefer [`send_with`](Self::send_with): the
    /// same zero-copy write in one call, measured 3-4x faster than
    /// `reserve`/`commit` at 64 bytes (`BENCHMARKS.md`).
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-reserve-{}", std::process::id());
    /// # let mut tx = Sender::connect(&name)?;
    /// # let mut rx = Receiver::connect(&name)?;
    /// let mut slot = tx.reserve(7)?;
    /// slot.copy_from_slice(b"in-situ");
    /// slot.commit();
    /// assert_eq!(rx.recv()?, b"in-situ");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::Never)
    }

    /// [`reserve`](Self::reserve) without waiting: [`Error::WouldBlock`] if the
    /// ring lacks the room now.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::Now)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    #[inline]
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::after(timeout))
    }

    /// [`reserve`](Self::reserve) for a reservation that owns its sender (no
    /// lifetime), for code that keeps it between calls, as the C ABI and the
    /// Python package do. [`OwnedReservation::commit`] and
    /// [`cancel`](OwnedReservation::cancel) give the sender back; on failure it
    /// comes back with the error.
    ///
    /// ```
    /// # fn main() -> shmkit::Result<()> {
    /// use shmkit::channel::ChannelOptions;
    /// # let name = format!("doc-reserve-owned-{}", std::process::id());
    /// let mut rx = ChannelOptions::new().receiver(&name)?;
    /// let tx = ChannelOptions::new().sender(&name)?;
    /// let mut slot = tx.reserve_owned(5).map_err(|(_, e)| e)?;
    /// slot.copy_from_slice(b"hello");
    /// let _tx = slot.commit();
    /// assert_eq!(rx.recv()?, b"hello");
    /// # Ok(()) }
    /// ```
    // Ok holds the sender too: boxing the error would not shrink the result.
    #[allow(clippy::result_large_err)]
    pub fn reserve_owned(
        self,
        len: usize,
    ) -> std::result::Result<OwnedReservation, (Sender, Error)> {
        self.reserve_owned_until(len, Deadline::Never)
    }

    /// [`try_reserve`](Self::try_reserve) for an [`OwnedReservation`].
    // Ok holds the sender too: boxing the error would not shrink the result.
    #[allow(clippy::result_large_err)]
    pub fn try_reserve_owned(
        self,
        len: usize,
    ) -> std::result::Result<OwnedReservation, (Sender, Error)> {
        self.reserve_owned_until(len, Deadline::Now)
    }

    /// [`reserve_timeout`](Self::reserve_timeout) for an [`OwnedReservation`].
    // Ok holds the sender too: boxing the error would not shrink the result.
    #[allow(clippy::result_large_err)]
    pub fn reserve_owned_timeout(
        self,
        len: usize,
        timeout: Duration,
    ) -> std::result::Result<OwnedReservation, (Sender, Error)> {
        self.reserve_owned_until(len, Deadline::after(timeout))
    }

    // Ok holds the sender too: boxing the error would not shrink the result.
    #[allow(clippy::result_large_err)]
    fn reserve_owned_until(
        mut self,
        len: usize,
        deadline: Deadline,
    ) -> std::result::Result<OwnedReservation, (Sender, Error)> {
        let reserved = self.reserve_until(len, deadline).map(Reservation::detach);
        let (idx, locked) = match reserved {
            Ok(found) => found,
            Err(e) => return Err((self, e)),
        };
        Ok(OwnedReservation {
            sender: std::mem::ManuallyDrop::new(self),
            idx,
            len,
            locked,
        })
    }

    /// Sends a message of `len` bytes written in place: `f` fills the bytes
    /// reserved in the ring (whatever they held before), then the message is
    /// sent; returns what `f` returns. The closure form of
    /// [`reserve`](Self::reserve) and [`commit`](Reservation::commit), with no
    /// reservation to hold or to forget. Waits for room; at most
    /// [`max_record`](Self::max_record) bytes. If `f` panics, nothing is sent.
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-send-with-{}", std::process::id());
    /// # let mut tx = Sender::connect(&name)?;
    /// # let mut rx = Receiver::connect(&name)?;
    /// let reading = 21.5f64;
    /// tx.send_with(16, |bytes| {
    ///     bytes[..8].copy_from_slice(&7u64.to_le_bytes()); // sensor id
    ///     bytes[8..].copy_from_slice(&reading.to_le_bytes());
    /// })?;
    /// assert_eq!(rx.recv()?.len(), 16);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn send_with<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.send_with_until(len, Deadline::Never, f)
    }

    /// [`send_with`](Self::send_with) without waiting: [`Error::WouldBlock`] if
    /// the ring lacks the room now (`f` is then not called).
    #[inline]
    pub fn try_send_with<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.send_with_until(len, Deadline::Now, f)
    }

    #[inline]
    fn send_with_until<R>(
        &mut self,
        len: usize,
        deadline: Deadline,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        if matches!(self.fast_max, Some(max) if len as u64 <= max) {
            if let Some(idx) = self.cursor.try_room(&self.mem, len as u64) {
                self.mem.intact()?;
                // SAFETY: reserved past the published head: no conforming
                // process reads or writes it before the header below.
                let r = f(unsafe { self.mem.slice_mut(idx + RECORD_HEADER, len) });
                self.cursor.publish(&self.mem, Tag::Single, len as u64);
                return Ok(r);
            }
        }
        let mut slot = self.reserve_slow(len, deadline)?;
        let r = f(&mut slot);
        slot.commit();
        Ok(r)
    }

    /// Sends a plain-old-data value as its bytes.
    pub fn send_pod<T: bytemuck::NoUninit>(&mut self, value: &T) -> Result<()> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Sends `value` encoded with postcard.
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(|e| Error::Decode {
            object: self.name().into(),
            reason: format!("cannot encode {}: {e}", std::any::type_name::<T>()),
        })?;
        self.send(&bytes)
    }

    fn check_len(&self, len: u64, max: u64) -> Result<()> {
        if len > max {
            return Err(Error::TooLong {
                object: self.name().into(),
                len,
                max,
            });
        }
        Ok(())
    }

    #[inline]
    fn reserve_until(&mut self, len: usize, deadline: Deadline) -> Result<Reservation<'_>> {
        if matches!(self.fast_max, Some(max) if len as u64 <= max) {
            if let Some(idx) = self.cursor.try_room(&self.mem, len as u64) {
                self.mem.intact()?;
                return Ok(Reservation {
                    mem: &self.mem,
                    cursor: &mut self.cursor,
                    idx,
                    len,
                    committed: false,
                    _guard: None,
                });
            }
        }
        self.reserve_slow(len, deadline)
    }

    #[inline(never)]
    fn reserve_slow(&mut self, len: usize, deadline: Deadline) -> Result<Reservation<'_>> {
        self.check_len(len as u64, self.max_record())?;
        let guard = lock(&self.mem, self.lock.as_ref(), &mut self.cursor, deadline)?;
        let idx = self
            .cursor
            .reserve(&self.mem, len as u64, deadline, self.spin)?;
        self.mem.intact()?;
        Ok(Reservation {
            mem: &self.mem,
            cursor: &mut self.cursor,
            idx,
            len,
            committed: false,
            _guard: guard,
        })
    }

    fn send_until(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        let len = msg.len() as u64;
        self.check_len(len, self.mem.max_message)?;
        let mem = &self.mem;
        let _guard = lock(mem, self.lock.as_ref(), &mut self.cursor, deadline)?;
        let cursor = &mut self.cursor;
        let max_rec = max_record(mem.capacity);
        if len <= max_rec {
            let idx = cursor.reserve(mem, len, deadline, self.spin)?;
            mem.write_payload(idx, msg);
            cursor.publish(mem, Tag::Single, len);
            return Ok(());
        }
        // Fragments: the first carries the total length ahead of its data.
        let mut sent = 0usize;
        let mut first = true;
        while sent < msg.len() {
            let prefix = if first { 8 } else { 0 };
            let mut want = (msg.len() - sent) as u64 + prefix;
            want = want.min(max_rec);
            // Cut the fragment at the ring's end rather than pad, if what fits there
            // is at least half a fragment.
            let to_end = mem.capacity - (cursor.head & (mem.capacity - 1)) - RECORD_HEADER;
            if want > to_end && to_end * 2 >= want && to_end > prefix {
                want = to_end;
            }
            let idx = cursor.reserve(mem, want, deadline, self.spin)?;
            let payload = idx + RECORD_HEADER;
            if first {
                mem.write(payload, &len.to_le_bytes());
            }
            let chunk = (want - prefix) as usize;
            mem.write(payload + prefix, &msg[sent..sent + chunk]);
            sent += chunk;
            let tag = if first {
                Tag::First
            } else if sent == msg.len() {
                Tag::Last
            } else {
                Tag::Middle
            };
            cursor.publish(mem, tag, want);
            first = false;
        }
        Ok(())
    }
}

/// Takes the producer lock of a many-sender channel and re-reads the shared head,
/// which other senders move. A sender that died holding the lock left nothing
/// visible behind (the head moves only over whole records), so its death is not
/// an error here.
fn lock<'a>(
    mem: &ChannelMem,
    lock: Option<&'a Mutex<()>>,
    cursor: &mut WriteCursor,
    deadline: Deadline,
) -> Result<Option<MutexGuard<'a, ()>>> {
    let Some(lock) = lock else {
        return Ok(None);
    };
    let taken = match deadline {
        Deadline::Never => lock.lock(),
        Deadline::Now => lock.try_lock(),
        Deadline::At(at, _) => lock.lock_timeout(at.saturating_duration_since(Instant::now())),
    };
    let (guard, died) = match taken {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(mut g)) => {
            g.mark_consistent();
            (g, true)
        }
        Err(LockError::Failed(e)) if e.is_timeout() || e.is_would_block() => {
            return Err(deadline.expired(mem.name(), "send"))
        }
        Err(LockError::Failed(e)) if e.is_interrupted() => {
            return Err(deadline.stopped(Stop::Interrupted, mem.name(), "send"))
        }
        Err(LockError::Failed(e)) => return Err(e),
    };
    *cursor = WriteCursor::load(mem, died)?;
    Ok(Some(guard))
}

/// Awaiting room: the same send, without a thread.
impl Sender {
    /// [`send`](Self::send) as a future: waits for room without a thread.
    /// Messages of any length up to [`max_message`](Self::max_message).
    ///
    /// Cancel safety: a message of up to [`max_record`](Self::max_record)
    /// bytes is written whole in the poll that finds room, or not at all:
    /// dropping the future before it completes sends nothing. A longer message
    /// goes out in fragments over several polls; dropped halfway, it is not
    /// delivered at all (the receiver drops the unfinished message when the
    /// next one starts, as after a [`send_timeout`](Self::send_timeout) that
    /// timed out halfway). A receiver that closes or dies while the sender
    /// waits ends the wait with [`Error::Disconnected`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<()> {
        if msg.len() as u64 > self.max_record() {
            return self
                .send_fragments_async(msg, None, || unreachable!())
                .await;
        }
        OpFuture::new(self, "send", move |tx: &mut &mut Sender| {
            tx.try_send_noticing_death(msg)
        })
        .await
    }

    /// Polls to send `msg` (as [`send_async`](Self::send_async) does): `Ready`
    /// once sent (or failed), `Pending` with `cx`'s waker registered for when
    /// room may have come (the wait is kept in the sender until a later poll
    /// completes). For hand-written futures and event-loop bindings.
    pub fn poll_send(
        &mut self,
        cx: &mut std::task::Context<'_>,
        msg: &[u8],
    ) -> std::task::Poll<Result<()>> {
        crate::readiness::poll_kept(
            self,
            |o| &mut o.waiting,
            cx,
            "send",
            false,
            |tx| tx.try_send_noticing_death(msg),
        )
    }

    /// Gives back the wait a `Pending` [`poll_send`](Self::poll_send)
    /// registered.
    pub fn cancel_poll(&mut self) {
        self.waiting.cancel();
    }

    /// `try_send`, and once in every CHECK_EVERY of finding no room, a look at
    /// whether the receiver died (what a blocking send does while it sleeps).
    pub(crate) fn try_send_noticing_death(&mut self, msg: &[u8]) -> Result<()> {
        match self.try_send(msg) {
            Err(e) if e.is_would_block() => {
                let since = *self.full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= CHECK_EVERY {
                    self.full_since = Some(Instant::now());
                    if let Some(gone) = receiver_gone(&self.mem, true) {
                        return Err(gone);
                    }
                }
                Err(e)
            }
            sent => {
                self.full_since = None;
                sent
            }
        }
    }
}

impl crate::readiness::Ready for Sender {
    fn ready_now(&self, deep: bool) -> bool {
        let head = self.mem.head().load(SeqCst);
        let tail = self.mem.tail().load(SeqCst);
        if head.wrapping_sub(tail) < self.mem.capacity {
            return true;
        }
        let gone = receiver_gone(&self.mem, deep).is_some();
        if gone && deep {
            self.check_now.store(true, SeqCst);
        }
        gone
    }
}

impl Watched for Sender {
    fn bells(&self) -> Bells<'_> {
        let s = self.mem.space_bell();
        [
            Some(Bell {
                word: s.signal,
                waiters: s.waiters,
                park: s.park,
            }),
            // Other senders hold the producer lock only briefly, but a send
            // that found it taken waits for its release too.
            self.lock.as_ref().and_then(|l| l.bells()[0]),
        ]
    }
    fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
        self.mem.interrupt_slot().get_arc()
    }
    fn recheck(&self) -> Option<Duration> {
        Some(CHECK_EVERY)
    }
    fn peers(&self) -> Option<Vec<crate::sys::ProcessIdentity>> {
        Some(self.mem.peer_identities(0..1))
    }
    fn object(&self) -> &ObjectName {
        self.mem.name()
    }
    fn spin(&self) -> Duration {
        crate::readiness::async_spin(self.spin)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.mem.leave_slot(self.slot);
        self.mem.data_bell().ring();
    }
}

/// Room for one message in the ring, written in place, sent by
/// [`commit`](Self::commit). Dropping it without committing sends nothing.
///
/// Dereferences to the reserved bytes (initially whatever the ring held). They are
/// in shared memory, past the point where the receiver reads, so no process that
/// follows the protocol reads or writes them until the commit.
#[derive(Debug)]
pub struct Reservation<'a> {
    mem: &'a ChannelMem,
    cursor: &'a mut WriteCursor,
    idx: u64,
    len: usize,
    committed: bool,
    // Declared last: dropped after `Drop::drop` has put the ring in order.
    _guard: Option<MutexGuard<'a, ()>>,
}

impl Reservation<'_> {
    /// Hands the reserved range (and the producer lock, if taken) over to an
    /// [`OwnedReservation`]: returns the range's index and whether the lock is
    /// held, and leaves the ring as it is.
    fn detach(mut self) -> (u64, bool) {
        let locked = self._guard.take().map(std::mem::forget).is_some();
        // Not a commit: the owned reservation does what this one's drop would.
        self.committed = true;
        (self.idx, locked)
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(mut self) {
        self.cursor.publish(self.mem, Tag::Single, self.len as u64);
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    /// An uncommitted reservation sends nothing, but reserving may have padded
    /// the ring to its end, and a receiver may already have read that pad (it
    /// reads stamped records without waiting for the head). Publishing the head
    /// past the pad keeps the next sender, which starts from the shared head,
    /// from writing where the receiver has already been.
    fn drop(&mut self) {
        if !self.committed && self.mem.head().load(SeqCst) != self.cursor.head {
            self.mem.head().swap(self.cursor.head, SeqCst);
        }
    }
}

/// Room for one message, like [`Reservation`], owning its [`Sender`]: from
/// [`Sender::reserve_owned`]. [`commit`](Self::commit) sends the message and
/// gives the sender back, [`cancel`](Self::cancel) gives it back having sent
/// nothing; dropping it cancels and closes the sender.
#[derive(Debug)]
pub struct OwnedReservation {
    /// Taken out by `commit`/`cancel`; dropped by hand in `Drop` otherwise.
    sender: std::mem::ManuallyDrop<Sender>,
    idx: u64,
    len: usize,
    /// Whether the sender holds the producer lock for this reservation.
    locked: bool,
}

impl OwnedReservation {
    /// Publishes the message and gives the sender back.
    pub fn commit(mut self) -> Sender {
        let s = &mut *self.sender;
        s.cursor.publish(&s.mem, Tag::Single, self.len as u64);
        self.release()
    }

    /// Sends nothing and gives the sender back.
    pub fn cancel(mut self) -> Sender {
        self.put_back();
        self.release()
    }

    /// What an uncommitted [`Reservation`]'s drop does to the ring.
    fn put_back(&mut self) {
        let s = &*self.sender;
        if s.mem.head().load(SeqCst) != s.cursor.head {
            s.mem.head().swap(s.cursor.head, SeqCst);
        }
    }

    /// Lets go of the producer lock and takes the sender out.
    fn release(self) -> Sender {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.unlock();
        // SAFETY: `this` is never dropped (ManuallyDrop), so the sender is taken
        // out exactly once.
        unsafe { std::mem::ManuallyDrop::take(&mut this.sender) }
    }

    fn unlock(&mut self) {
        if std::mem::take(&mut self.locked) {
            if let Some(lock) = &self.sender.lock {
                lock.unlock_for_owned_reservation();
            }
        }
    }
}

impl Drop for OwnedReservation {
    fn drop(&mut self) {
        self.put_back();
        self.unlock();
        // SAFETY: dropped once, here; `release` (the only other taker) forgets self.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.sender) }
    }
}

impl std::ops::Deref for OwnedReservation {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: as for Reservation: the range is reserved for this sender.
        unsafe { self.sender.mem.slice(self.idx + RECORD_HEADER, self.len) }
    }
}

impl std::ops::DerefMut for OwnedReservation {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref; `&mut self` makes this the only reference.
        unsafe {
            self.sender
                .mem
                .slice_mut(self.idx + RECORD_HEADER, self.len)
        }
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the range lies past the published head, reserved for this
        // sender: no conforming process reads or writes it before the commit.
        unsafe { self.mem.slice(self.idx + RECORD_HEADER, self.len) }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref; `&mut self` makes this the only reference.
        unsafe { self.mem.slice_mut(self.idx + RECORD_HEADER, self.len) }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod model {
    //! The many-sender hand-over, run by loom over every interleaving within
    //! its bounds: two senders take the producer lock (the real mutex protocol),
    //! load the shared head, write their record into the slot at the head and
    //! publish the head past it, then unlock; the receiver reads records in
    //! order. Each message must arrive once, none written over another.

    use crate::sync::protocol::model::{check, Futex};
    use crate::sync::protocol::{mutex_try_lock, mutex_unlock, Waitable};
    use loom::sync::atomic::{AtomicU32, AtomicU64};
    use loom::sync::Arc;
    use loom::thread;
    use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};

    #[derive(Default)]
    struct Queue {
        lock_word: AtomicU32,
        lock_waiters: AtomicU32,
        futex: Futex,
        head: AtomicU64,
        /// Two record slots; a record is its message (0: not written).
        slots: [AtomicU64; 2],
    }

    impl Queue {
        fn lock(&self) -> Waitable<'_, AtomicU32, Futex> {
            Waitable {
                word: &self.lock_word,
                waiters: &self.lock_waiters,
                park: &self.futex,
                spins: 0,
                interrupt: None,
            }
        }
    }

    fn send(q: &Queue, me: u32, message: u64) {
        q.lock()
            .block_on(None, None, || mutex_try_lock(&q.lock_word, me), |_| None)
            .expect("no deadline");
        // Under the lock: start from the shared head, as `WriteCursor::load` does.
        let head = q.head.load(SeqCst);
        let slot = &q.slots[head as usize];
        assert_eq!(slot.load(Acquire), 0, "a record written over another");
        slot.store(message, Release);
        q.head.swap(head + 1, SeqCst);
        mutex_unlock(&q.lock());
    }

    #[test]
    fn two_senders_hand_the_lock_over_without_losing_a_record() {
        check(|| {
            let q = Arc::new(Queue::default());
            let senders: Vec<_> = [(1u32, 10u64), (2, 20)]
                .into_iter()
                .map(|(me, message)| {
                    let q = q.clone();
                    thread::spawn(move || send(&q, me, message))
                })
                .collect();
            let mut got = Vec::new();
            for slot in &q.slots {
                loop {
                    let message = slot.load(Acquire);
                    if message != 0 {
                        got.push(message);
                        break;
                    }
                    thread::yield_now();
                }
            }
            for s in senders {
                s.join().unwrap();
            }
            got.sort_unstable();
            assert_eq!(got, [10, 20], "each message once");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::queue::tests::Removed;

    const CAP: u64 = 256 * 1024;

    fn pair(tag: &str) -> (Removed, Sender, crate::channel::Receiver) {
        let name = Removed(format!("t-unit-rewind-{tag}-{}", std::process::id()));
        let opts = ChannelOptions::new().capacity(CAP);
        let rx = opts.receiver(&name.0).unwrap();
        let tx = opts.sender(&name.0).unwrap();
        (name, tx, rx)
    }

    fn message(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_large_record_into_an_empty_ring_starts_the_ring_over() {
        let (_name, mut tx, mut rx) = pair("empty");
        // The first record starts at offset 0 anyway.
        let first = message(24 << 10, 0);
        tx.send(&first).unwrap();
        assert_eq!(tx.cursor.head, RECORD_HEADER + (24 << 10));
        assert_eq!(rx.recv().unwrap(), first);
        // 20 KiB with nothing queued: a pad to the ring's end, then the record
        // at offset 0, over the memory the first one used.
        let big = message(20 << 10, 1);
        tx.send(&big).unwrap();
        assert_eq!(tx.cursor.head, CAP + RECORD_HEADER + (20 << 10));
        assert_eq!(rx.recv().unwrap(), big);
        // Zero-copy reservations do the same (18 KiB fit before the 20 KiB
        // record's end: the pad and the record fit the ring together).
        let mut slot = tx.reserve(18 << 10).unwrap();
        slot.copy_from_slice(&message(18 << 10, 2));
        slot.commit();
        assert_eq!(tx.cursor.head, 2 * CAP + RECORD_HEADER + (18 << 10));
        assert_eq!(rx.recv().unwrap(), message(18 << 10, 2));
    }

    #[test]
    fn a_large_record_behind_queued_ones_goes_on_in_order() {
        let (_name, mut tx, mut rx) = pair("queued");
        tx.send(b"queued first").unwrap();
        let before = tx.cursor.head;
        let big = message(20 << 10, 3);
        tx.send(&big).unwrap();
        // Not empty: the record follows the first one, no pad.
        assert_eq!(tx.cursor.head, before + RECORD_HEADER + (20 << 10));
        assert_eq!(rx.recv().unwrap(), b"queued first");
        assert_eq!(rx.recv().unwrap(), big);
    }

    #[test]
    fn no_rewind_where_the_pad_and_the_record_would_not_fit_together() {
        let (_name, mut tx, mut rx) = pair("nofit");
        // A 56-byte record: the head 64 bytes in. A pad of CAP - 64 plus a
        // 60 KiB record exceed the ring: the record goes where it is.
        tx.send(&[1u8; 56]).unwrap();
        assert_eq!(rx.recv().unwrap(), [1u8; 56]);
        let big = message(60 << 10, 4);
        tx.send(&big).unwrap();
        assert_eq!(tx.cursor.head, 64 + RECORD_HEADER + (60 << 10));
        assert_eq!(rx.recv().unwrap(), big);
        // Messages go on flowing across the end of the ring and past rewinds.
        for i in 0..40u8 {
            let m = message(17 << 10, i);
            tx.send(&m).unwrap();
            assert_eq!(rx.recv().unwrap(), m);
        }
    }

    #[test]
    fn send_with_writes_in_place_and_sends_nothing_if_the_closure_panics() {
        let (_name, mut tx, mut rx) = pair("send-with");
        let n = tx.send_with(5, |b| {
            b.copy_from_slice(b"hello");
            b.len()
        });
        assert_eq!(n.unwrap(), 5);
        assert_eq!(rx.recv().unwrap(), b"hello");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tx.send_with(4, |_| panic!("the writer gave up"))
        }));
        assert!(panicked.is_err());
        assert!(
            rx.try_recv().unwrap_err().is_would_block(),
            "nothing was sent"
        );
        // Large ones go the general way (the ring restart), and still arrive.
        for i in 0..3u8 {
            tx.send_with(20 << 10, |b| b.fill(i)).unwrap();
            assert_eq!(rx.recv().unwrap(), vec![i; 20 << 10]);
        }
        assert!(tx
            .try_send_with(CAP as usize, |_| ())
            .unwrap_err()
            .to_string()
            .contains("long"));
        // A full ring: try_send_with does not call the closure.
        while tx.try_send(&[0u8; 1000]).is_ok() {}
        let mut called = false;
        assert!(tx
            .try_send_with(1000, |_| called = true)
            .unwrap_err()
            .is_would_block());
        assert!(!called);
    }
}
