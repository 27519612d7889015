//! The programs the two-host tests run on each host: this test binary started
//! again with `--peer ROLE ARGS...`. Each prints `ready` once attached and one
//! result line at the end; any failure is a line starting with `error` and exit
//! code 1.

use std::time::{Duration, Instant};

use shmkit::channel::{ChannelOptions, RpcClient, RpcServer};
use shmkit::Error;
use zenoh::Wait;

/// Probe a publisher sends until every subscriber has answered it.
pub const HELLO: &[u8] = b"HELLO";
/// How long any single wait of a peer may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// Length of message `i` of stream `seed`: 0 B to 1 MiB, one in a hundred
/// long (up to 1 MiB), the rest up to 4 KiB; message 0 is empty and every
/// 1000th is exactly 1 MiB.
pub fn size(seed: u64, i: u64) -> usize {
    let r = mix(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if i == 0 {
        0
    } else if i % 1000 == 999 {
        1 << 20
    } else if r % 100 == 0 {
        ((r >> 8) % ((1 << 20) + 1)) as usize
    } else {
        ((r >> 8) % 4097) as usize
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Message `i` of stream `seed` of length `len`: pseudo-random bytes; from 12
/// bytes on, its index in the first 8 and the CRC-32 of all but the last 4 in
/// those.
pub fn message(seed: u64, i: u64, len: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(len, 0);
    let mut x = mix(seed ^ i);
    for chunk in buf.chunks_mut(8) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    if len >= 12 {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let crc = crc32fast::hash(&buf[..len - 4]);
        buf[len - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Checks that `msg` is message `i` of stream `seed` (length, index, checksum).
pub fn check(seed: u64, i: u64, msg: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
    let len = size(seed, i);
    if msg.len() != len {
        return Err(format!("message {i}: {} bytes, expected {len}", msg.len()));
    }
    if len < 12 {
        message(seed, i, len, scratch);
        return (msg == &scratch[..])
            .then_some(())
            .ok_or(format!("message {i}: wrong bytes"));
    }
    let index = u64::from_le_bytes(msg[..8].try_into().unwrap_or_default());
    if index != i {
        return Err(format!("message {i}: carries index {index}"));
    }
    let crc = u32::from_le_bytes(msg[len - 4..].try_into().unwrap_or_default());
    if crc32fast::hash(&msg[..len - 4]) != crc {
        return Err(format!("message {i} ({len} bytes): checksum mismatch"));
    }
    Ok(())
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail(&format!("peer argument {i} missing or bad in {args:?}")))
}

fn fail(why: &str) -> ! {
    println!("error {why}");
    std::process::exit(1)
}

fn ok<T>(r: shmkit::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

/// An acknowledgement: subscriber `id` has checked `count` messages.
fn ack(id: u64, count: u64) -> [u8; 16] {
    let mut a = [0; 16];
    a[..8].copy_from_slice(&id.to_le_bytes());
    a[8..].copy_from_slice(&count.to_le_bytes());
    a
}

pub fn run(args: &[String]) {
    let role = args.first().map(String::as_str).unwrap_or("");
    let args = &args[1..];
    match role {
        "publish" => publish(args),
        "subscribe" => subscribe(args),
        "zsubscribe" => zsubscribe(args),
        "send" => send(args),
        "recv" => recv(args),
        "serve" => serve(args),
        "call" => call(args),
        "flood" => flood(args),
        _ => fail(&format!("unknown peer role {role:?}")),
    }
}

/// `publish CHANNEL COUNT SEED ACKS SUBSCRIBERS WINDOW`: publishes COUNT
/// messages, keeping at most WINDOW bytes ahead of the slowest subscriber's
/// acknowledgements (a broadcast publisher never waits for subscribers, so
/// without this the test would measure ring sizes, not the bridge).
fn publish(args: &[String]) {
    let (channel, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let (acks, subs, window): (String, usize, u64) = (arg(args, 3), arg(args, 4), arg(args, 5));
    let mut publisher = ok(
        ChannelOptions::new().capacity(32 << 20).publisher(&channel),
        "publisher",
    );
    let mut acks = ok(ChannelOptions::new().receiver(&acks), "acks receiver");
    println!("ready");
    let mut acked = vec![None::<u64>; subs];
    let take_ack = |msg: &[u8], acked: &mut Vec<Option<u64>>| {
        let id = u64::from_le_bytes(msg[..8].try_into().unwrap_or_default()) as usize;
        let n = u64::from_le_bytes(msg[8..16].try_into().unwrap_or_default());
        if msg.len() != 16 || id >= acked.len() {
            fail(&format!("bad acknowledgement {msg:?}"));
        }
        acked[id] = Some(acked[id].map_or(n, |m| m.max(n)));
    };
    let started = Instant::now();
    while acked.iter().any(Option::is_none) {
        if started.elapsed() > PATIENCE {
            fail(&format!("subscribers never answered HELLO: {acked:?}"));
        }
        ok(publisher.publish(HELLO), "publishing HELLO");
        match acks.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => take_ack(&m, &mut acked),
            Err(e) if e.is_timeout() || e.is_disconnected() => {}
            Err(e) => fail(&format!("acks: {e}")),
        }
    }
    // through[i]: bytes of messages 0..i.
    let mut through = vec![0u64];
    let mut buf = Vec::new();
    for i in 0..count {
        let len = size(seed, i);
        loop {
            let slowest = acked.iter().map(|a| a.unwrap_or(0)).min().unwrap_or(0) as usize;
            if through[i as usize] + len as u64 - through[slowest] <= window
                || slowest == i as usize
            {
                break;
            }
            match acks.recv_timeout(PATIENCE) {
                Ok(m) => take_ack(&m, &mut acked),
                Err(e) => fail(&format!(
                    "waiting for acknowledgements at {i}: {e} ({acked:?})"
                )),
            }
        }
        message(seed, i, len, &mut buf);
        ok(publisher.publish(&buf), "publish");
        through.push(through[i as usize] + len as u64);
    }
    println!("published {count} {}", through[count as usize]);
    while acked.iter().any(|a| *a != Some(count)) {
        match acks.recv_timeout(PATIENCE) {
            Ok(m) => take_ack(&m, &mut acked),
            Err(e) => fail(&format!(
                "waiting for the last acknowledgements: {e} ({acked:?})"
            )),
        }
    }
    println!("done");
}

/// `subscribe CHANNEL COUNT SEED ACKS ID SUBSCRIBERS`: receives and checks COUNT
/// messages, acknowledging every 64th.
fn subscribe(args: &[String]) {
    let (channel, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let (acks, id, subs): (String, u64, u32) = (arg(args, 3), arg(args, 4), arg(args, 5));
    let mut sub = ok(
        ChannelOptions::new()
            .capacity(32 << 20)
            .subscriber(&channel),
        "subscriber",
    );
    let mut acks = ok(
        ChannelOptions::new().max_senders(subs).sender(&acks),
        "acks sender",
    );
    println!("ready");
    let mut stream = Checked::new(seed, count);
    let started = Instant::now();
    while !stream.done() {
        let i = stream.next;
        let msg = match sub.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(Error::Lagged { missed, .. }) => fail(&format!("lagged: missed {missed} at {i}")),
            Err(e) if e.is_timeout() || e.is_disconnected() => {
                if started.elapsed() > PATIENCE * 5 {
                    fail(&format!("stuck at message {i}: {e}"));
                }
                if e.is_disconnected() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            Err(e) => fail(&format!("recv: {e}")),
        };
        if let Some(n) = stream.take(&msg) {
            ok(acks.send(&ack(id, n)), "ack");
        }
    }
    println!("ok {count} {}", stream.bytes);
}

/// A subscriber's view of a published stream: skips the publisher's HELLO
/// probes before message 0, checks every message and says when to acknowledge.
struct Checked {
    seed: u64,
    count: u64,
    /// The index of the message expected next.
    next: u64,
    bytes: u64,
    scratch: Vec<u8>,
}

impl Checked {
    fn new(seed: u64, count: u64) -> Checked {
        Checked {
            seed,
            count,
            next: 0,
            bytes: 0,
            scratch: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.next == self.count
    }

    /// Checks `msg` (failing the peer if it is wrong); the count to
    /// acknowledge, if one is due: 0 for a probe, then every 64th and the last.
    fn take(&mut self, msg: &[u8]) -> Option<u64> {
        if self.next == 0 && msg == HELLO {
            return Some(0);
        }
        if let Err(why) = check(self.seed, self.next, msg, &mut self.scratch) {
            fail(&why);
        }
        self.bytes += msg.len() as u64;
        self.next += 1;
        (self.next % 64 == 0 || self.done()).then_some(self.next)
    }
}

/// `zsubscribe KEY COUNT SEED ACKS_KEY ID ENDPOINT`: a plain Zenoh program (no
/// shmkit) subscribing to a bridged channel's key and acknowledging with plain
/// puts on the acknowledgement channel's key.
fn zsubscribe(args: &[String]) {
    let (key, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let (acks_key, id, endpoint): (String, u64, String) =
        (arg(args, 3), arg(args, 4), arg(args, 5));
    let mut config = zenoh::Config::default();
    let set = |c: &mut zenoh::Config, k: &str, v: &str| {
        c.insert_json5(k, v)
            .unwrap_or_else(|e| fail(&format!("zenoh config {k}: {e}")))
    };
    set(
        &mut config,
        "connect/endpoints",
        &format!("[\"{endpoint}\"]"),
    );
    set(&mut config, "scouting/multicast/enabled", "false");
    let session = zenoh::open(config)
        .wait()
        .unwrap_or_else(|e| fail(&format!("zenoh open: {e}")));
    let sub = session
        .declare_subscriber(&key)
        .wait()
        .unwrap_or_else(|e| fail(&format!("zenoh subscriber: {e}")));
    let acks = session
        .declare_publisher(&acks_key)
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .unwrap_or_else(|e| fail(&format!("zenoh publisher: {e}")));
    let put = |a: [u8; 16]| {
        acks.put(a.to_vec())
            .wait()
            .unwrap_or_else(|e| fail(&format!("zenoh put: {e}")))
    };
    println!("ready");
    let mut stream = Checked::new(seed, count);
    while !stream.done() {
        let sample = match sub.recv_timeout(PATIENCE) {
            Ok(Some(s)) => s,
            _ => fail(&format!("zenoh: nothing at message {}", stream.next)),
        };
        if let Some(n) = stream.take(&sample.payload().to_bytes()) {
            put(ack(id, n));
        }
    }
    println!("ok {count} {}", stream.bytes);
}

/// `send CHANNEL COUNT SEED SIZE PAUSE_US`: sends COUNT messages into a queue
/// (SIZE bytes each, or `random`), pausing between them; a send refused
/// because the receiver is gone is tried again.
fn send(args: &[String]) {
    let (channel, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let (fixed, pause): (String, u64) = (arg(args, 3), arg(args, 4));
    let fixed: Option<usize> = fixed.parse().ok();
    let mut tx = ok(
        ChannelOptions::new().capacity(4 << 20).sender(&channel),
        "sender",
    );
    println!("ready");
    let mut buf = Vec::new();
    for i in 0..count {
        message(seed, i, fixed.unwrap_or_else(|| size(seed, i)), &mut buf);
        let started = Instant::now();
        loop {
            match tx.send_timeout(&buf, Duration::from_secs(1)) {
                Ok(()) => break,
                Err(e)
                    if (e.is_disconnected() || e.is_timeout()) && started.elapsed() < PATIENCE =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => fail(&format!("send {i}: {e}")),
            }
        }
        if pause > 0 {
            std::thread::sleep(Duration::from_micros(pause));
        }
    }
    println!("sent {count}");
}

/// `recv CHANNEL COUNT SEED SIZE`: receives from a queue until message COUNT-1.
/// With a fixed SIZE it accepts gaps (a bridge restart may lose messages in
/// flight) but no message twice or out of order; with `random` it wants every
/// message. Prints `progress N` every 1000 messages and `disconnected` when the
/// sender (the bridge) goes.
fn recv(args: &[String]) {
    let (channel, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let fixed: String = arg(args, 3);
    let gaps_allowed = fixed != "random";
    let mut rx = ok(
        ChannelOptions::new().capacity(4 << 20).receiver(&channel),
        "receiver",
    );
    println!("ready");
    let (mut next, mut received, mut disconnects) = (0u64, 0u64, 0u64);
    let mut was_disconnected = false;
    let mut scratch = Vec::new();
    let mut last_progress = Instant::now();
    while next < count {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(e) if e.is_timeout() || e.is_disconnected() => {
                if e.is_disconnected() && !was_disconnected {
                    was_disconnected = true;
                    disconnects += 1;
                    println!("disconnected");
                }
                if e.is_disconnected() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if last_progress.elapsed() > PATIENCE {
                    fail(&format!("stuck after message {next}"));
                }
                continue;
            }
            Err(e) => fail(&format!("recv: {e}")),
        };
        was_disconnected = false;
        last_progress = Instant::now();
        let index = if msg.len() >= 12 {
            u64::from_le_bytes(msg[..8].try_into().unwrap_or_default())
        } else {
            next
        };
        if index < next {
            fail(&format!(
                "message {index} again (or out of order) after {}",
                next - 1
            ));
        }
        if index > next && !gaps_allowed {
            fail(&format!("message {next} missing: got {index}"));
        }
        let expected_len = if gaps_allowed {
            fixed.parse().unwrap_or(0)
        } else {
            size(seed, index)
        };
        if msg.len() != expected_len {
            fail(&format!(
                "message {index}: {} bytes, expected {expected_len}",
                msg.len()
            ));
        }
        if gaps_allowed {
            message(seed, index, expected_len, &mut scratch);
            if msg != scratch {
                fail(&format!("message {index}: wrong bytes"));
            }
        } else if let Err(why) = check(seed, index, &msg, &mut scratch) {
            fail(&why);
        }
        received += 1;
        next = index + 1;
        if received % 1000 == 0 {
            println!("progress {received}");
        }
    }
    println!("ok received {received} of {count}, disconnects {disconnects}");
}

/// `serve CHANNEL`: an RPC server answering each request with its bytes
/// reversed.
fn serve(args: &[String]) {
    let channel: String = arg(args, 0);
    let mut server = ok(RpcServer::bind(&channel), "rpc server");
    println!("ready");
    loop {
        let request = ok(server.recv(), "rpc recv");
        let mut reply = request.payload().to_vec();
        reply.reverse();
        ok(server.reply(&request, &reply), "rpc reply");
    }
}

/// `call CHANNEL COUNT SEED`: COUNT calls of random sizes, each reply checked;
/// the first call is tried until the route is up.
fn call(args: &[String]) {
    let (channel, count, seed): (String, u64, u64) = (arg(args, 0), arg(args, 1), arg(args, 2));
    let mut client = ok(RpcClient::connect(&channel), "rpc client");
    println!("ready");
    let started = Instant::now();
    loop {
        match client.call_timeout(b"ping", Duration::from_secs(2)) {
            Ok(r) if r == b"gnip" => break,
            Ok(r) => fail(&format!("ping answered with {r:?}")),
            Err(e) if started.elapsed() < PATIENCE => {
                let _ = e;
            }
            Err(e) => fail(&format!("the route never came up: {e}")),
        }
    }
    let mut buf = Vec::new();
    for i in 0..count {
        // Requests up to 64 KiB: the RPC route is for calls, not bulk data.
        message(seed, i, size(seed, i) % (64 << 10), &mut buf);
        let reply = ok(client.call_timeout(&buf, Duration::from_secs(30)), "call");
        buf.reverse();
        if reply != buf {
            fail(&format!("call {i}: wrong reply ({} bytes)", reply.len()));
        }
    }
    println!("ok {count}");
}

/// `flood CHANNEL COUNT`: publishes COUNT 1 KiB messages into a small ring as
/// fast as it can: a bridge subscribed to it must fall behind.
fn flood(args: &[String]) {
    let (channel, count): (String, u64) = (arg(args, 0), arg(args, 1));
    let mut publisher = ok(
        ChannelOptions::new().capacity(64 << 10).publisher(&channel),
        "publisher",
    );
    println!("ready");
    let started = Instant::now();
    while publisher.subscribers().is_empty() {
        if started.elapsed() > PATIENCE {
            fail("no subscriber came");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let msg = [7u8; 1024];
    for _ in 0..count {
        ok(publisher.publish(&msg), "publish");
    }
    println!("flooded {count}");
    // Stay until killed: the channel lives while its publisher does.
    std::thread::sleep(PATIENCE);
}
