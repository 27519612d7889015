//! The bridge between two hosts: two network namespaces joined by a veth pair,
//! each with its own /dev/shm (see `hosts`). Needs root; without it (or without
//! `unshare`, `nsenter`, `ip`) every test is skipped with the reason, unless
//! `SHMKIT_REQUIRE_NETNS=1` (set by CI) makes that a failure.
//!
//! A harness of its own (`harness = false`): the binary is also every peer
//! program (`--peer ROLE ...`), and the tests run one at a time, each busy
//! enough on its own.

mod hosts;
mod peers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hosts::{endpoint, Hosts, Program};

const BRIDGE: &str = env!("CARGO_BIN_EXE_shmkit-bridge");
const START: Duration = Duration::from_secs(60);
const STREAM: Duration = Duration::from_secs(600);

fn me() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

/// A peer program `role args` on host `host`.
fn peer(hosts: &mut Hosts, host: usize, role: &str, args: &[&str]) -> Program {
    let mut cmd = hosts.command(host, &me());
    cmd.arg("--peer").arg(role).args(args);
    let p = hosts.spawn(cmd);
    p.expect("ready", START, role);
    p
}

/// A bridge on host `host` (A listens, B connects to A) with `routes`.
fn bridge(hosts: &mut Hosts, host: usize, routes: &[&str]) -> Program {
    let mut cmd = hosts.command(host, Path::new(BRIDGE));
    cmd.args(["--domain", "test", "--no-multicast-scouting"]);
    if host == 0 {
        cmd.args(["--listen", &endpoint()]);
    } else {
        cmd.args(["--connect", &endpoint()]);
    }
    for r in routes {
        cmd.args(["--route", r]);
    }
    let p = hosts.spawn(cmd);
    p.expect("shmkit-bridge ready", START, "bridge");
    p
}

fn ok_line(p: &Program, timeout: Duration, what: &str) -> String {
    let line = p.line(timeout, what);
    assert!(!line.starts_with("error"), "{what}: {line}");
    line
}

