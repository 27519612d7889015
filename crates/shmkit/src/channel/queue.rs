//! The queue channel: one receiver, one or many senders, every message delivered
//! once, whole and in order.
//!
//! The ring holds records (`layout.rs`). A sender writes a record past the head,
//! which nobody reads, and then publishes it by moving the head; the receiver reads
//! records between its tail and the head and then moves the tail. A message longer
//! than a record is sent as fragments, which the receiver puts back together
//! before handing out anything: a sender that dies halfway leaves no partial
//! message behind. With more than one sender, senders take the channel's producer
//! lock around a message.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use super::layout::*;
use super::memory::{ChannelMem, Config, Peer, CHECK_EVERY};
use super::{ChannelOptions, WaitMode};
use crate::error::{Error, Result};
use crate::sync::{LockError, Mutex, MutexGuard};

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// Not at all.
    Now,
    /// Until this instant; the duration is the caller's timeout, for the error.
    At(Instant, Duration),
    /// As long as it takes.
    Never,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        match Instant::now().checked_add(timeout) {
            Some(at) => Deadline::At(at, timeout),
            None => Deadline::Never,
        }
    }

    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Deadline::Now => Some(Instant::now()),
            Deadline::At(at, _) => Some(at),
            Deadline::Never => None,
        }
    }

    pub(crate) fn expired(self, object: &str, op: &'static str) -> Error {
        match self {
            Deadline::At(_, after) => Error::Timeout {
                object: object.to_owned(),
                op,
                after,
            },
            _ => Error::WouldBlock {
                object: object.to_owned(),
                op,
            },
        }
    }
}

pub(crate) fn spin_of(mode: WaitMode) -> Option<Duration> {
    match mode {
        WaitMode::Blocking { spin } => Some(spin),
        WaitMode::BusyPoll => None,
    }
}

fn corrupt(mem: &ChannelMem, reason: String) -> Error {
    Error::CorruptState {
        object: mem.name().to_owned(),
        reason,
    }
}

pub(crate) fn open_queue(name: &str, opts: &ChannelOptions) -> Result<ChannelMem> {
    let cfg = Config {
        flavour: Flavour::Queue,
        capacity: opts.capacity,
        max_message: opts.max_message,
        slots: opts.max_senders.saturating_add(1),
        lifetime: opts.lifetime,
        mode: opts.mode,
    };
    ChannelMem::attach(name, opts.attach, &cfg)
}

