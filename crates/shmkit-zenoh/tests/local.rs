//! The bridge on one host, without root: the `shmkit-bridge` command's log and
//! connection reports, the local channels it creates, and a broadcast message's
//! size limit, with plain Zenoh sessions of this test process (over loopback TCP)
//! as the remote side.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::channel::{inspect, ChannelOptions, EndpointState, RpcClient};
use shmkit_zenoh::{Bridge, BridgeConfig, DEFAULT_CAPACITY};
use zenoh::Wait;

const BRIDGE: &str = env!("CARGO_BIN_EXE_shmkit-bridge");
const PATIENCE: Duration = Duration::from_secs(30);

/// A name unique to this test run.
fn unique(what: &str) -> String {
    format!("zlocal-{what}-{}", std::process::id())
}

/// A loopback TCP port nobody listens on (free when asked; tests that listen on
/// it start at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `shmkit-bridge` process with its stdout and stderr read line by line;
/// killed if still running when dropped.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    log: Vec<String>,
}

fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BRIDGE)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting shmkit-bridge");
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        Running {
            child,
            stdout,
            stderr,
            log: Vec::new(),
        }
    }

    /// Waits for the `shmkit-bridge ready` line on stdout.
    fn ready(&mut self) -> String {
        let line = self
            .stdout
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no ready line; log: {:#?}", self.drain_log()));
        assert!(line.starts_with("shmkit-bridge ready"), "{line}");
        line
    }

    /// Waits up to `timeout` for a stderr line containing every one of `parts`.
    fn log_line(&mut self, parts: &[&str], timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {parts:?} within {timeout:?}; log: {:#?}",
                    self.log
                ),
            }
        }
    }

    fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        &self.log
    }

    /// SIGTERM (a clean stop).
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit, then reads the rest of
    /// its output: (status, rest of stdout, whole stderr).
    fn exit(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, Vec<String>) {
        let until = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < until,
                "the bridge did not exit within {timeout:?}; log: {:#?}",
                self.drain_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.iter().collect();
        let mut log = std::mem::take(&mut self.log);
        log.extend(self.stderr.iter());
        (status, stdout, log)
    }
}

impl Drop for Running {
    /// After a failed test: SIGTERM first, so the bridge removes its channels,
    /// SIGKILL if it does not go.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(15);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log lines on a pipe (or in a file) carry no terminal colour codes, and they
/// go to stderr: stdout holds only the `ready` line scripts wait for.
#[test]
fn log_lines_to_a_pipe_have_no_colour_codes() {
    let channel = unique("colour");
    let route = format!("queue:out:{channel}");
    let mut bridge = Running::start_with(
        &[
            "--domain",
            &unique("colour"),
            "--no-multicast-scouting",
            "-r",
            &route,
        ],
        &[("RUST_LOG", "info")],
    );
    bridge.ready();
    bridge.terminate();
    let (status, stdout, log) = bridge.exit(PATIENCE);
    assert!(status.success(), "{status}: {log:#?}");
    assert!(
        stdout.is_empty(),
        "stdout after the ready line: {stdout:#?}"
    );
    // At info level Zenoh and the bridge say something at start and stop.
    assert!(log.iter().any(|l| l.contains("INFO")), "{log:#?}");
    for line in stdout.iter().chain(&log) {
        assert!(!line.contains('\u{1b}'), "an escape code: {line:?}");
    }
}

/// A `--connect` endpoint nobody listens on: after a few seconds the bridge warns,
/// naming it (it keeps trying, and forwards once it connects).
#[test]
fn an_unreachable_endpoint_is_named_in_a_warning() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let channel = unique("unreachable");
    let route = format!("queue:out:{channel}");
    let mut bridge = Running::start(&[
        "--domain",
        &unique("unreachable"),
        "--no-multicast-scouting",
        "--connect",
        &endpoint,
        "-r",
        &route,
    ]);
    bridge.ready();
    let warning = bridge.log_line(&["WARN", &endpoint], PATIENCE);
    assert!(warning.contains("not connected"), "{warning}");
    bridge.terminate();
    let (status, _, log) = bridge.exit(PATIENCE);
    assert!(status.success(), "{status}: {log:#?}");
}

/// With `--connect-timeout`, a bridge that cannot reach any `--connect` endpoint
/// exits with an error naming them, instead of waiting for ever.
#[test]
fn connect_timeout_ends_a_bridge_that_reaches_no_endpoint() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let channel = unique("timeout");
    let route = format!("queue:out:{channel}");
    let started = Instant::now();
    let bridge = Running::start(&[
        "--domain",
        &unique("timeout"),
        "--no-multicast-scouting",
        "--connect",
        &endpoint,
        "--connect-timeout",
        "1",
        "-r",
        &route,
    ]);
    let (status, _, log) = bridge.exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "{log:#?}");
    let error = log
        .iter()
        .find(|l| l.starts_with("shmkit-bridge: "))
        .unwrap_or_else(|| panic!("no error line: {log:#?}"));
    assert!(
        error.contains(&endpoint) && error.contains("within 1 s"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // It closed its channel on the way out.
    assert!(inspect(&channel).unwrap_err().is_not_found());
}

/// Two bridges on loopback: the one that connects names the endpoint it reached
/// in its log, and `--connect-timeout` lets it run on.
#[test]
fn a_connected_endpoint_is_logged() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let domain = unique("connected");
    let (out, inn) = (unique("connected-a"), unique("connected-b"));
    let mut a = Running::start(&[
        "--domain",
        &domain,
        "--no-multicast-scouting",
        "--listen",
        &endpoint,
        "-r",
        &format!("queue:out:{out}"),
    ]);
    a.ready();
    let mut b = Running::start(&[
        "--domain",
        &domain,
        "--no-multicast-scouting",
        "--connect",
        &endpoint,
        "--connect-timeout",
        "10",
        "-r",
        &format!("queue:in:{inn}"),
    ]);
    b.ready();
    let line = b.log_line(&["connected to", &endpoint], PATIENCE);
    assert!(line.contains("INFO"), "{line}");
    // Past the timeout's check, still running.
    std::thread::sleep(Duration::from_secs(1));
    for bridge in [b, a] {
        bridge.terminate();
        let (status, _, log) = bridge.exit(PATIENCE);
        assert!(status.success(), "{status}: {log:#?}");
    }
}

