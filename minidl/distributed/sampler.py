"""``DistributedSampler``: each rank's share of the dataset's indices for one epoch, as PyTorch's.

All ranks draw the *same* permutation of 0 .. N-1 (the same seed and epoch), pad it to a multiple of the world size
P by repeating its first indices (or drop the tail with ``drop_last``), and rank r takes every P-th index starting at
r. The shards are disjoint (but for the padding), equal in length, and together they are the epoch's permutation, so
P ranks with batch B see the same samples per step as one process with batch P * B, in the order of::

    indices = permutation(N)            # same on every rank: SeedSequence(seed, spawn_key=(epoch,))
    indices += indices[:padding]        # total_size = P * ceil(N / P)  (drop_last: P * floor(N / P), cut instead)
    shard = indices[rank::P]            # num_samples = total_size / P indices for this rank

Call :meth:`set_epoch` at the start of every epoch, or every epoch repeats the first one's order. The padding and
striding are PyTorch's (a test compares the indices with ``torch.utils.data.DistributedSampler``); the permutation
is NumPy's, so shuffled orders differ from PyTorch's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["DistributedSampler"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"DistributedSampler: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class DistributedSampler:
    """The indices of this rank's shard of ``dataset``, reshuffled each epoch (PyTorch's ``DistributedSampler``).

    Give it to a :class:`~minidl.data.DataLoader` as ``sampler=`` (with the per-rank batch size) and call
    :meth:`set_epoch` before each epoch (:class:`~minidl.train.Trainer` does it for you).

    Args:
        dataset: anything with ``len()``.
        num_replicas: P, the number of ranks. Default: None (the process group's world size).
        rank: this rank, 0 .. P-1. Default: None (the process group's rank).
        shuffle: a new permutation each epoch; False keeps 0 .. N-1. Default: True.
        seed: the permutation's seed; must be the same on every rank. Default: 0.
        drop_last: drop the tail so that the shards divide evenly, instead of padding with repeated indices.
            Default: False.

    Attributes:
        num_samples: this rank's number of indices per epoch. total_size: P * num_samples. epoch: see
            :meth:`set_epoch`.

    Examples:
        >>> sampler = DistributedSampler(range(10), num_replicas=4, rank=1, shuffle=False)
        >>> list(sampler), len(sampler)  # 10 indices padded to 12 with 0, 1: rank 1 takes 1, 5, 9
        ([1, 5, 9], 3)
        >>> list(DistributedSampler(range(10), num_replicas=4, rank=1, shuffle=False, drop_last=True))
        [1, 5]
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not hasattr(dataset, "__len__"):
            raise TypeError(f"DistributedSampler: dataset must have a length, got {type(dataset).__name__}")
        if num_replicas is None or rank is None:
            from minidl.distributed import _comm

            group = _comm._require("DistributedSampler (num_replicas=None or rank=None)")
            num_replicas = group.size if num_replicas is None else num_replicas
            rank = group.rank if rank is None else rank
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"DistributedSampler: rank must be in 0..{self.num_replicas - 1} (num_replicas "
                f"{self.num_replicas}), got {self.rank}"
            )
        if not isinstance(shuffle, bool) or not isinstance(drop_last, bool):
            raise TypeError(f"DistributedSampler: shuffle and drop_last must be bools, got {shuffle!r}, {drop_last!r}")
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = _check_int("seed", seed, 0)
        self.drop_last = drop_last
        self.epoch = 0
        N, P = len(dataset), self.num_replicas
        if drop_last and N % P != 0:
            self.num_samples = math.ceil((N - P) / P)  # = N // P: the tail is dropped
        else:
            self.num_samples = math.ceil(N / P)
        self.total_size = self.num_samples * P

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation from now on (call it with the same value on every rank)."""
        self.epoch = _check_int("epoch", epoch, 0)

    def __iter__(self) -> Iterator[int]:
        N = len(self.dataset)
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(self.epoch,))))
            indices = rng.permutation(N).tolist()
        else:
            indices = list(range(N))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:  # fewer samples than ranks: repeat the whole list
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[: self.total_size]
        assert len(indices) == self.total_size
        shard = indices[self.rank : self.total_size : self.num_replicas]
        assert len(shard) == self.num_samples
        return iter(shard)

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last})"
        )
