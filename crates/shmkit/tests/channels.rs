//! Channels within one process: the API's promises and its refusals. The
//! cross-process behaviour is in `channel_processes.rs`.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::TestName;
use proptest::prelude::*;
use shmkit::channel::{
    inspect, ChannelKind, ChannelOptions, EndpointState, Receiver, RpcClient, RpcServer, Sender,
    WaitMode,
};
use shmkit::{Error, Shm};

const SHORT: Duration = Duration::from_millis(50);

fn pair(name: &TestName, capacity: u64) -> (Sender, Receiver) {
    let opts = ChannelOptions::new().capacity(capacity);
    let rx = opts.receiver(name.as_str()).unwrap();
    let tx = opts.sender(name.as_str()).unwrap();
    (tx, rx)
}

/// Deterministic bytes that differ from message to message.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn messages_of_every_size_arrive_whole_and_in_order() {
    let name = TestName::new("ch-sizes");
    let (mut tx, mut rx) = pair(&name, 4096);
    let max_record = tx.max_record() as usize;
    assert_eq!(max_record, 1016);
    let sizes = [
        0,
        1,
        7,
        8,
        9,
        max_record - 1,
        max_record,
        max_record + 1,
        4096,
        50_000,
    ];
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, &len) in sizes.iter().enumerate() {
                tx.send(&pattern(i as u64, len)).unwrap();
            }
        });
        for (i, &len) in sizes.iter().enumerate() {
            let got = rx.recv().unwrap();
            assert_eq!(got.len(), len, "message {i}");
            assert!(
                got == pattern(i as u64, len),
                "message {i} of {len} bytes differs"
            );
        }
    });
}

#[test]
fn reserve_writes_in_place_and_an_uncommitted_reservation_sends_nothing() {
    let name = TestName::new("ch-reserve");
    let (mut tx, mut rx) = pair(&name, 4096);
    {
        let mut r = tx.reserve(3).unwrap();
        r.copy_from_slice(b"abc");
        // dropped: abandoned
    }
    let mut r = tx.reserve(5).unwrap();
    r.copy_from_slice(b"hello");
    r.commit();
    assert_eq!(rx.recv().unwrap(), b"hello");
    assert!(rx.try_recv().unwrap_err().is_would_block());
    let err = tx.reserve(tx.max_record() as usize + 1).unwrap_err();
    assert!(matches!(err, Error::TooLong { max: 1016, .. }), "{err}");
}

#[test]
fn receive_variants_and_their_errors() {
    let name = TestName::new("ch-recv");
    let (mut tx, mut rx) = pair(&name, 4096);
    assert!(rx.try_recv().unwrap_err().is_would_block());
    let started = Instant::now();
    let err = rx.recv_timeout(SHORT).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= SHORT);

    tx.send(b"twelve bytes").unwrap();
    let mut small = [0u8; 4];
    match rx.recv_into(&mut small) {
        Err(Error::BufferTooSmall {
            len: 12,
            capacity: 4,
            ..
        }) => {}
        other => panic!("expected BufferTooSmall, got {other:?}"),
    }
    // The message stayed queued.
    let mut buf = [0u8; 64];
    let n = rx.recv_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"twelve bytes");

    // The same for a fragmented message: refused before anything is consumed.
    let long = pattern(9, 10_000);
    let mut small = vec![0u8; 9_999];
    std::thread::scope(|s| {
        s.spawn(|| tx.send(&long).unwrap());
        match rx.recv_into_timeout(&mut small, Duration::from_secs(10)) {
            Err(Error::BufferTooSmall { len: 10_000, .. }) => {}
            other => panic!("expected BufferTooSmall, got {other:?}"),
        }
        assert!(rx.recv().unwrap() == long);
    });
}

#[test]
fn try_send_and_send_timeout_on_a_full_ring() {
    let name = TestName::new("ch-full");
    let (mut tx, rx) = pair(&name, 1024);
    let msg = [5u8; 100];
    let mut sent = 0;
    while tx.try_send(&msg).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 1024 / 112, "every record takes 8 + 104 bytes");
    let err = tx.try_send(&msg).unwrap_err();
    assert!(err.is_would_block(), "{err}");
    let err = tx.send_timeout(&msg, SHORT).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let err = tx.try_send(&[0u8; 1000]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLong {
                len: 1000,
                max: 248,
                ..
            }
        ),
        "{err}"
    );
    drop(rx);
    // The receiver closed: a send that would wait fails at once instead.
    let err = tx.send(&msg).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
}

