//! The receiving end of a queue: reading records, reassembling fragments,
//! and waiting for data or for the senders to go.

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::{Duration, Instant};

use super::open_queue;
use crate::channel::layout::*;
use crate::channel::memory::{ChannelMem, Peer, CHECK_EVERY};
use crate::channel::wait::{spin_of, Deadline};
use crate::channel::{ChannelOptions, WaitMode};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{AsyncWait, Bell, Bells, OpFuture, Watched};

/// The receiving end of a queue channel; one per channel.
///
/// Every receive call validates each index and length it reads from the shared
/// ring: a corrupt or hostile writer makes it return [`Error::CorruptState`],
/// never read out of bounds or loop forever.
#[derive(Debug)]
pub struct Receiver {
    /// The wait of `poll_recv` and the stream, kept between polls. Declared
    /// first: it points into `mem` and must go before it.
    waiting: AsyncWait,
    mem: ChannelMem,
    state: ReadState,
    spin: Option<Duration>,
    last_check: Instant,
    /// A wait set found the senders gone: the next `try_recv` looks at once
    /// instead of waiting out `CHECK_EVERY` (which a caller looping on the
    /// set's answer would spin through).
    check_now: std::sync::atomic::AtomicBool,
    /// Wait for the next sender rather than report `Disconnected`.
    wait_for_senders: bool,
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
    /// Where this receiver reads next. The shared tail follows it, except while
    /// a fragmented message is held (`hold`).
    tail: u64,
    /// While a fragmented message is put together: the position of its first
    /// fragment, where the shared tail stays until the message is handed over,
    /// so that a receiver that dies meanwhile loses nothing (the next one reads
    /// the fragments again). Only while the held records take at most half the
    /// ring: beyond that the sender could run out of room, and the message goes
    /// unprotected (a receiver crash then loses it, and counts it in `lost`).
    hold: Option<u64>,
    /// Pad bytes inside the hold: they do not count against its limit (a pad
    /// takes no room the sender needs for the rest of the held message).
    held_pad: u64,
    /// This receiver set the channel's `unheld` marker (see `OFF_UNHELD`).
    unheld: bool,
    /// Messages lost before this receiver took over, not reported yet.
    lost: u64,
    /// Skipping the rest of a message whose start an earlier receiver took.
    orphan: bool,
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

/// Which messages a receive call takes; a refused one stays queued.
#[derive(Clone, Copy, Debug)]
enum Accept {
    Any,
    /// Up to this many bytes: the caller's buffer.
    UpTo(u64),
    /// Exactly this many bytes: a plain-old-data type, named.
    Exactly(u64, &'static str),
}

impl Accept {
    #[inline]
    fn admits(self, len: u64) -> bool {
        match self {
            Accept::Any => true,
            Accept::UpTo(max) => len <= max,
            Accept::Exactly(want, _) => len == want,
        }
    }

    /// `admits`, or the error that says why not. The error is built only when
    /// refusing: receiving must not allocate.
    #[inline]
    fn check(self, len: u64, object: &ObjectName) -> Result<()> {
        if self.admits(len) {
            Ok(())
        } else {
            Err(self.refusal(len, object))
        }
    }

