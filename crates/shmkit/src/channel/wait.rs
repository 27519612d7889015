//! How long a channel call may wait, and how it spins before sleeping.

use std::time::{Duration, Instant};

use super::WaitMode;
use crate::error::{Error, ObjectName};
use crate::sync::protocol::Stop;

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

    /// The error for a call that found no room or nothing to read by its
    /// deadline. Allocates nothing: the name is shared.
    pub(crate) fn expired(self, object: &ObjectName, op: &'static str) -> Error {
        match self {
            Deadline::At(_, after) => Error::Timeout {
                object: object.clone(),
                op,
                after,
            },
            _ => Error::WouldBlock {
                object: object.clone(),
                op,
            },
        }
    }
}

impl Deadline {
    /// The error for a wait that stopped without a result: at its deadline, or
    /// interrupted.
    pub(crate) fn stopped(self, stop: Stop, object: &ObjectName, op: &'static str) -> Error {
        match stop {
            Stop::Deadline => self.expired(object, op),
            Stop::Interrupted => Error::Interrupted {
                object: object.clone(),
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
