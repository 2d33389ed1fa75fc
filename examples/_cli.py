"""What the example scripts share: the ``--help`` formatter (``from _cli import HelpFormatter``; a script's folder is
on ``sys.path`` when it runs) and the few lines that turn a training script into a data-parallel one (``--distributed``,
:mod:`minidl.distributed`): :func:`start_distributed`, :func:`data_parallel`, :func:`evaluate_distributed`.

A data-parallel run keeps the single-process run's meaning: ``--batch-size`` is the *global* batch, split evenly over
the P processes (each takes ``batch / P`` images per step from its shard of the data), so the learning rate and the
schedule stay those of one process with that batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import minidl
from minidl import train
from minidl.data import DataLoader, Subset


def schedule_shape(state: dict) -> tuple:
    """What fixes a learning-rate schedule, from its ``state_dict()``: a SequentialLR's milestones and each part's
    shape, a single scheduler's length in steps (``total_iters`` of a warm-up, ``T_max`` of a cosine)."""
    as_int = lambda v: None if v is None else int(v)  # noqa: E731 (a checkpoint's numbers may come back as arrays)
    if "_schedulers" in state:
        return [as_int(m) for m in state.get("_milestones", [])], [schedule_shape(s) for s in state["_schedulers"]]
    return as_int(state.get("total_iters")), as_int(state.get("T_max"))


def check_same_schedule(path: Path, scheduler: Any, log: Any, options: str) -> None:
    """--resume continues the run's own schedule (the checkpoint's state replaces the new one's, as in PyTorch): say
    so, through ``log``, when these options would have built another (a resumed --epochs 4 of a 2-epoch run runs its
    3rd epoch at the end of the old cosine, lr 0, then climbs the next period); ``options``: the ones that set it."""
    if not path.is_file():
        return
    saved = minidl.load(path).get("scheduler")
    if isinstance(saved, dict) and schedule_shape(saved) != schedule_shape(scheduler.state_dict()):
        log(
            f"warning: --resume: {path} follows another learning-rate schedule (milestones and lengths in steps "
            f"{schedule_shape(saved)}; these options give {schedule_shape(scheduler.state_dict())}); the run "
            f"continues on the checkpoint's schedule: resume with the run's {options}, or start a new --out for a new "
            "schedule"
        )


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
