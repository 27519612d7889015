//! A queue receiver over a ring whose control words and records a concurrent
//! writer keeps changing: it may report errors, never panic, read out of bounds
//! or hang past its deadlines.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::channel::ChannelOptions;

#[path = "common.rs"]
mod common;

fuzz_target!(|plan: common::Plan| {
    let name = common::unique_name("queue");
    let opts = ChannelOptions::new().capacity(4096).max_message(1 << 16);
    let Ok(mut rx) = opts.receiver(&name) else {
        return;
    };
    let Ok(mut tx) = opts.sender(&name) else {
        return;
    };
    for m in plan.messages.iter().take(16) {
        let _ = tx.try_send(m);
    }
    let data_len = 320 + 4096;
    common::with_scribbler(&name, data_len, &plan.scribbles, || {
        let mut buf = [0u8; 256];
        for i in 0..plan.reads.min(32) {
            match i % 3 {
                0 => {
                    if let Ok(m) = rx.try_recv() {
                        assert!(m.len() as u64 <= rx.max_message());
                    }
                }
                1 => {
                    if let Ok(n) = rx.try_recv_into(&mut buf) {
                        assert!(n <= buf.len());
                    }
                }
                _ => {
                    let _ = rx.recv_timeout(Duration::from_millis(1));
                }
            }
        }
    });
});
