"""The Numba backend's in-order sum of per-chunk partial sums (``NumbaBackend._add_in_order``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import minidl  # noqa: E402
from minidl.backend import _threads  # noqa: E402


def _sequential(parts: np.ndarray) -> np.ndarray:
    """What the kernels' partial sums used to be added with: ``total += part``, one part after the other."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    [(1, 5), (2, 3, 4), (19, 36, 16, 16), (8, 36, 64, 64), (3, (1 << 16) + 17)],  # one task, several, a partial one
)
def test_add_in_order_has_the_bits_of_adding_one_part_after_the_other(shape, dtype):
    parts = np.asarray(np.random.default_rng(0).standard_normal(shape) * 1e3, dtype=dtype)
    total = minidl.get_backend("numba")._add_in_order(parts)
    assert total.shape == shape[1:] and total.dtype == dtype
    np.testing.assert_array_equal(total, _sequential(parts))
    with _threads.serial():  # one thread: the same bits
        np.testing.assert_array_equal(minidl.get_backend("numba")._add_in_order(parts), total)


def test_add_in_order_leaves_the_parts_alone():
    parts = np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32)
    before = parts.copy()
    minidl.get_backend("numba")._add_in_order(parts)
    np.testing.assert_array_equal(parts, before)
