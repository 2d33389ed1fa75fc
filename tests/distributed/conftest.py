"""In-process tests of minidl.distributed: a process group of one (rank 0 of 1), skipped without the 'dist' extra."""

from __future__ import annotations

import pytest

pytest.importorskip("mpi4py", reason='minidl.distributed needs the dist extra: pip install "minidl[dist]"')


@pytest.fixture
def group():
    """``init_process_group()`` for the test (alone: world size 1), destroyed afterwards."""
    from minidl import distributed as dist

    dist.init_process_group(timeout=30)
    yield dist
    dist.destroy_process_group()