// ------------------------------------------------------------------- sending --

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
    mem: ChannelMem,
    cursor: WriteCursor,
    slot: u32,
    lock: Option<Mutex<()>>,
    spin: Option<Duration>,
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
        if head % 8 != 0 || tail % 8 != 0 || head.abs_diff(tail) > cap {
            return Err(corrupt(
                mem,
                format!("head {head} and tail {tail} do not describe a ring of {cap}"),
            ));
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
        let pad = if need > to_end { to_end } else { 0 };
        if cap - (self.head - self.cached_tail) < pad + need {
            let tail = mem.tail().load(SeqCst);
            if tail < self.cached_tail || tail > self.head || tail % 8 != 0 {
                return Err(corrupt(
                    mem,
                    format!("tail {tail} outside {}..={}", self.cached_tail, self.head),
                ));
            }
            self.cached_tail = tail;
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

    /// Publishes the record at the head: its header, then the new head.
    #[inline]
    fn publish(&mut self, mem: &ChannelMem, tag: Tag, len: u64) {
        let cap = mem.capacity;
        let pos = self.head;
        let end = pos + RECORD_HEADER + align8(len);
        mem.store_header(pos & (cap - 1), tag.encode(len as u32, pos));
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
        let schedule = ChannelMem::schedule(spin, deadline.instant());
        let ready = |_thorough| match self.try_reserve(mem, len) {
            Ok(Some(idx)) => Some(Ok(idx)),
            Ok(None) if mem.slot_left(0) => receiver_gone(mem, false).map(Err),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        mem.space_bell()
            .wait(&schedule, ready, || receiver_gone(mem, true).map(Err))
            .unwrap_or_else(|| Err(deadline.expired(mem.name(), "send")))
    }
}

/// `Disconnected` if the receiver closed its end (or, with `check_alive`, died).
fn receiver_gone(mem: &ChannelMem, check_alive: bool) -> Option<Error> {
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
    Some(Error::Disconnected {
        object: mem.name().to_owned(),
        reason,
    })
}

impl Sender {
    /// Opens the channel `name` as a sender, creating it with default options if
    /// it does not exist yet: [`ChannelOptions::new`]`.sender(name)`.
    pub fn connect(name: &str) -> Result<Sender> {
        ChannelOptions::new().sender(name)
    }

    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Sender> {
        let mem = open_queue(name, opts)?;
        let slot = mem.claim_slot(1..mem.slots, "sender")?;
        let lock = if mem.slots > 2 {
            Some(mem.producer_lock()?)
        } else {
            None
        };
        let cursor = match WriteCursor::load(&mem, true) {
            Ok(c) => c,
            Err(e) => {
                mem.leave_slot(slot);
                return Err(e);
            }
        };
        Ok(Sender {
            mem,
            cursor,
            slot,
            lock,
            spin: spin_of(opts.wait),
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
            return Ok(());
        }
        self.send_until(msg, Deadline::Never)
    }

    /// Sends `msg` only if it fits the free space now, without waiting:
    /// [`Error::WouldBlock`] if it does not, [`Error::TooLong`] for messages
    /// longer than [`max_record`](Self::max_record), which only [`send`](Self::send)
    /// and [`send_timeout`](Self::send_timeout) can carry.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.check_len(msg.len() as u64, self.max_record())?;
        self.send_until(msg, Deadline::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room; [`Error::Timeout`] after
    /// that. A long message that timed out halfway is not delivered at all.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.send_until(msg, Deadline::after(timeout))
    }

    /// The fast path: a one-record message on a one-sender channel with room for
    /// it now. `false` sends nothing and leaves the rest (waiting, fragments, the
    /// lock, every error) to the general path.
    #[inline]
    fn send_now(&mut self, msg: &[u8]) -> bool {
        let len = msg.len() as u64;
        if self.lock.is_some() || len > max_record(self.mem.capacity) || len > self.mem.max_message
        {
            return false;
        }
        match self.cursor.try_reserve(&self.mem, len) {
            Ok(Some(idx)) => {
                self.mem.write_payload(idx, msg);
                self.cursor.publish(&self.mem, Tag::Single, len);
                true
            }
            _ => false,
        }
    }

    /// Reserves `len` bytes in the ring for a message that the caller writes in
    /// place (zero-copy) and then [`commit`](Reservation::commit)s. Waits for room.
    /// At most [`max_record`](Self::max_record) bytes.
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
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::Never)
    }

    /// [`reserve`](Self::reserve) without waiting: [`Error::WouldBlock`] if the
    /// ring lacks the room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::Now)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_until(len, Deadline::after(timeout))
    }

    /// Sends a plain-old-data value as its bytes.
    pub fn send_pod<T: bytemuck::NoUninit>(&mut self, value: &T) -> Result<()> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Sends `value` encoded with postcard.
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(|e| Error::Decode {
            object: self.name().to_owned(),
            reason: format!("cannot encode {}: {e}", std::any::type_name::<T>()),
        })?;
        self.send(&bytes)
    }

    fn check_len(&self, len: u64, max: u64) -> Result<()> {
        if len > max {
            return Err(Error::TooLong {
                object: self.name().to_owned(),
                len,
                max,
            });
        }
        Ok(())
    }

    fn reserve_until(&mut self, len: usize, deadline: Deadline) -> Result<Reservation<'_>> {
        self.check_len(len as u64, self.max_record())?;
        let guard = lock(&self.mem, self.lock.as_ref(), &mut self.cursor, deadline)?;
        let idx = self
            .cursor
            .reserve(&self.mem, len as u64, deadline, self.spin)?;
        Ok(Reservation {
            mem: &self.mem,
            cursor: &mut self.cursor,
            idx,
            len,
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
        Err(LockError::Failed(e)) => return Err(e),
    };
    *cursor = WriteCursor::load(mem, died)?;
    Ok(Some(guard))
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
    _guard: Option<MutexGuard<'a, ()>>,
}

impl Reservation<'_> {
    /// Publishes the message.
    pub fn commit(self) {
        self.cursor.publish(self.mem, Tag::Single, self.len as u64);
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the range lies past the published head, reserved for this
        // sender: no conforming process reads or writes it before the commit.
        unsafe { self.mem.slice(self.idx + RECORD_HEADER, self.len) }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref; `&mut self` makes this the only reference.
        unsafe { self.mem.slice_mut(self.idx + RECORD_HEADER, self.len) }
    }
}

