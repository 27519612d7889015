//! The `shmkit` Python package's native module (`shmkit._shmkit`): PyO3
//! bindings to the Rust library, which they call directly (not through the C
//! ABI). `python/shmkit/__init__.py` re-exports everything.

mod aio;
mod broadcast;
mod channel;
mod errors;
mod handle;
mod region;
mod rpc;
mod shm;
mod sync;
mod wait;

use pyo3::prelude::*;

/// shmkit's native module.
#[pymodule]
fn _shmkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<region::Region>()?;
    m.add_class::<shm::PyShm>()?;
    m.add_class::<shm::PyMappedFile>()?;
    m.add_function(wrap_pyfunction!(shm::ls, m)?)?;
    m.add_function(wrap_pyfunction!(shm::reap_dead_tokens, m)?)?;
    m.add_class::<sync::PyMutex>()?;
    m.add_class::<sync::PyMutexGuard>()?;
    m.add_class::<sync::PySemaphore>()?;
    m.add_class::<sync::PyEvent>()?;
    m.add_class::<channel::PySender>()?;
    m.add_class::<channel::PyReservation>()?;
    m.add_class::<channel::PyReceiver>()?;
    m.add_class::<broadcast::PyPublisher>()?;
    m.add_class::<broadcast::PySubscriber>()?;
    m.add_class::<rpc::PyRpcServer>()?;
    m.add_class::<rpc::PyRequest>()?;
    m.add_class::<rpc::PyRpcClient>()?;
    m.add("SEMAPHORE_MAX", shmkit::sync::SEMAPHORE_MAX)?;
    Ok(())
}
