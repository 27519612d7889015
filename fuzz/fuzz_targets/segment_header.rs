//! Arbitrary bytes as a segment header, against an arbitrary object size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, Vec<u8>)| {
    let (actual_size, bytes) = input;
    shmkit::fuzzing::segment_header(&bytes, actual_size);
});
