//! Request/response over two kinds of queue: every client sends its requests into
//! the server's many-sender queue, and gets replies on a one-to-one queue of its
//! own, which it creates and names in each request.
//!
//! Request message: request id (u64 LE), reply-queue name length (u16 LE), the
//! name, the payload. Reply message: request id (u64 LE), the payload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::memory::CHECK_EVERY;
use super::wait::Deadline;
use super::{ChannelOptions, Receiver, Sender};
use crate::error::{Error, ObjectName, Result};
use crate::readiness::{AsyncWait, Bells, OpFuture, Watched};

/// How many clients a server admits at once.
pub const RPC_MAX_CLIENTS: u32 = 64;

fn request_options() -> ChannelOptions {
    ChannelOptions::new().max_senders(RPC_MAX_CLIENTS)
}

/// How long [`RpcServer::reply`] waits for room in a client's reply queue by
/// default.
pub const RPC_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A server: receives requests from many clients and replies to each.
///
/// ```
/// use shmkit::channel::{RpcClient, RpcServer};
/// # fn main() -> shmkit::Result<()> {
/// # let name = format!("doc-rpc-{}", std::process::id());
/// let mut server = RpcServer::bind(&name)?;
/// let mut client = RpcClient::connect(&name)?;
/// std::thread::scope(|s| {
///     s.spawn(|| -> shmkit::Result<()> {
///         let request = server.recv()?;
///         let answer = request.payload().to_ascii_uppercase();
///         server.reply(&request, &answer)
///     });
///     assert_eq!(client.call(b"shout")?, b"SHOUT");
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug)]
pub struct RpcServer {
    requests: Receiver,
    /// Reply queues of the clients served so far.
    replies: HashMap<String, Sender>,
    /// The reply being put together, kept to avoid an allocation per reply.
    scratch: Vec<u8>,
    reply_timeout: Duration,
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    id: u64,
    reply_to: String,
    payload: Vec<u8>,
}

impl Request {
    /// What the client sent.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The reply queue of the client that asked.
    pub fn client(&self) -> &str {
        &self.reply_to
    }
}

impl RpcServer {
    /// Serves on the channel `name` (created if no client made it yet). Clients
    /// may come and go: with none connected, [`recv`](Self::recv) waits for the
    /// next one.
    pub fn bind(name: &str) -> Result<RpcServer> {
        Ok(RpcServer {
            requests: request_options().wait_for_senders(true).receiver(name)?,
            replies: HashMap::new(),
            scratch: Vec::new(),
            reply_timeout: RPC_REPLY_TIMEOUT,
        })
    }

    /// Ends this server's blocked `recv`/`respond` from another thread: they
    /// return [`Error::Interrupted`], and so do later waits until
    /// [`Interrupter::clear`](crate::Interrupter::clear). (A reply being
    /// delivered waits at most the [reply timeout](Self::set_reply_timeout).)
    pub fn interrupter(&self) -> crate::Interrupter {
        self.requests.interrupter()
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.requests.name()
    }

    /// How long [`reply`](Self::reply) waits for room in a client's reply queue
    /// (a client that stopped reading must not stall the server); default
    /// [`RPC_REPLY_TIMEOUT`].
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// The next request, waiting as long as it takes, also while no client is
    /// connected.
    pub fn recv(&mut self) -> Result<Request> {
        self.recv_until(Deadline::Never)
    }

    /// The next request, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Request> {
        self.recv_until(Deadline::after(timeout))
    }

    fn recv_until(&mut self, deadline: Deadline) -> Result<Request> {
        let decoded = match deadline {
            Deadline::Never => self.requests.recv_with(decode_request)?,
            Deadline::At(at, _) => self
                .requests
                .recv_with_timeout(at.saturating_duration_since(Instant::now()), decode_request)?,
            Deadline::Now => self.requests.try_recv_with(decode_request)?,
        };
        decoded.map_err(|reason| Error::Decode {
            object: self.requests.name().into(),
            reason,
        })
    }

    /// Sends `payload` to the client that made `request`. [`Error::Disconnected`]
    /// or [`Error::NotFound`] if that client is gone; [`Error::Timeout`], naming
    /// the client's reply queue, if its queue stays full for the reply timeout
    /// ([`set_reply_timeout`](Self::set_reply_timeout)): the reply is dropped and
    /// the server goes on.
    pub fn reply(&mut self, request: &Request, payload: &[u8]) -> Result<()> {
        let msg = &mut self.scratch;
        msg.clear();
        msg.extend_from_slice(&request.id.to_le_bytes());
        msg.extend_from_slice(payload);
        send_reply(
            &mut self.replies,
            &request.reply_to,
            msg,
            self.reply_timeout,
        )
    }
}

