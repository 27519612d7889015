//! Holds the interoperability tests in `tests/`; the build script compiles the C
//! peer program they run. Nothing here is meant to be used as a library.

/// Path of the compiled C peer (empty on platforms where it is not built).
pub const C_PEER: &str = env!("SHM_PEER_EXE");
