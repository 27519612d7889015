"""Queue channels, broadcast and request/response within one process (threads
for the other end) and their bad input."""

import threading

import pytest

import shmkit


def test_send_and_receive_any_bytes_like(name):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    assert tx.receiver_connected and rx.capacity == tx.capacity == 1 << 20
    tx.send(b"bytes")
    tx.send(bytearray(b"bytearray"))
    tx.send(memoryview(b"xxmemoryviewxx")[2:-2])
    tx.send(b"")
    assert tx.try_send(b"try")
    assert rx.recv() == b"bytes"
    assert rx.recv(timeout=1) == b"bytearray"
    assert rx.recv() == b"memoryview"
    assert rx.recv() == b""
    assert rx.try_recv() == b"try"
    assert rx.try_recv() is None
    with pytest.raises(shmkit.Timeout, match="timed out after 50ms"):
        rx.recv(timeout=0.05)


def test_numpy_arrays_are_sent_as_their_bytes(name):
    np = pytest.importorskip("numpy")
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    arr = np.arange(1000, dtype=np.int32)
    tx.send(arr)
    got = np.frombuffer(rx.recv(), dtype=np.int32)
    assert (got == arr).all()
    with pytest.raises(BufferError, match="contiguous"):
        tx.send(arr[::2])


def test_messages_larger_than_the_ring(name):
    rx = shmkit.Receiver.connect(name, capacity=64 * 1024)
    tx = shmkit.Sender.connect(name)
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB, fragmented
    t = threading.Thread(target=lambda: [tx.send(big), tx.send(b"after")])
    t.start()  # the sender waits for room with the GIL released
    assert rx.recv(timeout=60) == big
    assert rx.recv(timeout=60) == b"after"
    t.join()


def test_recv_into(name):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    tx.send(b"0123456789")
    small = bytearray(4)
    with pytest.raises(shmkit.BufferTooSmall, match="10 bytes") as e:
        rx.recv_into(small)
    assert e.value.needed == 10 and isinstance(e.value, ValueError)
    buf = bytearray(16)
    assert rx.recv_into(buf) == 10  # it stayed queued
    assert buf[:10] == b"0123456789"
    with pytest.raises(TypeError, match="writable"):
        rx.recv_into(b"read-only bytes!")
    with pytest.raises(shmkit.Timeout):
        rx.recv_into(buf, timeout=0.01)
    view = memoryview(bytearray(32))[8:]
    tx.send(b"into a view")
    assert rx.recv_into(view) == 11 and bytes(view[:11]) == b"into a view"


def test_zero_copy_reserve(name):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    with tx.reserve(5) as buf:
        assert isinstance(buf, memoryview) and len(buf) == 5
        buf[:] = b"hello"
    assert rx.recv() == b"hello"

    res = tx.reserve(3)
    with pytest.raises(shmkit.Error, match="reservation is open"):
        tx.send(b"no")
    view = memoryview(res)
    view[:] = b"abc"
    with pytest.raises(BufferError, match="release"):
        res.commit()
    view.release()
    res.commit()
    with pytest.raises(shmkit.Error, match="already committed"):
        res.commit()
    assert rx.recv() == b"abc"

    with pytest.raises(RuntimeError):
        with tx.reserve(4) as buf:
            buf[:] = b"lost"
            raise RuntimeError("the block failed")
    res = tx.reserve(2)
    res.cancel()
    tx.send(b"sent")
    assert rx.recv() == b"sent"  # nothing from the cancelled ones
    tx.reserve(4)  # dropped unfinished: cancelled, the sender is free again
    tx.send(b"after a dropped one")
    assert rx.recv() == b"after a dropped one"
    with pytest.raises(shmkit.InvalidArgument, match="size must be >= 0"):
        tx.reserve(-1)
    with pytest.raises(shmkit.TooLong):
        tx.reserve(1 << 30)
    tx.send(b"still usable")
    assert rx.recv() == b"still usable"


def test_iteration_ends_when_senders_are_gone(name):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    for i in range(5):
        tx.send(b"%d" % i)
    tx.close()
    assert list(rx) == [b"0", b"1", b"2", b"3", b"4"]
    with pytest.raises(shmkit.Disconnected) as e:
        rx.recv(timeout=1)
    assert isinstance(e.value, ConnectionError)


