"""Rank-0-only checkpointing and logging: every rank runs the same script, only one should write and print."""

from __future__ import annotations

import os
from typing import Any

from minidl.distributed._comm import barrier, is_initialized, is_main_process

__all__ = ["print_on_main", "save_on_main"]


def save_on_main(obj: Any, path: str | os.PathLike[str]) -> None:
    """:func:`minidl.save` ``obj`` to ``path`` on rank 0 only, then wait until it is written (a barrier), so that any
    rank may read the file afterwards. Outside a process group it is plain :func:`minidl.save`.

    Args:
        obj: what :func:`minidl.save` takes (a state dict, a checkpoint). With DDP, save
            ``ddp.module.state_dict()`` to get keys that load into the plain model.
        path: the file (``.npz`` or ``.safetensors``), written atomically.
    """
    from minidl.serialization import save

    if is_main_process():
        save(obj, path)
    if is_initialized():
        barrier()


def print_on_main(*args: Any, **kwargs: Any) -> None:
    """``print(*args, **kwargs)`` on rank 0 only (and outside a process group), flushed at once."""
    if is_main_process():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)
