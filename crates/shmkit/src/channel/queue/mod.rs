//! The queue channel: one receiver, one or many senders, every message delivered
//! once, whole and in order.
//!
//! The ring holds records (`layout.rs`). A sender writes a record past the head,
//! which nobody reads, its header last, and then moves the head; the receiver
//! reads the record at its tail once its header is stamped for that position, and
//! then moves the tail (the head matters to the receiver only before it sleeps,
//! and as a check against corruption). A message longer
//! than a record is sent as fragments, which the receiver puts back together
//! before handing out anything: a sender that dies halfway leaves no partial
//! message behind. With more than one sender, senders take the channel's producer
//! lock around a message.

mod recv;
mod send;

pub use recv::Receiver;
pub use send::{OwnedReservation, Reservation, Sender};

use super::layout::Flavour;
use super::memory::{Asked, ChannelMem, Config};
use super::{ChannelOptions, DEFAULT_CAPACITY, DEFAULT_MAX_MESSAGE};
use crate::error::Result;

pub(crate) fn open_queue(name: &str, opts: &ChannelOptions) -> Result<ChannelMem> {
    let cfg = Config {
        flavour: Flavour::Queue,
        capacity: opts.capacity.unwrap_or(DEFAULT_CAPACITY),
        max_message: opts.max_message.unwrap_or(DEFAULT_MAX_MESSAGE),
        slots: opts.max_senders.unwrap_or(1).saturating_add(1),
        lifetime: opts.lifetime,
        mode: opts.mode,
        asked: Asked::from_options(opts, opts.max_senders),
        read_only_ring: false,
    };
    ChannelMem::attach(name, opts.attach, &cfg)
}

/// Places where a test can run code in the middle of a receive, to make a race
/// that is otherwise a matter of luck happen every time.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::cell::RefCell;

    type Hook = Box<dyn FnOnce()>;

    thread_local! {
        static BEFORE_PAD_RELEASE: RefCell<Option<Hook>> = RefCell::new(None);
        static BEFORE_FRAGMENT_RELEASE: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    /// Runs `f` (on this thread, until replaced) after the receiver has read a
    /// later fragment of a message and before it releases it.
    pub(crate) fn set_before_fragment_release(f: impl FnMut() + 'static) {
        BEFORE_FRAGMENT_RELEASE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub(crate) fn before_fragment_release() {
        let hook = BEFORE_FRAGMENT_RELEASE.with(|h| h.borrow_mut().take());
        if let Some(mut f) = hook {
            // Put back before running: `f` may unwind, ending the receive.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut f));
            BEFORE_FRAGMENT_RELEASE.with(|h| *h.borrow_mut() = Some(f));
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Runs `f` (once, on this thread) after the receiver has read a pad and
    /// before it releases it.
    pub(crate) fn set_before_pad_release(f: impl FnOnce() + 'static) {
        BEFORE_PAD_RELEASE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub(crate) fn before_pad_release() {
        if let Some(f) = BEFORE_PAD_RELEASE.with(|h| h.borrow_mut().take()) {
            f();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::Shm;

    pub(super) struct Removed(pub(super) String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = Shm::remove(&self.0);
        }
    }

    /// A receiver that dies (here: unwinds out of `recv`, dropping its state)
    /// while putting a message together: the next receiver gets the whole
    /// message if it was held (at most half the ring), and otherwise finds it
    /// lost, counted once.
    fn receiver_dies_before_the_last_fragment(
        len: usize,
        later_fragments: u32,
    ) -> (Option<Vec<u8>>, u64) {
        let name = Removed(format!("t-unit-frag-{len}-{}", std::process::id()));
        let opts = ChannelOptions::new().capacity(4096);
        let mut tx = opts.sender(&name.0).unwrap();
        let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
        tx.send(&message).unwrap(); // fits the ring: sent whole at once
        tx.send(b"next").unwrap();
        let mut rx = opts.receiver(&name.0).unwrap();
        let mut fragments = 0;
        test_hooks::set_before_fragment_release(move || {
            fragments += 1;
            assert!(
                fragments < later_fragments,
                "the receiver dies before releasing the last fragment"
            );
        });
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.try_recv()));
        assert!(died.is_err());
        test_hooks::set_before_fragment_release(|| {});
        drop(rx);
        let mut rx = opts.receiver(&name.0).unwrap();
        let first = match rx.try_recv() {
            Ok(m) => m,
            // A message that was not held is reported lost, once, and the next
            // call goes on after it.
            Err(e) if e.is_lost() => {
                assert!(e.to_string().contains("1 message(s) lost"), "{e}");
                let next = rx.try_recv().unwrap();
                assert_eq!(next, b"next");
                return (None, crate::channel::inspect(&name.0).unwrap().lost);
            }
            Err(e) => panic!("{e}"),
        };
        let lost = crate::channel::inspect(&name.0).unwrap().lost;
        assert_ne!(first, b"next", "a message lost without being reported");
        assert_eq!(first, message);
        assert_eq!(rx.try_recv().unwrap(), b"next");
        (Some(first), lost)
    }

    #[test]
    fn a_held_message_survives_its_receiver() {
        // 3000 bytes: three records (first, middle, last), about 3 KiB; held
        // until handed over (of the 4 KiB ring, half is passed only when the
        // last fragment is released).
        let (whole, lost) = receiver_dies_before_the_last_fragment(3000, 2);
        assert!(whole.is_some(), "the held message was lost");
        assert_eq!(lost, 0);
    }

    #[test]
    fn a_message_too_long_to_hold_is_counted_as_lost() {
        // 3500 bytes: four records; the hold is given up past half the ring,
        // at the second middle fragment, before the last one is read.
        let (whole, lost) = receiver_dies_before_the_last_fragment(3500, 3);
        assert!(whole.is_none());
        assert_eq!(lost, 1);
    }

    /// Defect: a reservation dropped after it padded the ring left the shared
    /// head before the pad; the next sender wrote its record over the pad that
    /// the receiver had just read, and the receiver jumped past it: lost.
    #[test]
    fn a_dropped_reservation_that_padded_the_ring_loses_no_later_message() {
        let name = Removed(format!("t-unit-pad-{}", std::process::id()));
        let opts = ChannelOptions::new().capacity(256).max_senders(2);
        let mut rx = opts.receiver(&name.0).unwrap();
        let mut a = opts.sender(&name.0).unwrap();
        let mut b = opts.sender(&name.0).unwrap();
        // Seven 32-byte records (8 header + 24 payload): the head at 224, 32 bytes
        // before the ring's end, everything read.
        for i in 0..7u8 {
            a.send(&[i; 24]).unwrap();
            assert_eq!(rx.try_recv().unwrap(), [i; 24]);
        }
        // 40 bytes do not fit in the 32 left: A pads to the end, then gives up.
        drop(a.try_reserve(40).unwrap());
        // While the receiver holds the pad it has read, B sends.
        let sent = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = sent.clone();
        test_hooks::set_before_pad_release(move || {
            b.send(b"from B").unwrap();
            flag.set(true);
        });
        let got = rx.try_recv();
        let got = match got {
            Ok(m) => m,
            // The hook ran inside this call; B's message comes with the next.
            Err(e) if e.is_would_block() => rx.try_recv().unwrap(),
            Err(e) => panic!("{e}"),
        };
        assert!(sent.get(), "the receiver never read the pad");
        assert_eq!(got, b"from B");
    }
}
