//! The bridge beside plain Zenoh, between two hosts (network namespaces joined
//! by a veth pair, as in the tests): latency and throughput for 64 B and 64 KiB
//! messages.
//!
//! - Plain Zenoh: a program on A puts on `bench/ping`, one on B answers each
//!   sample with a put on `bench/pong` (round trip); A puts a stream on
//!   `bench/stream`, B counts it and puts on `bench/done` at the end.
//! - Through bridges: the same programs written with shmkit queues (`ping`,
//!   `pong`, `stream`, `done`) on each host, the bridges carrying them.
//!
//! Both use reliable delivery with blocking congestion control (what a queue
//! promises) and Zenoh's default handlers. Run as root:
//! `cargo bench -p shmkit-zenoh --bench bridge` (`-- --quick` for fewer rounds).

#[path = "../tests/hosts/mod.rs"]
#[allow(dead_code)]
mod hosts;

use std::path::Path;
use std::time::{Duration, Instant};

use hosts::{endpoint, Hosts, Program};
use shmkit::channel::{ChannelOptions, Receiver, Sender};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const BRIDGE: &str = env!("CARGO_BIN_EXE_shmkit-bridge");
const WAIT: Duration = Duration::from_secs(300);
const SIZES: [usize; 2] = [64, 64 << 10];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return role(&args[1..]);
    }
    if let Some(why) = hosts::unavailable() {
        println!("bridge benchmark skipped: {why}");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // The machine's noise (other tenants, both hosts on the same cores) moves
    // single runs by tens of percent: runs alternate between the two paths and
    // each figure is the median over the repetitions.
    let repeats = if quick { 3 } else { 5 };
    println!("| path | size | round trip p50 | p99 | throughput (msg/s) | MiB/s |");
    println!("|---|---|---|---|---|---|");
    for size in SIZES {
        let (rounds, stream) = match (size, quick) {
            (64, false) => (10_000, 200_000),
            (_, false) => (3_000, 20_000),
            (64, true) => (2_000, 20_000),
            (_, true) => (500, 2_000),
        };
        let (mut plain, mut bridged) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            plain.push(run(false, size, rounds, stream));
            bridged.push(run(true, size, rounds, stream));
        }
        let (plain, bridged) = (Result::median(plain), Result::median(bridged));
        for (path, r) in [
            ("plain Zenoh", &plain),
            ("shmkit → bridge → Zenoh → bridge → shmkit", &bridged),
        ] {
            println!(
                "| {path} | {} | {:.1} µs | {:.1} µs | {:.0} | {:.1} |",
                show(size),
                r.p50,
                r.p99,
                r.rate,
                r.rate * size as f64 / (1 << 20) as f64
            );
        }
        println!(
            "| bridge / plain | {} | {:+.1}% | {:+.1}% | {:.1}% | |",
            show(size),
            (bridged.p50 / plain.p50 - 1.0) * 100.0,
            (bridged.p99 / plain.p99 - 1.0) * 100.0,
            bridged.rate / plain.rate * 100.0
        );
    }
}

