//! Channels between real processes: volume, many senders, broadcast with a slow
//! subscriber, request/response, peers killed with SIGKILL, and a writer that
//! scribbles over the ring's control words while a reader runs.

mod common;

use std::time::{Duration, Instant};

use common::{hear, role, say, spawn, ChildProc, TestName};
use shmkit::channel::{inspect, ChannelOptions, Receiver, RpcClient, RpcServer, Sender};
use shmkit::Error;

const ENTRY: &str = "child_entry";
const LONG: Duration = Duration::from_secs(120);

/// Content of small message `i`: its index, then bytes derived from it; 1 to 64
/// bytes long.
fn small(i: u64) -> Vec<u8> {
    let len = (i % 64 + 1) as usize;
    let mut m: Vec<u8> = (0..len)
        .map(|k| (i as u8).wrapping_mul(31) ^ k as u8)
        .collect();
    let idx = i.to_le_bytes();
    let n = len.min(8);
    m[..n].copy_from_slice(&idx[..n]);
    m
}

/// A checksum that sees every byte (8 at a time) and their order.
fn checksum(acc: u64, bytes: &[u8]) -> u64 {
    let mut acc = acc;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        acc = acc.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap());
    }
    for &b in chunks.remainder() {
        acc = acc.rotate_left(5) ^ b as u64;
    }
    acc.wrapping_add(bytes.len() as u64)
}

/// Large message `i`: a fixed pattern with the index stamped at both ends.
fn large(pattern: &[u8], i: u64) -> Vec<u8> {
    let mut m = pattern.to_vec();
    let n = m.len();
    m[..8].copy_from_slice(&i.to_le_bytes());
    m[n - 8..].copy_from_slice(&i.to_le_bytes());
    m
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u64).wrapping_mul(0x9e37_79b9) as u8 ^ (k >> 12) as u8)
        .collect()
}

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let a = |i: usize| args[i].as_str();
    let num = |i: usize| a(i).parse::<u64>().unwrap();
    match a(0) {
        "small-sender" => {
            let mut tx = Sender::connect(a(1)).unwrap();
            let mut sum = 0;
            for i in 0..num(2) {
                let m = small(i);
                sum = checksum(sum, &m);
                tx.send(&m).unwrap();
            }
            say(&format!("sum {sum}"));
        }
        "large-sender" => {
            let mut tx = Sender::connect(a(1)).unwrap();
            let pattern = pattern(num(3) as usize);
            let mut sum = 0;
            for i in 0..num(2) {
                let m = large(&pattern, i);
                sum = checksum(sum, &m);
                tx.send(&m).unwrap();
            }
            say(&format!("sum {sum}"));
        }
        "mpsc-sender" => {
            let opts = ChannelOptions::new().max_senders(4);
            let mut tx = opts.sender(a(1)).unwrap();
            let id = num(2) as u8;
            say("ready");
            hear();
            for i in 0..num(3) as u32 {
                // Every tenth message is longer than a record: fragments of
                // different senders must not interleave.
                let len = if i % 10 == 0 {
                    20_000
                } else {
                    5 + (i % 50) as usize
                };
                let mut m = vec![id; len];
                m[..4].copy_from_slice(&i.to_le_bytes());
                tx.send(&m).unwrap();
            }
        }
        "subscriber" => {
            let mut sub = ChannelOptions::new().subscriber(a(1)).unwrap();
            let slow = a(2) == "slow";
            say("ready");
            let mut next = 0u64;
            let mut got = 0u64;
            let mut missed_total = 0u64;
            if slow {
                let first = sub.recv().unwrap();
                assert_eq!(first[..8], 0u64.to_le_bytes());
                next = 1;
                got = 1;
                hear(); // stall until the publisher is done
            }
            loop {
                match sub.recv_timeout(LONG) {
                    Ok(m) => {
                        let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(seq, next, "out of order");
                        assert!(m[8..].iter().all(|&b| b == seq as u8), "torn message");
                        next += 1;
                        got += 1;
                    }
                    Err(Error::Lagged { missed, .. }) => {
                        missed_total += missed;
                        next += missed;
                    }
                    Err(e) if e.is_disconnected() => break,
                    Err(e) => panic!("{e}"),
                }
            }
            say(&format!("got {got} missed {missed_total}"));
        }
        "rpc-client" => {
            let mut client = RpcClient::connect(a(1)).unwrap();
            let id = a(2);
            for i in 0..num(3) {
                let ask = format!("client {id} call {i}");
                let answer = client.call(ask.as_bytes()).unwrap();
                assert_eq!(answer, ask.to_uppercase().as_bytes());
            }
            say("done");
        }
        "big-sender" => {
            let mut tx = Sender::connect(a(1)).unwrap();
            tx.send(b"whole").unwrap();
            say("sending");
            tx.send(&vec![0xab; 16 << 20]).unwrap();
            say("sent?!");
        }
        "idle-receiver" => {
            let _rx = ChannelOptions::new().capacity(4096).receiver(a(1)).unwrap();
            say("ready");
            hear();
        }
        "lapping-publisher" => {
            let opts = ChannelOptions::new().capacity(256);
            let mut publisher = opts.publisher(a(1)).unwrap();
            say("ready");
            hear();
            let until = Instant::now() + Duration::from_millis(num(2));
            let mut seq = 0u64;
            while Instant::now() < until {
                // 8 to 48 bytes (the most a 256-byte ring takes): records of several sizes, so that pads and
                // records land on every offset of the tiny ring.
                let mut m = vec![seq as u8; 8 + (seq % 41) as usize];
                m[..8].copy_from_slice(&seq.to_le_bytes());
                publisher.publish(&m).unwrap();
                seq += 1;
            }
            say(&format!("published {seq}"));
        }
        "reporting-receiver" => {
            // Reports each message from inside recv_with: a message is released
            // only after the callback returns, so a kill can repeat a message
            // but never make one vanish unreported.
            let opts = ChannelOptions::new().capacity(64 * 1024);
            let mut rx = opts.receiver(a(1)).unwrap();
            say("ready");
            loop {
                let index = rx
                    .recv_with_timeout(LONG, |m| {
                        let index = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(m.len(), message_len(index), "message {index} torn");
                        assert!(m[8..].iter().all(|&b| b == index as u8), "{index} torn");
                        say(&format!("got {index}"));
                        // Slow, so that kills often land mid-message.
                        std::thread::sleep(Duration::from_micros(500));
                        index
                    })
                    .unwrap();
                if index == num(2) - 1 {
                    say("all");
                    hear();
                    return;
                }
            }
        }
        "sleeping-receiver" => {
            let mut rx = Receiver::connect(a(1)).unwrap();
            say("ready");
            let _ = rx.recv();
        }
        "scribbled-reader" => {
            let mut rx = Receiver::connect(a(1)).unwrap();
            say("ready");
            let until = Instant::now() + Duration::from_millis(num(2));
            let (mut ok, mut corrupt, mut other) = (0, 0, 0);
            while Instant::now() < until {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(_) => ok += 1,
                    Err(Error::CorruptState { .. }) => corrupt += 1,
                    Err(_) => other += 1,
                }
            }
            say(&format!("survived ok {ok} corrupt {corrupt} other {other}"));
        }
        other => panic!("unknown role {other}"),
    }
}

