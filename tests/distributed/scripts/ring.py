"""Target: the teaching ring allreduce equals ``MPI.Allreduce`` for any number of ranks, odd sizes, several dtypes.

Each rank fills arrays of n = 0, 1, 7, 1001 elements (and a 2-D one) with rank-dependent values, reduces a copy with
:func:`ring_all_reduce` and a copy with ``MPI.Allreduce``, and reports the largest difference per case.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from minidl import distributed as dist
from tests.distributed.scripts.common import report


def main() -> None:
    dist.init_process_group(timeout=60)
    rank = dist.get_rank()
    rng = np.random.default_rng(100 + rank)
    cases = {}
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        for shape in ((0,), (1,), (7,), (1001,), (3, 5)):
            if np.dtype(dtype).kind == "f":
                values = rng.standard_normal(shape).astype(dtype)
            else:
                values = rng.integers(-1000, 1000, shape).astype(dtype)
            ring, expected = values.copy(), values.copy()
            out = dist.ring_all_reduce(ring)
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, expected, op=MPI.SUM)
            assert out is ring
            worst = float(np.max(np.abs(ring.astype(np.float64) - expected))) if ring.size else 0.0
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            cases[f"{np.dtype(dtype).name}{shape}"] = [worst, scale]
    report(rank=rank, world_size=dist.get_world_size(), cases=cases)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
