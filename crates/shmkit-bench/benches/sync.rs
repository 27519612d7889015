//! Synchronisation benchmarks, in one run so that the ratios are comparable on a
//! noisy machine:
//!
//! - `uncontended`: one thread locks and unlocks (or takes and gives back) with
//!   nobody else around: shmkit's `Mutex`, shmkit's `Semaphore`, a POSIX named
//!   semaphore (`sem_wait` + `sem_post`).
//! - `ping_pong`: two real processes (this binary re-executed as the peer), not
//!   pinned, hand a turn back and forth; one iteration is one round trip. shmkit's
//!   `Semaphore` pair (default blocking mode: spin briefly, then futex; and with
//!   spinning off, so that every wait sleeps), a POSIX named semaphore pair, and a
//!   pair of pipes carrying one byte each way.
//!   No payload beyond the signal itself (the pipe's byte).

use std::time::Duration;

use criterion::Criterion;

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use criterion::measurement::WallTime;
    use criterion::{BenchmarkGroup, Criterion};
    use shmkit::sync::{Mutex, PosixSemaphore, Semaphore};
    use shmkit::Shm;

    pub const PEER: &str = "SHMKIT_BENCH_PEER";
    const LONG: Duration = Duration::from_secs(30);

    /// Runs this benchmark binary again as the peer `role` for `name`.
    fn spawn_peer(role: &str, name: &str, pipes: bool) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(PEER, format!("{role} {name}"));
        if pipes {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        cmd.spawn().unwrap()
    }

    /// The peer side: answer every ping with a pong until told to stop.
    pub fn peer(spec: &str) {
        let (role, name) = spec.split_once(' ').unwrap();
        match role {
            "shmkit" | "shmkit-sleep" => {
                let shm = Shm::open(name).unwrap();
                let mut ping = Semaphore::open_in(&shm, 0).unwrap();
                if role == "shmkit-sleep" {
                    ping.set_spins(0);
                }
                let pong = Semaphore::open_in(&shm, 64).unwrap();
                let stop = shm.atomic_u32(128).unwrap();
                loop {
                    ping.wait_timeout(LONG).unwrap();
                    if stop.load(Ordering::Acquire) != 0 {
                        return;
                    }
                    pong.release(1).unwrap();
                }
            }
            "posix" => {
                let ping = PosixSemaphore::open(&format!("/{name}-ping")).unwrap();
                let pong = PosixSemaphore::open(&format!("/{name}-pong")).unwrap();
                let shm = Shm::open(name).unwrap();
                let stop = shm.atomic_u32(0).unwrap();
                loop {
                    ping.wait_timeout(LONG).unwrap();
                    if stop.load(Ordering::Acquire) != 0 {
                        return;
                    }
                    pong.post().unwrap();
                }
            }
            "pipe" => {
                let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
                let mut b = [0u8; 1];
                while input.read_exact(&mut b).is_ok() {
                    output.write_all(&b).unwrap();
                    output.flush().unwrap();
                }
            }
            other => panic!("unknown peer role {other}"),
        }
    }

    fn unique(tag: &str) -> String {
        format!("bench-{tag}-{}", std::process::id())
    }

    pub fn uncontended(c: &mut Criterion) {
        let mut g = c.benchmark_group("uncontended");
        let name = unique("uncontended");
        let shm = Shm::create(&name, 4096).unwrap();
        let mutex = Mutex::init_in(&shm, 0, 0u64).unwrap();
        g.bench_function("shmkit Mutex lock+unlock", |b| {
            b.iter(|| {
                let mut guard = mutex.lock().unwrap();
                *guard += 1;
            })
        });
        let sem = Semaphore::init_in(&shm, 128, 1, 1).unwrap();
        g.bench_function("shmkit Semaphore wait+release", |b| {
            b.iter(|| {
                sem.wait().unwrap();
                sem.release(1).unwrap();
            })
        });
        let posix_name = format!("/{name}");
        let posix = PosixSemaphore::create(&posix_name, 1).unwrap();
        g.bench_function("POSIX sem_wait+sem_post", |b| {
            b.iter(|| {
                posix.wait().unwrap();
                posix.post().unwrap();
            })
        });
        PosixSemaphore::remove(&posix_name).unwrap();
        g.finish();
    }

    /// Times `iters` round trips with `round`.
    fn rounds(iters: u64, mut round: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            round();
        }
        start.elapsed()
    }

    /// shmkit's semaphore pair; `spins` overrides the spin count on this side
    /// (the peer's role says the same for its side).
    fn shmkit_ping_pong(
        g: &mut BenchmarkGroup<'_, WallTime>,
        label: &str,
        role: &str,
        spins: Option<u32>,
    ) {
        let name = unique(role);
        let shm = Shm::create(&name, 4096).unwrap();
        let ping = Semaphore::init_in(&shm, 0, 0, 1).unwrap();
        let mut pong = Semaphore::init_in(&shm, 64, 0, 1).unwrap();
        if let Some(n) = spins {
            pong.set_spins(n);
        }
        let stop: &AtomicU32 = shm.atomic_u32(128).unwrap();
        let mut peer = spawn_peer(role, &name, false);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                rounds(iters, || {
                    ping.release(1).unwrap();
                    pong.wait_timeout(LONG).unwrap();
                })
            })
        });
        stop.store(1, Ordering::Release);
        ping.release(1).unwrap();
        assert!(peer.wait().unwrap().success());
    }

    pub fn ping_pong(c: &mut Criterion) {
        let mut g = c.benchmark_group("ping_pong (2 processes, round trip)");

        shmkit_ping_pong(&mut g, "shmkit Semaphore", "shmkit", None);
        // The same with spinning off on both sides: every wait sleeps in the
        // kernel, as POSIX semaphores do; this measures the futex wake path.
        shmkit_ping_pong(
            &mut g,
            "shmkit Semaphore, no spinning",
            "shmkit-sleep",
            Some(0),
        );

        let name = unique("pp-posix");
        let flag = Shm::create(&name, 4096).unwrap();
        let (pn, qn) = (format!("/{name}-ping"), format!("/{name}-pong"));
        let ping = PosixSemaphore::create(&pn, 0).unwrap();
        let pong = PosixSemaphore::create(&qn, 0).unwrap();
        let mut peer = spawn_peer("posix", &name, false);
        g.bench_function("POSIX named semaphore", |b| {
            b.iter_custom(|iters| {
                rounds(iters, || {
                    ping.post().unwrap();
                    pong.wait().unwrap();
                })
            })
        });
        flag.atomic_u32(0).unwrap().store(1, Ordering::Release);
        ping.post().unwrap();
        assert!(peer.wait().unwrap().success());
        PosixSemaphore::remove(&pn).unwrap();
        PosixSemaphore::remove(&qn).unwrap();

        let mut peer = spawn_peer("pipe", "-", true);
        let mut to = peer.stdin.take().unwrap();
        let mut from = peer.stdout.take().unwrap();
        g.bench_function("pipe (1 byte each way)", |b| {
            b.iter_custom(|iters| {
                let mut byte = [7u8; 1];
                rounds(iters, || {
                    to.write_all(&byte).unwrap();
                    from.read_exact(&mut byte).unwrap();
                })
            })
        });
        drop(to);
        assert!(peer.wait().unwrap().success());
        g.finish();
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
        unix::uncontended(&mut c);
        unix::ping_pong(&mut c);
    }
    c.final_summary();
}
