//! shmkit's C ABI: segments, locks and channels for C, C++, C# and any language
//! that calls C, speaking the same memory layout as the Rust library.
//!
//! `include/shmkit.h` is generated from this crate by cbindgen (the test
//! `tests/header.rs` fails when it is stale; `SHMKIT_BLESS=1 cargo test -p
//! shmkit-ffi --test header` rewrites it). Its opening comment states the
//! conventions every function follows; `docs/languages/c.md` has examples.

// Every exported function takes raw pointers from C; the contract for all of
// them is stated once, in the header's conventions, not per function.
#![allow(clippy::missing_safety_doc)]
// The C names (`shmkit_sender`, `shmkit_status`) are the ABI.
#![allow(non_camel_case_types)]

mod args;
mod broadcast;
mod calls;
mod channel;
mod handle;
mod native;
mod pollable;
mod rpc;
mod segment;
mod status;
mod sync;
mod waitset;

pub use broadcast::*;
pub use channel::*;
pub use native::*;
pub use pollable::{shmkit_descriptor, shmkit_pollable_close, shmkit_ready_fn};
pub use rpc::*;
pub use segment::*;
pub use status::*;
pub use sync::*;
pub use waitset::*;

/// Wait forever (any negative `timeout_ms` does).
pub const SHMKIT_FOREVER: i64 = -1;

/// The version of this library, `"major.minor.patch"`.
#[no_mangle]
pub extern "C" fn shmkit_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
