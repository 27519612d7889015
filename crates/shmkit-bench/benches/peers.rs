//! shmkit against other IPC libraries, in the same topology: two processes
//! (this binary re-executed as the peer), a round trip per iteration, the
//! payload written by the sender and read by the receiver each way, everyone
//! busy-polling. Built only with `--features peers`:
//!
//! ```sh
//! cargo bench -p shmkit-bench --features peers --bench peers
//! ```
//!
//! Compared at 64 B, 1 KiB, 64 KiB and 1 MiB:
//! - shmkit `send` + `recv_into` (copies in and out) and `reserve`/`commit` +
//!   `recv_with` (zero-copy);
//! - iceoryx2 publish/subscribe over `ipc::Service`, a `[u8]` slice per
//!   message: loaned, written and sent per round trip, and "pre-loaned" (the
//!   next sample loaned while the reply is awaited, as a latency-minded
//!   iceoryx2 user would);
//! - ipc-channel byte channels (a Unix socket underneath; each receive
//!   returns a new `Vec`).
//!
//! Each peer runs only during its own benchmark, so no idle peer spins beside
//! another benchmark.

use criterion::Criterion;

#[cfg(all(feature = "peers", target_os = "linux"))]
mod linux {
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use criterion::measurement::WallTime;
    use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
    use iceoryx2::prelude::*;
    use ipc_channel::ipc::{
        bytes_channel, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender,
    };
    use shmkit::channel::{ChannelOptions, WaitMode};

    pub const PEER: &str = "SHMKIT_BENCH_PEERS_PEER";
    pub const SIZES: [usize; 4] = [64, 1024, 64 << 10, 1 << 20];
    const RING: u64 = 8 << 20;

    fn spawn_peer(role: &str, arg: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .env(PEER, format!("{role} {arg}"))
            .spawn()
            .unwrap()
    }

    fn unique(tag: &str) -> String {
        format!("bench-peers-{tag}-{}", std::process::id())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Reads every byte (what a zero-copy receiver does with its data).
    fn fold(b: &[u8]) -> u64 {
        let mut words = b.chunks_exact(8);
        let mut acc = (&mut words).fold(0u64, |a, w| a ^ u64::from_le_bytes(w.try_into().unwrap()));
        for &x in words.remainder() {
            acc = acc.rotate_left(8) ^ x as u64;
        }
        std::hint::black_box(acc)
    }

    fn stamp(buf: &mut [u8], seq: u64) {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
    }

    fn seq_of(buf: &[u8]) -> u64 {
        u64::from_le_bytes(buf[..8].try_into().unwrap())
    }

    fn timed(iters: u64, mut round: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            round();
        }
        start.elapsed()
    }

    // ---- shmkit ----

    fn shmkit_opts() -> ChannelOptions {
        ChannelOptions::new()
            .capacity(RING)
            .wait_mode(WaitMode::BusyPoll)
    }

    fn shmkit_peer(name: &str, zero_copy: bool) {
        let opts = shmkit_opts();
        let mut rx = opts.receiver(&format!("{name}-in")).unwrap();
        let mut tx = opts.sender(&format!("{name}-out")).unwrap();
        let mut buf = vec![0u8; 1 << 21];
        loop {
            if zero_copy {
                let done = rx
                    .recv_with(|b| {
                        let mut slot = tx.reserve(b.len()).unwrap();
                        slot.copy_from_slice(b);
                        slot.commit();
                        b.is_empty()
                    })
                    .unwrap();
                if done {
                    return;
                }
            } else {
                let n = rx.recv_into(&mut buf).unwrap();
                tx.send(&buf[..n]).unwrap();
                if n == 0 {
                    return;
                }
            }
        }
    }

