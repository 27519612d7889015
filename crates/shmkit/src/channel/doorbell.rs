//! Sleeping until the other side of a channel has done something, without making
//! the other side pay for a system call when nobody sleeps.
//!
//! A doorbell is two words: a *signal* (the futex word) and a *waiter count*. The
//! side that publishes (a new head, a new tail) writes its index with a
//! sequentially consistent swap, then reads the waiter count; only if it is not
//! zero does it bump the signal and wake. The side that waits first spins (the
//! other side usually answers within microseconds, and waking a sleeper costs tens
//! of them), then registers in the waiter count, reads the signal, checks its
//! condition once more and sleeps only while the signal still holds what it read.
//! Either the publisher sees the waiter, or the waiter sees the published index:
//! no lost wake-up, which the loom model below checks.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use crate::sync::protocol::{Park, Word};

/// How a blocking call waits and how often it looks at its peer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// How long to spin before sleeping; `None` spins until done (busy poll).
    pub spin: Option<Duration>,
    /// When to give up.
    pub deadline: Option<Instant>,
    /// How often `idle` (the peer liveness check) runs while waiting.
    pub check_every: Duration,
}

/// A doorbell's two words and the way to sleep on the signal.
pub(crate) struct Doorbell<'a, W, P> {
    pub signal: &'a W,
    pub waiters: &'a W,
    pub park: &'a P,
}

/// How many spin attempts between clock readings.
const SPIN_BATCH: u32 = 32;

impl<W: Word, P: Park<W>> Doorbell<'_, W, P> {
    /// Wakes every sleeper, if any. Call after publishing the new index with a
    /// SeqCst swap. (A swap, not a store: loom, which models SeqCst as
    /// acquire/release, finds a lost wake-up with a store; x86 compiles a SeqCst
    /// store to the same `xchg` anyway.)
    #[inline]
    pub(crate) fn ring(&self) {
        let sleeping = self.waiters.load(SeqCst);
        if sleeping != 0 {
            self.signal.fetch_add(1, SeqCst);
            self.park.wake(self.signal, sleeping);
        }
    }

    /// Calls `ready` until it returns `Some`, spinning and then sleeping between
    /// tries; `None` at the deadline. `idle` runs about every `check_every` and may
    /// end the wait (with the peer found dead, say).
    ///
    /// `ready(thorough)`: while spinning, most calls pass `false` and may look
    /// only at what is cheapest to watch; every call that decides about sleeping
    /// (and one in every batch of spins) passes `true` and must then read the
    /// index it waits for with a SeqCst (or stronger) load.
    pub(crate) fn wait<R>(
        &self,
        schedule: &Schedule,
        mut ready: impl FnMut(bool) -> Option<R>,
        mut idle: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        // Not thorough: the other side's index lives on a cache line of its own,
        // and reading it on every call would make it bounce on every message.
        if let Some(r) = ready(false) {
            return Some(r);
        }
        if schedule.spin != Some(Duration::ZERO) {
            // The answer often comes within a few tries: look before reading the
            // clock, which costs as much as several tries.
            for _ in 0..SPIN_BATCH {
                std::hint::spin_loop();
                if let Some(r) = ready(false) {
                    return Some(r);
                }
            }
        }
        let started = Instant::now();
        let mut last_idle = started;
        if schedule.spin != Some(Duration::ZERO) {
            loop {
                for i in 0..SPIN_BATCH {
                    std::hint::spin_loop();
                    if let Some(r) = ready(i == 0) {
                        return Some(r);
                    }
                }
                let now = Instant::now();
                if schedule.deadline.is_some_and(|d| now >= d) {
                    return None;
                }
                if now.duration_since(last_idle) >= schedule.check_every {
                    last_idle = now;
                    if let Some(r) = idle() {
                        return Some(r);
                    }
                }
                if schedule
                    .spin
                    .is_some_and(|spin| now.duration_since(started) >= spin)
                {
                    break;
                }
            }
        }
        self.waiters.fetch_add(1, SeqCst);
        let result = loop {
            let seen = self.signal.load(SeqCst);
            if let Some(r) = ready(true) {
                break Some(r);
            }
            let now = Instant::now();
            let since = now.duration_since(last_idle);
            if since >= schedule.check_every {
                last_idle = now;
                if let Some(r) = idle() {
                    break Some(r);
                }
            }
            let mut nap = schedule.check_every.saturating_sub(since);
            if nap.is_zero() {
                nap = schedule.check_every;
            }
            if let Some(d) = schedule.deadline {
                let left = d.saturating_duration_since(now);
                if left.is_zero() {
                    break None;
                }
                nap = nap.min(left);
            }
            self.park.wait(self.signal, seen, Some(nap));
        };
        self.waiters.fetch_sub(1, SeqCst);
        result
    }
}

