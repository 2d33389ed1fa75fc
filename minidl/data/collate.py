"""Collation: turn a list of B samples into one batch (PyTorch's ``default_collate``, on NumPy arrays).

The rule is applied recursively, following the structure of the first sample:

=========================================  ===============================================================
element of every sample                    batch
=========================================  ===============================================================
array of shape S (NumPy or backend)        array of shape (B, *S), same dtype (``xp.stack``)
Python ``int`` / NumPy integer scalar      int64 array of shape (B,) (class labels)
Python ``float``                           float64 array of shape (B,); a NumPy float scalar keeps its dtype
``bool`` / NumPy bool                      bool array of shape (B,)
a mix of those                             by what they all are: int64 for ints and bools, else float
                                           (``[1, 2.7]`` -> ``[1.0, 2.7]``); a non-number among them is refused
``str`` / ``bytes``                        list of B strings
tuple / list / namedtuple                  the same container of per-position batches (transposed)
dict (Mapping)                             dict of per-key batches
=========================================  ===============================================================
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minidl.backend import get_array_module

__all__ = ["default_collate"]


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__}" + (f" of shape {tuple(shape)} and dtype {x.dtype}" if shape is not None else "")


def _number_kind(x: Any) -> str | None:
    """``"b"``, ``"i"`` or ``"f"`` for a bool, an integer or a real number (Python, NumPy scalar or 0-d array), else
    None."""
    if isinstance(x, (bool, np.bool_)):
        return "b"
    if isinstance(x, numbers.Integral):
        return "i"
    if isinstance(x, numbers.Real):
        return "f"
    if hasattr(x, "shape") and hasattr(x, "dtype") and tuple(x.shape) == ():
        return {"b": "b", "i": "i", "u": "i", "f": "f"}.get(np.dtype(x.dtype).kind)
    return None


def _collate_numbers(batch: Sequence[Any]) -> Any:
    """Scalars to a (B,) array by what they all are, never by the first alone (PyTorch's rule): bools -> bool;
    integers (bools among them count as 0 and 1) -> int64; reals -> float64, or with NumPy scalars or 0-d arrays
    among them, their dtypes promoted (float32 scalars stay float32). A sample that is not a number is refused."""
    kinds = [_number_kind(b) for b in batch]
    if None in kinds:
        k = kinds.index(None)
        raise TypeError(
            f"default_collate: sample 0 is a number ({_describe(batch[0])}) but sample {k} is "
            f"{_describe(batch[k])} ({batch[k]!r:.40}); every sample must have the same structure"
        )
    if set(kinds) == {"b"}:
        return np.array([bool(b) for b in batch], dtype=np.bool_)
    if "f" not in kinds:
        return np.array([int(b) for b in batch], dtype=np.int64)
    arrays = [b for b in batch if isinstance(b, np.generic) or hasattr(b, "shape")]
    if arrays:
        xp = get_array_module(arrays[0])
        return xp.stack([xp.asarray(b) for b in batch])
    return np.array([float(b) for b in batch], dtype=np.float64)


def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of samples into a batch (see the module docstring for the rules).

    Args:
        batch: the B samples, all with the same structure (e.g. ``(image, label)`` tuples).

    Returns:
        the batch, e.g. ``(images (B, C, H, W), labels (B,) int64)``.

    Raises:
        TypeError: a type it cannot batch (a PIL image: add ``transforms.ToArray()``), or samples whose structure
            differs.
        ValueError: arrays of different shapes, naming the shapes and the batch positions.

    Examples:
        >>> x, y = default_collate([(np.zeros((3, 2, 2), np.float32), 1), (np.ones((3, 2, 2), np.float32), 0)])
        >>> x.shape, x.dtype, y.tolist(), y.dtype
        ((2, 3, 2, 2), dtype('float32'), [1, 0], dtype('int64'))
        >>> default_collate([{"x": 1.5, "name": "a"}, {"x": 2.5, "name": "b"}])["name"]
        ['a', 'b']
    """
    if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)) or len(batch) == 0:
        raise TypeError(f"default_collate: expected a non-empty list of samples, got {_describe(batch)}")
    first = batch[0]
    if hasattr(first, "shape") and hasattr(first, "dtype") and len(getattr(first, "shape", ())) > 0:
        shapes = {tuple(b.shape) for b in batch if hasattr(b, "shape")}
        if len(shapes) != 1 or not all(hasattr(b, "shape") for b in batch):
            bad = next(
                k for k, b in enumerate(batch) if not hasattr(b, "shape") or tuple(b.shape) != tuple(first.shape)
            )
            raise ValueError(
                f"default_collate: cannot stack samples of different shapes: sample 0 is {_describe(first)}, "
                f"sample {bad} is {_describe(batch[bad])}; resize them to one size (e.g. transforms.Resize/CenterCrop)"
            )
        xp = get_array_module(first)
        return xp.stack(batch)
    if _number_kind(first) is not None:
        return _collate_numbers(batch)
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, Mapping):
        missing = [k for k, b in enumerate(batch) if not isinstance(b, Mapping) or b.keys() != first.keys()]
        if missing:
            raise TypeError(
                f"default_collate: every sample must be a dict with keys {sorted(first)}; sample {missing[0]} is "
                f"{batch[missing[0]]!r:.80}"
            )
        return {key: default_collate([b[key] for b in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        bad = [k for k, b in enumerate(batch) if not isinstance(b, (tuple, list)) or len(b) != len(first)]
        if bad:
            raise TypeError(
                f"default_collate: every sample must be a sequence of {len(first)} elements like sample 0; sample "
                f"{bad[0]} is {_describe(batch[bad[0]])}"
            )
        columns = [default_collate([b[k] for b in batch]) for k in range(len(first))]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
            return type(first)(*columns)
        return tuple(columns) if isinstance(first, tuple) else columns
    hint = " (convert images to arrays with transforms.ToArray())" if type(first).__module__.startswith("PIL") else ""
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}{hint}")