impl RpcServer {
    /// Receives the next request and answers it with what `f` writes into the
    /// reply buffer (empty when `f` gets it), without allocating once the
    /// client's reply queue is open: the request is lent to `f` straight from
    /// the ring. Waits as long as it takes, like [`recv`](Self::recv); the reply
    /// waits at most the [reply timeout](Self::set_reply_timeout).
    ///
    /// ```
    /// use shmkit::channel::{RpcClient, RpcServer};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-respond-{}", std::process::id());
    /// let mut server = RpcServer::bind(&name)?;
    /// let mut client = RpcClient::connect(&name)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| server.respond(|request, reply| {
    ///         reply.extend(request.iter().rev()); // the answer: the bytes reversed
    ///     }));
    ///     let len = client.call_with(b"abc", |reply| {
    ///         assert_eq!(reply, b"cba");
    ///         reply.len()
    ///     })?;
    ///     assert_eq!(len, 3);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn respond(&mut self, f: impl FnOnce(&[u8], &mut Vec<u8>)) -> Result<()> {
        let RpcServer {
            requests,
            replies,
            scratch,
            reply_timeout,
        } = self;
        let object = requests.object_name();
        requests.recv_with(|bytes| -> Result<()> {
            let (id, reply_to, payload) =
                split_request(bytes).map_err(|reason| Error::Decode { object, reason })?;
            scratch.clear();
            scratch.extend_from_slice(&id.to_le_bytes());
            f(payload, scratch);
            send_reply(replies, reply_to, scratch, *reply_timeout)
        })?
    }
}

/// Sends `msg` (id and payload) to the client whose reply queue is `reply_to`,
/// opening the queue on first use.
fn send_reply(
    replies: &mut HashMap<String, Sender>,
    reply_to: &str,
    msg: &[u8],
    timeout: Duration,
) -> Result<()> {
    if !replies.contains_key(reply_to) {
        // A new client: let go of the queues of clients that left, which our
        // sender would otherwise keep alive as long as the server runs.
        replies.retain(|_, tx| tx.receiver_connected());
        let tx = ChannelOptions::new().open_existing().sender(reply_to)?;
        replies.insert(reply_to.to_owned(), tx);
    }
    let tx = replies.get_mut(reply_to).expect("inserted above");
    let sent = tx.send_timeout(msg, timeout).map_err(|e| match e {
        Error::Timeout { object, after, .. } => Error::Timeout {
            object,
            op: "deliver a reply (the client's reply queue stayed full)",
            after,
        },
        other => other,
    });
    if sent.is_err() {
        // A client that went away takes its queue with it; forget ours.
        replies.remove(reply_to);
    }
    sent
}

/// Hands a reply to call `id` to `f` (once); `None` for a late reply to an
/// earlier call, which is dropped.
fn ours<R, F: FnOnce(&[u8]) -> R>(
    id: u64,
    f: &mut Option<F>,
) -> impl FnOnce(&[u8]) -> Option<R> + '_ {
    move |reply| {
        if reply.get(..8) != Some(&id.to_le_bytes()[..]) {
            return None;
        }
        f.take().map(|f| f(&reply[8..]))
    }
}

