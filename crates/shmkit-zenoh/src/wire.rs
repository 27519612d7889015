//! What the bridge adds to a queue message on the wire: the sending bridge's
//! instance and the message's number, in the Zenoh attachment (the payload is the
//! message's bytes, untouched).
//!
//! Attachment: 16 bytes, instance (u64, little-endian) then sequence number (u64,
//! little-endian, from 1). A sample without it (from a plain Zenoh program) is
//! delivered without checks.

/// Attachment length.
pub const TAG_LEN: usize = 16;

/// The attachment for message `seq` of bridge `instance`.
pub fn encode(instance: u64, seq: u64) -> [u8; TAG_LEN] {
    let mut tag = [0; TAG_LEN];
    tag[..8].copy_from_slice(&instance.to_le_bytes());
    tag[8..].copy_from_slice(&seq.to_le_bytes());
    tag
}

/// `(instance, seq)` from an attachment, `None` if it is not one of ours.
pub fn decode(tag: &[u8]) -> Option<(u64, u64)> {
    let tag: &[u8; TAG_LEN] = tag.try_into().ok()?;
    let (instance, seq) = tag.split_at(8);
    Some((
        u64::from_le_bytes(instance.try_into().ok()?),
        u64::from_le_bytes(seq.try_into().ok()?),
    ))
}

/// What the receiving side makes of a numbered message.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next one (or the first from this sender): deliver.
    Next,
    /// Deliver, after `n` that never came.
    AfterGap(u64),
    /// Seen already: drop.
    Duplicate,
}

/// The last number delivered from the current sending bridge.
#[derive(Debug, Default)]
pub struct Sequence {
    last: Option<(u64, u64)>,
}

impl Sequence {
    /// Judges message `seq` from `instance` and, unless it is a duplicate,
    /// records it as delivered.
    pub fn arrive(&mut self, instance: u64, seq: u64) -> Arrival {
        let verdict = match self.last {
            Some((i, last)) if i == instance => {
                if seq <= last {
                    return Arrival::Duplicate;
                }
                match seq - last - 1 {
                    0 => Arrival::Next,
                    n => Arrival::AfterGap(n),
                }
            }
            // A new sending bridge (restarted): its numbers start afresh.
            _ => Arrival::Next,
        };
        self.last = Some((instance, seq));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_foreign_attachments_are_ignored() {
        assert_eq!(decode(&encode(7, u64::MAX)), Some((7, u64::MAX)));
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(&[0; 17]), None);
    }

    #[test]
    fn sequence_finds_gaps_duplicates_and_restarts() {
        let mut s = Sequence::default();
        assert_eq!(s.arrive(1, 1), Arrival::Next);
        assert_eq!(s.arrive(1, 2), Arrival::Next);
        assert_eq!(s.arrive(1, 2), Arrival::Duplicate);
        assert_eq!(s.arrive(1, 1), Arrival::Duplicate);
        assert_eq!(s.arrive(1, 5), Arrival::AfterGap(2));
        assert_eq!(s.arrive(2, 1), Arrival::Next);
        assert_eq!(s.arrive(2, u64::MAX), Arrival::AfterGap(u64::MAX - 2));
        assert_eq!(s.arrive(2, 3), Arrival::Duplicate);
    }
}