// ----------------------------------------------------------------- receiving --

/// The receiving end of a queue channel; one per channel.
///
/// Every receive call validates each index and length it reads from the shared
/// ring: a corrupt or hostile writer makes it return [`Error::CorruptState`],
/// never read out of bounds or loop forever.
#[derive(Debug)]
pub struct Receiver {
    mem: ChannelMem,
    state: ReadState,
    spin: Option<Duration>,
    last_check: Instant,
}

/// A message being put back together from fragments.
#[derive(Debug)]
struct Assembly {
    total: u64,
    buf: Vec<u8>,
    complete: bool,
}

#[derive(Debug)]
struct ReadState {
    tail: u64,
    assembly: Option<Assembly>,
    /// A finished assembly buffer kept for the next long message.
    spare: Vec<u8>,
}

/// A record found at the tail: its tag, payload offset and length, and the bytes
/// it takes in the ring.
struct Record {
    tag: Tag,
    payload: u64,
    len: u64,
    size: u64,
}

/// Why the receive fast path did not deliver.
enum Fast {
    /// Nothing published at the tail yet.
    Nothing,
    /// Something `poll` must look at.
    Other,
}

/// Records a receive call reads between looks at the clock.
const POLL_BATCH: u32 = 1024;

/// Largest allocation made up front for a long message; the rest grows as its
/// fragments arrive, so a lying length prefix cannot make us allocate it.
const PREALLOCATE: u64 = 64 << 20;

impl ReadState {
    /// The record at the tail, if one is published; pads are skipped.
    ///
    /// The fast path reads only the header at the tail: a header stamped for this
    /// position was written in this lap. `thorough` also reads the head first, which
    /// the sleep decision needs (the doorbell protocol is about the head) and which
    /// tells a record that should be there but is not (corruption) from one that
    /// is not published yet.
    fn peek(&mut self, mem: &ChannelMem, thorough: bool) -> Result<Option<Record>> {
        let cap = mem.capacity;
        loop {
            let head = if thorough {
                let head = mem.head().load(SeqCst);
                if head % 8 != 0 || head > self.tail + cap {
                    return Err(corrupt(
                        mem,
                        format!(
                            "head {head} is not within a ring of {cap} after tail {}",
                            self.tail
                        ),
                    ));
                }
                Some(head)
            } else {
                None
            };
            let idx = self.tail & (cap - 1);
            let to_end = cap - idx;
            let (tag, len) = match Header::decode(mem.load_header(idx), self.tail) {
                Header::Record(tag, len) => (tag, len as u64),
                Header::NotYet => match head {
                    Some(head) if head > self.tail => {
                        return Err(corrupt(
                            mem,
                            format!("no record at {} although the head is at {head}", self.tail),
                        ))
                    }
                    _ => return Ok(None),
                },
                Header::Bad(word) => {
                    return Err(corrupt(
                        mem,
                        format!("record at {} has header {word:#018x}", self.tail),
                    ))
                }
            };
            if tag == Tag::Pad {
                if len + RECORD_HEADER != to_end {
                    return Err(corrupt(
                        mem,
                        format!(
                            "padding at {} of {len} bytes does not end the ring",
                            self.tail
                        ),
                    ));
                }
                self.release(mem, to_end);
                continue;
            }
            let size = RECORD_HEADER + align8(len);
            if size > to_end {
                return Err(corrupt(
                    mem,
                    format!(
                        "record at {} of {len} bytes overruns the ring's end",
                        self.tail
                    ),
                ));
            }
            return Ok(Some(Record {
                tag,
                payload: idx + RECORD_HEADER,
                len,
                size,
            }));
        }
    }

    #[inline]
    fn release(&mut self, mem: &ChannelMem, size: u64) {
        self.tail += size;
        mem.tail().swap(self.tail, SeqCst);
        mem.space_bell().ring();
    }

