//! The receive and send paths allocate nothing, also when they fail for the
//! ordinary reasons (nothing to read, no room, a timeout): a global allocator
//! that counts the allocations of the calling thread proves it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::TestName;
use shmkit::channel::{ChannelOptions, Receiver, Sender};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts (in a thread-local Cell,
// which does not allocate) before doing so.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn pair(name: &TestName) -> (Sender, Receiver) {
    let opts = ChannelOptions::new().capacity(4096);
    let rx = opts.receiver(name.as_str()).unwrap();
    (opts.sender(name.as_str()).unwrap(), rx)
}

#[test]
fn a_million_try_recv_on_an_empty_channel_allocate_nothing() {
    let name = TestName::new("noalloc-empty");
    let (_tx, mut rx) = pair(&name);
    let mut buf = [0u8; 64];
    assert!(rx.try_recv_into(&mut buf).unwrap_err().is_would_block());
    let n = allocations_in(|| {
        for _ in 0..1_000_000 {
            let err = rx.try_recv_into(&mut buf).unwrap_err();
            assert!(err.is_would_block());
        }
    });
    assert_eq!(n, 0, "allocations in a million empty try_recv calls");
}

#[test]
fn timeouts_and_a_full_ring_allocate_nothing() {
    let name = TestName::new("noalloc-full");
    let (mut tx, mut rx) = pair(&name);
    let mut buf = [0u8; 64];
    let n = allocations_in(|| {
        for _ in 0..1_000 {
            let err = rx
                .recv_into_timeout(&mut buf, Duration::from_micros(1))
                .unwrap_err();
            assert!(err.is_timeout());
        }
    });
    assert_eq!(n, 0, "allocations in a thousand receive timeouts");
    while tx.try_send(&[7u8; 64]).is_ok() {}
    let n = allocations_in(|| {
        for _ in 0..1_000_000 {
            assert!(tx.try_send(&[7u8; 64]).unwrap_err().is_would_block());
        }
        for _ in 0..1_000 {
            let err = tx
                .send_timeout(&[7u8; 64], Duration::from_micros(1))
                .unwrap_err();
            assert!(err.is_timeout());
        }
    });
    assert_eq!(n, 0, "allocations on a full ring");
    // And the messages themselves: a send and a receive into a buffer.
    let n = allocations_in(|| {
        for _ in 0..1_000 {
            rx.try_recv_into(&mut buf).unwrap();
            tx.try_send(&[7u8; 64]).unwrap();
        }
    });
    assert_eq!(n, 0, "allocations per message");
}

/// Runs `f` `warm` times (buffers grow to their working size), then `count`
/// times more counting allocations; each run must allocate nothing.
fn steady(what: &str, warm: u32, count: u32, mut f: impl FnMut(u32)) {
    for i in 0..warm {
        f(i);
    }
    let n = allocations_in(|| {
        for i in 0..count {
            f(warm + i);
        }
    });
    assert_eq!(n, 0, "{what}: {n} allocations in {count} messages");
}