#[test]
fn the_receiver_drains_then_learns_the_sender_left() {
    let name = TestName::new("ch-left");
    let (mut tx, mut rx) = pair(&name, 16384);
    tx.send(b"one").unwrap();
    tx.send(&pattern(1, 9000)).unwrap_or_else(|e| panic!("{e}"));
    drop(tx);
    assert_eq!(rx.recv().unwrap(), b"one");
    assert_eq!(rx.recv().unwrap().len(), 9000);
    let err = rx.recv().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(err.to_string().contains("the sender closed"), "{err}");
    // A new sender may attach and carry on.
    let mut tx = Sender::connect(name.as_str()).unwrap();
    tx.send(b"two").unwrap();
    assert_eq!(rx.recv().unwrap(), b"two");
}

#[test]
fn roles_are_exclusive_and_flavours_are_checked() {
    let name = TestName::new("ch-roles");
    let (_tx, _rx) = pair(&name, 4096);
    let err = Receiver::connect(name.as_str()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Occupied {
                role: "receiver",
                ..
            }
        ),
        "{err}"
    );
    let err = Sender::connect(name.as_str()).unwrap_err();
    assert!(
        matches!(err, Error::Occupied { role: "sender", .. }),
        "{err}"
    );
    let err = ChannelOptions::new().subscriber(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err}");
    let plain = TestName::new("ch-plain");
    let _shm = Shm::create(plain.as_str(), 4096).unwrap();
    let err = Sender::connect(plain.as_str()).unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err}");
    let err = ChannelOptions::new()
        .open_existing()
        .sender("ch-no-such-channel-xyz")
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn bad_options_are_refused_with_the_reason() {
    let name = TestName::new("ch-opts");
    for cap in [0, 100, 1000, 1 << 32] {
        let err = ChannelOptions::new()
            .capacity(cap)
            .sender(name.as_str())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSize { .. }), "{cap}: {err}");
        assert!(err.to_string().contains("power of two"), "{err}");
    }
    let err = ChannelOptions::new()
        .max_senders(0)
        .sender(name.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    let (mut tx, _rx) = {
        let opts = ChannelOptions::new().max_message(100);
        (
            opts.sender(name.as_str()).unwrap(),
            opts.receiver(name.as_str()).unwrap(),
        )
    };
    let err = tx.send(&[0u8; 101]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLong {
                len: 101,
                max: 100,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn many_senders_in_threads_each_arrive_in_order() {
    let name = TestName::new("ch-mpsc");
    let opts = ChannelOptions::new().capacity(4096).max_senders(4);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    const N: u32 = 2000;
    std::thread::scope(|s| {
        for id in 0..4u32 {
            let mut tx = opts.sender(name.as_str()).unwrap();
            s.spawn(move || {
                for i in 0..N {
                    // Every fourth message is long enough to be fragmented.
                    let mut msg = vec![id as u8; if i % 4 == 0 { 3000 } else { 8 }];
                    msg[..4].copy_from_slice(&i.to_le_bytes());
                    tx.send(&msg).unwrap();
                }
            });
        }
        let mut next = [0u32; 4];
        for _ in 0..4 * N {
            let m = rx.recv().unwrap();
            let id = m[4] as usize;
            let i = u32::from_le_bytes(m[..4].try_into().unwrap());
            assert_eq!(i, next[id], "sender {id} out of order");
            assert!(m[4..].iter().all(|&b| b == id as u8), "torn message");
            next[id] += 1;
        }
    });
    let err = opts.sender(name.as_str());
    assert!(err.is_ok(), "slots are free again after senders left");
}

#[test]
fn pod_and_length_checks() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        seq: u64,
        price: f64,
    }
    let name = TestName::new("ch-pod");
    let (mut tx, mut rx) = pair(&name, 4096);
    tx.send_pod(&Tick { seq: 1, price: 2.5 }).unwrap();
    assert_eq!(rx.recv_pod::<Tick>().unwrap(), Tick { seq: 1, price: 2.5 });
    tx.send(b"short").unwrap();
    let err = rx.recv_pod::<Tick>().unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err}");
    assert_eq!(
        rx.recv().unwrap(),
        b"short",
        "a refused message stays queued"
    );
}