    fn shmkit(g: &mut BenchmarkGroup<'_, WallTime>, size: usize, zero_copy: bool) {
        let name = unique(if zero_copy { "zc" } else { "copy" });
        let opts = shmkit_opts();
        let mut tx = opts.sender(&format!("{name}-in")).unwrap();
        let mut rx = opts.receiver(&format!("{name}-out")).unwrap();
        let mut peer = spawn_peer(if zero_copy { "shmkit-zc" } else { "shmkit" }, &name);
        let mut src = pattern(size);
        let mut buf = vec![0u8; size];
        let mut seq = 0u64;
        let label = if zero_copy {
            "shmkit reserve/commit + recv_with"
        } else {
            "shmkit send + recv_into"
        };
        g.bench_function(BenchmarkId::new(label, size), |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    seq += 1;
                    stamp(&mut src, seq);
                    if zero_copy {
                        let mut slot = tx.reserve(size).unwrap();
                        slot.copy_from_slice(&src);
                        slot.commit();
                        let got = rx.recv_with(|b| (seq_of(b), fold(b))).unwrap();
                        assert_eq!(got.0, seq);
                    } else {
                        tx.send(&src).unwrap();
                        assert_eq!(rx.recv_into(&mut buf).unwrap(), size);
                        assert_eq!(seq_of(&buf), seq);
                    }
                })
            })
        });
        tx.send(&[]).unwrap();
        let mut sink = vec![0u8; 8];
        let _ = rx.recv_into(&mut sink);
        assert!(peer.wait().unwrap().success());
    }

    // ---- iceoryx2 ----

    type IcePublisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
    type IceSubscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

    fn iceoryx_ports(
        node: &Node<ipc::Service>,
        send_to: &str,
        receive_from: &str,
        max_len: usize,
    ) -> (IcePublisher, IceSubscriber) {
        let service = |name: &str| {
            node.service_builder(&name.try_into().unwrap())
                .publish_subscribe::<[u8]>()
                .open_or_create()
                .unwrap()
        };
        let publisher = service(send_to)
            .publisher_builder()
            .initial_max_slice_len(max_len)
            .create()
            .unwrap();
        let subscriber = service(receive_from).subscriber_builder().create().unwrap();
        (publisher, subscriber)
    }

    fn iceoryx_peer(name: &str) {
        let (base, len) = name.rsplit_once(' ').unwrap();
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let (publisher, subscriber) = iceoryx_ports(
            &node,
            &format!("{base}/pong"),
            &format!("{base}/ping"),
            len.parse().unwrap(),
        );
        loop {
            let Some(sample) = subscriber.receive().unwrap() else {
                std::hint::spin_loop();
                continue;
            };
            let payload = sample.payload();
            let reply = publisher.loan_slice_uninit(payload.len()).unwrap();
            reply.write_from_slice(payload).send().unwrap();
            if payload.is_empty() {
                return;
            }
        }
    }

    fn iceoryx(g: &mut BenchmarkGroup<'_, WallTime>, size: usize, preloan: bool) {
        let base = unique(if preloan { "ice-pre" } else { "ice" });
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let (publisher, subscriber) = iceoryx_ports(
            &node,
            &format!("{base}/ping"),
            &format!("{base}/pong"),
            size,
        );
        let mut peer = spawn_peer("iceoryx2", &format!("{base} {size}"));
        // Wait for the peer's ports: a sample sent before it subscribes is lost.
        let since = Instant::now();
        while subscriber.receive().unwrap().is_none() {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the iceoryx2 peer never answered"
            );
            let probe = publisher.loan_slice_uninit(8).unwrap();
            probe.write_from_slice(&0u64.to_le_bytes()).send().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        while subscriber.receive().unwrap().is_some() {}
        let mut src = pattern(size);
        let mut seq = 0u64;
        let label = if preloan {
            "iceoryx2 pub/sub, pre-loaned sample"
        } else {
            "iceoryx2 pub/sub"
        };
        g.bench_function(BenchmarkId::new(label, size), |b| {
            let mut next = preloan.then(|| publisher.loan_slice_uninit(size).unwrap());
            b.iter_custom(|iters| {
                timed(iters, || {
                    seq += 1;
                    stamp(&mut src, seq);
                    let sample = match next.take() {
                        Some(s) => s,
                        None => publisher.loan_slice_uninit(size).unwrap(),
                    };
                    sample.write_from_slice(&src).send().unwrap();
                    if preloan {
                        next = Some(publisher.loan_slice_uninit(size).unwrap());
                    }
                    let got = loop {
                        if let Some(s) = subscriber.receive().unwrap() {
                            break (seq_of(s.payload()), fold(s.payload()));
                        }
                        std::hint::spin_loop();
                    };
                    assert_eq!(got.0, seq);
                })
            })
        });
        let stop = publisher.loan_slice_uninit(0).unwrap();
        stop.write_from_slice(&[]).send().unwrap();
        assert!(peer.wait().unwrap().success());
    }

    // ---- ipc-channel ----

    fn ipc_peer(server: &str) {
        let (to_peer_tx, to_peer_rx) = bytes_channel().unwrap();
        let (to_main_tx, to_main_rx) = bytes_channel().unwrap();
        let hello: IpcSender<(IpcBytesSender, IpcBytesReceiver)> =
            IpcSender::connect(server.to_owned()).unwrap();
        hello.send((to_peer_tx, to_main_rx)).unwrap();
        loop {
            let msg = to_peer_rx.recv().unwrap();
            to_main_tx.send(&msg).unwrap();
            if msg.is_empty() {
                return;
            }
        }
    }

    fn ipc_channel(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
        let (server, name) = IpcOneShotServer::<(IpcBytesSender, IpcBytesReceiver)>::new().unwrap();
        let mut peer = spawn_peer("ipc-channel", &name);
        let (_, (tx, rx)) = server.accept().unwrap();
        let mut src = pattern(size);
        let mut seq = 0u64;
        g.bench_function(BenchmarkId::new("ipc-channel bytes", size), |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    seq += 1;
                    stamp(&mut src, seq);
                    tx.send(&src).unwrap();
                    let got = rx.recv().unwrap();
                    assert_eq!(seq_of(&got), seq);
                })
            })
        });
        tx.send(&[]).unwrap();
        let _ = rx.recv();
        assert!(peer.wait().unwrap().success());
    }

    pub fn peer(spec: &str) {
        let (role, arg) = spec.split_once(' ').unwrap();
        match role {
            "shmkit" => shmkit_peer(arg, false),
            "shmkit-zc" => shmkit_peer(arg, true),
            "iceoryx2" => iceoryx_peer(arg),
            "ipc-channel" => ipc_peer(arg),
            other => panic!("unknown peer role {other}"),
        }
    }

    pub fn round_trip(c: &mut Criterion) {
        for size in SIZES {
            let mut g = c.benchmark_group(format!("peers_round_trip_{size}B"));
            g.throughput(Throughput::Bytes(2 * size as u64));
            shmkit(&mut g, size, false);
            shmkit(&mut g, size, true);
            iceoryx(&mut g, size, false);
            iceoryx(&mut g, size, true);
            ipc_channel(&mut g, size);
            g.finish();
        }
    }
}

fn main() {
    #[cfg(all(feature = "peers", target_os = "linux"))]
    if let Ok(spec) = std::env::var(linux::PEER) {
        return linux::peer(&spec);
    }
    let mut c = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .configure_from_args();
    #[cfg(all(feature = "peers", target_os = "linux"))]
    linux::round_trip(&mut c);
    #[cfg(not(all(feature = "peers", target_os = "linux")))]
    eprintln!("the peer benchmarks need `--features peers` (and Linux)");
    c.final_summary();
}
