//! The hot path in a loop, for counting instructions under callgrind:
//! `hot_path MODE N` sends and receives N 64-byte messages in this one process
//! (sender and receiver both attached, so no waiting is involved). The sender
//! writes a payload that changes every time; the receiver copies it out and the
//! bytes are checked, so neither side's work can be optimised away.
//!
//! `scripts/count-instructions` runs it under `valgrind --tool=callgrind` for two
//! values of N and divides the difference, which cancels the start-up cost.
//!
//! Modes: `send` (`send` + `recv_into`), `reserve` (`reserve`/`commit` +
//! `recv_with`), `send-with` (`send_with` + `recv_with`), `broadcast`
//! (`publish` + `recv_with` on one subscriber).

use shmkit::channel::{ChannelOptions, Receiver, Sender};

const MSG: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hot_path send|reserve|send-with|broadcast N";
    let mode = args.next().expect(usage);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let name = format!("hot-path-{}", std::process::id());
    let sum = match mode.as_str() {
        "send" | "reserve" | "send-with" => {
            let opts = ChannelOptions::new().capacity(64 << 10);
            let mut tx = opts.sender(&name).expect("sender");
            let mut rx = opts.receiver(&name).expect("receiver");
            queue(&mut tx, &mut rx, n, &mode)
        }
        "broadcast" => {
            let opts = ChannelOptions::new().capacity(64 << 10);
            let mut publisher = opts.publisher(&name).expect("publisher");
            let mut sub = opts.subscriber(&name).expect("subscriber");
            let mut payload = [0u8; MSG];
            let mut sum = 0u64;
            for i in 0..n {
                payload[..8].copy_from_slice(&i.to_le_bytes());
                publisher.publish(&payload).expect("publish");
                sum += sub
                    .recv_with(|b| u64::from_le_bytes(b[..8].try_into().unwrap()) + b.len() as u64)
                    .expect("receive");
            }
            sum
        }
        _ => panic!("{usage}"),
    };
    let _ = shmkit::Shm::remove(&name);
    let expected = n * (n.saturating_sub(1)) / 2 + n * MSG as u64;
    assert_eq!(sum, expected, "payloads lost or garbled");
    println!("{mode}: {n} messages of {MSG} bytes, checksum {sum}");
}

fn queue(tx: &mut Sender, rx: &mut Receiver, n: u64, mode: &str) -> u64 {
    // One loop per mode: the mode is not looked at per message.
    match mode {
        "send" => copying(tx, rx, n),
        "reserve" => reserving(tx, rx, n),
        _ => writing_in_place(tx, rx, n),
    }
}

/// What the receiver does with a message: reads its number and length.
fn checksum(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap()) + b.len() as u64
}

fn copying(tx: &mut Sender, rx: &mut Receiver, n: u64) -> u64 {
    let mut payload = [0u8; MSG];
    let mut out = [0u8; MSG];
    let mut sum = 0u64;
    for i in 0..n {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        tx.try_send(&payload).expect("send");
        let len = rx.try_recv_into(&mut out).expect("receive");
        sum += u64::from_le_bytes(out[..8].try_into().unwrap()) + len as u64;
    }
    sum
}

fn reserving(tx: &mut Sender, rx: &mut Receiver, n: u64) -> u64 {
    let mut payload = [0u8; MSG];
    let mut sum = 0u64;
    for i in 0..n {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        let mut slot = tx.try_reserve(MSG).expect("reserve");
        slot.copy_from_slice(&payload);
        slot.commit();
        sum += rx.try_recv_with(checksum).expect("receive");
    }
    sum
}

fn writing_in_place(tx: &mut Sender, rx: &mut Receiver, n: u64) -> u64 {
    let mut payload = [0u8; MSG];
    let mut sum = 0u64;
    for i in 0..n {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        tx.try_send_with(MSG, |slot| slot.copy_from_slice(&payload))
            .expect("send");
        sum += rx.try_recv_with(checksum).expect("receive");
    }
    sum
}
