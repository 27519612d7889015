//! The async API from real executors and across real processes (issue 24):
//! tokio on both sides of a queue, a broadcast channel and RPC; `select!`
//! between two receivers and a timer; futures dropped at random points (seeded
//! property tests) losing and duplicating nothing and giving their place among
//! the waiters back; a peer killed with SIGKILL while the other side awaits;
//! interrupters ending pending futures; `Send` futures; and the same receive
//! under `shmkit::block_on`, a multi-thread runtime and a hand-written poll loop.
//!
//! Every wait has a generous bound, so that a lost wake-up fails a test instead
//! of hanging it; no bound is a speed claim.

mod common;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(unix)]
use common::ChildProc;
use common::{hear, role, say, spawn, TestName};
use futures_core::Stream;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use shmkit::channel::{inspect, ChannelOptions, Receiver, RpcClient, RpcServer, Sender};
use shmkit::sync::{Event, EventMode, LockError, Mutex, Semaphore};
use shmkit::{Error, Interrupter};

const ENTRY: &str = "child_entry";
/// A bound for a whole exchange: far above what it takes (well under a second
/// even in a debug build on a busy machine), only there so that a lost wake-up
/// fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(60);
/// How long a peer's death may take to end a pending future before the test
/// fails (it usually takes about 50 ms; the measured time is printed).
const DEATH_BOUND: Duration = Duration::from_secs(5);
/// How long a test lets a future sit before it acts, so that the future is
/// asleep (assertions do not depend on it: the futures are checked `Pending`).
const SETTLE: Duration = Duration::from_millis(50);

/// Waiter counts, as offsets into a managed segment (docs/LAYOUT.md): read
/// under the API to check that a dropped future gave its place back.
const DATA_WAITERS: u64 = shmkit::HEADER_BLOCK + 76;
const SPACE_WAITERS: u64 = shmkit::HEADER_BLOCK + 140;
const SYNC_WAITERS: u64 = shmkit::HEADER_BLOCK + 16;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh current-thread runtime; a panic if it takes longer
/// than `limit`.
fn run<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    runtime().block_on(async {
        within(limit, f)
            .await
            .unwrap_or_else(|| panic!("{what}: not done within {limit:?}"))
    })
}

/// `fut`'s output, or `None` if it is not done within `limit`. Unlike
/// `tokio::time::timeout`, the future is not polled again when the time is
/// up: that extra poll could find what a missing wake-up failed to report,
/// and hide it.
async fn within<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(limit) => None,
        out = fut => Some(out),
    }
}

/// Message `i` of a sequence, `len` bytes (at least 8): its index first, then
/// bytes derived from index and position, so that a torn, mixed-up or repeated
/// message is seen.
fn sized(i: u64, len: usize) -> Vec<u8> {
    assert!(len >= 8);
    let mut m: Vec<u8> = (0..len)
        .map(|k| (i as u8).wrapping_mul(31) ^ (k as u8).wrapping_mul(7) ^ (k >> 8) as u8)
        .collect();
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

/// Message `i` of a sequence of messages 8 to `max` bytes long.
fn message(i: u64, max: usize) -> Vec<u8> {
    let len = 8 + (i.wrapping_mul(0x9e37_79b9) % (max as u64 - 7)) as usize;
    sized(i, len)
}

fn index_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().expect("a message of at least 8 bytes"))
}

/// Message `i` of sender `who`: the sender in the top byte of the index.
fn tagged(who: u8, i: u64, len: usize) -> Vec<u8> {
    sized((who as u64) << 56 | i, len)
}

/// What the RPC servers here answer: the request reversed and scrambled.
fn answer_to(request: &[u8]) -> Vec<u8> {
    request.iter().rev().map(|b| b ^ 0x5a).collect()
}

/// The next item of a stream (what `StreamExt::next` does).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Polls `f` once with the task's waker.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// `f`'s output and how many of its polls returned `Pending` (how often it
/// really waited).
async fn counting_pending<F: Future>(f: F) -> (F::Output, u32) {
    let mut f = pin!(f);
    let mut pending = 0;
    let out = poll_fn(|cx| {
        let p = f.as_mut().poll(cx);
        if p.is_pending() {
            pending += 1;
        }
        p
    })
    .await;
    (out, pending)
}

#[derive(Default)]
struct WakeCount(AtomicUsize);

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Polls futures by hand with a waker that counts its calls.
struct Probe {
    count: Arc<WakeCount>,
    waker: Waker,
}

impl Probe {
    fn new() -> Probe {
        let count = Arc::new(WakeCount::default());
        Probe {
            waker: Waker::from(count.clone()),
            count,
        }
    }

    fn woken(&self) -> usize {
        self.count.0.load(SeqCst)
    }

    fn poll<F: Future + ?Sized>(&self, f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(&self.waker))
    }

    /// Waits until the waker was called more often than `mark` (its count
    /// right after the future's last `Pending`): a future that waits must be
    /// woken once what it waits for happened.
    fn woken_since(&self, mark: usize, what: &str) -> Result<(), TestCaseError> {
        if self.wait_woken(mark, BOUND) {
            return Ok(());
        }
        Err(TestCaseError::fail(format!(
            "lost wake-up: {what}, and the pending future's waker was not called within {BOUND:?}"
        )))
    }

    /// Whether the waker was called more often than `mark` within `limit`.
    fn wait_woken(&self, mark: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.woken() <= mark {
            if Instant::now() > until {
                return false;
            }
            thread::yield_now();
        }
        true
    }
}

/// A word of a managed segment, read under the API (docs/LAYOUT.md).
struct Word {
    shm: shmkit::Shm,
    offset: u64,
}

impl Word {
    fn open(name: &TestName, offset: u64) -> Word {
        Word {
            shm: shmkit::ShmOptions::new()
                .open_raw(&common::managed_os_name(name.as_str()))
                .unwrap(),
            offset,
        }
    }

    fn get(&self) -> u32 {
        self.shm.atomic_u32(self.offset).unwrap().load(SeqCst)
    }
}

