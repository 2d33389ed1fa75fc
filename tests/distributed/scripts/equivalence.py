"""Target: 20 SGD steps on P ranks x batch 128/P give the parameters of 1 process x batch 128 on the same data order.

``python -m mpi4py equivalence.py plain bn bn-unsynced`` (any of them): for each, every rank also trains the
single-process reference itself (batch 128, plain model, BatchNorm2d), then reports the largest differences of its
DDP model (SyncBatchNorm for ``bn``; plain BatchNorm2d, each rank normalizing with its own half-batch, for the control
``bn-unsynced``) from it, over every parameter and buffer, and its first and last loss.
"""

from __future__ import annotations

import copy
import sys

import numpy as np

import minidl
from minidl import distributed as dist
from minidl import nn, optim, to_numpy
from minidl.data import DataLoader
from tests.distributed.scripts.common import images, report, setup, small_net

STEPS, GLOBAL_BATCH, SEED = 20, 128, 3


def train(model, loader):
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn, losses = nn.CrossEntropyLoss(), []
    model.train()
    for x, y in loader:
        model.zero_grad()
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward())
        optimizer.step()
    assert len(losses) == STEPS, len(losses)
    return losses


def compare(variant: str, data) -> dict:
    """Train the reference and the DDP model of ``variant``; their largest differences and their losses."""
    batchnorm, sync = variant.startswith("bn"), variant == "bn"
    P = dist.get_world_size()
    minidl.manual_seed(0)
    initial = small_net(batchnorm)

    reference = copy.deepcopy(initial)  # 1 process, batch 128, the permutation a 1-replica sampler gives
    sampler = dist.DistributedSampler(data, num_replicas=1, rank=0, seed=SEED)
    reference_losses = train(reference, DataLoader(data, batch_size=GLOBAL_BATCH, sampler=sampler))

    model = copy.deepcopy(initial)
    if sync:
        model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.001)  # 1 kB: several buckets, to exercise overlap
    loader = DataLoader(data, batch_size=GLOBAL_BATCH // P, sampler=dist.DistributedSampler(data, seed=SEED))
    losses = train(ddp, loader)

    expected, got = reference.state_dict(), ddp.module.state_dict()
    assert list(expected) == list(got)
    worst_abs, worst_rel, worst_key = 0.0, 0.0, ""
    for key in expected:
        a, b = to_numpy(expected[key]).astype(np.float64), to_numpy(got[key]).astype(np.float64)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        rel = diff / max(float(np.max(np.abs(a))), 1e-12) if a.size else 0.0
        if diff > worst_abs:
            worst_abs, worst_key = diff, key
        worst_rel = max(worst_rel, rel)
    return dict(
        max_abs=worst_abs, max_rel=worst_rel, worst_key=worst_key, keys=len(expected),
        buckets=len(ddp.buckets), overlapped=ddp.overlapped_buckets, loss_first=losses[0], loss_last=losses[-1],
        reference_loss_first=reference_losses[0], reference_loss_last=reference_losses[-1],
    )  # fmt: skip


def main() -> None:
    setup()
    dist.init_process_group(timeout=60)
    data = images(STEPS * GLOBAL_BATCH, seed=1)
    variants = {variant: compare(variant, data) for variant in sys.argv[1:]}
    report(rank=dist.get_rank(), world_size=dist.get_world_size(), **variants)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