#[test]
fn serde_values_round_trip_and_garbage_is_a_decode_error() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u32,
        item: String,
        lines: Vec<(u16, f32)>,
    }
    let name = TestName::new("ch-serde");
    let (mut tx, mut rx) = pair(&name, 4096);
    let order = Order {
        id: 7,
        item: "bolts".into(),
        lines: vec![(1, 2.5), (3, 0.25)],
    };
    tx.send_serde(&order).unwrap();
    assert_eq!(rx.recv_serde::<Order>().unwrap(), order);
    tx.send(&[0xff; 3]).unwrap();
    let err = rx.recv_serde::<Order>().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("Order"), "{err}");
}

#[test]
fn blocking_wait_modes_all_deliver() {
    for mode in [
        WaitMode::BusyPoll,
        WaitMode::Blocking {
            spin: Duration::ZERO,
        },
        WaitMode::default(),
    ] {
        let name = TestName::new("ch-modes");
        let opts = ChannelOptions::new().capacity(1024).wait_mode(mode);
        let mut rx = opts.receiver(name.as_str()).unwrap();
        let mut tx = opts.sender(name.as_str()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..300u32 {
                    tx.send(&i.to_le_bytes()).unwrap();
                    if i % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            });
            for i in 0..300u32 {
                assert_eq!(rx.recv().unwrap(), i.to_le_bytes(), "{mode:?}");
            }
        });
    }
}

