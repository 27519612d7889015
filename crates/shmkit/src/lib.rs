//! shmkit: shared memory for inter-process communication, done safely.
//!
//! - [`Shm`]: named shared memory — create, open, create-or-open (exactly one process
//!   initialises), remove; temporary or persistent; read-only, read-write or
//!   copy-on-write; views at any offset. Managed segments carry a validated header;
//!   raw mode opens other programs' objects by their OS names.
//! - [`MappedFile`]: memory-mapped files with .NET-style capacity rules, views,
//!   flush and access advice, optionally published under a name.
//! - [`Mapping`]: the bounds-checked byte window both dereference to.
//! - [`sync`]: cross-process [`Mutex`](sync::Mutex), [`Semaphore`](sync::Semaphore)
//!   and [`Event`](sync::Event), named or embedded in a segment, with timeouts and
//!   dead-owner detection; adapters for POSIX and Win32 named objects.
//! - [`channel`]: message channels — one-to-one and many-to-one queues,
//!   publish/subscribe broadcast, request/response — with messages of any size,
//!   zero-copy send and receive, and dead-peer detection.
//!
//! ```
//! use shmkit::{Shm, ShmOptions};
//! # fn main() -> shmkit::Result<()> {
//! # let name = format!("doc-lib-{}", std::process::id());
//! let writer = Shm::create(&name, 4096)?;
//! writer.write_at(0, b"hello from the writer")?;
//!
//! let reader = ShmOptions::new().access(shmkit::Access::ReadOnly).open(&name)?;
//! let mut buf = [0u8; 21];
//! reader.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello from the writer");
//! # Ok(()) }
//! ```
//!
//! Everything that can fail returns [`Error`], whose message names the object and
//! the cause. Nothing a peer writes into shared memory can make shmkit panic or read
//! out of bounds: headers are copied out and validated before use.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(target_endian = "big")]
compile_error!(
    "shmkit's shared-memory layouts are little-endian; big-endian targets are not supported"
);

mod access;
mod block_on;
pub mod channel;
mod error;
mod file;
mod fingerprint;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod interrupt;
mod mapping;
mod name;
mod notifier;
mod readiness;
mod segment;
mod shm;
pub mod sync;
mod sys;
mod waitset;

pub use access::{Access, Advice};
pub use block_on::block_on;
pub use error::{Error, ObjectName, Result};
pub use file::{MappedFile, MappedFileOptions};
pub use interrupt::Interrupter;
pub use mapping::Mapping;
pub use name::{Namespace, MAX_NAME_LEN};
pub use notifier::Notifier;
pub use segment::{InitState, Lifetime, SegmentInfo, SegmentKind, HEADER_BLOCK, LAYOUT_VERSION};
pub use shm::{Shm, ShmOptions};
pub use waitset::{Member, WaitSet};

/// docs/async.md's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/async.md")]
pub struct AsyncDoctests;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
