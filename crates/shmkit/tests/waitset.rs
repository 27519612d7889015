//! `WaitSet`: which members it reports ready (every kind), level triggering,
//! timeouts, interrupts, a message or a death in another process waking it,
//! and hundreds of members.

mod common;

use std::time::{Duration, Instant};

use common::{role, say, spawn, TestName};
use shmkit::channel::{ChannelOptions, Receiver, Sender};
use shmkit::sync::{Event, EventMode, Mutex, Semaphore};
use shmkit::{Interrupter, WaitSet};

const ENTRY: &str = "child_entry";
/// Far above any real wake-up: there so a broken wait fails instead of hanging.
const BOUND: Duration = Duration::from_secs(10);

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        // Attach as the sender of channel `args[1]`, say so, wait, send.
        "send-later" => {
            let mut tx = Sender::connect(&args[1]).unwrap();
            say("attached");
            std::thread::sleep(Duration::from_millis(300));
            tx.send(args[2].as_bytes()).unwrap();
            say("sent");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Attach as a publisher and sleep until killed.
        "publish" => {
            let _publisher = ChannelOptions::new().publisher(&args[1]).unwrap();
            say("attached");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Attach as a sender and sleep until killed.
        "attach" => {
            let _tx = Sender::connect(&args[1]).unwrap();
            say("attached");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

fn pair(name: &TestName) -> (Receiver, Sender) {
    let rx = ChannelOptions::new()
        .capacity(4096)
        .receiver(name.as_str())
        .unwrap();
    let tx = Sender::connect(name.as_str()).unwrap();
    (rx, tx)
}

#[test]
fn ready_members_are_reported_by_index_until_taken_from() {
    let (na, nb) = (TestName::new("ws-a"), TestName::new("ws-b"));
    let (mut rx_a, _tx_a) = pair(&na);
    let (mut rx_b, mut tx_b) = pair(&nb);
    tx_b.send(b"one").unwrap();
    for _ in 0..2 {
        // Level-triggered: still ready while the message is queued.
        let mut set = WaitSet::new();
        let ia = set.add(&rx_a);
        let ib = set.add(&rx_b);
        assert_eq!((ia, ib), (0, 1));
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [1]);
    }
    assert_eq!(rx_b.try_recv().unwrap(), b"one");
    {
        let mut set = WaitSet::new();
        set.add(&rx_a);
        set.add(&rx_b);
        let started = Instant::now();
        assert!(set
            .wait_timeout(Duration::from_millis(100))
            .unwrap()
            .is_empty());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A zero timeout looks once.
        assert!(set.wait_timeout(Duration::ZERO).unwrap().is_empty());
    }
    assert!(rx_a.try_recv().unwrap_err().is_would_block());
}

#[test]
fn every_kind_of_member_is_ready_when_its_try_call_would_succeed() {
    let names: Vec<TestName> = (0..6)
        .map(|i| TestName::new(&format!("ws-kind{i}")))
        .collect();
    let sem = Semaphore::create(names[0].as_str(), 0, 4).unwrap();
    let event = Event::create(names[1].as_str(), EventMode::AutoReset, false).unwrap();
    let mutex = Mutex::create(names[2].as_str(), 0u64).unwrap();
    let (_rx, mut tx) = pair(&names[3]);
    let mut publisher = ChannelOptions::new()
        .capacity(4096)
        .publisher(names[4].as_str())
        .unwrap();
    let mut sub = ChannelOptions::new().subscriber(names[4].as_str()).unwrap();

    let held = mutex.lock().unwrap();
    // Fill the queue: no room.
    while tx.try_send(&[7u8; 500]).is_ok() {}
    let none = {
        let mut set = WaitSet::new();
        set.add(&sem);
        set.add(&event);
        set.add(&mutex);
        set.add(&tx);
        set.add(&sub);
        set.wait_timeout(Duration::from_millis(50)).unwrap()
    };
    assert!(none.is_empty(), "nothing is ready yet: {none:?}");

    sem.release(1).unwrap();
    event.set().unwrap();
    drop(held);
    publisher.publish(b"news").unwrap();
    {
        let mut set = WaitSet::new();
        set.add(&sem);
        set.add(&event);
        set.add(&mutex);
        set.add(&tx);
        set.add(&sub);
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [0, 1, 2, 4]);
    }
    // Reporting took nothing.
    assert!(sem.try_wait().unwrap());
    event.wait_timeout(Duration::ZERO).unwrap();
    drop(mutex.try_lock().unwrap());
    assert_eq!(sub.try_recv().unwrap(), b"news");
}

#[test]
fn a_sender_becomes_ready_when_the_receiver_makes_room() {
    let name = TestName::new("ws-room");
    let (mut rx, mut tx) = pair(&name);
    while tx.try_send(&[1u8; 500]).is_ok() {}
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            rx.recv().unwrap();
        });
        let mut set = WaitSet::new();
        set.add(&tx);
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [0]);
    });
    tx.try_send(&[1u8; 500]).unwrap();
}

