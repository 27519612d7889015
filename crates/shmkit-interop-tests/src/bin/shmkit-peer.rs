//! A Rust peer for tests in other languages (the Python package's pytest suite):
//! sends or receives checksummed messages on a queue channel, or holds and
//! probes a mutex, and prints what it did on stdout.
//!
//! ```text
//! shmkit-peer send NAME COUNT SEED MAX   # COUNT messages of random sizes (1 in 100
//!                                        # up to MAX bytes, the rest up to 4 KiB)
//! shmkit-peer recv NAME COUNT            # receives COUNT messages
//! shmkit-peer hold NAME                  # locks mutex NAME, prints "locked", sleeps
//! shmkit-peer lock NAME                  # locks it; prints "owner-died" or "locked"
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
            let m = Mutex::<()>::open(name).map_err(e)?;
            match m.lock_timeout(Duration::from_secs(10)) {
                Ok(_) => println!("locked"),
                Err(LockError::OwnerDied(_)) => println!("owner-died"),
                Err(LockError::Failed(err)) => return Err(err.to_string()),
            };
        }
        _ => {
            return Err(format!(
                "unknown command {args:?} (see the source's header)"
            ))
        }
    }
    Ok(())
}
