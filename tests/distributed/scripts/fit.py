"""``minidl.train.fit`` with a DistributedDataParallel model: it trains, only rank 0 prints and writes files, and the
ranks end with the same parameters.

``python -m mpi4py fit.py OUT_DIR sync|fused``: ``sync`` converts the BatchNorms to SyncBatchNorm; ``fused`` keeps
BatchNorm2d and lets fit fuse the model (``fuse=True``) through the wrapper.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from minidl import distributed as dist
from minidl import nn, optim, to_numpy
from minidl.data import DataLoader
from minidl.train import fit
from tests.distributed.scripts.common import images, report, setup, small_net


def spread(arrays: list) -> float:
    """The largest difference between the ranks (max - min over the ranks) of any value of ``arrays``."""
    values = np.concatenate([to_numpy(a).astype(np.float64).ravel() for a in arrays])
    high, low = values.copy(), values.copy()
    dist.all_reduce(high, op="max")
    dist.all_reduce(low, op="min")
    return float(np.max(high - low))


def main() -> None:
    setup()
    out, variant = Path(sys.argv[1]), sys.argv[2]
    dist.init_process_group(timeout=60)
    model = small_net(True)
    if variant == "sync":
        model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model)
    train, val = images(256, seed=1), images(64, seed=2)
    train_loader = DataLoader(train, batch_size=32, sampler=dist.DistributedSampler(train, seed=5))
    val_loader = DataLoader(val, batch_size=32, sampler=dist.DistributedSampler(val, shuffle=False))
    log = io.StringIO()
    history = fit(
        ddp, train_loader, val_loader, nn.CrossEntropyLoss(), optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9),
        epochs=2, checkpoint_dir=out / "checkpoints", history_path=out / "history.json", log_file=log,
        progress="always", fuse=variant == "fused",
    )  # fmt: skip
    dist.barrier()
    report(
        rank=dist.get_rank(), printed=len(log.getvalue()), epochs=len(history["train_loss"]),
        train_loss=history["train_loss"], sampler_epoch=train_loader.sampler.epoch,
        parameter_spread=spread([p.data for p in ddp.parameters()]), buffer_spread=spread(list(ddp.buffers())),
        files=sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
        model=repr(ddp.module).splitlines()[2].strip(),
    )  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