#[test]
fn corrupt_control_words_give_errors_not_panics() {
    let name = TestName::new("ch-corrupt");
    let (mut tx, mut rx) = pair(&name, 1024);
    tx.send(b"fine").unwrap();
    let shm = shmkit::ShmOptions::new().open(name.as_str());
    // A channel is not plain bytes: open it raw-ish through the segment API.
    assert!(matches!(shm, Err(Error::WrongKind { .. })));
    let raw = shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap();
    // Data area starts after the segment header block; head is at 64, the ring
    // at 320 (for one sender). Headers (docs/LAYOUT.md): length in bits 0..32,
    // kind in 32..36, stamp (position / 8) in 36..64.
    let data = shmkit::HEADER_BLOCK;
    let word = |off: u64, value: u64| {
        raw.atomic_u64(data + off)
            .unwrap()
            .store(value, std::sync::atomic::Ordering::SeqCst)
    };
    // The receiver reads a stamped record without consulting the head...
    word(64, 3);
    assert_eq!(rx.try_recv().unwrap(), b"fine");
    // ...but checks the head before it reports the ring empty.
    let err = rx.try_recv().unwrap_err();
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
    // "fine" took 16 bytes; the next record would be at 16 (stamp 2).
    word(64, 32);
    word(320 + 16, u64::MAX);
    let err = rx.try_recv().unwrap_err();
    assert!(err.to_string().contains("no record at 16"), "{err}");
    word(320 + 16, 2 << 36 | 0xf << 32);
    let err = rx.try_recv().unwrap_err();
    assert!(err.to_string().contains("has header"), "{err}");
    word(320 + 16, 2 << 36 | 1 << 32 | 2000);
    let err = rx.try_recv().unwrap_err();
    assert!(err.to_string().contains("overruns"), "{err}");
    // The sender checks the tail it reads.
    word(128, 1 << 40);
    let err = loop {
        match tx.try_send(&[1u8; 200]) {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
    // Positions so large that arithmetic on them would overflow are corrupt.
    drop(rx);
    word(64, u64::MAX - 7);
    word(128, u64::MAX - 7);
    let err = ChannelOptions::new().receiver(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
}

#[test]
fn a_corrupt_broadcast_sequence_number_is_an_error_not_a_panic() {
    let name = TestName::new("ch-bcast-corrupt");
    let opts = ChannelOptions::new().capacity(1024).max_subscribers(1);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    publisher.publish(b"a").unwrap();
    // The subscriber keeps the (temporary) channel alive while the publisher goes.
    let mut sub = opts
        .clone()
        .history(true)
        .subscriber(name.as_str())
        .unwrap();
    drop(publisher);
    let raw = shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap();
    // With one subscriber slot the ring starts at 320 (docs/LAYOUT.md); a
    // broadcast record's sequence number follows its 8-byte header.
    let seq = raw.atomic_u64(shmkit::HEADER_BLOCK + 320 + 8).unwrap();
    seq.store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    // A new publisher re-indexes the ring from what it finds there...
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    publisher.publish(b"b").unwrap();
    // ...going on from it (wrapping), and a subscriber takes the first sequence
    // number it reads as given.
    assert_eq!(sub.recv().unwrap(), b"a");
    assert_eq!(sub.recv().unwrap(), b"b");
    // Each record takes 16 + 8 bytes: "c" is at 48. A sequence number that is not
    // the successor of the last one is corruption.
    publisher.publish(b"c").unwrap();
    let seq = raw.atomic_u64(shmkit::HEADER_BLOCK + 320 + 48 + 8).unwrap();
    seq.store(7, std::sync::atomic::Ordering::SeqCst);
    let err = sub.recv().unwrap_err();
    assert!(
        err.to_string().contains("message 7 where 1 was due"),
        "{err}"
    );
    // A head so large that arithmetic on it would overflow is corrupt.
    raw.atomic_u64(shmkit::HEADER_BLOCK + 64)
        .unwrap()
        .store(u64::MAX - 7, std::sync::atomic::Ordering::SeqCst);
    let err = sub.recv().unwrap_err();
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
    drop(sub);
    let err = opts.subscriber(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
}

#[test]
fn a_resumed_sequence_number_at_its_maximum_wraps_instead_of_panicking() {
    let name = TestName::new("ch-bcast-seqmax");
    let opts = ChannelOptions::new().capacity(1024).max_subscribers(1);
    let publisher = opts.publisher(name.as_str()).unwrap();
    let mut sub = opts.subscriber(name.as_str()).unwrap();
    drop(publisher);
    // An empty ring: a new publisher goes on from NEXT_SEQ (offset 96).
    let raw = shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap();
    raw.atomic_u64(shmkit::HEADER_BLOCK + 96)
        .unwrap()
        .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    publisher.publish(b"last").unwrap();
    publisher.publish(b"first again").unwrap();
    assert_eq!(sub.recv().unwrap(), b"last");
    assert_eq!(sub.recv().unwrap(), b"first again");
}

/// The receiver's place in the data doorbell's waiter count (docs/LAYOUT.md).
fn data_waiters(name: &TestName) -> u32 {
    shmkit::ShmOptions::new()
        .open_raw(&common::managed_os_name(name.as_str()))
        .unwrap()
        .atomic_u32(shmkit::HEADER_BLOCK + 76)
        .unwrap()
        .load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_panicking_recv_with_callback_gives_back_its_place_among_the_waiters() {
    let name = TestName::new("ch-waiter-panic");
    let (mut tx, rx) = pair(&name, 4096);
    let mut rx = rx;
    rx.set_wait_mode(WaitMode::Blocking {
        spin: Duration::ZERO,
    });
    let waiter = std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.recv_with(|_| panic!("the callback fails"))
        }));
        assert!(outcome.is_err(), "the callback's panic reaches the caller");
        rx
    });
    // Send only once the receiver sleeps, so that the callback runs inside the
    // wait, registered as a waiter.
    let until = Instant::now() + Duration::from_secs(30);
    while data_waiters(&name) == 0 {
        assert!(Instant::now() < until, "the receiver never went to sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    tx.send(b"boom").unwrap();
    let mut rx = waiter.join().unwrap();
    assert_eq!(data_waiters(&name), 0, "a waiter count leaked");
    // A message is released only when the callback returns: it stays queued.
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv().unwrap(), b"boom");
    assert_eq!(rx.recv().unwrap(), b"after");
}

#[test]
fn broadcast_every_subscriber_reads_everything_and_laggards_are_told() {
    let name = TestName::new("ch-bcast");
    let opts = ChannelOptions::new().capacity(1024);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    let mut fast = opts.subscriber(name.as_str()).unwrap();
    let mut slow = opts.subscriber(name.as_str()).unwrap();
    // Each message takes 16 + 8 bytes: the ring holds 42 of them.
    for i in 0..100u64 {
        publisher.publish(&i.to_le_bytes()).unwrap();
        assert_eq!(fast.recv().unwrap(), i.to_le_bytes());
    }
    // Lapped: told how many it missed, then on with the oldest message held.
    let missed = match slow.recv() {
        Err(Error::Lagged { missed, .. }) => missed,
        other => panic!("expected Lagged, got {other:?}"),
    };
    assert!((55..=60).contains(&missed), "missed {missed}");
    for i in missed..100u64 {
        assert_eq!(slow.recv().unwrap(), i.to_le_bytes());
    }
    assert!(slow.try_recv().unwrap_err().is_would_block());
    let err = publisher.publish(&[0u8; 300]).unwrap_err();
    assert!(matches!(err, Error::TooLong { max: 240, .. }), "{err}");
    let err = opts.publisher(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::Occupied { .. }), "{err}");
    drop(publisher);
    let err = fast.recv().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
}

