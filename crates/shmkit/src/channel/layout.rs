//! Where everything of a channel lives in its segment, and the record format of
//! its ring. Byte by byte in `docs/LAYOUT.md`, "Channels".
//!
//! ```text
//!   0  header (64 B): magic, version, flavour, slots, capacity, max_message, ring
//!  64  producer line: head, data doorbell (signal, waiters), broadcast words
//! 128  consumer line: tail, space doorbell (signal, waiters)
//! 192  producer lock (a shmkit mutex state block, 64 B), many-producer queues
//! 256  endpoint slots, 16 B each: slot 0 the receiver (queue) or publisher
//! RING the ring, `capacity` bytes, 64-byte aligned
//! ```
//!
//! The producer and consumer lines are apart so that the two sides' hot words never
//! share a cache line.

/// `b"shCH"`, little-endian: an initialised channel header.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"shCH");
/// Version of the channel layout.
pub(crate) const VERSION: u32 = 1;

pub(crate) const OFF_MAGIC: u64 = 0;
pub(crate) const OFF_VERSION: u64 = 4;
pub(crate) const OFF_FLAVOUR: u64 = 8;
pub(crate) const OFF_SLOTS: u64 = 12;
pub(crate) const OFF_CAPACITY: u64 = 16;
pub(crate) const OFF_MAX_MESSAGE: u64 = 24;
pub(crate) const OFF_RING: u64 = 32;
/// The message type, if the creator recorded one (`ChannelOptions::message_type`):
/// size, alignment and name hash; all zero otherwise.
pub(crate) const OFF_TYPE_SIZE: u64 = 40;
pub(crate) const OFF_TYPE_ALIGN: u64 = 44;
pub(crate) const OFF_TYPE_HASH: u64 = 48;

/// Producer line: position after the last published record (bytes ever written).
pub(crate) const OFF_HEAD: u64 = 64;
/// Data doorbell: receivers sleep on it while the ring is empty.
pub(crate) const OFF_DATA_SIGNAL: u64 = 72;
pub(crate) const OFF_DATA_WAITERS: u64 = 76;
/// Broadcast: the publisher may overwrite ring bytes below `claim - capacity`.
pub(crate) const OFF_CLAIM: u64 = 80;
/// Broadcast: position of the oldest record still whole in the ring.
pub(crate) const OFF_OLDEST: u64 = 88;
/// Broadcast: sequence number of the next message (written before the head).
pub(crate) const OFF_NEXT_SEQ: u64 = 96;

/// Consumer line: position of the next record to read (queues only).
pub(crate) const OFF_TAIL: u64 = 128;
/// Space doorbell: senders sleep on it while the ring is full.
pub(crate) const OFF_SPACE_SIGNAL: u64 = 136;
pub(crate) const OFF_SPACE_WAITERS: u64 = 140;
/// Queues: messages lost because a receiver died while putting one together
/// that was too long to hold (more than half the ring).
pub(crate) const OFF_LOST: u64 = 144;
/// Queues: while the receiver reads a message too long to hold, the position of
/// its first fragment plus one (0: none). A receiver that finds it set at
/// attach knows its predecessor died with that message, and reports the loss.
pub(crate) const OFF_UNHELD: u64 = 152;

/// The lock many producers take around a send.
pub(crate) const OFF_LOCK: u64 = 192;
/// The endpoint slot table.
pub(crate) const OFF_SLOTS_TABLE: u64 = 256;
pub(crate) const SLOT_SIZE: u64 = 16;

/// Most endpoint slots a channel may have (senders or subscribers plus one).
pub(crate) const MAX_SLOTS: u32 = 1024;
/// Smallest and largest ring.
pub(crate) const MIN_CAPACITY: u64 = 256;
/// At most 1 GiB, so that a stamp (2 GiB period) tells this lap from the last.
pub(crate) const MAX_CAPACITY: u64 = 1 << 30;

/// Where the ring starts for a channel with `slots` endpoint slots.
pub(crate) const fn ring_offset(slots: u32) -> u64 {
    (OFF_SLOTS_TABLE + SLOT_SIZE * slots as u64).div_ceil(64) * 64
}

/// What a channel segment carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Sender(s) to one receiver, every message delivered once.
    Queue = 1,
    /// One publisher to many subscribers, each reading every message.
    Broadcast = 2,
}

