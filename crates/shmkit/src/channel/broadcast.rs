//! The broadcast channel: one publisher, many subscribers, each reading every
//! message at its own pace; the publisher never waits.
//!
//! The publisher writes records round the ring, overwriting the oldest. Before it
//! writes bytes it raises the *claim* (the end of what it is about to write);
//! anything below `claim - capacity` may be overwritten. A subscriber copies a
//! record out, then reads the claim: if the record's start has fallen below
//! `claim - capacity`, the copy may be torn and is thrown away, and the subscriber
//! has been lapped. It then jumps to the oldest record still whole (whose position
//! the publisher keeps in the header) and learns from that record's sequence
//! number how many messages it missed. This is the seqlock pattern, with the
//! position as the sequence: subscribers never write the ring and never slow the
//! publisher.

use std::collections::VecDeque;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use super::layout::*;
use super::memory::{Asked, ChannelMem, Config, Peer, CHECK_EVERY};
use super::wait::{spin_of, Deadline};
use super::{ChannelOptions, WaitMode, DEFAULT_CAPACITY, DEFAULT_MAX_SUBSCRIBERS};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{AsyncWait, Bell, Bells, OpFuture, Watched};

/// Attaches to a broadcast channel; a subscriber (`read_only_ring`) maps the
/// ring read-only.
fn open_broadcast(name: &str, opts: &ChannelOptions, read_only_ring: bool) -> Result<ChannelMem> {
    let capacity = opts.capacity.unwrap_or(DEFAULT_CAPACITY);
    let cfg = Config {
        flavour: Flavour::Broadcast,
        capacity,
        // Fixed by the ring: a message is one record.
        max_message: max_record(capacity).saturating_sub(8),
        slots: opts
            .max_subscribers
            .unwrap_or(DEFAULT_MAX_SUBSCRIBERS)
            .saturating_add(1),
        lifetime: opts.lifetime,
        mode: opts.mode,
        asked: Asked::from_options(opts, opts.max_subscribers),
        read_only_ring,
    };
    ChannelMem::attach(name, opts.attach, &cfg)
}

/// Position and sequence number of each record still whole in the ring, oldest
/// first.
type RecordIndex = VecDeque<(u64, u64)>;

/// The publishing end of a broadcast channel; one per channel.
///
/// ```
/// use shmkit::channel::{ChannelOptions, Publisher};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-pub-{}", std::process::id());
/// let mut publisher = ChannelOptions::new().publisher(&name)?;
/// let mut early = ChannelOptions::new().subscriber(&name)?;
/// publisher.publish(b"tick 1")?;
/// let mut late = ChannelOptions::new().history(true).subscriber(&name)?;
/// publisher.publish(b"tick 2")?;
/// assert_eq!(early.recv()?, b"tick 1");
/// assert_eq!(late.recv()?, b"tick 1"); // history: what the ring still holds
/// assert_eq!(early.recv()?, b"tick 2");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    mem: ChannelMem,
    head: u64,
    next_seq: u64,
    /// Tells where the oldest record is once older ones are overwritten.
    records: RecordIndex,
}

impl Publisher {
    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Publisher> {
        let mem = open_broadcast(name, opts, false)?;
        mem.claim_slot(0..1, "publisher")?;
        match Self::resume(&mem) {
            Ok((head, next_seq, records)) => {
                // Subscribers waiting without a thread watch the publisher for
                // its exit: let them look again and see this one.
                mem.data_bell().ring();
                Ok(Publisher {
                    mem,
                    head,
                    next_seq,
                    records,
                })
            }
            Err(e) => {
                mem.leave_slot(0);
                Err(e)
            }
        }
    }

