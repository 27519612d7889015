"""Mutex (owner-died), Semaphore, Event; Ctrl-C during waits."""

import os
import signal
import subprocess
import time

import pytest

import shmkit
from conftest import line, reap, run_python


def test_mutex_lock_unlock_and_with(name):
    m = shmkit.Mutex.create(name)
    assert m.created and m.name == name
    g = m.lock()
    assert g.locked
    g.unlock()
    assert not g.locked
    g.unlock()  # twice: nothing
    with m.lock(timeout=1.0) as g2:
        assert g2.locked
    assert not g2.locked
    with m:
        pass
    assert m.try_lock() is not None  # guard dropped at once: unlocked again
    with pytest.raises(shmkit.AlreadyExists):
        shmkit.Mutex.create(name)
    with pytest.raises(shmkit.NotFound):
        shmkit.Mutex.open(name + "-none")
    with pytest.raises(shmkit.InvalidArgument, match="timeout"):
        m.lock(timeout=-1)
    with pytest.raises(TypeError):
        m.lock(timeout="soon")


HOLD = """
import shmkit, sys, time
m = shmkit.Mutex.open(sys.argv[1])
g = m.lock()
print("locked", flush=True)
if sys.argv[2] == "die":
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.readline()
g.unlock()
print("unlocked", flush=True)
"""


def test_mutex_held_by_another_process(name):
    m = shmkit.Mutex.create(name)
    child = run_python(HOLD, name, "hold", stdin=subprocess.PIPE)
    assert line(child) == "locked"
    t = time.monotonic()
    with pytest.raises(shmkit.Timeout, match="timed out after 200ms") as e:
        m.lock(timeout=0.2)
    assert isinstance(e.value, TimeoutError)
    assert time.monotonic() - t >= 0.19
    assert m.try_lock() is None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert line(child) == "unlocked"
    with m.lock(timeout=5):
        pass
    child.wait(timeout=30)


def test_owner_died_carries_a_guard(name):
    m = shmkit.Mutex.create(name)
    child = run_python(HOLD, name, "die")
    assert line(child) == "locked"
    assert child.wait(timeout=30) == -signal.SIGKILL
    reap(child)
    with pytest.raises(shmkit.OwnerDied, match="died while holding") as e:
        m.lock(timeout=5)
    guard = e.value.guard
    assert guard.locked
    assert m.try_lock() is None  # the guard holds it
    guard.unlock()
    # Not marked consistent: the next locker is told again.
    with pytest.raises(shmkit.OwnerDied) as e:
        with m:
            pytest.fail("the with block must not run")
    g = e.value.guard
    g.mark_consistent()
    g.unlock()
    with pytest.raises(shmkit.Error, match="already unlocked"):
        g.mark_consistent()
    with m.lock(timeout=1):
        pass


def test_a_python_owner_killed_is_seen_by_rust(name, peer):
    m = shmkit.Mutex.create(name)
    child = run_python(HOLD, name, "die")
    assert line(child) == "locked"
    reap(child)
    out = subprocess.run([peer, "lock", name], input="go\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ready", "owner-died"]
    del m


def test_a_rust_owner_killed_is_seen_by_python(name, peer):
    m = shmkit.Mutex.create(name)
    holder = subprocess.Popen([peer, "hold", name], stdout=subprocess.PIPE, text=True)
    assert line(holder) == "locked"
    holder.kill()
    reap(holder)
    with pytest.raises(shmkit.OwnerDied) as e:
        m.lock(timeout=5)
    e.value.guard.mark_consistent()
    e.value.guard.unlock()


def test_semaphore(name):
    s = shmkit.Semaphore.create(name, initial=1, max=2)
    assert s.count == 1 and s.max_count == 2 and s.name == name
    s.wait(timeout=0)
    assert not s.try_wait()
    with pytest.raises(shmkit.Timeout):
        s.wait(timeout=0.05)
    assert s.release() == 0
    assert s.release() == 1
    with pytest.raises(shmkit.AboveMaximum, match="maximum"):
        s.release()
    with pytest.raises(shmkit.InvalidArgument, match="at least 1"):
        s.release(0)
    with pytest.raises(shmkit.InvalidArgument, match="release count"):
        s.release(-1)
    with pytest.raises(shmkit.InvalidArgument, match="initial"):
        shmkit.Semaphore.create(name + "n", initial=-1)
    o = shmkit.Semaphore.open(name)
    with o:
        assert s.count == 1
    assert s.count == 2


