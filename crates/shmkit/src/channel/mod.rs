//! Message channels over shared memory.
//!
//! - Queue: [`Sender`] → [`Receiver`]. One-to-one by default; many-to-one with
//!   [`ChannelOptions::max_senders`]. Every message arrives once, whole and in
//!   order, whatever its length: from 0 bytes to far more than the ring holds
//!   (long messages travel in fragments and are put back together before the
//!   receiver sees them). [`Sender::reserve`] writes in place (zero-copy);
//!   [`Receiver::recv_with`] reads in place.
//! - Broadcast: [`Publisher`] → many [`Subscriber`]s, each reading every message
//!   at its own pace. The publisher never waits for a subscriber: one that falls
//!   more than a ring behind gets [`Error::Lagged`](crate::Error::Lagged) with
//!   the number of messages it missed, then goes on with the oldest message the
//!   ring still holds. Late subscribers may start with that history.
//! - Request/response: [`RpcServer`] answers [`RpcClient`]s; each reply reaches the
//!   client that asked.
//!
//! Blocking calls spin for a few microseconds (the other side often answers that
//! fast, and waking a sleeping process costs tens of them) and then sleep on a
//! futex (Linux) or a named semaphore (Windows). The side that publishes makes no
//! system call when nobody sleeps. [`WaitMode::BusyPoll`] never sleeps, for the
//! lowest latency on a core of one's own.
//!
//! # Delivery across crashes
//!
//! While sender and receiver live, every message arrives once, whole and in
//! order. A sender that dies mid-message leaves no part of it behind. A receiver
//! that dies loses nothing that was sent: the next receiver starts with the
//! message the dead one had in hand, which may so be delivered twice (a receiver
//! that must not act twice on a message keeps its own record of what it did).
//! Fragmented messages are held that way while their records take at most half
//! the ring; a receiver that dies while putting together a longer one loses that
//! message, and the loss is counted ([`ChannelInfo::lost`]).
//!
//! A peer that closes its end, or dies, is reported as
//! [`Error::Disconnected`](crate::Error::Disconnected) once what it sent has been
//! read; a blocked call notices a dead peer within 50 ms. Everything read from the
//! shared ring is validated: a corrupt or hostile writer causes
//! [`Error::CorruptState`](crate::Error::CorruptState), never a panic, an
//! out-of-bounds access or an endless wait.
//!
//! ```
//! use shmkit::channel::{ChannelOptions, Receiver, Sender};
//! # fn main() -> shmkit::Result<()> {
//! # let name = format!("doc-channel-{}", std::process::id());
//! // Either side may come first; the first creates the channel.
//! let mut rx = ChannelOptions::new().capacity(64 * 1024).receiver(&name)?;
//! let mut tx = Sender::connect(&name)?;
//! tx.send(b"ping")?;
//! assert_eq!(rx.recv()?, b"ping");
//! drop(tx);
//! assert!(rx.recv().unwrap_err().is_disconnected());
//! # Ok(()) }
//! ```
//!
//! Byte layout: `docs/LAYOUT.md`, "Channels".

mod broadcast;
mod doorbell;
mod info;
pub(crate) mod layout;
pub(crate) mod memory;
mod queue;
mod rpc;
mod wait;

use std::time::Duration;

pub use broadcast::{Publisher, Subscriber};
pub use info::{inspect, ChannelInfo, ChannelKind, EndpointState};
pub use queue::{OwnedReservation, Receiver, Reservation, Sender};
pub use rpc::{PendingCall, Request, RpcClient, RpcServer, RPC_MAX_CLIENTS, RPC_REPLY_TIMEOUT};

use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::segment::Lifetime;
use memory::Attach;

/// How a blocking channel call waits for its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Spin for `spin`, then sleep until woken. The default spins 20 µs.
    Blocking {
        /// How long to spin before sleeping.
        spin: Duration,
    },
    /// Never sleep: spin until done (timeouts and dead peers are still noticed).
    /// Lowest latency, one CPU kept busy while waiting.
    BusyPoll,
}

impl Default for WaitMode {
    fn default() -> Self {
        WaitMode::Blocking {
            spin: Duration::from_micros(20),
        }
    }
}

/// Options for creating or opening a channel.
///
/// The first process to attach creates the channel with these options. Later
/// processes get the channel as it was created; an option they set explicitly
/// (capacity, message limit, senders, subscribers, message type) must match
/// what the channel has, or the attach fails with
/// [`Error::Mismatch`](crate::Error::Mismatch) naming both values. Options left
/// at their defaults take whatever the channel has.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    pub(crate) capacity: Option<u64>,
    pub(crate) max_message: Option<u64>,
    pub(crate) max_senders: Option<u32>,
    pub(crate) max_subscribers: Option<u32>,
    pub(crate) message_type: Option<(Fingerprint, &'static str)>,
    pub(crate) history: bool,
    pub(crate) wait_for_senders: bool,
    pub(crate) lifetime: Lifetime,
    pub(crate) mode: Option<u32>,
    pub(crate) wait: WaitMode,
    pub(crate) attach: Attach,
}

