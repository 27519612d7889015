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
one wait for all its coroutines; a coroutine whose poll completes ends it, so it
makes the descriptor readable again for the others to register anew.
"""

import asyncio
import threading

from ._errors import Busy, Disconnected

# The longest a full queue is retried without a wake-up (reply_async, and the
# request of call_async: the core offers no poll method that keeps their wait).
_RETRY_MAX = 0.02

# How often call_async looks whether the server died while it waits for a reply.
_RECHECK = 0.05


class _Waiters:
    """The coroutines of one event loop awaiting one object."""

    __slots__ = ("obj", "loop", "fd", "count", "futures")

    def __init__(self, obj, loop):
        self.obj = obj
        self.loop = loop
        self.fd = obj.fileno()
        self.count = 0
        self.futures = set()
        loop.add_reader(self.fd, self._ready)

    def _ready(self):
        self.obj._clear_wakeup()
        for f in self.futures:
            _resolve(f)


# Objects awaited now, by id (each is kept alive by its coroutines meanwhile).
_active: dict[int, _Waiters] = {}
_lock = threading.Lock()


def _join(obj, loop):
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
        return w


def _leave(w):
    """Whether `w` had no other coroutine."""
    with _lock:
        w.count -= 1
        if w.count:
            return False
        del _active[id(w.obj)]
    w.loop.remove_reader(w.fd)
    return True


def _others_waiting(obj):
    with _lock:
        return id(obj) in _active


def _wake_others(obj):
    """After a poll that completed: the wait it ended may have been shared by
    other coroutines awaiting `obj`; they poll again and register anew."""
    if _others_waiting(obj):
        obj._wake()


async def _drive(obj, poll, cancel, recheck=None):
    """Polls `obj` with `poll` (a result, or None: not yet) until it gives a
    result or raises, waiting for the object's descriptor in between (and, with
    `recheck`, at most that many seconds). If the coroutine is cancelled (or
    anything else is raised into it) while it waits, `cancel(last)` gives its
    wait back; `last` is whether no other coroutine of this loop awaits the
    object."""
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
        w = _join(obj, loop)
    except BaseException:
        cancel(not _others_waiting(obj))
        raise
    settled = False
    try:
        while True:
            fut = loop.create_future()
            w.futures.add(fut)
            timer = recheck and loop.call_later(recheck, _resolve, fut)
            try:
                await fut
            finally:
                w.futures.discard(fut)
                if timer:
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
        last = _leave(w)
        if not settled:
            cancel(last)
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


async def _retry(attempt):
    """Calls `attempt` until it returns True, sleeping a little longer each time
    (up to _RETRY_MAX) in between."""
    pause = 0.0005
    while not attempt():
        await asyncio.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX)


async def recv(obj):
    """Receiver, Subscriber, RpcServer: the next message (request)."""
    return await _drive(obj, obj._poll_recv, _channel_cancel(obj))


async def recv_into(rx, buffer):
    return await _drive(rx, lambda: rx._poll_recv_into(buffer), _channel_cancel(rx))


async def anext(obj):
    """``async for``: receives until the peer is gone."""
    try:
        return await _drive(obj, obj._poll_recv, _channel_cancel(obj))
    except Disconnected:
        raise StopAsyncIteration from None


async def send(tx, data):
    await _drive(tx, lambda: tx._poll_send(data) or None, _channel_cancel(tx))


async def call(client, payload):
    await _retry(lambda: client._start_call(payload))
    # The core's reply poll registers no wake-up for the server's death (it
    # checks for it when polled): look again every 50 ms, as `call` does.
    return await _drive(client, client._poll_reply, lambda last: client._abandon_call(), _RECHECK)


async def reply(server, request, payload):
    if server._try_reply(request, payload):
        return
    loop = asyncio.get_running_loop()
    first = loop.time()
    pause = 0.0005
    while True:
        await asyncio.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX)
        if server._try_reply(request, payload, loop.time() - first):
            return


async def wait(obj):
    """Mutex (returns the guard), Semaphore, Event (return None)."""
    token = obj._start_wait()
    got = await _drive(obj, lambda: obj._poll_wait(token), lambda last: obj._cancel_wait(token))
    return None if got is True else got


async def ready(value):
    """An awaitable of `value`, for ``__aenter__``/``__aexit__``."""
    return value

