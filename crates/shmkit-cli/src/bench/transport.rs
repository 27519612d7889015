//! The transports compared, each with both of its ends: the benchmark side
//! (`Link`) and the peer process (`run_peer`).
//!
//! Every transport moves the same payload the same way: the sender writes
//! every byte (a copy from its source buffer, stamped with a sequence number),
//! the receiver reads every byte (a copy out, or a fold over the bytes in place
//! for the zero-copy receivers) and checks the stamp.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmkit::channel::{
    ChannelOptions, Publisher, Receiver, RpcClient, RpcServer, Sender, Subscriber, WaitMode,
};
use shmkit::Shm;

use super::protocol::{self, Command as Cmd, Op, COMMAND_LEN};

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Ring size of every shmkit channel here: 8 MiB holds a 1 MiB message as one
/// record (a quarter of the ring), so no size is fragmented.
pub const RING: u64 = 8 << 20;
/// The largest message size the benchmark accepts.
pub const MAX_SIZE: usize = 1 << 20;
/// How long any one wait for a peer may take before the benchmark gives up.
const STUCK: Duration = Duration::from_secs(20);

/// The transports, in the order they are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Floor,
    QueueBusy,
    QueueBlocking,
    QueueSleep,
    QueueAsync,
    QueueAsyncSleep,
    WaitSet,
    ZeroCopy,
    Broadcast1,
    Broadcast4,
    Rpc,
    Pipe,
    UnixSocket,
    Tcp,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Floor,
        Kind::QueueBusy,
        Kind::QueueBlocking,
        Kind::QueueSleep,
        Kind::QueueAsync,
        Kind::QueueAsyncSleep,
        Kind::WaitSet,
        Kind::ZeroCopy,
        Kind::Broadcast1,
        Kind::Broadcast4,
        Kind::Rpc,
        Kind::Pipe,
        Kind::UnixSocket,
        Kind::Tcp,
    ];

    /// What the table shows.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Floor => "raw cache-line ping-pong (floor)",
            Kind::QueueBusy => "shmkit queue, busy-poll",
            Kind::QueueBlocking => "shmkit queue, blocking (default)",
            Kind::QueueSleep => "shmkit queue, blocking without spin",
            Kind::QueueAsync => "shmkit queue, async (tokio current-thread)",
            Kind::QueueAsyncSleep => "shmkit queue, async without spin",
            Kind::WaitSet => "shmkit queue, WaitSet of 500 each side",
            Kind::ZeroCopy => "shmkit queue, zero-copy (send_with), busy-poll",
            Kind::Broadcast1 => "shmkit broadcast, 1 subscriber",
            Kind::Broadcast4 => "shmkit broadcast, 4 subscribers",
            Kind::Rpc => "shmkit request/response",
            Kind::Pipe => "pipe",
            Kind::UnixSocket => "Unix socket",
            Kind::Tcp => "TCP loopback",
        }
    }

    /// What the throughput table shows.
    pub fn stream_label(self) -> &'static str {
        match self {
            Kind::Floor => "raw shared-memory ring (floor)",
            other => other.label(),
        }
    }

    /// Short name, for JSON and `--only`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::QueueBusy => "queue-busy",
            Kind::QueueBlocking => "queue-blocking",
            Kind::QueueSleep => "queue-sleep",
            Kind::QueueAsync => "queue-async",
            Kind::QueueAsyncSleep => "queue-async-sleep",
            Kind::WaitSet => "waitset",
            Kind::ZeroCopy => "zero-copy",
            Kind::Broadcast1 => "broadcast-1",
            Kind::Broadcast4 => "broadcast-4",
            Kind::Rpc => "rpc",
            Kind::Pipe => "pipe",
            Kind::UnixSocket => "unix-socket",
            Kind::Tcp => "tcp",
        }
    }

    pub fn from_key(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Whether a side spins while it waits (pointless, and unfair to every other
    /// case, with one core).
    pub fn spins(self) -> bool {
        matches!(self, Kind::Floor | Kind::QueueBusy | Kind::ZeroCopy)
    }

    /// Whether the one-way streaming test applies (a broadcast publisher never
    /// waits, so streaming would measure lapping; request/response is not a
    /// stream).
    pub fn streams(self) -> bool {
        matches!(
            self,
            Kind::Floor
                | Kind::QueueBusy
                | Kind::QueueBlocking
                | Kind::ZeroCopy
                | Kind::Pipe
                | Kind::UnixSocket
                | Kind::Tcp
        )
    }

    /// Whether this build can run it here.
    pub fn available(self) -> bool {
        cfg!(unix) || self != Kind::UnixSocket
    }

    /// Whether it runs at messages of `size` bytes: the wait set's thousand
    /// channels have small rings (see [`WAITSET_RING`]), so it measures
    /// wake-ups, not copies.
    pub fn fits(self, size: usize) -> bool {
        self != Kind::WaitSet || size <= WAITSET_MAX_SIZE
    }
}

/// The benchmark's end of a transport, with its peer processes.
pub trait Link {
    /// `count` round trips of `size` bytes; pushes each one's time (ns),
    /// measured from the end of the one before.
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()>;
    /// Receives `count` messages of `size` bytes streamed by the peer. Returns
    /// the time from the first message's arrival to the last's, and the
    /// messages received in it (`count - 1`): waking the peer is not timed.
    fn stream(&mut self, count: u64, size: usize) -> BenchResult<(u64, Duration)>;
    /// Tells the peers to stop and waits for them.
    fn finish(self: Box<Self>) -> BenchResult<()>;
    /// Kills the peers (after a failure, when they may be waiting mid-batch).
    fn kill(self: Box<Self>);
    /// The process that waits for this side's messages (for CPU accounting).
    fn peer_pid(&self) -> u32;
}

/// How peers are started: the program, the names' prefix, pinning.
#[derive(Clone, Debug)]
pub struct Spawner {
    pub base: String,
    /// CPU for the peers that answer (`None`: not pinned).
    pub peer_cpu: Option<usize>,
}

impl Spawner {
    fn command(&self, kind: Kind, name: &str, extra: &[&str]) -> BenchResult<Command> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "--peer", kind.key(), "--peer-name", name]);
        cmd.args(extra);
        if let Some(cpu) = self.peer_cpu {
            cmd.args(["--peer-cpu", &cpu.to_string()]);
        }
        Ok(cmd)
    }

    fn spawn(&self, kind: Kind, name: &str, extra: &[&str]) -> BenchResult<Child> {
        Ok(self.command(kind, name, extra)?.spawn()?)
    }

    fn name(&self, kind: Kind) -> String {
        format!("{}-{}", self.base, kind.key())
    }

    /// Starts `kind`'s peers and connects to them.
    pub fn open(&self, kind: Kind) -> BenchResult<Box<dyn Link>> {
        let name = self.name(kind);
        Ok(match kind {
            Kind::Floor => Box::new(Floor::open(self, &name)?),
            Kind::QueueBusy | Kind::QueueBlocking | Kind::QueueSleep | Kind::ZeroCopy => {
                Box::new(Queue::open(self, kind, &name)?)
            }
            Kind::QueueAsync | Kind::QueueAsyncSleep => {
                Box::new(AsyncQueue::open(self, kind, &name)?)
            }
            Kind::WaitSet => Box::new(Sets::open(self, &name)?),
            Kind::Broadcast1 => Box::new(Broadcast::open(self, kind, &name, 1)?),
            Kind::Broadcast4 => Box::new(Broadcast::open(self, kind, &name, 4)?),
            Kind::Rpc => Box::new(Rpc::open(self, &name)?),
            Kind::Pipe => {
                let mut child = self
                    .command(kind, &name, &[])?
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?;
                let pipes = Pipes(
                    child.stdout.take().expect("piped"),
                    child.stdin.take().expect("piped"),
                );
                Box::new(Stream::new(pipes, child))
            }
            #[cfg(unix)]
            Kind::UnixSocket => {
                let path = std::env::temp_dir().join(format!("{name}.sock"));
                let _ = std::fs::remove_file(&path);
                let listener = std::os::unix::net::UnixListener::bind(&path)?;
                let child =
                    self.spawn(kind, path.to_str().ok_or("temp path is not UTF-8")?, &[])?;
                let (socket, _) = listener.accept()?;
                let _ = std::fs::remove_file(&path);
                Box::new(Stream::new(socket, child))
            }
            #[cfg(not(unix))]
            Kind::UnixSocket => return Err("Unix sockets are not available here".into()),
            Kind::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0")?;
                let addr = listener.local_addr()?.to_string();
                let child = self.spawn(kind, &addr, &[])?;
                let (socket, _) = listener.accept()?;
                socket.set_nodelay(true)?;
                Box::new(Stream::new(socket, child))
            }
        })
    }
}

