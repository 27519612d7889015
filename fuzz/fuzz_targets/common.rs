//! Shared by the reader targets: a real channel in /dev/shm whose control words
//! and ring another thread scribbles over, with values the fuzzer chooses, while
//! the reader under test runs: the values change between the reader's reads
//! (double fetches), as a hostile peer's would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shmkit::{ShmOptions, HEADER_BLOCK};

/// What the fuzzer chooses: messages to send first, then scribbles (byte
/// offset into the channel's data area, value) applied over and over.
#[derive(Debug, arbitrary::Arbitrary)]
pub struct Plan {
    pub messages: Vec<Vec<u8>>,
    pub scribbles: Vec<(u16, u64)>,
    pub reads: u8,
}

/// A channel name no other run uses.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "fuzz-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `read` while another thread writes `scribbles` into the channel `name`
/// (whose data area is `data_len` bytes) until `read` returns.
pub fn with_scribbler(name: &str, data_len: u64, scribbles: &[(u16, u64)], read: impl FnOnce()) {
    let raw = ShmOptions::new()
        .open_raw(&format!("/shmkit.{name}"))
        .expect("the channel's object");
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            if scribbles.is_empty() {
                return;
            }
            while !done.load(Ordering::Relaxed) {
                for &(off, value) in scribbles {
                    // Word-aligned, inside the data area.
                    let off = (off as u64 % data_len) & !7;
                    if let Ok(word) = raw.atomic_u64(HEADER_BLOCK + off) {
                        word.store(value, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_micros(10));
            }
        });
        read();
        done.store(true, Ordering::Relaxed);
    });
}
