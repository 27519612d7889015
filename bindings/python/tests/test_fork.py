"""A process that forks a child which never uses shmkit (a `multiprocessing` fork
worker, a daemon) and is then killed is seen dead at once: the child does not keep
the parent's liveness token, so its mutex is OwnerDied and its channel
Disconnected while the child still sleeps."""

import os
import signal
import time

import pytest

import shmkit
from conftest import line, reap, run_python

HOLDER = """
import multiprocessing, os, shmkit, sys, time
name, role, how = sys.argv[1], sys.argv[2], sys.argv[3]
if role == "mutex":
    m = shmkit.Mutex.open(name)
    g = m.lock()
else:
    tx = shmkit.Sender.connect(name)
    tx.send(b"from the parent")
if how == "os.fork":
    pid = os.fork()
    if pid == 0:  # the child never touches shmkit
        time.sleep(120)
        os._exit(0)
else:
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
    worker.start()
    pid = worker.pid
print("forked", pid, flush=True)
time.sleep(120)
"""


def alive(pid):
    """Whether `pid` runs (a zombie does not: it closed its files)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill(pid):
    """Kills the sleeping child and waits until it has exited. It inherited the
    holder's descriptor of each object (which counts as a user of it, as a forked
    worker using an inherited segment is): a temporary object goes away only when
    the last of them closes."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def forked(name):
    """Starts HOLDER; yields a function that waits for its fork and kills it,
    returning the sleeping child's pid. The child is killed at the end."""
    started = []

    def start(role, how):
        holder = run_python(HOLDER, name, role, how)
        words = line(holder).split()
        assert words[:1] == ["forked"], words
        child = int(words[1])
        started.append((holder, child))
        holder.kill()  # SIGKILL: no clean-up of any kind
        # Its liveness token stays until the end: the check must find it
        # unlocked, not missing.
        holder.wait(timeout=30)
        assert alive(child)
        return child

    yield start
    for holder, child in started:
        if alive(child):
            kill(child)
        reap(holder)


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_a_killed_holder_with_a_forked_child_is_owner_died(name, forked, how):
    m = shmkit.Mutex.create(name)
    child = forked("mutex", how)
    t = time.monotonic()
    with pytest.raises(shmkit.OwnerDied) as e:
        m.lock(timeout=5)
    assert time.monotonic() - t < 2
    assert alive(child)  # it still sleeps, holding nothing
    e.value.guard.mark_consistent()
    e.value.guard.unlock()
    kill(child)
    m.close()


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_a_killed_sender_with_a_forked_child_is_disconnected(name, forked, how):
    rx = shmkit.Receiver.connect(name)
    child = forked("sender", how)
    assert rx.recv(timeout=5) == b"from the parent"
    t = time.monotonic()
    with pytest.raises(shmkit.Disconnected):
        rx.recv(timeout=5)
    assert time.monotonic() - t < 2
    assert alive(child)
    kill(child)
    rx.close()
