"""Seeded randomness: every random draw in minidl comes from a ``numpy.random.Generator`` held here.

``minidl.manual_seed(0)`` makes parameter initialization, dropout masks, data shuffling and augmentation
reproducible. The legacy global ``numpy.random`` state is never touched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_generator: np.random.Generator = np.random.default_rng()
_seed: int | None = None
_local = threading.local()  # .generator: a per-thread override set by use_generator (DataLoader batches)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's global generator and return it, like ``torch.manual_seed``.

    Afterwards parameter initialization, dropout masks, DataLoader shuffling and augmentation repeat exactly.

    Args:
        seed: a non-negative int.

    Examples:
        >>> import minidl
        >>> a = minidl.manual_seed(0).normal()
        >>> b = minidl.manual_seed(0).normal()
        >>> a == b
        True
    """
    global _generator, _seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed expects a non-negative int, got {seed}")
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _generator


def initial_seed() -> int | None:
    """The seed last given to :func:`manual_seed` (None if it was never called)."""
    return _seed


def default_generator() -> np.random.Generator:
    """The generator layers, initializers and transforms draw from: this thread's override (see
    :func:`use_generator`) if one is set, else the global one that :func:`manual_seed` reseeds."""
    override = getattr(_local, "generator", None)
    return _generator if override is None else override


@contextlib.contextmanager
def use_generator(generator: np.random.Generator) -> Iterator[np.random.Generator]:
    """Inside the block, in the calling thread only, :func:`default_generator` returns ``generator``.

    The DataLoader uses it to give each batch its own seeded generator, in the main thread, worker threads and
    worker processes alike, so augmentation is reproducible whatever the number and kind of workers.
    """
    saved = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield generator
    finally:
        _local.generator = saved


def get_rng_state() -> dict[str, Any]:
    """The global generator's state as plain data (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state` into the global generator."""
    _generator.bit_generator.state = state


def fork_rng(seed: int) -> contextlib.AbstractContextManager[np.random.Generator]:
    """Inside the block :func:`default_generator` is a fresh generator seeded with ``seed`` (in this thread);
    afterwards the previous one is back, its state untouched."""
    return use_generator(np.random.default_rng(seed))