fn parse_sum(line: &str) -> u64 {
    line.strip_prefix("sum ").unwrap().parse().unwrap()
}

#[test]
fn a_million_small_messages_arrive_checksummed() {
    let name = TestName::new("cp-small");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    const N: u64 = 1_000_000;
    let mut child = spawn(ENTRY, "small-sender", &[name.as_str(), &N.to_string()]);
    let mut sum = 0;
    let mut buf = [0u8; 64];
    for i in 0..N {
        let n = rx.recv_into_timeout(&mut buf, LONG).unwrap();
        assert!(buf[..n] == small(i), "message {i} differs");
        sum = checksum(sum, &buf[..n]);
    }
    assert_eq!(parse_sum(&child.expect_line()), sum);
    child.wait_success(LONG);
    assert!(rx.recv().unwrap_err().is_disconnected());
}

#[test]
fn a_gibibyte_of_large_messages_arrives_checksummed() {
    let name = TestName::new("cp-large");
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    // 256 messages of 4 MiB through a 1 MiB ring: every one in fragments.
    const COUNT: u64 = 256;
    const SIZE: usize = 4 << 20;
    let mut child = spawn(
        ENTRY,
        "large-sender",
        &[name.as_str(), &COUNT.to_string(), &SIZE.to_string()],
    );
    let pattern = pattern(SIZE);
    let mut sum = 0;
    for i in 0..COUNT {
        rx.recv_with_timeout(LONG, |m| {
            assert_eq!(m.len(), SIZE);
            assert!(m == large(&pattern, i).as_slice(), "message {i} differs");
            sum = checksum(sum, m);
        })
        .unwrap();
    }
    assert_eq!(parse_sum(&child.expect_line()), sum);
    child.wait_success(LONG);
}