/// Fails if a peer has been silent for too long (it died, most likely).
fn check_stuck(since: Instant, what: &str) -> BenchResult<()> {
    if since.elapsed() > STUCK {
        return Err(format!("{what}: no answer for {} s", STUCK.as_secs()).into());
    }
    Ok(())
}

fn expect_seq(got: u64, want: u64, what: &str) -> BenchResult<()> {
    if got != want {
        return Err(format!("{what}: message {got} arrived where {want} was due").into());
    }
    Ok(())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_child(mut child: Child, what: &str) -> BenchResult<()> {
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("{what} peer exited with {status}").into());
    }
    Ok(())
}

/// Times `count` round trips done by `one(i)`.
fn timed_round_trips(
    count: u64,
    out: &mut Vec<u64>,
    mut one: impl FnMut(u64) -> BenchResult<()>,
) -> BenchResult<()> {
    let mut last = Instant::now();
    for i in 0..count {
        one(i)?;
        let now = Instant::now();
        out.push((now - last).as_nanos() as u64);
        last = now;
    }
    Ok(())
}

/// The messages after the first of a stream of `count`, and their time.
fn timed_stream(count: u64, first_arrived: Option<Instant>) -> (u64, Duration) {
    match first_arrived {
        Some(t) => (count - 1, t.elapsed()),
        None => (0, Duration::ZERO),
    }
}

/// Tells a peer on its control channel to stop.
fn quit(ctl: &mut Sender) -> BenchResult<()> {
    let cmd = Cmd {
        op: Op::Quit,
        count: 0,
        size: 0,
    };
    Ok(ctl.send(&cmd.encode())?)
}

fn control_channel(name: &str) -> String {
    format!("{name}-ctl")
}

