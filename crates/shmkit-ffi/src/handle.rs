//! Handles: what C holds is not a pointer to a Rust object but a number naming a
//! slot in a process-wide table, with the slot's generation. A closed, stale,
//! forged or wrong-kind handle is found in the table (or not) and refused with
//! `SHMKIT_ERR_BAD_HANDLE`: it can never make shmkit touch freed memory.

use crate::status::{shmkit_status::*, Failure};
use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which object a handle refers to (part of the messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Shm,
    Mutex,
    Semaphore,
    Event,
    NativeSemaphore,
    NativeMutex,
    NativeEvent,
    PosixSemaphore,
    Sender,
    Receiver,
    Publisher,
    Subscriber,
    RpcServer,
    RpcClient,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shmkit_shm",
            Kind::Mutex => "shmkit_mutex",
            Kind::Semaphore => "shmkit_semaphore",
            Kind::Event => "shmkit_event",
            Kind::NativeSemaphore => "shmkit_native_semaphore",
            Kind::NativeMutex => "shmkit_native_mutex",
            Kind::NativeEvent => "shmkit_native_event",
            Kind::PosixSemaphore => "shmkit_posix_semaphore",
            Kind::Sender => "shmkit_sender",
            Kind::Receiver => "shmkit_receiver",
            Kind::Publisher => "shmkit_publisher",
            Kind::Subscriber => "shmkit_subscriber",
            Kind::RpcServer => "shmkit_rpc_server",
            Kind::RpcClient => "shmkit_rpc_client",
        }
    }
}

struct Slot {
    generation: usize,
    entry: Option<(Kind, Arc<dyn Any + Send + Sync>)>,
}

static TABLE: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// Bits of a handle holding the slot index (plus one, so that no handle is 0);
/// the rest hold the generation, which changes every time a slot is reused.
const INDEX_BITS: u32 = 24;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

fn table() -> MutexGuard<'static, Vec<Slot>> {
    // A panic while the table was locked leaves it consistent (every change is
    // one assignment), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `object` and returns its handle value.
pub(crate) fn insert<T: Send + Sync + 'static>(kind: Kind, object: T) -> Result<usize, Failure> {
    let object: Arc<dyn Any + Send + Sync> = Arc::new(object);
    let mut t = table();
    let index = match t.iter().position(|s| s.entry.is_none()) {
        Some(i) => i,
        None if t.len() < INDEX_MASK => {
            t.push(Slot {
                generation: 0,
                entry: None,
            });
            t.len() - 1
        }
        None => {
            return Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                "too many open handles (16 million)",
            ))
        }
    };
    let slot = &mut t[index];
    slot.generation = slot.generation.wrapping_add(1) & (usize::MAX >> INDEX_BITS);
    slot.entry = Some((kind, object));
    Ok((slot.generation << INDEX_BITS) | (index + 1))
}

fn find(handle: usize) -> Option<(Kind, Arc<dyn Any + Send + Sync>)> {
    let index = (handle & INDEX_MASK).checked_sub(1)?;
    let t = table();
    let slot = t.get(index)?;
    if slot.generation != handle >> INDEX_BITS {
        return None;
    }
    slot.entry.clone()
}

fn bad(handle: usize, kind: Kind, what: &str) -> Failure {
    if handle == 0 {
        return Failure::new(
            SHMKIT_ERR_NULL_POINTER,
            format!("the {} handle is NULL", kind.name()),
        );
    }
    Failure::new(
        SHMKIT_ERR_BAD_HANDLE,
        format!("{handle:#x} is not an open {} handle ({what})", kind.name()),
    )
}

/// The object behind `handle`, which must be open and of `kind`.
pub(crate) fn get<T: Send + Sync + 'static>(handle: usize, kind: Kind) -> Result<Arc<T>, Failure> {
    match find(handle) {
        None => Err(bad(handle, kind, "closed or never opened")),
        Some((k, _)) if k != kind => Err(bad(handle, kind, &format!("it is a {}", k.name()))),
        Some((_, object)) => object
            .downcast::<T>()
            .map_err(|_| bad(handle, kind, "its object has another type")),
    }
}

/// Closes `handle`: later uses are refused. Calls still running on it finish
/// first (they hold the object); the object goes away after the last of them.
pub(crate) fn remove(handle: usize, kind: Kind) -> Result<(), Failure> {
    let index = (handle & INDEX_MASK).wrapping_sub(1);
    let removed = {
        let mut t = table();
        match t.get_mut(index) {
            Some(slot) if slot.generation == handle >> INDEX_BITS => match &slot.entry {
                Some((k, _)) if *k == kind => slot.entry.take(),
                Some((k, _)) => return Err(bad(handle, kind, &format!("it is a {}", k.name()))),
                None => None,
            },
            _ => None,
        }
    };
    // Dropped outside the table lock: dropping may unmap memory or wake peers.
    match removed {
        Some(_) => Ok(()),
        None => Err(bad(handle, kind, "closed or never opened")),
    }
}
