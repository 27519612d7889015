"""Shm, MappedFile and the buffer protocol."""

import gc
import os
import subprocess
import sys

import pytest

import shmkit
from conftest import line, run_python


def test_create_write_read_through_memoryview(name):
    seg = shmkit.Shm.create(name, 4096)
    assert len(seg) == seg.size == 4096 and seg.created and not seg.readonly
    view = memoryview(seg)
    assert view.nbytes == 4096 and view.format == "B" and not view.readonly
    view[10:15] = b"hello"
    assert seg.read(10, 5) == b"hello"
    other = shmkit.Shm.open(name)
    assert not other.created
    assert bytes(memoryview(other)[10:15]) == b"hello"
    other.write(100, bytearray(b"from other"))
    assert bytes(view[100:110]) == b"from other"
    view.release()
    seg.close()
    other.close()


def test_read_only_and_copy_on_write(name):
    seg = shmkit.Shm.create(name, 4096)
    seg.write(0, b"original")
    ro = shmkit.Shm.open(name, access="read")
    assert ro.readonly and memoryview(ro).readonly
    with pytest.raises(shmkit.PermissionDenied, match="read-only"):
        ro.write(0, b"x")
    with pytest.raises(TypeError):
        memoryview(ro)[0] = 1
    cow = shmkit.Shm.open(name, access="copy")
    cow.write(0, b"private!")
    assert cow.read(0, 8) == b"private!"
    assert seg.read(0, 8) == b"original"
    with pytest.raises(shmkit.InvalidArgument, match="access"):
        shmkit.Shm.open(name, access="rw")
    for s in (seg, ro, cow):
        s.close()


def test_missing_existing_and_invalid_names(name):
    with pytest.raises(shmkit.NotFound, match=name) as e:
        shmkit.Shm.open(name)
    assert isinstance(e.value, FileNotFoundError)
    seg = shmkit.Shm.create(name, 64)
    with pytest.raises(FileExistsError, match="already exists"):
        shmkit.Shm.create(name, 64)
    with pytest.raises(shmkit.InvalidArgument, match="invalid name"):
        shmkit.Shm.create("bad/name", 64)
    with pytest.raises(ValueError):
        shmkit.Shm.create("", 64)
    with pytest.raises(shmkit.InvalidArgument, match="size must be >= 0"):
        shmkit.Shm.create(name + "n", -1)
    with pytest.raises(shmkit.InvalidArgument, match="size"):
        shmkit.Shm.create(name + "z", 0)
    with pytest.raises(TypeError):
        shmkit.Shm.create(name + "t", "64")
    with pytest.raises(TypeError):
        shmkit.Shm.create(None, 64)
    seg.close()


def test_bounds_and_bad_arguments(name):
    seg = shmkit.Shm.create(name, 100)
    with pytest.raises(shmkit.OutOfBounds, match="out of bounds") as e:
        seg.read(90, 20)
    assert isinstance(e.value, IndexError)
    with pytest.raises(shmkit.OutOfBounds):
        seg.write(99, b"ab")
    with pytest.raises(shmkit.InvalidArgument, match="offset must be >= 0"):
        seg.read(-1, 1)
    with pytest.raises(shmkit.OutOfBounds):
        seg.read(2**64 - 1, 2)
    with pytest.raises(TypeError, match="bytes-like"):
        seg.write(0, "text")
    assert seg.read(100) == b""
    assert len(seg.read()) == 100
    seg.close()


def test_close_refused_while_a_view_exists(name):
    seg = shmkit.Shm.create(name, 4096)
    view = memoryview(seg)
    with pytest.raises(BufferError, match="view"):
        seg.close()
    assert not seg.closed
    view[0] = 7  # still mapped
    view.release()
    seg.close()
    assert seg.closed
    seg.close()  # twice: nothing
    with pytest.raises(shmkit.Error, match="closed"):
        seg.read(0, 1)
    with pytest.raises(shmkit.Error, match="closed"):
        memoryview(seg)
    with pytest.raises(shmkit.Error, match="closed"):
        len(seg)


def test_a_view_keeps_the_mapping_alive(name):
    seg = shmkit.Shm.create(name, 4096)
    view = memoryview(seg)
    del seg
    gc.collect()
    view[0:3] = b"abc"  # the segment object lives on inside the view
    assert bytes(view[0:3]) == b"abc"
    view.release()


def test_context_manager_closes(name):
    with shmkit.Shm.create(name, 64) as seg:
        seg.write(0, b"x")
    assert seg.closed


def test_numpy_views_without_copy(name):
    np = pytest.importorskip("numpy")
    seg = shmkit.Shm.create(name, 8 * 1000)
    arr = np.frombuffer(seg, dtype=np.float64)
    arr[:] = np.arange(1000)
    assert seg.read(8 * 999, 8) == np.float64(999).tobytes()
    with pytest.raises(BufferError):
        seg.close()
    del arr
    seg.close()


def test_create_or_open_runs_init_once(name):
    calls = []

    def init(view):
        calls.append(len(view))
        view[:4] = b"init"

    a = shmkit.Shm.create_or_open(name, 64, init)
    b = shmkit.Shm.create_or_open(name, 64, init)
    assert a.created and not b.created
    assert calls == [64]
    assert b.read(0, 4) == b"init"
    with pytest.raises(shmkit.Mismatch, match="size"):
        shmkit.Shm.create_or_open(name, 128)
    with pytest.raises(TypeError, match="callable"):
        shmkit.Shm.create_or_open(name + "c", 64, 42)
    a.close()
    b.close()


