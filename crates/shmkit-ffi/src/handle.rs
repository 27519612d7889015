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
    WaitSet,
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
            Kind::WaitSet => "shmkit_waitset",
        }
    }
}

struct Slot {
    generation: usize,
    entry: Option<(Kind, Arc<dyn Any + Send + Sync>)>,
}

/// The slots, and how a handle's bits split between the slot index (plus one,
/// so that no handle is 0) and the slot's generation, which changes every time
/// the slot is reused. A slot whose generation would wrap is retired (never used
/// again), so a stale handle can never name a later object; with the widths
/// below that costs nothing on 64-bit targets (40 bits of generation) and one
/// slot in 65,536 reuses on 32-bit ones (16 bits).
struct Table {
    slots: Vec<Slot>,
    index_bits: u32,
    generation_bits: u32,
}

impl Table {
    const fn new(index_bits: u32, generation_bits: u32) -> Table {
        Table {
            slots: Vec::new(),
            index_bits,
            generation_bits,
        }
    }

    fn index_mask(&self) -> usize {
        (1 << self.index_bits) - 1
    }

    fn max_generation(&self) -> usize {
        usize::MAX >> (usize::BITS - self.generation_bits)
    }

    fn insert(&mut self, kind: Kind, object: Arc<dyn Any + Send + Sync>) -> Result<usize, Failure> {
        let max = self.max_generation();
        let free = self
            .slots
            .iter()
            .position(|s| s.entry.is_none() && s.generation < max);
        let index = match free {
            Some(i) => i,
            // Indexes run to `index_mask() - 1` (the handle holds index + 1).
            None if self.slots.len() < self.index_mask() => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                self.slots.len() - 1
            }
            None => {
                return Err(Failure::new(
                    SHMKIT_ERR_INVALID_ARGUMENT,
                    format!(
                        "too many handles: {} open or worn out (each slot serves {max} \
                         handles in turn, then is retired)",
                        self.slots.len()
                    ),
                ))
            }
        };
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.entry = Some((kind, object));
        Ok((slot.generation << self.index_bits) | (index + 1))
    }

    /// The slot `handle` names, if its generation is the slot's current one.
    fn slot(&mut self, handle: usize) -> Option<&mut Slot> {
        let index = (handle & self.index_mask()).checked_sub(1)?;
        let generation = handle >> self.index_bits;
        self.slots
            .get_mut(index)
            .filter(|s| s.generation == generation)
    }
}

#[cfg(target_pointer_width = "64")]
static TABLE: Mutex<Table> = Mutex::new(Table::new(24, 40));
#[cfg(not(target_pointer_width = "64"))]
static TABLE: Mutex<Table> = Mutex::new(Table::new(16, 16));

fn table() -> MutexGuard<'static, Table> {
    // A panic while the table was locked leaves it consistent (every change is
    // one assignment), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `object` and returns its handle value.
pub(crate) fn insert<T: Send + Sync + 'static>(kind: Kind, object: T) -> Result<usize, Failure> {
    let object: Arc<dyn Any + Send + Sync> = Arc::new(object);
    table().insert(kind, object)
}

fn find(handle: usize) -> Option<(Kind, Arc<dyn Any + Send + Sync>)> {
    table().slot(handle)?.entry.clone()
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

fn downcast<T: Send + Sync + 'static>(
    handle: usize,
    kind: Kind,
    object: Arc<dyn Any + Send + Sync>,
) -> Result<Arc<T>, Failure> {
    object
        .downcast::<T>()
        .map_err(|_| bad(handle, kind, "its object has another type"))
}

/// The object behind `handle`, which must be open and of `kind`.
pub(crate) fn get<T: Send + Sync + 'static>(handle: usize, kind: Kind) -> Result<Arc<T>, Failure> {
    match find(handle) {
        None => Err(bad(handle, kind, "closed or never opened")),
        Some((k, _)) if k != kind => Err(bad(handle, kind, &format!("it is a {}", k.name()))),
        Some((_, object)) => downcast(handle, kind, object),
    }
}

/// Takes `handle` out of the table: later uses are refused with
/// `SHMKIT_ERR_BAD_HANDLE`. Calls already running keep their reference; the
/// caller ends them (closing the entry) if they may block.
pub(crate) fn remove<T: Send + Sync + 'static>(
    handle: usize,
    kind: Kind,
) -> Result<Arc<T>, Failure> {
    let removed = {
        let mut t = table();
        match t.slot(handle) {
            Some(slot) => match &slot.entry {
                Some((k, _)) if *k == kind => slot.entry.take(),
                Some((k, _)) => return Err(bad(handle, kind, &format!("it is a {}", k.name()))),
                None => None,
            },
            None => None,
        }
    };
    // Used (and dropped) outside the table lock: dropping may unmap memory or
    // wake peers.
    match removed {
        Some((_, object)) => downcast(handle, kind, object),
        None => Err(bad(handle, kind, "closed or never opened")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Arc<dyn Any + Send + Sync> {
        Arc::new(())
    }

    fn live(t: &mut Table, h: usize) -> bool {
        t.slot(h).is_some_and(|s| s.entry.is_some())
    }

    /// A narrow table (2 bits of generation, as 32-bit targets have 16): a slot
    /// serves 3 handles, then is retired, so no stale handle ever names a later
    /// object; when every slot is worn out, opening fails with a message.
    #[test]
    fn worn_out_slots_are_retired_not_wrapped() {
        let mut t = Table::new(2, 2); // 3 slots (handles hold index + 1)
        let mut stale = Vec::new();
        for _ in 0..9 {
            let h = t.insert(Kind::Shm, object()).unwrap();
            assert!(live(&mut t, h));
            for &old in &stale {
                assert!(
                    !live(&mut t, old),
                    "stale handle {old:#x} names {h:#x}'s object"
                );
                assert_ne!(old, h);
            }
            t.slot(h).unwrap().entry = None; // closed
            stale.push(h);
        }
        assert_eq!(t.slots.len(), 3);
        let e = t.insert(Kind::Shm, object()).unwrap_err();
        assert_eq!(e.status, SHMKIT_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("too many handles"), "{}", e.message);
        for &old in &stale {
            assert!(t.slot(old).is_none() || !live(&mut t, old));
        }
    }

    /// The widths in use leave no handle 0 and round-trip a slot's handle.
    #[test]
    fn handles_round_trip() {
        let mut t = Table::new(24, usize::BITS - 24);
        let a = t.insert(Kind::Mutex, object()).unwrap();
        let b = t.insert(Kind::Event, object()).unwrap();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(t.slot(a).unwrap().entry.as_ref().unwrap().0, Kind::Mutex);
        assert_eq!(t.slot(b).unwrap().entry.as_ref().unwrap().0, Kind::Event);
        assert!(t.slot(0).is_none());
        assert!(t.slot(0xdead_beef).is_none());
    }
}