#[test]
fn four_senders_in_four_processes() {
    let name = TestName::new("cp-mpsc");
    let opts = ChannelOptions::new().max_senders(4).capacity(64 * 1024);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    const N: u32 = 20_000;
    let mut children: Vec<ChildProc> = (0..4)
        .map(|id| {
            spawn(
                ENTRY,
                "mpsc-sender",
                &[name.as_str(), &id.to_string(), &N.to_string()],
            )
        })
        .collect();
    for c in &mut children {
        assert_eq!(c.expect_line(), "ready");
    }
    for c in &mut children {
        c.tell("go");
    }
    let mut next = [0u32; 4];
    for _ in 0..4 * N {
        let m = rx.recv_timeout(LONG).unwrap();
        let id = m[4] as usize;
        let i = u32::from_le_bytes(m[..4].try_into().unwrap());
        assert_eq!(i, next[id], "sender {id} out of order");
        assert!(m[4..].iter().all(|&b| b == id as u8), "torn message");
        next[id] += 1;
    }
    for c in &mut children {
        c.wait_success(LONG);
    }
    assert!(rx.recv().unwrap_err().is_disconnected());
}

#[test]
fn broadcast_to_four_subscribers_one_of_them_slow() {
    let name = TestName::new("cp-bcast");
    let opts = ChannelOptions::new().capacity(1 << 20);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    let mut subs: Vec<ChildProc> = ["fast", "fast", "fast", "slow"]
        .iter()
        .map(|kind| spawn(ENTRY, "subscriber", &[name.as_str(), kind]))
        .collect();
    for s in &mut subs {
        assert_eq!(s.expect_line(), "ready");
    }
    // 48-byte messages take 64 ring bytes each: the 1 MiB ring holds 16384.
    const N: u64 = 60_000;
    for seq in 0..N {
        let mut m = [seq as u8; 48];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        publisher.publish(&m).unwrap();
        // Pace the bursts so that the fast subscribers, which share two CPUs with
        // everyone else, stay within a ring of the publisher.
        if seq % 2000 == 1999 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    subs[3].tell("go");
    drop(publisher);
    for s in &mut subs[..3] {
        assert_eq!(s.expect_line(), format!("got {N} missed 0"));
    }
    let report = subs[3].expect_line();
    let words: Vec<&str> = report.split(' ').collect();
    let got: u64 = words[1].parse().unwrap();
    let missed: u64 = words[3].parse().unwrap();
    assert!(missed >= N - 16384 - 1, "slow subscriber: {report}");
    assert_eq!(got + missed, N, "slow subscriber: {report}");
    for s in &mut subs {
        s.wait_success(LONG);
    }
}

#[test]
fn request_response_with_four_client_processes() {
    let name = TestName::new("cp-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    const CALLS: u64 = 500;
    let mut clients: Vec<ChildProc> = (0..4)
        .map(|id| {
            spawn(
                ENTRY,
                "rpc-client",
                &[name.as_str(), &id.to_string(), &CALLS.to_string()],
            )
        })
        .collect();
    for _ in 0..4 * CALLS {
        let req = server.recv_timeout(LONG).unwrap();
        let answer = req.payload().to_ascii_uppercase();
        server.reply(&req, &answer).unwrap();
    }
    for c in &mut clients {
        assert_eq!(c.expect_line(), "done");
        c.wait_success(LONG);
    }
}

/// A server whose clients come and go one at a time: with nobody connected it
/// waits for the next client instead of reporting `Disconnected`.
#[test]
fn an_rpc_server_keeps_serving_while_clients_come_and_go() {
    let name = TestName::new("cp-rpc-come-go");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    for id in 0..3 {
        let mut client = spawn(ENTRY, "rpc-client", &[name.as_str(), &id.to_string(), "2"]);
        for _ in 0..2 {
            let req = server.recv_timeout(LONG).unwrap();
            server
                .reply(&req, &req.payload().to_ascii_uppercase())
                .unwrap();
        }
        assert_eq!(client.expect_line(), "done");
        client.wait_success(LONG);
        // Nobody is connected now: the server waits, it does not quit.
        let err = server.recv_timeout(Duration::from_millis(100)).unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
}

#[test]
fn a_sender_killed_mid_message_leaves_no_partial_message() {
    let name = TestName::new("cp-kill-sender");
    let opts = ChannelOptions::new().capacity(64 * 1024);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut child = spawn(ENTRY, "big-sender", &[name.as_str()]);
    assert_eq!(child.expect_line(), "sending");
    // Wait until the 16 MiB message has filled the ring: the sender is blocked
    // halfway through it.
    let deadline = Instant::now() + LONG;
    while inspect(name.as_str()).unwrap().used < 60 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the sender never filled the ring"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill();
    let started = Instant::now();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"whole");
    let err = rx.recv_timeout(LONG).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(err.to_string().contains("died"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Another sender takes the dead one's place; the fragments it left are gone.
    let mut tx = opts.sender(name.as_str()).unwrap();
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"after");
}

#[test]
fn a_killed_receiver_releases_a_blocked_sender() {
    let name = TestName::new("cp-kill-receiver");
    let mut child = spawn(ENTRY, "idle-receiver", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let mut tx = Sender::connect(name.as_str()).unwrap();
    while tx.try_send(&[1u8; 100]).is_ok() {}
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        child.kill();
    });
    let started = Instant::now();
    let err = tx.send(&[2u8; 100]).unwrap_err();
    let waited = started.elapsed();
    killer.join().unwrap();
    assert!(err.is_disconnected(), "{err}");
    assert!(err.to_string().contains("died"), "{err}");
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}

/// A subscriber lapped over and over on a 256-byte ring (in the debug build the
/// tests run in, any overflow on a value read from the ring panics): every
/// message it gets is whole, in order, and what it missed is counted exactly.
#[test]
fn a_subscriber_lapped_over_and_over_on_a_tiny_ring_never_panics_and_counts_exactly() {
    let name = TestName::new("cp-lapped");
    let mut publisher = spawn(ENTRY, "lapping-publisher", &[name.as_str(), "2000"]);
    assert_eq!(publisher.expect_line(), "ready");
    let mut sub = ChannelOptions::new()
        .capacity(256)
        .subscriber(name.as_str())
        .unwrap();
    publisher.tell("go");
    let (mut got, mut lagged, mut missed_total) = (0u64, 0u64, 0u64);
    let mut next: Option<u64> = None;
    let mut pending_missed = 0u64;
    loop {
        match sub.recv_timeout(LONG) {
            Ok(m) => {
                let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
                assert_eq!(m.len(), 8 + (seq % 41) as usize, "message {seq} torn");
                assert!(m[8..].iter().all(|&b| b == seq as u8), "message {seq} torn");
                if let Some(next) = next {
                    assert_eq!(seq, next + pending_missed, "out of order or miscounted");
                }
                pending_missed = 0;
                next = Some(seq + 1);
                got += 1;
                // Read slowly now and then, to be lapped again and again.
                if got % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(Error::Lagged { missed, .. }) => {
                assert!(
                    missed > 0,
                    "lagged without missing anything, after {got} messages"
                );
                lagged += 1;
                missed_total += missed;
                pending_missed += missed;
            }
            Err(e) if e.is_disconnected() => break,
            Err(e) => panic!("{e}"),
        }
    }
    let published = publisher.expect_line();
    publisher.wait_success(LONG);
    eprintln!("{published}: got {got}, lagged {lagged} times, missed {missed_total}");
    assert!(got > 100 && lagged > 10, "got {got}, lagged {lagged} times");
    // The publisher started after the subscriber joined: every message it
    // published was either received or counted as missed.
    let published: u64 = published
        .strip_prefix("published ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(got + missed_total, published, "messages unaccounted for");
}

/// Message `i` of the receiver-kill test: every third one fragmented (20 KiB on
/// a 64 KiB ring: two fragments, held until read whole), the others small.
fn message_len(i: u64) -> usize {
    if i % 3 == 0 {
        20 * 1024
    } else {
        100
    }
}

/// Receivers SIGKILLed at random points, many of them while putting a
/// fragmented message together: every message that `send` accepted reaches a
/// later receiver whole (a kill may repeat the message in hand, never lose one).
#[cfg(unix)]
#[test]
fn receivers_killed_mid_message_lose_no_committed_message() {
    let name = TestName::new("cp-rx-kill");
    const N: u64 = 600;
    let opts = ChannelOptions::new().capacity(64 * 1024);
    let mut tx = opts.sender(name.as_str()).unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let mut m = vec![i as u8; message_len(i)];
            m[..8].copy_from_slice(&i.to_le_bytes());
            // A send that waits for room while the receiver dies is refused whole
            // (a partial message is dropped by the next receiver): send it again.
            loop {
                match tx.send_timeout(&m, LONG) {
                    Ok(()) => break,
                    Err(e) if e.is_disconnected() => std::thread::sleep(Duration::from_millis(2)),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        tx
    });
    let mut seen: Vec<u64> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut kills = 0;
    while seen.last() != Some(&(N - 1)) {
        let mut rx = spawn(
            ENTRY,
            "reporting-receiver",
            &[name.as_str(), &N.to_string()],
        );
        assert_eq!(rx.expect_line(), "ready");
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_micros(x % 6000));
        rx.kill();
        kills += 1;
        for line in rx.rest_lines() {
            if let Some(i) = line.strip_prefix("got ") {
                seen.push(i.parse().unwrap());
            }
        }
        assert!(kills < 20_000, "no progress after {kills} kills");
    }
    let _tx = sender.join().unwrap();
    let mut expected = 0;
    for (k, &i) in seen.iter().enumerate() {
        if k > 0 && i == seen[k - 1] {
            continue; // the message in hand when a receiver died, read again
        }
        assert_eq!(i, expected, "message {expected} lost (after {kills} kills)");
        expected += 1;
    }
    assert_eq!(expected, N);
    assert_eq!(inspect(name.as_str()).unwrap().lost, 0);
    eprintln!("{kills} receivers killed, {} deliveries", seen.len());
    assert!(kills > 50, "only {kills} kills");
}

/// A receiver SIGKILLed in its sleep leaves its place in the data doorbell's
/// waiter count (no destructor runs); the next receiver to attach clears it, so
/// senders stop paying for wake-up calls.
#[cfg(unix)]
#[test]
fn a_receiver_killed_asleep_leaves_no_waiter_count_behind_for_the_next() {
    let name = TestName::new("cp-sleeper");
    let mut tx = Sender::connect(name.as_str()).unwrap();
    let mut child = spawn(ENTRY, "sleeping-receiver", &[name.as_str()]);
    assert_eq!(child.expect_line(), "ready");
    let raw = shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap();
    let waiters = raw.atomic_u32(shmkit::HEADER_BLOCK + 76).unwrap();
    let load = || waiters.load(std::sync::atomic::Ordering::SeqCst);
    let until = Instant::now() + LONG;
    while load() == 0 {
        assert!(Instant::now() < until, "the receiver never went to sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill();
    assert_eq!(
        load(),
        1,
        "the killed sleeper's count stays until someone repairs it"
    );
    let mut rx = Receiver::connect(name.as_str()).unwrap();
    assert_eq!(load(), 0, "the new receiver did not clear the leaked count");
    tx.send(b"still works").unwrap();
    assert_eq!(rx.recv().unwrap(), b"still works");
}

#[test]
fn scribbling_over_control_words_gives_errors_never_a_crash_or_a_hang() {
    let name = TestName::new("cp-scribble");
    let opts = ChannelOptions::new().capacity(4096);
    let mut tx = opts.sender(name.as_str()).unwrap();
    const MILLIS: u64 = 1500;
    let mut reader = spawn(
        ENTRY,
        "scribbled-reader",
        &[name.as_str(), &MILLIS.to_string()],
    );
    assert_eq!(reader.expect_line(), "ready");
    let raw = shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap();
    let data = shmkit::HEADER_BLOCK;
    // Control words: head, the data doorbell, tail, the space doorbell, the slot
    // table; and record headers in the ring (which starts at 320).
    let words: Vec<u64> = [64, 72, 128, 136, 256, 264, 272, 280]
        .into_iter()
        .chain((320..320 + 4096).step_by(8))
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let until = Instant::now() + Duration::from_millis(MILLIS);
    let mut rounds = 0u64;
    while Instant::now() < until {
        let _ = tx.send_timeout(&[rounds as u8; 40], Duration::from_millis(1));
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = words[(x % words.len() as u64) as usize];
            // Small values too, so that some scribbles look almost plausible.
            let value = if x & 1 == 0 { x >> 1 } else { (x >> 40) & !7 };
            raw.atomic_u64(data + off)
                .unwrap()
                .store(value, std::sync::atomic::Ordering::Relaxed);
        }
        rounds += 1;
    }
    let report = reader.expect_line();
    assert!(report.starts_with("survived"), "{report}");
    eprintln!("scribbled reader: {report} after {rounds} rounds");
    reader.wait_success(Duration::from_secs(30));
    assert!(rounds > 100, "only {rounds} rounds of scribbling");
}