#[cfg(all(test, target_os = "linux"))]
mod model {
    //! The channel's index protocol (a one-slot ring: head and tail, each side
    //! publishing its index and ringing the other's doorbell; the receiver looks
    //! at the stamped header first and at the head before sleeping) run by loom
    //! over every interleaving within its bounds. A lost wake-up would leave a side
    //! asleep forever, which loom reports as a deadlock.

    use super::*;
    use crate::sync::protocol::model::{check, Futex};
    use loom::sync::atomic::AtomicU32 as LoomU32;
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use loom::thread;

    #[derive(Default)]
    struct Ring {
        head: AtomicU64,
        tail: AtomicU64,
        slot: AtomicU64,
        /// The record header: its stamp is the position after it, here.
        header: AtomicU64,
        data_signal: LoomU32,
        data_waiters: LoomU32,
        space_signal: LoomU32,
        space_waiters: LoomU32,
        data_futex: Futex,
        space_futex: Futex,
    }

    impl Ring {
        fn data(&self) -> Doorbell<'_, LoomU32, Futex> {
            Doorbell {
                signal: &self.data_signal,
                waiters: &self.data_waiters,
                park: &self.data_futex,
            }
        }
        fn space(&self) -> Doorbell<'_, LoomU32, Futex> {
            Doorbell {
                signal: &self.space_signal,
                waiters: &self.space_waiters,
                park: &self.space_futex,
            }
        }
    }

    fn forever() -> Schedule {
        Schedule {
            spin: Some(Duration::ZERO),
            deadline: None,
            check_every: Duration::from_secs(3600),
        }
    }

    /// loom models SeqCst loads as acquire loads; a read-modify-write always sees
    /// the latest value, which is what SeqCst guarantees here. Indices are
    /// published with swaps, as the channel code does.
    fn load(word: &AtomicU64) -> u64 {
        word.fetch_add(0, SeqCst)
    }

    #[test]
    fn two_messages_through_a_one_slot_ring_never_lose_a_wake_up() {
        check(|| {
            let ring = Arc::new(Ring::default());
            let producer = {
                let ring = ring.clone();
                thread::spawn(move || {
                    for value in 1..=2u64 {
                        let head = value - 1;
                        // Wait for room: the ring holds one message.
                        ring.space()
                            .wait(
                                &forever(),
                                |_| (head - load(&ring.tail) < 1).then_some(()),
                                || None,
                            )
                            .unwrap();
                        ring.slot
                            .store(value * 10, std::sync::atomic::Ordering::Relaxed);
                        ring.header
                            .store(head + 1, std::sync::atomic::Ordering::Release);
                        ring.head.swap(head + 1, SeqCst);
                        ring.data().ring();
                    }
                })
            };
            for tail in 0..2u64 {
                // As the receiver does: the fast look reads only the header; the
                // thorough one (every sleep decision) reads the head first.
                let ready = |thorough: bool| {
                    let published = thorough && load(&ring.head) > tail;
                    let stamped =
                        ring.header.load(std::sync::atomic::Ordering::Acquire) == tail + 1;
                    assert!(!published || stamped, "head moved before the header");
                    stamped.then_some(())
                };
                ring.data().wait(&forever(), ready, || None).unwrap();
                let got = ring.slot.load(std::sync::atomic::Ordering::Relaxed);
                assert_eq!(got, (tail + 1) * 10, "payload published before its head");
                ring.tail.swap(tail + 1, SeqCst);
                ring.space().ring();
            }
            producer.join().unwrap();
        });
    }
}