/// Serving without a thread.
impl RpcServer {
    /// [`recv`](Self::recv) as a future. Cancel safe: a request is taken only
    /// in the poll that completes the future.
    ///
    /// ```
    /// use shmkit::channel::{RpcClient, RpcServer};
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-rpc-async-{}", std::process::id());
    /// let mut server = RpcServer::bind(&name)?;
    /// let mut client = RpcClient::connect(&name)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| shmkit::block_on(client.call_async(b"ping")));
    ///     shmkit::block_on(async {
    ///         let request = server.recv_async().await?;
    ///         assert_eq!(request.payload(), b"ping");
    ///         server.reply_async(&request, b"pong").await
    ///     })
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn recv_async(&mut self) -> impl std::future::Future<Output = Result<Request>> + Send + '_ {
        let object = self.requests.object_name();
        let taking = self.requests.recv_with_async(decode_request);
        async move {
            taking
                .await?
                .map_err(|reason| Error::Decode { object, reason })
        }
    }

    /// [`reply`](Self::reply) as a future: waits for room in the client's reply
    /// queue without a thread, at most the [reply timeout](Self::set_reply_timeout)
    /// (checked every 50 ms), then [`Error::Timeout`] and the reply is dropped.
    /// Cancel safe: the reply is sent whole in the poll that completes the
    /// future, or not at all.
    pub async fn reply_async(&mut self, request: &Request, payload: &[u8]) -> Result<()> {
        {
            let msg = &mut self.scratch;
            msg.clear();
            msg.extend_from_slice(&request.id.to_le_bytes());
            msg.extend_from_slice(payload);
            let reply_to = request.reply_to.as_str();
            if !self.replies.contains_key(reply_to) {
                self.replies.retain(|_, tx| tx.receiver_connected());
                let tx = ChannelOptions::new().open_existing().sender(reply_to)?;
                self.replies.insert(reply_to.to_owned(), tx);
            }
            let tx = self.replies.get_mut(reply_to).expect("inserted above");
            let object: ObjectName = tx.name().into();
            let timeout = self.reply_timeout;
            let deadline = Instant::now().checked_add(timeout);
            // The wait itself has the deadline: the reactor wakes the task
            // then even when nothing else would.
            let expired = || Error::Timeout {
                object: object.clone(),
                op: "deliver a reply (the client's reply queue stayed full)",
                after: timeout,
            };
            let sent = if msg.len() as u64 > tx.max_record() {
                tx.send_fragments_async(msg, deadline, expired).await
            } else {
                OpFuture::new(tx, "send", |tx: &mut &mut Sender| {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(expired());
                    }
                    tx.try_send_noticing_death(msg)
                })
                .until(deadline)
                .await
            };
            if sent.is_err() {
                self.replies.remove(reply_to);
            }
            sent
        }
    }
}

impl RpcServer {
    /// Polls for the next request (as [`recv_async`](Self::recv_async) does);
    /// `Pending` registers `cx`'s waker, kept in the server until a later poll
    /// completes. For event-loop bindings.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Request>> {
        let object = self.requests.object_name();
        self.requests
            .poll_recv_with(cx, decode_request)
            .map(|r| r?.map_err(|reason| Error::Decode { object, reason }))
    }
}

impl RpcClient {
    /// Polls for the reply to `call` (sent with [`start_call`](Self::start_call))
    /// and lends it to `f`; `Pending` registers `cx`'s waker. Late replies to
    /// earlier calls are dropped on the way; [`Error::Disconnected`] once the
    /// server is found gone. For event-loop bindings.
    pub fn poll_reply_with<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        call: PendingCall,
        f: impl FnOnce(&[u8]) -> R,
    ) -> std::task::Poll<Result<R>> {
        let mut since = self.reply_since.take();
        let mut f = Some(f);
        let polled = crate::readiness::poll_kept(
            self,
            |o| &mut o.waiting,
            cx,
            "receive a reply",
            false,
            |c| c.try_reply_with(call.0, &mut f, &mut since),
        );
        if polled.is_pending() {
            self.reply_since = since;
        }
        polled
    }

    /// Gives back the wait a `Pending` [`poll_reply_with`](Self::poll_reply_with)
    /// registered.
    pub fn cancel_poll(&mut self) {
        self.waiting.cancel();
        self.reply_since = None;
    }

    /// Polls to send a request (as [`start_call`](Self::start_call) does,
    /// waiting for room without a thread; requests up to the request queue's
    /// one-record limit, else [`Error::TooLong`]): `Ready` with the call to
    /// collect with [`poll_reply_with`](Self::poll_reply_with), or `Pending`
    /// with `cx`'s waker registered for when room may have come (poll again
    /// with the same payload).
    pub fn poll_start_call(
        &mut self,
        cx: &mut std::task::Context<'_>,
        payload: &[u8],
    ) -> std::task::Poll<Result<PendingCall>> {
        // The id is taken only once the request went out.
        let id = self.next_id;
        let msg = &mut self.scratch;
        msg.clear();
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(&(self.reply_name.len() as u16).to_le_bytes());
        msg.extend_from_slice(self.reply_name.as_bytes());
        msg.extend_from_slice(payload);
        let polled = self.requests.poll_send(cx, msg);
        if let std::task::Poll::Ready(Ok(())) = polled {
            self.next_id += 1;
        }
        polled.map(|r| r.map(|()| PendingCall(id)))
    }

    /// Gives back the wait a `Pending` [`poll_start_call`](Self::poll_start_call)
    /// registered.
    pub fn cancel_start_call(&mut self) {
        self.requests.cancel_poll();
    }
}