def test_init_errors_reach_the_creator(name):
    def failing(view):
        raise RuntimeError("no config file")

    with pytest.raises(RuntimeError, match="no config file"):
        shmkit.Shm.create_or_open(name, 64, failing)
    # A view kept by init points at the staging buffer, not at the segment.
    kept = []

    def keeps(view):
        view[:2] = b"ok"
        kept.append(view[0:4])

    seg = shmkit.Shm.create_or_open(name + "k", 64, keeps)
    seg.close()
    assert bytes(kept[0]) == b"ok\0\0"


def test_inspect_and_ls(name):
    seg = shmkit.Shm.create(name, 1000, persistent=True)
    info = shmkit.Shm.inspect(name)
    assert info["name"] == name and info["size"] == 1000 and info["persistent"]
    assert info["creator_pid"] == os.getpid() and info["creator_alive"]
    assert info["state"] == "ready" and info["kind"]
    assert name in shmkit.ls()
    seg.close()
    shmkit.Shm.remove(name)
    assert name not in shmkit.ls()
    with pytest.raises(shmkit.NotFound):
        shmkit.Shm.remove(name)


def test_a_segment_between_two_python_processes(name):
    seg = shmkit.Shm.create(name, 4096)
    child = run_python(
        "import shmkit, sys; s = shmkit.Shm.open(sys.argv[1]); s.write(0, b'from the child'); print(s.read(100, 6).decode())",
        name,
    )
    seg.write(100, b"parent")
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and out.strip() == "parent"
    assert seg.read(0, 14) == b"from the child"
    seg.close()


ATTACH = """
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
# Before Python 3.13 the resource tracker unlinks segments it merely attached to.
resource_tracker.unregister(shm._name, "shared_memory")
print(bytes(shm.buf[:12]).decode(), flush=True)
shm.buf[12:24] = b"python wrote"
shm.close()
"""

CREATE = """
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4096)
shm.buf[:12] = b"made by mpsm"
print("ready", flush=True)
sys.stdin.readline()
print(bytes(shm.buf[12:24]).decode(), flush=True)
shm.close()
shm.unlink()
"""


def test_raw_segments_and_multiprocessing_shared_memory(name):
    # shmkit creates, multiprocessing attaches (in another process).
    # POSIX names start with '/'; multiprocessing adds it itself.
    seg = shmkit.Shm.create_raw("/" + name, 4096)
    seg.write(0, b"made by shmk")
    out = subprocess.run([sys.executable, "-c", ATTACH, name], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "made by shmk"
    assert seg.read(12, 12) == b"python wrote"
    seg.close()
    shmkit.Shm.remove_raw("/" + name)

    # multiprocessing creates, shmkit attaches by OS name.
    other = name + "-mp"
    child = run_python(CREATE, other, stdin=subprocess.PIPE)
    assert line(child) == "ready"
    raw = shmkit.Shm.open_raw("/" + other)
    assert len(raw) >= 4096 and raw.read(0, 12) == b"made by mpsm"
    raw.write(12, b"shmkit wrote")
    raw.close()
    child.stdin.write("go\n")
    child.stdin.close()
    assert line(child) == "shmkit wrote"
    assert child.wait(timeout=30) == 0
    with pytest.raises(shmkit.NotFound):
        shmkit.Shm.open_raw("/" + other)


def test_raw_names_are_os_names(name):
    with pytest.raises(shmkit.Error):
        shmkit.Shm.open(name + "-nothing")
    raw = shmkit.Shm.create_raw("/" + name, 4096)
    with pytest.raises(shmkit.InvalidArgument, match="must start with '/'"):
        shmkit.Shm.open_raw(name)
    raw.close()
    shmkit.Shm.remove_raw("/" + name)


def test_mapped_files(tmp_path):
    path = tmp_path / "data.bin"
    f = shmkit.MappedFile.create(path, 8192)
    assert f.path == path and len(f) == 8192
    memoryview(f)[0:5] = b"file!"
    f.flush()
    f.close()
    assert path.read_bytes()[:5] == b"file!"
    ro = shmkit.MappedFile.open(path, access="read")
    assert ro.readonly and ro.read(0, 5) == b"file!"
    ro.close()
    with pytest.raises(shmkit.NotFound):
        shmkit.MappedFile.open(tmp_path / "missing.bin")
    with pytest.raises(shmkit.AlreadyExists):
        shmkit.MappedFile.create(path, 10)
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.MappedFile.open_or_create(tmp_path / "neg.bin", -5)
    g = shmkit.MappedFile.open_or_create(tmp_path / "new.bin", 100)
    assert len(g) == 100
    g.close()


OVERLAP = """
import shmkit, sys
seg = shmkit.Shm.open(sys.argv[1])
for n in (1000, 200_000):  # below and above the size copied without the GIL
    pattern = bytes(range(251)) * (n // 251 + 1)
    pattern = pattern[:n]
    seg.write(0, pattern)
    seg.write(1, memoryview(seg)[:n])  # destination after the source
    assert seg.read(0, 1) + seg.read(1, n) == pattern[:1] + pattern, n
    seg.write(0, b"x" + pattern)
    seg.write(0, memoryview(seg)[1 : n + 1])  # destination before the source
    assert seg.read(0, n) == pattern, n
print("memmove", flush=True)
"""


def test_write_from_a_view_of_the_same_segment_overlapping(name):
    # In a child: an overlapping copy through copy_nonoverlapping is undefined
    # behaviour, which a debug build catches by aborting the process.
    seg = shmkit.Shm.create(name, 1 << 20)
    child = run_python(OVERLAP, name, stderr=subprocess.PIPE)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "memmove"
    seg.close()