/// Every way to send and receive a queue message, once warmed up, allocates
/// nothing per message: so the memory a channel end uses does not grow with
/// the messages sent.
#[test]
fn every_queue_message_path_allocates_nothing_per_message() {
    let name = TestName::new("noalloc-queue");
    let opts = ChannelOptions::new().capacity(64 * 1024);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut tx = opts.sender(name.as_str()).unwrap();
    let msg = [5u8; 100];
    let mut buf = vec![0u8; 1 << 20];
    let t = Duration::from_secs(5);
    steady("send + recv_into", 10, 10_000, |_| {
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv_into(&mut buf).unwrap(), 100);
    });
    steady("send_timeout + recv_into_timeout", 10, 10_000, |_| {
        tx.send_timeout(&msg, t).unwrap();
        rx.recv_into_timeout(&mut buf, t).unwrap();
    });
    steady("try_send + try_recv_with", 10, 10_000, |_| {
        tx.try_send(&msg).unwrap();
        assert_eq!(rx.try_recv_with(|b| b.len()).unwrap(), 100);
    });
    steady("send_pod + recv_pod", 10, 10_000, |i| {
        tx.send_pod(&(i as u64)).unwrap();
        assert_eq!(rx.recv_pod::<u64>().unwrap(), i as u64);
    });
    steady("reserve/commit + recv_with", 10, 10_000, |i| {
        let mut slot = tx.reserve(64).unwrap();
        slot[0] = i as u8;
        slot.commit();
        assert_eq!(rx.recv_with(|b| b[0]).unwrap(), i as u8);
    });
    steady(
        "try_reserve / reserve_timeout + recv_with_timeout",
        10,
        10_000,
        |_| {
            tx.try_reserve(64).unwrap().commit();
            tx.reserve_timeout(64, t).unwrap().commit();
            rx.recv_with_timeout(t, |b| b.len()).unwrap();
            rx.try_recv_into(&mut buf).unwrap();
        },
    );
    // 200 KB: larger than the ring, so sent in fragments while the receiver
    // reassembles; the reassembly buffer is kept for the next long message.
    let long = vec![9u8; 200_000];
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            steady("fragmented send", 3, 200, |_| tx.send(&long).unwrap());
        });
        steady("fragmented recv_into", 3, 200, |_| {
            assert_eq!(rx.recv_into(&mut buf).unwrap(), 200_000);
        });
        sender.join().unwrap();
    });
}

/// Several senders take the producer lock around each message: still nothing
/// allocated per message.
#[test]
fn a_many_sender_queue_allocates_nothing_per_message() {
    let name = TestName::new("noalloc-mpsc");
    let opts = ChannelOptions::new().capacity(4096).max_senders(2);
    let mut rx = opts.receiver(name.as_str()).unwrap();
    let mut a = opts.sender(name.as_str()).unwrap();
    let mut b = opts.sender(name.as_str()).unwrap();
    let mut buf = [0u8; 64];
    steady("two senders", 10, 10_000, |_| {
        a.send(b"from a").unwrap();
        b.try_send(b"from b").unwrap();
        rx.recv_into(&mut buf).unwrap();
        rx.recv_into(&mut buf).unwrap();
    });
}

#[test]
fn broadcast_publish_and_receive_allocate_nothing_per_message() {
    let name = TestName::new("noalloc-broadcast");
    let opts = ChannelOptions::new().capacity(4096);
    let mut publisher = opts.publisher(name.as_str()).unwrap();
    let mut sub = opts.subscriber(name.as_str()).unwrap();
    let msg = [3u8; 40];
    // The publisher's index of records in the ring grows to what the ring
    // holds, then stays: warm up past a few laps.
    steady("publish + recv_with", 1_000, 10_000, |_| {
        publisher.publish(&msg).unwrap();
        assert_eq!(sub.recv_with(|b| b.len()).unwrap(), 40);
    });
    steady("publish + recv_with_timeout", 10, 10_000, |_| {
        publisher.publish(&msg).unwrap();
        sub.recv_with_timeout(Duration::from_secs(5), |b| b.len())
            .unwrap();
    });
}

#[test]
fn request_response_with_lent_buffers_allocates_nothing_per_call() {
    use shmkit::channel::{RpcClient, RpcServer};
    let name = TestName::new("noalloc-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    const CALLS: u32 = 2_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            // The first reply opens the client's reply queue: warm-up.
            steady("respond", 10, CALLS, |_| {
                server
                    .respond(|request, reply| reply.extend_from_slice(request))
                    .unwrap();
            });
        });
        steady("call_with", 10, CALLS, |i| {
            let got = client
                .call_with(&i.to_le_bytes(), |r| {
                    u32::from_le_bytes(r.try_into().unwrap())
                })
                .unwrap();
            assert_eq!(got, i);
        });
    });
}
