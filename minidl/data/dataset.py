"""Datasets: indexable collections of samples, and the ways to combine and split them.

A *map-style* dataset is anything with ``__getitem__(i)`` for ``0 <= i < len(dataset)`` (PyTorch's contract). A sample
is usually a tuple ``(image, label)``; :class:`~minidl.data.DataLoader` fetches ``batch_size`` of them and
:func:`~minidl.data.default_collate` stacks them into batched arrays.

* :class:`TensorDataset` wraps arrays that share their first dimension N: sample ``i`` is ``(a[i], b[i], ...)``.
* :class:`Subset` views a dataset through a list of indices; :class:`ConcatDataset` chains datasets end to end.
* :func:`random_split` cuts a dataset into disjoint random subsets of given lengths (or fractions), reproducibly.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from minidl._random import default_generator

__all__ = ["ConcatDataset", "Dataset", "Subset", "TensorDataset", "random_split"]


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__(index)`` and ``__len__()``.

    ``a + b`` concatenates two datasets (a :class:`ConcatDataset`), as in PyTorch.

    Examples:
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 4
        ...     def __getitem__(self, i):
        ...         return i * i
        >>> [Squares()[i] for i in range(4)], len(Squares() + Squares())
        ([0, 1, 4, 9], 8)
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


def _is_index(i: Any) -> bool:
    """An int index (a Python or NumPy integer, not a bool; a float such as 1.7 is not one: int() would truncate it)."""
    return isinstance(i, numbers.Integral) and not isinstance(i, bool)


def _check_index(where: str, index: Any, length: int) -> int:
    """``index`` as a non-negative int in [0, length) (negative indices count from the end, like a list)."""
    if not _is_index(index):
        raise TypeError(f"{where}: index must be an int, got {index!r} ({type(index).__name__})")
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{where}: index {index} is out of range for a dataset of length {length}")
    return index


class TensorDataset(Dataset):
    """Sample ``i`` is the tuple ``(arrays[0][i], arrays[1][i], ...)``.

    Args:
        *arrays: arrays (NumPy or of any backend) with the same first dimension N.

    Shape:
        - Each array: (N, ...); sample ``i`` holds one row of each.

    Examples:
        >>> ds = TensorDataset(np.zeros((5, 3)), np.arange(5))
        >>> len(ds), ds[2][0].shape, int(ds[2][1])
        (5, (3,), 2)
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array, got none")
        for k, a in enumerate(arrays):
            if not hasattr(a, "shape"):
                hint = " (convert it with np.asarray)" if isinstance(a, (list, tuple)) else ""
                raise TypeError(
                    f"TensorDataset: argument {k} must be an array (NumPy or of a backend) with a first (sample) "
                    f"dimension, got a {type(a).__name__}{hint}"
                )
            if len(a.shape) == 0:
                raise TypeError(
                    f"TensorDataset: argument {k} must be an array with a first (sample) dimension, got a 0-d "
                    f"{type(a).__name__} (shape ())"
                )
        n = arrays[0].shape[0]
        for k, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: every array must have the same first dimension; array 0 has {n} rows, "
                    f"array {k} has shape {tuple(a.shape)}"
                )
        self.tensors = tuple(arrays)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        index = _check_index("TensorDataset", index, len(self))
        return tuple(a[index] for a in self.tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order.

    Args:
        dataset: the dataset to view.
        indices: positions in ``dataset`` (ints in [0, len(dataset))).

    Examples:
        >>> sub = Subset(TensorDataset(np.arange(10)), [7, 2])
        >>> len(sub), int(sub[0][0]), int(sub[1][0])
        (2, 7, 2)
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        wrong = [i for i in indices if not _is_index(i)]
        if wrong:  # (int() would have truncated 1.7 to sample 1)
            raise TypeError(f"Subset: indices must be ints, got {wrong[0]!r} ({type(wrong[0]).__name__})")
        self.indices = [int(i) for i in indices]
        n = len(dataset)
        bad = [i for i in self.indices if not -n <= i < n]
        if bad:
            raise IndexError(f"Subset: indices {bad[:5]} are out of range for a dataset of length {n}")

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[_check_index("Subset", index, len(self))]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several datasets one after another: index ``i`` is looked up in the dataset whose range holds it.

    Args:
        datasets: the datasets to chain, in order (at least one).

    Examples:
        >>> cat = ConcatDataset([TensorDataset(np.arange(3)), TensorDataset(np.arange(10, 12))])
        >>> len(cat), [int(cat[i][0]) for i in range(len(cat))]
        (5, [0, 1, 2, 10, 11])
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset, got an empty list")
        self.cumulative_sizes: list[int] = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __getitem__(self, index: int) -> Any:
        index = _check_index("ConcatDataset", index, len(self))
        k = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[k - 1] if k > 0 else 0
        return self.datasets[k][index - start]

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]


def random_split(
    dataset: Any, lengths: Sequence[int | float], generator: np.random.Generator | int | None = None
) -> list[Subset]:
    """Split ``dataset`` into disjoint random subsets of the given lengths (PyTorch's ``random_split``).

    Args:
        dataset: the dataset to split.
        lengths: sizes that add up to ``len(dataset)``, or fractions that add up to 1; with fractions, each size is
            ``floor(fraction * len)`` and the remaining samples are dealt one by one to the subsets in order.
        generator: a ``numpy.random.Generator`` or an int seed for the permutation. Default: minidl's global
            generator (so ``minidl.manual_seed`` makes the split reproducible).

    Returns:
        one :class:`Subset` per length; together they hold every index exactly once.

    Examples:
        >>> train, val = random_split(TensorDataset(np.arange(10)), [0.8, 0.2], generator=0)
        >>> len(train), len(val), sorted(train.indices + val.indices) == list(range(10))
        (8, 2, True)
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    ints = all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in lengths)
    if not ints:
        if any(not isinstance(x, numbers.Real) or isinstance(x, bool) or not 0 <= x <= 1 for x in lengths) or (
            not math.isclose(sum(lengths), 1.0, abs_tol=1e-9)
        ):
            raise ValueError(f"random_split: fractions must lie in [0, 1] and add up to 1, got {lengths}")
        sizes = [int(math.floor(n * x)) for x in lengths]
        for k in range(n - sum(sizes)):
            sizes[k % len(sizes)] += 1
    else:
        if any(x < 0 for x in lengths):
            raise ValueError(f"random_split: lengths must be non-negative, got {lengths}")
        sizes = [int(x) for x in lengths]
        if sum(sizes) != n:
            raise ValueError(
                f"random_split: the lengths add up to {sum(sizes)} but the dataset has {n} samples (lengths {sizes})"
            )
    if generator is None:
        rng = default_generator()
    elif isinstance(generator, np.random.Generator):
        rng = generator
    elif isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        rng = np.random.default_rng(int(generator))
    else:
        raise TypeError(f"random_split: generator must be a numpy Generator, an int seed or None, got {generator!r}")
    perm = rng.permutation(n).tolist()
    subsets, start = [], 0
    for size in sizes:
        subsets.append(Subset(dataset, perm[start : start + size]))
        start += size
    return subsets