#[test]
fn a_late_subscriber_gets_the_history_if_it_asks() {
    let name = TestName::new("ch-history");
    let opts = ChannelOptions::new().capacity(1024);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    for i in 0..50u64 {
        publisher.publish(&i.to_le_bytes()).unwrap();
    }
    let mut now_on = opts.subscriber(name.as_str()).unwrap();
    let mut history = opts
        .clone()
        .history(true)
        .subscriber(name.as_str())
        .unwrap();
    // The ring holds about 42 of the 50: the history starts with the oldest held.
    let first = u64::from_le_bytes(history.recv().unwrap().try_into().unwrap());
    assert!((5..=10).contains(&first), "history starts at {first}");
    for i in first + 1..50 {
        assert_eq!(history.recv().unwrap(), i.to_le_bytes());
    }
    assert!(now_on.try_recv().unwrap_err().is_would_block());
    publisher.publish(b"next").unwrap();
    assert_eq!(now_on.recv().unwrap(), b"next");
    assert_eq!(history.recv().unwrap(), b"next");
    // A new publisher after this one closed goes on where it stopped.
    drop(publisher);
    let mut again = opts.publisher(name.as_str()).unwrap();
    again.publish(b"after").unwrap();
    assert_eq!(now_on.recv().unwrap(), b"after");
}

#[test]
fn rpc_replies_reach_the_caller() {
    let name = TestName::new("ch-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let mut a = RpcClient::connect(name.as_str()).unwrap();
    let mut b = RpcClient::connect(name.as_str()).unwrap();
    let serve = |server: &mut RpcServer, n: usize| {
        let mut clients = Vec::new();
        for _ in 0..n {
            let req = server.recv().unwrap();
            let mut answer = req.payload().to_vec();
            answer.reverse();
            server.reply(&req, &answer).unwrap();
            clients.push((req.payload()[0], req.client().to_owned()));
        }
        clients
    };
    let clients = std::thread::scope(|s| {
        let served = s.spawn(|| serve(&mut server, 20));
        for i in 0..10u32 {
            let ask = format!("a{i}");
            assert_eq!(a.call(ask.as_bytes()).unwrap(), format!("{i}a").as_bytes());
            let ask = format!("b{i}");
            assert_eq!(b.call(ask.as_bytes()).unwrap(), format!("{i}b").as_bytes());
        }
        served.join().unwrap()
    });
    let reply_queue = |who: u8| {
        let (_, queue) = clients.iter().find(|(c, _)| *c == who).unwrap();
        queue.clone()
    };
    let (a_queue, b_queue) = (reply_queue(b'a'), reply_queue(b'b'));
    assert_ne!(a_queue, b_queue);
    // A client that leaves takes its reply queue with it once the server next
    // meets a new client: the server does not keep it alive.
    drop(b);
    let mut c = RpcClient::connect(name.as_str()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| serve(&mut server, 1));
        assert_eq!(c.call(b"c1").unwrap(), b"1c");
    });
    assert!(inspect(&b_queue).unwrap_err().is_not_found());
    assert!(inspect(&a_queue).is_ok());
    drop(server);
    let err = a.call(b"anyone?").unwrap_err();
    assert!(err.is_disconnected(), "{err}");
}