// ---------------------------------------------------------------------------
// The floor: two counters and two payload areas in one segment, both sides
// spinning. No protocol, no checks: what the hardware does. Its stream is the
// plainest single-producer ring: fixed slots packed in 8 MiB (as much memory
// as a shmkit ring here), a head and a tail counter, each side caching the
// other's.

/// Offsets in the floor's segment: each counter on its own pair of cache lines
/// (the adjacent-line prefetcher pulls lines in pairs); the areas half a page
/// in, as the benchmark's buffers are (see `protocol::Buffer`).
const PING: u64 = 0;
const PONG: u64 = 128;
const STREAM_HEAD: u64 = 256;
const STREAM_TAIL: u64 = 384;
const AREA_A: u64 = 4096 + 2048;
const AREA_B: u64 = AREA_A + MAX_SIZE as u64;
const SLOTS: u64 = AREA_B + MAX_SIZE as u64;
const SLOTS_LEN: u64 = RING;

/// The floor stream's slot size for `size`-byte messages, and the slots.
fn slot_layout(size: usize) -> (u64, u64) {
    let stride = (size as u64).div_ceil(64) * 64;
    (stride, SLOTS_LEN / stride)
}

/// Spins until `ready` gives a value; an error after [`STUCK`].
fn spin_until(what: &str, mut ready: impl FnMut() -> Option<u64>) -> BenchResult<u64> {
    let since = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 20) == 0 {
            check_stuck(since, what)?;
        }
    }
}

struct Floor {
    shm: Shm,
    ctl: Sender,
    child: Child,
    seq: u64,
    /// Messages of the stream read so far, and the peer's count last seen.
    tail: u64,
    head_seen: u64,
    buf: protocol::Buffer,
}

impl Floor {
    fn open(sp: &Spawner, name: &str) -> BenchResult<Floor> {
        let shm = Shm::create(name, SLOTS + SLOTS_LEN)?;
        let ctl = Sender::connect(&control_channel(name))?;
        let child = sp.spawn(Kind::Floor, name, &[])?;
        Ok(Floor {
            shm,
            ctl,
            child,
            seq: 0,
            tail: 0,
            head_seen: 0,
            buf: protocol::pattern(MAX_SIZE),
        })
    }
}

impl Link for Floor {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.ctl.send(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let ping = self.shm.atomic_u64(PING)?;
        let pong = self.shm.atomic_u64(PONG)?;
        let (shm, buf, seq) = (&self.shm, &mut self.buf[..size], &mut self.seq);
        timed_round_trips(count, out, |_| {
            *seq += 1;
            protocol::stamp(buf, *seq);
            shm.write_at(AREA_A, buf)?;
            ping.store(*seq, Ordering::Release);
            let since = Instant::now();
            let mut spins = 0u32;
            while pong.load(Ordering::Acquire) != *seq {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins % (1 << 20) == 0 {
                    check_stuck(since, "floor")?;
                }
            }
            shm.read_at(AREA_B, buf)?;
            expect_seq(protocol::seq_of(buf), *seq, "floor")
        })
    }

