"""Hypothesis strategies shared by the layer tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**31 - 1)
small = st.integers(min_value=1, max_value=3)


def array_away_from(
    rng: np.random.Generator, shape: tuple[int, ...], points=(0.0,), margin: float = 1e-3
) -> np.ndarray:
    """Standard normal float64 values of ``shape`` moved at least ``margin`` away from each of ``points``
    (ReLU's kink at 0, LeakyReLU's, ...), so central differences with eps=1e-6 never straddle a kink."""
    x = rng.standard_normal(shape)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return x


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 1e-2) -> np.ndarray:
    """float64 values of ``shape`` that are pairwise at least ``gap`` apart (no max-pool ties), shuffled."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2) * gap + rng.uniform(0, gap / 10)
    return rng.permutation(values).reshape(shape)
