//! Entry points for the fuzz targets in `fuzz/`: the pure decoders of bytes that
//! other processes write, run on arbitrary input. Each panics only when one of
//! the invariants it checks is broken, which is what the fuzzer looks for. Not a
//! public API (compiled only with the `fuzzing` feature).

use crate::channel::layout::{Header as RecordHeader, Tag, MAX_CAPACITY};
use crate::segment;

/// Validates `bytes` as a segment header of an object of `actual_size` bytes;
/// whatever is accepted must describe a consistent segment.
pub fn segment_header(bytes: &[u8], actual_size: u64) {
    segment::fuzz_header(bytes, actual_size);
}

/// Decodes a record header `word` found at ring position `pos`; a record it
/// accepts must encode back to the same word, and be stamped for `pos` only.
pub fn record_header(word: u64, pos: u64) {
    if let RecordHeader::Record(tag, len) = RecordHeader::decode(word, pos) {
        assert_eq!(tag.encode(len, pos), word, "decode/encode round trip");
        let next_lap = pos.wrapping_add(MAX_CAPACITY);
        assert_eq!(
            RecordHeader::decode(word, next_lap),
            RecordHeader::NotYet,
            "a record stamped for two laps"
        );
        assert!(matches!(
            tag,
            Tag::Single | Tag::First | Tag::Middle | Tag::Last | Tag::Pad
        ));
    }
}
