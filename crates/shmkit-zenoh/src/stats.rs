//! What each route has done: counters the workers update and callers read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::Route;

/// A route's counters, shared by its worker and [`Bridge::stats`](crate::Bridge::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    forwarded: AtomicU64,
    bytes: AtomicU64,
    missed: AtomicU64,
    lost: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    pub(crate) fn forwarded(&self, bytes: usize) {
        self.forwarded.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn missed(&self, n: u64) {
        self.missed.fetch_add(n, Relaxed);
    }
    pub(crate) fn lost(&self, n: u64) {
        self.lost.fetch_add(n, Relaxed);
    }
    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, route: &Route) -> RouteStats {
        RouteStats {
            route: route.clone(),
            forwarded: self.forwarded.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            missed: self.missed.load(Relaxed),
            lost: self.lost.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }
}

/// A snapshot of one route's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStats {
    /// The route.
    pub route: Route,
    /// Messages (or RPC calls) carried whole.
    pub forwarded: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Broadcast out: messages the bridge's local subscriber missed because it
    /// fell more than a ring behind the publisher (shmkit's `Lagged`).
    pub missed: u64,
    /// Queue in: messages the sending bridge numbered but that never arrived
    /// (in flight when a bridge or the link went down).
    pub lost: u64,
    /// Queue in: messages that arrived a second time and were dropped.
    pub duplicates: u64,
    /// Messages or calls that could not be delivered (too long for the local
    /// channel, no RPC server, a Zenoh error); each is also logged.
    pub failed: u64,
}

impl std::fmt::Display for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} forwarded ({} bytes), {} missed, {} lost, {} duplicates dropped, {} failed",
            self.route,
            self.forwarded,
            self.bytes,
            self.missed,
            self.lost,
            self.duplicates,
            self.failed
        )
    }
}