fn show(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

struct Result {
    p50: f64,
    p99: f64,
    rate: f64,
}

impl Result {
    /// Each figure's median over `runs`.
    fn median(runs: Vec<Result>) -> Result {
        let mid = |f: fn(&Result) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Result {
            p50: mid(|r| r.p50),
            p99: mid(|r| r.p99),
            rate: mid(|r| r.rate),
        }
    }
}

/// One measurement on fresh hosts: the B side, the bridges if `bridged`, then
/// the A side, which prints `latency P50 P99` and `throughput RATE`.
fn run(bridged: bool, size: usize, rounds: usize, stream: usize) -> Result {
    let mut hosts = Hosts::new();
    let me = std::env::current_exe().expect("the benchmark's path");
    let start = |hosts: &mut Hosts, host: usize, args: &[String]| -> Program {
        let mut cmd = hosts.command(host, &me);
        cmd.arg("--role").args(args);
        let p = hosts.spawn(cmd);
        p.expect("ready", WAIT, &args[0]);
        p
    };
    let (size, rounds, stream) = (size.to_string(), rounds.to_string(), stream.to_string());
    let a = if bridged {
        start(&mut hosts, 1, &["shm-b".into()]);
        let bridge = |hosts: &mut Hosts, host: usize, routes: &[&str]| {
            let mut cmd = hosts.command(host, Path::new(BRIDGE));
            cmd.args(["--domain", "bench", "--no-multicast-scouting"]);
            cmd.args([
                if host == 0 { "--listen" } else { "--connect" },
                &endpoint(),
            ]);
            for r in routes {
                cmd.args(["-r", r]);
            }
            let p = hosts.spawn(cmd);
            p.expect("shmkit-bridge ready", WAIT, "bridge");
        };
        bridge(
            &mut hosts,
            0,
            &[
                "queue:out:ping",
                "queue:in:pong",
                "queue:out:stream",
                "queue:in:done",
            ],
        );
        bridge(
            &mut hosts,
            1,
            &[
                "queue:in:ping",
                "queue:out:pong",
                "queue:in:stream",
                "queue:out:done",
            ],
        );
        start(&mut hosts, 0, &["shm-a".into(), size, rounds, stream])
    } else {
        // A listens and probes until B, which connects, answers.
        let a = start(
            &mut hosts,
            0,
            &["zenoh-a".into(), size, rounds, stream, endpoint()],
        );
        start(&mut hosts, 1, &["zenoh-b".into(), endpoint()]);
        a
    };
    let latency = a.expect("latency", WAIT, "A");
    let throughput = a.expect("throughput", WAIT, "A");
    let nums = |l: &str| -> Vec<f64> {
        l.split(' ')
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let (l, t) = (nums(&latency), nums(&throughput));
    Result {
        p50: l[0],
        p99: l[1],
        rate: t[0],
    }
}

/// The programs on each host.
fn role(args: &[String]) {
    let arg = |i: usize| -> String { args.get(i).cloned().unwrap_or_default() };
    let num = |i: usize| -> usize { arg(i).parse().unwrap_or(0) };
    match arg(0).as_str() {
        "zenoh-a" => zenoh_a(num(1), num(2), num(3), &arg(4)),
        "zenoh-b" => zenoh_b(&arg(1)),
        "shm-a" => shm_a(num(1), num(2), num(3)),
        "shm-b" => shm_b(),
        other => panic!("unknown role {other}"),
    }
}

/// The A side's two measurements, over any transport: `round_trip` sends a
/// message and waits for its echo; `send` streams one; `finished` waits for
/// B's report that the stream has arrived.
fn measure(
    size: usize,
    rounds: usize,
    stream: usize,
    mut round_trip: impl FnMut(&[u8]),
    mut send: impl FnMut(&[u8]),
    finished: impl FnOnce(),
) {
    let mut msg = vec![0x5a; size];
    for _ in 0..rounds / 10 {
        round_trip(&msg);
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        round_trip(&msg);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "latency {:.2} {:.2}",
        times[rounds / 2],
        times[rounds * 99 / 100]
    );
    let t = Instant::now();
    for i in 0..stream {
        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
        msg[8..16].copy_from_slice(&(stream as u64).to_le_bytes());
        send(&msg);
    }
    finished();
    println!(
        "throughput {:.1}",
        stream as f64 / t.elapsed().as_secs_f64()
    );
}

/// B's stream counter: true once the last of the stream has come, after
/// checking that nothing was missing.
fn counted(seen: &mut u64, msg: &[u8]) -> bool {
    let index = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
    let total = u64::from_le_bytes(msg[8..16].try_into().expect("8 bytes"));
    assert_eq!(index, *seen, "stream message out of order or missing");
    *seen += 1;
    *seen == total
}

fn zenoh_session(endpoint: &str, listen: bool) -> zenoh::Session {
    let mut config = zenoh::Config::default();
    let key = if listen {
        "listen/endpoints"
    } else {
        "connect/endpoints"
    };
    config
        .insert_json5(key, &format!("[\"{endpoint}\"]"))
        .expect("endpoint");
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .expect("scouting");
    zenoh::open(config).wait().expect("zenoh session")
}

fn subscriber(
    session: &zenoh::Session,
    key: &'static str,
) -> zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>> {
    session.declare_subscriber(key).wait().expect("subscriber")
}

/// Reliable and blocking, as the bridge's queue routes are.
fn publisher(session: &zenoh::Session, key: &'static str) -> zenoh::pubsub::Publisher<'static> {
    session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .wait()
        .expect("publisher")
}

fn zenoh_a(size: usize, rounds: usize, stream: usize, endpoint: &str) {
    let session = zenoh_session(endpoint, true);
    let (pong, done) = (
        subscriber(&session, "bench/pong"),
        subscriber(&session, "bench/done"),
    );
    let (ping, data) = (
        publisher(&session, "bench/ping"),
        publisher(&session, "bench/stream"),
    );
    println!("ready");
    // Until B answers, pings go nowhere: probe.
    loop {
        ping.put(vec![0u8; size]).wait().expect("put");
        if pong
            .recv_timeout(Duration::from_millis(100))
            .ok()
            .flatten()
            .is_some()
        {
            break;
        }
    }
    while pong.try_recv().ok().flatten().is_some() {}
    measure(
        size,
        rounds,
        stream,
        |m| {
            ping.put(m.to_vec()).wait().expect("put");
            pong.recv().expect("pong");
        },
        |m| data.put(m.to_vec()).wait().expect("put"),
        || {
            done.recv().expect("done");
        },
    );
}

fn zenoh_b(endpoint: &str) {
    let session = zenoh_session(endpoint, false);
    let (ping, data) = (
        subscriber(&session, "bench/ping"),
        subscriber(&session, "bench/stream"),
    );
    let (pong, done) = (
        publisher(&session, "bench/pong"),
        publisher(&session, "bench/done"),
    );
    println!("ready");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seen = 0;
            while let Ok(sample) = data.recv() {
                if counted(&mut seen, &sample.payload().to_bytes()) {
                    done.put(vec![1u8]).wait().expect("put");
                    seen = 0;
                }
            }
        });
        while let Ok(sample) = ping.recv() {
            pong.put(sample.payload().clone()).wait().expect("put");
        }
    });
}

