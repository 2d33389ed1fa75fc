"""The CuPy paths of minidl.distributed under mpiexec: NCCL and MPI through the host. Marked ``gpu``: skipped unless
CuPy sees a GPU. Unverified: no GPU was available when they were written (the host path is also tested on the CPU
stand-in for CuPy, in test_comm.py)."""

from __future__ import annotations

import pytest

from tests.distributed.mpirun import results, run_mpi


def _gpu() -> bool:
    try:
        import cupy

        return bool(cupy.is_available())
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu(), reason="needs CuPy and a CUDA GPU (cupy.is_available() is False)")
@pytest.mark.parametrize("backend", ["nccl", "mpi"])
def test_collectives_and_a_ddp_step_on_cupy_arrays(backend):
    import cupy

    ranks = 2 if backend == "mpi" else min(2, cupy.cuda.runtime.getDeviceCount())  # NCCL: one GPU per rank
    for r in results(run_mpi("gpu.py", ranks, backend)):
        assert r["sum"] == r["expected_sum"] and r["broadcast"] == [0, 0, 0]
        assert r["gradient_spread"] == 0.0
