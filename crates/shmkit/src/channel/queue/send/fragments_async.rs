//! `send_async` for messages longer than one record: the fragments of
//! `send`, each waiting for room without a thread.
//!
//! The message goes out fragment by fragment over several polls (with the
//! producer lock of a many-sender channel held across them, as `send` holds
//! it). Dropped halfway, the future leaves an unfinished message, which the
//! receiver drops when the next message starts, as after a `send_timeout` that
//! timed out halfway: a long message is delivered whole or not at all.

use std::time::{Duration, Instant};

use super::{receiver_gone, Sender, WriteCursor};
use crate::channel::layout::{max_record, Tag, RECORD_HEADER};
use crate::channel::memory::{ChannelMem, CHECK_EVERY};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{async_spin, Bell, Bells, OpFuture, Watched};
use crate::sync::{LockError, Mutex};

/// The producer lock, taken for the whole message; released when dropped
/// (also when the future is dropped halfway).
struct HeldLock<'a>(&'a Mutex<()>);

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        self.0.unlock_for_owned_reservation();
    }
}

/// Waiting for room for one fragment.
struct Room<'a> {
    mem: &'a ChannelMem,
    cursor: &'a mut WriteCursor,
    spin: Option<Duration>,
    want: u64,
    full_since: Option<Instant>,
}

impl Room<'_> {
    fn try_reserve(&mut self) -> Result<u64> {
        if let Some(idx) = self.cursor.try_reserve(self.mem, self.want)? {
            return Ok(idx);
        }
        if let Some(gone) = receiver_gone(self.mem, false) {
            return Err(gone);
        }
        let since = *self.full_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= CHECK_EVERY {
            self.full_since = Some(Instant::now());
            if let Some(gone) = receiver_gone(self.mem, true) {
                return Err(gone);
            }
        }
        Err(Error::WouldBlock {
            object: self.mem.name().clone(),
            op: "send",
        })
    }
}

impl Watched for Room<'_> {
    fn bells(&self) -> Bells<'_> {
        let s = self.mem.space_bell();
        [
            Some(Bell {
                word: s.signal,
                waiters: s.waiters,
                park: s.park,
            }),
            None,
        ]
    }
    fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
        self.mem.interrupt_slot().get_arc()
    }
    fn recheck(&self) -> Option<Duration> {
        Some(CHECK_EVERY)
    }
    fn peers(&self) -> Option<Vec<crate::sys::ProcessIdentity>> {
        Some(self.mem.peer_identities(0..1))
    }
    fn spin(&self) -> Duration {
        async_spin(self.spin)
    }
    fn object(&self) -> &ObjectName {
        self.mem.name()
    }
}

impl Sender {
    /// Sends `msg`, longer than one record, in fragments, waiting for room
    /// without a thread; gives up at `deadline` (then `expired`'s error).
    pub(crate) async fn send_fragments_async(
        &mut self,
        msg: &[u8],
        deadline: Option<Instant>,
        expired: impl Fn() -> Error + Sync,
    ) -> Result<()> {
        let late = || deadline.is_some_and(|d| Instant::now() >= d);
        let len = msg.len() as u64;
        self.check_len(len, self.mem.max_message)?;
        let Sender {
            mem,
            cursor,
            lock,
            spin,
            ..
        } = self;
        let mem = &*mem;
        let _held = match lock.as_ref() {
            None => None,
            Some(lock) => {
                let taken = OpFuture::new(lock, "send", |l: &mut &Mutex<()>| {
                    if late() {
                        return Err(expired());
                    }
                    match l.try_lock() {
                        Ok(guard) => {
                            std::mem::forget(guard);
                            Ok(false)
                        }
                        Err(LockError::OwnerDied(guard)) => {
                            let mut guard = guard;
                            guard.mark_consistent();
                            std::mem::forget(guard);
                            Ok(true)
                        }
                        Err(LockError::Failed(e)) => Err(e),
                    }
                })
                .until(deadline)
                .await?;
                let held = HeldLock(lock);
                // Other senders moved the head: go on from theirs.
                *cursor = WriteCursor::load(mem, taken)?;
                Some(held)
            }
        };
        let max_rec = max_record(mem.capacity);
        let mut sent = 0usize;
        let mut first = true;
        while sent < msg.len() {
            let prefix = if first { 8 } else { 0 };
            let mut want = ((msg.len() - sent) as u64 + prefix).min(max_rec);
            let to_end = mem.capacity - (cursor.head & (mem.capacity - 1)) - RECORD_HEADER;
            if want > to_end && to_end * 2 >= want && to_end > prefix {
                want = to_end;
            }
            let room = Room {
                mem,
                cursor: &mut *cursor,
                spin: *spin,
                want,
                full_since: None,
            };
            let idx = OpFuture::new(room, "send", |room: &mut Room<'_>| {
                if late() {
                    return Err(expired());
                }
                room.try_reserve()
            })
            .until(deadline)
            .await?;
            let payload = idx + RECORD_HEADER;
            if first {
                mem.write(payload, &len.to_le_bytes());
            }
            let chunk = (want - prefix) as usize;
            mem.write(payload + prefix, &msg[sent..sent + chunk]);
            sent += chunk;
            let tag = if first {
                Tag::First
            } else if sent == msg.len() {
                Tag::Last
            } else {
                Tag::Middle
            };
            cursor.publish(mem, tag, want);
            first = false;
        }
        mem.intact()
    }
}
