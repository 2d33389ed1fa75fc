"""Data-parallel training on MPI: ``mpiexec -n 4 python train.py`` trains one model on 4 processes.

The names are PyTorch's (``torch.distributed`` and ``torch.nn.parallel``):

* the process group and its collectives (:mod:`~minidl.distributed._comm`): :func:`init_process_group`,
  :func:`get_rank`, :func:`get_world_size`, :func:`barrier`, :func:`all_reduce`, :func:`broadcast`,
  :func:`destroy_process_group`; every wait gives up with a clear ``RuntimeError`` after the group's timeout;
* :class:`DistributedDataParallel`: same initial state everywhere, gradients averaged in buckets while the backward
  runs (:mod:`~minidl.distributed.ddp` explains the bucketing and the overlap);
* :class:`DistributedSampler`: each rank's shard of the indices, reshuffled per epoch;
* :class:`SyncBatchNorm`: BatchNorm over the global batch (its derivation is in
  :mod:`~minidl.distributed.sync_batchnorm`);
* :func:`is_main_process`, :func:`save_on_main`, :func:`print_on_main`: checkpoints and logs from rank 0 only;
* :func:`ring_all_reduce` (:mod:`~minidl.distributed.ring`): the ring allreduce written out on point-to-point
  messages, as teaching material, with its cost 2 (P-1)/P n per rank.

It needs mpi4py and an MPI library: ``pip install "minidl[dist]"`` (the MPICH wheel provides ``mpiexec``).
``import minidl`` does not import it. A script that calls :func:`init_process_group` also runs without
``mpiexec``, as a group of one.

Examples:
    >>> import numpy as np
    >>> from minidl import nn, distributed as dist
    >>> dist.init_process_group()
    >>> dist.get_rank(), dist.get_world_size(), dist.is_main_process()
    (0, 1, True)
    >>> dist.all_reduce(np.array([1.0, 2.0]))  # alone, the sum over the ranks is the array itself
    array([1., 2.])
    >>> dist.destroy_process_group()
"""

from minidl.distributed._comm import *  # noqa: F403  (the process group and its collectives)
from minidl.distributed._comm import __all__ as _comm_all
from minidl.distributed._main import print_on_main, save_on_main
from minidl.distributed.ddp import DistributedDataParallel
from minidl.distributed.ring import ring_all_reduce
from minidl.distributed.sampler import DistributedSampler
from minidl.distributed.sync_batchnorm import SyncBatchNorm, sync_batch_norm_backward, sync_batch_norm_forward

__all__ = [
    "DistributedDataParallel",
    "DistributedSampler",
    "SyncBatchNorm",
    "print_on_main",
    "ring_all_reduce",
    "save_on_main",
    "sync_batch_norm_backward",
    "sync_batch_norm_forward",
    *_comm_all,
]