/// Defaults of the options a channel is created with.
pub(crate) const DEFAULT_CAPACITY: u64 = 1 << 20;
pub(crate) const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;
pub(crate) const DEFAULT_MAX_SUBSCRIBERS: u32 = 64;

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            capacity: None,
            max_message: None,
            max_senders: None,
            max_subscribers: None,
            message_type: None,
            history: false,
            wait_for_senders: false,
            lifetime: Lifetime::Temporary,
            mode: None,
            wait: WaitMode::default(),
            attach: Attach::CreateOrOpen,
        }
    }
}

impl ChannelOptions {
    /// Defaults: a 1 MiB ring, messages up to 1 GiB, one sender, up to 64
    /// subscribers, temporary, create-or-open, [`WaitMode::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes in the ring: a power of two from 256 bytes to 1 GiB. A record (and so
    /// a zero-copy reservation, and a broadcast message) holds at most a quarter
    /// of it; longer queue messages are fragmented.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// The longest message a queue accepts (default 1 GiB). Receivers refuse
    /// longer ones too, so a corrupt length cannot make them allocate without bound.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// How many senders a queue admits at once (default 1; up to 1023). Above 1,
    /// senders take a cross-process lock around each message.
    pub fn max_senders(mut self, n: u32) -> Self {
        self.max_senders = Some(n);
        self
    }

    /// How many subscribers a broadcast channel admits at once (default 64).
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.max_subscribers = Some(n);
        self
    }

    /// Records that the channel carries values of type `T` (its size, alignment
    /// and a hash of its name), for the `*_pod` calls: a channel created with it
    /// stores the fingerprint, and attaching with another type, or to a channel
    /// made without one, fails with [`Error::Mismatch`](crate::Error::Mismatch).
    /// Handles that do not ask are not checked.
    ///
    /// ```
    /// use shmkit::channel::ChannelOptions;
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-typed-{}", std::process::id());
    /// let mut rx = ChannelOptions::new().message_type::<[f32; 3]>().receiver(&name)?;
    /// let mut tx = ChannelOptions::new().message_type::<[f32; 3]>().sender(&name)?;
    /// tx.send_pod(&[1.0f32, 2.0, 3.0])?;
    /// assert_eq!(rx.recv_pod::<[f32; 3]>()?, [1.0, 2.0, 3.0]);
    /// let err = ChannelOptions::new().message_type::<u64>().sender(&name).unwrap_err();
    /// assert!(err.to_string().contains("message type"));
    /// # Ok(()) }
    /// ```
    pub fn message_type<T: bytemuck::Pod>(mut self) -> Self {
        self.message_type = Some((Fingerprint::of::<T>(), std::any::type_name::<T>()));
        self
    }

    /// Whether a new subscriber starts with the messages the ring still holds
    /// (keep-last-N history, as much as fits the ring), rather than with the next
    /// message published. Default false.
    pub fn history(mut self, yes: bool) -> Self {
        self.history = yes;
        self
    }

    /// What a queue receiver does when the queue is empty and no sender is
    /// attached (every sender that came has closed or died). By default (`false`)
    /// it stops: the receive returns [`Error::Disconnected`](crate::Error::Disconnected).
    /// With `true` it waits for the next sender, as a server whose clients come
    /// and go must, within the call's own timeout. Either way a receiver that
    /// never saw a sender waits for the first, and whatever the senders queued
    /// before they went is delivered first.
    ///
    /// With [`max_senders`](Self::max_senders) above 1, "no sender" means none of
    /// the slots is held by a live process: one sender leaving while another
    /// stays attached never disconnects the receiver.
    pub fn wait_for_senders(mut self, yes: bool) -> Self {
        self.wait_for_senders = yes;
        self
    }

    /// Temporary (default: removed when the last process closes it) or persistent.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Permission bits for a new channel (Unix; default 0600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// How blocking calls of the handle wait.
    pub fn wait_mode(mut self, wait: WaitMode) -> Self {
        self.wait = wait;
        self
    }

    /// Only create: fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if the name is taken.
    pub fn create_new(mut self) -> Self {
        self.attach = Attach::Create;
        self
    }

    /// Only open: fail with [`Error::NotFound`](crate::Error::NotFound) if there is
    /// no such channel.
    pub fn open_existing(mut self) -> Self {
        self.attach = Attach::Open;
        self
    }

    /// Attaches to the queue channel `name` as a sender.
    pub fn sender(&self, name: &str) -> Result<Sender> {
        Sender::attach(name, self)
    }

    /// Attaches to the queue channel `name` as its receiver.
    pub fn receiver(&self, name: &str) -> Result<Receiver> {
        Receiver::attach(name, self)
    }

    /// Attaches to the broadcast channel `name` as its publisher.
    pub fn publisher(&self, name: &str) -> Result<Publisher> {
        Publisher::attach(name, self)
    }

    /// Attaches to the broadcast channel `name` as a subscriber.
    pub fn subscriber(&self, name: &str) -> Result<Subscriber> {
        Subscriber::attach(name, self)
    }
}
