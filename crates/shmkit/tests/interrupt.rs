//! Ending a call blocked without a timeout from another thread (`Interrupter`):
//! every channel endpoint and synchronisation object, and the promise that an
//! interrupted call loses nothing.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::TestName;
use shmkit::channel::{ChannelOptions, RpcClient, RpcServer, WaitMode};
use shmkit::sync::{Event, EventMode, Mutex, Semaphore};
use shmkit::{Error, Interrupter};

/// Long enough that the other thread is asleep in its call (the assertion does
/// not depend on it: a call interrupted before it sleeps must end too).
const SETTLE: Duration = Duration::from_millis(150);
/// A bound for an interrupted call to end: far above the worst case (20 ms),
/// only there so that a broken interrupter fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

/// Runs `call` on a thread, interrupts it with `stop` once it is blocked, and
/// returns what the call returned.
fn interrupted<T: Send + 'static>(
    stop: &Interrupter,
    call: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(call());
    });
    thread::sleep(SETTLE);
    assert!(
        result.try_recv().is_err(),
        "the call returned before it was interrupted"
    );
    stop.interrupt();
    result
        .recv_timeout(BOUND)
        .expect("the interrupted call is still blocked")
}

fn assert_interrupted<T: std::fmt::Debug>(r: Result<T, Error>, name: &str, op: &str) {
    let e = r.expect_err("an interrupted call must fail");
    assert!(e.is_interrupted(), "{e}");
    let text = e.to_string();
    assert!(text.contains(name), "{text}");
    assert!(text.contains(op), "{text}");
}

#[test]
fn a_blocked_receive_ends_and_nothing_is_lost() {
    let name = TestName::new("int-recv");
    let mut rx = ChannelOptions::new().receiver(name.as_str()).unwrap();
    let mut tx = ChannelOptions::new().sender(name.as_str()).unwrap();
    let stop = rx.interrupter();
    let (back, rx_back) = mpsc::channel();
    let r = interrupted(&stop, move || {
        let r = rx.recv();
        back.send(rx).unwrap();
        r
    });
    assert_interrupted(r, name.as_str(), "receive");
    let mut rx = rx_back.recv().unwrap();

    // Sticky: a later blocking call ends at once, until cleared.
    assert!(rx.recv().unwrap_err().is_interrupted());
    assert!(stop.is_interrupted());
    // A message already queued is still delivered (no wait needed), and the
    // interrupt took nothing from the ring.
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv().unwrap(), b"after");
    stop.clear();
    assert!(rx
        .recv_timeout(Duration::from_millis(30))
        .unwrap_err()
        .is_timeout());
    tx.send(b"again").unwrap();
    assert_eq!(rx.recv().unwrap(), b"again");
}

#[test]
fn a_busy_polling_receive_ends_too() {
    let name = TestName::new("int-busy");
    let opts = ChannelOptions::new().wait_mode(WaitMode::BusyPoll);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let _tx = opts.sender(name.as_str()).unwrap();
    let stop = rx.interrupter();
    assert_interrupted(
        interrupted(&stop, move || rx.recv()),
        name.as_str(),
        "receive",
    );
}

#[test]
fn a_sender_waiting_for_room_ends() {
    let name = TestName::new("int-send");
    let opts = ChannelOptions::new().capacity(4096).max_senders(1);
    let _rx = opts.receiver(name.as_str()).unwrap();
    let mut tx = opts.sender(name.as_str()).unwrap();
    while tx.try_send(&[7; 512]).is_ok() {}
    let stop = tx.interrupter();
    assert_interrupted(
        interrupted(&stop, move || tx.send(&[7; 512])),
        name.as_str(),
        "send",
    );
}

#[test]
fn a_sender_waiting_for_the_other_senders_lock_ends() {
    let name = TestName::new("int-lock");
    let opts = ChannelOptions::new().capacity(4096).max_senders(4);
    let _rx = opts.receiver(name.as_str()).unwrap();
    let mut first = opts.sender(name.as_str()).unwrap();
    let mut second = opts.sender(name.as_str()).unwrap();
    // The first sender holds the producer lock through its open reservation.
    let reservation = first.reserve(8).unwrap();
    let stop = second.interrupter();
    let r = interrupted(&stop, move || second.send(&[2; 512]));
    assert_interrupted(r, name.as_str(), "send");
    reservation.commit();
}

#[test]
fn a_blocked_subscriber_ends() {
    let name = TestName::new("int-sub");
    let _publisher = ChannelOptions::new().publisher(name.as_str()).unwrap();
    let mut sub = ChannelOptions::new().subscriber(name.as_str()).unwrap();
    let stop = sub.interrupter();
    assert_interrupted(
        interrupted(&stop, move || sub.recv()),
        name.as_str(),
        "receive",
    );
}

#[test]
fn a_blocked_rpc_server_and_client_end() {
    let name = TestName::new("int-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let stop = server.interrupter();
    let (back, server_back) = mpsc::channel();
    let r = interrupted(&stop, move || {
        let r = server.recv();
        back.send(server).unwrap();
        r
    });
    assert_interrupted(r, name.as_str(), "receive");
    let server = server_back.recv().unwrap();

    // Nobody answers: the client waits for its reply until interrupted.
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    let stop = client.interrupter();
    let r = interrupted(&stop, move || client.call(b"ping"));
    let e = r.unwrap_err();
    assert!(e.is_interrupted(), "{e}");
    drop(server);
}

#[test]
fn a_blocked_mutex_lock_ends() {
    let name = TestName::new("int-mutex");
    let mutex = std::sync::Arc::new(Mutex::create(name.as_str(), 0u64).unwrap());
    let guard = mutex.lock().unwrap();
    let stop = mutex.interrupter();
    let other = mutex.clone();
    let r = interrupted(&stop, move || other.lock().map(|_| ()).map_err(Error::from));
    assert_interrupted(r, name.as_str(), "lock");
    drop(guard);
    // The lock itself was never disturbed: free, and takeable once cleared.
    stop.clear();
    drop(mutex.try_lock().unwrap());
}

#[test]
fn a_blocked_semaphore_and_event_wait_end() {
    let name = TestName::new("int-sem");
    let sem = std::sync::Arc::new(Semaphore::create(name.as_str(), 0, 4).unwrap());
    let stop = sem.interrupter();
    let other = sem.clone();
    assert_interrupted(
        interrupted(&stop, move || other.wait()),
        name.as_str(),
        "take a unit",
    );

    let name = TestName::new("int-event");
    let event =
        std::sync::Arc::new(Event::create(name.as_str(), EventMode::ManualReset, false).unwrap());
    let stop = event.interrupter();
    let other = event.clone();
    assert_interrupted(
        interrupted(&stop, move || other.wait()),
        name.as_str(),
        "see the event set",
    );
}

#[test]
fn an_interrupter_outlives_its_object() {
    let name = TestName::new("int-outlive");
    let rx = ChannelOptions::new().receiver(name.as_str()).unwrap();
    let stop = rx.interrupter();
    drop(rx);
    stop.interrupt();
    assert!(stop.is_interrupted());
}