def test_closed_handles_and_bad_arguments(name):
    rx = shmkit.Receiver.connect(name, max_message=100)
    tx = shmkit.Sender.connect(name)
    with pytest.raises(shmkit.TooLong, match="101 bytes"):
        tx.send(b"x" * 101)
    with pytest.raises(TypeError, match="bytes-like"):
        tx.send("a str is not bytes")
    with pytest.raises(TypeError):
        tx.send(123)
    with pytest.raises(shmkit.InvalidArgument, match="timeout"):
        rx.recv(timeout=-0.5)
    with pytest.raises(shmkit.Mismatch, match="max_message"):
        shmkit.Sender.connect(name, max_message=200)
    with pytest.raises(shmkit.InvalidArgument, match="capacity"):
        shmkit.Receiver.connect(name + "c", capacity=1000)
    with pytest.raises(shmkit.InvalidArgument, match="capacity must be >= 0"):
        shmkit.Receiver.connect(name + "d", capacity=-1)
    with pytest.raises(shmkit.NotFound):
        shmkit.Sender.connect(name + "e", create=False)
    with pytest.raises(shmkit.Occupied, match="receiver"):
        shmkit.Receiver.connect(name)
    tx.close()
    rx.close()
    with pytest.raises(shmkit.Error, match="closed"):
        tx.send(b"x")
    with pytest.raises(shmkit.Error, match="closed"):
        rx.recv()
    with shmkit.Receiver.connect(name + "w") as r:
        assert r.name == name + "w"


def test_publish_subscribe_and_lagged(name):
    pub = shmkit.Publisher.connect(name, capacity=4096)
    a = shmkit.Subscriber.connect(name)
    b = shmkit.Subscriber.connect(name)
    assert len(pub.subscribers) == 2 and pub.max_message == 1024 - 16
    pub.publish(b"one")
    pub.publish(bytearray(b"two"))
    assert a.recv(timeout=1) == b"one" and a.recv(timeout=1) == b"two"
    assert b.recv(timeout=1) == b"one" and b.recv(timeout=1) == b"two"
    assert a.try_recv() is None
    with pytest.raises(shmkit.Timeout):
        a.recv(timeout=0.01)
    for i in range(200):
        pub.publish(b"%04d" % i + bytes(60))
    with pytest.raises(shmkit.Lagged, match="missed") as e:
        a.recv(timeout=1)
    assert e.value.missed > 0
    rest = [a.recv(timeout=1) for _ in range(200 - e.value.missed)]
    assert rest[-1][:4] == b"0199" and a.try_recv() is None
    with pytest.raises(shmkit.TooLong):
        pub.publish(bytes(2000))
    pub.close()
    with pytest.raises(shmkit.Lagged):
        list(b)
    assert list(b)[-1][:4] == b"0199"  # then iteration ends: the publisher is gone


def test_request_response(name):
    server = shmkit.RpcServer.bind(name)
    done = threading.Event()

    def serve():
        while not done.is_set():
            server.serve_one(lambda p: p.upper(), timeout=0.05)

    t = threading.Thread(target=serve)
    t.start()
    try:
        client = shmkit.RpcClient.connect(name)
        assert client.call(b"hello", timeout=10) == b"HELLO"
        assert client.call(bytearray(b"x" * 100_000), timeout=10) == b"X" * 100_000
        other = shmkit.RpcClient.connect(name)
        assert other.call(b"two clients") == b"TWO CLIENTS"
    finally:
        done.set()
        t.join()
    req_thread = threading.Thread(target=lambda: client.call(b"ignored", timeout=0.2))
    with pytest.raises(shmkit.Timeout, match="timed out after 200ms"):
        client.call(b"nobody answers", timeout=0.2)
    req = server.recv(timeout=1)
    assert req.payload == b"nobody answers" and req.client
    del req_thread


def test_rpc_server_gone(name):
    server = shmkit.RpcServer.bind(name)
    client = shmkit.RpcClient.connect(name)
    del server
    import gc

    gc.collect()
    with pytest.raises(shmkit.Disconnected):
        client.call(b"anyone?", timeout=5)


def test_the_benchmark_script_runs():
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--sizes", "64,65536"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| ") and "transport" not in line]
    assert len(rows) == 8
    names = {r[0].strip() for r in rows}
    assert names == {"shmkit queue", "multiprocessing.Pipe", "multiprocessing.Queue", "socket.socketpair"}
    assert all(float(r[2]) > 0 and float(r[4].replace(",", "")) > 0 for r in rows)


def test_a_reservation_dropped_during_a_sender_call_frees_the_sender(name):
    rx = shmkit.Receiver.connect(name)
    tx = shmkit.Sender.connect(name)
    held = [tx.reserve(8)]

    class DropsTheReservation:
        """A timeout whose conversion runs Python code in the middle of a call."""

        def __float__(self):
            held.clear()  # the last reference: the reservation is cancelled here
            return 1.0

    try:
        tx.send(b"first", timeout=DropsTheReservation())
        sent = [b"first"]
    except shmkit.Busy:  # the reservation was still open when it looked
        sent = []
    tx.send(b"second", timeout=1)
    assert [rx.recv(timeout=1) for _ in sent + [0]] == sent + [b"second"]
