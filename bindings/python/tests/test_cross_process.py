"""Between processes: Python <-> Python and Python <-> Rust, 10,000 messages of
random sizes (1 in 100 up to 4 MiB) checksummed both ways; a 100 MiB numpy array
shared without a copy."""

import subprocess
import sys

import pytest

import shmkit
from conftest import line, reap, run_python

COUNT = 10_000
MAX = 4 << 20

# Same sizes rule and checksum as the Rust peer (shmkit-peer): the CRC-32 of each
# message's length (8 bytes, little-endian) followed by its bytes.
SEND = """
import random, shmkit, struct, sys, zlib
name, count, seed, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
tx = shmkit.Sender.connect(name)
crc = 0
for _ in range(count):
    limit = top if rng.randrange(100) == 0 else min(top, 4096)
    msg = rng.randbytes(rng.randint(0, limit))
    tx.send(msg, timeout=60)
    crc = zlib.crc32(msg, zlib.crc32(struct.pack("<Q", len(msg)), crc))
print(count, crc, flush=True)
"""

RECV = """
import shmkit, struct, sys, zlib
name, count = sys.argv[1], int(sys.argv[2])
rx = shmkit.Receiver.connect(name)
print("ready", flush=True)
crc = 0
buf = bytearray(8 << 20)
for i in range(count):
    if i % 2:
        msg = rx.recv(timeout=60)
    else:
        msg = memoryview(buf)[: rx.recv_into(buf, timeout=60)]
    crc = zlib.crc32(msg, zlib.crc32(struct.pack("<Q", len(msg)), crc))
print(count, crc, flush=True)
"""


def receiver(kind, peer, name):
    if kind == "python":
        return run_python(RECV, name, COUNT)
    return subprocess.Popen([peer, "recv", name, str(COUNT)], stdout=subprocess.PIPE, text=True)


def sender(kind, peer, name, seed):
    if kind == "python":
        return run_python(SEND, name, COUNT, seed, MAX)
    return subprocess.Popen([peer, "send", name, str(COUNT), str(seed), str(MAX)], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("send_kind,recv_kind", [("python", "python"), ("python", "rust"), ("rust", "python")])
def test_ten_thousand_random_messages(name, peer, send_kind, recv_kind):
    rx = receiver(recv_kind, peer, name)
    tx = None
    try:
        assert line(rx) == "ready"
        tx = sender(send_kind, peer, name, 12345)
        sent, _ = tx.communicate(timeout=300)
        got = line(rx, timeout=300)
        assert tx.wait(timeout=60) == 0 and rx.wait(timeout=60) == 0
        assert sent.split() and sent.split() == got.split(), (sent, got)
    finally:
        for p in (tx, rx):
            if p and p.poll() is None:
                p.kill()
                p.wait()


ARRAY = """
import numpy as np, shmkit, sys
seg = shmkit.Shm.open(sys.argv[1])
arr = np.frombuffer(seg, dtype=np.float64)
print(int(arr[12_345_678]), flush=True)       # what the parent wrote
arr[::1_000_000] = -1.0                     # seen by the parent without a copy
del arr
seg.close()
"""


def test_a_100_mib_numpy_array_between_processes(name):
    np = pytest.importorskip("numpy")
    seg = shmkit.Shm.create(name, 100 << 20)
    arr = np.frombuffer(seg, dtype=np.float64)
    assert arr.nbytes == 100 << 20
    # The array is the segment's memory: writing one shows in the other.
    assert arr.__array_interface__["data"][0] == np.frombuffer(seg, dtype=np.uint8).__array_interface__["data"][0]
    arr[:] = np.arange(arr.size, dtype=np.float64)
    out = subprocess.run([sys.executable, "-c", ARRAY, name], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "12345678"
    assert (arr[::1_000_000] == -1.0).all()
    assert arr[1] == 1.0 and seg.read(8, 8) == np.float64(1.0).tobytes()
    del arr
    seg.close()


KILLED = """
import os, shmkit, signal, sys
tx = shmkit.Sender.connect(sys.argv[1])
tx.send(b"last words")
print("sent", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_sender_killed_is_seen_as_disconnected(name):
    rx = shmkit.Receiver.connect(name)
    child = run_python(KILLED, name)
    assert line(child) == "sent"
    assert child.wait(timeout=30) == -9
    reap(child)
    assert rx.recv(timeout=5) == b"last words"  # what it sent is kept
    with pytest.raises(shmkit.Disconnected, match="died|closed|gone"):
        rx.recv(timeout=5)
