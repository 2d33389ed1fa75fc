"""Target: killing one rank mid-training makes the others exit with an error instead of hanging forever.

Rank 1 kills itself (SIGKILL, as the out-of-memory killer or a node failure would) at step 3 of a DDP training
loop; the launcher (MPICH's mpiexec stops the job when a process dies) or, where the launcher does not
(``mpiexec -disable-auto-cleanup``), minidl's collective timeout (``python -m mpi4py kill.py SECONDS``) ends rank 0.
"""

from __future__ import annotations

import os
import signal
import sys

from minidl import distributed as dist
from minidl import nn, optim
from minidl.data import DataLoader
from tests.distributed.scripts.common import images, setup, small_net


def main() -> None:
    setup()
    dist.init_process_group(timeout=float(sys.argv[1]))
    ddp = dist.DistributedDataParallel(small_net(False))
    optimizer, loss_fn = optim.SGD(ddp.parameters(), lr=0.05), nn.CrossEntropyLoss()
    data = images(640, seed=1)
    for step, (x, y) in enumerate(DataLoader(data, batch_size=16, sampler=dist.DistributedSampler(data))):
        if step == 3 and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        ddp.zero_grad()
        loss_fn(ddp(x), y)
        ddp.backward(loss_fn.backward())
        optimizer.step()
    print(f"rank {dist.get_rank()} finished all steps", flush=True)


if __name__ == "__main__":
    main()
