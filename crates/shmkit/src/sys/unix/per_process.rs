//! State that belongs to one process: a forked child gets fresh state instead
//! of the parent's, whose lock another thread of the parent may have held at
//! the moment of the fork (the child would wait for it forever) and whose
//! threads (the reactor's, the exit watcher's) do not run in the child.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicPtr, AtomicU32};
use std::sync::{Mutex, Once};

/// Bumped in every forked child, before it runs anything else.
static GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    // An atomic add: async-signal-safe, as a fork handler must be.
    GENERATION.fetch_add(1, SeqCst);
}

/// This process's fork generation (0 in a process that was never forked from
/// a shmkit user, one more in each forked child).
pub(crate) fn generation() -> u32 {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a plain, async-signal-safe function.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    GENERATION.load(SeqCst)
}

/// A lazily made `Mutex<T>` per process (per fork generation). The state of a
/// parent is leaked in its children, never used or dropped there.
pub(crate) struct PerProcess<T: 'static> {
    current: AtomicPtr<Slot<T>>,
}

struct Slot<T> {
    generation: u32,
    value: Mutex<T>,
}

impl<T: 'static> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's state, made with `init` on first use.
    pub(crate) fn get(&self, init: impl FnOnce() -> T) -> &'static Mutex<T> {
        let generation = generation();
        let seen = self.current.load(SeqCst);
        // SAFETY: a non-null pointer here came from Box::into_raw below and is
        // never freed once published.
        if let Some(slot) = unsafe { seen.as_ref() } {
            if slot.generation == generation {
                return &slot.value;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot {
            generation,
            value: Mutex::new(init()),
        }));
        match self.current.compare_exchange(seen, fresh, SeqCst, SeqCst) {
            // SAFETY: just published; never freed.
            Ok(_) => unsafe { &(*fresh).value },
            Err(won) => {
                // Another thread made it first: use theirs, drop ours (never
                // shared).
                // SAFETY: ours, from Box::into_raw above, not published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: published by the winner, never freed.
                unsafe { &(*won).value }
            }
        }
    }
}
