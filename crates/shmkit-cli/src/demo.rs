//! `shmkit demo`: two processes talking through shmkit channels.
//!
//! This process creates a channel and starts a second process (this program again,
//! `demo --peer`), which sends it messages of growing size — a line of text up to
//! 16 MiB, far more than the 4 MiB ring, so the last ones travel in fragments —
//! then answers 20,000 pings, then sends a burst of small and of 1 MiB messages.
//! This process checks every byte and prints what arrived, the round-trip time and
//! the throughput.

use std::process::Command;
use std::time::{Duration, Instant};

use shmkit::channel::{ChannelOptions, Receiver, Sender};

use crate::commands::CmdResult;
use crate::size;

const TIMEOUT: Duration = Duration::from_secs(30);
const PINGS: u32 = 20_000;
const SMALL: u64 = 1_000_000;
const BULK: u64 = 512;
const MIB: usize = 1 << 20;
const SIZES: [usize; 6] = [100, 4096, 64 * 1024, MIB, 4 * MIB, 16 * MIB];

fn data_channel(demo_pid: &str) -> String {
    format!("demo-{demo_pid}")
}

fn ping_channel(demo_pid: &str) -> String {
    format!("demo-{demo_pid}-ping")
}

/// Message `k` of the growing series: a readable start, then a byte pattern.
fn growing(k: usize, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ k as u8).collect();
    let head = format!("message {k}: {len} bytes ");
    let n = head.len().min(len);
    m[..n].copy_from_slice(&head.as_bytes()[..n]);
    m
}

pub fn run() -> CmdResult {
    let me = std::process::id().to_string();
    let mut rx = ChannelOptions::new()
        .capacity(4 * MIB as u64)
        .max_message(64 * MIB as u64)
        .receiver(&data_channel(&me))?;
    let mut ping = ChannelOptions::new()
        .capacity(64 * 1024)
        .sender(&ping_channel(&me))?;
    let mut peer = Command::new(std::env::current_exe()?)
        .args(["demo", "--peer", &me])
        .spawn()?;
    println!(
        "[{me}] created channel {:?} ({} ring), started peer process {}",
        rx.name(),
        size::show(rx.capacity()),
        peer.id()
    );
    let result = talk(&me, &mut rx, &mut ping);
    if result.is_err() {
        let _ = peer.kill();
    }
    let status = peer.wait()?;
    result?;
    if !status.success() {
        return Err(format!("peer failed: {status}").into());
    }
    Ok(())
}

fn talk(me: &str, rx: &mut Receiver, ping: &mut Sender) -> CmdResult {
    // 1. Messages of growing size.
    let hello = rx.recv_timeout(TIMEOUT)?;
    println!("[{me}] received {:?}", String::from_utf8_lossy(&hello));
    for (k, &len) in SIZES.iter().enumerate() {
        let started = Instant::now();
        let m = rx.recv_timeout(TIMEOUT)?;
        let took = started.elapsed();
        if m != growing(k, len) {
            return Err(format!("message {k} of {len} bytes arrived damaged").into());
        }
        let readable = m.iter().take_while(|b| b.is_ascii_graphic() || **b == b' ');
        let text = String::from_utf8_lossy(&m[..readable.count()])
            .trim_end()
            .to_owned();
        println!(
            "[{me}] received {:>9}, every byte checked, in {:>9}: {text:?}",
            size::show(len as u64),
            crate::time::duration(took)
        );
    }

    // 2. Round trips of 64-byte messages.
    let mut payload = [0u8; 64];
    let started = Instant::now();
    for i in 0..PINGS {
        payload[..4].copy_from_slice(&i.to_le_bytes());
        ping.send(&payload)?;
        let back = rx.recv_timeout(TIMEOUT)?;
        if back != payload {
            return Err(format!("ping {i} came back damaged").into());
        }
    }
    let rtt = started.elapsed() / PINGS;
    println!(
        "[{me}] {PINGS} round trips of 64-byte messages: {} each",
        crate::time::duration(rtt)
    );

    // 3. Throughput: the peer sends as fast as it can.
    ping.send(b"go")?;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    for i in 0..SMALL {
        let n = rx.recv_into_timeout(&mut buf, TIMEOUT)?;
        if n != 64 || buf[..8] != i.to_le_bytes() {
            return Err(format!("small message {i} arrived damaged").into());
        }
    }
    report(me, SMALL, 64, started.elapsed());
    let started = Instant::now();
    for i in 0..BULK {
        let ok = rx.recv_with_timeout(TIMEOUT, |m| m.len() == MIB && m[..8] == i.to_le_bytes())?;
        if !ok {
            return Err(format!("1 MiB message {i} arrived damaged").into());
        }
    }
    report(me, BULK, MIB as u64, started.elapsed());
    Ok(())
}

fn report(me: &str, count: u64, len: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "[{me}] {count} messages of {}: {:.0} MB/s, {:.0} messages/s",
        size::show(len),
        (count * len) as f64 / secs / 1e6,
        count as f64 / secs
    );
}

pub fn peer(demo_pid: &str) -> CmdResult {
    let me = std::process::id();
    let mut tx = Sender::connect(&data_channel(demo_pid))?;
    let mut pings = Receiver::connect(&ping_channel(demo_pid))?;
    tx.send(format!("hello from process {me}, through a shmkit channel").as_bytes())?;
    for (k, &len) in SIZES.iter().enumerate() {
        tx.send(&growing(k, len))?;
    }
    println!(
        "[{me}] peer sent {} messages of growing size",
        SIZES.len() + 1
    );
    for _ in 0..PINGS {
        let m = pings.recv_timeout(TIMEOUT)?;
        tx.send(&m)?;
    }
    if pings.recv_timeout(TIMEOUT)? != b"go" {
        return Err("expected go".into());
    }
    let mut small = [7u8; 64];
    for i in 0..SMALL {
        small[..8].copy_from_slice(&i.to_le_bytes());
        tx.send(&small)?;
    }
    let mut big = vec![0x5a; MIB];
    for i in 0..BULK {
        big[..8].copy_from_slice(&i.to_le_bytes());
        tx.send(&big)?;
    }
    Ok(())
}