    /// Where a new publisher goes on: after the last whole record. A publisher
    /// that died mid-write left its bytes past the head, where the next record
    /// overwrites them; the records still in the ring are indexed again by
    /// walking them (validated: they are shared memory) from the oldest.
    fn resume(mem: &ChannelMem) -> Result<(u64, u64, RecordIndex)> {
        let cap = mem.capacity;
        let head = mem.head().load(SeqCst);
        let oldest = mem.u64_at(OFF_OLDEST).load(SeqCst);
        let mut next_seq = mem.u64_at(OFF_NEXT_SEQ).load(SeqCst);
        let mut records = VecDeque::new();
        if !is_position(head) || !is_position(oldest) || oldest > head || head - oldest > cap {
            return Err(mem.corrupt(format!("head {head}, oldest record at {oldest}")));
        }
        let mut pos = oldest;
        while pos < head {
            let idx = pos & (cap - 1);
            let to_end = cap - idx;
            let bad = || mem.corrupt(format!("record at {pos} while resuming"));
            let Header::Record(tag, len) = Header::decode(mem.load_header(idx), pos) else {
                return Err(bad());
            };
            let size = match tag {
                Tag::Pad if len as u64 + RECORD_HEADER == to_end => to_end,
                Tag::Single if BROADCAST_HEADER + align8(len as u64) <= to_end => {
                    let seq = mem.load_header(idx + 8);
                    records.push_back((pos, seq));
                    // Shared memory: wrap rather than overflow on a hostile value.
                    next_seq = seq.wrapping_add(1);
                    BROADCAST_HEADER + align8(len as u64)
                }
                _ => return Err(bad()),
            };
            if size > head - pos {
                return Err(bad());
            }
            pos += size;
        }
        Ok((head, next_seq, records))
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.mem.name()
    }

    /// The longest message: a quarter of the ring, less 16 header bytes.
    pub fn max_message(&self) -> u64 {
        self.mem.max_message
    }

    /// Process ids of the live subscribers attached now.
    pub fn subscribers(&self) -> Vec<u32> {
        self.mem.live_peers(1..self.mem.slots)
    }

    /// Publishes `msg` to every subscriber. Never waits; [`Error::TooLong`] above
    /// [`max_message`](Self::max_message).
    pub fn publish(&mut self, msg: &[u8]) -> Result<()> {
        let mem = &self.mem;
        let len = msg.len() as u64;
        if len > mem.max_message {
            return Err(Error::TooLong {
                object: mem.name().into(),
                len,
                max: mem.max_message,
            });
        }
        let cap = mem.capacity;
        let need = BROADCAST_HEADER + align8(len);
        let idx = self.head & (cap - 1);
        let to_end = cap - idx;
        let pad = if need > to_end { to_end } else { 0 };
        let start = self.head + pad;
        let end = start + need;
        // Forget the records this write overwrites; the first left is the oldest.
        let floor = end.saturating_sub(cap);
        while self.records.front().is_some_and(|&(pos, _)| pos < floor) {
            self.records.pop_front();
        }
        let oldest = self.records.front().map_or(start, |&(pos, _)| pos);
        mem.u64_at(OFF_OLDEST).store(oldest, Release);
        mem.u64_at(OFF_CLAIM).store(end, Relaxed);
        // Readers that see any byte written below must see the new claim.
        fence(Release);
        if pad > 0 {
            mem.store_header(
                idx,
                Tag::Pad.encode((pad - RECORD_HEADER) as u32, self.head),
            );
        }
        let ridx = start & (cap - 1);
        mem.store_header(ridx, Tag::Single.encode(len as u32, start));
        mem.store_header(ridx + 8, self.next_seq);
        mem.write(ridx + BROADCAST_HEADER, msg);
        self.records.push_back((start, self.next_seq));
        // Resumed from shared memory, so possibly any value: wrap, never overflow.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.head = end;
        mem.u64_at(OFF_NEXT_SEQ).store(self.next_seq, Release);
        mem.head().swap(end, SeqCst);
        mem.data_bell().ring();
        mem.intact()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.mem.leave_slot(0);
        self.mem.data_bell().ring();
    }
}

