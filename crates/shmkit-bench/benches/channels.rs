//! Channel benchmarks, in one run so that the ratios are comparable on a noisy
//! machine. Every case runs between two real processes (this binary re-executed
//! as the peer), not pinned to CPUs.
//!
//! - `round_trip_64B`: one iteration sends a 64-byte message and waits for the
//!   peer to send it back; both sides write the payload and read all of it.
//!   Compared: a raw cache-line ping-pong (the floor: two counters in shared
//!   memory, the payload copied next to them, both sides spinning), shmkit in
//!   busy-poll mode, shmkit in its default blocking mode (spin 20 µs, then futex),
//!   a pipe pair, a Unix stream socket and TCP over loopback (`TCP_NODELAY`).
//! - `throughput`: the peer sends a burst of messages of one size with `send`
//!   (which copies the payload into the ring); this process receives each with
//!   `recv_into` (which copies it out). Reported in bytes per second; messages
//!   per second are that divided by the size. Beside it, single-threaded
//!   `memcpy` of 1 MiB, the bar for 1 MiB messages.

use std::time::Duration;

use criterion::Criterion;

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use criterion::measurement::WallTime;
    use criterion::{BenchmarkGroup, Criterion, Throughput};
    use shmkit::channel::{ChannelOptions, Receiver, Sender, WaitMode};
    use shmkit::Shm;

    pub const PEER: &str = "SHMKIT_BENCH_CHANNEL_PEER";
    const LONG: Duration = Duration::from_secs(60);
    const MSG: usize = 64;

    fn spawn_peer(role: &str, arg: &str, pipes: bool) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(PEER, format!("{role} {arg}"));
        if pipes {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        cmd.spawn().unwrap()
    }

    fn unique(tag: &str) -> String {
        format!("bench-ch-{tag}-{}", std::process::id())
    }

    fn mode(role: &str) -> WaitMode {
        if role.ends_with("busy") {
            WaitMode::BusyPoll
        } else {
            WaitMode::default()
        }
    }

    /// Echoes every message from a stream until it closes.
    fn echo_stream(mut s: impl Read + Write) {
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    }

    /// The peer side of every benchmark.
    pub fn peer(spec: &str) {
        let (role, arg) = spec.split_once(' ').unwrap();
        match role {
            "raw" => {
                let shm = Shm::open(arg).unwrap();
                let ping: &AtomicU64 = shm.atomic_u64(0).unwrap();
                let pong: &AtomicU64 = shm.atomic_u64(128).unwrap();
                let mut buf = [0u8; MSG];
                let mut seen = 0;
                loop {
                    let now = loop {
                        let v = ping.load(Ordering::Acquire);
                        if v != seen {
                            break v;
                        }
                        std::hint::spin_loop();
                    };
                    if now == u64::MAX {
                        return;
                    }
                    seen = now;
                    shm.read_at(64, &mut buf).unwrap();
                    shm.write_at(192, &buf).unwrap();
                    pong.store(now, Ordering::Release);
                }
            }
            "echo-busy" | "echo-block" => {
                let opts = ChannelOptions::new().wait_mode(mode(role));
                let mut rx = opts.receiver(&format!("{arg}-in")).unwrap();
                let mut tx = opts.sender(&format!("{arg}-out")).unwrap();
                let mut buf = [0u8; MSG];
                loop {
                    let n = rx.recv_into(&mut buf).unwrap();
                    if n == 0 {
                        return;
                    }
                    tx.send(&buf[..n]).unwrap();
                }
            }
            "pipe" => echo_stream(Duplex(std::io::stdin().lock(), std::io::stdout().lock())),
            "unix" => echo_stream(UnixStream::connect(arg).unwrap()),
            "tcp" => {
                let s = TcpStream::connect(arg).unwrap();
                s.set_nodelay(true).unwrap();
                echo_stream(s)
            }
            "source" => {
                let mut ctl = Receiver::connect(&format!("{arg}-ctl")).unwrap();
                let mut tx = Sender::connect(&format!("{arg}-data")).unwrap();
                let mut payload = Vec::new();
                loop {
                    let req = ctl.recv_timeout(LONG).unwrap();
                    let count = u64::from_le_bytes(req[..8].try_into().unwrap());
                    let size = u64::from_le_bytes(req[8..16].try_into().unwrap()) as usize;
                    if size == 0 {
                        return;
                    }
                    payload.resize(size, 0);
                    for i in 0..count {
                        payload[0] = i as u8;
                        tx.send(&payload).unwrap();
                    }
                }
            }
            other => panic!("unknown peer role {other}"),
        }
    }

    /// stdin and stdout as one stream.
    struct Duplex<R, W>(R, W);
    impl<R: Read, W: Write> Read for Duplex<R, W> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl<R: Read, W: Write> Write for Duplex<R, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.1.write(buf)?;
            self.1.flush()?;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.1.flush()
        }
    }

    fn timed(iters: u64, mut round: impl FnMut(u64)) -> Duration {
        let start = Instant::now();
        for i in 0..iters {
            round(i);
        }
        start.elapsed()
    }

    fn raw(g: &mut BenchmarkGroup<'_, WallTime>) {
        let name = unique("raw");
        let shm = Shm::create(&name, 4096).unwrap();
        let ping: &AtomicU64 = shm.atomic_u64(0).unwrap();
        let pong: &AtomicU64 = shm.atomic_u64(128).unwrap();
        let mut peer = spawn_peer("raw", &name, false);
        let mut n = 0u64;
        g.bench_function("raw cache-line ping-pong", |b| {
            b.iter_custom(|iters| {
                let mut buf = [1u8; MSG];
                timed(iters, |_| {
                    n += 1;
                    shm.write_at(64, &buf).unwrap();
                    ping.store(n, Ordering::Release);
                    while pong.load(Ordering::Acquire) != n {
                        std::hint::spin_loop();
                    }
                    shm.read_at(192, &mut buf).unwrap();
                })
            })
        });
        ping.store(u64::MAX, Ordering::Release);
        assert!(peer.wait().unwrap().success());
    }

    fn shmkit_echo(g: &mut BenchmarkGroup<'_, WallTime>, label: &str, role: &str) {
        let name = unique(role);
        let opts = ChannelOptions::new().wait_mode(mode(role));
        let mut tx = opts.sender(&format!("{name}-in")).unwrap();
        let mut rx = opts.receiver(&format!("{name}-out")).unwrap();
        let mut peer = spawn_peer(role, &name, false);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut buf = [1u8; MSG];
                timed(iters, |i| {
                    buf[0] = i as u8;
                    tx.send(&buf).unwrap();
                    let n = rx.recv_into(&mut buf).unwrap();
                    assert_eq!(n, MSG);
                })
            })
        });
        tx.send(&[]).unwrap();
        assert!(peer.wait().unwrap().success());
    }

    fn stream_echo(
        g: &mut BenchmarkGroup<'_, WallTime>,
        label: &str,
        mut s: impl Read + Write,
        mut peer: Child,
    ) {
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut buf = [1u8; MSG];
                timed(iters, |_| {
                    s.write_all(&buf).unwrap();
                    s.read_exact(&mut buf).unwrap();
                })
            })
        });
        drop(s);
        assert!(peer.wait().unwrap().success());
    }

    pub fn round_trip(c: &mut Criterion) {
        let mut g = c.benchmark_group("round_trip_64B (2 processes)");
        raw(&mut g);
        shmkit_echo(&mut g, "shmkit busy-poll", "echo-busy");
        shmkit_echo(&mut g, "shmkit blocking (default)", "echo-block");

        let mut peer = spawn_peer("pipe", "-", true);
        let stream = Duplex(peer.stdout.take().unwrap(), peer.stdin.take().unwrap());
        stream_echo(&mut g, "pipe", stream, peer);

        let path = std::env::temp_dir().join(unique("sock"));
        let listener = UnixListener::bind(&path).unwrap();
        let peer = spawn_peer("unix", path.to_str().unwrap(), false);
        let (s, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(&path);
        stream_echo(&mut g, "Unix socket", s, peer);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = spawn_peer("tcp", &addr, false);
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        stream_echo(&mut g, "TCP loopback", s, peer);
        g.finish();
    }

    pub fn throughput(c: &mut Criterion) {
        let mut g = c.benchmark_group("throughput (2 processes)");
        let name = unique("tput");
        let mut ctl = Sender::connect(&format!("{name}-ctl")).unwrap();
        let mut rx = ChannelOptions::new()
            .capacity(8 << 20)
            .receiver(&format!("{name}-data"))
            .unwrap();
        let mut peer = spawn_peer("source", &name, false);
        for size in [64usize, 4096, 64 << 10, 1 << 20] {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0u8; size];
            let label = format!("shmkit {} messages", show(size));
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let mut req = [0u8; 16];
                    req[..8].copy_from_slice(&iters.to_le_bytes());
                    req[8..].copy_from_slice(&(size as u64).to_le_bytes());
                    ctl.send(&req).unwrap();
                    for i in 0..iters {
                        let n = rx.recv_into(&mut buf).unwrap();
                        assert!(n == size && buf[0] == i as u8);
                    }
                    start.elapsed()
                })
            });
        }
        ctl.send(&[0u8; 16]).unwrap();
        assert!(peer.wait().unwrap().success());

        let size = 1 << 20;
        g.throughput(Throughput::Bytes(size as u64));
        let src = vec![3u8; size];
        let mut dst = vec![0u8; size];
        g.bench_function("memcpy 1 MiB (one thread)", |b| {
            b.iter(|| {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            })
        });
        g.finish();
    }

    fn show(size: usize) -> String {
        match size {
            s if s >= 1 << 20 => format!("{} MiB", s >> 20),
            s if s >= 1 << 10 => format!("{} KiB", s >> 10),
            s => format!("{s} B"),
        }
    }
}

fn main() {
    #[cfg(unix)]
    if let Ok(spec) = std::env::var(unix::PEER) {
        return unix::peer(&spec);
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    #[cfg(unix)]
    {
        unix::round_trip(&mut c);
        unix::throughput(&mut c);
    }
    c.final_summary();
}
