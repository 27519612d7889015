//! A broadcast subscriber over a ring whose words a concurrent writer keeps
//! changing: it may report errors (corruption, lag), never panic, read out of
//! bounds or hang past its deadlines.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::channel::ChannelOptions;

#[path = "common.rs"]
mod common;

fuzz_target!(|plan: common::Plan| {
    let name = common::unique_name("bcast");
    let opts = ChannelOptions::new().capacity(4096).max_subscribers(1);
    let Ok(mut publisher) = opts.publisher(&name) else {
        return;
    };
    let Ok(mut sub) = opts.clone().history(true).subscriber(&name) else {
        return;
    };
    for m in plan.messages.iter().take(16) {
        let _ = publisher.publish(m);
    }
    let data_len = 320 + 4096;
    common::with_scribbler(&name, data_len, &plan.scribbles, || {
        for i in 0..plan.reads.min(32) {
            if i % 2 == 0 {
                if let Ok(m) = sub.try_recv() {
                    assert!(m.len() as u64 <= publisher.max_message());
                }
            } else {
                let _ = sub.recv_timeout(Duration::from_millis(1));
            }
        }
    });
});
