//! Arbitrary words as ring record headers, at arbitrary positions.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, u64)| {
    let (word, pos) = input;
    shmkit::fuzzing::record_header(word, pos);
});