#[cfg(unix)]
#[test]
fn a_descriptor_is_a_member_too() {
    use std::io::Write;
    use std::os::fd::AsFd;
    let name = TestName::new("ws-fd");
    let (rx, _tx) = pair(&name);
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            writer.write_all(b"x").unwrap();
        });
        let mut set = WaitSet::new();
        set.add(&rx);
        let i = set.add(reader.as_fd());
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [i]);
    });
}

#[test]
fn an_interrupter_ends_the_wait_from_another_thread() {
    let name = TestName::new("ws-int");
    let (rx, _tx) = pair(&name);
    let stop = Interrupter::new();
    let started = Instant::now();
    std::thread::scope(|s| {
        let raise = stop.clone();
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            raise.interrupt();
        });
        let mut set = WaitSet::new();
        set.add(&rx);
        set.interrupt_on(&stop);
        let e = set.wait_timeout(BOUND).unwrap_err();
        assert!(e.is_interrupted(), "{e}");
    });
    assert!(started.elapsed() < BOUND);

    // A member's own interrupter ends it too, naming the member.
    let stop = rx.interrupter();
    stop.interrupt();
    let mut set = WaitSet::new();
    set.add(&rx);
    let e = set.wait_timeout(BOUND).unwrap_err();
    assert!(
        e.is_interrupted() && e.to_string().contains(name.as_str()),
        "{e}"
    );
}

#[test]
fn a_message_from_another_process_wakes_the_one_member_it_went_to() {
    let names: Vec<TestName> = (0..200)
        .map(|i| TestName::new(&format!("ws-many{i}")))
        .collect();
    let receivers: Vec<Receiver> = names
        .iter()
        .map(|n| {
            ChannelOptions::new()
                .capacity(4096)
                .receiver(n.as_str())
                .unwrap()
        })
        .collect();
    let target = 137;
    let mut child = spawn(ENTRY, "send-later", &[names[target].as_str(), "hello"]);
    assert_eq!(child.expect_line(), "attached");
    let mut receivers = receivers;
    let mut set = WaitSet::new();
    for rx in &mut receivers {
        set.add(rx);
    }
    let started = Instant::now();
    assert_eq!(set.wait_timeout(BOUND).unwrap(), [target]);
    assert!(started.elapsed() < BOUND);
    let rx = set.get_mut::<Receiver>(target).unwrap();
    assert_eq!(rx.try_recv().unwrap(), b"hello");
    // Taken: nothing is ready any more.
    assert!(set
        .wait_timeout(Duration::from_millis(50))
        .unwrap()
        .is_empty());
}

