"""The package itself: no build output in git, the exception classes match every
error kind of the core and the C ABI."""

import pathlib
import re
import shutil
import subprocess

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1]


def test_no_built_module_is_committed():
    # The native module is built by scripts/test-python (maturin develop); a
    # committed copy goes stale and hides a broken build from a fresh clone.
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    out = subprocess.run(
        ["git", "ls-files", "--", "*.so", "*.pyd", "*.dylib"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    assert out.stdout.split() == []
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "python/shmkit/_shmkit.cpython-311-x86_64-linux-gnu.so"],
        cwd=PACKAGE,
    )
    assert ignored.returncode == 0, "built modules under python/shmkit are not ignored"


REPO = PACKAGE.parents[1]

# The Python exception for each status of the C ABI (crates/shmkit-ffi/include/
# shmkit.h), which names every error kind of the core. None: the status cannot
# arise in Python, for the reason given.
STATUS_CLASS = {
    "INVALID_ARGUMENT": "InvalidArgument",
    "NULL_POINTER": None,  # no pointers in Python
    "BAD_HANDLE": None,  # a closed object raises Closed; a handle cannot be forged
    "INVALID_UTF8": None,  # str is always valid text
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "OUT_OF_SPACE": "OutOfSpace",
    "OUT_OF_BOUNDS": "OutOfBounds",
    "MISMATCH": "Mismatch",
    "CORRUPT": "Corrupt",
    "TRUNCATED": "Truncated",
    "INIT_FAILED": "InitFailed",
    "TIMEOUT": "Timeout",
    "WOULD_BLOCK": "WouldBlock",
    "DISCONNECTED": "Disconnected",
    "LAGGED": "Lagged",
    "OWNER_DIED": "OwnerDied",
    "OCCUPIED": "Occupied",
    "TOO_LONG": "TooLong",
    "BUFFER_TOO_SMALL": "BufferTooSmall",
    "ABOVE_MAXIMUM": "AboveMaximum",
    "UNSUPPORTED": "Unsupported",
    "CALLBACK": None,  # an exception from a Python callback (init) propagates as itself
    "INTERNAL": None,  # a Rust panic surfaces as pyo3's PanicException
    "OS": "Error",  # any other OS error: the base class, with the OS's message
    "CLOSED": "Closed",
    "BUSY": "Busy",
    "LOST": "Lost",
}


def _statuses():
    header = (REPO / "crates" / "shmkit-ffi" / "include" / "shmkit.h").read_text()
    return set(re.findall(r"^\s*SHMKIT_ERR_([A-Z0-9_]+)\s*=", header, re.M))


def _error_variants():
    source = (REPO / "crates" / "shmkit" / "src" / "error.rs").read_text()
    body = re.search(r"^pub enum Error \{\n(.*?)^\}", source, re.M | re.S)
    assert body, "pub enum Error not found in crates/shmkit/src/error.rs"
    return set(re.findall(r"^    ([A-Z]\w*)\b", body.group(1), re.M))


def test_every_status_of_the_c_abi_has_a_python_exception():
    import shmkit

    statuses = _statuses()
    assert len(statuses) >= 26
    unknown = statuses - STATUS_CLASS.keys()
    assert not unknown, f"statuses with no Python mapping decided: {sorted(unknown)}"
    for status, cls in STATUS_CLASS.items():
        if cls is None:
            continue
        assert cls in shmkit.__all__, (status, cls)
        assert issubclass(getattr(shmkit, cls), shmkit.Error), (status, cls)
    assert issubclass(shmkit.Closed, shmkit.Error)
    assert issubclass(shmkit.Busy, shmkit.Error) and issubclass(shmkit.Busy, RuntimeError)


def test_every_error_of_the_core_is_mapped_by_the_binding():
    import shmkit

    variants = _error_variants()
    assert {"NotFound", "Timeout", "Interrupted", "Io"} <= variants
    mapping = (PACKAGE / "src" / "errors.rs").read_text()
    missing = {v for v in variants if not re.search(rf"\bError::{v}\b", mapping)}
    assert not missing, f"src/errors.rs does not map: {sorted(missing)}"
    # Every class the binding raises exists in shmkit._errors.
    classes = set(re.findall(r'=> "(\w+)"', mapping))
    assert classes, "no mapping found in src/errors.rs"
    for cls in classes:
        assert issubclass(getattr(shmkit, cls), shmkit.Error), cls
