//! `shmkit_waitset`: waiting on many handles and descriptors at once, over the
//! core's `shmkit::WaitSet`.
//!
//! The C set keeps its members' handles (so their objects stay alive) and, for
//! each wait, enters every member (its calls wait meanwhile, as for any call on
//! the handle), builds a `WaitSet` borrowing the objects, and waits. Closing a
//! member from another thread raises its interrupter, which ends the wait; the
//! member is then reported ready (its next call says it is closed). Closing the
//! set ends its wait with `SHMKIT_ERR_CLOSED`.

use crate::args::{out, put};
use crate::broadcast::{shmkit_subscriber, SubscriberEntry, SubscriberState};
use crate::calls::{Call, Pass, Serial, Wait};
use crate::channel::{
    shmkit_receiver, shmkit_sender, ReceiverEntry, ReceiverState, SenderEntry, SenderSlot,
};
use crate::handle::{get, insert, remove, Kind};
use crate::pollable::shmkit_descriptor;
use crate::rpc::{shmkit_rpc_server, ServerEntry, ServerState};
use crate::status::{run, shmkit_status, shmkit_status::*, Failure, Outcome};
use crate::sync::{shmkit_event, shmkit_mutex, shmkit_semaphore, MutexEntry, Waitable};
use shmkit::sync::{Event, Semaphore};
use shmkit::{Error, Interrupter, WaitSet};
use std::sync::Arc;
use std::time::Instant;

/// A set of handles and descriptors to wait on together.
pub struct shmkit_waitset {
    _opaque: (),
}

/// A member: the handle's entry (kept alive by the set), or a descriptor.
#[derive(Clone)]
enum Member {
    Receiver(Arc<ReceiverEntry>),
    Sender(Arc<SenderEntry>),
    Subscriber(Arc<SubscriberEntry>),
    RpcServer(Arc<ServerEntry>),
    Mutex(Arc<MutexEntry>),
    Semaphore(Arc<Waitable<Semaphore>>),
    Event(Arc<Waitable<Event>>),
    Descriptor(shmkit_descriptor),
}

impl Member {
    /// The entry's address, to refuse a handle added twice (its wait would
    /// enter it twice).
    fn id(&self) -> usize {
        match self {
            Member::Receiver(e) => Arc::as_ptr(e) as usize,
            Member::Sender(e) => Arc::as_ptr(e) as usize,
            Member::Subscriber(e) => Arc::as_ptr(e) as usize,
            Member::RpcServer(e) => Arc::as_ptr(e) as usize,
            Member::Mutex(e) => Arc::as_ptr(e) as usize,
            Member::Semaphore(e) => Arc::as_ptr(e) as usize,
            Member::Event(e) => Arc::as_ptr(e) as usize,
            Member::Descriptor(_) => 0,
        }
    }

    /// Whether the member's handle was closed.
    fn closed(&self) -> bool {
        match self {
            Member::Receiver(e) => e.0.is_closed(),
            Member::Sender(e) => e.0.is_closed(),
            Member::Subscriber(e) => e.0.is_closed(),
            Member::RpcServer(e) => e.0.is_closed(),
            Member::Mutex(e) => e.gate.is_closed(),
            Member::Semaphore(e) => e.gate.is_closed(),
            Member::Event(e) => e.gate.is_closed(),
            Member::Descriptor(_) => false,
        }
    }
}

struct SetState {
    /// `None`: removed (indices stay as they were given).
    members: Vec<Option<Member>>,
}

pub(crate) struct SetEntry(Serial<SetState>);

fn set_entry(set: *mut shmkit_waitset) -> Result<Arc<SetEntry>, Failure> {
    get::<SetEntry>(set as usize, Kind::WaitSet)
}

/// Makes an empty wait set. Add members with `shmkit_waitset_add_*`, wait with
/// `shmkit_waitset_wait`, release it with `shmkit_waitset_close` (the members are
/// not closed).
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_new(set: *mut *mut shmkit_waitset) -> shmkit_status {
    run("shmkit_waitset_new", || {
        out("set", set)?;
        let stop = Interrupter::new();
        let state = SetState {
            members: Vec::new(),
        };
        let h = insert(
            Kind::WaitSet,
            SetEntry(Serial::new("wait set", state, Some(stop))),
        )?;
        // SAFETY: checked by `out`.
        unsafe { put(set, h as *mut shmkit_waitset) };
        Ok(())
    })
}