#[test]
fn a_sender_killed_while_the_set_waits_makes_its_receiver_ready() {
    let names: Vec<TestName> = (0..3)
        .map(|i| TestName::new(&format!("ws-kill{i}")))
        .collect();
    let mut receivers: Vec<Receiver> = names
        .iter()
        .map(|n| {
            ChannelOptions::new()
                .capacity(4096)
                .receiver(n.as_str())
                .unwrap()
        })
        .collect();
    let mut child = spawn(ENTRY, "attach", &[names[1].as_str()]);
    assert_eq!(child.expect_line(), "attached");
    let killed_at = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            child.child.kill().unwrap();
            Instant::now()
        });
        let mut set = WaitSet::new();
        for rx in &receivers {
            set.add(rx);
        }
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [1]);
        killer.join().unwrap()
    });
    eprintln!(
        "the death was noticed {:?} after the kill",
        killed_at.elapsed()
    );
    let e = receivers[1].try_recv().unwrap_err();
    assert!(e.is_disconnected(), "{e}");
}

#[test]
fn a_set_is_waited_on_many_times_and_reports_only_what_changed() {
    let names: Vec<TestName> = (0..300)
        .map(|i| TestName::new(&format!("ws-reuse{i}")))
        .collect();
    let mut receivers: Vec<Receiver> = names
        .iter()
        .map(|n| {
            ChannelOptions::new()
                .capacity(4096)
                .receiver(n.as_str())
                .unwrap()
        })
        .collect();
    let mut senders: Vec<Sender> = names
        .iter()
        .map(|n| Sender::connect(n.as_str()).unwrap())
        .collect();
    let mut set = WaitSet::new();
    for rx in &mut receivers {
        set.add(rx);
    }
    assert!(set.get::<Sender>(0).is_none(), "member 0 is a receiver");
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..200usize {
                let i = round * 7 % 300;
                senders[i].send(&round.to_le_bytes()).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let mut got = Vec::new();
        while got.len() < 200 {
            let ready = set.wait_timeout(BOUND).unwrap();
            assert!(!ready.is_empty(), "nothing within {BOUND:?}");
            for i in ready {
                let rx = set.get_mut::<Receiver>(i).unwrap();
                while let Ok(m) = rx.try_recv() {
                    let round = usize::from_le_bytes(m.try_into().unwrap());
                    assert_eq!(round * 7 % 300, i, "message {round} on its channel");
                    got.push(round);
                }
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    });
}

#[test]
fn a_subscriber_whose_publisher_was_killed_is_reported_and_then_disconnected() {
    // A wait set saying "ready" must be followed by a try_recv that does not
    // say "would block" forever (a loop on both would spin).
    let name = TestName::new("ws-pubkill");
    let mut child = spawn(ENTRY, "publish", &[name.as_str()]);
    assert_eq!(child.expect_line(), "attached");
    let mut sub = ChannelOptions::new().subscriber(name.as_str()).unwrap();
    child.child.kill().unwrap();
    child.child.wait().unwrap();
    let mut set = WaitSet::new();
    set.add(&mut sub);
    let started = Instant::now();
    let mut rounds = 0;
    loop {
        assert_eq!(set.wait_timeout(BOUND).unwrap(), [0]);
        rounds += 1;
        let sub = set.get_mut::<shmkit::channel::Subscriber>(0).unwrap();
        match sub.try_recv() {
            Err(e) if e.is_disconnected() => break,
            Err(e) if e.is_would_block() => {
                assert!(started.elapsed() < BOUND, "ready but never disconnected");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(rounds <= 2, "{rounds} rounds of ready-then-would-block");
}

#[cfg(unix)]
#[test]
fn a_ready_descriptor_is_reported_beside_a_ready_channel_and_by_a_zero_timeout() {
    use std::io::Write;
    use std::os::fd::AsFd;
    let name = TestName::new("ws-fd-busy");
    let (mut rx, mut tx) = pair(&name);
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
    writer.write_all(b"x").unwrap();
    tx.send(b"busy").unwrap();
    let mut set = WaitSet::new();
    set.add(&mut rx);
    let fd = set.add(reader.as_fd());
    assert_eq!(set.wait_timeout(BOUND).unwrap(), [0, fd]);
    let rx = set.get_mut::<Receiver>(0).unwrap();
    rx.try_recv().unwrap();
    assert_eq!(set.wait_timeout(Duration::ZERO).unwrap(), [fd]);
}
