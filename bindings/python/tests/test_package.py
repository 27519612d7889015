"""The package itself: no build output in git, the exception classes match every
error kind of the core and the C ABI."""

import pathlib
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
