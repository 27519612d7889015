//! What 1,000 idle `recv_async` futures cost: CPU time of a process whose
//! current-thread tokio runtime awaits 1,000 channels that another process
//! holds open as sender and sends nothing on, over 10 seconds (issue 24's target:
//! none). Then the sender sends one message on every channel, to show that the
//! futures were really waiting (each must wake and complete).
//!
//! ```sh
//! cargo run --release -p shmkit-cli --example idle_async            # 1000 channels, 10 s
//! cargo run --release -p shmkit-cli --example idle_async -- 200 3   # 200 channels, 3 s
//! ```
//!
//! Prints the process's CPU time over the idle period (getrusage), each
//! thread's (`/proc/self/task/*/schedstat`: which one burns, if any), and how
//! long the 1,000 wake-ups took. Linux only (the per-thread figures).

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    idle::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("idle_async reads Linux's per-thread CPU times: Linux only");
}

#[cfg(target_os = "linux")]
mod idle {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use shmkit::channel::ChannelOptions;

    /// Each channel's ring: the smallest that holds the one message sent.
    const RING: u64 = 4096;
    /// The longest the futures may take to complete once the messages are sent.
    const BOUND: Duration = Duration::from_secs(30);

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("--sender") {
            return sender(&args[1], args[2].parse()?);
        }
        let count: usize = args.first().map_or(Ok(1000), |s| s.parse())?;
        let idle = Duration::from_secs_f64(args.get(1).map_or(Ok(10.0), |s| s.parse())?);
        let base = format!("idle-async-{}", std::process::id());

        let opts = ChannelOptions::new().capacity(RING);
        let mut receivers = Vec::with_capacity(count);
        for k in 0..count {
            receivers.push(opts.receiver(&format!("{base}-{k}"))?);
        }
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--sender", &base, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut to_child = child.stdin.take().expect("piped");
        let mut from_child = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        from_child.read_line(&mut line)?;
        if line.trim() != "ready" {
            child.kill()?;
            return Err(format!("the sender said {line:?}, not ready").into());
        }
        let child_pid = child.id();

        // The measuring thread: waits for the futures to settle, measures the idle
        // period, then has the sender send and waits (bounded) for the runtime to
        // report every future done.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Duration>();
        let measurer = std::thread::Builder::new()
            .name("measuring".into())
            .spawn(move || -> Result<(), String> {
            std::thread::sleep(Duration::from_secs(1));
            let (cpu0, threads0, child0) = (process_cpu(), thread_cpu(), pid_cpu(child_pid));
            let started = Instant::now();
            std::thread::sleep(idle);
            let (cpu1, threads1, child1) = (process_cpu(), thread_cpu(), pid_cpu(child_pid));
            let took = started.elapsed();
            println!(
                "{count} idle recv_async futures on a current-thread tokio runtime, over {:.1} s:",
                took.as_secs_f64()
            );
            // The measuring thread's own reads of /proc are not the futures' cost.
            let measuring: u64 = threads1
                .iter()
                .filter(|(_, name, _)| name == "measuring")
                .map(|(tid, _, ns)| {
                    ns - threads0
                        .iter()
                        .find(|(t, _, _)| t == tid)
                        .map_or(0, |(_, _, n)| *n)
                })
                .sum();
            let total = (cpu1 - cpu0).as_nanos() as u64;
            println!(
                "  this process: {:.3} ms CPU (user + system, getrusage); {:.3} ms without the measuring thread",
                total as f64 / 1e6,
                total.saturating_sub(measuring) as f64 / 1e6
            );
            for (tid, name, ns) in &threads1 {
                let before = threads0
                    .iter()
                    .find(|(t, _, _)| t == tid)
                    .map_or(0, |(_, _, n)| *n);
                println!(
                    "    thread {tid} {name:<16} {:.3} ms",
                    ns.saturating_sub(before) as f64 / 1e6
                );
            }
            if let (Some(a), Some(b)) = (child0, child1) {
                println!(
                    "  the sender process (idle too): {:.3} ms",
                    (b - a) as f64 / 1e6
                );
            }
            // Now every future must wake.
            let sent = Instant::now();
            writeln!(to_child, "send").map_err(|e| e.to_string())?;
            match done_rx.recv_timeout(BOUND) {
                Ok(_) => println!(
                    "then one message on each channel: all {count} futures completed {:.2} ms after the send began",
                    sent.elapsed().as_secs_f64() * 1e3
                ),
                Err(_) => {
                    eprintln!("the futures did not all complete within {BOUND:?}");
                    std::process::exit(1);
                }
            }
            drop(to_child);
            Ok(())
        })?;

        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let result: Result<(), shmkit::Error> = rt.block_on(async move {
            let tasks: Vec<_> = receivers
                .into_iter()
                .map(|mut rx| tokio::spawn(async move { rx.recv_async().await.map(|m| m.len()) }))
                .collect();
            let started = Instant::now();
            for t in tasks {
                t.await.expect("a receive task panicked")?;
            }
            let _ = done_tx.send(started.elapsed());
            Ok(())
        });
        measurer.join().expect("the measuring thread panicked")?;
        let status = child.wait()?;
        result?;
        if !status.success() {
            return Err(format!("the sender exited with {status}").into());
        }
        Ok(())
    }

    /// The other process: holds a sender on every channel, says "ready", sends one
    /// message on each when told, and leaves when its input ends.
    fn sender(base: &str, count: usize) -> Result<(), Box<dyn std::error::Error>> {
        let opts = ChannelOptions::new().capacity(RING);
        let mut senders = Vec::with_capacity(count);
        for k in 0..count {
            senders.push(opts.sender(&format!("{base}-{k}"))?);
        }
        println!("ready");
        std::io::stdout().flush()?;
        for line in std::io::stdin().lock().lines() {
            if line? == "send" {
                for tx in &mut senders {
                    tx.send(b"wake up")?;
                }
            }
        }
        Ok(())
    }

    /// CPU time of this process so far (all threads, user + system).
    fn process_cpu() -> Duration {
        // SAFETY: a zeroed rusage is a valid value for getrusage to fill in.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_SELF with a valid pointer to write into.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    /// Every thread of this process: id, name and CPU time in ns (schedstat's
    /// first field; 0 where unreadable).
    fn thread_cpu() -> Vec<(u32, String, u64)> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let path = entry.path();
            let name = std::fs::read_to_string(path.join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            out.push((tid, name, ns));
        }
        out.sort();
        out
    }

    /// CPU time of process `pid` in ns (schedstat of the whole process).
    fn pid_cpu(pid: u32) -> Option<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let s = std::fs::read_to_string(entry.path().join("schedstat")).ok()?;
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }
}
