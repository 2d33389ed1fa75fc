"""Target: the teaching ring allreduce equals ``MPI.Allreduce`` for any number of ranks, odd sizes, several dtypes.

Run on K ranks, it checks every group size P = 1 .. K (the first P ranks, split off ``MPI.COMM_WORLD``): each rank
fills arrays of n = 0, 1, 7, 1001 elements (and a 3 x 5 one) with rank-dependent values, reduces one copy with
:func:`ring_all_reduce` and one with ``MPI.Allreduce``, and reports the largest difference and the largest value per
case.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from minidl import distributed as dist
from tests.distributed.scripts.common import report


def compare(comm: MPI.Comm, rng: np.random.Generator) -> dict[str, list[float]]:
    cases = {}
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        for shape in ((0,), (1,), (7,), (1001,), (3, 5)):
            if np.dtype(dtype).kind == "f":
                values = rng.standard_normal(shape).astype(dtype)
            else:
                values = rng.integers(-1000, 1000, shape).astype(dtype)
            ring, expected = values.copy(), values.copy()
            assert dist.ring_all_reduce(ring, comm) is ring
            comm.Allreduce(MPI.IN_PLACE, expected, op=MPI.SUM)
            worst = float(np.max(np.abs(ring.astype(np.float64) - expected))) if ring.size else 0.0
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            cases[f"{np.dtype(dtype).name}{shape}"] = [worst, scale]
    return cases


def main() -> None:
    dist.init_process_group(timeout=60)
    world, rank = MPI.COMM_WORLD, dist.get_rank()
    rng = np.random.default_rng(100 + rank)
    by_size = {}
    for P in range(1, world.Get_size() + 1):
        comm = world.Split(0 if rank < P else MPI.UNDEFINED, rank)  # the first P ranks
        if comm != MPI.COMM_NULL:
            by_size[P] = compare(comm, rng)
            comm.Free()
    report(rank=rank, world_size=dist.get_world_size(), by_size=by_size)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
