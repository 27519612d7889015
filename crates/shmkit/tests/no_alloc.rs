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
