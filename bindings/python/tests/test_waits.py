"""Waits that keep their progress and leave the GIL to other threads."""

import hashlib
import os
import signal
import threading
import time

import pytest

import shmkit
from conftest import line, reap, run_python

RECEIVER = """
import hashlib, shmkit, sys
rx = shmkit.Receiver.connect(sys.argv[1], capacity=int(sys.argv[2]))
print("ready", flush=True)
msg = rx.recv(timeout=120)
print(len(msg), hashlib.sha256(msg).hexdigest(), flush=True)
"""


def pause_now_and_then(pid, stop):
    """Stops process `pid` for 20 ms in every 60 ms until `stop` is set."""
    while not stop.is_set():
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.02)
        os.kill(pid, signal.SIGCONT)
        stop.wait(0.04)


@pytest.mark.parametrize("thread", ["main", "worker"])
def test_a_large_send_keeps_its_progress_while_the_receiver_pauses(name, thread):
    # Far larger than the ring: sent in thousands of fragments, which takes far
    # longer than a slice of a wait (50 ms) even at memory speed. A send that
    # gave up and restarted whenever a slice ran out would never finish.
    capacity = 64 * 1024
    msg = os.urandom(1 << 20) * 256  # 256 MiB
    tx = shmkit.Sender.connect(name, capacity=capacity)
    child = run_python(RECEIVER, name, capacity)
    stop = threading.Event()
    try:
        assert line(child) == "ready"
        pauser = threading.Thread(target=pause_now_and_then, args=(child.pid, stop))
        pauser.start()
        t = time.monotonic()
        if thread == "main":
            tx.send(msg, timeout=20)
        else:
            errors = []

            def send():
                try:
                    tx.send(msg, timeout=20)
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            worker = threading.Thread(target=send)
            worker.start()
            worker.join()
            assert not errors, errors
        took = time.monotonic() - t
        stop.set()
        pauser.join()
        os.kill(child.pid, signal.SIGCONT)
        assert line(child) == f"{len(msg)} {hashlib.sha256(msg).hexdigest()}"
        assert child.wait(timeout=30) == 0
    finally:
        stop.set()
        if child.poll() is None:  # failed half-way: do not leave it behind
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            reap(child)
    assert took < 15, took


INTERRUPT_A_LARGE_SEND = """
import shmkit, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
rx = shmkit.Receiver.connect(sys.argv[1], capacity=4096)
tx = shmkit.Sender.connect(sys.argv[1])
print("sending", flush=True)
try:
    tx.send(b"x" * (1 << 20))  # never read: waits for room forever
except KeyboardInterrupt:
    print("interrupted %.3f" % time.monotonic(), flush=True)
# The sender still works; the fragments it had sent fill the ring until the
# receiver reads (and drops) them.
import threading
t = threading.Thread(target=tx.send, args=(b"after",))
t.start()
print(rx.recv(timeout=5), flush=True)
t.join()
"""


def test_ctrl_c_ends_a_large_send(name):
    child = run_python(INTERRUPT_A_LARGE_SEND, name)
    try:
        assert line(child) == "sending"
        time.sleep(0.3)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        words = line(child).split()
        assert words and words[0] == "interrupted", words
        assert float(words[1]) - sent < 0.5
        assert line(child) == "b'after'"  # the abandoned message is not delivered
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:  # hung: do not leave it behind
            child.kill()
            reap(child)


def test_create_or_open_waits_for_another_threads_init_without_the_gil(name):
    in_init = threading.Event()

    def init(view):
        in_init.set()
        time.sleep(0.5)
        view[:4] = b"init"

    results = {}

    def open_it(key):
        try:
            results[key] = shmkit.Shm.create_or_open(name, 4096, init)
        except BaseException as e:  # noqa: BLE001 - checked below
            results[key] = e

    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    t = time.monotonic()
    first = threading.Thread(target=open_it, args=("first",))
    first.start()
    assert in_init.wait(5)
    second = threading.Thread(target=open_it, args=("second",))
    second.start()
    first.join(10)
    second.join(10)
    took = time.monotonic() - t
    done.set()
    ticker.join()
    a, b = results["first"], results["second"]
    assert isinstance(a, shmkit.Shm) and isinstance(b, shmkit.Shm), results
    assert a.created and not b.created
    assert b.read(0, 4) == b"init"
    assert took < 3, took
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.3, max(gaps)  # the waiting thread left the GIL free
    a.close()
    b.close()