/// A subscribing end of a broadcast channel.
///
/// Messages are copied out of the ring before they are handed over (the publisher
/// may overwrite the ring at any time), and every copy is checked against the
/// publisher's claim, so a lapped subscriber never sees a torn message.
#[derive(Debug)]
pub struct Subscriber {
    /// The wait of `poll_recv_with` and the stream, kept between polls.
    /// Declared first: it points into `mem` and must go before it.
    waiting: AsyncWait,
    /// When `try_recv` last looked whether the publisher lives.
    last_check: Instant,
    /// A wait set found the publisher gone: the next `try_recv` looks at once.
    check_now: std::sync::atomic::AtomicBool,
    mem: ChannelMem,
    slot: u32,
    pos: u64,
    /// Sequence number of the next message, once known.
    expected: Option<u64>,
    /// Before the first message: the sequence number of the message at the join
    /// position (used to count what a subscriber lapped before reading anything
    /// missed).
    join_seq: u64,
    buf: Vec<u8>,
    spin: Option<Duration>,
}

/// One look at the ring.
enum Look {
    Empty,
    Message,
    Lapped,
}

/// Attempts at finding the oldest record while the publisher keeps overwriting it.
const JUMP_TRIES: u32 = 10_000;

impl Subscriber {
    /// Ends this subscriber's blocked calls from another thread: they return
    /// [`Error::Interrupted`], and so do later waits until
    /// [`Interrupter::clear`](crate::Interrupter::clear).
    pub fn interrupter(&self) -> crate::Interrupter {
        self.mem.interrupter()
    }

    pub(crate) fn attach(name: &str, opts: &ChannelOptions) -> Result<Subscriber> {
        let mem = open_broadcast(name, opts, true)?;
        let slot = mem.claim_slot(1..mem.slots, "subscriber")?;
        let (head, join_seq) = match join_point(&mem) {
            Ok(point) => point,
            Err(e) => {
                mem.leave_slot(slot);
                return Err(e);
            }
        };
        let mut sub = Subscriber {
            waiting: AsyncWait::default(),
            last_check: Instant::now(),
            check_now: std::sync::atomic::AtomicBool::new(false),
            mem,
            slot,
            pos: head,
            expected: None,
            join_seq,
            buf: Vec::new(),
            spin: spin_of(opts.wait),
        };
        if opts.history {
            let oldest = sub.mem.u64_at(OFF_OLDEST).load(Acquire);
            if is_position(oldest) && oldest <= head && head - oldest <= sub.mem.capacity {
                sub.pos = oldest;
                let idx = oldest & (sub.mem.capacity - 1);
                if idx + BROADCAST_HEADER <= sub.mem.capacity {
                    sub.join_seq = sub.mem.load_header(idx + 8);
                }
            }
        }
        Ok(sub)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.mem.name()
    }