    fn stream(&mut self, count: u64, size: usize) -> BenchResult<(u64, Duration)> {
        let mut start = None;
        self.ctl.send(
            &Cmd {
                op: Op::Stream,
                count,
                size,
            }
            .encode(),
        )?;
        let head = self.shm.atomic_u64(STREAM_HEAD)?;
        let tail = self.shm.atomic_u64(STREAM_TAIL)?;
        let (stride, slots) = slot_layout(size);
        let buf = &mut self.buf[..size];
        for i in 0..count {
            if self.tail == self.head_seen {
                let t = self.tail;
                self.head_seen = spin_until("floor stream", || {
                    Some(head.load(Ordering::Acquire)).filter(|&h| h > t)
                })?;
            }
            self.shm
                .read_at(SLOTS + (self.tail % slots) * stride, buf)?;
            expect_seq(protocol::seq_of(buf), i, "floor stream")?;
            self.tail += 1;
            tail.store(self.tail, Ordering::Release);
            start.get_or_insert_with(Instant::now);
        }
        Ok(timed_stream(count, start))
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        quit(&mut self.ctl)?;
        wait_child(self.child, "floor")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn floor_peer(name: &str) -> BenchResult<()> {
    let shm = Shm::open(name)?;
    let mut ctl = Receiver::connect(&control_channel(name))?;
    let ping = shm.atomic_u64(PING)?;
    let pong = shm.atomic_u64(PONG)?;
    let mut buf = protocol::Buffer::new(MAX_SIZE);
    let mut seq = 0u64;
    let (stream_head, stream_tail) = (shm.atomic_u64(STREAM_HEAD)?, shm.atomic_u64(STREAM_TAIL)?);
    let (mut head, mut tail_seen) = (0u64, 0u64);
    let mut src = protocol::pattern(MAX_SIZE);
    loop {
        let cmd = next_command(&mut ctl)?;
        if cmd.op == Op::Stream {
            let (stride, slots) = slot_layout(cmd.size);
            let src = &mut src[..cmd.size];
            for i in 0..cmd.count {
                if head - tail_seen >= slots {
                    let full = head - slots;
                    tail_seen = spin_until("floor stream peer", || {
                        Some(stream_tail.load(Ordering::Acquire)).filter(|&t| t > full)
                    })?;
                }
                protocol::stamp(src, i);
                shm.write_at(SLOTS + (head % slots) * stride, src)?;
                head += 1;
                stream_head.store(head, Ordering::Release);
            }
            continue;
        }
        if cmd.op != Op::Echo {
            return Ok(());
        }
        let buf = &mut buf[..cmd.size];
        for _ in 0..cmd.count {
            seq += 1;
            let since = Instant::now();
            let mut spins = 0u32;
            while ping.load(Ordering::Acquire) != seq {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins % (1 << 20) == 0 {
                    check_stuck(since, "floor peer")?;
                }
            }
            shm.read_at(AREA_A, buf)?;
            shm.write_at(AREA_B, buf)?;
            pong.store(seq, Ordering::Release);
        }
    }
}

fn next_command(ctl: &mut Receiver) -> BenchResult<Cmd> {
    let mut b = [0u8; COMMAND_LEN];
    match ctl.recv_into(&mut b) {
        Ok(n) => Ok(Cmd::decode(&b[..n])?),
        // The benchmark went away: stop.
        Err(e) if e.is_disconnected() => Ok(Cmd {
            op: Op::Quit,
            count: 0,
            size: 0,
        }),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// shmkit queues: `-in` to the peer, `-out` back.

fn queue_options(kind: Kind) -> ChannelOptions {
    let wait = match kind {
        Kind::QueueBlocking | Kind::QueueAsync => WaitMode::default(),
        Kind::QueueSleep | Kind::QueueAsyncSleep => WaitMode::Blocking {
            spin: Duration::ZERO,
        },
        _ => WaitMode::BusyPoll,
    };
    ChannelOptions::new().capacity(RING).wait_mode(wait)
}

struct Queue {
    zero_copy: bool,
    tx: Sender,
    rx: Receiver,
    ctl: Sender,
    child: Child,
    seq: u64,
    src: protocol::Buffer,
    buf: protocol::Buffer,
}

impl Queue {
    fn open(sp: &Spawner, kind: Kind, name: &str) -> BenchResult<Queue> {
        let opts = queue_options(kind);
        let tx = opts.sender(&format!("{name}-in"))?;
        let rx = opts.receiver(&format!("{name}-out"))?;
        let ctl = Sender::connect(&control_channel(name))?;
        let child = sp.spawn(kind, name, &[])?;
        Ok(Queue {
            zero_copy: kind == Kind::ZeroCopy,
            tx,
            rx,
            ctl,
            child,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
            buf: protocol::Buffer::new(MAX_SIZE),
        })
    }
}

impl Link for Queue {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.ctl.send(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let Queue {
            zero_copy,
            tx,
            rx,
            src,
            buf,
            seq,
            ..
        } = self;
        let src = &mut src[..size];
        timed_round_trips(count, out, |_| {
            *seq += 1;
            if *zero_copy {
                // Written in one pass, as a sender that builds its message in
                // place would: the ring's lines are touched once each.
                protocol::stamp(src, *seq);
                tx.send_with(size, |slot| slot.copy_from_slice(src))?;
                let got = rx.recv_with(|b| (b.len(), protocol::seq_of(b), protocol::fold(b)))?;
                expect_seq(got.1, *seq, "zero-copy queue")
            } else {
                protocol::stamp(src, *seq);
                tx.send(src)?;
                let n = rx.recv_into(buf)?;
                if n != size {
                    return Err(format!("queue: {n} bytes came back, not {size}").into());
                }
                expect_seq(protocol::seq_of(buf), *seq, "queue")
            }
        })
    }

    fn stream(&mut self, count: u64, size: usize) -> BenchResult<(u64, Duration)> {
        let mut start = None;
        self.ctl.send(
            &Cmd {
                op: Op::Stream,
                count,
                size,
            }
            .encode(),
        )?;
        for i in 0..count {
            let seq = if self.zero_copy {
                self.rx.recv_with(|b| {
                    protocol::fold(b);
                    protocol::seq_of(b)
                })?
            } else {
                self.rx.recv_into(&mut self.buf)?;
                protocol::seq_of(&self.buf)
            };
            expect_seq(seq, i, "queue stream")?;
            start.get_or_insert_with(Instant::now);
        }
        Ok(timed_stream(count, start))
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        quit(&mut self.ctl)?;
        wait_child(self.child, "queue")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn queue_peer(kind: Kind, name: &str) -> BenchResult<()> {
    let opts = queue_options(kind);
    let mut rx = opts.receiver(&format!("{name}-in"))?;
    let mut tx = opts.sender(&format!("{name}-out"))?;
    let mut ctl = Receiver::connect(&control_channel(name))?;
    let zero_copy = kind == Kind::ZeroCopy;
    let mut buf = protocol::Buffer::new(MAX_SIZE);
    let mut src = protocol::pattern(MAX_SIZE);
    loop {
        let cmd = next_command(&mut ctl)?;
        match cmd.op {
            Op::Quit => return Ok(()),
            Op::Echo => {
                for _ in 0..cmd.count {
                    if zero_copy {
                        // Straight from the one ring into the other: one copy.
                        rx.recv_with(|b| tx.send_with(b.len(), |slot| slot.copy_from_slice(b)))??;
                    } else {
                        let n = rx.recv_into(&mut buf)?;
                        tx.send(&buf[..n])?;
                    }
                }
            }
            Op::Stream => {
                let src = &mut src[..cmd.size];
                for i in 0..cmd.count {
                    protocol::stamp(src, i);
                    if zero_copy {
                        tx.send_with(cmd.size, |slot| slot.copy_from_slice(src))?;
                    } else {
                        tx.send(src)?;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The same queues awaited: both sides run a current-thread tokio runtime and
// move every message with `send_async` / `recv_into_async` (commands still
// come on the blocking control channel, between batches). A future spins its
// wait mode's spin (20 µs by default) before it yields to the runtime, as a
// blocking call does before it sleeps; without spin it goes straight to the
// reactor, whose thread wakes the runtime's.

fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().build()?)
}

struct AsyncQueue {
    rt: tokio::runtime::Runtime,
    tx: Sender,
    rx: Receiver,
    ctl: Sender,
    child: Child,
    seq: u64,
    src: protocol::Buffer,
    buf: protocol::Buffer,
}

impl AsyncQueue {
    fn open(sp: &Spawner, kind: Kind, name: &str) -> BenchResult<AsyncQueue> {
        let opts = queue_options(kind);
        let tx = opts.sender(&format!("{name}-in"))?;
        let rx = opts.receiver(&format!("{name}-out"))?;
        let ctl = Sender::connect(&control_channel(name))?;
        let child = sp.spawn(kind, name, &[])?;
        Ok(AsyncQueue {
            rt: runtime()?,
            tx,
            rx,
            ctl,
            child,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
            buf: protocol::Buffer::new(MAX_SIZE),
        })
    }
}

impl Link for AsyncQueue {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.ctl.send(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let AsyncQueue {
            rt,
            tx,
            rx,
            src,
            buf,
            seq,
            ..
        } = self;
        let src = &mut src[..size];
        // As `timed_round_trips`, inside the runtime: one clock read per
        // round trip.
        rt.block_on(async {
            let mut last = Instant::now();
            for _ in 0..count {
                *seq += 1;
                protocol::stamp(src, *seq);
                tx.send_async(src).await?;
                let n = rx.recv_into_async(buf).await?;
                if n != size {
                    return Err(format!("async queue: {n} bytes came back, not {size}").into());
                }
                expect_seq(protocol::seq_of(buf), *seq, "async queue")?;
                let now = Instant::now();
                out.push((now - last).as_nanos() as u64);
                last = now;
            }
            Ok(())
        })
    }

    fn stream(&mut self, _: u64, _: usize) -> BenchResult<(u64, Duration)> {
        Err("the async queue has no streaming test".into())
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        quit(&mut self.ctl)?;
        wait_child(self.child, "async queue")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn async_peer(kind: Kind, name: &str) -> BenchResult<()> {
    let opts = queue_options(kind);
    let mut rx = opts.receiver(&format!("{name}-in"))?;
    let mut tx = opts.sender(&format!("{name}-out"))?;
    let mut ctl = Receiver::connect(&control_channel(name))?;
    let rt = runtime()?;
    let mut buf = protocol::Buffer::new(MAX_SIZE);
    loop {
        let cmd = next_command(&mut ctl)?;
        if cmd.op != Op::Echo {
            return Ok(());
        }
        rt.block_on(async {
            for _ in 0..cmd.count {
                let n = rx.recv_into_async(&mut buf).await?;
                tx.send_async(&buf[..n]).await?;
            }
            Ok::<_, shmkit::Error>(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// Wait sets: each side waits in a `WaitSet` of WAITSET_CHANNELS receivers; round
// trip `seq` goes out on `-in-k` and comes back on `-out-k`, k = seq mod the
// count, so the message arrives on another channel of the set each time.

/// Channels in each side's wait set.
const WAITSET_CHANNELS: usize = 500;
/// Ring of each of them: the thousand rings take 64 MiB.
const WAITSET_RING: u64 = 64 << 10;
/// The largest message size the wait-set transport runs (a sixteenth of its ring).
const WAITSET_MAX_SIZE: usize = 4 << 10;

fn waitset_options() -> ChannelOptions {
    ChannelOptions::new().capacity(WAITSET_RING)
}

/// Opens `count` receivers named `{prefix}-0`... and senders `{to}-0`...
fn waitset_ends(prefix: &str, to: &str) -> BenchResult<(Vec<Receiver>, Vec<Sender>)> {
    let opts = waitset_options();
    let mut rxs = Vec::with_capacity(WAITSET_CHANNELS);
    let mut txs = Vec::with_capacity(WAITSET_CHANNELS);
    for k in 0..WAITSET_CHANNELS {
        rxs.push(opts.receiver(&format!("{prefix}-{k}"))?);
        txs.push(opts.sender(&format!("{to}-{k}"))?);
    }
    Ok((rxs, txs))
}

/// A wait set of all `rxs`, made once for a batch of round trips: its members
/// stay armed between waits, so a wait costs what changed, not all members.
fn waitset_of(rxs: &mut [Receiver]) -> shmkit::WaitSet<'_> {
    let mut set = shmkit::WaitSet::new();
    for rx in rxs.iter_mut() {
        set.add(rx);
    }
    set
}

/// Waits in `set` until a member is ready, then receives from it into `buf`:
/// which channel it was, and the message's length.
fn waitset_recv(
    set: &mut shmkit::WaitSet<'_>,
    buf: &mut [u8],
    what: &str,
) -> BenchResult<(usize, usize)> {
    let since = Instant::now();
    loop {
        let ready = set.wait_timeout(STUCK)?;
        for k in ready {
            let rx = set
                .get_mut::<Receiver>(k)
                .ok_or("a wait set member is not a receiver")?;
            match rx.try_recv_into(buf) {
                Ok(n) => return Ok((k, n)),
                Err(e) if e.is_would_block() => {}
                Err(e) => return Err(e.into()),
            }
        }
        check_stuck(since, what)?;
    }
}

struct Sets {
    txs: Vec<Sender>,
    rxs: Vec<Receiver>,
    ctl: Sender,
    child: Child,
    seq: u64,
    src: protocol::Buffer,
    buf: protocol::Buffer,
}

impl Sets {
    fn open(sp: &Spawner, name: &str) -> BenchResult<Sets> {
        let (rxs, txs) = waitset_ends(&format!("{name}-out"), &format!("{name}-in"))?;
        let ctl = Sender::connect(&control_channel(name))?;
        let child = sp.spawn(Kind::WaitSet, name, &[])?;
        Ok(Sets {
            txs,
            rxs,
            ctl,
            child,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
            buf: protocol::Buffer::new(MAX_SIZE),
        })
    }
}

impl Link for Sets {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.ctl.send(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let Sets {
            txs,
            rxs,
            src,
            buf,
            seq,
            ..
        } = self;
        let src = &mut src[..size];
        let mut set = waitset_of(rxs);
        timed_round_trips(count, out, |_| {
            *seq += 1;
            let k = (*seq % WAITSET_CHANNELS as u64) as usize;
            protocol::stamp(src, *seq);
            txs[k].send(src)?;
            let (from, n) = waitset_recv(&mut set, buf, "wait set")?;
            if (from, n) != (k, size) {
                return Err(format!(
                    "wait set: {n} bytes came back on channel {from}, not {size} on {k}"
                )
                .into());
            }
            expect_seq(protocol::seq_of(buf), *seq, "wait set")
        })
    }

    fn stream(&mut self, _: u64, _: usize) -> BenchResult<(u64, Duration)> {
        Err("the wait set has no streaming test".into())
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        quit(&mut self.ctl)?;
        wait_child(self.child, "wait set")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn sets_peer(name: &str) -> BenchResult<()> {
    let (mut rxs, mut txs) = waitset_ends(&format!("{name}-in"), &format!("{name}-out"))?;
    let mut ctl = Receiver::connect(&control_channel(name))?;
    let mut buf = protocol::Buffer::new(MAX_SIZE);
    loop {
        let cmd = next_command(&mut ctl)?;
        if cmd.op != Op::Echo {
            return Ok(());
        }
        let mut set = waitset_of(&mut rxs);
        for _ in 0..cmd.count {
            let (k, n) = waitset_recv(&mut set, &mut buf, "wait set peer")?;
            txs[k].send(&buf[..n])?;
        }
    }
}

// ---------------------------------------------------------------------------
// Broadcast: this side publishes; the first subscriber answers on a queue, the
// others only read.

struct Broadcast {
    publisher: Option<Publisher>,
    back: Receiver,
    ctl: Sender,
    children: Vec<Child>,
    seq: u64,
    src: protocol::Buffer,
    buf: protocol::Buffer,
}

impl Broadcast {
    fn open(sp: &Spawner, kind: Kind, name: &str, subscribers: usize) -> BenchResult<Broadcast> {
        let publisher = ChannelOptions::new()
            .capacity(RING)
            .publisher(&format!("{name}-pub"))?;
        let back = ChannelOptions::new()
            .capacity(RING)
            .receiver(&format!("{name}-back"))?;
        let ctl = Sender::connect(&control_channel(name))?;
        let mut children = vec![sp.spawn(kind, name, &["--peer-index", "0"])?];
        // The other subscribers are not pinned: they only read.
        let quiet = Spawner {
            peer_cpu: None,
            ..sp.clone()
        };
        for i in 1..subscribers {
            children.push(quiet.spawn(kind, name, &["--peer-index", &i.to_string()])?);
        }
        let since = Instant::now();
        while publisher.subscribers().len() < subscribers {
            check_stuck(since, "broadcast subscribers attaching")?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Broadcast {
            publisher: Some(publisher),
            back,
            ctl,
            children,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
            buf: protocol::Buffer::new(MAX_SIZE),
        })
    }
}

impl Link for Broadcast {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.ctl.send(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let Broadcast {
            publisher,
            back,
            src,
            buf,
            seq,
            ..
        } = self;
        let publisher = publisher.as_mut().expect("open until finish");
        let src = &mut src[..size];
        timed_round_trips(count, out, |_| {
            *seq += 1;
            protocol::stamp(src, *seq);
            publisher.publish(src)?;
            back.recv_into(buf)?;
            expect_seq(protocol::seq_of(buf), *seq, "broadcast")
        })
    }

    fn stream(&mut self, _: u64, _: usize) -> BenchResult<(u64, Duration)> {
        Err("broadcast has no streaming test".into())
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        quit(&mut self.ctl)?;
        // The quiet subscribers stop when the publisher goes.
        drop(self.publisher.take());
        for child in self.children {
            wait_child(child, "broadcast")?;
        }
        Ok(())
    }

    fn kill(mut self: Box<Self>) {
        self.children.iter_mut().for_each(kill);
    }

    fn peer_pid(&self) -> u32 {
        self.children[0].id()
    }
}

fn broadcast_peer(name: &str, index: usize) -> BenchResult<()> {
    let mut sub: Subscriber = ChannelOptions::new()
        .capacity(RING)
        .subscriber(&format!("{name}-pub"))?;
    if index > 0 {
        // Read everything until the publisher goes; a lap only means this
        // reader fell behind, which is allowed.
        loop {
            match sub.recv_with(protocol::fold) {
                Ok(_) => {}
                Err(shmkit::Error::Lagged { .. }) => {}
                Err(e) if e.is_disconnected() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut back = ChannelOptions::new()
        .capacity(RING)
        .sender(&format!("{name}-back"))?;
    let mut ctl = Receiver::connect(&control_channel(name))?;
    loop {
        let cmd = next_command(&mut ctl)?;
        if cmd.op != Op::Echo {
            return Ok(());
        }
        for _ in 0..cmd.count {
            sub.recv_with(|b| back.send(b))??;
        }
    }
}

// ---------------------------------------------------------------------------
// Request/response: each round trip is one call.

struct Rpc {
    client: RpcClient,
    child: Child,
    seq: u64,
    src: protocol::Buffer,
}

impl Rpc {
    fn open(sp: &Spawner, name: &str) -> BenchResult<Rpc> {
        let child = sp.spawn(Kind::Rpc, name, &[])?;
        let since = Instant::now();
        // The server makes the request queue; connecting first would make it
        // with other options.
        while shmkit::channel::inspect(name).is_err() {
            check_stuck(since, "RPC server starting")?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Rpc {
            client: RpcClient::connect(name)?,
            child,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
        })
    }
}

impl Link for Rpc {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        let Rpc {
            client, src, seq, ..
        } = self;
        let src = &mut src[..size];
        timed_round_trips(count, out, |_| {
            *seq += 1;
            protocol::stamp(src, *seq);
            let got = client.call_with(src, protocol::seq_of)?;
            expect_seq(got, *seq, "RPC")
        })
    }

    fn stream(&mut self, _: u64, _: usize) -> BenchResult<(u64, Duration)> {
        Err("request/response has no streaming test".into())
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        // An empty request asks the server to stop.
        self.client.call(&[])?;
        wait_child(self.child, "RPC")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn rpc_peer(name: &str) -> BenchResult<()> {
    let mut server = RpcServer::bind(name)?;
    let mut stop = false;
    while !stop {
        server.respond(|request, reply| {
            stop = request.is_empty();
            reply.extend_from_slice(request);
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Byte streams (pipe, Unix socket, TCP): commands in-band, messages of a size
// both sides know.

/// A child's stdout and stdin as one stream.
struct Pipes(ChildStdout, ChildStdin);

impl Read for Pipes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Pipes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

struct Stream<S> {
    stream: S,
    child: Child,
    seq: u64,
    src: protocol::Buffer,
    buf: protocol::Buffer,
}

impl<S: Read + Write> Stream<S> {
    fn new(stream: S, child: Child) -> Stream<S> {
        Stream {
            stream,
            child,
            seq: 0,
            src: protocol::pattern(MAX_SIZE),
            buf: protocol::Buffer::new(MAX_SIZE),
        }
    }
}

impl<S: Read + Write> Link for Stream<S> {
    fn round_trips(&mut self, count: u64, size: usize, out: &mut Vec<u64>) -> BenchResult<()> {
        self.stream.write_all(
            &Cmd {
                op: Op::Echo,
                count,
                size,
            }
            .encode(),
        )?;
        let Stream {
            stream,
            src,
            buf,
            seq,
            ..
        } = self;
        let (src, buf) = (&mut src[..size], &mut buf[..size]);
        timed_round_trips(count, out, |_| {
            *seq += 1;
            protocol::stamp(src, *seq);
            stream.write_all(src)?;
            stream.read_exact(buf)?;
            expect_seq(protocol::seq_of(buf), *seq, "stream")
        })
    }

    fn stream(&mut self, count: u64, size: usize) -> BenchResult<(u64, Duration)> {
        let mut start = None;
        self.stream.write_all(
            &Cmd {
                op: Op::Stream,
                count,
                size,
            }
            .encode(),
        )?;
        let buf = &mut self.buf[..size];
        for i in 0..count {
            self.stream.read_exact(buf)?;
            expect_seq(protocol::seq_of(buf), i, "stream")?;
            start.get_or_insert_with(Instant::now);
        }
        Ok(timed_stream(count, start))
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        self.stream.write_all(
            &Cmd {
                op: Op::Quit,
                count: 0,
                size: 0,
            }
            .encode(),
        )?;
        drop(self.stream);
        wait_child(self.child, "stream")
    }

    fn kill(mut self: Box<Self>) {
        kill(&mut self.child);
    }

    fn peer_pid(&self) -> u32 {
        self.child.id()
    }
}

fn stream_peer(mut s: impl Read + Write) -> BenchResult<()> {
    let mut buf = protocol::Buffer::new(MAX_SIZE);
    let mut src = protocol::pattern(MAX_SIZE);
    loop {
        let mut c = [0u8; COMMAND_LEN];
        if s.read_exact(&mut c).is_err() {
            return Ok(()); // closed
        }
        let cmd = Cmd::decode(&c)?;
        match cmd.op {
            Op::Quit => return Ok(()),
            Op::Echo => {
                let buf = &mut buf[..cmd.size];
                for _ in 0..cmd.count {
                    s.read_exact(buf)?;
                    s.write_all(buf)?;
                }
            }
            Op::Stream => {
                let src = &mut src[..cmd.size];
                for i in 0..cmd.count {
                    protocol::stamp(src, i);
                    s.write_all(src)?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Broadcast fan-out: what one publish costs the publisher with 1, 4, 16
// subscribers reading.

/// CPU time per publish of `size` bytes (ns) with `subscribers` subscriber
/// processes reading in `mode`, over `count` publishes; `None` where the
/// platform cannot measure thread CPU time.
pub fn fan_out(
    sp: &Spawner,
    subscribers: usize,
    busy: bool,
    count: u64,
    size: usize,
) -> BenchResult<Option<f64>> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let name = format!("{}-fan-{}", sp.base, RUNS.fetch_add(1, Ordering::Relaxed));
    let mut publisher = ChannelOptions::new()
        .capacity(1 << 20)
        .max_subscribers(64)
        .publisher(&name)?;
    let quiet = Spawner {
        peer_cpu: None,
        ..sp.clone()
    };
    let mode = if busy { "busy" } else { "blocking" };
    let mut children = Vec::new();
    for _ in 0..subscribers {
        children.push(quiet.spawn(
            Kind::Broadcast1,
            &name,
            &["--peer-index", "fan", "--peer-mode", mode],
        )?);
    }
    let since = Instant::now();
    while publisher.subscribers().len() < subscribers {
        check_stuck(since, "fan-out subscribers attaching")?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut src = protocol::pattern(size);
    let cpu_before = super::system::thread_cpu_ns();
    for i in 0..count {
        protocol::stamp(&mut src, i);
        publisher.publish(&src)?;
    }
    let cpu_after = super::system::thread_cpu_ns();
    drop(publisher);
    for child in children {
        wait_child(child, "fan-out")?;
    }
    Ok(cpu_before
        .zip(cpu_after)
        .map(|(a, b)| (b - a) as f64 / count as f64))
}

fn fan_out_peer(name: &str, busy: bool) -> BenchResult<()> {
    let wait = if busy {
        WaitMode::BusyPoll
    } else {
        WaitMode::default()
    };
    let mut sub = ChannelOptions::new().wait_mode(wait).subscriber(name)?;
    loop {
        match sub.recv_with(protocol::fold) {
            Ok(_) | Err(shmkit::Error::Lagged { .. }) => {}
            Err(e) if e.is_disconnected() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------

/// What a peer process was told on its command line.
pub struct PeerArgs {
    pub kind: String,
    pub name: String,
    pub index: Option<String>,
    pub mode: Option<String>,
    pub cpu: Option<usize>,
}

/// The peer process: runs until told to stop.
pub fn run_peer(args: PeerArgs) -> BenchResult<()> {
    if let Some(cpu) = args.cpu {
        super::system::pin_to(cpu)?;
    }
    let kind = Kind::from_key(&args.kind).ok_or_else(|| format!("unknown peer {:?}", args.kind))?;
    let name = args.name.as_str();
    match kind {
        Kind::Floor => floor_peer(name),
        Kind::QueueBusy | Kind::QueueBlocking | Kind::QueueSleep | Kind::ZeroCopy => {
            queue_peer(kind, name)
        }
        Kind::QueueAsync | Kind::QueueAsyncSleep => async_peer(kind, name),
        Kind::WaitSet => sets_peer(name),
        Kind::Broadcast1 | Kind::Broadcast4 => match args.index.as_deref() {
            Some("fan") => fan_out_peer(name, args.mode.as_deref() == Some("busy")),
            Some(i) => broadcast_peer(name, i.parse()?),
            None => Err("a broadcast peer needs --peer-index".into()),
        },
        Kind::Rpc => rpc_peer(name),
        Kind::Pipe => stream_peer(Pipes2::stdio()),
        #[cfg(unix)]
        Kind::UnixSocket => stream_peer(std::os::unix::net::UnixStream::connect(name)?),
        #[cfg(not(unix))]
        Kind::UnixSocket => Err("Unix sockets are not available here".into()),
        Kind::Tcp => {
            let s = TcpStream::connect(name)?;
            s.set_nodelay(true)?;
            stream_peer(s)
        }
    }
}

/// This process's stdin and stdout as one stream (the pipe peer's end).
struct Pipes2(std::io::Stdin, std::io::Stdout);

impl Pipes2 {
    fn stdio() -> Pipes2 {
        Pipes2(std::io::stdin(), std::io::stdout())
    }
}

impl Read for Pipes2 {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().read(buf)
    }
}

impl Write for Pipes2 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Unbuffered: every message must leave now, as on the other transports.
        let mut out = self.1.lock();
        let n = out.write(buf)?;
        out.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.lock().flush()
    }
}