impl RpcServer {
    /// Gives back the wait a `Pending` [`poll_recv`](Self::poll_recv)
    /// registered.
    pub fn cancel_poll(&mut self) {
        self.requests.cancel_poll();
    }

    /// Polls to send `payload` as the reply to `request` (waiting for room in
    /// the client's reply queue without a thread; replies up to that queue's
    /// one-record limit, else [`Error::TooLong`]). No reply timeout here: the
    /// caller bounds the wait (and may [`cancel_reply`](Self::cancel_reply)).
    pub fn poll_reply(
        &mut self,
        cx: &mut std::task::Context<'_>,
        request: &Request,
        payload: &[u8],
    ) -> std::task::Poll<Result<()>> {
        let msg = &mut self.scratch;
        msg.clear();
        msg.extend_from_slice(&request.id.to_le_bytes());
        msg.extend_from_slice(payload);
        let reply_to = request.reply_to.as_str();
        if !self.replies.contains_key(reply_to) {
            self.replies.retain(|_, tx| tx.receiver_connected());
            match ChannelOptions::new().open_existing().sender(reply_to) {
                Ok(tx) => {
                    self.replies.insert(reply_to.to_owned(), tx);
                }
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
        let tx = self.replies.get_mut(reply_to).expect("inserted above");
        let polled = tx.poll_send(cx, msg);
        // A client that went away takes its queue with it: forget ours. (Not
        // for a reply refused as too long: the client is there, waiting.)
        if let std::task::Poll::Ready(Err(e)) = &polled {
            if e.is_disconnected() || matches!(e, Error::NotFound { .. }) {
                self.replies.remove(reply_to);
            }
        }
        polled
    }

    /// Gives back the wait a `Pending` [`poll_reply`](Self::poll_reply)
    /// registered for `request`'s client.
    pub fn cancel_reply(&mut self, request: &Request) {
        if let Some(tx) = self.replies.get_mut(&request.reply_to) {
            tx.cancel_poll();
        }
    }
}

/// Calling without a thread.
impl RpcClient {
    /// [`call`](Self::call) as a future: sends the request (waiting for room
    /// without a thread; requests up to the request queue's one-record limit)
    /// and awaits the reply. [`Error::Disconnected`] if the server stops or
    /// dies before answering.
    ///
    /// Cancel safety: dropped before the request went out, nothing was sent;
    /// dropped after, the server still answers and the next call discards that
    /// reply (as it does a reply to a call that timed out).
    pub async fn call_async(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        {
            let id = self.next_id;
            self.next_id += 1;
            let msg = &mut self.scratch;
            msg.clear();
            msg.extend_from_slice(&id.to_le_bytes());
            msg.extend_from_slice(&(self.reply_name.len() as u16).to_le_bytes());
            msg.extend_from_slice(self.reply_name.as_bytes());
            msg.extend_from_slice(payload);
            self.requests.send_async(msg).await?;
            let mut waiting_since: Option<Instant> = None;
            let mut f = Some(<[u8]>::to_vec);
            OpFuture::new(self, "receive a reply", move |c: &mut &mut RpcClient| {
                c.try_reply_with(id, &mut f, &mut waiting_since)
            })
            .await
        }
    }

    /// The reply to call `id` if it is there (late replies to earlier calls
    /// are dropped on the way); `WouldBlock` if not yet, `Disconnected` once
    /// the server is found gone (looked at every CHECK_EVERY of waiting).
    fn try_reply_with<R, F: FnOnce(&[u8]) -> R>(
        &mut self,
        id: u64,
        f: &mut Option<F>,
        waiting_since: &mut Option<Instant>,
    ) -> Result<R> {
        loop {
            match self.replies.try_recv_with(ours(id, f)) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => continue,
                Err(e) if e.is_would_block() => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CHECK_EVERY {
                        *waiting_since = Some(Instant::now());
                        if !self.requests.receiver_connected() {
                            return Err(Error::Disconnected {
                                object: self.requests.name().into(),
                                reason: "the server is not running".into(),
                            });
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Watched for RpcServer {
    fn bells(&self) -> Bells<'_> {
        self.requests.bells()
    }
    fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
        self.requests.interrupt()
    }
    fn recheck(&self) -> Option<Duration> {
        // Waits for clients as long as it takes: nobody's death ends it.
        None
    }
    fn object(&self) -> &ObjectName {
        self.requests.object()
    }
    fn spin(&self) -> Duration {
        self.requests.spin()
    }
}

impl crate::readiness::Ready for RpcServer {
    fn ready_now(&self, deep: bool) -> bool {
        self.requests.ready_now(deep)
    }
}

impl Watched for RpcClient {
    fn bells(&self) -> Bells<'_> {
        self.replies.bells()
    }
    fn interrupt(&self) -> Option<&std::sync::Arc<crate::interrupt::Interrupt>> {
        self.replies.interrupt()
    }
    fn recheck(&self) -> Option<Duration> {
        Some(CHECK_EVERY)
    }
    fn object(&self) -> &ObjectName {
        self.replies.object()
    }
    fn spin(&self) -> Duration {
        self.replies.spin()
    }
    fn peers(&self) -> Option<Vec<crate::sys::ProcessIdentity>> {
        // The server: its reply senders attach only with the first reply. No
        // server now: the call fails at the next recheck (as a blocking call).
        self.requests.peers().filter(|p| !p.is_empty())
    }
}

/// A request's id, reply-queue name and payload, or why it is malformed.
fn split_request(bytes: &[u8]) -> std::result::Result<(u64, &str, &[u8]), String> {
    let bad = || format!("malformed request of {} bytes", bytes.len());
    let id = u64::from_le_bytes(bytes.get(..8).ok_or_else(bad)?.try_into().expect("8 bytes"));
    let name_len = u16::from_le_bytes(
        bytes
            .get(8..10)
            .ok_or_else(bad)?
            .try_into()
            .expect("2 bytes"),
    ) as usize;
    let name = bytes.get(10..10 + name_len).ok_or_else(bad)?;
    let reply_to = std::str::from_utf8(name).map_err(|_| bad())?;
    Ok((id, reply_to, &bytes[10 + name_len..]))
}

fn decode_request(bytes: &[u8]) -> std::result::Result<Request, String> {
    let (id, reply_to, payload) = split_request(bytes)?;
    Ok(Request {
        id,
        reply_to: reply_to.to_owned(),
        payload: payload.to_vec(),
    })
}

/// A request sent by [`RpcClient::start_call`] whose reply has not been collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCall(u64);

/// A client of an [`RpcServer`].
#[derive(Debug)]
pub struct RpcClient {
    /// The wait of `poll_reply_with`, kept between polls. Declared first: it
    /// points into the queues' memory and must go before them.
    waiting: AsyncWait,
    /// When `poll_reply_with` first found no reply (the server's liveness is
    /// looked at every CHECK_EVERY after that).
    reply_since: Option<Instant>,
    requests: Sender,
    replies: Receiver,
    reply_name: String,
    next_id: u64,
    /// The request being put together, kept to avoid an allocation per call.
    scratch: Vec<u8>,
}

impl RpcClient {
    /// Connects to the server on `name`, making this client's reply queue.
    pub fn connect(name: &str) -> Result<RpcClient> {
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let reply_name = format!(
            "{name}-reply-{}-{}",
            std::process::id(),
            CLIENTS.fetch_add(1, Relaxed)
        );
        let replies = ChannelOptions::new()
            .capacity(256 * 1024)
            .create_new()
            .receiver(&reply_name)?;
        let requests = request_options().sender(name)?;
        // One interrupter for both queues: a call waits on either.
        replies.interrupt_slot().link(requests.interrupt_slot());
        Ok(RpcClient {
            waiting: AsyncWait::default(),
            reply_since: None,
            requests,
            replies,
            reply_name,
            next_id: 1,
            scratch: Vec::new(),
        })
    }

    /// Ends this client's blocked calls (sending the request or waiting for
    /// the reply) from another thread: they return [`Error::Interrupted`], and
    /// so do later waits until [`Interrupter::clear`](crate::Interrupter::clear).
    /// A reply that arrives after its call was interrupted is dropped by the
    /// next call, as a late reply is.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.requests.interrupter()
    }

    /// Sends `payload` and waits for the reply. [`Error::Disconnected`] if the
    /// server stops or dies before answering.
    pub fn call(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        self.call_with(payload, <[u8]>::to_vec)
    }

    /// [`call`](Self::call), waiting at most `timeout` for the reply
    /// ([`Error::Timeout`]); a late reply to it is discarded by the next call.
    pub fn call_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.call_with_timeout(payload, timeout, <[u8]>::to_vec)
    }

    /// Calls the server with `payload` and lends the reply to `f`, straight from
    /// the reply queue: no allocation. Waits as long as it takes (a server that
    /// stops running is noticed: [`Error::Disconnected`]).
    pub fn call_with<R>(&mut self, payload: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.call_until(payload, None, f)
    }

    /// [`call_with`](Self::call_with), waiting at most `timeout`.
    pub fn call_with_timeout<R>(
        &mut self,
        payload: &[u8],
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let deadline = Instant::now().checked_add(timeout).map(|d| (d, timeout));
        self.call_until(payload, deadline, f)
    }

    fn call_until<R>(
        &mut self,
        payload: &[u8],
        deadline: Option<(Instant, Duration)>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let left = deadline.map(|(at, _)| at.saturating_duration_since(Instant::now()));
        let call = self.start_call(payload, left)?;
        self.reply_until(call, deadline, f)
    }

    /// Sends a request without waiting for its reply (only for the request queue
    /// to have room, at most `timeout` if one is given); collect the reply with
    /// [`finish_call_with`](Self::finish_call_with). For callers that must do
    /// something between short waits (a Python binding checking for Ctrl-C).
    ///
    /// ```
    /// use shmkit::channel::{RpcClient, RpcServer};
    /// use std::time::Duration;
    /// # fn main() -> shmkit::Result<()> {
    /// # let name = format!("doc-start-call-{}", std::process::id());
    /// let mut server = RpcServer::bind(&name)?;
    /// let mut client = RpcClient::connect(&name)?;
    /// let call = client.start_call(b"ping", None)?;
    /// // Not answered yet: the call stays pending.
    /// let early = client.finish_call_with(call, Duration::from_millis(10), |r| r.to_vec());
    /// assert!(early.unwrap_err().is_timeout());
    /// let request = server.recv()?;
    /// server.reply(&request, b"pong")?;
    /// let reply = client.finish_call_with(call, Duration::from_secs(5), |r| r.to_vec())?;
    /// assert_eq!(reply, b"pong");
    /// # Ok(()) }
    /// ```
    pub fn start_call(&mut self, payload: &[u8], timeout: Option<Duration>) -> Result<PendingCall> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = &mut self.scratch;
        msg.clear();
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(&(self.reply_name.len() as u16).to_le_bytes());
        msg.extend_from_slice(self.reply_name.as_bytes());
        msg.extend_from_slice(payload);
        match timeout {
            None => self.requests.send(msg)?,
            Some(t) => self.requests.send_timeout(msg, t)?,
        }
        Ok(PendingCall(id))
    }

    /// Waits at most `timeout` for the reply to `call` and lends it to `f`.
    /// [`Error::Timeout`] leaves the call pending: ask again with the same `call`
    /// (replies to calls abandoned since are discarded on the way).
    pub fn finish_call_with<R>(
        &mut self,
        call: PendingCall,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let deadline = Instant::now().checked_add(timeout).map(|d| (d, timeout));
        self.reply_until(call, deadline, f)
    }

    fn reply_until<R>(
        &mut self,
        call: PendingCall,
        deadline: Option<(Instant, Duration)>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let id = call.0;
        let mut f = Some(f);
        loop {
            // The reply is usually there at once: look before reading the clock.
            let slice = Duration::from_millis(50);
            let got = match self.replies.try_recv_with(ours(id, &mut f)) {
                Err(e) if e.is_would_block() => {
                    let wait = deadline.map_or(slice, |(at, _)| {
                        slice.min(at.saturating_duration_since(Instant::now()))
                    });
                    self.replies.recv_with_timeout(wait, ours(id, &mut f))
                }
                other => other,
            };
            match got {
                Ok(Some(reply)) => return Ok(reply),
                // A late reply to an earlier call that timed out.
                Ok(None) => continue,
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
            if !self.requests.receiver_connected() {
                return Err(Error::Disconnected {
                    object: self.requests.name().into(),
                    reason: "the server is not running".into(),
                });
            }
            if let Some((at, after)) = deadline {
                if Instant::now() >= at {
                    return Err(Error::Timeout {
                        object: self.requests.name().into(),
                        op: "receive a reply",
                        after,
                    });
                }
            }
        }
    }
}