    /// Changes how blocking calls wait.
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        self.spin = spin_of(mode);
    }

    /// Receives the next message, waiting as long as it takes.
    /// [`Error::Lagged`] if the publisher overwrote messages this subscriber had
    /// not read (the next call goes on with the oldest message still held);
    /// [`Error::Disconnected`] once everything is read and the publisher closed
    /// or died.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::Never, |b| b.to_vec())
    }

    /// [`recv`](Self::recv) without waiting: [`Error::WouldBlock`] if there is
    /// nothing new.
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::Now, |b| b.to_vec())
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_with_until(Deadline::after(timeout), |b| b.to_vec())
    }

    /// Receives the next message and lends it to `f` (from the subscriber's own
    /// buffer: the ring itself may change at any moment).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Deadline::Never, f)
    }

    /// [`recv_with`](Self::recv_with), waiting at most `timeout`.
    pub fn recv_with_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.recv_with_until(Deadline::after(timeout), f)
    }

    fn recv_with_until<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        loop {
            let look = match self.look()? {
                Look::Empty => self.wait(deadline)?,
                found => found,
            };
            match look {
                Look::Message => {
                    // A copy made while the object was being shrunk is zeros.
                    self.mem.intact()?;
                    return Ok(f(&self.buf));
                }
                Look::Lapped => {
                    if let Some(lagged) = self.jump()? {
                        return Err(lagged);
                    }
                }
                Look::Empty => unreachable!("wait returns a message or a lap"),
            }
        }
    }

    /// Waits for a message (then in `buf`: `Look::Message`), a lap (`Look::Lapped`),
    /// or for the publisher to go (`Disconnected` once everything is read).
    fn wait(&mut self, deadline: Deadline) -> Result<Look> {
        let mem = &self.mem;
        if publisher_gone(mem, false).is_none() && !matches!(deadline, Deadline::Now) {
            let plan = mem.plan(self.spin, deadline.instant());
            let (pos, expected, buf) = (&mut self.pos, &mut self.expected, &mut self.buf);
            let ready = |_thorough| match look(mem, pos, expected, buf) {
                Ok(Look::Empty) => None,
                Ok(found) => Some(Ok(found)),
                Err(e) => Some(Err(e)),
            };
            let idle = || publisher_gone(mem, true).map(Err);
            match mem.data_bell().wait(&plan, ready, idle) {
                Err(stop) => return Err(deadline.stopped(stop, mem.name(), "receive")),
                Ok(Err(e)) if e.is_disconnected() => {}
                Ok(found) => return found,
            }
        } else if publisher_gone(mem, false).is_none() {
            // try_recv polled in a loop must not look at the publisher every
            // time; it does every CHECK_EVERY (at once after a wait set saw it
            // gone), as a blocking receive does while it sleeps.
            let forced = self.check_now.load(Relaxed) && self.check_now.swap(false, SeqCst);
            if !forced && self.last_check.elapsed() < CHECK_EVERY {
                return Err(deadline.expired(mem.name(), "receive"));
            }
            self.last_check = Instant::now();
            if publisher_gone(mem, true).is_none() {
                return Err(deadline.expired(mem.name(), "receive"));
            }
        }
        // The publisher is gone; deliver what it published before it went.
        match self.look()? {
            Look::Empty => Err(publisher_gone(&self.mem, true).unwrap_or_else(|| {
                self.mem
                    .disconnected("the publisher closed the channel".into())
            })),
            found => Ok(found),
        }
    }

    fn look(&mut self) -> Result<Look> {
        look(&self.mem, &mut self.pos, &mut self.expected, &mut self.buf)
    }

    /// Moves to the oldest record still whole; the `Lagged` error to return, or
    /// `None` if that record is the one due (only a pad before it was overwritten).
    fn jump(&mut self) -> Result<Option<Error>> {
        let mem = &self.mem;
        for _ in 0..JUMP_TRIES {
            let head = mem.head().load(SeqCst);
            let oldest = mem.u64_at(OFF_OLDEST).load(Acquire);
            if !is_position(oldest) || oldest > head || head - oldest > mem.capacity {
                std::hint::spin_loop();
                continue;
            }
            let idx = oldest & (mem.capacity - 1);
            let header = mem.load_header(idx);
            let seq = if idx + BROADCAST_HEADER <= mem.capacity {
                mem.load_header(idx + 8)
            } else {
                0
            };
            fence(Acquire);
            let claim = mem.u64_at(OFF_CLAIM).load(Relaxed);
            let whole = matches!(Header::decode(header, oldest), Header::Record(..));
            if oldest + mem.capacity < claim || !whole {
                std::hint::spin_loop();
                continue;
            }
            let missed = seq.saturating_sub(self.expected.unwrap_or(self.join_seq));
            self.pos = oldest;
            self.expected = Some(seq);
            return Ok((missed > 0).then(|| Error::Lagged {
                object: mem.name().into(),
                missed,
            }));
        }
        Err(mem.corrupt("cannot find a whole record: the publisher overwrites the ring faster than it can be read".into(),
        ))
    }
}

