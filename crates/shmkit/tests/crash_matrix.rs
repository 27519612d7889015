//! The crash matrix behind docs/RELIABILITY.md: for each primitive and channel
//! kind, a participant is SIGKILLed at a random point of its work (creating,
//! holding a lock, blocked in a wait, writing a message, reading one), again and
//! again, and the survivor must go on, or get a typed error, within a bounded
//! time, with nothing delivered twice (beyond the one message a killed receiver
//! had in hand), torn or out of order.
//!
//! `cargo test --test crash_matrix` runs 10 kills per row; with
//! `SHMKIT_CRASH_ITERATIONS=N` it runs N, and with `SHMKIT_CRASH_REPORT=FILE` it
//! writes the table it measured as Markdown (how docs/RELIABILITY.md was made).
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{hear, role, say, spawn, TestName};
use shmkit::channel::{ChannelOptions, Receiver};
use shmkit::sync::{LockError, Mutex, Semaphore};
use shmkit::{Error, ShmOptions};

const ENTRY: &str = "child_entry";
/// The longest a survivor may take to go on or be told.
const BOUND: Duration = Duration::from_secs(5);

fn iterations() -> u32 {
    std::env::var("SHMKIT_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Message `i` of the channel rows: its index, then bytes derived from it;
/// every fourth one longer than a record (sent in two fragments) but within
/// half the 64 KiB ring, so that a killed receiver loses none (see LAYOUT.md).
/// (40,000 bytes, as here before, take 40,032 bytes of records: more than
/// half the ring, not held, and lost when a kill landed inside one.)
fn message(i: u64) -> Vec<u8> {
    let len = if i % 4 == 0 {
        24_000
    } else {
        8 + (i % 200) as usize
    };
    let mut m = vec![i as u8; len];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

/// The ring of the size-mix row: 1 MiB, as in the report that found messages
/// of 180 KB to 393 KB lost.
const MIX_RING: u64 = 1 << 20;

/// Length of message `i` of the size-mix row: a quarter under 32 B, a third up
/// to 4 KiB, the rest up to 256 KiB (one record at most), then 393 KiB (two
/// records, held), 1 MiB and 3 MiB (longer than half the ring: not held).
fn mix_len(i: u64) -> usize {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x >> 29;
    let r = (x % 1000) as usize;
    match x % 24 {
        0..=5 => 8 + r % 24,
        6..=13 => 32 + r * 4,
        14..=19 => 4096 + r * 258,
        20 | 21 => 393 << 10,
        22 => 1 << 20,
        _ => 3 << 20,
    }
}

/// Message `i` of the size-mix row.
fn mix_message(i: u64) -> Vec<u8> {
    let mut m = vec![(i as u8) ^ 0x5a; mix_len(i)];
    let n = m.len();
    m[n - 1] = i as u8;
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn check_mix(m: &[u8]) -> u64 {
    let i = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
    assert!(m == mix_message(i).as_slice(), "message {i} torn");
    i
}

/// Whether message `i` of the size-mix row may be lost to a receiver's death:
/// only if its records take more than half the ring (LAYOUT.md).
fn mix_may_be_lost(i: u64) -> bool {
    mix_len(i) as u64 + 64 > MIX_RING / 2
}

fn check_message(m: &[u8]) -> u64 {
    let i = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
    assert_eq!(m, message(i).as_slice(), "message {i} torn");
    i
}

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let name = args[1].as_str();
    match args[0].as_str() {
        "creator" => {
            say("go");
            let _ = ShmOptions::new()
                .size(1 << 20)
                .create_or_open_with(name, |bytes| {
                    // A slow initialiser: the kill often lands inside it.
                    for chunk in bytes.chunks_mut(4096) {
                        chunk.fill(1);
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    Ok::<(), std::convert::Infallible>(())
                });
            hear();
        }
        "lock-holder" => {
            let m = Mutex::<[u64; 2]>::open(name).unwrap();
            say("go");
            loop {
                let mut g = match m.lock() {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(mut g)) => {
                        g[1] = g[0];
                        g.mark_consistent();
                        g
                    }
                    Err(LockError::Failed(e)) => panic!("{e}"),
                };
                g[0] += 1; // the pair is unequal only while the lock is held
                std::thread::sleep(Duration::from_micros(200));
                g[1] += 1;
            }
        }
        "semaphore-waiter" => {
            let s = Semaphore::open(name).unwrap();
            say("go");
            loop {
                s.wait().unwrap();
                s.release(1).unwrap();
            }
        }
        "sender" => {
            let mut tx = ChannelOptions::new()
                .capacity(64 * 1024)
                .sender(name)
                .unwrap();
            let first: u64 = args[2].parse().unwrap();
            say("go");
            for i in first.. {
                tx.send(&message(i)).unwrap();
            }
        }
        "receiver" => {
            let mut rx = ChannelOptions::new()
                .capacity(64 * 1024)
                .receiver(name)
                .unwrap();
            say("go");
            loop {
                rx.recv_with(|m| say(&format!("got {}", check_message(m))))
                    .unwrap();
            }
        }
        "mix-receiver" => {
            let mut rx = ChannelOptions::new()
                .capacity(MIX_RING)
                .max_message(4 << 20)
                .receiver(name)
                .unwrap();
            say("go");
            loop {
                // Processed inside the closure: a message is the receiver's
                // only once the closure returns.
                match rx.recv_with(|m| say(&format!("got {}", check_mix(m)))) {
                    Ok(()) => {}
                    Err(e) if e.is_lost() => say(&format!("lost {e}")),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        "publisher" => {
            let mut p = ChannelOptions::new()
                .capacity(64 * 1024)
                .publisher(name)
                .unwrap();
            let first: u64 = args[2].parse().unwrap();
            say("go");
            for i in first.. {
                let mut m = message(i);
                m.truncate(8 + (i % 200) as usize); // a record at most
                p.publish(&m).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Outcomes of one row: what the survivor saw, how often, and the longest it
/// took to see it.
#[derive(Default)]
struct Row {
    outcomes: BTreeMap<String, u32>,
    slowest: Duration,
}

impl Row {
    fn saw(&mut self, outcome: impl Into<String>, took: Duration) {
        assert!(took < BOUND, "{} took {took:?}", outcome.into());
        *self.outcomes.entry(outcome.into()).or_default() += 1;
        self.slowest = self.slowest.max(took);
    }
}

/// A random delay from `0` to `max_micros`, to kill at a random point.
fn jitter(x: &mut u64, max_micros: u64) -> Duration {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    Duration::from_micros(*x % max_micros)
}

fn segment_creator_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    for _ in 0..n {
        let name = TestName::new("cm-create");
        let mut child = spawn(ENTRY, "creator", &[name.as_str()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 3000));
        child.kill();
        let started = Instant::now();
        let outcome = match ShmOptions::new()
            .size(1 << 20)
            .init_timeout(BOUND)
            .create_or_open(name.as_str())
        {
            Ok(s) if s.created() => {
                "created (killed before creating, or its segment was reclaimed)"
            }
            Ok(s) => {
                assert!(s.read_vec(0, 1 << 20).unwrap().iter().all(|&b| b == 1));
                "opened, whole (the creator had finished)"
            }
            Err(Error::CreatorDied { .. }) => "CreatorDied",
            Err(e) => panic!("{e}"),
        };
        row.saw(outcome, started.elapsed());
    }
    row
}

fn mutex_holder_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-mutex");
    let m = Mutex::create(name.as_str(), [0u64; 2]).unwrap();
    for _ in 0..n {
        let mut child = spawn(ENTRY, "lock-holder", &[name.as_str()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 5000));
        child.kill();
        let started = Instant::now();
        match m.lock_timeout(BOUND) {
            Ok(g) => {
                assert_eq!(g[0], g[1], "consistent data reported as such");
                row.saw("lock taken, data consistent", started.elapsed());
            }
            Err(LockError::OwnerDied(mut g)) => {
                g[1] = g[0];
                g.mark_consistent();
                row.saw("OwnerDied (holder killed mid-update)", started.elapsed());
            }
            Err(LockError::Failed(e)) => panic!("{e}"),
        }
    }
    row
}

fn semaphore_waiter_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-sem");
    let s = Semaphore::create(name.as_str(), 1, 1).unwrap();
    for _ in 0..n {
        let mut child = spawn(ENTRY, "semaphore-waiter", &[name.as_str()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 3000));
        child.kill();
        let started = Instant::now();
        // The killed waiter either held the unit (it died between wait and
        // release: the unit is gone, as with any semaphore) or not.
        match s.wait_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                s.release(1).unwrap();
                row.saw("unit available", started.elapsed());
            }
            Err(e) if e.is_timeout() => {
                s.release(1).unwrap();
                row.saw(
                    "unit held by the dead waiter (released again)",
                    started.elapsed(),
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    row
}

fn sender_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-sender");
    let mut rx = ChannelOptions::new()
        .capacity(64 * 1024)
        .receiver(name.as_str())
        .unwrap();
    let mut next = 0u64;
    for _ in 0..n {
        let mut child = spawn(ENTRY, "sender", &[name.as_str(), &next.to_string()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 5000));
        child.kill();
        let started = Instant::now();
        loop {
            match rx.recv_timeout(BOUND) {
                Ok(m) => {
                    assert_eq!(check_message(&m), next, "out of order or duplicated");
                    next += 1;
                }
                Err(e) if e.is_disconnected() => break,
                Err(e) => panic!("{e}"),
            }
        }
        row.saw(
            "every whole message in order, then Disconnected; no part of the one cut short",
            started.elapsed(),
        );
    }
    row
}

fn receiver_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-receiver");
    let mut tx = ChannelOptions::new()
        .capacity(64 * 1024)
        .sender(name.as_str())
        .unwrap();
    let mut sent = 0u64;
    let mut seen: Vec<u64> = Vec::new();
    for _ in 0..n {
        // Fill the ring, fragmented messages included. One that cannot be
        // finished (no room, no live receiver) is not delivered at all: it is
        // sent again, whole, next time.
        while tx
            .send_timeout(&message(sent), Duration::from_millis(1))
            .is_ok()
        {
            sent += 1;
        }
        let mut child = spawn(ENTRY, "receiver", &[name.as_str()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 3000));
        child.kill();
        seen.extend(
            child
                .rest_lines()
                .iter()
                .filter_map(|l| l.strip_prefix("got ")?.parse::<u64>().ok()),
        );
    }
    // A last receiver drains the rest.
    let started = Instant::now();
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    drop(tx);
    loop {
        match rx.recv_timeout(BOUND) {
            Ok(m) => seen.push(check_message(&m)),
            Err(e) if e.is_disconnected() => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut expected = 0;
    let mut repeats = 0;
    for (k, &i) in seen.iter().enumerate() {
        if k > 0 && i == seen[k - 1] {
            repeats += 1;
            continue;
        }
        assert_eq!(i, expected, "message {expected} lost");
        expected += 1;
    }
    assert_eq!(expected, sent, "messages lost at the end");
    row.saw(
        format!(
            "none of {sent} lost or out of order; {repeats} delivered twice (in hand at a kill)"
        ),
        started.elapsed(),
    );
    row
}

/// Receivers killed one after the other while one sender streams messages of
/// 8 B to 3 MiB through a 1 MiB ring: none that could be held is lost, and
/// every one lost is reported to the next receiver.
fn receiver_killed_size_mix(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-mix");
    let opts = ChannelOptions::new()
        .capacity(MIX_RING)
        .max_message(4 << 20);
    let mut tx = opts.sender(name.as_str()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A message cut short by a dead receiver is sent again, whole.
                match tx.send_timeout(&mix_message(i), Duration::from_millis(20)) {
                    Ok(()) => i += 1,
                    Err(e) if e.is_disconnected() || e.is_timeout() => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            i
        })
    };
    let mut seen: Vec<u64> = Vec::new();
    let mut reported = 0u64;
    let take = |lines: Vec<String>, seen: &mut Vec<u64>, reported: &mut u64| {
        for l in lines {
            if let Some(i) = l.strip_prefix("got ") {
                seen.push(i.parse().unwrap());
            } else if l.starts_with("lost ") {
                *reported += 1;
            }
        }
    };
    for _ in 0..n {
        let mut child = spawn(ENTRY, "mix-receiver", &[name.as_str()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 20_000));
        child.kill();
        take(child.rest_lines(), &mut seen, &mut reported);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // A last receiver drains the rest.
    let started = Instant::now();
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let sent = sender.join().unwrap();
    loop {
        match rx.recv_timeout(BOUND) {
            Ok(m) => seen.push(check_mix(&m)),
            Err(e) if e.is_lost() => reported += 1,
            Err(e) if e.is_disconnected() => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut expected = 0;
    let mut missing = Vec::new();
    for (k, &i) in seen.iter().enumerate() {
        if k > 0 && i == seen[k - 1] {
            continue; // in hand at a kill: delivered again
        }
        assert!(
            i >= expected,
            "message {i} out of order (expected {expected})"
        );
        for gap in expected..i {
            assert!(
                mix_may_be_lost(gap),
                "message {gap} of {} bytes lost (no more than half the ring)",
                mix_len(gap)
            );
            missing.push(gap);
        }
        expected = i + 1;
    }
    assert!(expected <= sent, "message {expected} never sent arrived");
    // The last messages too: only long ones may be missing (a killed receiver
    // was reading one when the last receiver took over).
    for gap in expected..sent {
        assert!(
            mix_may_be_lost(gap),
            "message {gap} of {} bytes lost at the end (no more than half the ring)",
            mix_len(gap)
        );
        missing.push(gap);
    }
    assert!(
        missing.len() as u64 <= reported,
        "{} long messages lost ({missing:?}), {reported} reported",
        missing.len()
    );
    row.saw(
        format!(
            "{sent} sent: none that could be held lost; {} longer than half the ring lost, each reported",
            missing.len()
        ),
        started.elapsed(),
    );
    row
}

fn publisher_killed(n: u32, x: &mut u64) -> Row {
    let mut row = Row::default();
    let name = TestName::new("cm-publisher");
    let mut next = 0u64;
    for _ in 0..n {
        let mut sub = ChannelOptions::new()
            .capacity(64 * 1024)
            .subscriber(name.as_str())
            .unwrap();
        let mut child = spawn(ENTRY, "publisher", &[name.as_str(), &next.to_string()]);
        assert_eq!(child.expect_line(), "go");
        std::thread::sleep(jitter(x, 3000));
        child.kill();
        let started = Instant::now();
        let mut lagged = false;
        loop {
            match sub.recv_timeout(BOUND) {
                Ok(m) => {
                    let i = u64::from_le_bytes(m[..8].try_into().unwrap());
                    assert!(i >= next, "out of order");
                    assert!(m[8..].iter().all(|&b| b == i as u8), "torn");
                    next = i + 1;
                }
                Err(Error::Lagged { missed, .. }) => {
                    next += missed;
                    lagged = true;
                }
                Err(e) if e.is_disconnected() => break,
                Err(e) => panic!("{e}"),
            }
        }
        row.saw(
            if lagged {
                "whole messages in order (lapped: Lagged told how many), then Disconnected"
            } else {
                "whole messages in order, then Disconnected"
            },
            started.elapsed(),
        );
    }
    row
}

#[test]
fn crash_matrix() {
    let n = iterations();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let rows: Vec<(&str, &str, Row)> = vec![
        (
            "segment",
            "creator, while initialising",
            segment_creator_killed(n, &mut x),
        ),
        (
            "mutex",
            "holder, in the middle of an update",
            mutex_holder_killed(n, &mut x),
        ),
        (
            "semaphore",
            "a waiter, blocked or holding a unit",
            semaphore_waiter_killed(n, &mut x),
        ),
        (
            "queue",
            "sender, in the middle of writing a message",
            sender_killed(n, &mut x),
        ),
        (
            "queue",
            "receiver, in the middle of reading one",
            receiver_killed(n, &mut x),
        ),
        (
            "queue, 8 B to 3 MiB in a 1 MiB ring",
            "receiver, in the middle of reading one",
            receiver_killed_size_mix(n, &mut x),
        ),
        (
            "broadcast",
            "publisher, in the middle of publishing",
            publisher_killed(n, &mut x),
        ),
    ];
    let mut table = String::from(
        "| object | participant killed | kills | what the survivor saw (times) | slowest |\n|---|---|---:|---|---:|\n",
    );
    for (object, who, row) in &rows {
        let seen: Vec<String> = row
            .outcomes
            .iter()
            .map(|(what, times)| format!("{what} ({times})"))
            .collect();
        table += &format!(
            "| {object} | {who} | {n} | {} | {} ms |\n",
            seen.join("; "),
            row.slowest.as_millis()
        );
    }
    println!("{table}");
    if let Ok(path) = std::env::var("SHMKIT_CRASH_REPORT") {
        std::fs::write(path, &table).unwrap();
    }
}
