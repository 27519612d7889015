//! What `shmkit ls` and `shmkit info` show about a channel.

use std::sync::atomic::Ordering::SeqCst;

use super::layout::{Flavour, OFF_OLDEST};
use super::memory::{ChannelMem, Peer};
use crate::error::Result;

/// Which kind of channel a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// Sender(s) to one receiver.
    Queue,
    /// One publisher to many subscribers.
    Broadcast,
}

/// The state of one endpoint of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Held by this live process.
    Connected(u32),
    /// Its process died without closing it.
    Dead(u32),
    /// Closed by its process.
    Closed,
}

/// A snapshot of a channel's state (it keeps changing while you look).
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// Queue or broadcast.
    pub kind: ChannelKind,
    /// Bytes in the ring.
    pub capacity: u64,
    /// Ring bytes holding messages not yet read (queue), or holding the messages
    /// kept for late subscribers (broadcast).
    pub used: u64,
    /// The longest message accepted.
    pub max_message: u64,
    /// The receiver (queue) or publisher (broadcast), if one ever attached.
    pub owner: Option<EndpointState>,
    /// Senders (queue) or subscribers (broadcast) that ever attached to a slot
    /// still recorded.
    pub peers: Vec<EndpointState>,
    /// How many senders or subscribers the channel admits.
    pub max_peers: u32,
    /// Queues: messages lost because a receiver died while putting together one
    /// longer than half the ring (shorter ones are read again by the next
    /// receiver). Always 0 for broadcast channels, whose losses each subscriber
    /// learns as [`Error::Lagged`](crate::Error::Lagged).
    pub lost: u64,
}

/// Reads the state of the channel `name`.
///
/// ```
/// use shmkit::channel::{inspect, ChannelKind, EndpointState, Sender};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let mut tx = Sender::connect(&name)?;
/// tx.send(b"queued")?;
/// let info = inspect(&name)?;
/// assert_eq!(info.kind, ChannelKind::Queue);
/// assert_eq!(info.used, 16); // an 8-byte record header and 6 bytes, padded to 8
/// assert_eq!(info.peers, [EndpointState::Connected(std::process::id())]);
/// assert_eq!(info.owner, None); // no receiver yet
/// # Ok(()) }
/// ```
pub fn inspect(name: &str) -> Result<ChannelInfo> {
    let mem = ChannelMem::open_any(name)?;
    let state = |i: u32| match mem.peer(i) {
        Peer::Never => None,
        Peer::Attached(pid) => Some(EndpointState::Connected(pid)),
        Peer::Died(pid) => Some(EndpointState::Dead(pid)),
        Peer::Left => Some(EndpointState::Closed),
    };
    let head = mem.head().load(SeqCst);
    let (kind, used) = match mem.flavour {
        Flavour::Queue => (
            ChannelKind::Queue,
            head.saturating_sub(mem.tail().load(SeqCst)),
        ),
        Flavour::Broadcast => {
            let oldest = mem.u64_at(OFF_OLDEST).load(SeqCst);
            (ChannelKind::Broadcast, head.saturating_sub(oldest))
        }
    };
    Ok(ChannelInfo {
        name: mem.name().to_string(),
        kind,
        capacity: mem.capacity,
        used: used.min(mem.capacity),
        max_message: mem.max_message,
        owner: state(0),
        peers: (1..mem.slots).filter_map(state).collect(),
        max_peers: mem.slots - 1,
        lost: match mem.flavour {
            Flavour::Queue => mem.lost().load(SeqCst),
            Flavour::Broadcast => 0,
        },
    })
}