    #[cold]
    fn refusal(self, len: u64, object: &ObjectName) -> Error {
        match self {
            Accept::UpTo(capacity) => Error::BufferTooSmall {
                object: object.clone(),
                len,
                capacity,
            },
            Accept::Exactly(want, type_name) => Error::WrongKind {
                object: object.into(),
                found: format!("message of {len} bytes"),
                expected: format!("{type_name} ({want} bytes)"),
            },
            Accept::Any => unreachable!("every length is admitted"),
        }
    }
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
                if !is_position(head) || head > self.tail + cap {
                    return Err(mem.corrupt(format!(
                        "head {head} is not within a ring of {cap} after tail {}",
                        self.tail
                    )));
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
                        return Err(mem.corrupt(format!(
                            "no record at {} although the head is at {head}",
                            self.tail
                        )))
                    }
                    _ => return Ok(None),
                },
                Header::Bad(word) => {
                    return Err(
                        mem.corrupt(format!("record at {} has header {word:#018x}", self.tail))
                    )
                }
            };
            if tag == Tag::Pad {
                if len + RECORD_HEADER != to_end {
                    return Err(mem.corrupt(format!(
                        "padding at {} of {len} bytes does not end the ring",
                        self.tail
                    )));
                }
                #[cfg(test)]
                super::test_hooks::before_pad_release();
                if self.hold.is_some() {
                    self.held_pad += to_end;
                }
                self.release(mem, to_end);
                continue;
            }
            let size = RECORD_HEADER + align8(len);
            if size > to_end {
                return Err(mem.corrupt(format!(
                    "record at {} of {len} bytes overruns the ring's end",
                    self.tail
                )));
            }
            return Ok(Some(Record {
                tag,
                payload: idx + RECORD_HEADER,
                len,
                size,
            }));
        }
    }

    /// Moves past a record of `size` bytes: gives its room back to the senders,
    /// unless a fragmented message is held (see `hold`).
    #[inline]
    fn release(&mut self, mem: &ChannelMem, size: u64) {
        self.tail += size;
        match self.hold {
            None => self.publish_tail(mem),
            Some(start) if self.tail - start - self.held_pad > mem.capacity / 2 => {
                // Too long to hold: a death from now until it is handed over
                // loses it. Say so in the channel first, for the next receiver.
                self.unheld = true;
                mem.unheld().store(start + 1, SeqCst);
                self.publish_tail(mem);
            }
            Some(_) => {}
        }
    }

    /// Gives every record read so far back to the senders, ending any hold.
    #[inline]
    fn publish_tail(&mut self, mem: &ChannelMem) {
        self.hold = None;
        self.held_pad = 0;
        mem.tail().swap(self.tail, SeqCst);
        mem.space_bell().ring();
    }

    /// The message read unheld was handed over or dropped: no longer at risk.
    fn clear_unheld(&mut self, mem: &ChannelMem) {
        if std::mem::take(&mut self.unheld) {
            mem.unheld().store(0, SeqCst);
        }
    }

    /// The error that reports messages lost before this receiver took over.
    #[cold]
    fn report_lost(&mut self, mem: &ChannelMem) -> Error {
        Error::Lost {
            object: mem.name().clone(),
            count: std::mem::take(&mut self.lost),
        }
    }

    /// The fast path: a whole one-record message at the tail, accepted.
    /// `Err(Nothing)` if nothing is published at the tail yet; `Err(Other)`
    /// leaves everything else (pads, fragments, refusals, errors) to `poll`.
    #[inline]
    fn take_single<R>(
        &mut self,
        mem: &ChannelMem,
        accept: Accept,
        deliver: &mut Option<impl FnOnce(&[u8]) -> R>,
    ) -> std::result::Result<R, Fast> {
        if self.assembly.is_some() || self.lost != 0 {
            return Err(Fast::Other);
        }
        let cap = mem.capacity;
        let idx = self.tail & (cap - 1);
        let word = mem.header_at(self.tail).load(Acquire);
        if word >> 32 != Tag::Single.encode(0, self.tail) >> 32 {
            return Err(if Header::decode(word, self.tail) == Header::NotYet {
                Fast::Nothing
            } else {
                Fast::Other
            });
        }
        let len = word as u32 as u64;
        let size = RECORD_HEADER + align8(len);
        if size > cap - idx || !accept.admits(len) {
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
        accept: Accept,
        deliver: &mut Option<impl FnOnce(&[u8]) -> R>,
        deadline: Option<Instant>,
        thorough: bool,
    ) -> Result<Option<R>> {
        if self.lost != 0 {
            return Err(self.report_lost(mem));
        }
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
                accept.check(total, mem.name())?;
                let a = self.assembly.take().expect("checked above");
                let r = (deliver.take().expect("delivered once"))(&a.buf);
                self.spare = a.buf;
                self.spare.clear();
                // Handed over: its fragments may go now.
                self.publish_tail(mem);
                self.clear_unheld(mem);
                return Ok(Some(r));
            }
            let Some(rec) = self.peek(mem, thorough)? else {
                return Ok(None);
            };
            match rec.tag {
                Tag::Single => {
                    // An unfinished message before a whole one was abandoned by a
                    // sender that died or gave up: drop it.
                    self.abandon(mem);
                    self.orphan = false;
                    accept.check(rec.len, mem.name())?;
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
                        return Err(mem.corrupt(format!("first fragment of {} bytes", rec.len)));
                    }
                    mem.read(rec.payload, &mut prefix);
                    let total = u64::from_le_bytes(prefix);
                    let data = rec.len - 8;
                    if total > mem.max_message || total <= data {
                        return Err(mem.corrupt(format!(
                            "fragmented message claims {total} bytes, {data} in its first fragment"
                        )));
                    }
                    self.abandon(mem);
                    accept.check(total, mem.name())?;
                    self.orphan = false;
                    self.hold = Some(self.tail);
                    self.held_pad = 0;
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
                        // The rest of a message whose start an earlier receiver
                        // took and then died with: too long to have been held,
                        // it is lost. Counted once, for `inspect`, and reported
                        // to the caller (unless the `unheld` marker already was).
                        let first = !self.orphan;
                        self.orphan = rec.tag != Tag::Last;
                        self.release(mem, rec.size);
                        if first {
                            mem.lost().fetch_add(1, SeqCst);
                            self.lost += 1;
                            return Err(self.report_lost(mem));
                        }
                        continue;
                    };
                    let have = a.buf.len() as u64;
                    let last = rec.tag == Tag::Last;
                    if have + rec.len > a.total || (last && have + rec.len != a.total) {
                        return Err(mem.corrupt(format!(
                            "fragment of {} bytes after {have} of a {}-byte message",
                            rec.len, a.total
                        )));
                    }
                    mem.append(rec.payload, rec.len as usize, &mut a.buf);
                    a.complete = last;
                    #[cfg(test)]
                    super::test_hooks::before_fragment_release();
                    self.release(mem, rec.size);
                }
                Tag::Pad => unreachable!("peek skips padding"),
            }
        }
    }

    /// Drops an unfinished message (its sender died or gave up), and its hold.
    fn abandon(&mut self, mem: &ChannelMem) {
        if let Some(a) = self.assembly.take() {
            self.spare = a.buf;
            self.spare.clear();
        }
        if self.hold.is_some() {
            self.publish_tail(mem);
        }
        self.clear_unheld(mem);
    }
}

