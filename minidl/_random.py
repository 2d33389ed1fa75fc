"""Seeded randomness: every random draw in minidl comes from a ``numpy.random.Generator`` held here.

``minidl.manual_seed(0)`` makes parameter initialization, dropout masks, data shuffling and augmentation
reproducible. The legacy global ``numpy.random`` state is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

_generator: np.random.Generator = np.random.default_rng()
_seed: int | None = None


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's global generator; returns it. Like ``torch.manual_seed``."""
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
    """The generator layers and initializers draw from."""
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The global generator's state as plain data (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _generator.bit_generator.state = state


@contextlib.contextmanager
def fork_rng(seed: int) -> Iterator[np.random.Generator]:
    """Inside the block the global generator is a fresh one seeded with ``seed``; afterwards the old one is back."""
    global _generator
    saved = _generator
    _generator = np.random.default_rng(seed)
    try:
        yield _generator
    finally:
        _generator = saved
