"""Shared test set-up for ``tests/`` and the doctests in ``minidl/``: hypothesis profiles, the backend under test.

It sits at the repository root so that the doctests run on the backend under test too, not only ``tests/``.

* ``HYPOTHESIS_PROFILE=ci|dev`` (``ci`` by default when ``CI`` is set): bounded examples, no deadline.
* ``MINIDL_TEST_BACKEND=numba`` (or ``cupy``) reruns the whole suite on another backend; no test is copied.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import minidl
from tests.helpers import TEST_BACKEND

# minidl.distributed needs the 'dist' extra (mpi4py): without it, its modules (and their doctests) are not collected
# (tests/distributed skips itself)
try:
    import mpi4py  # noqa: F401  (the package only: MPI itself is not started by importing it)

    collect_ignore_glob: list[str] = []
except ImportError:
    collect_ignore_glob = ["minidl/distributed/*"]

# the Numba backend's convolutions run by their rules in the tests (the same bits every run), whatever the shell says:
# a backend created before a test's fixtures (a module-scoped one) reads MINIDL_AUTOTUNE when it is created
os.environ.pop("MINIDL_AUTOTUNE", None)

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _backend_and_seed(monkeypatch):
    """Every test starts on the backend under test, float32 default dtype, and a fixed seed; the Numba backend's
    convolutions by their rules (its autotuner off, as ``MINIDL_AUTOTUNE`` is dropped above: the tests that want it
    turn it on)."""
    numba_backend = minidl.backend._INSTANCES.get("numba")
    if numba_backend is not None:
        monkeypatch.setattr(numba_backend, "_autotune", False)
    with minidl.use_backend(TEST_BACKEND):
        minidl.set_default_dtype("float32")
        minidl.manual_seed(0)
        yield
