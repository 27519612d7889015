"""close() from another thread ends a call blocked on the same object: the call
raises shmkit.Closed, and the role it held (receiver, subscriber, server) is free
once close() returns. Nothing else about the object is locked during a wait."""

import threading
import time

import pytest

import shmkit

# How long a blocked call may take to notice close(): usually at once.
PROMPT = 2.0


class Blocked:
    """Runs `call` on a thread and records how it ended."""

    def __init__(self, call):
        self.outcome = None
        self.started = threading.Event()

        def run():
            self.started.set()
            try:
                self.outcome = ("returned", call())
            except BaseException as e:  # noqa: BLE001 - recorded for the test
                self.outcome = ("raised", e)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.started.wait()
        time.sleep(0.2)  # let it reach its wait
        assert self.thread.is_alive(), f"not blocked: {self.outcome}"

    def ended(self, within=PROMPT):
        self.thread.join(within)
        assert not self.thread.is_alive(), f"still blocked {within} s after close()"
        return self.outcome

    def closed(self, what):
        kind, value = self.ended()
        assert kind == "raised" and isinstance(value, shmkit.Closed), (kind, value)
        assert isinstance(value, shmkit.Error)
        assert what in str(value) and "closed" in str(value), str(value)
        return value


def test_receiver_close_ends_a_blocked_recv_and_frees_the_role(name):
    rx = shmkit.Receiver.connect(name)
    waiting = Blocked(rx.recv)
    # Neither the name nor the repr waits for the blocked call.
    assert rx.name == name and name in repr(rx)
    t = time.monotonic()
    rx.close()
    assert time.monotonic() - t < PROMPT
    waiting.closed(name)
    again = shmkit.Receiver.connect(name)  # the role is free at once
    again.close()
    with pytest.raises(shmkit.Closed, match="closed"):
        rx.recv(timeout=0)
    rx.close()  # twice: nothing


@pytest.mark.parametrize("call", ["recv", "recv_into", "iterate"])
def test_every_blocking_receive_is_ended(name, call):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    buf = bytearray(16)
    calls = {"recv": rx.recv, "recv_into": lambda: rx.recv_into(buf), "iterate": lambda: list(rx)}
    waiting = Blocked(calls[call])
    rx.close()
    waiting.closed(name)
    tx.close()


def test_a_second_thread_gets_its_own_timeout_while_one_waits(name):
    rx = shmkit.Receiver.connect(name)
    waiting = Blocked(rx.recv)
    t = time.monotonic()
    with pytest.raises(shmkit.Timeout, match="200ms"):
        rx.recv(timeout=0.2)
    assert time.monotonic() - t < 1.5
    # Calls that cannot wait do not hang behind the blocked recv.
    with pytest.raises(shmkit.Busy, match="another thread's receive") as e:
        rx.try_recv()
    assert isinstance(e.value, RuntimeError) and name in str(e.value)
    with pytest.raises(shmkit.Busy):
        _ = rx.senders
    rx.close()
    waiting.closed(name)


def test_threads_sharing_a_sender_take_turns(name):
    rx = shmkit.Receiver.connect(name, capacity=4096)
    tx = shmkit.Sender.connect(name)
    errors = []

    def send(tag):
        try:
            for i in range(300):
                tx.send(b"%s%03d" % (tag, i) + b"." * 200, timeout=30)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(t,)) for t in (b"a", b"b", b"c")]
    for t in threads:
        t.start()
    got = [rx.recv(timeout=30)[:4] for _ in range(900)]
    for t in threads:
        t.join()
    assert not errors, errors
    for tag in (b"a", b"b", b"c"):
        assert [g for g in got if g[:1] == tag] == [b"%s%03d" % (tag, i) for i in range(300)]


def test_subscriber_close(name):
    pub = shmkit.Publisher.connect(name)
    sub = shmkit.Subscriber.connect(name)
    waiting = Blocked(sub.recv)
    assert sub.name == name
    sub.close()
    waiting.closed(name)
    pub.close()


def test_rpc_server_close_frees_the_name(name):
    server = shmkit.RpcServer.bind(name)
    waiting = Blocked(server.recv)
    assert server.name == name
    server.close()
    waiting.closed(name)
    shmkit.RpcServer.bind(name).close()  # the server role is free
    with pytest.raises(shmkit.Closed):
        server.recv(timeout=0)


def test_rpc_client_close_ends_a_call_waiting_for_its_reply(name):
    server = shmkit.RpcServer.bind(name)
    client = shmkit.RpcClient.connect(name)
    waiting = Blocked(lambda: client.call(b"never answered"))
    assert server.recv(timeout=5).payload == b"never answered"
    client.close()
    waiting.closed(name)
    server.close()


def test_sender_close_ends_a_send_waiting_for_room(name):
    rx = shmkit.Receiver.connect(name, capacity=4096)
    tx = shmkit.Sender.connect(name)
    while tx.try_send(b"x" * 512):
        pass
    waiting = Blocked(lambda: tx.send(b"y" * 512))
    assert tx.name == name
    tx.close()
    waiting.closed(name)
    rx.close()


def test_sender_close_ends_a_fragmented_send(name):
    rx = shmkit.Receiver.connect(name, capacity=4096)
    tx = shmkit.Sender.connect(name)
    waiting = Blocked(lambda: tx.send(b"z" * (1 << 20)))
    tx.close()
    waiting.closed(name)
    with pytest.raises(shmkit.Disconnected):  # the unfinished message is dropped
        rx.recv(timeout=1)


def test_mutex_close_ends_a_blocked_lock(name):
    holder = shmkit.Mutex.create(name)
    m = shmkit.Mutex.open(name)
    g = holder.lock()
    waiting = Blocked(m.lock)
    assert m.name == name
    m.close()
    waiting.closed(name)
    g.unlock()
    with pytest.raises(shmkit.Closed):
        m.lock(timeout=1)
    with holder.lock(timeout=1):  # the interrupted lock took nothing
        pass


def test_semaphore_and_event_close(name):
    sem = shmkit.Semaphore.create(name + "s")
    ev = shmkit.Event.create(name + "e")
    waits = [Blocked(sem.wait), Blocked(sem.wait), Blocked(ev.wait)]
    sem.close()
    ev.close()
    waits[0].closed(name + "s")
    waits[1].closed(name + "s")
    waits[2].closed(name + "e")
    with pytest.raises(shmkit.Closed):
        sem.try_wait()
    with pytest.raises(shmkit.Closed):
        ev.set()


def test_closing_the_receiver_ends_a_loop_on_another_thread(name):
    """The documented way to stop a reader thread."""
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    got = []

    def reader():
        try:
            for msg in rx:
                got.append(msg)
        except shmkit.Closed:
            got.append("closed")

    t = threading.Thread(target=reader)
    t.start()
    tx.send(b"one")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    rx.close()
    t.join(PROMPT)
    assert not t.is_alive()
    assert got == [b"one", "closed"]
    tx.close()