/// Why a receive found nothing: the senders' state, cheaply (`check_alive` false:
/// only whether all closed) or fully.
fn senders_gone(mem: &ChannelMem, check_alive: bool) -> Option<Error> {
    if let Err(truncated) = mem.intact() {
        return Some(truncated);
    }
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
    Some(mem.disconnected(reason))
}

impl Receiver {
    /// Ends this receiver's blocked calls from another thread: they return
    /// [`Error::Interrupted`], and so do later waits until
    /// [`Interrupter::clear`](crate::Interrupter::clear). Nothing is lost: a
    /// message is taken only by a call that returns it.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.mem.interrupter()
    }

    pub(crate) fn interrupt_slot(&self) -> &crate::interrupt::InterruptSlot {
        self.mem.interrupt_slot()
    }

    /// Opens the channel `name` as its receiver, creating it with default options
    /// if it does not exist yet: [`ChannelOptions::new`]`.receiver(name)`.
    pub fn connect(name: &str) -> Result<Receiver> {
        ChannelOptions::new().receiver(name)
    }

    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Receiver> {
        let mem = open_queue(name, opts)?;
        let slot = mem.claim_slot(0..1, "receiver")?;
        // Only the receiver sleeps on the data doorbell: a count left there was
        // leaked by a receiver that died asleep (SIGKILL runs no destructor), and
        // would make every send pay for a wake-up call.
        mem.data_bell().forget_waiters();
        let tail = mem.tail().load(SeqCst);
        let head = mem.head().load(SeqCst);
        // The tail may be a record past the head (see WriteCursor::load).
        if !is_position(tail) || !is_position(head) || head.abs_diff(tail) > mem.capacity {
            mem.leave_slot(slot);
            return Err(mem.corrupt(format!("head {head} and tail {tail}")));
        }
        // A predecessor that died reading a message too long to hold lost it;
        // the rest of its fragments, if any, are skipped without counting twice.
        let lost = u64::from(mem.unheld().swap(0, SeqCst) != 0);
        if lost != 0 {
            mem.lost().fetch_add(lost, SeqCst);
        }
        // Senders waiting for room without a thread watch the receiver for its
        // exit: let them look again and see this one.
        mem.space_bell().ring();
        Ok(Receiver {
            waiting: AsyncWait::default(),
            mem,
            state: ReadState {
                tail,
                hold: None,
                held_pad: 0,
                unheld: false,
                lost,
                orphan: lost != 0,
                assembly: None,
                spare: Vec::new(),
            },
            spin: spin_of(opts.wait),
            last_check: Instant::now(),
            check_now: std::sync::atomic::AtomicBool::new(false),
            wait_for_senders: opts.wait_for_senders,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.mem.name()
    }

    /// The channel's name as errors carry it (shared: cloning allocates nothing).
    pub(crate) fn object_name(&self) -> ObjectName {
        self.mem.name().clone()
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
    /// attached has closed or died (a channel that never had a sender waits, and
    /// so does a receiver made with
    /// [`wait_for_senders`](ChannelOptions::wait_for_senders)).
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
        let accept = Accept::Exactly(std::mem::size_of::<T>() as u64, std::any::type_name::<T>());
        self.recv_until(Deadline::Never, accept, |b| bytemuck::pod_read_unaligned(b))
    }

    /// Receives a value sent with `send_serde` (postcard encoding).
    /// [`Error::Decode`] if the message is not a valid `T`; it is consumed.
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let name = self.mem.name().clone();
        self.recv_with(|b| postcard::from_bytes::<T>(b))?
            .map_err(|e| Error::Decode {
                object: name,
                reason: format!("not a {}: {e}", std::any::type_name::<T>()),
            })
    }

    fn recv_into_until(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let accept = Accept::UpTo(buf.len() as u64);
        self.recv_until(deadline, accept, |b| {
            buf[..b.len()].copy_from_slice(b);
            b.len()
        })
    }

    fn recv_with_until<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(deadline, Accept::Any, f)
    }

    /// Receives as `receive` does, and reports [`Error::Truncated`] instead if
    /// the channel's object was shrunk under us meanwhile (what was read may
    /// then be zeros).
    #[inline]
    fn recv_until<R>(
        &mut self,
        deadline: Deadline,
        accept: Accept,
        deliver: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let mut deliver = Some(deliver);
        match self.state.take_single(&self.mem, accept, &mut deliver) {
            Ok(r) => {
                self.mem.intact()?;
                Ok(r)
            }
            Err(_) => self.receive_checked(deadline, accept, deliver),
        }
    }

    /// Everything the fast path leaves, then the truncation check: out of line,
    /// so that the fast path stays a small function.
    #[inline(never)]
    fn receive_checked<R>(
        &mut self,
        deadline: Deadline,
        accept: Accept,
        deliver: Option<impl FnOnce(&[u8]) -> R>,
    ) -> Result<R> {
        let received = self.receive(deadline, accept, deliver);
        self.mem.intact()?;
        received
    }

    fn receive<R>(
        &mut self,
        deadline: Deadline,
        accept: Accept,
        mut deliver: Option<impl FnOnce(&[u8]) -> R>,
    ) -> Result<R> {
        let mem = &self.mem;
        let state = &mut self.state;
        // Only now: reading the clock costs as much as the fast path.
        let until = deadline.instant();
        let thorough = matches!(deadline, Deadline::Now);
        if let Some(r) = state.poll(mem, accept, &mut deliver, until, thorough)? {
            return Ok(r);
        }
        // A receiver that waits for the next sender never asks whether they are
        // gone: for it an empty queue is only ever "not yet".
        let stop = !self.wait_for_senders;
        let mut gone = senders_gone(mem, false).filter(|_| stop);
        if gone.is_none() && matches!(deadline, Deadline::Now) {
            // try_recv polled in a loop must not read /proc every time.
            // A load first: an empty try_recv in a loop must not write.
            let forced = self.check_now.load(Relaxed) && self.check_now.swap(false, SeqCst);
            if stop && (forced || self.last_check.elapsed() >= CHECK_EVERY) {
                self.last_check = Instant::now();
                gone = senders_gone(mem, true);
            }
            if gone.is_none() {
                return Err(deadline.expired(mem.name(), "receive"));
            }
        }
        if gone.is_none() {
            let plan = mem.plan(self.spin, deadline.instant());
            let ready = |thorough: bool| {
                if !thorough {
                    match state.take_single(mem, accept, &mut deliver) {
                        Ok(r) => return Some(Ok(Ok(r))),
                        Err(Fast::Nothing) => return None,
                        Err(Fast::Other) => {}
                    }
                }
                match state.poll(mem, accept, &mut deliver, until, thorough) {
                    Ok(Some(r)) => Some(Ok(Ok(r))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                }
            };
            let idle = || {
                if stop {
                    senders_gone(mem, true).map(|e| Ok(Err(e)))
                } else {
                    None
                }
            };
            match mem.data_bell().wait(&plan, ready, idle) {
                Err(stop) => return Err(deadline.stopped(stop, mem.name(), "receive")),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Ok(r))) => return Ok(r),
                Ok(Ok(Err(e))) => gone = Some(e),
            }
        }
        // The senders are gone, but what they published before going is still
        // delivered; a message they left unfinished is dropped.
        if let Some(r) = state.poll(mem, accept, &mut deliver, until, true)? {
            return Ok(r);
        }
        state.abandon(mem);
        Err(gone.expect("set on every path here"))
    }
}

