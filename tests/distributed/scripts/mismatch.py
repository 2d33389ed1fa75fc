"""Target: ranks that pass arrays of different shapes or dtypes, or build different models, get a clear error on
every rank (MPI would reduce the overlap of the two shapes silently, or fail deep inside).

``python -m mpi4py mismatch.py``: each case runs on both ranks; each rank reports the message it got, then a
matching collective shows that the group still works.
"""

from __future__ import annotations

import numpy as np

from minidl import distributed as dist
from minidl import nn
from tests.distributed.scripts.common import report, setup


def main() -> None:
    setup()
    dist.init_process_group(timeout=30)
    rank = dist.get_rank()
    cases = {
        "all_reduce shape": lambda: dist.all_reduce(np.ones(3 + rank, np.float32)),
        "all_reduce dtype": lambda: dist.all_reduce(np.ones(3, np.float32 if rank == 0 else np.float64)),
        "broadcast shape": lambda: dist.broadcast(np.ones(2 + rank, np.float32), src=0),
        "ddp models": lambda: dist.DistributedDataParallel(nn.Linear(3, 2 + rank)),
    }
    messages = {}
    for name, call in cases.items():
        try:
            call()
            messages[name] = None
        except RuntimeError as err:
            messages[name] = str(err)
    after = dist.all_reduce(np.ones(2, np.float32))
    report(rank=rank, messages=messages, after=after.tolist())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
