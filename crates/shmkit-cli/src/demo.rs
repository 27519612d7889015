//! `shmkit demo`: the classic two programs sharing one piece of memory.
//!
//! Layout of the demo segment: a 32-bit "message ready" flag at offset 0, the
//! message length at 4, the message from 8. The peer writes the message and its
//! length, then sets the flag with release ordering; this process waits for the
//! flag (acquire) and prints the message. Later versions replace the polling with
//! a semaphore handshake and channels.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmkit::{Shm, ShmOptions};

use crate::commands::CmdResult;

const SIZE: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run() -> CmdResult {
    let name = format!("demo-{}", std::process::id());
    let shm = ShmOptions::new().size(SIZE).create(&name)?;
    println!(
        "[{}] created segment {name:?} ({SIZE} bytes, {})",
        std::process::id(),
        shm.os_name()
    );
    let mut peer = Command::new(std::env::current_exe()?)
        .args(["demo", "--peer", &name])
        .spawn()?;
    println!(
        "[{}] started peer process {}",
        std::process::id(),
        peer.id()
    );
    let ready = shm.atomic_u32(0)?;
    let start = Instant::now();
    while ready.load(Ordering::Acquire) == 0 {
        if start.elapsed() > TIMEOUT {
            let _ = peer.kill();
            return Err(format!("{name}: the peer wrote nothing within {TIMEOUT:?}").into());
        }
        if let Some(status) = peer.try_wait()? {
            if ready.load(Ordering::Acquire) == 0 {
                return Err(format!("peer exited ({status}) without writing").into());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut len = [0u8; 4];
    shm.read_at(4, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    let message = shm.read_vec(8, len)?;
    println!(
        "[{}] received {len} bytes after {:?}: {}",
        std::process::id(),
        start.elapsed(),
        String::from_utf8_lossy(&message)
    );
    let status = peer.wait()?;
    if !status.success() {
        return Err(format!("peer failed: {status}").into());
    }
    Ok(())
}

pub fn peer(name: &str) -> CmdResult {
    let shm = Shm::open(name)?;
    let message = format!(
        "hello from process {}, written straight into shared memory",
        std::process::id()
    );
    shm.write_at(8, message.as_bytes())?;
    shm.write_at(4, &(message.len() as u32).to_le_bytes())?;
    shm.atomic_u32(0)?.store(1, Ordering::Release);
    println!(
        "[{}] peer wrote {} bytes",
        std::process::id(),
        message.len()
    );
    Ok(())
}
