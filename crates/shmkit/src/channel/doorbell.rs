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

use crate::sync::protocol::{self, Attempt, Park, Plan, Stop, Word};

/// A doorbell's two words and the way to sleep on the signal.
pub(crate) struct Doorbell<'a, W, P> {
    pub signal: &'a W,
    pub waiters: &'a W,
    pub park: &'a P,
}

impl<W: Word, P: Park<W>> Doorbell<'_, W, P> {
    /// Wakes every sleeper, if any. Call after publishing the new index with a
    /// SeqCst swap. (A swap, not a store: loom, which models SeqCst as
    /// acquire/release, finds a lost wake-up with a store; x86 compiles a SeqCst
    /// store to the same `xchg` anyway.)
    #[inline]
    pub(crate) fn ring(&self) {
        let sleeping = self.waiters.load(SeqCst);
        if sleeping != 0 {
            wake(self.signal, self.park, sleeping);
        }
    }

    /// Sets the waiter count to zero. Only for the one process that can be
    /// waiting on this doorbell, when it attaches: a count it finds was left by a
    /// predecessor killed in its sleep.
    pub(crate) fn forget_waiters(&self) {
        self.waiters.swap(0, SeqCst);
    }

    /// Calls `ready` until it returns `Some`, spinning and then sleeping between
    /// tries (the shared wait loop, [`protocol::wait`]); [`Stop`] at the deadline
    /// or when interrupted.
    /// `idle` runs about every `plan.check_every` and may end the wait (with the
    /// peer found dead, say).
    ///
    /// `ready(thorough)`: while spinning, most calls pass `false` and may look
    /// only at what is cheapest to watch; every call that decides about sleeping
    /// (and one in every batch of spins) passes `true` and must then read the
    /// index it waits for with a SeqCst (or stronger) load.
    pub(crate) fn wait<R>(
        &self,
        plan: &Plan,
        mut ready: impl FnMut(bool) -> Option<R>,
        mut idle: impl FnMut() -> Option<R>,
    ) -> Result<R, Stop> {
        let attempt = |thorough: bool| {
            // The signal is read before the condition: a ring between the two
            // changes it, and the sleep then returns at once.
            let seen = if thorough {
                self.signal.load(SeqCst)
            } else {
                0
            };
            match ready(thorough) {
                Some(r) => Attempt::Done(r),
                None => Attempt::Sleep(seen),
            }
        };
        protocol::wait(
            self.signal,
            self.waiters,
            self.park,
            plan,
            true,
            attempt,
            |_| idle(),
        )
    }
}

/// The rare half of [`Doorbell::ring`], out of line (and taking only what it
/// needs, so the ringing side builds nothing for it): keeps the hot paths small.
#[cold]
#[inline(never)]
fn wake<W: Word, P: Park<W>>(signal: &W, park: &P, sleeping: u32) {
    signal.fetch_add(1, SeqCst);
    park.wake(signal, sleeping);
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

    fn forever() -> Plan<'static> {
        Plan {
            spin: protocol::Spin::For(std::time::Duration::ZERO),
            deadline: None,
            check_every: None,
            interrupt: None,
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
