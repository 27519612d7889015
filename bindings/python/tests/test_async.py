"""asyncio: the *_async coroutines and `async for`, driven by each object's
descriptor in the running loop. Across processes (asyncio on both sides, and the
Rust `shmkit` command as the peer), cancellation that loses and duplicates
nothing, a peer killed while awaited, close() while awaited.

Every await is bounded (asyncio.wait_for) so that a bug fails instead of hanging.
"""

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
import zlib

import pytest

import shmkit
from conftest import line, reap, run_python

BOUND = 30.0  # seconds: generous, only there so that a bug fails


def run(coro, bound=120.0):
    """Runs `coro` in a new event loop, failing after `bound` seconds."""
    return asyncio.run(asyncio.wait_for(coro, bound))


async def within(awaitable, bound=BOUND):
    return await asyncio.wait_for(awaitable, bound)


async def next_line(proc, bound=BOUND):
    """The child's next line, read without blocking the loop."""
    return await asyncio.to_thread(line, proc, bound)


def killed(proc):
    assert proc.wait(timeout=BOUND) == -signal.SIGKILL
    reap(proc)


def finish(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


# --- across processes, asyncio on both sides ---------------------------------

SENDER = """
import asyncio, random, shmkit, sys, zlib
name, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def main():
    tx = shmkit.Sender.connect(name, create=False)
    print("ready", flush=True)
    rng = random.Random(seed)
    crc = full = 0
    for i in range(count):
        msg = i.to_bytes(4, "little") + rng.randbytes(rng.randint(0, tx.max_record - 4))
        # Odd ones look first: a full ring is counted, then awaited.
        if i % 2 and not tx.try_send(msg):
            full += 1
            await asyncio.wait_for(tx.send_async(msg), 60)
        elif not i % 2:
            await asyncio.wait_for(tx.send_async(msg), 60)
        crc = zlib.crc32(msg, crc)
    tx.close()
    print(count, crc, full, flush=True)

asyncio.run(main())
"""


def test_queue_between_processes_with_a_small_ring(name):
    """A child's send_async waits for room in a 4 KiB ring while the parent
    receives with recv_into_async, recv_async and `async for`."""
    count = 3000

    async def main():
        rx = shmkit.Receiver.connect(name, capacity=4096)
        child = run_python(SENDER, name, count, 7)
        try:
            assert await next_line(child) == "ready"
            await asyncio.sleep(0.3)  # the ring fills: the child awaits room
            crc, seq = 0, 0
            buf = bytearray(rx.max_message)
            for _ in range(count // 3):
                n = await within(rx.recv_into_async(buf))
                msg = bytes(buf[:n])
                assert int.from_bytes(msg[:4], "little") == seq
                crc, seq = zlib.crc32(msg, crc), seq + 1
            for _ in range(count // 3):
                msg = await within(rx.recv_async())
                assert int.from_bytes(msg[:4], "little") == seq
                crc, seq = zlib.crc32(msg, crc), seq + 1
            async for msg in rx:  # until the child has gone
                assert int.from_bytes(msg[:4], "little") == seq
                crc, seq = zlib.crc32(msg, crc), seq + 1
            sent, sent_crc, full = map(int, (await next_line(child)).split())
            assert child.wait(timeout=BOUND) == 0
            assert (seq, crc) == (sent, sent_crc) == (count, sent_crc)
            assert full > 0, "the sender never found the ring full"
            rx.close()
        finally:
            finish(child)

    run(main())


PUBLISHER = """
import asyncio, shmkit, sys
name, count = sys.argv[1], int(sys.argv[2])

async def main():
    pub = shmkit.Publisher.connect(name, create=False)
    for i in range(count):
        pub.publish(b"%06d" % i + b"." * (i % 200))
        if i % 20 == 0:
            await asyncio.sleep(0.001)
    pub.close()
    print("done", flush=True)

asyncio.run(main())
"""


def test_pub_sub_between_processes(name):
    """Two subscribers in one loop follow a publisher in another process with
    `async for`, which ends when the publisher closes."""
    count = 2000

    async def follow(sub):
        got = []
        async for msg in sub:
            got.append(int(msg[:6]))
        return got

    async def main():
        subs = [shmkit.Subscriber.connect(name, capacity=1 << 20) for _ in range(2)]
        tasks = [asyncio.create_task(follow(s)) for s in subs]
        child = run_python(PUBLISHER, name, count)
        try:
            for got in await within(asyncio.gather(*tasks), 60):
                assert got == list(range(count))
            assert await next_line(child) == "done"
            assert child.wait(timeout=BOUND) == 0
            for s in subs:
                s.close()
        finally:
            finish(child)

    run(main())


SERVER = """
import asyncio, shmkit, sys
name, count = sys.argv[1], int(sys.argv[2])

async def main():
    server = shmkit.RpcServer.bind(name)
    print("ready", flush=True)
    for _ in range(count):
        req = await asyncio.wait_for(server.recv_async(), 60)
        await asyncio.wait_for(server.reply_async(req, req.payload.upper()), 60)
    print("served", count, flush=True)
    # Until the parent says so (a killed server is another test).
    await asyncio.to_thread(sys.stdin.read)
    server.close()

asyncio.run(main())
"""


def test_rpc_between_processes(name):
    """Three clients of one loop call a server awaiting requests in another."""
    clients, calls = 3, 100

    async def calling(client, k):
        for i in range(calls):
            payload = b"client %d call %d" % (k, i)
            assert await within(client.call_async(payload)) == payload.upper()

    async def main():
        child = run_python(SERVER, name, clients * calls, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "ready"
            cs = [shmkit.RpcClient.connect(name) for _ in range(clients)]
            await within(asyncio.gather(*(calling(c, k) for k, c in enumerate(cs))), 60)
            assert await next_line(child) == f"served {clients * calls}"
            for c in cs:
                c.close()
            child.stdin.close()
            assert child.wait(timeout=BOUND) == 0
        finally:
            finish(child)

    run(main())


# --- with the Rust `shmkit` command as the peer -------------------------------


def test_rust_sends_while_python_awaits(name, cli):
    count = 500
    lines = "".join(f"message {i} " + "r" * (i % 300) + "\n" for i in range(count))

    async def main():
        rx = shmkit.Receiver.connect(name, capacity=4096)
        proc = subprocess.Popen(
            [cli, "send", name, "--timeout", "60"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # The command fills the ring and waits while the loop is busy elsewhere.
            feeding = asyncio.create_task(asyncio.to_thread(proc.communicate, lines, BOUND))
            got = []
            async for msg in rx:  # ends when the command exits
                got.append(msg.decode())
            _, err = await within(feeding)
            assert proc.returncode == 0, err
            assert got == lines.splitlines()
            rx.close()
        finally:
            finish(proc)

    run(main())


def test_python_awaits_room_while_rust_receives(name, cli):
    count = 500

    async def main():
        tx = shmkit.Sender.connect(name, capacity=4096)
        proc = subprocess.Popen(
            [cli, "recv", name, "--count", str(count), "--timeout", "60"], stdout=subprocess.PIPE, text=True
        )
        try:
            # Read as it prints: a full pipe would stop it receiving.
            printed = asyncio.create_task(asyncio.to_thread(proc.communicate, None, BOUND))
            sent = [f"py {i} " + "p" * (i * 7 % tx.max_record // 2) for i in range(count)]
            for msg in sent:
                await within(tx.send_async(msg.encode()))
            out, _ = await within(printed)
            assert proc.returncode == 0
            assert out.splitlines() == sent
            tx.close()
        finally:
            finish(proc)

    run(main())


# --- cancellation -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["queue", "broadcast"])
def test_receives_cancelled_at_random_lose_and_duplicate_nothing(name, kind):
    """wait_for(recv_async(), tiny) times out over and over while another thread
    sends at random moments: every message arrives once, in order."""
    count = 400
    if kind == "queue":
        rx = shmkit.Receiver.connect(name, capacity=1 << 16)
        tx = shmkit.Sender.connect(name)
        send = tx.send
    else:
        rx = shmkit.Subscriber.connect(name, capacity=1 << 20)
        tx = shmkit.Publisher.connect(name)
        send = tx.publish

    def sender():
        rng = random.Random(1)
        for i in range(count):
            send(b"%d" % i)
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.004)

    async def main():
        rng = random.Random(2)
        got, timeouts = [], 0
        thread = threading.Thread(target=sender)
        thread.start()
        try:
            while len(got) < count:
                try:
                    got.append(int(await asyncio.wait_for(rx.recv_async(), rng.random() * 0.003)))
                except TimeoutError:
                    timeouts += 1
        finally:
            thread.join(BOUND)
        assert got == list(range(count))
        assert timeouts >= 20, f"only {timeouts} cancellations: the test did not test them"
        assert rx.try_recv() is None

    run(main())
    tx.close()
    rx.close()


def test_sends_cancelled_at_random_lose_and_duplicate_nothing(name):
    """A send that timed out sent nothing: the sender retries the same message,
    and the receiver sees each exactly once."""
    count = 300
    rx = shmkit.Receiver.connect(name, capacity=4096)
    tx = shmkit.Sender.connect(name)
    msg_len = tx.max_record - 8  # four fit in the ring

    async def receiver(got):
        rng = random.Random(3)
        while len(got) < count:
            got.append(int((await within(rx.recv_async()))[:8]))
            await asyncio.sleep(rng.random() * 0.003)

    async def main():
        rng = random.Random(4)
        got, timeouts = [], 0
        reading = asyncio.create_task(receiver(got))
        for i in range(count):
            msg = b"%08d" % i + b"s" * msg_len
            while True:
                try:
                    await asyncio.wait_for(tx.send_async(msg), rng.random() * 0.002)
                    break
                except TimeoutError:
                    timeouts += 1
        await within(reading)
        assert got == list(range(count))
        assert timeouts >= 20, f"only {timeouts} cancellations"

    run(main())
    tx.close()
    rx.close()


def test_semaphore_waits_cancelled_at_random_take_no_unit(name):
    """Units released while waits are cancelled at random are all either taken
    by a completed wait or still in the semaphore."""
    releases = 300
    sem = shmkit.Semaphore.create(name)

    stop = []

    async def waiter(rng, taken):
        # Stopped by a flag, not by cancelling the task: wait_for returns a
        # wait that completed as it was cancelled, which would count here.
        while not stop:
            try:
                await asyncio.wait_for(sem.wait_async(), rng.random() * 0.003)
                taken[0] += 1
            except TimeoutError:
                taken[1] += 1

    async def main():
        taken = [0, 0]  # completed, cancelled
        waiters = [asyncio.create_task(waiter(random.Random(k), taken)) for k in range(4)]
        rng = random.Random(5)
        for _ in range(releases):
            sem.release()
            await asyncio.sleep(rng.random() * 0.002)
        await asyncio.sleep(0.05)
        stop.append(True)
        await within(asyncio.gather(*waiters))
        assert taken[0] + sem.count == releases
        assert taken[1] >= 20, f"only {taken[1]} cancellations"

    run(main())
    sem.close()


def test_mutex_waits_cancelled_leave_it_free(name):
    m = shmkit.Mutex.create(name)

    async def main():
        rng = random.Random(6)
        holder = await within(m.lock_async())
        timeouts = 0
        for i in range(200):
            if i % 10 == 5:
                holder.unlock()  # free for a moment: a waiter may take it
            try:
                g = await asyncio.wait_for(m.lock_async(), rng.random() * 0.002)
                g.unlock()
            except TimeoutError:
                timeouts += 1
            if not holder.locked:
                holder = await within(m.lock_async())
        holder.unlock()
        assert timeouts >= 20
        g = m.try_lock()  # no cancelled wait kept it
        assert g is not None
        g.unlock()

    run(main())
    m.close()


# --- a peer killed while awaited ----------------------------------------------

KILLED_SENDER = """
import os, shmkit, signal, sys
tx = shmkit.Sender.connect(sys.argv[1], create=False)
tx.send(b"last words")
print("sent", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_RECEIVER = """
import os, shmkit, signal, sys
rx = shmkit.Receiver.connect(sys.argv[1], create=False)
print("attached", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_PUBLISHER = """
import os, shmkit, signal, sys
pub = shmkit.Publisher.connect(sys.argv[1], create=False)
pub.publish(b"last words")
print("sent", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_SERVER = """
import os, shmkit, signal, sys
server = shmkit.RpcServer.bind(sys.argv[1])
print("ready", flush=True)
req = server.recv(timeout=30)
print("got", req.payload.decode(), flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_HOLDER = """
import os, shmkit, signal, sys
m = shmkit.Mutex.open(sys.argv[1])
g = m.lock()
print("locked", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""

# How long noticing a killed peer may take here (it is usually well under a
# second): a bound, not a speed claim.
NOTICED = 10.0


async def killed_while_awaited(child, awaiting, expected):
    """Kills `child` while `awaiting` (a task) waits on it; `awaiting` must then
    raise `expected` within NOTICED seconds."""
    await asyncio.sleep(0.2)
    assert not awaiting.done(), awaiting
    child.stdin.write("die\n")
    child.stdin.flush()
    t = time.monotonic()
    with pytest.raises(expected):
        await asyncio.wait_for(awaiting, NOTICED)
    killed(child)
    return time.monotonic() - t


def test_a_killed_sender_is_disconnected_for_an_awaiting_receiver(name):
    async def main():
        rx = shmkit.Receiver.connect(name)
        child = run_python(KILLED_SENDER, name, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "sent"
            assert await within(rx.recv_async()) == b"last words"
            await killed_while_awaited(child, asyncio.create_task(rx.recv_async()), shmkit.Disconnected)
            rx.close()
        finally:
            finish(child)

    run(main())


def test_a_killed_receiver_is_disconnected_for_a_sender_awaiting_room(name):
    async def main():
        tx = shmkit.Sender.connect(name, capacity=4096)
        child = run_python(KILLED_RECEIVER, name, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "attached"
            while tx.try_send(b"f" * 500):
                pass
            sending = asyncio.create_task(tx.send_async(b"no room"))
            await killed_while_awaited(child, sending, shmkit.Disconnected)
            tx.close()
        finally:
            finish(child)

    run(main())


def test_a_killed_publisher_ends_an_async_for(name):
    async def main():
        sub = shmkit.Subscriber.connect(name)
        child = run_python(KILLED_PUBLISHER, name, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "sent"

            async def follow():
                return [m async for m in sub]

            following = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            assert not following.done()
            child.stdin.write("die\n")
            child.stdin.flush()
            assert await asyncio.wait_for(following, NOTICED) == [b"last words"]
            killed(child)
            sub.close()
        finally:
            finish(child)

    run(main())


def test_a_killed_server_is_disconnected_for_an_awaiting_call(name):
    async def main():
        child = run_python(KILLED_SERVER, name, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "ready"
            client = shmkit.RpcClient.connect(name)
            calling = asyncio.create_task(client.call_async(b"never answered"))
            assert await next_line(child) == "got never answered"
            await killed_while_awaited(child, calling, shmkit.Disconnected)
            client.close()
        finally:
            finish(child)

    run(main())


def test_a_killed_holder_gives_an_awaiting_lock_owner_died(name):
    async def main():
        m = shmkit.Mutex.create(name)
        child = run_python(KILLED_HOLDER, name, stdin=subprocess.PIPE)
        try:
            assert await next_line(child) == "locked"
            locking = asyncio.create_task(m.lock_async())
            await asyncio.sleep(0.2)
            assert not locking.done()
            child.stdin.write("die\n")
            child.stdin.flush()
            with pytest.raises(shmkit.OwnerDied) as e:
                await asyncio.wait_for(locking, NOTICED)
            killed(child)
            guard = e.value.guard
            assert guard.locked
            guard.mark_consistent()
            async with guard:
                pass
            assert not guard.locked
            g = await within(m.lock_async())  # consistent again: no OwnerDied
            g.unlock()
            m.close()
        finally:
            finish(child)

    run(main())


# --- close() while awaited ----------------------------------------------------


def waiting_on(kind, name, keep):
    """An object of `kind` and a coroutine that waits on it."""
    if kind in ("recv", "recv_into", "async_for"):
        rx = shmkit.Receiver.connect(name)
        keep.append(shmkit.Sender.connect(name))
        calls = {
            "recv": rx.recv_async,
            "recv_into": lambda: rx.recv_into_async(bytearray(16)),
            "async_for": lambda: anext(aiter(rx)),
        }
        return rx, calls[kind]()
    if kind == "subscriber":
        keep.append(shmkit.Publisher.connect(name))
        sub = shmkit.Subscriber.connect(name)
        return sub, sub.recv_async()
    if kind == "send":
        keep.append(shmkit.Receiver.connect(name, capacity=4096))
        tx = shmkit.Sender.connect(name)
        while tx.try_send(b"x" * 500):
            pass
        return tx, tx.send_async(b"y" * 500)
    if kind == "server":
        server = shmkit.RpcServer.bind(name)
        return server, server.recv_async()
    if kind == "client":
        server = shmkit.RpcServer.bind(name)
        keep.append(server)
        client = shmkit.RpcClient.connect(name)
        return client, client.call_async(b"never answered")
    if kind == "mutex":
        holder = shmkit.Mutex.create(name)
        keep.append(holder.lock())
        keep.append(holder)
        m = shmkit.Mutex.open(name)
        return m, m.lock_async()
    if kind == "semaphore":
        sem = shmkit.Semaphore.create(name)
        return sem, sem.wait_async()
    if kind == "event":
        ev = shmkit.Event.create(name)
        return ev, ev.wait_async()
    raise AssertionError(kind)


KINDS = ["recv", "recv_into", "async_for", "subscriber", "send", "server", "client", "mutex", "semaphore", "event"]

# How long an awaiting coroutine may take to notice close(): usually at once.
PROMPT = 2.0


@pytest.mark.parametrize("closer", ["task", "thread"])
@pytest.mark.parametrize("kind", KINDS)
def test_close_ends_a_coroutine_awaiting_the_object(name, kind, closer):
    keep = []

    async def main():
        obj, coro = waiting_on(kind, name, keep)
        awaiting = asyncio.create_task(coro)
        await asyncio.sleep(0.1)
        assert not awaiting.done(), awaiting
        t = time.monotonic()
        if closer == "task":
            obj.close()
        else:
            thread = threading.Thread(target=obj.close)
            thread.start()
            await asyncio.to_thread(thread.join, BOUND)
        with pytest.raises(shmkit.Closed, match="closed") as e:
            await asyncio.wait_for(awaiting, PROMPT)
        assert time.monotonic() - t < PROMPT
        assert name in str(e.value)
        with pytest.raises(shmkit.Closed):  # and later ones at once
            await within(waiting_on_again(obj, kind))

    run(main())
    for k in reversed(keep):
        (k.unlock if isinstance(k, shmkit.MutexGuard) else k.close)()


def waiting_on_again(obj, kind):
    again = {
        "recv": lambda: obj.recv_async(),
        "recv_into": lambda: obj.recv_into_async(bytearray(16)),
        "async_for": lambda: anext(aiter(obj)),
        "subscriber": lambda: obj.recv_async(),
        "send": lambda: obj.send_async(b"z"),
        "server": lambda: obj.recv_async(),
        "client": lambda: obj.call_async(b"again"),
        "mutex": lambda: obj.lock_async(),
        "semaphore": lambda: obj.wait_async(),
        "event": lambda: obj.wait_async(),
    }
    return again[kind]()


# --- in one process -------------------------------------------------------------


def test_a_thousand_messages_through_async_for(name):
    count = 1000

    async def main():
        rx = shmkit.Receiver.connect(name, capacity=8192)
        tx = shmkit.Sender.connect(name)

        async def produce():
            for i in range(count):
                await within(tx.send_async(b"%d" % i + b"-" * (i % 700)))
            tx.close()

        producing = asyncio.create_task(produce())

        async def consume():
            return [int(m.split(b"-")[0]) async for m in rx]

        assert await within(consume()) == list(range(count))
        await within(producing)
        rx.close()

    run(main())


def test_several_coroutines_share_one_receiver(name):
    """Four consumers await one receiver at once: every message reaches exactly
    one of them, and all end when the sender goes."""
    count = 800

    async def main():
        rx = shmkit.Receiver.connect(name, capacity=4096)
        tx = shmkit.Sender.connect(name)

        async def consume():
            return [int(m) async for m in rx]

        consumers = [asyncio.create_task(consume()) for _ in range(4)]
        rng = random.Random(8)
        for i in range(count):
            await within(tx.send_async(b"%d" % i))
            if rng.random() < 0.1:
                await asyncio.sleep(0.001)
        tx.close()
        got = await within(asyncio.gather(*consumers))
        assert sorted(sum(got, [])) == list(range(count))
        assert all(g == sorted(g) for g in got)  # each one's share in order
        rx.close()

    run(main())


def test_semaphore_and_event_wake_every_waiter(name):
    async def main():
        sem = shmkit.Semaphore.create(name + "s")
        ev = shmkit.Event.create(name + "e")
        sem_waits = [asyncio.create_task(sem.wait_async()) for _ in range(5)]
        ev_waits = [asyncio.create_task(ev.wait_async()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in sem_waits + ev_waits)
        sem.release(3)
        await asyncio.sleep(0.2)
        assert sum(t.done() for t in sem_waits) == 3
        sem.release(2)
        ev.set()
        await within(asyncio.gather(*sem_waits, *ev_waits))
        assert sem.count == 0 and ev.is_set()
        sem.close()
        ev.close()

    run(main())


def test_recv_into_async_leaves_a_long_message_queued(name):
    async def main():
        rx = shmkit.Receiver.connect(name)
        tx = shmkit.Sender.connect(name)
        small = bytearray(4)
        waiting = asyncio.create_task(rx.recv_into_async(small))
        await asyncio.sleep(0.05)
        tx.send(b"longer than four")  # arrives while the coroutine waits
        with pytest.raises(shmkit.BufferTooSmall) as e:
            await within(waiting)
        assert e.value.needed == 16
        tx.send(b"next")
        with pytest.raises(shmkit.BufferTooSmall):  # still the long one
            await within(rx.recv_into_async(small))
        big = bytearray(64)
        n = await within(rx.recv_into_async(big))
        assert big[:n] == b"longer than four"
        assert await within(rx.recv_into_async(small)) == 4 and small == b"next"
        tx.send(b"long message again")
        with pytest.raises(shmkit.BufferTooSmall):
            await within(rx.recv_into_async(small))
        assert rx.recv(timeout=1) == b"long message again"  # sync calls see it too
        with pytest.raises(TypeError, match="writable"):
            await within(rx.recv_into_async(b"read-only"))
        tx.close()
        rx.close()

    run(main())


def test_rpc_reply_async_waits_for_a_full_reply_queue(name):
    """A client that stopped reading: reply_async waits until the client drains
    its queue, and gives up after the reply timeout (1 s) as reply does. A
    receive cancelled meanwhile on the same server does not disturb the wait."""

    async def main():
        server = shmkit.RpcServer.bind(name)
        client = shmkit.RpcClient.connect(name)
        calling = asyncio.create_task(client.call_async(b"q"))
        req = await within(server.recv_async())
        calling.cancel()  # the client stops reading its replies
        with pytest.raises(asyncio.CancelledError):
            await calling
        filler = b"r" * 60_000
        for _ in range(100):  # fill its reply queue with replies it discards
            t = time.monotonic()
            if not await within(reply_or_timeout(server, req, filler)):
                # It waited the reply timeout (a lower bound, not a speed claim).
                assert time.monotonic() - t >= 0.9
                break
        else:
            raise AssertionError("the reply queue never filled")
        replying = asyncio.create_task(server.reply_async(req, filler))
        receiving = asyncio.create_task(server.recv_async())
        await asyncio.sleep(0.1)
        assert not replying.done() and not receiving.done()
        receiving.cancel()  # gives the server's receive wait back
        with pytest.raises(asyncio.CancelledError):
            await receiving
        # A new call drains the stale replies, which lets the waiting one in
        # (discarded too, as a late reply).
        answering = asyncio.create_task(answer_one(server))
        assert await within(client.call_async(b"fresh")) == b"FRESH"
        await within(replying)
        await within(answering)
        client.close()
        server.close()

    async def reply_or_timeout(server, req, payload):
        try:
            await server.reply_async(req, payload)
            return True
        except shmkit.Timeout as e:
            assert "reply" in str(e) and req.client in str(e)
            return False

    async def answer_one(server):
        req = await within(server.recv_async())
        await within(server.reply_async(req, req.payload.upper()))

    run(main())


def test_call_async_waits_for_room_in_the_request_queue(name):
    """A server that stopped receiving: its request queue fills, and call_async
    waits for room (a call cancelled meanwhile sent nothing) until the server
    drains the queue; then its request goes and its reply comes."""
    filler = b"f" * 60_000  # one record of the 1 MiB request ring

    async def main():
        server = shmkit.RpcServer.bind(name)
        stuffer = shmkit.RpcClient.connect(name)
        client = shmkit.RpcClient.connect(name)
        queued = []
        # Long requests, then shorter ones in what is left, down to one byte.
        for stuffing in (filler, b"m" * 4000, b"s" * 250, b"t"):
            while True:  # requests whose calls time out stay queued
                try:
                    stuffer.call(stuffing, timeout=0.01)
                except shmkit.Timeout as e:
                    if "to send" in str(e):
                        break  # no room for another
                    queued.append(stuffing)
                assert len(queued) < 1000, "the request queue never filled"
        with pytest.raises(TimeoutError):  # cancelled while waiting for room
            await asyncio.wait_for(client.call_async(b"cancelled"), 0.2)
        calling = asyncio.create_task(client.call_async(b"waits"))
        await asyncio.sleep(0.2)
        assert not calling.done()
        payloads = []
        while True:
            req = await within(server.recv_async())
            payloads.append(req.payload)
            # Short: the stuffer reads none of its replies.
            await within(server.reply_async(req, req.payload[:5].upper()))
            if req.payload == b"waits":
                break
        assert await within(calling) == b"WAITS"
        assert payloads == queued + [b"waits"]  # not b"cancelled"
        with pytest.raises(shmkit.Timeout):
            server.recv(timeout=0.1)
        for obj in (stuffer, client, server):
            obj.close()

    run(main())


def test_server_receives_cancelled_at_random_lose_and_duplicate_nothing(name):
    """wait_for(server.recv_async(), tiny) times out over and over while clients
    on another thread call at random moments: every call is answered once."""
    count = 300

    def calls(results):
        rng = random.Random(9)
        clients = [shmkit.RpcClient.connect(name) for _ in range(3)]
        for i in range(count):
            results.append(clients[i % 3].call(b"%d" % i, timeout=BOUND))
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.004)
        for c in clients:
            c.close()

    async def main():
        server = shmkit.RpcServer.bind(name)
        rng = random.Random(10)
        results, served, timeouts = [], 0, 0
        thread = threading.Thread(target=calls, args=(results,))
        thread.start()
        try:
            while served < count:
                try:
                    req = await asyncio.wait_for(server.recv_async(), rng.random() * 0.003)
                except TimeoutError:
                    timeouts += 1
                    continue
                await within(server.reply_async(req, b"re " + req.payload))
                served += 1
        finally:
            await asyncio.to_thread(thread.join, BOUND)
        assert results == [b"re %d" % i for i in range(count)]
        assert timeouts >= 20, f"only {timeouts} cancellations"
        with pytest.raises(shmkit.Timeout):
            server.recv(timeout=0.1)
        server.close()

    run(main())


def test_rpc_async_limits(name):
    """call_async takes one record of the request ring (past the 64 KiB of
    before), reply_async one record of the client's reply ring (65,520 bytes);
    longer ones are TooLong, naming the payload's length, and send nothing."""

    async def main():
        server = shmkit.RpcServer.bind(name)
        client = shmkit.RpcClient.connect(name)

        async def answer(make_reply):
            req = await within(server.recv_async())
            await within(server.reply_async(req, make_reply(req)))
            return req

        big = bytes(range(256)) * 800  # 200 KiB
        answering = asyncio.create_task(answer(lambda r: r.payload[:65_520]))
        assert await within(client.call_async(big)) == big[:65_520]
        assert (await answering).payload == big
        too_long = b"x" * (300 << 10)
        with pytest.raises(shmkit.TooLong, match=f"{name}: message of {len(too_long)} bytes"):
            await within(client.call_async(too_long))
        with pytest.raises(shmkit.Timeout):  # it sent nothing
            server.recv(timeout=0.1)
        calling = asyncio.create_task(client.call_async(b"after"))  # not Busy
        req = await within(server.recv_async())
        with pytest.raises(shmkit.TooLong, match="message of 65521 bytes .* limit of 65520"):
            await within(server.reply_async(req, b"y" * 65_521))
        await within(server.reply_async(req, b"fits"))
        assert await within(calling) == b"fits"
        client.close()
        server.close()

    run(main())


def test_errors(name):
    async def main():
        rx = shmkit.Receiver.connect(name, capacity=4096)
        tx = shmkit.Sender.connect(name)
        with pytest.raises(shmkit.TooLong):
            await within(tx.send_async(b"x" * (tx.max_record + 1)))
        server = shmkit.RpcServer.bind(name + "r")
        client = shmkit.RpcClient.connect(name + "r")
        with pytest.raises(shmkit.TooLong):
            await within(client.call_async(b"x" * (1 << 20)))
        first = asyncio.create_task(client.call_async(b"one"))
        await asyncio.sleep(0.05)
        with pytest.raises(shmkit.Busy, match="one call at a time"):
            await within(client.call_async(b"two"))
        with pytest.raises(shmkit.Busy):
            client.call(b"sync", timeout=1)
        req = await within(server.recv_async())
        await within(server.reply_async(req, b"1"))
        assert await within(first) == b"1"
        # One event loop at a time per object.
        waiting = asyncio.create_task(rx.recv_async())
        await asyncio.sleep(0.05)
        other = await asyncio.to_thread(lambda: asyncio.run(catch(asyncio.wait_for(rx.recv_async(), BOUND))))
        assert isinstance(other, shmkit.Busy) and "event loop" in str(other)
        tx.send(b"for the first loop")
        assert await within(waiting) == b"for the first loop"
        fd = rx.fileno()
        assert isinstance(fd, int) and fd == rx.fileno() and fd != tx.fileno()
        for obj in (rx, tx, server, client):
            obj.close()
        with pytest.raises(shmkit.Closed):
            rx.fileno()

    async def catch(awaitable):
        try:
            return await awaitable
        except Exception as e:  # noqa: BLE001 - returned to the test
            return e

    run(main())


def test_no_loop_no_coroutine_left_running(name):
    """Calling a *_async method makes a coroutine; nothing happens until it is
    awaited, and a coroutine closed unawaited takes nothing."""
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    tx.send(b"kept")
    coro = rx.recv_async()
    coro.close()
    assert rx.recv(timeout=1) == b"kept"
    tx.close()
    rx.close()
