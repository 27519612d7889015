//! The one error type of shmkit.
//!
//! Every variant names the object it is about (a segment name, an OS name or a file
//! path) and the cause, so that `eprintln!("{err}")` alone tells a user what went wrong.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The name of the object an [`Error`] is about: a shmkit name, a raw OS name or
/// a file path, as the caller gave it.
///
/// Shared rather than owned, so that errors on hot paths (an empty
/// [`try_recv`](crate::channel::Receiver::try_recv), a timeout, a full ring)
/// copy a pointer instead of allocating: handles keep their name as an
/// `ObjectName` and lend it to every error they make. Reads as a `&str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName(Arc<str>);

impl ObjectName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ObjectName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ObjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ObjectName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for ObjectName {
    fn from(s: &str) -> Self {
        ObjectName(s.into())
    }
}

impl From<String> for ObjectName {
    fn from(s: String) -> Self {
        ObjectName(s.into())
    }
}

impl From<&String> for ObjectName {
    fn from(s: &String) -> Self {
        ObjectName(s.as_str().into())
    }
}

impl From<&ObjectName> for ObjectName {
    fn from(s: &ObjectName) -> Self {
        s.clone()
    }
}

impl PartialEq<str> for ObjectName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ObjectName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// Result alias used throughout shmkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shmkit.
///
/// `object` fields hold the name the caller used (a shmkit name, a raw OS name or a
/// file path), never a name invented by shmkit, so messages can be matched to the
/// caller's own code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot be used as a shared-memory name on this platform.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A size, offset or length argument is unusable.
    #[error("{object}: invalid size: {reason}")]
    InvalidSize {
        /// The object the size was for.
        object: ObjectName,
        /// Why it was rejected.
        reason: String,
    },

    /// An option or argument makes no sense for this call.
    #[error("{object}: {reason}")]
    InvalidArgument {
        /// The object the call was for.
        object: ObjectName,
        /// What was wrong.
        reason: String,
    },

    /// `open` found no object with that name.
    #[error("{object}: not found")]
    NotFound {
        /// The object that does not exist.
        object: ObjectName,
    },

    /// `create` found that the name is already taken.
    #[error("{object}: already exists")]
    AlreadyExists {
        /// The object that exists already.
        object: ObjectName,
    },

    /// The operating system refused access.
    #[error("{object}: permission denied ({op})")]
    PermissionDenied {
        /// The object access was refused for.
        object: ObjectName,
        /// What shmkit was doing.
        op: &'static str,
    },

    /// The backing store (for example /dev/shm, or the disk) has no room for the
    /// requested size. Reported at create time so that later accesses cannot fault.
    #[error("{object}: not enough space to reserve {size} bytes")]
    OutOfSpace {
        /// The object being created or extended.
        object: ObjectName,
        /// The number of bytes that could not be reserved.
        size: u64,
    },

    /// An access `[offset, offset + len)` falls outside the object.
    #[error("{object}: range {offset}..{end} is out of bounds (size {size})", end = *offset as u128 + *len as u128)]
    OutOfBounds {
        /// The object accessed.
        object: ObjectName,
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the mapped region.
        size: u64,
    },

    /// A write was attempted through a read-only mapping.
    #[error("{object}: mapped read-only, cannot write")]
    ReadOnly {
        /// The object mapped read-only.
        object: ObjectName,
    },

    /// An existing OS object has an owner or permissions that shmkit will not trust.
    #[error("{object}: refusing insecure object: {reason}")]
    Insecure {
        /// The object refused.
        object: ObjectName,
        /// What was wrong with it.
        reason: String,
    },

    /// The object does not start with a shmkit segment header.
    #[error("{object}: not a shmkit segment ({reason})")]
    NotShmkit {
        /// The object examined.
        object: ObjectName,
        /// What did not match.
        reason: String,
    },

    /// The segment was written by a newer (or unknown) shmkit layout version.
    #[error("{object}: unsupported layout version {found} (this shmkit understands {supported})")]
    UnsupportedVersion {
        /// The segment examined.
        object: ObjectName,
        /// Version found in the header.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },

    /// The segment holds a different kind of object than the caller asked for.
    #[error("{object}: is a {found}, not a {expected}")]
    WrongKind {
        /// The segment examined.
        object: ObjectName,
        /// What the header says it is.
        found: String,
        /// What the caller wanted.
        expected: String,
    },

    /// An existing object differs from what the caller explicitly asked for when
    /// opening it (a channel's capacity, a segment's size, a message type...):
    /// rather than quietly use the existing values, the open is refused.
    #[error("{object}: {what} is {found}, but {asked} was asked for")]
    Mismatch {
        /// The object opened.
        object: ObjectName,
        /// Which property differs (for example `capacity`).
        what: &'static str,
        /// What the existing object has.
        found: String,
        /// What the caller asked for.
        asked: String,
    },

    /// A header field disagrees with the size of the mapped object, or is corrupt.
    #[error("{object}: corrupt header: {reason}")]
    CorruptHeader {
        /// The segment examined.
        object: ObjectName,
        /// Which field disagreed and how.
        reason: String,
    },

    /// The process that created the segment died before it finished initialising it.
    #[error("{object}: creator process {pid} died before finishing initialisation")]
    CreatorDied {
        /// The segment examined.
        object: ObjectName,
        /// The creator's process id.
        pid: u32,
    },

    /// The creator's initialisation function reported failure.
    #[error("{object}: the creator failed to initialise the segment: {reason}")]
    InitFailed {
        /// The segment examined.
        object: ObjectName,
        /// The initialiser's error, as the creator saw it; openers cannot know it
        /// and say so.
        reason: String,
    },

    /// Waiting for the creator to finish initialising took longer than allowed.
    #[error("{object}: still not initialised after {waited:?}")]
    InitTimeout {
        /// The segment examined.
        object: ObjectName,
        /// How long shmkit waited.
        waited: Duration,
    },

    /// The object under a mapping became shorter than the access needs: another
    /// process truncated the file or shrank the shared-memory object. The access
    /// did not reach the object (a read may have seen zeros); this mapping stays
    /// unusable, and the object must be opened again (once it is whole again).
    #[error("{object}: the object is now {file_size} bytes (truncated by another process), too short for access {offset}..{end}", end = *offset as u128 + *len as u128)]
    Truncated {
        /// The file.
        object: ObjectName,
        /// Start of the refused access.
        offset: u64,
        /// Length of the refused access.
        len: u64,
        /// The file's current size.
        file_size: u64,
    },

    /// The request cannot be served on this platform.
    #[error("{object}: {what} is not supported on this platform")]
    Unsupported {
        /// The object concerned.
        object: ObjectName,
        /// The unsupported feature.
        what: &'static str,
    },

    /// A wait ended because its timeout passed.
    #[error("{object}: timed out after {after:?} waiting to {op}")]
    Timeout {
        /// The object waited on.
        object: ObjectName,
        /// What the caller was waiting to do (for example `lock`).
        op: &'static str,
        /// The timeout that passed.
        after: Duration,
    },

    /// A non-blocking call (`try_lock`, `try_wait`) could not proceed at once.
    #[error("{object}: would block ({op})")]
    WouldBlock {
        /// The object concerned.
        object: ObjectName,
        /// The call that would have had to wait.
        op: &'static str,
    },

    /// Messages of a queue were lost before this receive: a receiver died while
    /// it read a message too long to hold (more than half the ring), and the
    /// rest of the message, or all of it, is gone. Reported once, by the next
    /// receive call of the receiver that took over; the call after it goes on
    /// with the next message. (Also counted in `ChannelInfo::lost`.)
    #[error("{object}: {count} message(s) lost: a receiver died while reading a message too long to hold (more than half the ring)")]
    Lost {
        /// The channel.
        object: ObjectName,
        /// How many messages.
        count: u64,
    },

    /// A blocking call was ended from another thread through an
    /// [`Interrupter`](crate::Interrupter) (a binding's `close()` uses one), or
    /// the interrupter was already raised when the call had to wait.
    #[error(
        "{object}: {op} interrupted from another thread (the handle was closed or interrupted)"
    )]
    Interrupted {
        /// The object concerned.
        object: ObjectName,
        /// The call that was waiting.
        op: &'static str,
    },

    /// A process died while holding the mutex, and nobody has marked the data it
    /// guards consistent since. Produced when a [`LockError::OwnerDied`](crate::sync::LockError::OwnerDied) is turned into an `Error` (for example by `?`).
    #[error(
        "{object}: a process died while holding this mutex; the data it guards may be inconsistent"
    )]
    OwnerDied {
        /// The mutex.
        object: ObjectName,
    },

    /// A semaphore release would raise the count above the semaphore's maximum.
    #[error("{object}: {}", above_maximum(*release, *count, *max))]
    AboveMaximum {
        /// The semaphore.
        object: ObjectName,
        /// The count before the release, where known (Windows does not tell).
        count: Option<u32>,
        /// How many the caller tried to release.
        release: u32,
        /// The semaphore's maximum count, where known (Windows does not tell).
        max: Option<u32>,
    },

    /// A synchronisation object's shared state holds a value its protocol never
    /// writes: another process corrupted it.
    #[error("{object}: corrupt state: {reason}")]
    CorruptState {
        /// The object examined.
        object: ObjectName,
        /// Which word held what.
        reason: String,
    },

    /// A message is longer than the transport can carry.
    #[error("{object}: message of {len} bytes is longer than the limit of {max} bytes")]
    TooLong {
        /// The segment or channel.
        object: ObjectName,
        /// Length of the refused message.
        len: u64,
        /// The largest length that fits.
        max: u64,
    },

    /// The process at the other end of a channel is gone: it closed its end, or it
    /// died (checked by process id and start time) while this call waited.
    #[error("{object}: disconnected: {reason}")]
    Disconnected {
        /// The channel.
        object: ObjectName,
        /// Which peer went away and how.
        reason: String,
    },

    /// A broadcast subscriber fell so far behind that the publisher overwrote
    /// messages it had not read; it skipped `missed` messages and goes on with the
    /// oldest one still held.
    #[error("{object}: subscriber lagged behind and missed {missed} messages")]
    Lagged {
        /// The broadcast channel.
        object: ObjectName,
        /// How many messages this subscriber lost.
        missed: u64,
    },

    /// A role that only one process may hold (the receiver of a channel, the sender
    /// of a one-to-one channel, the publisher) is held by a live process, or every
    /// slot for the role is taken.
    #[error("{object}: no free {role} slot: {reason}")]
    Occupied {
        /// The channel.
        object: ObjectName,
        /// The role asked for (for example `receiver`).
        role: &'static str,
        /// Who holds it.
        reason: String,
    },

    /// A receive buffer is shorter than the next message; the message stays queued.
    #[error("{object}: next message is {len} bytes, the buffer holds only {capacity}")]
    BufferTooSmall {
        /// The channel.
        object: ObjectName,
        /// Length of the waiting message.
        len: u64,
        /// Length of the caller's buffer.
        capacity: u64,
    },

    /// A typed message could not be encoded or decoded.
    #[error("{object}: {reason}")]
    Decode {
        /// The channel.
        object: ObjectName,
        /// The type and the codec's complaint.
        reason: String,
    },

    /// Any other operating-system failure, with the operation that failed.
    #[error("{object}: {op} failed: {source}")]
    Io {
        /// The object concerned.
        object: ObjectName,
        /// The operation that failed (for example `mmap`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn above_maximum(release: u32, count: Option<u32>, max: Option<u32>) -> String {
    match (count, max) {
        (Some(count), Some(max)) => {
            format!("releasing {release} would raise the count {count} above the maximum {max}")
        }
        _ if release == 1 => "cannot release: the count is at its maximum".to_owned(),
        _ => format!("releasing {release} would raise the count above its maximum"),
    }
}

impl Error {
    /// Turns an OS error into the most specific variant for `object`.
    ///
    /// `size` is reported by [`Error::OutOfSpace`] when the OS says the store is full.
    pub(crate) fn from_io(object: &str, op: &'static str, source: io::Error, size: u64) -> Error {
        let object = ObjectName::from(object);
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { object },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { object },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { object, op },
            io::ErrorKind::StorageFull | io::ErrorKind::OutOfMemory => {
                Error::OutOfSpace { object, size }
            }
            _ => Error::Io { object, op, source },
        }
    }

    /// The kind of an error that came from the OS, for callers that branch on it.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether a wait gave up because its timeout passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether the peer at the other end of a channel has gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected { .. })
    }

    /// Whether a non-blocking call found the object busy.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::WouldBlock { .. })
    }

    /// Whether messages were lost before a receive (see [`Error::Lost`]).
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost { .. })
    }

    /// Whether a blocking call was ended by an [`Interrupter`](crate::Interrupter).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Interrupted { .. })
    }
}
