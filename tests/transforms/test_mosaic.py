"""Mosaic: every pixel comes from the source its quadrant names, and the label weights are the quadrants' areas."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import backend as backend_module
from minidl import transforms as T
from tests.gpu.fake_cupy import make_fake_cupy
from tests.helpers import arr, host
from tests.strategies import seeds


@given(seed=seeds, n=st.integers(1, 6), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9))
def test_mosaic_pixels_come_from_the_quadrant_sources_and_weights_are_the_areas(seed, n, C, H, W):
    rng = np.random.default_rng(seed)
    x = (np.arange(n) + 1.0).reshape(n, 1, 1, 1) + 0.01 * rng.random((n, C, H, W))  # images differ everywhere
    y = np.arange(n)  # distinct labels, K = n
    mosaic = T.Mosaic(num_classes=n, center_range=(0.0, 1.0))
    x_mix, y_mix = T.Mosaic(num_classes=n, center_range=(0.0, 1.0), generator=np.random.default_rng(seed))(
        arr(x), arr(y)
    )
    x_mix, y_mix = host(x_mix), host(y_mix)
    c_y, c_x, sources = mosaic.get_params(n, H, W, np.random.default_rng(seed))
    assert 0 <= c_y <= H and 0 <= c_x <= W
    np.testing.assert_array_equal(sources[0], np.arange(n))
    for k in range(1, 4):
        assert sorted(sources[k]) == list(range(n))
    # the readable reference: pixel (r, c) of example i comes from the source of its quadrant
    expected_x = np.empty_like(x)
    expected_y = np.zeros((n, n))
    for i in range(n):
        for r in range(H):
            for c in range(W):
                k = 2 * (r >= c_y) + (c >= c_x)
                expected_x[i, :, r, c] = x[sources[k][i], :, r, c]
                expected_y[i, y[sources[k][i]]] += 1.0 / (H * W)  # each pixel carries 1 / (H W) of the label
    np.testing.assert_array_equal(x_mix, expected_x)
    np.testing.assert_allclose(y_mix, expected_y, atol=1e-12)
    np.testing.assert_allclose(y_mix.sum(axis=1), 1.0, atol=1e-12)
    weights = T.Mosaic.area_weights(c_y, c_x, H, W)
    areas = [c_y * c_x, c_y * (W - c_x), (H - c_y) * c_x, (H - c_y) * (W - c_x)]
    assert weights.tolist() == [a / (H * W) for a in areas] and sum(areas) == H * W


def test_mosaic_weights_with_distinct_sources_and_soft_labels():
    x = np.arange(4.0).reshape(4, 1, 1, 1) * np.ones((4, 2, 8, 10))
    soft = np.eye(4, dtype=np.float32)
    mosaic = T.Mosaic(center_range=(0.5, 0.5), generator=np.random.default_rng(1))  # centre fixed at (4, 5)
    x_mix, y_mix = mosaic(x.astype(np.float32), soft)
    assert x_mix.dtype == y_mix.dtype == np.float32 and y_mix.shape == (4, 4)
    _, _, sources = T.Mosaic(center_range=(0.5, 0.5)).get_params(4, 8, 10, np.random.default_rng(1))
    for i in range(4):
        quadrants = [x_mix[i, 0, :4, :5], x_mix[i, 0, :4, 5:], x_mix[i, 0, 4:, :5], x_mix[i, 0, 4:, 5:]]
        assert [int(q[0, 0]) for q in quadrants] == [int(s) for s in sources[:, i]]
        expected = np.zeros(4)
        for k in range(4):
            expected[sources[k, i]] += 0.25  # the four quadrants have equal areas here
        np.testing.assert_allclose(y_mix[i], expected, atol=1e-7)
    assert repr(mosaic) == "Mosaic(num_classes=None, center_range=(0.5, 0.5))"


def test_mosaic_errors():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="integer labels need num_classes"):
        T.Mosaic()(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"Mosaic: expected .*4"):
        T.Mosaic(num_classes=2)(np.zeros((2, 16), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"Mosaic: center_range must be \(min, max\) with min <= max"):
        T.Mosaic(center_range=(0.8, 0.2))
    with pytest.raises(ValueError, match=r"Mosaic: center_range"):
        T.Mosaic(center_range=(0.0, 1.5))
    with pytest.raises(ValueError, match=r"Mosaic: labels must lie in \[0, 1\]"):
        T.Mosaic(num_classes=2)(x, np.array([0, 2]))


def test_mosaic_and_the_float_transforms_keep_device_arrays_on_the_device(monkeypatch):
    """On the CPU stand-in for CuPy (which refuses host/device mixing): the same results as on NumPy, device arrays
    out."""
    fake = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(
        backend_module, "_INSTANCES", {k: v for k, v in backend_module._INSTANCES.items() if k != "cupy"}
    )
    x_host = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    y_host = np.array([0, 1, 2, 1])
    with minidl.use_backend("numpy"):
        x_ref, y_ref = T.Mosaic(num_classes=3, generator=np.random.default_rng(0))(x_host, y_host)
    with minidl.use_backend("cupy"):
        be = minidl.get_backend()
        x, y = be.asarray(x_host), be.asarray(y_host)
        x_mix, y_mix = T.Mosaic(num_classes=3, generator=np.random.default_rng(0))(x, y)
        outs = [
            (T.GaussianBlur(3, 1.0)(x[0]), T.functional.gaussian_blur(x_host[0], 3, 1.0)),
            (T.GridMask((2, 4), p=1.0, generator=np.random.default_rng(1))(x[0]), None),
            (T.HideAndSeek((2,), hide_prob=0.5, generator=np.random.default_rng(1))(x[0]), None),
        ]
    assert all(type(a).__module__ == "cupy" for a in (x_mix, y_mix, *(o for o, _ in outs)))
    np.testing.assert_array_equal(minidl.to_numpy(x_mix), x_ref)
    np.testing.assert_allclose(minidl.to_numpy(y_mix), y_ref, atol=1e-7)
    np.testing.assert_allclose(minidl.to_numpy(outs[0][0]), outs[0][1], atol=1e-6)
    hide = T.GridMask.get_params(8, 8, (2, 4), 0.6, 1, _after_p(1))
    np.testing.assert_array_equal(minidl.to_numpy(outs[1][0])[:, hide], 0)


def _after_p(seed: int) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    rng.random()
    return rng