fn add(set: *mut shmkit_waitset, index: *mut usize, member: Result<Member, Failure>) -> Outcome {
    let entry = set_entry(set)?;
    let member = member?;
    let mut s = entry.0.enter(Wait::Forever, SHMKIT_ERR_WOULD_BLOCK)?;
    let id = member.id();
    if id != 0 {
        if let Some(i) = s
            .members
            .iter()
            .position(|m| m.as_ref().map(Member::id) == Some(id))
        {
            return Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("this handle is already in the set, at index {i}"),
            ));
        }
    }
    s.members.push(Some(member));
    // SAFETY: NULL or writable per the header's conventions.
    unsafe { put(index, s.members.len() - 1) };
    Ok(())
}

/// Adds a receiver: ready when it has a message (or an error to report, such as
/// senders gone). `*index` (may be NULL) gets its index: members are numbered
/// from 0 in the order added. The set keeps the handle's object alive; a handle
/// is added once. The same for the other `shmkit_waitset_add_*`.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_receiver(
    set: *mut shmkit_waitset,
    receiver: *mut shmkit_receiver,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_receiver", || {
        add(
            set,
            index,
            get::<ReceiverEntry>(receiver as usize, Kind::Receiver).map(Member::Receiver),
        )
    })
}

/// Adds a sender: ready when its ring has room (or its receiver is gone).
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_sender(
    set: *mut shmkit_waitset,
    sender: *mut shmkit_sender,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_sender", || {
        add(
            set,
            index,
            get::<SenderEntry>(sender as usize, Kind::Sender).map(Member::Sender),
        )
    })
}

/// Adds a subscriber: ready when a message was published (or it lagged, or the
/// publisher is gone).
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_subscriber(
    set: *mut shmkit_waitset,
    subscriber: *mut shmkit_subscriber,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_subscriber", || {
        add(
            set,
            index,
            get::<SubscriberEntry>(subscriber as usize, Kind::Subscriber).map(Member::Subscriber),
        )
    })
}

/// Adds an RPC server: ready when a request came.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_rpc_server(
    set: *mut shmkit_waitset,
    server: *mut shmkit_rpc_server,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_rpc_server", || {
        add(
            set,
            index,
            get::<ServerEntry>(server as usize, Kind::RpcServer).map(Member::RpcServer),
        )
    })
}

/// Adds a mutex: ready when it is free (or its owner died); another locker may
/// take it first, so `shmkit_mutex_try_lock` may still say WOULD_BLOCK.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_mutex(
    set: *mut shmkit_waitset,
    m: *mut shmkit_mutex,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_mutex", || {
        add(
            set,
            index,
            get::<MutexEntry>(m as usize, Kind::Mutex).map(Member::Mutex),
        )
    })
}

/// Adds a semaphore: ready when its count is above 0.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_semaphore(
    set: *mut shmkit_waitset,
    sem: *mut shmkit_semaphore,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_semaphore", || {
        add(
            set,
            index,
            get::<Waitable<Semaphore>>(sem as usize, Kind::Semaphore).map(Member::Semaphore),
        )
    })
}

/// Adds an event: ready when it is set (the wait does not take an auto-reset
/// event's signal: `shmkit_event_wait` with timeout 0 does).
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_event(
    set: *mut shmkit_waitset,
    event: *mut shmkit_event,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_event", || {
        add(
            set,
            index,
            get::<Waitable<Event>>(event as usize, Kind::Event).map(Member::Event),
        )
    })
}

/// Adds a descriptor of your own: on Unix a file descriptor, ready when
/// readable (a socket, a pipe, a timerfd, an eventfd to wake the set from another
/// thread); on Windows a HANDLE, ready when signalled (at most 63 per set; the
/// wait takes an auto-reset event's or a semaphore's signal, as any Windows wait
/// does). It must stay open while it is in the set.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_add_descriptor(
    set: *mut shmkit_waitset,
    descriptor: shmkit_descriptor,
    index: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_add_descriptor", || {
        let valid = if cfg!(unix) {
            (0..=i32::MAX as isize).contains(&descriptor)
        } else {
            descriptor != 0 && descriptor != -1
        };
        let member = if valid {
            Ok(Member::Descriptor(descriptor))
        } else {
            Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("{descriptor} is not a descriptor"),
            ))
        };
        add(set, index, member)
    })
}