/// A plain Zenoh session of this process connected to `endpoint`.
fn zenoh_session(endpoint: &str) -> zenoh::Session {
    let mut config = zenoh::Config::default();
    config
        .insert_json5("connect/endpoints", &format!("[\"{endpoint}\"]"))
        .expect("connect/endpoints");
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .expect("scouting");
    config
        .insert_json5("listen/endpoints", "[]")
        .expect("listen/endpoints");
    zenoh::open(config).wait().expect("opening a zenoh session")
}

/// A broadcast message arriving from Zenoh must fit the local ring: at most a
/// quarter of it less 16 bytes (4 MiB - 16 for the bridge's default 16 MiB ring).
/// That length arrives whole; one byte more is refused with a warning that says
/// the limit and why, and counted as failed; the route carries on.
#[test]
fn a_broadcast_message_may_use_a_quarter_of_the_receiving_ring() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let domain = unique("quarter");
    let channel = unique("quarter");
    let mut bridge = Running::start(&[
        "--domain",
        &domain,
        "--no-multicast-scouting",
        "--listen",
        &endpoint,
        "-r",
        &format!("broadcast:in:{channel}"),
    ]);
    bridge.ready();
    let max = DEFAULT_CAPACITY / 4 - 16;
    let info = inspect(&channel).expect("the bridge made the channel");
    assert_eq!(info.capacity, DEFAULT_CAPACITY);
    assert_eq!(info.max_message, max);
    let mut sub = ChannelOptions::new()
        .open_existing()
        .subscriber(&channel)
        .expect("subscribing");
    let session = zenoh_session(&endpoint);
    let publisher = session
        .declare_publisher(format!("shmkit/{domain}/{channel}"))
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .expect("a zenoh publisher");
    let until = Instant::now() + PATIENCE;
    while !publisher
        .matching_status()
        .wait()
        .expect("matching")
        .matching()
    {
        assert!(Instant::now() < until, "the bridge never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let longest: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    publisher.put(longest.clone()).wait().expect("put");
    let got = sub.recv_timeout(PATIENCE).expect("the longest message");
    assert!(got == longest, "{} bytes arrived, altered", got.len());
    publisher
        .put(vec![7u8; max as usize + 1])
        .wait()
        .expect("put");
    publisher.put(&b"after"[..]).wait().expect("put");
    assert_eq!(
        sub.recv_timeout(PATIENCE).expect("the next message"),
        b"after"
    );
    let warning = bridge.log_line(&["WARN", &(max + 1).to_string()], PATIENCE);
    for part in [
        &format!("broadcast in \"{channel}\""),
        &max.to_string(),
        "a quarter",
        &format!("{DEFAULT_CAPACITY}-byte ring"),
        "capacity",
    ] {
        assert!(warning.contains(part), "{part:?} not in: {warning}");
    }
    drop(publisher);
    let _ = session.close().wait();
    drop(sub);
    bridge.terminate();
    let (status, _, log) = bridge.exit(PATIENCE);
    assert!(status.success(), "{status}: {log:#?}");
    let stats = log
        .iter()
        .find(|l| l.starts_with("shmkit-bridge: broadcast in"))
        .unwrap_or_else(|| panic!("no counters: {log:#?}"));
    assert!(
        stats.contains(" 2 forwarded") && stats.contains(" 1 failed"),
        "{stats}"
    );
}

/// The RPC request channel an `rpc:in` bridge creates has the ring every channel
/// the bridge creates gets (16 MiB, or the route's `capacity`), and local
/// clients reach the bridge's server through it.
#[test]
fn rpc_request_channels_get_the_documented_ring() {
    for (capacity, expected) in [(None, DEFAULT_CAPACITY), (Some(4 << 20), 4 << 20)] {
        let channel = unique(&format!("rpc-{expected}"));
        let mut config = BridgeConfig::new(&unique("rpc"));
        config.zenoh.multicast_scouting = false;
        let mut route: shmkit_zenoh::Route = format!("rpc:in:{channel}").parse().expect("route");
        route.capacity = capacity;
        config.routes.push(route);
        let bridge = Bridge::start(&config).expect("starting the bridge");
        let info = inspect(&channel).expect("the request channel");
        assert_eq!(info.capacity, expected, "{capacity:?}");
        // The bridge serves it; no sender holds it.
        let me = std::process::id();
        assert_eq!(info.owner, Some(EndpointState::Connected(me)), "{info:?}");
        assert!(
            !info
                .peers
                .iter()
                .any(|p| matches!(p, EndpointState::Connected(_))),
            "{info:?}"
        );
        let client = RpcClient::connect(&channel).expect("a local client");
        drop(client);
        bridge.close();
        assert!(inspect(&channel).unwrap_err().is_not_found());
    }
}