/// Awaiting messages: the same receive, without a thread.
impl Receiver {
    /// [`recv`](Self::recv) as a future: waits without a thread (any executor:
    /// tokio, smol, async-std, a [`WaitSet`](crate::WaitSet)).
    ///
    /// Cancel safety: dropping the future before it completes takes nothing
    /// from the queue; the message it would have received stays for the next
    /// call. So it can be a branch of `tokio::select!`.
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-recv-async-{}", std::process::id());
    /// let mut rx = Receiver::connect(&name)?;
    /// let mut tx = Sender::connect(&name)?;
    /// tx.send(b"ping")?;
    /// let msg = shmkit::block_on(rx.recv_async())?;
    /// assert_eq!(msg, b"ping");
    /// # Ok(()) }
    /// ```
    pub fn recv_async(&mut self) -> impl std::future::Future<Output = Result<Vec<u8>>> + Send + '_ {
        OpFuture::new(self, "receive", |rx: &mut &mut Receiver| rx.try_recv())
    }

    /// [`recv_into`](Self::recv_into) as a future; cancel safe as
    /// [`recv_async`](Self::recv_async) is.
    pub fn recv_into_async<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = Result<usize>> + Send + 'a {
        OpFuture::new(self, "receive", move |rx: &mut &mut Receiver| {
            rx.try_recv_into(buf)
        })
    }

    /// [`recv_with`](Self::recv_with) as a future: `f` runs inside the poll
    /// that takes the message. Cancel safe as [`recv_async`](Self::recv_async).
    pub fn recv_with_async<'a, R: 'a>(
        &'a mut self,
        f: impl FnOnce(&[u8]) -> R + Send + Unpin + 'a,
    ) -> impl std::future::Future<Output = Result<R>> + Send + 'a {
        let mut f = Some(f);
        OpFuture::new(self, "receive", move |rx: &mut &mut Receiver| {
            rx.try_recv_with(|b| (f.take().expect("called once per message"))(b))
        })
    }

    /// Polls for the next message and lends it to `f`: `Ready` with what `f`
    /// returned (or an error), or `Pending` with `cx`'s waker registered to be
    /// called when the channel changes. For hand-written futures and event-loop
    /// bindings; the wait this registers is kept in the receiver until a later
    /// poll completes it or the receiver is dropped.
    pub fn poll_recv_with<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> std::task::Poll<Result<R>> {
        self.poll_recv_spinning(cx, false, f)
    }

    fn poll_recv_spinning<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        spin_first: bool,
        f: impl FnOnce(&[u8]) -> R,
    ) -> std::task::Poll<Result<R>> {
        let mut f = Some(f);
        crate::readiness::poll_kept(
            self,
            |o| &mut o.waiting,
            cx,
            "receive",
            spin_first,
            |rx| rx.try_recv_with(|b| (f.take().expect("called once per message"))(b)),
        )
    }

    /// Polls for the next message into `buf`, as [`recv_into`](Self::recv_into)
    /// receives: a message longer than `buf` is not taken
    /// ([`Error::BufferTooSmall`], it stays queued). `Pending` registers `cx`'s
    /// waker, kept in the receiver until a later poll completes.
    pub fn poll_recv_into(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<Result<usize>> {
        crate::readiness::poll_kept(
            self,
            |o| &mut o.waiting,
            cx,
            "receive",
            false,
            |rx| rx.try_recv_into(buf),
        )
    }

    /// Gives back the wait a `Pending` [`poll_recv_with`](Self::poll_recv_with)
    /// registered (senders stop paying for waking this receiver).
    pub fn cancel_poll(&mut self) {
        self.waiting.cancel();
    }
}

