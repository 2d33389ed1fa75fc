"""Tests of minidl.distributed. The scripts the mpiexec tests launch are not test modules. Without the 'dist' extra
(mpi4py) the in-process test files, which import minidl.distributed, are not collected, and the mpiexec tests skip.
"""

from __future__ import annotations

import pytest

collect_ignore_glob = ["scripts/*"]
try:
    import mpi4py  # noqa: F401  (the package only: importing it starts no MPI)
except ImportError:
    collect_ignore_glob += ["test_comm.py", "test_ddp.py", "test_sampler.py", "test_sync_batchnorm.py"]


@pytest.fixture
def group():
    """``init_process_group()`` for the test (alone: world size 1), destroyed afterwards."""
    from minidl import distributed as dist

    dist.init_process_group(timeout=30)
    yield dist
    dist.destroy_process_group()
