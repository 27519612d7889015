"""Round trip and throughput of shmkit channels from Python, beside
multiprocessing.Pipe, multiprocessing.Queue and socket.socketpair, in one run.

    python bench/bench.py            # full run (~1 min)
    python bench/bench.py --quick    # a few seconds

Two real processes (the child is forked). Round trip: the parent sends a message
of the size, the child sends it back; the parent checks it. Throughput: the
child sends messages of the size as fast as it can, the parent receives them all
and checks the last. Prints a Markdown table.
"""

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time

import shmkit

SIZES = [64, 1024, 64 * 1024, 1024 * 1024]


def human(n):
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


# Each transport is (setup in the parent before forking, the two ends as
# send/recv callables built in each process).


class Shmkit:
    name = "shmkit queue"

    def __init__(self):
        tag = f"pybench-{os.getpid()}-{time.monotonic_ns()}"
        self.names = (tag + "-a", tag + "-b")
        # The parent makes both channels before the fork (its own ends), so the
        # child only opens them. Forked children leave with os._exit: the copies
        # of the parent's ends they inherit are never closed by them.
        self.tx_parent = shmkit.Sender.connect(self.names[0], capacity=4 << 20)
        self.rx_parent = shmkit.Receiver.connect(self.names[1], capacity=4 << 20)

    def child_ends(self):
        rx = shmkit.Receiver.connect(self.names[0])
        tx = shmkit.Sender.connect(self.names[1])
        return tx.send, rx.recv, (tx, rx)

    def parent_ends(self):
        return self.tx_parent.send, self.rx_parent.recv, ()


class Pipe:
    name = "multiprocessing.Pipe"

    def __init__(self):
        self.a, self.b = mp.Pipe()

    def child_ends(self):
        return self.b.send_bytes, self.b.recv_bytes, ()

    def parent_ends(self):
        return self.a.send_bytes, self.a.recv_bytes, ()


class Queue:
    name = "multiprocessing.Queue"

    def __init__(self):
        self.to_child, self.to_parent = mp.Queue(), mp.Queue()

    def child_ends(self):
        return self.to_parent.put, self.to_child.get, ()

    def parent_ends(self):
        return self.to_child.put, self.to_parent.get, ()


class SocketPair:
    name = "socket.socketpair"

    def __init__(self):
        self.a, self.b = socket.socketpair()
        for s in (self.a, self.b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    @staticmethod
    def ends(sock):
        # A 4-byte length prefix keeps message boundaries, as the others do.
        def send(msg):
            sock.sendall(len(msg).to_bytes(4, "little") + msg)

        def recv_exact(n):
            buf = bytearray(n)
            view, got = memoryview(buf), 0
            while got < n:
                k = sock.recv_into(view[got:])
                if not k:
                    raise EOFError
                got += k
            return bytes(buf)

        def recv():
            return recv_exact(int.from_bytes(recv_exact(4), "little"))

        return send, recv, ()

    def child_ends(self):
        return self.ends(self.b)

    def parent_ends(self):
        return self.ends(self.a)


TRANSPORTS = [Shmkit, Pipe, Queue, SocketPair]


def child(transport, mode, size, count):
    send, recv, keep = transport.child_ends()
    if mode == "echo":
        for _ in range(count):
            send(recv())
    else:
        msg = bytes([7]) * size
        for _ in range(count):
            send(msg)
        recv()  # the parent's "done": nothing is torn down before it has all
    del keep


def run(transport_class, mode, size, count):
    t = transport_class()
    proc = mp.get_context("fork").Process(target=child, args=(t, mode, size, count))
    proc.start()
    send, recv, keep = t.parent_ends()
    msg = os.urandom(size)
    try:
        if mode == "echo":
            times = []
            for _ in range(count):
                start = time.perf_counter_ns()
                send(msg)
                back = recv()
                times.append(time.perf_counter_ns() - start)
                if len(back) != size or back[:8] != msg[:8]:
                    raise SystemExit(f"{t.name}: echo came back wrong")
            return statistics.median(times[count // 10 :]) / 1000  # µs, warm-up dropped
        start = time.perf_counter()
        for _ in range(count):
            last = recv()
        elapsed = time.perf_counter() - start
        if len(last) != size or last[:1] != b"\x07":
            raise SystemExit(f"{t.name}: stream message came back wrong")
        send(b"done")
        return count / elapsed
    finally:
        proc.join(60)
        del keep


def counts(size, quick):
    scale = 10 if quick else 1
    if size <= 1024:
        return 20_000 // scale, 100_000 // scale
    if size <= 64 * 1024:
        return 5_000 // scale, 20_000 // scale
    return 500 // scale, 2_000 // scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (a few seconds)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="message sizes in bytes, comma-separated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}")
    print()
    print("| transport | size | round trip p50 (µs) | x shmkit | one-way messages/s | MB/s | x shmkit |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        rt_n, tp_n = counts(size, args.quick)
        rows = [(tc, run(tc, "echo", size, rt_n), run(tc, "stream", size, tp_n)) for tc in TRANSPORTS]
        base_rt, base_tp = rows[0][1], rows[0][2]
        for tc, rt, tp in rows:
            print(
                f"| {tc.name} | {human(size)} | {rt:.1f} | {rt / base_rt:.2f} | "
                f"{tp:,.0f} | {tp * size / 1e6:,.0f} | {tp / base_tp:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