/// Takes the member at `index` out of the set (the other indices stay as they
/// are; it is never reported again). `SHMKIT_ERR_INVALID_ARGUMENT` if there is
/// none there.
#[no_mangle]
pub extern "C" fn shmkit_waitset_remove(set: *mut shmkit_waitset, index: usize) -> shmkit_status {
    run("shmkit_waitset_remove", || {
        let entry = set_entry(set)?;
        let mut s = entry.0.enter(Wait::Forever, SHMKIT_ERR_WOULD_BLOCK)?;
        match s.members.get_mut(index).and_then(Option::take) {
            Some(_) => Ok(()),
            None => Err(Failure::new(
                SHMKIT_ERR_INVALID_ARGUMENT,
                format!("no member at index {index}"),
            )),
        }
    })
}

/// A member entered for one wait: its handle's call (so nobody takes from it
/// meanwhile and a close waits for the wait to end).
enum Entered<'a> {
    Receiver(Call<'a, ReceiverState>),
    Sender(Call<'a, SenderSlot>),
    Subscriber(Call<'a, SubscriberState>),
    RpcServer(Call<'a, ServerState>),
    /// (The pass counts the wait as a call, so a close waits for it.)
    Mutex(&'a MutexEntry, #[allow(dead_code)] Pass<'a>),
    Semaphore(&'a Waitable<Semaphore>, #[allow(dead_code)] Pass<'a>),
    Event(&'a Waitable<Event>, #[allow(dead_code)] Pass<'a>),
    Descriptor(shmkit_descriptor),
}

/// Enters `member` within `wait`; `Ok(None)`: it is closed (reported ready).
fn enter(member: &Member, wait: Wait, index: usize) -> Result<Option<Entered<'_>>, Failure> {
    let closed = |e: Failure| match e.status {
        SHMKIT_ERR_CLOSED => Ok(None),
        _ => Err(Failure::new(
            e.status,
            format!("member {index}: {}", e.message),
        )),
    };
    let status = SHMKIT_ERR_WOULD_BLOCK;
    let entered = match member {
        Member::Receiver(e) => e.0.enter(wait, status).map(Entered::Receiver),
        Member::Sender(e) => e.0.enter(wait, status).map(Entered::Sender),
        Member::Subscriber(e) => e.0.enter(wait, status).map(Entered::Subscriber),
        Member::RpcServer(e) => e.0.enter(wait, status).map(Entered::RpcServer),
        Member::Mutex(e) => e.gate.enter().map(|p| Entered::Mutex(e, p)),
        Member::Semaphore(e) => e.gate.enter().map(|p| Entered::Semaphore(e, p)),
        Member::Event(e) => e.gate.enter().map(|p| Entered::Event(e, p)),
        Member::Descriptor(d) => Ok(Entered::Descriptor(*d)),
    };
    entered.map(Some).or_else(closed)
}

impl Entered<'_> {
    /// Ready in this layer already: a message or request kept for a caller
    /// whose buffer was too small (the core's object no longer has it).
    fn kept_ready(&self) -> bool {
        match self {
            Entered::Receiver(c) => c.pending.is_some(),
            Entered::Subscriber(c) => c.pending.is_some(),
            Entered::RpcServer(c) => matches!(c.current, Some((_, false))),
            _ => false,
        }
    }
}

/// Waits until at least one member is ready, up to `timeout_ms` (negative:
/// forever; 0: looks once), and writes the indices of the ready members, in
/// order, to `ready` (room for `capacity`; may be NULL if 0), and how many are
/// ready to `*count` (more than `capacity` when they did not all fit: the others
/// are reported again by the next wait).
///
/// Level-triggered, like `poll`: "ready" means the member's try call (timeout 0,
/// `shmkit_mutex_try_lock`) would not say `SHMKIT_ERR_WOULD_BLOCK` now, and a
/// member is reported by every wait until it is taken from. Another process may
/// take first: loop on WOULD_BLOCK. Nothing ready in time:
/// `SHMKIT_ERR_TIMEOUT` (`SHMKIT_ERR_WOULD_BLOCK` for timeout 0), `*count` 0.
///
/// For the wait, every member handle is in a call, as if this thread were
/// blocked on it: another thread's call on a member waits for the wait (within
/// its timeout), and the wait waits (within its timeout) for a call on a member
/// to end. Closing a member ends the wait and reports it ready (its next call
/// returns `SHMKIT_ERR_BAD_HANDLE`: remove it from the set). Closing the set
/// from another thread ends the wait with `SHMKIT_ERR_CLOSED`. Waiting costs no
/// CPU: shmkit's reactor watches the members.
#[no_mangle]
pub unsafe extern "C" fn shmkit_waitset_wait(
    set: *mut shmkit_waitset,
    timeout_ms: i64,
    ready: *mut usize,
    capacity: usize,
    count: *mut usize,
) -> shmkit_status {
    run("shmkit_waitset_wait", || {
        out("count", count)?;
        if ready.is_null() && capacity > 0 {
            return Err(Failure::new(
                SHMKIT_ERR_NULL_POINTER,
                format!("ready is NULL but its capacity is {capacity}"),
            ));
        }
        // SAFETY: checked by `out`.
        unsafe { put(count, 0) };
        let wait = Wait::from_ms(timeout_ms);
        let entry = set_entry(set)?;
        let s = entry.0.enter(wait, SHMKIT_ERR_WOULD_BLOCK)?;
        let found = wait_members(&entry, &s.members, wait)?;
        if found.is_empty() {
            return Err(match wait {
                Wait::Now => Failure::new(SHMKIT_ERR_WOULD_BLOCK, "no member is ready now"),
                _ => Failure::new(
                    SHMKIT_ERR_TIMEOUT,
                    format!("no member became ready within {timeout_ms} ms"),
                ),
            });
        }
        // SAFETY: `ready` holds `capacity` indices per the header's
        // conventions (checked not NULL when `capacity` > 0).
        let slots = unsafe { crate::args::slice_mut("ready", ready, capacity) }?;
        for (slot, i) in slots.iter_mut().zip(&found) {
            *slot = *i;
        }
        // SAFETY: checked by `out`.
        unsafe { put(count, found.len()) };
        Ok(())
    })
}

/// One wait over `members`: the ready indices (empty: none in time).
fn wait_members(
    entry: &SetEntry,
    members: &[Option<Member>],
    wait: Wait,
) -> Result<Vec<usize>, Failure> {
    // Enter every member (each within what is left of the timeout).
    let mut entered: Vec<(usize, Entered<'_>)> = Vec::new();
    let mut ready = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let Some(m) = m else { continue };
        match enter(m, wait, i)? {
            Some(e) => entered.push((i, e)),
            None => ready.push(i),
        }
    }
    if entered.iter().any(|(_, e)| e.kept_ready()) {
        ready.extend(
            entered
                .iter()
                .filter(|(_, e)| e.kept_ready())
                .map(|(i, _)| *i),
        );
    }
    let wait = if ready.is_empty() { wait } else { Wait::Now };

    let mut set = WaitSet::new();
    let stop = entry.0.interrupter();
    if let Some(stop) = &stop {
        set.interrupt_on(stop);
    }
    let mut index = Vec::new();
    for (i, e) in entered.iter_mut() {
        match e {
            Entered::Receiver(c) => {
                set.add(&mut c.rx);
            }
            Entered::Sender(c) => match &mut **c {
                SenderSlot::Idle(tx) => {
                    set.add(tx);
                }
                _ => {
                    return Err(Failure::new(
                        SHMKIT_ERR_INVALID_ARGUMENT,
                        format!(
                            "member {i}: a reservation is open on this sender (commit or \
                             cancel it before waiting for room)"
                        ),
                    ))
                }
            },
            Entered::Subscriber(c) => {
                set.add(&mut c.sub);
            }
            Entered::RpcServer(c) => {
                set.add(&mut c.server);
            }
            Entered::Mutex(m, _) => {
                set.add(&*m.mutex);
            }
            Entered::Semaphore(w, _) => {
                set.add(&*w.object);
            }
            Entered::Event(w, _) => {
                set.add(&*w.object);
            }
            Entered::Descriptor(d) => {
                add_descriptor(&mut set, *d);
            }
        }
        index.push(*i);
    }
    let waited = match wait {
        Wait::Now => set.wait_timeout(std::time::Duration::ZERO),
        Wait::Until(t) => set.wait_timeout(t.saturating_duration_since(Instant::now())),
        Wait::Forever => set.wait(),
    };
    drop(set);
    match waited {
        Ok(found) => {
            ready.extend(found.into_iter().map(|k| index[k]));
            // The core's wait looks at descriptors only when no shmkit member is
            // ready (and not at all with timeout 0): look at them now, so that a
            // busy channel does not hide a ready timer or socket.
            let descriptors: Vec<(usize, shmkit_descriptor)> = entered
                .iter()
                .filter_map(|(i, e)| match e {
                    Entered::Descriptor(d) => Some((*i, *d)),
                    _ => None,
                })
                .collect();
            ready.extend(descriptors_ready(&descriptors));
        }
        Err(Error::Interrupted { .. }) => {
            if entry.0.is_closed() {
                return Err(Failure::new(
                    SHMKIT_ERR_CLOSED,
                    "the wait set was closed while this wait was waiting on it",
                ));
            }
            // A member was closed: report it (and any other closed one) ready.
            ready.extend(
                members
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.as_ref().is_some_and(Member::closed))
                    .map(|(i, _)| i),
            );
        }
        Err(e) => return Err(e.into()),
    }
    ready.sort_unstable();
    ready.dedup();
    Ok(ready)
}