impl Flavour {
    pub(crate) fn from_code(code: u32) -> Option<Flavour> {
        match code {
            1 => Some(Flavour::Queue),
            2 => Some(Flavour::Broadcast),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Flavour::Queue => "queue channel",
            Flavour::Broadcast => "broadcast channel",
        }
    }
}

/// Every record starts with an 8-byte header on an 8-byte boundary: payload
/// length in bits 0..32, the record kind in bits 32..36, and in bits 36..64 a
/// *stamp*, bits 3..31 of the record's position. A receiver that finds, at its
/// read position, a header whose stamp matches that position knows the record
/// was written in this lap of the ring, without reading the head: so the
/// receiver's fast path touches only the cache lines of the record itself. Queue
/// records are followed by their payload; broadcast records carry their sequence
/// number first.
pub(crate) const RECORD_HEADER: u64 = 8;
/// Broadcast records: header plus the 8-byte message sequence number.
pub(crate) const BROADCAST_HEADER: u64 = 16;

const STAMP_MASK: u64 = (1 << 28) - 1;

#[inline]
fn stamp(pos: u64) -> u64 {
    (pos >> 3) & STAMP_MASK
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// A whole message.
    Single = 1,
    /// The first fragment of a long message; the payload starts with the
    /// message's total length (u64).
    First = 2,
    /// A fragment that is neither first nor last.
    Middle = 3,
    /// The last fragment.
    Last = 4,
    /// Filler up to the end of the ring; the next record starts at offset 0.
    Pad = 5,
}

/// A header word as read at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A record written for this position: its kind and payload length.
    Record(Tag, u32),
    /// Nothing written for this position yet (zero, or left from an earlier lap).
    NotYet,
    /// Stamped for this position but of no known kind: corrupt.
    Bad(u64),
}

impl Tag {
    /// The header of a record of `len` payload bytes at position `pos`.
    #[inline]
    pub(crate) fn encode(self, len: u32, pos: u64) -> u64 {
        stamp(pos) << 36 | (self as u64) << 32 | len as u64
    }
}

impl Header {
    /// Reads the header `word` found at position `pos`.
    #[inline]
    pub(crate) fn decode(word: u64, pos: u64) -> Header {
        if word >> 36 != stamp(pos) || word == 0 {
            return Header::NotYet;
        }
        let len = word as u32;
        let tag = match (word >> 32) & 0xf {
            1 => Tag::Single,
            2 => Tag::First,
            3 => Tag::Middle,
            4 => Tag::Last,
            5 => Tag::Pad,
            _ => return Header::Bad(word),
        };
        Header::Record(tag, len)
    }
}

/// Ring positions (head, tail, claim, oldest) count bytes since the channel was
/// made and stay below this: 2^63 bytes take nine years at 30 GB/s. A larger
/// word is corrupt, and rejecting it keeps `position + capacity` from overflowing.
pub(crate) const MAX_POSITION: u64 = 1 << 63;

/// Whether `word`, read from shared memory, can be a ring position.
pub(crate) const fn is_position(word: u64) -> bool {
    word % 8 == 0 && word < MAX_POSITION
}

/// Rounds a payload length up to the 8-byte record boundary.
pub(crate) const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// The largest payload of one record: a quarter of the ring, so that a sender can
/// be filling one record while the receiver drains others.
pub(crate) const fn max_record(capacity: u64) -> u64 {
    capacity / 4 - RECORD_HEADER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_only_match_their_own_position() {
        for t in [Tag::Single, Tag::First, Tag::Middle, Tag::Last, Tag::Pad] {
            for pos in [0, 8, 4096, MAX_CAPACITY - 8, 5 * MAX_CAPACITY + 64] {
                let h = t.encode(12345, pos);
                assert_eq!(Header::decode(h, pos), Header::Record(t, 12345));
                // One lap of the largest ring later, the same word is stale.
                assert_eq!(Header::decode(h, pos + MAX_CAPACITY), Header::NotYet);
                assert_eq!(Header::decode(h, pos + 8), Header::NotYet);
            }
        }
        assert_eq!(Header::decode(0, 0), Header::NotYet);
        let bad = Tag::Single.encode(1, 64) | 0xf << 32;
        assert_eq!(Header::decode(bad, 64), Header::Bad(bad));
    }

    #[test]
    fn ring_follows_the_slot_table_on_a_cache_line() {
        assert_eq!(ring_offset(2), 320);
        assert_eq!(ring_offset(4), 320);
        assert_eq!(ring_offset(5), 384);
        assert_eq!(ring_offset(MAX_SLOTS) % 64, 0);
    }
}