/// The receiver as a stream of messages: each item is what
/// [`recv`](Receiver::recv) would return; the stream ends after the channel is
/// found [`Disconnected`](Error::Disconnected) (that error is not an item).
impl futures_core::Stream for Receiver {
    type Item = Result<Vec<u8>>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Vec<u8>>>> {
        // A stream is awaited like the futures: it spins first.
        match self.get_mut().poll_recv_spinning(cx, true, <[u8]>::to_vec) {
            std::task::Poll::Ready(Err(e)) if e.is_disconnected() => std::task::Poll::Ready(None),
            other => other.map(Some),
        }
    }
}

impl Watched for Receiver {
    fn bells(&self) -> Bells<'_> {
        let d = self.mem.data_bell();
        [
            Some(Bell {
                word: d.signal,
                waiters: d.waiters,
                park: d.park,
            }),
            None,
        ]
    }
    fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
        self.mem.interrupt_slot().get_arc()
    }
    fn recheck(&self) -> Option<Duration> {
        (!self.wait_for_senders).then_some(CHECK_EVERY)
    }
    fn peers(&self) -> Option<Vec<crate::sys::ProcessIdentity>> {
        Some(self.mem.peer_identities(1..self.mem.slots))
    }
    fn object(&self) -> &ObjectName {
        self.mem.name()
    }
    fn spin(&self) -> Duration {
        crate::readiness::async_spin(self.spin)
    }
}

impl crate::readiness::Ready for Receiver {
    fn ready_now(&self, deep: bool) -> bool {
        let st = &self.state;
        if st.lost != 0 || st.assembly.as_ref().is_some_and(|a| a.complete) {
            return true;
        }
        let idx = st.tail & (self.mem.capacity - 1);
        if Header::decode(self.mem.load_header(idx), st.tail) != Header::NotYet {
            return true;
        }
        if self.wait_for_senders {
            return false;
        }
        let gone = senders_gone(&self.mem, deep).is_some();
        if gone && deep {
            self.check_now.store(true, SeqCst);
        }
        gone
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.mem.leave_slot(0);
        self.mem.space_bell().ring();
    }
}
