"""Target: a rank that never joins a collective makes the others fail with a clear error instead of hanging.

``python -m mpi4py timeout.py all_reduce|broadcast|barrier|ddp SECONDS``: rank 1 skips the collective (it waits a
little and leaves); rank 0 must raise the timeout ``RuntimeError`` of :mod:`minidl.distributed` after SECONDS.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from minidl import distributed as dist
from minidl import nn
from tests.distributed.scripts.common import setup


def main() -> None:
    setup()
    what, seconds = sys.argv[1], float(sys.argv[2])
    dist.init_process_group(timeout=seconds)
    if what == "ddp":
        model = dist.DistributedDataParallel(nn.Linear(4, 2))  # construction broadcasts: both ranks join
    if dist.get_rank() == 1:
        time.sleep(seconds + 2)  # longer than rank 0's timeout: rank 0 must give up on its own
        return
    print(f"rank 0 enters {what}", flush=True)
    if what == "all_reduce":
        dist.all_reduce(np.ones(3, np.float32))
    elif what == "broadcast":
        dist.broadcast(np.ones(3, np.float32), src=1)
    elif what == "barrier":
        dist.barrier()
    else:
        model(np.ones((2, 4), np.float32))
        model.backward(np.ones((2, 2), np.float32))
    print("rank 0 was not stopped", flush=True)


if __name__ == "__main__":
    main()