fn queue_pair(out: &str, back: &str) -> (Sender, Receiver) {
    let opts = ChannelOptions::new().capacity(16 << 20);
    (
        opts.sender(out).expect("sender"),
        opts.receiver(back).expect("receiver"),
    )
}

fn shm_a(size: usize, rounds: usize, stream: usize) {
    let (mut ping, mut pong) = queue_pair("ping", "pong");
    let (mut data, mut done) = queue_pair("stream", "done");
    println!("ready");
    // Until the bridges are up, pings wait in the queue; the first echo says
    // the path is there.
    ping.send(&vec![0u8; size]).expect("send");
    pong.recv_timeout(WAIT)
        .expect("the bridged path never came up");
    measure(
        size,
        rounds,
        stream,
        |m| {
            ping.send(m).expect("send");
            pong.recv_with(|_| ()).expect("pong");
        },
        |m| data.send(m).expect("send"),
        || {
            done.recv_with(|_| ()).expect("done");
        },
    );
}

fn shm_b() {
    let (mut pong, mut ping) = queue_pair("pong", "ping");
    let (mut done, mut data) = queue_pair("done", "stream");
    println!("ready");
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut seen = 0;
            while let Ok(last) = data.recv_with(|m| counted(&mut seen, m)) {
                if last {
                    done.send(&[1]).expect("send");
                    seen = 0;
                }
            }
        });
        while ping.recv_with(|m| pong.send(m)).is_ok() {}
    });
}
