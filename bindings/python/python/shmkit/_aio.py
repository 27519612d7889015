"""asyncio coroutines for shmkit objects: what ``recv_async``, ``send_async``,
``call_async``, ``lock_async``... and ``async for`` return.

Each object has a wake-up descriptor (``obj.fileno()``, an eventfd on Linux).
A coroutine polls the object without waiting (``obj._poll_*``, in Rust): the
result, or ``None`` after the object registered the descriptor's waker. It then
waits for the descriptor in asyncio's running loop (``loop.add_reader``) and
polls again. Nothing is taken except by the poll that returns it, so a
coroutine cancelled while it waits has consumed nothing; its wait is given back.

Several coroutines of one loop may await the same object: one reader per
descriptor serves them all. When the descriptor turns readable the reader clears
it once, then wakes every one of them, and each polls again (clearing in each
poll could swallow a wake-up meant for another's wait). A channel endpoint keeps
one wait per kind (a receive, a send, a reply to one client) for all its
coroutines of that kind; a coroutine whose poll completes ends it, so it makes
the descriptor readable again for the others to register anew, and a cancelled
coroutine gives it back only if it was the last of its kind.

Nothing here polls on a timer: every wait ends with a wake-up (a peer that dies
is noticed by the core, which wakes the waiter), except reply_async's, which is
also bounded by the reply timeout (one timer at its deadline).
"""

import asyncio
import threading

from ._errors import Busy, Disconnected


class _Waiters:
    """The coroutines of one event loop awaiting one object."""

    __slots__ = ("obj", "loop", "fd", "count", "kinds", "futures")

    def __init__(self, obj, loop):
        self.obj = obj
        self.loop = loop
        self.fd = obj.fileno()
        self.count = 0
        self.kinds = {}  # how many coroutines await each kind of wait
        self.futures = set()
        loop.add_reader(self.fd, self._ready)

    def _ready(self):
        self.obj._clear_wakeup()
        for f in self.futures:
            _resolve(f)


# Objects awaited now, by id (each is kept alive by its coroutines meanwhile).
_active: dict[int, _Waiters] = {}
_lock = threading.Lock()


def _join(obj, loop, kind):
    with _lock:
        w = _active.get(id(obj))
        if w is None:
            w = _active[id(obj)] = _Waiters(obj, loop)
        elif w.loop is not loop:
            raise Busy(
                f"{obj.name}: awaited in another event loop (on another thread); "
                "await an object from one loop at a time"
            )
        w.count += 1
        w.kinds[kind] = w.kinds.get(kind, 0) + 1
        return w


def _leave(w, kind):
    """Whether `w` had no other coroutine of `kind`, and whether it had no
    other coroutine at all."""
    with _lock:
        w.count -= 1
        others = w.kinds[kind] - 1
        if others:
            w.kinds[kind] = others
        else:
            del w.kinds[kind]
        if w.count:
            return not others, False
        del _active[id(w.obj)]
    w.loop.remove_reader(w.fd)
    return True, True


def _others_waiting(obj, kind=None):
    """Whether coroutines await `obj` (a wait of `kind`, if given)."""
    with _lock:
        w = _active.get(id(obj))
        return w is not None and (kind is None or kind in w.kinds)


def _wake_others(obj):
    """After a poll that completed: the wait it ended may have been shared by
    other coroutines awaiting `obj`; they poll again and register anew."""
    if _others_waiting(obj):
        obj._wake()


async def _drive(obj, poll, cancel, kind, deadline=None):
    """Polls `obj` with `poll` (a result, or None: not yet) until it gives a
    result or raises, waiting for the object's descriptor in between (and, with
    `deadline`, a time of the running loop, until then at most: `poll` itself
    raises once it has passed). If the coroutine is cancelled (or anything else
    is raised into it) while it waits, `cancel(last)` gives its wait back;
    `last` is whether no other coroutine awaits a wait of `kind` on the object
    (the waits of one kind are one wait in the object)."""
    try:
        got = poll()
    except BaseException:
        _wake_others(obj)
        raise
    if got is not None:
        _wake_others(obj)
        return got
    loop = asyncio.get_running_loop()
    try:
        w = _join(obj, loop, kind)
    except BaseException:
        cancel(not _others_waiting(obj, kind))
        raise
    settled = False
    try:
        while True:
            fut = loop.create_future()
            w.futures.add(fut)
            timer = None if deadline is None else loop.call_at(deadline, _resolve, fut)
            try:
                await fut
            finally:
                w.futures.discard(fut)
                if timer is not None:
                    timer.cancel()
            try:
                got = poll()
            except BaseException:
                settled = True
                raise
            if got is not None:
                settled = True
                return got
    finally:
        last_of_kind, last = _leave(w, kind)
        if not settled:
            cancel(last_of_kind)
        elif not last:
            obj._wake()


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


def _channel_cancel(obj):
    # One wait serves all the coroutines on an endpoint: give it back only
    # with the last of them.
    def cancel(last):
        if last:
            obj._cancel_poll()

    return cancel


async def recv(obj):
    """Receiver, Subscriber, RpcServer: the next message (request)."""
    return await _drive(obj, obj._poll_recv, _channel_cancel(obj), "recv")


async def recv_into(rx, buffer):
    return await _drive(rx, lambda: rx._poll_recv_into(buffer), _channel_cancel(rx), "recv")


async def anext(obj):
    """``async for``: receives until the peer is gone."""
    try:
        return await _drive(obj, obj._poll_recv, _channel_cancel(obj), "recv")
    except Disconnected:
        raise StopAsyncIteration from None


async def send(tx, data):
    await _drive(tx, lambda: tx._poll_send(data) or None, _channel_cancel(tx), "send")


def _nothing(last):
    pass


async def call(client, payload):
    # Busy while another call is in progress; from here until the reply (or
    # the error, or the cancellation) this call is the client's one.
    client._begin_call()
    try:
        await _drive(client, lambda: client._poll_start_call(payload) or None, _nothing, "start")
    except BaseException:
        client._cancel_start_call()  # nothing was sent: the request goes whole or not at all
        raise
    try:
        return await _drive(client, client._poll_reply, _nothing, "reply")
    except BaseException:
        client._abandon_call()  # the next call discards the reply if it comes
        raise


async def reply(server, request, payload):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + server._reply_timeout
    kind = ("reply", request.client)  # one wait per client's reply queue

    def cancel(last):
        if last:
            server._cancel_reply(request)

    await _drive(
        server,
        lambda: server._poll_reply(request, payload, loop.time() >= deadline) or None,
        cancel,
        kind,
        deadline,
    )


async def wait(obj):
    """Mutex (returns the guard), Semaphore, Event (return None)."""
    token = obj._start_wait()
    got = await _drive(
        obj, lambda: obj._poll_wait(token), lambda last: obj._cancel_wait(token), ("wait", token)
    )
    return None if got is True else got


async def ready(value):
    """An awaitable of `value`, for ``__aenter__``/``__aexit__``."""
    return value

