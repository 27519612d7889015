//! A Rust peer for tests in other languages (the Python package's pytest suite):
//! sends or receives checksummed messages on a queue channel, or holds and
//! probes a mutex, and prints what it did on stdout.
//!
//! ```text
//! shmkit-peer send NAME COUNT SEED MAX   # COUNT messages of random sizes (1 in 100
//!                                        # up to MAX bytes, the rest up to 4 KiB)
//! shmkit-peer recv NAME COUNT            # receives COUNT messages
//! shmkit-peer hold NAME                  # locks mutex NAME, prints "locked", sleeps
//! shmkit-peer lock NAME                  # opens (or creates) it, prints "ready", reads
//!                                        # a line from stdin, locks it; prints
//!                                        # "owner-died" or "locked"
//! shmkit-peer counter-write BASE COUNT   # the mutex_counter example's writer
//! shmkit-peer counter-read BASE COUNT    # ... and reader (crates/shmkit-ffi/examples)
//! ```
//!
//! Both message roles end with `COUNT CRC`: the CRC-32 (zlib's) of every message's
//! length (8 bytes, little-endian) followed by its bytes, in order — what Python
//! computes with `zlib.crc32`.

use shmkit::channel::{Receiver, Sender};
use shmkit::sync::{LockError, Mutex};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmkit-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// xorshift64*: the sender's sizes and bytes, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn checksum(crc: &mut crc32fast::Hasher, msg: &[u8]) {
    crc.update(&(msg.len() as u64).to_le_bytes());
    crc.update(msg);
}

/// Segment `base` holds two little-endian u64 counters that must be equal
/// whenever mutex `base.lock` is free; the writer bumps both `count` times, the
/// reader checks them until they reach `count`.
fn counter(write: bool, base: &str, count: u64) -> shmkit::Result<()> {
    let seg = shmkit::ShmOptions::new().size(16).create_or_open(base)?;
    let lock = Mutex::<()>::create_or_open(&format!("{base}.lock"), ())?;
    let hold = || -> shmkit::Result<shmkit::sync::MutexGuard<'_, ()>> {
        match lock.lock_timeout(Duration::from_secs(10)) {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                // A writer died between the two increments: repair, then go on.
                let a = seg
                    .atomic_u64(0)?
                    .load(std::sync::atomic::Ordering::Relaxed);
                seg.atomic_u64(8)?
                    .store(a, std::sync::atomic::Ordering::Relaxed);
                g.mark_consistent();
                Ok(g)
            }
            Err(LockError::Failed(e)) => Err(e),
        }
    };
    let (a, b) = (seg.atomic_u64(0)?, seg.atomic_u64(8)?);
    use std::sync::atomic::Ordering::Relaxed;
    if write {
        for _ in 0..count {
            let _held = hold()?;
            a.store(a.load(Relaxed) + 1, Relaxed);
            b.store(b.load(Relaxed) + 1, Relaxed);
        }
        println!("writer: {count} updates");
        return Ok(());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::time::Instant::now() > deadline {
            println!("reader: no writer finished within 60 s");
            std::process::exit(1);
        }
        let (x, y) = {
            let _held = hold()?;
            (a.load(Relaxed), b.load(Relaxed))
        };
        if x != y {
            println!("reader: torn: {x} != {y}");
            std::process::exit(1);
        }
        if x >= count {
            println!("reader: saw {x} updates, never torn");
            return Ok(());
        }
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let e = |e: shmkit::Error| e.to_string();
    match args {
        ["send", name, count, seed, max] => {
            let (count, max) = (number(count)?, number(max)?);
            let mut rng = Rng(number(seed)? | 1);
            let mut tx = Sender::connect(name).map_err(e)?;
            let mut crc = crc32fast::Hasher::new();
            let mut buf = Vec::new();
            for _ in 0..count {
                let limit = if rng.next() % 100 == 0 {
                    max
                } else {
                    max.min(4096)
                };
                let len = (rng.next() % (limit + 1)) as usize;
                buf.clear();
                buf.extend((0..len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()));
                buf.truncate(len);
                tx.send_timeout(&buf, Duration::from_secs(60)).map_err(e)?;
                checksum(&mut crc, &buf);
            }
            println!("{count} {}", crc.finalize());
        }
        ["recv", name, count] => {
            let count = number(count)?;
            let mut rx = Receiver::connect(name).map_err(e)?;
            println!("ready");
            let mut crc = crc32fast::Hasher::new();
            for _ in 0..count {
                rx.recv_with_timeout(Duration::from_secs(60), |m| checksum(&mut crc, m))
                    .map_err(e)?;
            }
            println!("{count} {}", crc.finalize());
        }
        ["hold", name] => {
            let m = Mutex::<()>::open(name).map_err(e)?;
            match m.lock_timeout(Duration::from_secs(10)) {
                Ok(_guard) => {
                    println!("locked");
                    std::thread::sleep(Duration::from_secs(3600));
                }
                Err(err) => return Err(err.to_string()),
            };
        }
        ["lock", name] => {
            // Holding it open keeps the mutex (a temporary object) alive while the
            // holder is killed; the caller says when to lock.
            let m = Mutex::<()>::create_or_open(name, ()).map_err(e)?;
            println!("ready");
            std::io::stdin()
                .read_line(&mut String::new())
                .map_err(|e| e.to_string())?;
            match m.lock_timeout(Duration::from_secs(10)) {
                Ok(_) => println!("locked"),
                Err(LockError::OwnerDied(_)) => println!("owner-died"),
                Err(LockError::Failed(err)) => return Err(err.to_string()),
            };
        }
        [role @ ("counter-write" | "counter-read"), base, count] => {
            counter(role == &"counter-write", base, number(count)?).map_err(e)?;
        }
        _ => {
            return Err(format!(
                "unknown command {args:?} (see the source's header)"
            ))
        }
    }
    Ok(())
}