    /// The fast path: a whole one-record message at the tail, accepted.
    /// `Err(Nothing)` if nothing is published at the tail yet; `Err(Other)`
    /// leaves everything else (pads, fragments, refusals, errors) to `poll`.
    #[inline]
    fn take_single<R>(
        &mut self,
        mem: &ChannelMem,
        accept: &impl Fn(u64, &str) -> Result<()>,
        deliver: &mut Option<impl FnOnce(&[u8]) -> R>,
    ) -> std::result::Result<R, Fast> {
        if self.assembly.is_some() {
            return Err(Fast::Other);
        }
        let cap = mem.capacity;
        let idx = self.tail & (cap - 1);
        let len = match Header::decode(mem.load_header(idx), self.tail) {
            Header::Record(Tag::Single, len) => len as u64,
            Header::NotYet => return Err(Fast::Nothing),
            _ => return Err(Fast::Other),
        };
        let size = RECORD_HEADER + align8(len);
        if size > cap - idx || accept(len, mem.name()).is_err() {
            return Err(Fast::Other);
        }
        let Some(deliver) = deliver.take() else {
            return Err(Fast::Other);
        };
        // SAFETY: published and not yet released: the sender does not write
        // there until the tail passes it, after this call.
        let bytes = unsafe { mem.slice(idx + RECORD_HEADER, len as usize) };
        let r = deliver(bytes);
        self.release(mem, size);
        Ok(r)
    }

    /// Delivers the next whole message, if there is one: `accept` sees its length
    /// first and may refuse it (the message then stays queued).
    fn poll<R>(
        &mut self,
        mem: &ChannelMem,
        accept: &impl Fn(u64, &str) -> Result<()>,
        deliver: &mut Option<impl FnOnce(&[u8]) -> R>,
        deadline: Option<Instant>,
        thorough: bool,
    ) -> Result<Option<R>> {
        let mut records = 0u32;
        loop {
            // Fragments keep coming (or a hostile writer keeps inventing them):
            // let the caller's deadline apply between records.
            records += 1;
            if records % POLL_BATCH == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            if self.assembly.as_ref().is_some_and(|a| a.complete) {
                let total = self.assembly.as_ref().map_or(0, |a| a.total);
                accept(total, mem.name())?;
                let a = self.assembly.take().expect("checked above");
                let r = (deliver.take().expect("delivered once"))(&a.buf);
                self.spare = a.buf;
                self.spare.clear();
                return Ok(Some(r));
            }
            let Some(rec) = self.peek(mem, thorough)? else {
                return Ok(None);
            };
            match rec.tag {
                Tag::Single => {
                    // An unfinished message before a whole one was abandoned by a
                    // sender that died or gave up: drop it.
                    self.abandon();
                    accept(rec.len, mem.name())?;
                    // SAFETY: published and not yet released: the sender does not
                    // write there until the tail passes it, after this call.
                    let bytes = unsafe { mem.slice(rec.payload, rec.len as usize) };
                    let r = (deliver.take().expect("delivered once"))(bytes);
                    self.release(mem, rec.size);
                    return Ok(Some(r));
                }
                Tag::First => {
                    let mut prefix = [0u8; 8];
                    if rec.len < 8 {
                        return Err(corrupt(mem, format!("first fragment of {} bytes", rec.len)));
                    }
                    mem.read(rec.payload, &mut prefix);
                    let total = u64::from_le_bytes(prefix);
                    let data = rec.len - 8;
                    if total > mem.max_message || total <= data {
                        return Err(corrupt(
                            mem,
                            format!("fragmented message claims {total} bytes, {data} in its first fragment"),
                        ));
                    }
                    self.abandon();
                    accept(total, mem.name())?;
                    let mut buf = std::mem::take(&mut self.spare);
                    buf.reserve(total.min(PREALLOCATE) as usize);
                    mem.append(rec.payload + 8, data as usize, &mut buf);
                    self.assembly = Some(Assembly {
                        total,
                        buf,
                        complete: false,
                    });
                    self.release(mem, rec.size);
                }
                Tag::Middle | Tag::Last => {
                    let Some(a) = self.assembly.as_mut() else {
                        // The rest of a message whose start an earlier receiver took.
                        self.release(mem, rec.size);
                        continue;
                    };
                    let have = a.buf.len() as u64;
                    let last = rec.tag == Tag::Last;
                    if have + rec.len > a.total || (last && have + rec.len != a.total) {
                        return Err(corrupt(
                            mem,
                            format!(
                                "fragment of {} bytes after {have} of a {}-byte message",
                                rec.len, a.total
                            ),
                        ));
                    }
                    mem.append(rec.payload, rec.len as usize, &mut a.buf);
                    a.complete = last;
                    self.release(mem, rec.size);
                }
                Tag::Pad => unreachable!("peek skips padding"),
            }
        }
    }

