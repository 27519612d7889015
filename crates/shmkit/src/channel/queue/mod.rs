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

use std::time::{Duration, Instant};

pub use recv::Receiver;
pub use send::{Reservation, Sender};

use super::layout::Flavour;
use super::memory::{ChannelMem, Config};
use super::{ChannelOptions, WaitMode};
use crate::error::{Error, Result};

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// Not at all.
    Now,
    /// Until this instant; the duration is the caller's timeout, for the error.
    At(Instant, Duration),
    /// As long as it takes.
    Never,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        match Instant::now().checked_add(timeout) {
            Some(at) => Deadline::At(at, timeout),
            None => Deadline::Never,
        }
    }

    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Deadline::Now => Some(Instant::now()),
            Deadline::At(at, _) => Some(at),
            Deadline::Never => None,
        }
    }

    pub(crate) fn expired(self, object: &str, op: &'static str) -> Error {
        match self {
            Deadline::At(_, after) => Error::Timeout {
                object: object.to_owned(),
                op,
                after,
            },
            _ => Error::WouldBlock {
                object: object.to_owned(),
                op,
            },
        }
    }
}

pub(crate) fn spin_of(mode: WaitMode) -> Option<Duration> {
    match mode {
        WaitMode::Blocking { spin } => Some(spin),
        WaitMode::BusyPoll => None,
    }
}

pub(crate) fn corrupt(mem: &ChannelMem, reason: String) -> Error {
    Error::CorruptState {
        object: mem.name().to_owned(),
        reason,
    }
}

pub(crate) fn open_queue(name: &str, opts: &ChannelOptions) -> Result<ChannelMem> {
    let cfg = Config {
        flavour: Flavour::Queue,
        capacity: opts.capacity,
        max_message: opts.max_message,
        slots: opts.max_senders.saturating_add(1),
        lifetime: opts.lifetime,
        mode: opts.mode,
    };
    ChannelMem::attach(name, opts.attach, &cfg)
}
