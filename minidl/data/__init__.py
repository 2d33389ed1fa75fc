"""Data loading: datasets, batching, parallel workers, and the standard image datasets.

* :class:`Dataset`, :class:`TensorDataset`, :class:`Subset`, :class:`ConcatDataset`, :func:`random_split`
* :class:`DataLoader` (shuffling, batching, ``num_workers`` processes or threads) and :func:`default_collate`
* :func:`get_worker_info` / :func:`worker_generator`: inside a loader, which worker runs and which random generator
  augmentation must use (``minidl.default_generator()`` returns the same one, so transforms need nothing special)
* :mod:`minidl.data.datasets`: ``CIFAR10``, ``CIFAR100``, ``MNIST``, ``FashionMNIST``, ``ImageFolder``,
  ``DogsVsCats``, and ``CIFAR10Sample``, the 2,000 + 500 real CIFAR-10 images embedded in minidl (no download)
* :mod:`minidl.data.download`: checksum-verified downloads; :mod:`minidl.data.extract`: safe archive extraction

Examples:
    >>> import numpy as np
    >>> from minidl.data import DataLoader, TensorDataset
    >>> ds = TensorDataset(np.random.default_rng(0).random((10, 3), dtype=np.float32), np.arange(10) % 2)
    >>> [(x.shape, y.dtype) for x, y in DataLoader(ds, batch_size=4, drop_last=True)]
    [((4, 3), dtype('int64')), ((4, 3), dtype('int64'))]
"""

from minidl.data import datasets, download
from minidl.data._worker import WorkerInfo, get_worker_info, worker_generator
from minidl.data.collate import default_collate
from minidl.data.dataloader import DEFAULT_WORKER_TYPE, DataLoader
from minidl.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split

__all__ = [
    "DEFAULT_WORKER_TYPE",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "Subset",
    "TensorDataset",
    "WorkerInfo",
    "datasets",
    "default_collate",
    "download",
    "get_worker_info",
    "random_split",
    "worker_generator",
]