#[test]
fn a_reply_to_a_client_that_stopped_reading_times_out_and_names_the_client() {
    let name = TestName::new("ch-rpc-full");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    server.set_reply_timeout(Duration::from_millis(100));
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    // Calls that give up at once leave their requests queued for the server,
    // and nobody reads the replies: the client's 256 KiB reply queue fills.
    for _ in 0..8 {
        let err = client
            .call_timeout(b"x", Duration::from_millis(1))
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
    let big = vec![0u8; 60 * 1024];
    let started = Instant::now();
    let mut refused = None;
    for _ in 0..8 {
        let req = server.recv_timeout(Duration::from_secs(5)).unwrap();
        if let Err(e) = server.reply(&req, &big) {
            refused = Some((e, req.client().to_owned()));
            break;
        }
    }
    let (err, client_queue) = refused.expect("a full reply queue must refuse a reply");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains(&client_queue), "{err}");
    assert!(err.to_string().contains("reply queue stayed full"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Receivers stop when their senders are gone, unless they asked to wait for
/// the next one; with several senders, one leaving while another stays is no
/// disconnection.
#[test]
fn wait_for_senders_decides_what_an_empty_queue_without_senders_means() {
    let name = TestName::new("ch-wait-senders");
    let opts = ChannelOptions::new().capacity(4096).max_senders(2);
    let mut rx = opts
        .clone()
        .wait_for_senders(true)
        .receiver(name.as_str())
        .unwrap();
    let mut a = opts.sender(name.as_str()).unwrap();
    let b = opts.sender(name.as_str()).unwrap();
    a.send(b"from a").unwrap();
    drop(a);
    assert_eq!(rx.recv().unwrap(), b"from a");
    assert!(rx.try_recv().unwrap_err().is_would_block());
    drop(b);
    let err = rx.recv_timeout(Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "a waiting receiver: {err}");
    let mut c = opts.sender(name.as_str()).unwrap();
    c.send(b"from c").unwrap();
    assert_eq!(rx.recv().unwrap(), b"from c");
    drop(rx);
    // The default: Disconnected once the last sender went.
    let mut rx = opts.receiver(name.as_str()).unwrap();
    drop(c);
    let err = rx.recv_timeout(Duration::from_secs(5)).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
}

#[test]
fn inspect_reports_capacity_fill_and_peers() {
    let name = TestName::new("ch-info");
    let (mut tx, rx) = pair(&name, 4096);
    tx.send(&[1u8; 100]).unwrap();
    let info = inspect(name.as_str()).unwrap();
    assert_eq!(info.kind, ChannelKind::Queue);
    assert_eq!(info.capacity, 4096);
    assert_eq!(info.used, 8 + 104);
    let me = std::process::id();
    assert_eq!(info.owner, Some(EndpointState::Connected(me)));
    assert_eq!(info.peers, [EndpointState::Connected(me)]);
    drop(rx);
    let info = inspect(name.as_str()).unwrap();
    assert_eq!(info.owner, Some(EndpointState::Closed));
}

/// One sender, one receiver, same thread: `try_send` and `try_recv` in a random
/// order, checked against a model queue.
#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Recv,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..=248).prop_map(Op::Send),
            (0usize..=8).prop_map(Op::Send),
            Just(Op::Recv),
        ],
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn interleaved_try_ops_match_a_model_queue(ops in ops()) {
        let name = TestName::new("ch-prop-model");
        let (mut tx, mut rx) = pair(&name, 1024);
        let mut model = VecDeque::new();
        let mut n = 0u64;
        for op in ops {
            match op {
                Op::Send(len) => {
                    let msg = pattern(n, len);
                    n += 1;
                    match tx.try_send(&msg) {
                        Ok(()) => model.push_back(msg),
                        Err(e) => prop_assert!(e.is_would_block(), "{}", e),
                    }
                }
                Op::Recv => match rx.try_recv() {
                    Ok(m) => prop_assert_eq!(Some(m), model.pop_front()),
                    Err(e) => {
                        prop_assert!(e.is_would_block(), "{}", e);
                        prop_assert!(model.is_empty());
                    }
                },
            }
        }
        while let Some(want) = model.pop_front() {
            prop_assert_eq!(rx.try_recv().unwrap(), want);
        }
    }

    #[test]
    fn random_sizes_across_threads_arrive_identical(
        sizes in prop::collection::vec(prop_oneof![0usize..64, 0usize..3000, 0usize..20_000], 1..60),
        capacity in prop_oneof![Just(256u64), Just(1024), Just(8192)],
    ) {
        let name = TestName::new("ch-prop-threads");
        let (mut tx, mut rx) = pair(&name, capacity);
        let sent = sizes.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, len) in sent.into_iter().enumerate() {
                    tx.send(&pattern(i as u64, len)).unwrap();
                }
            });
            for (i, &len) in sizes.iter().enumerate() {
                let got = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                assert!(got == pattern(i as u64, len), "message {i} of {len} bytes");
            }
        });
    }
}