/// Where a new subscriber starts: the head, and the sequence number of the
/// message that will be written there.
///
/// The publisher raises the claim before it stores the next sequence number,
/// and moves the head last. A claim still equal to the head, read after the
/// sequence number (which makes the claim store visible), proves that no publish
/// was under way when the number was read; an unchanged head proves none
/// finished meanwhile. The publisher never waits, so a busy one can keep this
/// from settling: after a bounded number of tries the number is taken as read,
/// and may then be one too high (a first `Lagged` one short).
fn join_point(mem: &ChannelMem) -> Result<(u64, u64)> {
    let mut seen = (0, 0);
    for _ in 0..JUMP_TRIES {
        let head = mem.head().load(SeqCst);
        if !is_position(head) {
            return Err(mem.corrupt(format!("head {head}")));
        }
        let next_seq = mem.u64_at(OFF_NEXT_SEQ).load(Acquire);
        let claim = mem.u64_at(OFF_CLAIM).load(Acquire);
        seen = (head, next_seq);
        if claim == head && mem.head().load(SeqCst) == head {
            break;
        }
        std::hint::spin_loop();
    }
    Ok(seen)
}

/// Reads the record at `pos` into `buf` if there is one and it was whole.
fn look(
    mem: &ChannelMem,
    pos: &mut u64,
    expected: &mut Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<Look> {
    let cap = mem.capacity;
    // Between two records there is at most one pad; more means a corrupt writer.
    for _ in 0..3 {
        let head = mem.head().load(SeqCst);
        if *pos == head {
            return Ok(Look::Empty);
        }
        if !is_position(head) || head < *pos {
            return Err(mem.corrupt(format!("head {head} behind read position {pos}")));
        }
        if head - *pos > cap {
            return Ok(Look::Lapped);
        }
        let idx = *pos & (cap - 1);
        let to_end = cap - idx;
        let header = mem.load_header(idx);
        // What the header describes, if it is a record that fits where it is:
        // its kind, payload length and size in the ring. Everything in the header
        // is peer-written, so nothing here may overflow.
        let record = match Header::decode(header, *pos) {
            Header::Record(Tag::Pad, len) if len as u64 + RECORD_HEADER == to_end => {
                Some((Tag::Pad, 0, to_end))
            }
            Header::Record(Tag::Single, len) => {
                let len = len as u64;
                let size = BROADCAST_HEADER + align8(len);
                (len <= mem.max_message && size <= to_end && size <= head - *pos).then_some((
                    Tag::Single,
                    len,
                    size,
                ))
            }
            _ => None,
        };
        let seq = match record {
            Some((Tag::Single, len, _)) => {
                let seq = mem.load_header(idx + 8);
                buf.clear();
                mem.append(idx + BROADCAST_HEADER, len as usize, buf);
                seq
            }
            _ => 0,
        };
        fence(Acquire);
        let claim = mem.u64_at(OFF_CLAIM).load(Relaxed);
        // A pad carries nothing to tear: a header stamped for this position is
        // the pad's own, and where it ends follows from where it is. Only the
        // record after it can have been lost.
        let is_pad = matches!(record, Some((Tag::Pad, ..)));
        if *pos + cap < claim && !is_pad {
            return Ok(Look::Lapped);
        }
        let Some((tag, _, size)) = record else {
            return Err(mem.corrupt(format!("record at {pos} has header {header:#018x}")));
        };
        *pos += size;
        if tag == Tag::Pad {
            continue;
        }
        if let Some(e) = *expected {
            if seq != e {
                return Err(mem.corrupt(format!("message {seq} where {e} was due")));
            }
        }
        *expected = Some(seq.wrapping_add(1));
        return Ok(Look::Message);
    }
    Err(mem.corrupt(format!("padding after padding at {pos}")))
}

/// `Disconnected` if the publisher closed (or, with `check_alive`, died).
fn publisher_gone(mem: &ChannelMem, check_alive: bool) -> Option<Error> {
    if let Err(truncated) = mem.intact() {
        return Some(truncated);
    }
    let peer = if check_alive {
        mem.peer(0)
    } else {
        mem.peer_recorded(0)
    };
    let reason = match peer {
        Peer::Left => "the publisher closed the channel".to_owned(),
        Peer::Died(pid) => format!("the publisher (process {pid}) died"),
        Peer::Never | Peer::Attached(_) => return None,
    };
    Some(mem.disconnected(reason))
}

/// Awaiting messages: the same receive, without a thread.
impl Subscriber {
    /// [`recv`](Self::recv) as a future: waits without a thread. Cancel safe:
    /// dropping the future before it completes skips nothing; the next call
    /// gets the message this one would have.
    pub fn recv_async(&mut self) -> impl std::future::Future<Output = Result<Vec<u8>>> + Send + '_ {
        OpFuture::new(self, "receive", |sub: &mut &mut Subscriber| sub.try_recv())
    }

    /// Polls for the next message and lends it to `f`; `Pending` registers
    /// `cx`'s waker (kept in the subscriber until a later poll completes).
    /// For hand-written futures and event-loop bindings.
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
            |sub| {
                sub.recv_with_until(Deadline::Now, |b| {
                    (f.take().expect("called once per message"))(b)
                })
            },
        )
    }

    /// Gives back the wait a `Pending` [`poll_recv_with`](Self::poll_recv_with)
    /// registered.
    pub fn cancel_poll(&mut self) {
        self.waiting.cancel();
    }
}