/// A on host A publishes 100,000 messages of 0 B to 1 MiB; two shmkit
/// subscribers on host B and a plain Zenoh subscriber there check every one, in
/// order. Their acknowledgements travel back as a bridged queue (B to A) and, for
/// the plain Zenoh program, as plain puts into that queue's key.
fn broadcast_reaches_remote_subscribers_whole_and_in_order() {
    const COUNT: &str = "100000";
    let mut hosts = Hosts::new();
    let publisher = peer(
        &mut hosts,
        0,
        "publish",
        &["data", COUNT, "11", "acks", "3", "8388608"],
    );
    let subs: Vec<Program> = (0..2)
        .map(|id| {
            let id = id.to_string();
            peer(
                &mut hosts,
                1,
                "subscribe",
                &["data", COUNT, "11", "acks", &id, "2"],
            )
        })
        .collect();
    let _a = bridge(&mut hosts, 0, &["broadcast:out:data", "queue:in:acks"]);
    let _b = bridge(&mut hosts, 1, &["broadcast:in:data", "queue:out:acks"]);
    let zsub = peer(
        &mut hosts,
        1,
        "zsubscribe",
        &[
            "shmkit/test/data",
            COUNT,
            "11",
            "shmkit/test/acks",
            "2",
            &endpoint(),
        ],
    );
    let started = Instant::now();
    let published = ok_line(&publisher, STREAM, "publisher");
    assert!(published.starts_with("published 100000 "), "{published}");
    let bytes: u64 = published
        .rsplit(' ')
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    for (i, s) in subs.iter().chain([&zsub]).enumerate() {
        let line = ok_line(s, STREAM, "subscriber");
        assert_eq!(line, format!("ok 100000 {bytes}"), "subscriber {i}");
    }
    assert_eq!(ok_line(&publisher, STREAM, "publisher"), "done");
    println!(
        "    100,000 messages, {:.1} MiB, to 3 subscribers in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
}

/// A queue from A to B (messages of 0 B to 1 MiB, every one in order) and RPC
/// calls from B to a server on A.
fn queue_and_rpc_cross_between_hosts() {
    let mut hosts = Hosts::new();
    let receiver = peer(&mut hosts, 1, "recv", &["jobs", "5000", "5", "random"]);
    let sender = peer(&mut hosts, 0, "send", &["jobs", "5000", "5", "random", "0"]);
    let _server = peer(&mut hosts, 0, "serve", &["upper"]);
    let _a = bridge(&mut hosts, 0, &["queue:out:jobs", "rpc:out:upper"]);
    let _b = bridge(&mut hosts, 1, &["queue:in:jobs", "rpc:in:upper"]);
    let caller = peer(&mut hosts, 1, "call", &["upper", "1000", "6"]);
    assert_eq!(ok_line(&sender, STREAM, "sender"), "sent 5000");
    let line = receiver.expect("ok", STREAM, "receiver");
    assert_eq!(line, "ok received 5000 of 5000, disconnects 0");
    assert_eq!(ok_line(&caller, STREAM, "caller"), "ok 1000");
    // The bridge is a peer like any other: `shmkit ls` on B names it.
    match shmkit_cli() {
        Some(cli) => {
            let out = hosts.command(1, &cli).arg("ls").output().expect("shmkit ls");
            let out = String::from_utf8_lossy(&out.stdout);
            let row = |name: &str| {
                out.lines()
                    .find(|l| l.split_whitespace().next() == Some(name))
                    .unwrap_or_else(|| panic!("no {name} in shmkit ls:\n{out}"))
                    .to_owned()
            };
            let jobs = row("jobs");
            // The receiver has left; the bridge is the sender.
            assert!(jobs.contains("receiver down, 1 senders (pid "), "{jobs}");
            assert!(jobs.ends_with(" shmkit-bridge)"), "{jobs}");
            let upper = row("upper");
            assert!(upper.contains("shmkit-bridge), "), "{upper}");
        }
        None => println!("    `shmkit ls` not checked: the shmkit binary is not built (cargo test --workspace builds it)"),
    }
}

/// The `shmkit` command beside this test binary, if it was built (it is by
/// `cargo test --workspace`; CI insists).
fn shmkit_cli() -> Option<PathBuf> {
    let cli = me().parent()?.parent()?.join("shmkit");
    if cli.exists() {
        return Some(cli);
    }
    assert!(!required(), "{} is missing", cli.display());
    None
}

/// Both bridges killed with SIGKILL and restarted while a queue streams from A
/// to B: the receiver sees the dead sender (`disconnected`) and carries on when
/// the bridge is back, with no message twice or out of order.
fn killed_bridges_resume_without_duplicates() {
    const COUNT: u64 = 30_000;
    let mut hosts = Hosts::new();
    let receiver = peer(
        &mut hosts,
        1,
        "recv",
        &["jobs", &COUNT.to_string(), "9", "64"],
    );
    let sender = peer(
        &mut hosts,
        0,
        "send",
        &["jobs", &COUNT.to_string(), "9", "64", "100"],
    );
    let mut a = bridge(&mut hosts, 0, &["queue:out:jobs"]);
    let mut b = bridge(&mut hosts, 1, &["queue:in:jobs"]);
    let progress = |n: u64| {
        receiver.expect(&format!("progress {n}"), STREAM, "receiver");
    };
    // Kill a bridge once the receiver has this many messages.
    progress(5000);
    hosts.kill(&b);
    assert_eq!(
        receiver.expect("disconnected", START, "receiver"),
        "disconnected"
    );
    std::thread::sleep(Duration::from_millis(300));
    b = bridge(&mut hosts, 1, &["queue:in:jobs"]);
    progress(12000);
    hosts.kill(&a);
    std::thread::sleep(Duration::from_millis(300));
    a = bridge(&mut hosts, 0, &["queue:out:jobs"]);
    assert_eq!(ok_line(&sender, STREAM, "sender"), format!("sent {COUNT}"));
    let done = receiver.expect("ok", STREAM, "receiver");
    let received: u64 = done
        .split(' ')
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{done}"));
    // Lost: only what was in flight when a bridge died.
    assert!(received + 1000 >= COUNT, "{done}");
    println!("    {done} ({} lost in flight)", COUNT - received);
    hosts.terminate(&a);
    hosts.terminate(&b);
    assert!(hosts.wait(&a, START).success());
    assert!(hosts.wait(&b, START).success());
}

/// A publisher far faster than the network: the bridge falls behind, and says
/// how many messages it missed, in its log and its counters.
fn lag_is_reported() {
    const COUNT: u64 = 200_000;
    let mut hosts = Hosts::new();
    // The flood makes the channel (a 64 KiB ring) and starts once the bridge
    // subscribes.
    let flood = peer(&mut hosts, 0, "flood", &["fast", &COUNT.to_string()]);
    let mut cmd = hosts.command_logged(0, Path::new(BRIDGE));
    cmd.args([
        "--domain",
        "test",
        "--no-multicast-scouting",
        "-r",
        "broadcast:out:fast",
    ]);
    let bridge = hosts.spawn(cmd);
    bridge.expect("shmkit-bridge ready", START, "bridge");
    assert_eq!(ok_line(&flood, STREAM, "flood"), format!("flooded {COUNT}"));
    // Let the bridge read what the ring still holds.
    std::thread::sleep(Duration::from_millis(500));
    hosts.terminate(&bridge);
    let warning = bridge.expect("", START, "bridge log");
    assert!(warning.contains("missed"), "first log line: {warning}");
    let stats = bridge.expect("shmkit-bridge: broadcast out", START, "bridge stats");
    let numbers: Vec<u64> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // "N forwarded (B bytes), M missed, ..."
    let (forwarded, missed) = (numbers[0], numbers[2]);
    assert!(missed > 0, "{stats}");
    assert_eq!(forwarded + missed, COUNT, "{stats}");
    println!("    {stats}");
}

/// Whether CI insists that these tests run (`SHMKIT_REQUIRE_NETNS=1`).
fn required() -> bool {
    std::env::var_os("SHMKIT_REQUIRE_NETNS").is_some_and(|v| v == "1")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        peers::run(&args[1..]);
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 4] = [
        (
            "broadcast_reaches_remote_subscribers_whole_and_in_order",
            broadcast_reaches_remote_subscribers_whole_and_in_order,
        ),
        (
            "queue_and_rpc_cross_between_hosts",
            queue_and_rpc_cross_between_hosts,
        ),
        (
            "killed_bridges_resume_without_duplicates",
            killed_bridges_resume_without_duplicates,
        ),
        ("lag_is_reported", lag_is_reported),
    ];
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &chosen {
            println!("{name}: test");
        }
        return;
    }
    println!(
        "\nrunning {} tests (two hosts: network namespaces)",
        chosen.len()
    );
    if let Some(why) = hosts::unavailable() {
        if required() {
            panic!("two hosts are required (SHMKIT_REQUIRE_NETNS=1) but: {why}");
        }
        println!("skipped: {why}");
        return;
    }
    for (name, test) in chosen {
        let started = Instant::now();
        println!("test {name} ...");
        test();
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
}