    fn abandon(&mut self) {
        if let Some(a) = self.assembly.take() {
            self.spare = a.buf;
            self.spare.clear();
        }
    }
}

/// Why a receive found nothing: the senders' state, cheaply (`check_alive` false:
/// only whether all closed) or fully.
fn senders_gone(mem: &ChannelMem, check_alive: bool) -> Option<Error> {
    let mut left = 0;
    let mut died = Vec::new();
    for i in 1..mem.slots {
        let peer = if check_alive {
            mem.peer(i)
        } else {
            mem.peer_recorded(i)
        };
        match peer {
            Peer::Attached(_) => return None,
            Peer::Never => {}
            Peer::Left => left += 1,
            Peer::Died(pid) => died.push(pid),
        }
    }
    let reason = match (left, died.as_slice()) {
        (0, []) => return None,
        (_, []) if mem.slots == 2 => "the sender closed the channel".to_owned(),
        (_, []) => "every sender closed the channel".to_owned(),
        (0, [pid]) => format!("the sender (process {pid}) died"),
        (_, pids) => format!("no sender is left; died: {pids:?}"),
    };
    Some(Error::Disconnected {
        object: mem.name().to_owned(),
        reason,
    })
}

impl Receiver {
    /// Opens the channel `name` as its receiver, creating it with default options
    /// if it does not exist yet: [`ChannelOptions::new`]`.receiver(name)`.
    pub fn connect(name: &str) -> Result<Receiver> {
        ChannelOptions::new().receiver(name)
    }

    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Receiver> {
        let mem = open_queue(name, opts)?;
        let slot = mem.claim_slot(0..1, "receiver")?;
        let tail = mem.tail().load(SeqCst);
        let head = mem.head().load(SeqCst);
        // The tail may be a record past the head (see WriteCursor::load).
        if tail % 8 != 0 || head % 8 != 0 || head.abs_diff(tail) > mem.capacity {
            mem.leave_slot(slot);
            return Err(corrupt(&mem, format!("head {head} and tail {tail}")));
        }
        Ok(Receiver {
            mem,
            state: ReadState {
                tail,
                assembly: None,
                spare: Vec::new(),
            },
            spin: spin_of(opts.wait),
            last_check: Instant::now(),
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

    /// Changes how blocking calls wait.
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        self.spin = spin_of(mode);
    }

    /// Process ids of the live senders attached now.
    pub fn senders(&self) -> Vec<u32> {
        self.mem.live_peers(1..self.mem.slots)
    }

    /// Receives the next message into a new vector, waiting as long as it takes.
    /// [`Error::Disconnected`] once the queue is empty and every sender that was
    /// attached has closed or died (a channel that never had a sender waits).
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::Never, |b| b.to_vec())
    }