/// The subscriber as a stream of messages: each item is what
/// [`recv`](Subscriber::recv) would return ([`Error::Lagged`] included); the
/// stream ends after the publisher is found gone.
impl futures_core::Stream for Subscriber {
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

impl crate::readiness::Ready for Subscriber {
    fn ready_now(&self, deep: bool) -> bool {
        if self.mem.head().load(SeqCst) != self.pos {
            return true;
        }
        let gone = publisher_gone(&self.mem, deep).is_some();
        if gone && deep {
            self.check_now.store(true, SeqCst);
        }
        gone
    }
}

impl Watched for Subscriber {
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

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.mem.leave_slot(self.slot);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod model {
    //! The seqlock read of a broadcast subscriber, run by loom over every
    //! interleaving within its bounds: a ring of one record, which the
    //! publisher's second message overwrites while the subscriber copies the
    //! first. The publisher raises the claim, then a release fence, then writes
    //! the record's words; the subscriber copies the words, then an acquire
    //! fence, then reads the claim. A copy it keeps must be whole (both words of
    //! one message) and the message it expected; a torn one must be thrown away.

    use crate::sync::protocol::model::check;
    use loom::sync::atomic::{fence, AtomicU64};
    use loom::sync::Arc;
    use loom::thread;
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

    #[derive(Default)]
    struct Ring {
        head: AtomicU64,
        claim: AtomicU64,
        /// The record's two words (a message `v` writes `v` into both).
        first: AtomicU64,
        second: AtomicU64,
    }

    /// Capacity in records: one, so that message 2 overwrites message 1.
    const CAPACITY: u64 = 1;

    #[test]
    fn a_subscriber_never_keeps_a_torn_copy() {
        check(|| {
            let ring = Arc::new(Ring::default());
            let publisher = {
                let ring = ring.clone();
                thread::spawn(move || {
                    for v in 1..=2u64 {
                        let end = v; // message v occupies position v - 1
                        ring.claim.store(end, Relaxed);
                        fence(Release);
                        ring.first.store(v, Relaxed);
                        ring.second.store(v, Relaxed);
                        ring.head.swap(end, SeqCst);
                    }
                })
            };
            // The subscriber reads position 0, message 1.
            let pos = 0u64;
            loop {
                if ring.head.fetch_add(0, SeqCst) <= pos {
                    thread::yield_now();
                    continue;
                }
                let a = ring.first.load(Relaxed);
                let b = ring.second.load(Relaxed);
                fence(Acquire);
                let claim = ring.claim.load(Relaxed);
                if pos + CAPACITY < claim {
                    // Lapped: the copy may be torn and is thrown away.
                    break;
                }
                assert_eq!((a, b), (1, 1), "kept a torn or wrong copy");
                break;
            }
            publisher.join().unwrap();
        });
    }
}
