//! Guards that own their object: `Mutex::lock_arc` and `Sender::reserve_owned`,
//! what bindings keep between calls instead of self-referential borrows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestName;
use shmkit::channel::ChannelOptions;
use shmkit::sync::Mutex;

#[test]
fn an_owned_reservation_commits_cancels_and_gives_the_sender_back() {
    let name = TestName::new("own-res");
    let opts = ChannelOptions::new().capacity(4096);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let tx = opts.sender(name.as_str()).unwrap();

    let mut slot = tx.reserve_owned(3).unwrap();
    slot.copy_from_slice(b"one");
    let tx = slot.commit();
    assert_eq!(rx.recv().unwrap(), b"one");

    let mut slot = tx.reserve_owned(3).unwrap();
    slot.copy_from_slice(b"two");
    let mut tx = slot.cancel();
    assert!(
        rx.try_recv().unwrap_err().is_would_block(),
        "cancelled: nothing sent"
    );
    tx.send(b"three").unwrap();
    assert_eq!(rx.recv().unwrap(), b"three");

    // A full ring: the sender comes back with the error.
    while tx.try_send(&[0; 256]).is_ok() {}
    let (tx, e) = tx.try_reserve_owned(256).unwrap_err();
    assert!(e.is_would_block(), "{e}");
    let (tx, e) = tx
        .reserve_owned_timeout(256, Duration::from_millis(20))
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");

    // Dropping a reservation cancels it and closes the sender.
    while rx.try_recv().is_ok() {}
    drop(tx.reserve_owned(8).unwrap());
    assert!(rx.recv().unwrap_err().is_disconnected());
}

#[test]
fn an_owned_reservation_holds_the_other_senders_off_until_it_ends() {
    let name = TestName::new("own-lock");
    let opts = ChannelOptions::new().capacity(4096).max_senders(4);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let first = opts.sender(name.as_str()).unwrap();
    let mut second = opts.sender(name.as_str()).unwrap();
    let mut slot = first.reserve_owned(5).unwrap();
    // The reservation holds the producer lock: the second sender cannot start.
    assert!(second
        .send_timeout(b"later", Duration::from_millis(30))
        .unwrap_err()
        .is_timeout());
    slot.copy_from_slice(b"first");
    // Committed on another thread: the reservation owns everything it needs.
    let first = std::thread::spawn(move || slot.commit()).join().unwrap();
    second.send(b"later").unwrap();
    assert_eq!(rx.recv().unwrap(), b"first");
    assert_eq!(rx.recv().unwrap(), b"later");
    // Cancelled, the lock is free again too.
    let second_slot = first.reserve_owned(1).unwrap();
    let _first = second_slot.cancel();
    second.send(b"free").unwrap();
    assert_eq!(rx.recv().unwrap(), b"free");
}

#[test]
fn an_arc_guard_unlocks_on_any_thread() {
    let name = TestName::new("own-mutex");
    let mutex = Arc::new(Mutex::create(name.as_str(), 0u32).unwrap());
    let mut guard = mutex.lock_arc().unwrap();
    *guard = 7;
    assert!(mutex.try_lock_arc().is_err(), "held");
    std::thread::spawn(move || drop(guard)).join().unwrap();
    let guard = mutex.lock_arc_timeout(Duration::from_millis(100)).unwrap();
    assert_eq!(*guard, 7);
    assert!(Arc::ptr_eq(guard.mutex(), &mutex));
}
