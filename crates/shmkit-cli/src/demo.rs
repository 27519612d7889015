//! `shmkit demo`: the classic two programs sharing one piece of memory,
//! synchronised by a pair of semaphores instead of polling.
//!
//! Layout of the demo segment: semaphore "to peer" at offset 0 and "to demo" at 64
//! (both count 0, maximum 1), the message length (u32) at 128, the message from 136.
//! The peer writes its greeting and releases "to demo"; this process waits on it
//! and prints the message. Then the two bounce the semaphores back and forth and
//! this process reports the round-trip time.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmkit::sync::Semaphore;
use shmkit::{Shm, ShmOptions};

use crate::commands::CmdResult;

const SIZE: u64 = 64 * 1024;
const TO_PEER: u64 = 0;
const TO_DEMO: u64 = 64;
const LEN_AT: u64 = 128;
const MESSAGE_AT: u64 = 136;
const TIMEOUT: Duration = Duration::from_secs(10);
const ROUNDS: u32 = 20_000;

pub fn run() -> CmdResult {
    let me = std::process::id();
    let name = format!("demo-{me}");
    let shm = ShmOptions::new().size(SIZE).create(&name)?;
    let to_peer = Semaphore::init_in(&shm, TO_PEER, 0, 1)?;
    let to_demo = Semaphore::init_in(&shm, TO_DEMO, 0, 1)?;
    println!(
        "[{me}] created segment {name:?} ({SIZE} bytes, {}) with two semaphores",
        shm.os_name()
    );
    let started = Instant::now();
    let mut peer = Command::new(std::env::current_exe()?)
        .args(["demo", "--peer", &name])
        .spawn()?;
    println!("[{me}] started peer process {}", peer.id());

    wait_for_peer(&to_demo, &mut peer)?;
    let mut len = [0u8; 4];
    shm.read_at(LEN_AT, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    let message = shm.read_vec(MESSAGE_AT, len)?;
    println!(
        "[{me}] received {len} bytes {:?} after the spawn: {}",
        started.elapsed(),
        String::from_utf8_lossy(&message)
    );

    let bounce = Instant::now();
    for _ in 0..ROUNDS {
        to_peer.release(1)?;
        wait_for_peer(&to_demo, &mut peer)?;
    }
    let per_round = bounce.elapsed() / ROUNDS;
    println!("[{me}] {ROUNDS} semaphore round trips with the peer: {per_round:?} each");

    let status = peer.wait()?;
    if !status.success() {
        return Err(format!("peer failed: {status}").into());
    }
    Ok(())
}

/// Waits on `sem`, but notices a peer that exited instead of waiting forever.
fn wait_for_peer(sem: &Semaphore, peer: &mut Child) -> CmdResult {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match sem.wait_timeout(Duration::from_millis(100)) {
            Err(e) if e.is_timeout() => {}
            other => return Ok(other?),
        }
        if let Some(status) = peer.try_wait()? {
            return Err(format!("peer exited ({status}) without answering").into());
        }
        if Instant::now() > deadline {
            let _ = peer.kill();
            return Err(format!("{}: no answer within {TIMEOUT:?}", sem.name()).into());
        }
    }
}

pub fn peer(name: &str) -> CmdResult {
    let me = std::process::id();
    let shm = Shm::open(name)?;
    let to_peer = Semaphore::open_in(&shm, TO_PEER)?;
    let to_demo = Semaphore::open_in(&shm, TO_DEMO)?;
    let message = format!("hello from process {me}, written straight into shared memory");
    shm.write_at(MESSAGE_AT, message.as_bytes())?;
    shm.write_at(LEN_AT, &(message.len() as u32).to_le_bytes())?;
    to_demo.release(1)?;
    println!("[{me}] peer wrote {} bytes", message.len());
    for _ in 0..ROUNDS {
        to_peer.wait_timeout(TIMEOUT)?;
        to_demo.release(1)?;
    }
    Ok(())
}
