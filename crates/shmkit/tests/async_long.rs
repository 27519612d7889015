//! `send_async` with messages longer than the ring: fragments sent over many
//! polls, whole or not at all, also with several senders at once.

mod common;

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use common::TestName;
use shmkit::channel::{ChannelOptions, Receiver, Sender};

/// Message `i` of `len` bytes: every byte depends on its index and on `i`.
fn message(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k as u8).wrapping_mul(7) ^ i).collect()
}

#[test]
fn a_message_longer_than_the_ring_goes_out_whole() {
    let name = TestName::new("al-long");
    let mut rx = ChannelOptions::new()
        .capacity(16 * 1024)
        .max_message(4 << 20)
        .receiver(name.as_str())
        .unwrap();
    let mut tx = Sender::connect(name.as_str()).unwrap();
    assert!(tx.max_record() < 100_000);
    let sizes = [100_000usize, 3 << 20, 10, 70_000];
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, &len) in sizes.iter().enumerate() {
                assert_eq!(
                    rx.recv_timeout(Duration::from_secs(30)).unwrap(),
                    message(i as u8, len)
                );
            }
        });
        shmkit::block_on(async {
            for (i, &len) in sizes.iter().enumerate() {
                tx.send_async(&message(i as u8, len)).await.unwrap();
            }
        });
    });
}

#[test]
fn two_senders_interleave_whole_long_messages() {
    let name = TestName::new("al-mpsc");
    let mut rx = ChannelOptions::new()
        .capacity(16 * 1024)
        .max_message(1 << 20)
        .max_senders(2)
        .receiver(name.as_str())
        .unwrap();
    let opts = ChannelOptions::new().max_senders(2);
    let mut a = opts.sender(name.as_str()).unwrap();
    let mut b = opts.sender(name.as_str()).unwrap();
    std::thread::scope(|s| {
        for (tx, tag) in [(&mut a, 1u8), (&mut b, 2u8)] {
            s.spawn(move || {
                shmkit::block_on(async {
                    for k in 0..5 {
                        tx.send_async(&message(tag * 16 + k, 50_000)).await.unwrap();
                    }
                })
            });
        }
        let mut next = [0u8; 3];
        for _ in 0..10 {
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(m.len(), 50_000);
            let id = m[0];
            let (tag, k) = (id / 16, id % 16);
            assert_eq!(k, next[tag as usize], "sender {tag}'s messages in order");
            next[tag as usize] += 1;
            assert_eq!(m, message(id, 50_000), "message {id} whole");
        }
    });
}

#[test]
fn a_long_send_dropped_halfway_is_not_delivered_and_the_next_is() {
    let name = TestName::new("al-drop");
    let mut rx: Receiver = ChannelOptions::new()
        .capacity(16 * 1024)
        .max_message(1 << 20)
        .receiver(name.as_str())
        .unwrap();
    let mut tx = Sender::connect(name.as_str()).unwrap();
    {
        let long = message(1, 200_000);
        let mut fut = Box::pin(tx.send_async(&long));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The ring fills with the first fragments; nobody reads yet.
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    let next = message(2, 30_000);
    std::thread::scope(|s| {
        s.spawn(|| shmkit::block_on(tx.send_async(&next)).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), next);
    });
    assert!(rx.try_recv().unwrap_err().is_would_block());
}

#[test]
fn long_requests_and_replies_over_async_rpc() {
    use shmkit::channel::{RpcClient, RpcServer};
    let name = TestName::new("al-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    let request = message(3, 150_000);
    let reply = message(4, 600_000);
    std::thread::scope(|s| {
        s.spawn(|| {
            shmkit::block_on(async {
                let got = server.recv_async().await.unwrap();
                assert_eq!(got.payload(), &request[..]);
                server.reply_async(&got, &reply).await.unwrap();
            })
        });
        let answer = shmkit::block_on(client.call_async(&request)).unwrap();
        assert_eq!(answer, reply);
    });
}

/// The poll-style RPC calls of event-loop bindings: a server killed before it
/// ever replied wakes a client's pending `poll_reply_with` (its exit is
/// watched), and `poll_start_call`/`poll_reply` carry a call through.
#[test]
fn poll_style_rpc_calls() {
    use shmkit::channel::{RpcClient, RpcServer};
    use shmkit::Notifier;
    let name = TestName::new("al-poll-rpc");
    let mut server = RpcServer::bind(name.as_str()).unwrap();
    let mut client = RpcClient::connect(name.as_str()).unwrap();
    let notifier = Notifier::new().unwrap();
    let waker = notifier.waker();
    let mut cx = Context::from_waker(&waker);
    let Poll::Ready(Ok(call)) = client.poll_start_call(&mut cx, b"ping") else {
        panic!("the request queue had room");
    };
    assert!(client
        .poll_reply_with(&mut cx, call, |r| r.to_vec())
        .is_pending());
    let request = server.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut scx = Context::from_waker(std::task::Waker::noop());
    assert!(matches!(
        server.poll_reply(&mut scx, &request, b"pong"),
        Poll::Ready(Ok(()))
    ));
    shmkit::block_on(std::future::poll_fn(|cx| {
        client.poll_reply_with(cx, call, |r| assert_eq!(r, b"pong"))
    }))
    .unwrap();
    drop(server);
    // The server is gone before this call was answered: the pending poll is
    // woken and reports it.
    let Poll::Ready(Ok(call)) = client.poll_start_call(&mut cx, b"again") else {
        panic!("the request queue had room");
    };
    let r = shmkit::block_on(std::future::poll_fn(|cx| {
        client.poll_reply_with(cx, call, |r| r.to_vec())
    }));
    assert!(r.unwrap_err().is_disconnected());
}

/// A waker that, when the interrupt wakes it, drops another future waiting on
/// the same object (as an executor cancelling a sibling task may): the
/// interrupt must not hold its list of wakers while it calls them (that
/// future's drop takes its waker out of the list: a deadlock before).
#[test]
fn an_interrupt_waker_may_drop_a_sibling_future() {
    use shmkit::sync::Semaphore;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    type Boxed = Pin<Box<dyn Future<Output = shmkit::Result<()>> + Send>>;
    struct DropSibling(Mutex<Option<Boxed>>);
    impl Wake for DropSibling {
        fn wake(self: Arc<Self>) {
            self.0.lock().unwrap().take();
        }
    }

    let name = TestName::new("al-int-reenter");
    let sem = Arc::new(Semaphore::create(name.as_str(), 0, 1).unwrap());
    let stop = sem.interrupter();
    let wait = |s: &Arc<Semaphore>| -> Boxed {
        let s = s.clone();
        Box::pin(async move { s.wait_async().await })
    };
    let mut sibling = wait(&sem);
    let noop = Context::from_waker(std::task::Waker::noop());
    let mut cx = noop;
    assert!(sibling.as_mut().poll(&mut cx).is_pending());
    let dropper = Arc::new(DropSibling(Mutex::new(Some(sibling))));
    let waker = Waker::from(dropper.clone());
    let mut first = wait(&sem);
    assert!(first
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        stop.interrupt();
        let _ = done.send(());
    });
    if finished.recv_timeout(Duration::from_secs(10)).is_err() {
        // Dropping `first` would wait for the same lock: leave it.
        std::mem::forget(first);
        panic!("interrupting deadlocked in a waker that drops a sibling wait");
    }
    assert!(dropper.0.lock().unwrap().is_none(), "the waker ran");
    let r = first.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(
        matches!(r, Poll::Ready(Err(ref e)) if e.is_interrupted()),
        "{r:?}"
    );
}
