"""On GPUs (unverified: no GPU was available when this was written): the NCCL and the host paths of the collectives
for CuPy arrays, and a DistributedDataParallel step on the CuPy backend.

``python -m mpi4py gpu.py nccl|mpi``: each rank reduces a CuPy array holding its rank + 1 and broadcasts one from
rank 0, then takes one DDP step of a small model and reports the largest gradient difference between the ranks.
"""

from __future__ import annotations

import sys

import numpy as np

import minidl
from minidl import distributed as dist
from minidl import nn
from tests.distributed.scripts.common import report


def main() -> None:
    import cupy

    dist.init_process_group(backend=sys.argv[1], timeout=60)
    P, rank = dist.get_world_size(), dist.get_rank()
    a = cupy.full(5, rank + 1, dtype=cupy.float32)
    dist.all_reduce(a)
    b = cupy.full(3, rank, dtype=cupy.int64)
    dist.broadcast(b, src=0)
    minidl.set_backend("cupy")
    minidl.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    ddp = dist.DistributedDataParallel(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    x = cupy.asarray(np.random.default_rng(rank).standard_normal((6, 4)).astype(np.float32))
    ddp(x)
    ddp.backward(cupy.ones((6, 2), dtype=cupy.float32))
    grads = cupy.concatenate([p.grad.ravel() for p in ddp.parameters()])
    high, low = grads.copy(), grads.copy()
    dist.all_reduce(high, op="max")
    dist.all_reduce(low, op="min")
    report(
        rank=rank, sum=float(a[0]), expected_sum=P * (P + 1) / 2, broadcast=cupy.asnumpy(b).tolist(),
        gradient_spread=float((high - low).max()),
    )  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