def test_event_across_processes(name):
    e = shmkit.Event.create(name)
    assert not e.is_set() and not e.auto_reset
    with pytest.raises(shmkit.Timeout):
        e.wait(timeout=0.05)
    child = run_python("import shmkit, sys; shmkit.Event.open(sys.argv[1]).set()", name)
    e.wait(timeout=30)
    assert e.is_set()
    e.wait(timeout=0)  # manual reset: stays set
    e.reset()
    assert not e.is_set()
    child.wait(timeout=30)
    a = shmkit.Event.create(name + "a", auto_reset=True, initially_set=True)
    assert a.auto_reset
    a.wait(timeout=0)
    with pytest.raises(shmkit.Timeout):
        a.wait(timeout=0)
    with pytest.raises(shmkit.InvalidArgument, match="timeout"):
        a.wait(timeout=float("nan"))


INTERRUPTED = """
import shmkit, signal, sys, time
# A shell that starts a job in the background makes it ignore SIGINT, and Python
# then keeps it ignored: restore Ctrl-C's KeyboardInterrupt, as a terminal has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
m = shmkit.Mutex.open(sys.argv[1])
ev = shmkit.Event.open(sys.argv[2])
rx = shmkit.Receiver.connect(sys.argv[3])
what = sys.argv[4]
try:
    if what == "event":
        with m:
            print("waiting", flush=True)
            ev.wait()
    else:
        print("waiting", flush=True)
        rx.recv()
except KeyboardInterrupt:
    print("interrupted %.3f" % time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("what", ["event", "recv"])
def test_ctrl_c_interrupts_a_wait_and_leaves_nothing_locked(name, what):
    m = shmkit.Mutex.create(name + "m")
    ev = shmkit.Event.create(name + "e")
    child = run_python(INTERRUPTED, name + "m", name + "e", name + "q", what)
    assert line(child) == "waiting"
    time.sleep(0.3)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    words = line(child).split()
    assert words and words[0] == "interrupted", words
    assert float(words[1]) - sent < 0.5
    assert child.wait(timeout=30) == 0
    with m.lock(timeout=1):  # the with block released it on the way out
        pass
    del ev


def test_threads_of_one_process_exclude_each_other_and_guards_travel(name):
    import threading

    m = shmkit.Mutex.create(name)
    g = m.lock()
    seen = []
    t = threading.Thread(target=lambda: seen.append(m.try_lock()))
    t.start()
    t.join()
    assert seen == [None]  # another thread of the same process waits too
    # A guard may be released (or garbage-collected) on another thread.
    t = threading.Thread(target=g.unlock)
    t.start()
    t.join()
    assert not g.locked
    holder = []
    t = threading.Thread(target=lambda: holder.append(m.lock()))
    t.start()
    t.join()
    assert m.try_lock() is None
    holder.clear()  # the last reference goes on this thread
    with m.lock(timeout=1):
        pass


NESTED = """
import shmkit, sys
m = shmkit.Mutex.open(sys.argv[1])
with m:
    try:
        with m:
            print("entered twice", flush=True)
    except shmkit.Busy as e:
        assert isinstance(e, RuntimeError) and isinstance(e, shmkit.Error)
        print("busy:", e, flush=True)
    try:
        m.lock(timeout=10)
    except shmkit.Busy as e:
        print("busy:", e, flush=True)
    print("try_lock:", m.try_lock(), flush=True)
with m:
    print("again", flush=True)
"""


def test_nested_with_on_one_thread_is_an_error_not_a_deadlock(name):
    m = shmkit.Mutex.create(name)
    child = run_python(NESTED, name)
    try:
        first = line(child, timeout=10)
        assert first.startswith("busy:") and name in first and "this thread" in first, first
        assert line(child, timeout=10).startswith("busy:")
        assert line(child, timeout=10) == "try_lock: None"
        assert line(child, timeout=10) == "again"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:  # deadlocked: do not leave it behind
            child.kill()
            reap(child)
    with m.lock(timeout=1):
        pass
