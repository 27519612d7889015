"""Shared fixtures: unique object names, the Rust peer program, cleanup."""

import gc
import glob
import itertools
import os
import pathlib
import queue
import subprocess
import sys
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
_counter = itertools.count()


def _leftovers(token):
    try:
        return [p for p in os.listdir("/dev/shm") if token in p]
    except FileNotFoundError:  # not Linux
        return []


@pytest.fixture(scope="session", autouse=True)
def no_dead_tokens():
    """Forked workers (multiprocessing) leave with os._exit, and killed peers
    cannot clean up: remove the liveness tokens of every process that died."""
    yield
    import shmkit

    shmkit.reap_dead_tokens()


@pytest.fixture
def name(request):
    """A name no other test (or test run) uses; anything left in /dev/shm under
    it after the test fails the test and is removed."""
    token = f"py{os.getpid()}x{next(_counter)}"
    yield f"{token}-{request.node.name[:60]}".replace("[", "-").replace("]", "")
    gc.collect()  # objects kept by tracebacks (pytest.raises) close now
    left = _leftovers(token)
    for p in left:
        try:
            os.unlink(os.path.join("/dev/shm", p))
        except OSError:
            pass
    assert not left, f"left behind in /dev/shm: {left}"


@pytest.fixture(scope="session")
def peer():
    """The Rust peer program (crates/shmkit-interop-tests/src/bin/shmkit-peer.rs)."""
    exe = os.environ.get("SHMKIT_PEER")
    if not exe:
        subprocess.run(
            ["cargo", "build", "-q", "-p", "shmkit-interop-tests", "--bin", "shmkit-peer"],
            cwd=REPO,
            check=True,
        )
        exe = str(REPO / "target" / "debug" / "shmkit-peer")
    return exe


@pytest.fixture(scope="session")
def cli():
    """The shmkit command (crates/shmkit-cli): a Rust peer for `send`/`recv`."""
    exe = os.environ.get("SHMKIT_CLI")
    if not exe:
        subprocess.run(["cargo", "build", "-q", "-p", "shmkit-cli", "--bin", "shmkit"], cwd=REPO, check=True)
        exe = str(REPO / "target" / "debug" / "shmkit")
    return exe


def reap(proc):
    """Waits for a process this test killed and removes its liveness token
    (/dev/shm/shmkit-live.PID.START), which a killed process cannot remove itself."""
    proc.wait(timeout=30)
    for token in glob.glob(f"/dev/shm/shmkit-live.{proc.pid}.*"):
        os.unlink(token)


def line(proc, timeout=30):
    """The next line `proc` prints (stripped), failing the test after `timeout`
    seconds instead of hanging on a peer that never answers."""
    lines = getattr(proc, "_lines", None)
    if lines is None:
        lines = proc._lines = queue.Queue()

        def pump():
            for text in proc.stdout:
                lines.put(text)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    try:
        got = lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no line from {proc.args!r} within {timeout} s")
    return "" if got is None else got.strip()


def run_python(code, *args, **kwargs):
    """Starts `python -c code args...` with stdout piped, as text."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        text=True,
        **kwargs,
    )