    /// [`recv`](Self::recv) without waiting: [`Error::WouldBlock`] if no whole
    /// message is queued.
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::Now, |b| b.to_vec())
    }

    /// [`recv`](Self::recv), waiting at most `timeout`; [`Error::Timeout`] after.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::after(timeout), |b| b.to_vec())
    }

    /// Receives the next message into `buf` and returns its length. A message
    /// longer than `buf` is not taken: [`Error::BufferTooSmall`] says how long it
    /// is, and it stays queued for the next call.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into_until(buf, Deadline::Never)
    }

    /// [`recv_into`](Self::recv_into) without waiting.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into_until(buf, Deadline::Now)
    }

    /// [`recv_into`](Self::recv_into), waiting at most `timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_into_until(buf, Deadline::after(timeout))
    }

    /// Receives the next message and hands it to `f` without copying it out of
    /// the ring (a fragmented message is handed over from the receiver's own
    /// reassembly buffer); returns what `f` returns.
    ///
    /// The slice `f` gets points into shared memory. The channel protocol keeps
    /// senders away from it until `f` returns: the message is released only then.
    /// A process that ignores the protocol and writes the ring anyway can change
    /// the bytes while `f` reads them; it cannot make the slice point elsewhere
    /// or change its length. Copy what must not change, and validate what you
    /// parse, as with any input from another process.
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-recv-with-{}", std::process::id());
    /// # let mut tx = Sender::connect(&name)?;
    /// # let mut rx = Receiver::connect(&name)?;
    /// tx.send(b"12345")?;
    /// let sum = rx.recv_with(|bytes| bytes.iter().map(|&b| (b - b'0') as u32).sum::<u32>())?;
    /// assert_eq!(sum, 15);
    /// # Ok(()) }
    /// ```
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Deadline::Never, f)
    }

    /// [`recv_with`](Self::recv_with) without waiting.
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Deadline::Now, f)
    }

    /// [`recv_with`](Self::recv_with), waiting at most `timeout`.
    pub fn recv_with_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.recv_with_until(Deadline::after(timeout), f)
    }

    /// Receives a plain-old-data value. A message whose length is not
    /// `size_of::<T>()` is refused with [`Error::WrongKind`] and stays queued.
    pub fn recv_pod<T: bytemuck::AnyBitPattern>(&mut self) -> Result<T> {
        let want = std::mem::size_of::<T>() as u64;
        let accept = move |len: u64, object: &str| {
            if len == want {
                Ok(())
            } else {
                Err(Error::WrongKind {
                    object: object.to_owned(),
                    found: format!("message of {len} bytes"),
                    expected: format!("{} ({want} bytes)", std::any::type_name::<T>()),
                })
            }
        };
        self.recv_until(Deadline::Never, accept, |b| bytemuck::pod_read_unaligned(b))
    }

    /// Receives a value sent with `send_serde` (postcard encoding).
    /// [`Error::Decode`] if the message is not a valid `T`; it is consumed.
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let name = self.name().to_owned();
        self.recv_with(|b| postcard::from_bytes::<T>(b))?
            .map_err(|e| Error::Decode {
                object: name,
                reason: format!("not a {}: {e}", std::any::type_name::<T>()),
            })
    }

    fn recv_into_until(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let capacity = buf.len() as u64;
        // Builds the error only when refusing: receiving must not allocate.
        let accept = move |len: u64, object: &str| {
            if len <= capacity {
                Ok(())
            } else {
                Err(Error::BufferTooSmall {
                    object: object.to_owned(),
                    len,
                    capacity,
                })
            }
        };
        self.recv_until(deadline, accept, |b| {
            buf[..b.len()].copy_from_slice(b);
            b.len()
        })
    }

    fn recv_with_until<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(deadline, |_, _| Ok(()), f)
    }

    fn recv_until<R>(
        &mut self,
        deadline: Deadline,
        accept: impl Fn(u64, &str) -> Result<()>,
        deliver: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let mut deliver = Some(deliver);
        let mem = &self.mem;
        let state = &mut self.state;
        let until = deadline.instant();
        if let Ok(r) = state.take_single(mem, &accept, &mut deliver) {
            return Ok(r);
        }
        let thorough = matches!(deadline, Deadline::Now);
        if let Some(r) = state.poll(mem, &accept, &mut deliver, until, thorough)? {
            return Ok(r);
        }
        let mut gone = senders_gone(mem, false);
        if gone.is_none() && matches!(deadline, Deadline::Now) {
            // try_recv polled in a loop must not read /proc every time.
            if self.last_check.elapsed() >= CHECK_EVERY {
                self.last_check = Instant::now();
                gone = senders_gone(mem, true);
            }
            if gone.is_none() {
                return Err(deadline.expired(mem.name(), "receive"));
            }
        }
        if gone.is_none() {
            let schedule = ChannelMem::schedule(self.spin, deadline.instant());
            let ready = |thorough: bool| {
                if !thorough {
                    match state.take_single(mem, &accept, &mut deliver) {
                        Ok(r) => return Some(Ok(Ok(r))),
                        Err(Fast::Nothing) => return None,
                        Err(Fast::Other) => {}
                    }
                }
                match state.poll(mem, &accept, &mut deliver, until, thorough) {
                    Ok(Some(r)) => Some(Ok(Ok(r))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                }
            };
            let idle = || senders_gone(mem, true).map(|e| Ok(Err(e)));
            match mem.data_bell().wait(&schedule, ready, idle) {
                None => return Err(deadline.expired(mem.name(), "receive")),
                Some(Err(e)) => return Err(e),
                Some(Ok(Ok(r))) => return Ok(r),
                Some(Ok(Err(e))) => gone = Some(e),
            }
        }
        // The senders are gone, but what they published before going is still
        // delivered; a message they left unfinished is dropped.
        if let Some(r) = state.poll(mem, &accept, &mut deliver, until, true)? {
            return Ok(r);
        }
        state.abandon();
        Err(gone.expect("set on every path here"))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.mem.leave_slot(0);
        self.mem.space_bell().ring();
    }
}