/// Options set explicitly must match an existing channel; defaults take what
/// it has. Each refusal names both values.
#[test]
fn explicit_options_that_differ_from_the_channel_are_refused() {
    let name = TestName::new("ch-mismatch");
    let opts = ChannelOptions::new().capacity(4096).max_senders(2);
    let _rx = opts.receiver(name.as_str()).unwrap();
    // Defaults: whatever the channel has.
    let tx = ChannelOptions::new().sender(name.as_str()).unwrap();
    assert_eq!(tx.capacity(), 4096);
    drop(tx);
    let cases: Vec<(ChannelOptions, &str)> = vec![
        (
            ChannelOptions::new().capacity(8192),
            "capacity is 4096, but 8192 was asked for",
        ),
        (
            ChannelOptions::new().max_message(100),
            "max_message is 1073741824, but 100 was asked for",
        ),
        (
            ChannelOptions::new().max_senders(3),
            "max_senders is 2, but 3 was asked for",
        ),
        (
            ChannelOptions::new().message_type::<u64>(),
            "message type is no recorded type",
        ),
    ];
    for (o, expect) in cases {
        let err = o.sender(name.as_str()).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains(expect), "{err} lacks {expect:?}");
        assert!(err.to_string().contains(name.as_str()), "{err}");
    }
    // Matching explicit options are fine.
    opts.sender(name.as_str()).unwrap();
    // The kind is checked too.
    let err = ChannelOptions::new().publisher(name.as_str()).unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err}");
    // Broadcast: the subscriber limit.
    let b = TestName::new("ch-mismatch-b");
    let _p = ChannelOptions::new()
        .max_subscribers(2)
        .publisher(b.as_str())
        .unwrap();
    let err = ChannelOptions::new()
        .max_subscribers(5)
        .subscriber(b.as_str())
        .unwrap_err();
    assert!(
        err.to_string().contains("max_subscribers is 2, but 5"),
        "{err}"
    );
}

#[test]
fn a_typed_channel_refuses_another_type() {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Point {
        x: f64,
        y: f64,
    }
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Span {
        start: u64,
        end: u64,
    }
    let name = TestName::new("ch-typed");
    let typed = ChannelOptions::new().message_type::<Point>();
    let mut rx = typed.receiver(name.as_str()).unwrap();
    let mut tx = typed.sender(name.as_str()).unwrap();
    tx.send_pod(&Point { x: 1.5, y: -2.0 }).unwrap();
    let p: Point = rx.recv_pod().unwrap();
    assert_eq!((p.x, p.y), (1.5, -2.0));
    drop(tx);
    // Same size and alignment, another type: refused, naming both.
    let err = ChannelOptions::new()
        .message_type::<Span>()
        .sender(name.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("Span"), "{err}");
    assert!(err.to_string().contains("16 bytes, alignment 8"), "{err}");
    // Not asking is not checked.
    ChannelOptions::new().sender(name.as_str()).unwrap();
}

/// Subscribers map the ring read-only: one buggy subscriber's stray write
/// faults in that subscriber instead of corrupting what every other reads. The
/// kernel's own record of the mappings shows it.
#[cfg(target_os = "linux")]
#[test]
fn subscribers_map_the_ring_read_only() {
    let name = TestName::new("ch-ro-ring");
    let opts = ChannelOptions::new().capacity(64 * 1024);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    let mut sub = opts.subscriber(name.as_str()).unwrap();
    publisher.publish(b"readable").unwrap();
    assert_eq!(sub.recv().unwrap(), b"readable");
    let path = format!("/dev/shm/shmkit.{}", name.as_str());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let perms: Vec<&str> = maps
        .lines()
        .filter(|l| l.ends_with(&path))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    // The publisher's and the subscriber's control mappings are writable; the
    // subscriber's ring is not.
    assert!(
        perms.contains(&"r--s"),
        "no read-only mapping of {path}: {perms:?}"
    );
    assert!(perms.contains(&"rw-s"), "{perms:?}");
}