/// The members among `descriptors` (index, descriptor) ready now.
#[cfg(unix)]
fn descriptors_ready(descriptors: &[(usize, shmkit_descriptor)]) -> Vec<usize> {
    if descriptors.is_empty() {
        return Vec::new();
    }
    let mut fds: Vec<libc::pollfd> = descriptors
        .iter()
        .map(|(_, d)| libc::pollfd {
            fd: *d as libc::c_int,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: a live array of `fds.len()` pollfd entries; timeout 0.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if n <= 0 {
        return Vec::new();
    }
    descriptors
        .iter()
        .zip(&fds)
        .filter(|(_, p)| p.revents != 0)
        .map(|((i, _), _)| *i)
        .collect()
}

/// The members among `descriptors` (index, handle) signalled now (taking an
/// auto-reset event's or a semaphore's signal, as the core's wait does).
#[cfg(windows)]
fn descriptors_ready(descriptors: &[(usize, shmkit_descriptor)]) -> Vec<usize> {
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    let signalled = |h: shmkit_descriptor| {
        // SAFETY: a handle the caller keeps open while it is in the set.
        unsafe { WaitForSingleObject(h as _, 0) == WAIT_OBJECT_0 }
    };
    descriptors
        .iter()
        .filter(|(_, h)| signalled(*h))
        .map(|(i, _)| *i)
        .collect()
}

#[cfg(unix)]
fn add_descriptor(set: &mut WaitSet<'_>, d: shmkit_descriptor) {
    // SAFETY: the caller keeps the descriptor open while it is in the set (the
    // header's contract for `shmkit_waitset_add_descriptor`); the borrow lasts
    // one wait.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(d as std::os::fd::RawFd) };
    set.add(fd);
}

#[cfg(windows)]
fn add_descriptor(set: &mut WaitSet<'_>, d: shmkit_descriptor) {
    // SAFETY: the caller keeps the handle open while it is in the set (the
    // header's contract for `shmkit_waitset_add_descriptor`); the borrow lasts
    // one wait.
    let h = unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(d as _) };
    set.add(h);
}

/// Releases the set (its members stay open). A wait on it in another thread
/// returns `SHMKIT_ERR_CLOSED`, and the close waits for it to leave, so that the
/// member handles are free when this returns.
#[no_mangle]
pub extern "C" fn shmkit_waitset_close(set: *mut shmkit_waitset) -> shmkit_status {
    run("shmkit_waitset_close", || {
        remove::<SetEntry>(set as usize, Kind::WaitSet)?.0.close();
        Ok(())
    })
}
