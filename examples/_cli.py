"""What the example scripts share: the ``--help`` formatter (``from _cli import HelpFormatter``; a script's folder is
on ``sys.path`` when it runs) and the few lines that turn a training script into a data-parallel one (``--distributed``,
:mod:`minidl.distributed`): :func:`start_distributed`, :func:`data_parallel`, :func:`evaluate_distributed`.

A data-parallel run keeps the single-process run's meaning: ``--batch-size`` is the *global* batch, split evenly over
the P processes (each takes ``batch / P`` images per step from its shard of the data), so the learning rate and the
schedule stay those of one process with that batch.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

import numpy as np

from minidl import train
from minidl.data import DataLoader, Subset


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (an epoch count, a batch size, a limit), refused with argparse's message
    otherwise (0 epochs, a negative limit: silent surprises further on)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an int >= 0 (worker processes)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {value}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the description's line breaks and shows each option's default (none for flags and options
    whose help says what happens without them)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--distributed`` and ``--sync-bn`` / ``--no-sync-bn``."""
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training on the processes of mpiexec (mpiexec -n 2 python <script> --distributed; "
        "without mpiexec: a group of one). --batch-size is then the global batch, split over the processes",
    )
    parser.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --distributed: BatchNorm statistics over the global batch (SyncBatchNorm); --no-sync-bn keeps "
        "each process's own statistics (default: on)",
    )


def start_distributed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ModuleType:
    """Join the process group and check the global batch; returns :mod:`minidl.distributed`.

    Exits with the parser's error (on rank 0; the other ranks exit quietly with the same status) when mpi4py is
    missing or when ``args.batch_size`` is not divisible by the world size.
    """
    try:
        from minidl import distributed as dist
    except ImportError as err:
        parser.error(f"--distributed: {err}")
    dist.init_process_group()
    world_size = dist.get_world_size()
    if args.batch_size % world_size:
        if dist.is_main_process():
            parser.error(
                f"--batch-size {args.batch_size} is the global batch and must be divisible by the {world_size} "
                f"processes (each takes batch-size / {world_size} images per step); "
                f"try --batch-size {world_size * max(1, args.batch_size // world_size)}"
            )
        raise SystemExit(2)
    return dist


def data_parallel(dist: ModuleType, model: Any, dataset: Any, args: argparse.Namespace) -> tuple[Any, DataLoader]:
    """The model wrapped in ``DistributedDataParallel`` (BatchNorm converted to SyncBatchNorm unless
    ``--no-sync-bn``) and the training loader of this rank's shard, with the per-process batch.

    The shard is reshuffled every epoch (``fit`` calls the sampler's ``set_epoch``); the augmentation of rank r is
    seeded with ``args.seed + r``, so the ranks do not crop and flip in lockstep.
    """
    if args.sync_bn is not False:
        model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model)
    sampler = dist.DistributedSampler(dataset, seed=args.seed)
    loader = DataLoader(
        dataset,
        args.batch_size // dist.get_world_size(),
        sampler=sampler,
        drop_last=True,
        num_workers=args.workers,
        seed=args.seed + dist.get_rank(),
        device="current",
    )
    return ddp, loader


def evaluate_distributed(dist: ModuleType, model: Any, dataset: Any, loss_fn: Any, workers: int) -> dict[str, float]:
    """Loss and accuracy over the whole ``dataset``, each rank evaluating every P-th image (no padding, so no image
    counts twice), then one allreduce of the sums. Every rank gets the result."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    sums = np.zeros(3)  # sum of the losses, number right, number of images
    if len(shard):
        mine = train.evaluate(model, DataLoader(shard, 500, num_workers=workers, device="current"), loss_fn)
        sums[:] = mine["loss"] * len(shard), mine["accuracy"] * len(shard), len(shard)
    dist.all_reduce(sums)
    return {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]}
