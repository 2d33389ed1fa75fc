"""The Numba backend's ordered sum of per-chunk partial sums (``_numba_common._add_in_order``): every value's terms
added in chunk order, so the result is the bits of ``total = parts[0]; total += parts[1]; ...`` whatever the
thread count, the parts' size (serial or in parallel blocks of rows) or the output's layout (a new array, or
planes of a flat buffer, as Winograd's dU)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

from minidl.backend import _threads  # noqa: E402
from minidl.backend._numba_common import _SUM_SERIAL_BYTES, _add_in_order  # noqa: E402


def in_order(parts):
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


SHAPES = [
    (1, 4, 3),  # one part
    (3, 5),  # 2-D parts: one row
    (19, 36, 16, 16),  # Winograd dU of 16 channels, serial
    (8, 36, 64, 64),  # over _SUM_SERIAL_BYTES: parallel blocks of rows
    (5, 7, 16, 27),  # dense dW parts (groups, O, C KH KW)
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_same_bits_as_adding_in_order(shape, dtype, threads):
    rng = np.random.default_rng(len(shape))
    parts = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(dtype)
    before = parts.copy()
    previous = _threads.get_num_threads()
    _threads.set_num_threads(threads)
    try:
        got = _add_in_order(parts)
    finally:
        _threads.set_num_threads(previous)
    want = in_order(parts)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
    assert np.array_equal(parts, before)  # the parts are left as they were


def test_parallel_blocks_are_used_above_the_threshold():
    parts = np.ones((4, 64, 2048), np.float32)
    assert parts.nbytes > _SUM_SERIAL_BYTES
    calls = []
    original = _threads.parallel_for

    def spy(body, tasks, *args, **kwargs):
        calls.append(tasks)
        return original(body, tasks, *args, **kwargs)

    _threads.parallel_for = spy
    try:
        got = _add_in_order(parts)
    finally:
        _threads.parallel_for = original
    assert calls and calls[0] > 1
    assert np.array_equal(got, np.full((64, 2048), 4.0, np.float32))


def test_into_the_planes_of_a_flat_buffer():
    """Row r (parts[:, r] flattened) goes to out[r * stride:], the padding between the rows untouched."""
    rng = np.random.default_rng(0)
    parts = rng.standard_normal((6, 36, 8, 12)).astype(np.float32)
    stride = 8 * 12 + 16
    out = np.full(36 * stride, np.nan, np.float32)
    assert _add_in_order(parts, out, stride) is out
    planes = out.reshape(36, stride)
    assert np.array_equal(planes[:, : 8 * 12].reshape(36, 8, 12), in_order(parts))
    assert np.isnan(planes[:, 8 * 12 :]).all()