/// Waits until the queue `name`'s ring is at least half full and has not
/// changed between two looks: its sender is waiting for room.
async fn until_stalled(name: &str) {
    let until = Instant::now() + BOUND;
    let mut last = None;
    loop {
        let info = inspect(name).unwrap();
        if info.used * 2 >= info.capacity && last == Some(info.used) {
            return;
        }
        last = Some(info.used);
        assert!(Instant::now() < until, "the sender never filled the ring");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// The roles the child processes play; each runs its own current-thread tokio
/// runtime where it awaits.
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let a = |i: usize| args[i].as_str();
    let num = |i: usize| a(i).parse::<u64>().unwrap();
    match a(0) {
        "async-sender" => {
            let mut tx = Sender::connect(a(1)).unwrap();
            let max = tx.max_record() as usize;
            say(&format!("max {max}"));
            let waited = run(BOUND, "sending", async {
                let mut waited = 0;
                for i in 0..num(2) {
                    let m = message(i, max);
                    let (sent, pending) = counting_pending(tx.send_async(&m)).await;
                    sent.unwrap_or_else(|e| panic!("message {i}: {e}"));
                    waited += pending;
                }
                waited
            });
            say(&format!("waited {waited}"));
        }
        "async-publisher" => {
            let mut publisher = ChannelOptions::new().publisher(a(1)).unwrap();
            say("ready");
            hear();
            run(BOUND, "publishing", async {
                for i in 0..num(2) {
                    publisher.publish(&message(i, 200)).unwrap();
                    // Pauses, so that the subscriber catches up and waits.
                    if i % 64 == 63 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            // Exiting closes the publisher: the subscriber's stream ends.
        }
        "async-server" => {
            let mut server = RpcServer::bind(a(1)).unwrap();
            say("ready");
            run(BOUND, "serving", async {
                for _ in 0..num(2) {
                    let request = server.recv_async().await.unwrap();
                    let answer = answer_to(request.payload());
                    server.reply_async(&request, &answer).await.unwrap();
                }
            });
            say("served");
        }
        "idle-sender" => {
            let _tx = Sender::connect(a(1)).unwrap();
            say("ready");
            hear();
        }
        "idle-receiver" => {
            let _rx = ChannelOptions::new().capacity(4096).receiver(a(1)).unwrap();
            say("ready");
            hear();
        }
        "idle-publisher" => {
            let _publisher = ChannelOptions::new().publisher(a(1)).unwrap();
            say("ready");
            hear();
        }
        "stalled-server" => {
            let mut server = RpcServer::bind(a(1)).unwrap();
            say("ready");
            let _request = server.recv().unwrap();
            say("got");
            hear();
        }
        "closing-server" => {
            let mut server = RpcServer::bind(a(1)).unwrap();
            say("ready");
            let _request = server.recv().unwrap();
            drop(server);
            say("closed");
            hear();
        }
        "silent-client" => {
            // Calls, and never reads the answers: its reply queue fills up.
            let mut client = RpcClient::connect(a(1)).unwrap();
            for _ in 0..num(2) {
                client.start_call(b"answer me at length", None).unwrap();
            }
            say("called");
            hear();
        }
        "lock-holder" => {
            let mutex = Mutex::<u64>::open(a(1)).unwrap();
            let _guard = mutex.lock().unwrap();
            say("locked");
            hear();
        }
        other => panic!("unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------
// 1. Tokio on both sides, across processes
// ---------------------------------------------------------------------------

#[test]
fn tokio_on_both_sides_a_queue_delivers_everything_in_order_and_whole() {
    let name = TestName::new("aa-queue");
    const N: u64 = 5_000;
    // A small ring (messages up to a quarter of it): the sender waits for room
    // again and again.
    let mut rx = ChannelOptions::new()
        .capacity(1024)
        .receiver(name.as_str())
        .unwrap();
    let mut child = spawn(ENTRY, "async-sender", &[name.as_str(), &N.to_string()]);
    let max: usize = child
        .expect_line()
        .strip_prefix("max ")
        .unwrap()
        .parse()
        .unwrap();
    let mut buf = vec![0u8; max];
    let started = Instant::now();
    let waited = run(BOUND, "receiving", async {
        let first = rx.recv_async().await.unwrap();
        assert_eq!(first, message(0, max));
        // Let the sender fill the ring and wait for room, then read on.
        until_stalled(name.as_str()).await;
        let mut waited = 0;
        for i in 1..N {
            // The three ways to await a message, in turn.
            let (got, pending) = match i % 3 {
                0 => counting_pending(rx.recv_async()).await,
                1 => {
                    let (n, p) = counting_pending(rx.recv_into_async(&mut buf)).await;
                    (n.map(|n| buf[..n].to_vec()), p)
                }
                _ => {
                    let (item, p) = counting_pending(next(&mut rx)).await;
                    (item.expect("the stream ended early"), p)
                }
            };
            let got = got.unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert!(got == message(i, max), "message {i} differs");
            waited += pending;
        }
        waited
    });
    let line = child.expect_line();
    let sender_waited: u32 = line.strip_prefix("waited ").unwrap().parse().unwrap();
    eprintln!(
        "{N} messages in {:?}; the sender waited for room {sender_waited} times, the receiver for data {waited} times",
        started.elapsed()
    );
    assert!(
        sender_waited > 0,
        "the sender never waited for room: the test did not test that"
    );
    child.wait_success(BOUND);
    // The sender is gone: the future reports it, the stream ends.
    run(BOUND, "after the sender left", async {
        assert!(rx.recv_async().await.unwrap_err().is_disconnected());
        assert!(next(&mut rx).await.is_none());
    });
}

#[test]
fn tokio_on_both_sides_a_subscriber_gets_every_message_then_its_stream_ends() {
    let name = TestName::new("aa-sub");
    // The default ring (1 MiB) holds all of them: a subscriber cannot lag.
    const N: u64 = 3_000;
    let mut child = spawn(ENTRY, "async-publisher", &[name.as_str(), &N.to_string()]);
    assert_eq!(child.expect_line(), "ready");
    let mut sub = ChannelOptions::new().subscriber(name.as_str()).unwrap();
    child.tell("go");
    let waited = run(BOUND, "subscribing", async {
        let mut waited = 0;
        for i in 0..N {
            let (got, pending) = if i % 2 == 0 {
                counting_pending(sub.recv_async()).await
            } else {
                let (item, p) = counting_pending(next(&mut sub)).await;
                (item.expect("the stream ended early"), p)
            };
            let got = got.unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert!(got == message(i, 200), "message {i} differs");
            waited += pending;
        }
        // The publisher exits once done: the stream ends.
        assert!(next(&mut sub).await.is_none(), "a message after the last");
        waited
    });
    eprintln!("the subscriber waited {waited} times");
    assert!(
        waited > 0,
        "the subscriber never waited: the test did not test that"
    );
    child.wait_success(BOUND);
}

async fn calls(client: &mut RpcClient, who: u8, n: u64) {
    for i in 0..n {
        let mut ask = message(i, 300);
        ask.push(who);
        let answer = client
            .call_async(&ask)
            .await
            .unwrap_or_else(|e| panic!("client {who}, call {i}: {e}"));
        assert!(
            answer == answer_to(&ask),
            "client {who}, call {i}: another answer"
        );
    }
}

#[test]
fn tokio_on_both_sides_rpc_calls_get_their_own_answers() {
    let name = TestName::new("aa-rpc");
    const CALLS: u64 = 300;
    let mut child = spawn(
        ENTRY,
        "async-server",
        &[name.as_str(), &(2 * CALLS).to_string()],
    );
    assert_eq!(child.expect_line(), "ready");
    let mut one = RpcClient::connect(name.as_str()).unwrap();
    let mut two = RpcClient::connect(name.as_str()).unwrap();
    // Two clients on one thread, their calls in flight at the same time.
    run(BOUND, "calling", async {
        tokio::join!(calls(&mut one, 1, CALLS), calls(&mut two, 2, CALLS));
    });
    assert_eq!(child.expect_line(), "served");
    child.wait_success(BOUND);
}

// ---------------------------------------------------------------------------
// 2. select!
// ---------------------------------------------------------------------------

#[test]
fn select_between_two_receivers_and_a_timer_takes_every_message_once() {
    let a = TestName::new("aa-sel-a");
    let b = TestName::new("aa-sel-b");
    let opts = ChannelOptions::new().capacity(4096);
    let mut rx_a = opts.receiver(a.as_str()).unwrap();
    let mut rx_b = opts.receiver(b.as_str()).unwrap();
    let mut tx_a = opts.sender(a.as_str()).unwrap();
    let mut tx_b = opts.sender(b.as_str()).unwrap();
    const BATCHES: u64 = 4;
    const PER_BATCH: u64 = 400;
    const IDLE: Duration = Duration::from_millis(50);
    // The feeder sends a batch (waiting for room: the ring holds few), then
    // waits until the receiving loop has gone idle.
    let (go, wait_go) = mpsc::channel::<()>();
    let feeder = thread::spawn(move || {
        let (mut sent_a, mut sent_b) = (0, 0);
        for batch in 0..BATCHES {
            for k in 0..PER_BATCH {
                // Runs on one channel, then on the other, of uneven lengths.
                if (k / 7 + batch) % 3 == 0 {
                    tx_b.send_timeout(&message(sent_b, 300), BOUND).unwrap();
                    sent_b += 1;
                } else {
                    tx_a.send_timeout(&message(sent_a, 300), BOUND).unwrap();
                    sent_a += 1;
                }
            }
            wait_go
                .recv_timeout(BOUND)
                .expect("the receiving loop never went idle");
        }
        (sent_a, sent_b)
    });
    let (got_a, got_b, ticks) = run(BOUND, "selecting", async {
        let (mut got_a, mut got_b, mut ticks, mut batch) = (0u64, 0u64, 0u32, 0u64);
        while batch < BATCHES {
            tokio::select! {
                m = rx_a.recv_async() => {
                    let m = m.unwrap();
                    assert!(m == message(got_a, 300), "channel a, message {got_a}: got {}", index_of(&m));
                    got_a += 1;
                }
                m = rx_b.recv_async() => {
                    let m = m.unwrap();
                    assert!(m == message(got_b, 300), "channel b, message {got_b}: got {}", index_of(&m));
                    got_b += 1;
                }
                _ = tokio::time::sleep(IDLE) => {
                    ticks += 1;
                    // Idle: if the batch is all in, the feeder may go on.
                    if got_a + got_b == (batch + 1) * PER_BATCH {
                        batch += 1;
                        go.send(()).unwrap();
                    }
                }
            }
        }
        (got_a, got_b, ticks)
    });
    let (sent_a, sent_b) = feeder.join().unwrap();
    eprintln!("a: {got_a}, b: {got_b}, idle ticks: {ticks}");
    assert_eq!((got_a, got_b), (sent_a, sent_b));
    assert!(ticks >= BATCHES as u32);
    // Every losing branch's future was dropped: no place left among the
    // waiters, nothing left in the rings, and the senders' leaving is seen.
    assert_eq!(Word::open(&a, DATA_WAITERS).get(), 0);
    assert_eq!(Word::open(&b, DATA_WAITERS).get(), 0);
    run(BOUND, "after the feeder left", async {
        assert!(rx_a.recv_async().await.unwrap_err().is_disconnected());
        assert!(rx_b.recv_async().await.unwrap_err().is_disconnected());
    });
}

// ---------------------------------------------------------------------------
// 3. Cancellation: futures dropped at random points (seeded property tests)
// ---------------------------------------------------------------------------

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// How a receive is awaited.
#[derive(Clone, Copy, Debug)]
enum RecvKind {
    Async,
    Into,
    /// `Stream::poll_next`: the wait is kept in the receiver after the future
    /// is dropped, until `cancel_poll`.
    Stream,
}

#[derive(Clone, Debug)]
enum QueueOp {
    /// `try_send` of a new message of this length (skipped if there is no room).
    Send(usize),
    TryRecv,
    /// A receive future polled `polls` times, then dropped if not done; before
    /// poll number `send_at`, a new message is sent from this thread.
    Recv {
        kind: RecvKind,
        polls: u8,
        send_at: Option<u8>,
        len: usize,
    },
    /// A send future of a new message polled `polls` times, then dropped if
    /// not done; before poll number `recv_at`, a message is taken.
    SendAsync {
        len: usize,
        polls: u8,
        recv_at: Option<u8>,
    },
}

fn recv_kind() -> impl Strategy<Value = RecvKind> {
    prop_oneof![
        Just(RecvKind::Async),
        Just(RecvKind::Into),
        Just(RecvKind::Stream)
    ]
}

/// Message lengths for a 256-byte ring, whose records hold up to 56 bytes.
fn len() -> impl Strategy<Value = usize> {
    8usize..=56
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        3 => len().prop_map(QueueOp::Send),
        1 => Just(QueueOp::TryRecv),
        4 => (recv_kind(), 0u8..5, proptest::option::of(0u8..5), len())
            .prop_map(|(kind, polls, send_at, len)| QueueOp::Recv { kind, polls, send_at, len }),
        3 => (len(), 0u8..5, proptest::option::of(0u8..5))
            .prop_map(|(len, polls, recv_at)| QueueOp::SendAsync { len, polls, recv_at }),
    ]
}

/// Sends from this thread, recording what went out.
struct Model {
    queued: VecDeque<Vec<u8>>,
    next: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            queued: VecDeque::new(),
            next: 0,
        }
    }

    /// `try_send` of a new message; whether it went out.
    fn try_send(&mut self, tx: &mut Sender, len: usize) -> Result<bool, TestCaseError> {
        let m = sized(self.next, len);
        match tx.try_send(&m) {
            Ok(()) => {
                self.queued.push_back(m);
                self.next += 1;
                Ok(true)
            }
            Err(e) if e.is_would_block() => Ok(false),
            Err(e) => Err(TestCaseError::fail(format!("try_send: {e}"))),
        }
    }

    /// A message received: it must be the oldest one not yet received.
    fn received(&mut self, m: &[u8]) -> Result<(), TestCaseError> {
        let want = self.queued.pop_front();
        prop_assert!(
            want.as_deref() == Some(m),
            "received message {} ({} bytes), expected {:?}",
            index_of(m),
            m.len(),
            want.map(|w| index_of(&w))
        );
        Ok(())
    }
}

fn queue_case(ops: &[QueueOp]) -> Result<(), TestCaseError> {
    let name = TestName::new("aa-prop-q");
    let opts = ChannelOptions::new().capacity(256);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut tx = opts.sender(name.as_str()).unwrap();
    prop_assert_eq!(tx.max_record(), 56);
    let data_waiters = Word::open(&name, DATA_WAITERS);
    let space_waiters = Word::open(&name, SPACE_WAITERS);
    let mut model = Model::new();
    let probe = Probe::new();
    let mut buf = [0u8; 64];
    for op in ops {
        match *op {
            QueueOp::Send(len) => {
                model.try_send(&mut tx, len)?;
            }
            QueueOp::TryRecv => match rx.try_recv() {
                Ok(m) => model.received(&m)?,
                Err(e) if e.is_would_block() => prop_assert!(model.queued.is_empty()),
                Err(e) => return Err(TestCaseError::fail(format!("try_recv: {e}"))),
            },
            QueueOp::Recv {
                kind,
                polls,
                send_at,
                len,
            } => {
                let mut fut: Pin<Box<dyn Future<Output = shmkit::Result<Vec<u8>>> + '_>> =
                    match kind {
                        RecvKind::Async => Box::pin(rx.recv_async()),
                        RecvKind::Into => Box::pin(async {
                            let n = rx.recv_into_async(&mut buf).await?;
                            Ok(buf[..n].to_vec())
                        }),
                        RecvKind::Stream => {
                            Box::pin(async { next(&mut rx).await.expect("the stream ended early") })
                        }
                    };
                let mut mark = None;
                for p in 0..polls {
                    if send_at == Some(p) && model.try_send(&mut tx, len)? {
                        if let Some(mark) = mark {
                            probe.woken_since(mark, "a message sent to a waiting receive")?;
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(Ok(m)) => {
                            model.received(&m)?;
                            mark = None;
                            break;
                        }
                        Poll::Ready(Err(e)) => {
                            return Err(TestCaseError::fail(format!("{kind:?} receive: {e}")))
                        }
                        Poll::Pending => {
                            prop_assert!(
                                model.queued.is_empty(),
                                "a receive waited with {} messages queued",
                                model.queued.len()
                            );
                            prop_assert_eq!(
                                data_waiters.get(),
                                1,
                                "a waiting receive is not counted"
                            );
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                if matches!(kind, RecvKind::Stream) && mark.is_some() {
                    // A stream keeps its wait in the receiver, until it is given back.
                    prop_assert_eq!(data_waiters.get(), 1);
                    rx.cancel_poll();
                }
                prop_assert_eq!(
                    data_waiters.get(),
                    0,
                    "a dropped {:?} receive kept its place among the waiters",
                    kind
                );
            }
            QueueOp::SendAsync {
                len,
                polls,
                recv_at,
            } => {
                let m = sized(model.next, len);
                let mut fut = Box::pin(tx.send_async(&m));
                let mut mark = None;
                let mut sent = false;
                for p in 0..polls {
                    if recv_at == Some(p) {
                        match rx.try_recv() {
                            Ok(got) => {
                                model.received(&got)?;
                                if let Some(mark) = mark {
                                    probe.woken_since(
                                        mark,
                                        "a message taken while a send waited for room",
                                    )?;
                                }
                            }
                            Err(e) if e.is_would_block() => prop_assert!(model.queued.is_empty()),
                            Err(e) => return Err(TestCaseError::fail(format!("try_recv: {e}"))),
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(Ok(())) => {
                            sent = true;
                            break;
                        }
                        Poll::Ready(Err(e)) => {
                            return Err(TestCaseError::fail(format!("send_async: {e}")))
                        }
                        Poll::Pending => {
                            prop_assert!(
                                !model.queued.is_empty(),
                                "a send waited for room in an empty ring"
                            );
                            prop_assert_eq!(
                                space_waiters.get(),
                                1,
                                "a waiting send is not counted"
                            );
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                if sent {
                    model.queued.push_back(m);
                    model.next += 1;
                }
                prop_assert_eq!(
                    space_waiters.get(),
                    0,
                    "a dropped send kept its place among the waiters"
                );
            }
        }
    }
    // Everything sent arrives once, in order; nothing else does.
    loop {
        match rx.try_recv() {
            Ok(m) => model.received(&m)?,
            Err(e) if e.is_would_block() => break,
            Err(e) => return Err(TestCaseError::fail(format!("draining: {e}"))),
        }
    }
    prop_assert!(
        model.queued.is_empty(),
        "{} messages lost",
        model.queued.len()
    );
    prop_assert_eq!(data_waiters.get(), 0);
    prop_assert_eq!(space_waiters.get(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(config(4000, 0x2400_0001))]

    /// Receive and send futures (and the receiver's stream) polled a random
    /// number of times, then dropped, between sends and receives from the
    /// same thread: every message arrives exactly once and in order, a
    /// future waits only when it must, a waiting one is woken when what it
    /// waits for happens, and a dropped one leaves no waiter count behind.
    #[test]
    fn queue_futures_dropped_anywhere_lose_and_duplicate_nothing(
        ops in proptest::collection::vec(queue_op(), 1..40)
    ) {
        queue_case(&ops)?;
    }
}

#[derive(Clone, Debug)]
enum SubOp {
    Publish(usize),
    TryRecv,
    /// A receive (`recv_async`, or the stream if `stream`) polled `polls`
    /// times; a message published before poll number `publish_at`.
    Recv {
        stream: bool,
        polls: u8,
        publish_at: Option<u8>,
        len: usize,
    },
}

fn sub_op() -> impl Strategy<Value = SubOp> {
    prop_oneof![
        2 => len().prop_map(SubOp::Publish),
        1 => Just(SubOp::TryRecv),
        4 => (any::<bool>(), 0u8..5, proptest::option::of(0u8..5), len())
            .prop_map(|(stream, polls, publish_at, len)| SubOp::Recv { stream, polls, publish_at, len }),
    ]
}

fn sub_case(ops: &[SubOp]) -> Result<(), TestCaseError> {
    let name = TestName::new("aa-prop-s");
    // At most 40 messages of at most 64 bytes with their headers: a 4 KiB ring
    // keeps them all, so the subscriber never lags.
    let opts = ChannelOptions::new().capacity(4096);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    let mut sub = opts.subscriber(name.as_str()).unwrap();
    let data_waiters = Word::open(&name, DATA_WAITERS);
    let mut queued: VecDeque<Vec<u8>> = VecDeque::new();
    let mut next_index = 0u64;
    let mut publish = |queued: &mut VecDeque<Vec<u8>>, len: usize| {
        let m = sized(next_index, len);
        next_index += 1;
        publisher.publish(&m).unwrap();
        queued.push_back(m);
    };
    let received = |queued: &mut VecDeque<Vec<u8>>, m: &[u8]| -> Result<(), TestCaseError> {
        let want = queued.pop_front();
        prop_assert!(
            want.as_deref() == Some(m),
            "received message {}, expected {:?}",
            index_of(m),
            want.map(|w| index_of(&w))
        );
        Ok(())
    };
    let probe = Probe::new();
    for op in ops {
        match *op {
            SubOp::Publish(len) => publish(&mut queued, len),
            SubOp::TryRecv => match sub.try_recv() {
                Ok(m) => received(&mut queued, &m)?,
                Err(e) if e.is_would_block() => prop_assert!(queued.is_empty()),
                Err(e) => return Err(TestCaseError::fail(format!("try_recv: {e}"))),
            },
            SubOp::Recv {
                stream,
                polls,
                publish_at,
                len,
            } => {
                let mut fut: Pin<Box<dyn Future<Output = shmkit::Result<Vec<u8>>> + '_>> = if stream
                {
                    Box::pin(async { next(&mut sub).await.expect("the stream ended early") })
                } else {
                    Box::pin(sub.recv_async())
                };
                let mut mark = None;
                for p in 0..polls {
                    if publish_at == Some(p) {
                        publish(&mut queued, len);
                        if let Some(mark) = mark {
                            probe
                                .woken_since(mark, "a message published to a waiting subscriber")?;
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(Ok(m)) => {
                            received(&mut queued, &m)?;
                            mark = None;
                            break;
                        }
                        Poll::Ready(Err(e)) => {
                            return Err(TestCaseError::fail(format!("receive: {e}")))
                        }
                        Poll::Pending => {
                            prop_assert!(
                                queued.is_empty(),
                                "a subscriber waited with {} messages to read",
                                queued.len()
                            );
                            prop_assert_eq!(data_waiters.get(), 1);
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                if stream && mark.is_some() {
                    prop_assert_eq!(data_waiters.get(), 1);
                    sub.cancel_poll();
                }
                prop_assert_eq!(
                    data_waiters.get(),
                    0,
                    "a dropped subscriber receive kept its place among the waiters"
                );
            }
        }
    }
    loop {
        match sub.try_recv() {
            Ok(m) => received(&mut queued, &m)?,
            Err(e) if e.is_would_block() => break,
            Err(e) => return Err(TestCaseError::fail(format!("draining: {e}"))),
        }
    }
    prop_assert!(queued.is_empty(), "{} messages lost", queued.len());
    Ok(())
}

proptest! {
    #![proptest_config(config(1500, 0x2400_0002))]

    /// The same for a subscriber and its stream, the publisher on the same
    /// thread.
    #[test]
    fn subscriber_futures_dropped_anywhere_lose_and_duplicate_nothing(
        ops in proptest::collection::vec(sub_op(), 1..40)
    ) {
        sub_case(&ops)?;
    }
}

#[derive(Clone, Debug)]
enum SyncOp {
    Release(u32),
    TryWait,
    /// `Semaphore::wait_async` polled `polls` times; one unit released before
    /// poll number `release_at`.
    SemWait {
        polls: u8,
        release_at: Option<u8>,
    },
    Set,
    /// `Event::wait_async` (auto-reset) polled `polls` times; the event set
    /// before poll number `set_at`.
    EventWait {
        polls: u8,
        set_at: Option<u8>,
    },
    /// `try_lock`, holding the guard (if the mutex is free).
    Lock,
    Unlock,
    /// `Mutex::lock_async` polled `polls` times; the held guard dropped before
    /// poll number `unlock_at`; the new guard kept if `keep`.
    LockAsync {
        polls: u8,
        unlock_at: Option<u8>,
        keep: bool,
    },
}

fn sync_op() -> impl Strategy<Value = SyncOp> {
    let polls = || 0u8..5;
    let at = || proptest::option::of(0u8..5);
    prop_oneof![
        2 => (1u32..=3).prop_map(SyncOp::Release),
        1 => Just(SyncOp::TryWait),
        3 => (polls(), at()).prop_map(|(polls, release_at)| SyncOp::SemWait { polls, release_at }),
        2 => Just(SyncOp::Set),
        3 => (polls(), at()).prop_map(|(polls, set_at)| SyncOp::EventWait { polls, set_at }),
        2 => Just(SyncOp::Lock),
        1 => Just(SyncOp::Unlock),
        3 => (polls(), at(), any::<bool>())
            .prop_map(|(polls, unlock_at, keep)| SyncOp::LockAsync { polls, unlock_at, keep }),
    ]
}

const SEM_MAX: u32 = 6;

/// The guard of a lock that must have been taken.
fn locked<G>(r: shmkit::sync::LockResult<G>, what: &str) -> G {
    match r {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(_)) => panic!("{what}: owner died"),
        Err(LockError::Failed(e)) => panic!("{what}: {e}"),
    }
}

/// Releases one unit if the maximum allows; checks what `release` says.
fn release(sem: &Semaphore, count: &mut u32, n: u32) -> Result<bool, TestCaseError> {
    let r = sem.release(n);
    if *count + n <= SEM_MAX {
        prop_assert_eq!(r.map_err(|e| e.to_string()), Ok(*count));
        *count += n;
        Ok(true)
    } else {
        prop_assert!(
            matches!(r, Err(Error::AboveMaximum { .. })),
            "releasing {} onto {} of {}: {:?}",
            n,
            count,
            SEM_MAX,
            r
        );
        Ok(false)
    }
}

fn sync_case(initial: u32, ops: &[SyncOp]) -> Result<(), TestCaseError> {
    let sem_name = TestName::new("aa-prop-sem");
    let event_name = TestName::new("aa-prop-ev");
    let mutex_name = TestName::new("aa-prop-mx");
    let sem = Semaphore::create(sem_name.as_str(), initial, SEM_MAX).unwrap();
    let event = Event::create(event_name.as_str(), EventMode::AutoReset, false).unwrap();
    let mutex = Mutex::create(mutex_name.as_str(), 0u64).unwrap();
    let sem_waiters = Word::open(&sem_name, SYNC_WAITERS);
    let event_waiters = Word::open(&event_name, SYNC_WAITERS);
    let mutex_waiters = Word::open(&mutex_name, SYNC_WAITERS);
    let (mut count, mut set, mut locks) = (initial, false, 0u64);
    let mut held = None;
    let probe = Probe::new();
    for op in ops {
        match *op {
            SyncOp::Release(n) => {
                release(&sem, &mut count, n)?;
            }
            SyncOp::TryWait => {
                let took = sem.try_wait().unwrap();
                prop_assert_eq!(took, count > 0);
                count -= took as u32;
            }
            SyncOp::SemWait { polls, release_at } => {
                let mut fut = Box::pin(sem.wait_async());
                let mut mark = None;
                for p in 0..polls {
                    if release_at == Some(p) && release(&sem, &mut count, 1)? {
                        if let Some(mark) = mark {
                            probe
                                .woken_since(mark, "a unit released to a waiting semaphore wait")?;
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(r) => {
                            prop_assert!(r.is_ok(), "wait_async: {:?}", r);
                            prop_assert!(count > 0, "a unit taken from a count of 0");
                            count -= 1;
                            break;
                        }
                        Poll::Pending => {
                            prop_assert_eq!(count, 0, "a semaphore wait waited with units free");
                            prop_assert_eq!(sem_waiters.get(), 1);
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                prop_assert_eq!(
                    sem_waiters.get(),
                    0,
                    "a dropped semaphore wait kept its place among the waiters"
                );
                prop_assert_eq!(sem.count(), count, "units not conserved");
            }
            SyncOp::Set => {
                event.set().unwrap();
                set = true;
            }
            SyncOp::EventWait { polls, set_at } => {
                let mut fut = Box::pin(event.wait_async());
                let mut mark = None;
                for p in 0..polls {
                    if set_at == Some(p) {
                        event.set().unwrap();
                        set = true;
                        if let Some(mark) = mark {
                            probe.woken_since(mark, "a waiting event wait")?;
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(r) => {
                            prop_assert!(r.is_ok(), "wait_async: {:?}", r);
                            prop_assert!(set, "an event wait ended with the event not set");
                            set = false;
                            break;
                        }
                        Poll::Pending => {
                            prop_assert!(!set, "an event wait waited with the event set");
                            prop_assert_eq!(event_waiters.get(), 1);
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                prop_assert_eq!(
                    event_waiters.get(),
                    0,
                    "a dropped event wait kept its place among the waiters"
                );
                prop_assert_eq!(event.is_set().unwrap(), set, "the signal was not conserved");
            }
            SyncOp::Lock => {
                let r = mutex.try_lock();
                if held.is_none() {
                    let mut guard = locked(r, "try_lock of a free mutex");
                    *guard += 1;
                    locks += 1;
                    held = Some(guard);
                } else {
                    prop_assert!(matches!(r, Err(LockError::Failed(ref e)) if e.is_would_block()));
                }
            }
            SyncOp::Unlock => held = None,
            SyncOp::LockAsync {
                polls,
                unlock_at,
                keep,
            } => {
                let mut fut = Box::pin(mutex.lock_async());
                let mut mark = None;
                for p in 0..polls {
                    if unlock_at == Some(p) && held.take().is_some() {
                        if let Some(mark) = mark {
                            probe.woken_since(mark, "a mutex unlocked while a lock waited")?;
                        }
                    }
                    match probe.poll(fut.as_mut()) {
                        Poll::Ready(Ok(mut guard)) => {
                            prop_assert!(held.is_none(), "a second guard while one was held");
                            *guard += 1;
                            locks += 1;
                            if keep {
                                held = Some(guard);
                            }
                            break;
                        }
                        Poll::Ready(Err(LockError::Failed(e))) => {
                            return Err(TestCaseError::fail(format!("lock_async: {e}")))
                        }
                        Poll::Ready(Err(LockError::OwnerDied(_))) => {
                            return Err(TestCaseError::fail(
                                "lock_async: owner died, though nobody died",
                            ))
                        }
                        Poll::Pending => {
                            prop_assert!(held.is_some(), "a lock waited for a free mutex");
                            prop_assert_eq!(mutex_waiters.get(), 1);
                            mark = Some(probe.woken());
                        }
                    }
                }
                drop(fut);
                prop_assert_eq!(
                    mutex_waiters.get(),
                    0,
                    "a dropped lock kept its place among the waiters"
                );
            }
        }
    }
    drop(held);
    // The mutex is free and was held exactly as often as the model says.
    let guard = locked(mutex.try_lock(), "the mutex is free at the end");
    prop_assert_eq!(*guard, locks);
    drop(guard);
    prop_assert_eq!(sem.count(), count);
    prop_assert_eq!(event.is_set().unwrap(), set);
    prop_assert_eq!(sem_waiters.get(), 0);
    prop_assert_eq!(event_waiters.get(), 0);
    prop_assert_eq!(mutex_waiters.get(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(config(4000, 0x2400_0003))]

    /// `Semaphore::wait_async`, `Event::wait_async` (auto-reset) and
    /// `Mutex::lock_async` polled a random number of times and dropped, between
    /// releases, sets and unlocks: units and signals are conserved (taken only
    /// by a wait that completes), the mutex ends free, waits wait only when
    /// they must and are woken when they may go on, and a dropped wait leaves
    /// no waiter count behind.
    #[test]
    fn sync_futures_dropped_anywhere_conserve_units_signals_and_the_lock(
        initial in 0u32..3,
        ops in proptest::collection::vec(sync_op(), 1..40)
    ) {
        sync_case(initial, &ops)?;
    }
}

#[derive(Clone, Debug)]
enum CrossOp {
    /// `try_send` of this thread's next message.
    Send(usize),
    /// A receive polled up to `polls` times, the thread yielding in between.
    Recv {
        kind: RecvKind,
        polls: u8,
    },
    /// A send future of this thread's next message, polled up to `polls` times.
    SendAsync {
        len: usize,
        polls: u8,
    },
    /// A semaphore wait polled up to `polls` times.
    SemWait {
        polls: u8,
    },
    TryWait,
}

fn cross_op() -> impl Strategy<Value = CrossOp> {
    prop_oneof![
        2 => len().prop_map(CrossOp::Send),
        4 => (recv_kind(), 0u8..6).prop_map(|(kind, polls)| CrossOp::Recv { kind, polls }),
        2 => (len(), 0u8..6).prop_map(|(len, polls)| CrossOp::SendAsync { len, polls }),
        2 => (0u8..6).prop_map(|polls| CrossOp::SemWait { polls }),
        1 => Just(CrossOp::TryWait),
    ]
}

/// Which messages of each sender arrived: each must be the next of its sender.
#[derive(Default)]
struct PerSender {
    got: [u64; 2],
}

impl PerSender {
    fn received(&mut self, m: &[u8]) -> Result<(), TestCaseError> {
        let tag = index_of(m);
        let (who, i) = ((tag >> 56) as usize, tag & ((1 << 56) - 1));
        prop_assert!(who < 2, "a message from nobody: {:#x}", tag);
        prop_assert_eq!(
            i,
            self.got[who],
            "sender {}: message {} out of order",
            who,
            i
        );
        prop_assert!(
            m == tagged(who as u8, i, m.len()).as_slice(),
            "sender {}: message {} torn",
            who,
            i
        );
        self.got[who] += 1;
        Ok(())
    }
}

fn cross_case(theirs: u64, units: u32, pace: u64, ops: &[CrossOp]) -> Result<(), TestCaseError> {
    let name = TestName::new("aa-prop-x");
    let sem_name = TestName::new("aa-prop-xs");
    let opts = ChannelOptions::new().capacity(256).max_senders(2);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut mine = opts.sender(name.as_str()).unwrap();
    let mut other = opts.sender(name.as_str()).unwrap();
    let sem = Arc::new(Semaphore::create(sem_name.as_str(), 0, SEMAPHORE_ROOM).unwrap());
    // The other thread sends its messages (waiting for room when it must) and
    // releases its units, at its own pace.
    let releaser = sem.clone();
    let feeder = thread::spawn(move || {
        let mut x = pace | 1;
        let (mut sent, mut released) = (0, 0);
        while sent < theirs || released < units {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if sent < theirs && (released == units || x % 3 != 0) {
                let len = 8 + (x >> 8) as usize % 49;
                other.send_timeout(&tagged(1, sent, len), BOUND).unwrap();
                sent += 1;
            } else {
                releaser.release(1).unwrap();
                released += 1;
            }
            for _ in 0..x % 4 {
                thread::yield_now();
            }
        }
    });
    let mut per_sender = PerSender::default();
    let mut my_sent = 0u64;
    let mut taken = 0u32;
    let mut buf = [0u8; 64];
    let probe = Probe::new();
    for op in ops {
        match *op {
            CrossOp::Send(len) => match mine.try_send(&tagged(0, my_sent, len)) {
                Ok(()) => my_sent += 1,
                Err(e) if e.is_would_block() => {}
                Err(e) => return Err(TestCaseError::fail(format!("try_send: {e}"))),
            },
            CrossOp::Recv { kind, polls } => {
                let mut fut: Pin<Box<dyn Future<Output = shmkit::Result<Vec<u8>>> + '_>> =
                    match kind {
                        RecvKind::Async => Box::pin(rx.recv_async()),
                        RecvKind::Into => Box::pin(async {
                            let n = rx.recv_into_async(&mut buf).await?;
                            Ok(buf[..n].to_vec())
                        }),
                        RecvKind::Stream => {
                            Box::pin(async { next(&mut rx).await.expect("the stream ended early") })
                        }
                    };
                let mut got = None;
                for _ in 0..polls {
                    if let Poll::Ready(r) = probe.poll(fut.as_mut()) {
                        got = Some(r.map_err(|e| TestCaseError::fail(format!("receive: {e}")))?);
                        break;
                    }
                    thread::yield_now();
                }
                drop(fut);
                if let Some(m) = got {
                    per_sender.received(&m)?;
                }
                rx.cancel_poll();
            }
            CrossOp::SendAsync { len, polls } => {
                let m = tagged(0, my_sent, len);
                let mut fut = Box::pin(mine.send_async(&m));
                for _ in 0..polls {
                    if let Poll::Ready(r) = probe.poll(fut.as_mut()) {
                        r.map_err(|e| TestCaseError::fail(format!("send_async: {e}")))?;
                        my_sent += 1;
                        break;
                    }
                    thread::yield_now();
                }
            }
            CrossOp::SemWait { polls } => {
                let mut fut = Box::pin(sem.wait_async());
                for _ in 0..polls {
                    if let Poll::Ready(r) = probe.poll(fut.as_mut()) {
                        r.map_err(|e| TestCaseError::fail(format!("wait_async: {e}")))?;
                        taken += 1;
                        break;
                    }
                    thread::yield_now();
                }
            }
            CrossOp::TryWait => taken += sem.try_wait().unwrap() as u32,
        }
    }
    // Take the rest: all of the other thread's messages, all of ours.
    let until = Instant::now() + BOUND;
    while per_sender.got != [my_sent, theirs] {
        prop_assert!(
            Instant::now() < until,
            "received {:?} of {:?}",
            per_sender.got,
            [my_sent, theirs]
        );
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => per_sender.received(&m)?,
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(TestCaseError::fail(format!("draining: {e}"))),
        }
    }
    feeder.join().unwrap();
    prop_assert!(
        rx.try_recv().unwrap_err().is_would_block(),
        "a message nobody sent"
    );
    prop_assert_eq!(taken + sem.count(), units, "semaphore units not conserved");
    prop_assert_eq!(Word::open(&name, DATA_WAITERS).get(), 0);
    prop_assert_eq!(Word::open(&name, SPACE_WAITERS).get(), 0);
    prop_assert_eq!(Word::open(&sem_name, SYNC_WAITERS).get(), 0);
    Ok(())
}

const SEMAPHORE_ROOM: u32 = 64;

proptest! {
    #![proptest_config(config(1000, 0x2400_0004))]

    /// Futures polled and dropped at random points while another thread sends
    /// (into a ring so small that both sides wait) and releases semaphore
    /// units: each sender's messages arrive exactly once and in order, and
    /// every unit is either taken by a completed wait or still there.
    #[test]
    fn futures_dropped_anywhere_while_another_thread_sends_lose_and_duplicate_nothing(
        theirs in 0u64..60,
        units in 0u32..20,
        pace in any::<u64>(),
        ops in proptest::collection::vec(cross_op(), 1..40)
    ) {
        cross_case(theirs, units, pace, &ops)?;
    }
}

/// A call dropped before its answer came does not make a later call take
/// that answer: each completed call gets its own.
#[test]
fn rpc_calls_dropped_at_random_points_never_take_another_calls_answer() {
    let name = TestName::new("aa-rpc-drop");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let stop = server.interrupter();
    let serving = thread::spawn(move || {
        let mut served = 0u64;
        loop {
            match server.recv() {
                Ok(request) => {
                    let answer = answer_to(request.payload());
                    // A client that gave up may have gone: its answer may not
                    // be deliverable, which is not this test's business.
                    let _ = server.reply(&request, &answer);
                    served += 1;
                }
                Err(e) if e.is_interrupted() => return served,
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    let probe = Probe::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut done_early, mut dropped) = (0, 0);
    for i in 0..400u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ask = message(i, 100);
        {
            let mut fut = Box::pin(client.call_async(&ask));
            let mut answered = false;
            for _ in 0..x % 5 {
                if let Poll::Ready(r) = probe.poll(fut.as_mut()) {
                    let answer = r.unwrap_or_else(|e| panic!("call {i}: {e}"));
                    assert!(
                        answer == answer_to(&ask),
                        "call {i} got another call's answer"
                    );
                    answered = true;
                    break;
                }
                for _ in 0..(x >> 8) % 50 {
                    thread::yield_now();
                }
            }
            if answered {
                done_early += 1;
            } else {
                dropped += 1;
            }
        }
        if x % 3 == 0 {
            // A call awaited to the end right after.
            let ask = message(1_000_000 + i, 100);
            let answer = run(BOUND, "a call", client.call_async(&ask)).unwrap();
            assert!(
                answer == answer_to(&ask),
                "call {i}b got another call's answer"
            );
        }
    }
    eprintln!("{done_early} calls answered while polled, {dropped} dropped before their answer");
    assert!(dropped > 0 && done_early > 0);
    stop.interrupt();
    serving.join().unwrap();
}

// ---------------------------------------------------------------------------
// 4. A peer killed with SIGKILL while the other side awaits
// ---------------------------------------------------------------------------

#[cfg(unix)]
/// Polls `fut` once (it must wait), lets `before_kill` run, then has another
/// thread kill the child after `delay` while the task sleeps, and awaits the
/// future: only the core's own wake-ups (the peer's exit watched, a periodic
/// look) can end it. Its output; the time from the kill is printed.
fn killed_while_awaiting<F: Future>(
    mut child: ChildProc,
    what: &str,
    delay: Duration,
    before_kill: impl FnOnce(&mut ChildProc),
    fut: F,
) -> F::Output {
    run(BOUND, what, async {
        let mut fut = pin!(fut);
        assert!(
            poll_once(&mut fut).await.is_pending(),
            "{what}: done before the peer was killed"
        );
        before_kill(&mut child);
        let killer = thread::spawn(move || {
            thread::sleep(delay);
            let at = Instant::now();
            child.kill();
            (child, at)
        });
        let out = within(DEATH_BOUND, fut).await;
        let done = Instant::now();
        let (child, killed) = killer.join().unwrap();
        drop(child);
        let out = out.unwrap_or_else(|| {
            panic!(
                "{what}: the peer's death ({delay:?} after the wait began) not noticed \
                 within {DEATH_BOUND:?}"
            )
        });
        eprintln!(
            "{what}: the peer's death noticed {:?} after the kill",
            done.saturating_duration_since(killed)
        );
        out
    })
}

#[cfg(unix)]
fn kill_sender_while_receiving(delay: Duration) {
    let name = TestName::new("aa-kill-tx");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let mut child = spawn(ENTRY, "idle-sender", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let r = killed_while_awaiting(child, "recv_async", delay, |_| {}, rx.recv_async());
    let e = r.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert!(e.to_string().contains(name.as_str()), "{e}");
}

#[cfg(unix)]
fn kill_receiver_while_sending(delay: Duration) {
    let name = TestName::new("aa-kill-rx");
    let mut child = spawn(ENTRY, "idle-receiver", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let mut tx = Sender::connect(name.as_str()).unwrap();
    let m = vec![7u8; 200];
    while tx.try_send(&m).is_ok() {}
    let r = killed_while_awaiting(child, "send_async", delay, |_| {}, tx.send_async(&m));
    let e = r.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
}

#[cfg(unix)]
fn kill_publisher_while_subscribing(delay: Duration) {
    let name = TestName::new("aa-kill-pub");
    let mut child = spawn(ENTRY, "idle-publisher", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let mut sub = ChannelOptions::new().subscriber(name.as_str()).unwrap();
    let r = killed_while_awaiting(
        child,
        "Subscriber::recv_async",
        delay,
        |_| {},
        sub.recv_async(),
    );
    let e = r.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    // The stream ends too.
    assert!(run(BOUND, "the stream", next(&mut sub)).is_none());
}

#[cfg(unix)]
fn kill_server_while_calling(delay: Duration) {
    let name = TestName::new("aa-kill-srv");
    let mut child = spawn(ENTRY, "stalled-server", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    // The server takes the request, then dies before it answers.
    let r = killed_while_awaiting(
        child,
        "call_async",
        delay,
        |child| assert_eq!(child.expect_line(), "got"),
        client.call_async(b"never answered"),
    );
    let e = r.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
}

#[cfg(unix)]
fn kill_holder_while_locking(delay: Duration) {
    let name = TestName::new("aa-kill-mx");
    let mutex = Mutex::create(name.as_str(), 7u64).unwrap();
    let mut child = spawn(ENTRY, "lock-holder", &[name.as_str()]);
    assert_eq!(child.expect_line(), "locked");
    let r = killed_while_awaiting(child, "lock_async", delay, |_| {}, mutex.lock_async());
    let Err(LockError::OwnerDied(mut guard)) = r else {
        panic!("lock_async after the holder died: not OwnerDied");
    };
    assert_eq!(*guard, 7);
    guard.mark_consistent();
    drop(guard);
    assert!(
        mutex.try_lock().is_ok(),
        "the mutex is not free after the takeover"
    );
}

#[cfg(unix)]
#[test]
fn a_receive_awaiting_a_killed_sender_ends_disconnected() {
    kill_sender_while_receiving(SETTLE);
}

#[cfg(unix)]
#[test]
fn a_send_awaiting_room_from_a_killed_receiver_ends_disconnected() {
    kill_receiver_while_sending(SETTLE);
}

#[cfg(unix)]
#[test]
fn a_subscriber_awaiting_a_killed_publisher_ends_disconnected() {
    kill_publisher_while_subscribing(SETTLE);
}

#[cfg(unix)]
#[test]
fn a_call_awaiting_a_killed_server_ends_disconnected() {
    kill_server_while_calling(SETTLE);
}

#[cfg(unix)]
#[test]
fn a_lock_awaiting_a_killed_holder_takes_the_lock_over() {
    kill_holder_while_locking(SETTLE);
}

/// A peer killed at once, while the wait has only just begun: the same.
///
/// These five hung before 2026-12-03 (the exit watch that fired was kept as
/// if still watching, so no periodic recheck was armed while the try was still
/// inside its 50 ms liveness throttle).
#[cfg(unix)]
#[test]
fn a_sender_killed_just_as_a_receive_begins_is_noticed() {
    for _ in 0..3 {
        kill_sender_while_receiving(Duration::ZERO);
    }
}

#[cfg(unix)]
#[test]
fn a_receiver_killed_just_as_a_send_begins_is_noticed() {
    for _ in 0..3 {
        kill_receiver_while_sending(Duration::ZERO);
    }
}

#[cfg(unix)]
#[test]
fn a_publisher_killed_just_as_a_subscriber_begins_is_noticed() {
    for _ in 0..3 {
        kill_publisher_while_subscribing(Duration::ZERO);
    }
}

#[cfg(unix)]
#[test]
fn a_server_killed_just_as_a_call_waits_is_noticed() {
    for _ in 0..3 {
        kill_server_while_calling(Duration::ZERO);
    }
}

#[cfg(unix)]
#[test]
fn a_holder_killed_just_as_a_lock_begins_is_noticed() {
    for _ in 0..3 {
        kill_holder_while_locking(Duration::ZERO);
    }
}

/// Not a death: the server closes (drops its `RpcServer`) after taking the
/// request, in a process that lives on. A blocking `call` reports that as
/// `Disconnected`; so must the future.
#[test]
fn a_call_awaiting_a_server_that_closes_ends_disconnected() {
    let name = TestName::new("aa-close-srv");
    let mut child = spawn(ENTRY, "closing-server", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    let r = run(BOUND, "call_async", async {
        let mut fut = pin!(client.call_async(b"never answered"));
        assert!(poll_once(&mut fut).await.is_pending());
        assert_eq!(child.expect_line(), "closed");
        let closed = Instant::now();
        let r = within(DEATH_BOUND, fut).await.unwrap_or_else(|| {
            panic!("call_async: the server's closing not noticed within {DEATH_BOUND:?}")
        });
        eprintln!(
            "call_async: the server's closing noticed after {:?}",
            closed.elapsed()
        );
        r
    });
    let e = r.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
}

/// `reply_async` waits for room in the client's reply queue at most the
/// reply timeout (its documentation), also while the client lives on
/// without reading its replies.
///
/// Found by this test: the timeout was only looked at when something polled
/// the reply, which nothing did once the client was watched for its exit
/// (fixed in 5790847).
#[test]
fn a_reply_to_a_client_that_never_reads_gives_up_after_the_reply_timeout() {
    let name = TestName::new("aa-reply-full");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    const TIMEOUT: Duration = Duration::from_millis(200);
    server.set_reply_timeout(TIMEOUT);
    const CALLS: u64 = 8;
    let mut child = spawn(ENTRY, "silent-client", &[name.as_str(), &CALLS.to_string()]);
    assert_eq!(child.expect_line(), "called");
    // Replies of 60 KiB: the 256 KiB reply queue takes four.
    let long = vec![0xa5u8; 60 * 1024];
    let outcomes = run(BOUND, "replying", async {
        let mut outcomes = Vec::new();
        for i in 0..CALLS {
            let request = server.recv_async().await.unwrap();
            let started = Instant::now();
            let r = within(DEATH_BOUND, server.reply_async(&request, &long))
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "reply {i}: still waiting for room after {DEATH_BOUND:?}, \
                         with a reply timeout of {TIMEOUT:?}"
                    )
                });
            outcomes.push((r.map_err(|e| e.is_timeout()), started.elapsed()));
        }
        outcomes
    });
    eprintln!("{outcomes:?}");
    // Let the client close (and remove) its reply queue.
    child.tell("done");
    child.wait_success(BOUND);
    assert!(outcomes[0].0.is_ok(), "the first reply had room");
    assert!(
        outcomes.iter().any(|(r, _)| *r == Err(true)),
        "no reply timed out, though the queue holds four"
    );
}

// ---------------------------------------------------------------------------
// 5. Interrupters
// ---------------------------------------------------------------------------

/// Polls `fut` once (it must wait), raises `stop` from another thread, and
/// awaits the future's end.
fn interrupted<F: Future>(stop: &Interrupter, what: &str, fut: F) -> F::Output {
    run(BOUND, what, async {
        let mut fut = pin!(fut);
        assert!(
            poll_once(&mut fut).await.is_pending(),
            "{what}: done before it was interrupted"
        );
        let stop = stop.clone();
        let raiser = thread::spawn(move || {
            thread::sleep(SETTLE);
            stop.interrupt();
        });
        let out = fut.await;
        raiser.join().unwrap();
        out
    })
}

fn assert_interrupted(e: &Error, name: &TestName, op: &str) {
    assert!(e.is_interrupted(), "{e}");
    let text = e.to_string();
    assert!(text.contains(name.as_str()) && text.contains(op), "{text}");
}

#[test]
fn an_interrupter_ends_a_pending_receive_and_nothing_is_lost() {
    let name = TestName::new("aa-int-recv");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let mut tx = Sender::connect(name.as_str()).unwrap();
    let stop = rx.interrupter();
    let e = interrupted(&stop, "recv_async", rx.recv_async()).unwrap_err();
    assert_interrupted(&e, &name, "receive");
    // Sticky until cleared; a message already queued is still delivered.
    run(BOUND, "after the interrupt", async {
        assert!(rx.recv_async().await.unwrap_err().is_interrupted());
        tx.send(b"after").unwrap();
        assert_eq!(rx.recv_async().await.unwrap(), b"after");
        stop.clear();
        assert!(
            tokio::time::timeout(SETTLE, rx.recv_async()).await.is_err(),
            "a receive that found nothing did not wait"
        );
        tx.send(b"again").unwrap();
        assert_eq!(rx.recv_async().await.unwrap(), b"again");
    });
    assert_eq!(Word::open(&name, DATA_WAITERS).get(), 0);
}

#[test]
fn an_interrupter_ends_a_pending_send() {
    let name = TestName::new("aa-int-send");
    let opts = ChannelOptions::new().capacity(4096);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut tx = opts.sender(name.as_str()).unwrap();
    let mut sent = 0u64;
    while tx.try_send(&sized(sent, 500)).is_ok() {
        sent += 1;
    }
    let stop = tx.interrupter();
    let m = sized(sent, 500);
    let e = interrupted(&stop, "send_async", tx.send_async(&m)).unwrap_err();
    assert_interrupted(&e, &name, "send");
    stop.clear();
    // The interrupted send sent nothing; once cleared, it goes through.
    run(BOUND, "after the interrupt", async {
        for i in 0..sent {
            assert_eq!(rx.recv_async().await.unwrap(), sized(i, 500));
        }
        tx.send_async(&m).await.unwrap();
        assert_eq!(rx.recv_async().await.unwrap(), m);
    });
    assert!(rx.try_recv().unwrap_err().is_would_block());
}

#[test]
fn an_interrupter_ends_a_pending_lock_and_the_lock_is_undisturbed() {
    let name = TestName::new("aa-int-mx");
    let mutex = Mutex::create(name.as_str(), 0u64).unwrap();
    let stop = mutex.interrupter();
    let guard = mutex.lock().unwrap();
    let r = interrupted(&stop, "lock_async", mutex.lock_async());
    let Err(LockError::Failed(e)) = r else {
        panic!("an interrupted lock_async did not fail");
    };
    assert_interrupted(&e, &name, "lock");
    drop(guard);
    stop.clear();
    let guard = run(BOUND, "lock after the interrupt", mutex.lock_async()).unwrap();
    drop(guard);
    assert_eq!(Word::open(&name, SYNC_WAITERS).get(), 0);
}

#[test]
fn an_interrupter_ends_pending_semaphore_and_event_waits_and_takes_nothing() {
    let name = TestName::new("aa-int-sem");
    let sem = Semaphore::create(name.as_str(), 0, 4).unwrap();
    let stop = sem.interrupter();
    let e = interrupted(&stop, "Semaphore::wait_async", sem.wait_async()).unwrap_err();
    assert_interrupted(&e, &name, "take a unit");
    sem.release(1).unwrap();
    stop.clear();
    run(BOUND, "wait after the interrupt", sem.wait_async()).unwrap();
    assert_eq!(sem.count(), 0);

    let name = TestName::new("aa-int-ev");
    let event = Event::create(name.as_str(), EventMode::AutoReset, false).unwrap();
    let stop = event.interrupter();
    let e = interrupted(&stop, "Event::wait_async", event.wait_async()).unwrap_err();
    assert_interrupted(&e, &name, "see the event set");
    event.set().unwrap();
    stop.clear();
    run(BOUND, "wait after the interrupt", event.wait_async()).unwrap();
    assert!(
        !event.is_set().unwrap(),
        "the auto-reset signal was not taken"
    );
}

/// Races an interrupt against the poll that starts a wait, `rounds` times:
/// every wait must end `Interrupted`, by its first poll or through its waker.
/// The first poll arms the wait (waiter count, reactor watch, interrupt waker);
/// an interrupt raised while it does must not be lost.
/// How long a raced interrupt may take to wake its future before it counts as
/// lost (it takes microseconds).
const LOST: Duration = Duration::from_secs(10);

fn race_interrupts<F: Future<Output = shmkit::Result<()>>>(
    what: &str,
    stop: &Interrupter,
    mut start: impl FnMut() -> F,
    rounds: u32,
) {
    let go = Arc::new(Barrier::new(2));
    let raised = Arc::new(Barrier::new(2));
    let raiser = {
        let (go, raised, stop) = (go.clone(), raised.clone(), stop.clone());
        thread::spawn(move || {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..rounds {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                go.wait();
                for _ in 0..x % 2000 {
                    std::hint::spin_loop();
                }
                stop.interrupt();
                raised.wait();
            }
        })
    };
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut at_once, mut woken) = (0, 0);
    for round in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        stop.clear();
        let probe = Probe::new();
        let mut fut = Box::pin(start());
        go.wait();
        for _ in 0..x % 2000 {
            std::hint::spin_loop();
        }
        let first = probe.poll(fut.as_mut());
        raised.wait();
        let out = match first {
            Poll::Ready(out) => {
                at_once += 1;
                out
            }
            Poll::Pending => {
                if !probe.wait_woken(0, LOST) {
                    panic!(
                        "{what}, round {round}: an interrupt raised while the wait was being \
                         armed was lost: the pending future's waker was not called within {LOST:?}"
                    );
                }
                woken += 1;
                match probe.poll(fut.as_mut()) {
                    Poll::Ready(out) => out,
                    Poll::Pending => {
                        panic!("{what}, round {round}: still pending after the interrupt woke it")
                    }
                }
            }
        };
        let e = out.expect_err("a wait with nothing to take ended without an error");
        assert!(e.is_interrupted(), "{what}, round {round}: {e}");
    }
    raiser.join().unwrap();
    eprintln!("{what}: {at_once} waits ended by their first poll, {woken} woken by the interrupt");
}

/// Found by this test: an interrupt raised between `poll_op`'s last look at
/// the flag and the waker's registration with the interrupter was lost, for
/// about 2% of the rounds; the waits that nothing else polls again (a
/// semaphore, an event, a receiver whose senders are watched) then slept for
/// ever (fixed in 09f0d40).
#[test]
fn an_interrupt_raised_while_a_wait_starts_is_never_lost() {
    let name = TestName::new("aa-race-sem");
    let sem = Semaphore::create(name.as_str(), 0, 1).unwrap();
    race_interrupts(
        "Semaphore::wait_async",
        &sem.interrupter(),
        || sem.wait_async(),
        3000,
    );

    let name = TestName::new("aa-race-ev");
    let event = Event::create(name.as_str(), EventMode::AutoReset, false).unwrap();
    race_interrupts(
        "Event::wait_async",
        &event.interrupter(),
        || event.wait_async(),
        3000,
    );

    // A receiver that waits for senders has no reason to look again by itself.
    let name = TestName::new("aa-race-rx");
    let mut rx = ChannelOptions::new()
        .wait_for_senders(true)
        .receiver(name.as_str())
        .unwrap();
    let stop = rx.interrupter();
    // Each round's future is dropped before the next is made: the borrow held
    // across its await never meets another.
    let cell = std::cell::RefCell::new(&mut rx);
    let rx = &cell;
    #[allow(clippy::await_holding_refcell_ref)]
    race_interrupts(
        "Receiver::recv_async",
        &stop,
        move || async move { rx.borrow_mut().recv_async().await.map(drop) },
        3000,
    );
}

/// A future polled again with another waker (moved to another task, or
/// polled by a combinator with a waker per future) must wake that waker: the
/// `Future` contract says only the waker of the latest poll counts.
#[test]
fn a_future_polled_again_with_another_waker_wakes_the_new_one() {
    let name = TestName::new("aa-rewake-rx");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let mut tx = Sender::connect(name.as_str()).unwrap();
    // A message: the reactor's watch.
    {
        let (first, second) = (Probe::new(), Probe::new());
        let mut fut = Box::pin(rx.recv_async());
        assert!(first.poll(fut.as_mut()).is_pending());
        assert!(second.poll(fut.as_mut()).is_pending());
        tx.send(b"m").unwrap();
        assert!(
            second.wait_woken(0, LOST),
            "a message came, and the latest waker was not called"
        );
        assert!(matches!(second.poll(fut.as_mut()), Poll::Ready(Ok(m)) if m == b"m"));
    }
    drop(rx);

    let name = TestName::new("aa-rewake-sem");
    let sem = Semaphore::create(name.as_str(), 0, 1).unwrap();
    let (first, second) = (Probe::new(), Probe::new());
    let mut fut = Box::pin(sem.wait_async());
    assert!(first.poll(fut.as_mut()).is_pending());
    assert!(second.poll(fut.as_mut()).is_pending());
    sem.release(1).unwrap();
    assert!(
        second.wait_woken(0, LOST),
        "a unit released, and the latest waker was not called"
    );
    assert!(matches!(second.poll(fut.as_mut()), Poll::Ready(Ok(()))));
}

/// The same for an interrupt: raising the interrupter must call the waker of
/// the latest poll.
///
/// Found by this test: the interrupter kept the waker of the wait's first
/// `Pending` poll (fixed in 5790847).
#[test]
fn an_interrupt_wakes_the_waker_of_the_latest_poll() {
    let name = TestName::new("aa-rewake-int");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let _tx = Sender::connect(name.as_str()).unwrap();
    let stop = rx.interrupter();
    {
        let (first, second) = (Probe::new(), Probe::new());
        let mut fut = Box::pin(rx.recv_async());
        assert!(first.poll(fut.as_mut()).is_pending());
        assert!(second.poll(fut.as_mut()).is_pending());
        stop.interrupt();
        let woken = second.wait_woken(0, LOST);
        eprintln!(
            "receive interrupted: first waker called {} times, latest {}",
            first.woken(),
            second.woken()
        );
        assert!(woken, "interrupted, and the latest waker was not called");
        assert!(matches!(second.poll(fut.as_mut()), Poll::Ready(Err(e)) if e.is_interrupted()));
    }

    let name = TestName::new("aa-rewake-sem");
    let sem = Semaphore::create(name.as_str(), 0, 1).unwrap();
    let stop = sem.interrupter();
    let (first, second) = (Probe::new(), Probe::new());
    let mut fut = Box::pin(sem.wait_async());
    assert!(first.poll(fut.as_mut()).is_pending());
    assert!(second.poll(fut.as_mut()).is_pending());
    stop.interrupt();
    let woken = second.wait_woken(0, LOST);
    eprintln!(
        "semaphore wait interrupted: first waker called {} times, latest {}",
        first.woken(),
        second.woken()
    );
    assert!(woken, "interrupted, and the latest waker was not called");
    assert!(matches!(second.poll(fut.as_mut()), Poll::Ready(Err(e)) if e.is_interrupted()));
}

/// A wait-one wake-up (a unit released, an auto-reset event set, a mutex
/// unlocked) that went to a future which is then dropped without taking
/// anything must still reach the blocked thread waiting beside it: dropping a
/// future may not lose a wake-up for others.
///
/// `start` makes a pending future, `block` runs a blocking wait on a thread
/// (its result: whether it got what it waited for), `give` makes one thing
/// available.
fn wake_passed_on<F: Future>(
    what: &str,
    mut start: impl FnMut() -> F,
    block: impl Fn() -> bool + Send + Sync + 'static,
    mut give: impl FnMut(),
) {
    let block = Arc::new(block);
    let (mut future_woken, mut thread_first) = (0, 0);
    for round in 0..10 {
        let probe = Probe::new();
        let mut fut = Box::pin(start());
        assert!(probe.poll(fut.as_mut()).is_pending());
        // The future's watch is in place before the thread sleeps.
        thread::sleep(SETTLE);
        let (done, result) = mpsc::channel();
        let waiter = {
            let block = block.clone();
            thread::spawn(move || {
                let _ = done.send(block());
            })
        };
        thread::sleep(SETTLE);
        let given = Instant::now();
        give();
        // Whoever the wake-up went to: the future (then dropped, unpolled),
        // or the thread.
        let until = Instant::now() + LOST;
        let early = loop {
            if let Ok(got) = result.try_recv() {
                break Some(got);
            }
            if probe.woken() > 0 {
                break None;
            }
            assert!(
                Instant::now() < until,
                "{what}, round {round}: nobody woken"
            );
            thread::yield_now();
        };
        drop(fut);
        let got = match early {
            Some(got) => {
                thread_first += 1;
                got
            }
            None => {
                future_woken += 1;
                // The thread waits up to BOUND: far longer than this.
                let got = result.recv_timeout(LOST);
                eprintln!(
                    "{what}, round {round}: the thread got it {:?} after it was given",
                    given.elapsed()
                );
                got.unwrap_or_else(|_| {
                    panic!(
                        "{what}, round {round}: lost wake-up: it went to a future that was then \
                         dropped unpolled, and the thread blocked beside it did not get what was \
                         given within {LOST:?}"
                    )
                })
            }
        };
        waiter.join().unwrap();
        assert!(
            got,
            "{what}, round {round}: the blocked thread's wait failed"
        );
    }
    eprintln!(
        "{what}: woken first: the future {future_woken} times, the thread {thread_first} times"
    );
}

/// Failed before 2026-12-03: the dropped future took the one wake-up of the
/// release and did not pass it on (now `AsyncWait::cancel` does).
#[test]
fn a_dropped_semaphore_wait_passes_its_wake_up_on_to_a_blocked_thread() {
    let name = TestName::new("aa-pass-sem");
    let sem = Arc::new(Semaphore::create(name.as_str(), 0, 4).unwrap());
    let other = sem.clone();
    wake_passed_on(
        "semaphore",
        || sem.wait_async(),
        move || other.wait_timeout(BOUND).is_ok(),
        || {
            sem.release(1).unwrap();
        },
    );
    assert_eq!(sem.count(), 0);
}

/// Failed before 2026-12-03: the dropped future took the one wake-up of the
/// release and did not pass it on (now `AsyncWait::cancel` does).
#[test]
fn a_dropped_event_wait_passes_its_wake_up_on_to_a_blocked_thread() {
    let name = TestName::new("aa-pass-ev");
    let event = Arc::new(Event::create(name.as_str(), EventMode::AutoReset, false).unwrap());
    let other = event.clone();
    wake_passed_on(
        "auto-reset event",
        || event.wait_async(),
        move || other.wait_timeout(BOUND).is_ok(),
        || event.set().unwrap(),
    );
}

#[test]
fn a_dropped_lock_passes_its_wake_up_on_to_a_blocked_thread() {
    let name = TestName::new("aa-pass-mx");
    let mutex = Arc::new(Mutex::create(name.as_str(), 0u64).unwrap());
    let holder = std::cell::RefCell::new(Some(mutex.lock().unwrap()));
    let other = mutex.clone();
    wake_passed_on(
        "mutex",
        || {
            if holder.borrow().is_none() {
                *holder.borrow_mut() = Some(mutex.lock().unwrap());
            }
            mutex.lock_async()
        },
        move || other.lock_timeout(BOUND).is_ok(),
        || drop(holder.borrow_mut().take()),
    );
}

// ---------------------------------------------------------------------------
// 6. Send futures
// ---------------------------------------------------------------------------

fn assert_send<T: Send>(_: &T) {}
fn assert_static<T: 'static>(_: &T) {}

/// The futures a multi-thread runtime moves between threads are `Send` (a
/// compile-time check; the futures are dropped unpolled).
#[test]
fn the_futures_are_send() {
    let name = TestName::new("aa-send");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let mut tx = Sender::connect(name.as_str()).unwrap();
    let mut buf = [0u8; 8];
    assert_send(&rx.recv_async());
    assert_send(&rx.recv_into_async(&mut buf));
    assert_send(&rx.recv_with_async(|m| m.len()));
    assert_send(&tx.send_async(b"x"));
    let bname = TestName::new("aa-send-b");
    let _publisher = ChannelOptions::new().publisher(bname.as_str()).unwrap();
    let mut sub = ChannelOptions::new().subscriber(bname.as_str()).unwrap();
    assert_send(&sub.recv_async());
    let rname = TestName::new("aa-send-r");
    let mut server = RpcServer::bind(rname.as_str()).unwrap();
    let mut client = RpcClient::connect(rname.as_str()).unwrap();
    assert_send(&client.call_async(b"x"));
    assert_send(&server.recv_async());
    let _call = client.start_call(b"y", None).unwrap();
    let request = server.recv_timeout(BOUND).unwrap();
    assert_send(&server.reply_async(&request, b"z"));
    let mname = TestName::new("aa-send-m");
    let mutex = Arc::new(Mutex::create(mname.as_str(), 0u64).unwrap());
    let locking = mutex.lock_arc_async();
    assert_send(&locking);
    assert_static(&locking);
    let sname = TestName::new("aa-send-s");
    let sem = Semaphore::create(sname.as_str(), 0, 1).unwrap();
    assert_send(&sem.wait_async());
    let ename = TestName::new("aa-send-e");
    let event = Event::create(ename.as_str(), EventMode::AutoReset, false).unwrap();
    assert_send(&event.wait_async());
}

// ---------------------------------------------------------------------------
// 7. Executor independence
// ---------------------------------------------------------------------------

/// Sends `msgs` on `tx` after a pause (the receive is asleep by then), from
/// another thread; gives the sender back.
fn send_later(mut tx: Sender, msgs: Vec<Vec<u8>>) -> thread::JoinHandle<Sender> {
    thread::spawn(move || {
        thread::sleep(SETTLE);
        for m in msgs {
            tx.send_timeout(&m, BOUND).unwrap();
        }
        tx
    })
}

#[test]
fn a_receive_completes_under_shmkit_block_on() {
    let name = TestName::new("aa-exec-bo");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let tx = Sender::connect(name.as_str()).unwrap();
    let feeder = send_later(tx, vec![b"one".to_vec(), b"two".to_vec()]);
    // block_on has no timer: it runs on a thread of its own, bounded from here.
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let first = shmkit::block_on(rx.recv_async());
        let second = shmkit::block_on(next(&mut rx));
        let _ = done.send((first, second));
    });
    let (first, second) = result
        .recv_timeout(BOUND)
        .expect("shmkit::block_on never returned");
    assert_eq!(first.unwrap(), b"one");
    assert_eq!(second.unwrap().unwrap(), b"two");
    drop(feeder.join().unwrap());
}

#[test]
fn receives_locks_and_waits_complete_as_tasks_of_a_multi_thread_runtime() {
    let name = TestName::new("aa-exec-mt");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let tx = Sender::connect(name.as_str()).unwrap();
    let mname = TestName::new("aa-exec-mx");
    let mutex = Arc::new(Mutex::create(mname.as_str(), 0u64).unwrap());
    let sname = TestName::new("aa-exec-sem");
    let sem = Arc::new(Semaphore::create(sname.as_str(), 0, 64).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    const N: u64 = 200;
    let feeder = send_later(tx, (0..N).map(|i| message(i, 100)).collect());
    let receiving = rt.spawn(async move {
        for i in 0..N {
            let m = rx.recv_async().await.unwrap();
            assert!(m == message(i, 100), "message {i} differs");
            // Hand the task to whichever worker takes it next.
            tokio::task::yield_now().await;
        }
        rx
    });
    // Tasks contending for the lock, holding it across awaits, and taking
    // semaphore units released from outside the runtime.
    let lockers: Vec<_> = (0..4)
        .map(|_| {
            let (mutex, sem) = (mutex.clone(), sem.clone());
            rt.spawn(async move {
                for _ in 0..25 {
                    let mut guard = mutex.lock_arc_async().await.unwrap();
                    let seen = *guard;
                    tokio::task::yield_now().await;
                    *guard = seen + 1;
                    drop(guard);
                    sem.wait_async().await.unwrap();
                }
            })
        })
        .collect();
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || {
            for _ in 0..100 {
                while sem.release(1).is_err() {
                    thread::yield_now();
                }
            }
        })
    };
    let mut rx = rt.block_on(async {
        for locker in lockers {
            tokio::time::timeout(BOUND, locker).await.unwrap().unwrap();
        }
        tokio::time::timeout(BOUND, receiving)
            .await
            .unwrap()
            .unwrap()
    });
    releaser.join().unwrap();
    let guard = locked(mutex.try_lock(), "the mutex is free at the end");
    assert_eq!(*guard, 100, "an update lost: the lock was not exclusive");
    assert_eq!(sem.count(), 0);
    drop(feeder.join().unwrap());
    assert!(rx.try_recv().unwrap_err().is_disconnected());
}

#[cfg(unix)]
#[test]
fn a_receive_completes_in_a_hand_written_poll_loop_on_a_notifier() {
    use std::os::fd::AsRawFd;
    let name = TestName::new("aa-exec-fd");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    let tx = Sender::connect(name.as_str()).unwrap();
    let notifier = shmkit::Notifier::new().unwrap();
    let waker = notifier.waker();
    let mut cx = Context::from_waker(&waker);
    const N: u64 = 50;
    let feeder = send_later(tx, (0..N).map(|i| message(i, 100)).collect());
    let until = Instant::now() + BOUND;
    let mut i = 0;
    while i < N {
        notifier.clear();
        match rx.poll_recv_with(&mut cx, |m| m.to_vec()) {
            Poll::Ready(m) => {
                assert!(m.unwrap() == message(i, 100), "message {i} differs");
                i += 1;
            }
            Poll::Pending => {
                let left = until.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "message {i} never came");
                let mut fds = [libc::pollfd {
                    fd: notifier.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                // SAFETY: one valid pollfd, for the duration of the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis() as libc::c_int) };
                assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
            }
        }
    }
    drop(feeder.join().unwrap());
    assert!(rx.try_recv().unwrap_err().is_disconnected());
}
