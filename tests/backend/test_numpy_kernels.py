"""The convolution and pooling primitives of the backend under test, against loop references and their own adjoints.

They run on ``minidl.get_backend()``: the NumPy backend's primitives, which the reference pairs call, and which the
Numba backend inherits unchanged (it replaces whole pairs through its kernel table instead; its compiled loops are
checked against these primitives in ``test_numba_conv.py`` and ``test_numba_pool.py``); with
``MINIDL_TEST_BACKEND=cupy``, the same code on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from tests.helpers import arr, assert_close, host
from tests.nn.naive import (
    adaptive_bins_naive,
    adaptive_pool2d_naive,
    avg_pool2d_naive,
    im2col_naive,
    max_pool2d_naive,
    pool_out_size,
)
from tests.strategies import distinct_values, seeds


@st.composite
def window_configs(draw):
    """(N, C, H, W) and (KH, KW, SH, SW, PH, PW, DH, DW) with at least one output pixel."""
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 7))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 7))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW)


def _out_size(shape, geometry):
    N, C, H, W = shape
    KH, KW, SH, SW, PH, PW, DH, DW = geometry
    return (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1


@given(config=window_configs(), seed=seeds)
def test_im2col_matches_loop_reference_and_documented_layout(config, seed):
    shape, geometry = config
    x = np.random.default_rng(seed).standard_normal(shape)
    cols = minidl.get_backend().im2col(arr(x), *geometry)
    OH, OW = _out_size(shape, geometry)
    assert tuple(cols.shape) == (shape[1] * geometry[0] * geometry[1], shape[0] * OH * OW)
    assert_close(cols, im2col_naive(x, *geometry), what=f"im2col {shape} {geometry}")


@given(config=window_configs(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(config, seed):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: col2im is exactly the transpose of the linear map im2col
    shape, geometry = config
    rng = np.random.default_rng(seed)
    be = minidl.get_backend()
    x = rng.standard_normal(shape)
    cols = host(be.im2col(arr(x), *geometry))
    c = rng.standard_normal(cols.shape)
    back = be.col2im(arr(c), shape, *geometry)
    assert tuple(back.shape) == shape
    np.testing.assert_allclose(float((cols * c).sum()), float((x * host(back)).sum()), rtol=1e-10, atol=1e-10)


def test_col2im_of_non_overlapping_windows_rebuilds_the_input():
    be = minidl.get_backend()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 4))
    geometry = (2, 2, 2, 2, 0, 0, 1, 1)
    assert_close(be.col2im(be.im2col(arr(x), *geometry), x.shape, *geometry), x, what="col2im(im2col(x))")


def test_col2im_adds_overlapping_windows():
    # a 3x3 input, 2x2 windows, stride 1: the centre pixel is in all 4 windows
    be = minidl.get_backend()
    geometry = (2, 2, 1, 1, 0, 0, 1, 1)
    ones = be.col2im(arr(np.ones((4, 4))), (1, 1, 3, 3), *geometry)
    assert_close(ones[0, 0], np.array([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]), what="window counts")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_keep_the_dtype(dtype):
    be = minidl.get_backend()
    x = arr(np.ones((1, 2, 5, 5), dtype=dtype))
    assert be.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1).dtype == dtype
    assert be.col2im(be.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1), (1, 2, 5, 5), 3, 3, 1, 1, 1, 1, 1, 1).dtype == dtype
    out, argmax = be.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2)
    assert out.dtype == dtype
    assert be.max_pool2d_backward(out, argmax, (1, 2, 5, 5), 2, 2, 2, 2, 0, 0, 1, 1).dtype == dtype
    assert be.avg_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 2, 2, 1, 0).dtype == dtype
    assert be.adaptive_avg_pool2d_forward(x, 3, 2).dtype == dtype
    assert be.adaptive_max_pool2d_backward(*be.adaptive_max_pool2d_forward(x, 3, 2), (1, 2, 5, 5)).dtype == dtype


@st.composite
def pool_window_configs(draw, dilation=True):
    """Like window_configs, with padding <= kernel / 2 (PyTorch's rule) and sizes that leave an output pixel."""
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    DH, DW = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 7))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 7))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W), (KH, KW, SH, SW, PH, PW, DH, DW)


@given(config=pool_window_configs(), ceil_mode=st.booleans(), seed=seeds)
def test_max_pool_kernel_matches_loop_reference(config, ceil_mode, seed):
    shape, (KH, KW, SH, SW, PH, PW, DH, DW) = config
    OH = pool_out_size(shape[2], KH, SH, PH, DH, ceil_mode)
    OW = pool_out_size(shape[3], KW, SW, PW, DW, ceil_mode)
    x = distinct_values(np.random.default_rng(seed), shape)
    out, argmax = minidl.get_backend().max_pool2d_forward(arr(x), KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    expected, indices = max_pool2d_naive(x, (KH, KW), (SH, SW), (PH, PW), (DH, DW), ceil_mode)
    assume(np.isfinite(expected).all())  # with dilation a window can sit entirely in the padding (-inf)
    assert_close(out, expected, what="max_pool2d_forward")
    # argmax is the kernel offset kh * KW + kw: turn it into the input position and compare
    a = host(argmax)
    h = (np.arange(OH) * SH - PH)[:, None] + (a // KW) * DH
    w = (np.arange(OW) * SW - PW)[None, :] + (a % KW) * DW
    np.testing.assert_array_equal(h * shape[3] + w, indices)


def test_max_pool_ties_go_to_the_first_maximum_and_nan_propagates():
    be = minidl.get_backend()
    x = np.array([[7.0, 7.0], [7.0, 7.0]]).reshape(1, 1, 2, 2)
    out, argmax = be.max_pool2d_forward(arr(x), 2, 2, 2, 2, 0, 0, 1, 1, 1, 1)
    assert int(host(argmax).ravel()[0]) == 0
    dx = be.max_pool2d_backward(arr(np.ones((1, 1, 1, 1))), argmax, (1, 1, 2, 2), 2, 2, 2, 2, 0, 0, 1, 1)
    assert_close(dx[0, 0], np.array([[1.0, 0.0], [0.0, 0.0]]), what="tie gradient")
    y = np.array([1.0, np.nan, 3.0, 4.0]).reshape(1, 1, 1, 4)
    out, _ = be.max_pool2d_forward(arr(y), 1, 2, 1, 2, 0, 0, 1, 1, 1, 2)
    assert np.isnan(host(out)[0, 0, 0, 0]) and host(out)[0, 0, 0, 1] == 4.0


@given(
    config=pool_window_configs(dilation=False),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    divisor=st.sampled_from([0, 0, 3]),
    seed=seeds,
)
def test_avg_pool_kernel_matches_loop_reference(config, ceil_mode, count_include_pad, divisor, seed):
    shape, (KH, KW, SH, SW, PH, PW, _, _) = config
    OH = pool_out_size(shape[2], KH, SH, PH, 1, ceil_mode)
    OW = pool_out_size(shape[3], KW, SW, PW, 1, ceil_mode)
    x = np.random.default_rng(seed).standard_normal(shape)
    be = minidl.get_backend()
    out = be.avg_pool2d_forward(arr(x), KH, KW, SH, SW, PH, PW, OH, OW, int(count_include_pad), divisor)
    expected = avg_pool2d_naive(x, (KH, KW), (SH, SW), (PH, PW), ceil_mode, count_include_pad, divisor or None)
    assert_close(out, expected, what="avg_pool2d_forward")
    # the backward kernel is the adjoint of the (linear) forward kernel
    g = np.random.default_rng(seed + 1).standard_normal(expected.shape)
    dx = be.avg_pool2d_backward(arr(g), shape, KH, KW, SH, SW, PH, PW, int(count_include_pad), divisor)
    np.testing.assert_allclose(float((expected * g).sum()), float((x * host(dx)).sum()), rtol=1e-10, atol=1e-10)


@given(size=st.integers(1, 20), out_size=st.integers(1, 20))
def test_adaptive_bins_follow_pytorchs_rule(size, out_size):
    start, end = minidl.get_backend().adaptive_bins(size, out_size)
    assert list(zip(host(start).tolist(), host(end).tolist(), strict=True)) == adaptive_bins_naive(size, out_size)


@given(
    N=st.integers(1, 2),
    C=st.integers(1, 2),
    H=st.integers(1, 8),
    W=st.integers(1, 8),
    OH=st.integers(1, 8),
    OW=st.integers(1, 8),
    seed=seeds,
)
def test_adaptive_kernels_match_loop_reference(N, C, H, W, OH, OW, seed):
    rng = np.random.default_rng(seed)
    be = minidl.get_backend()
    x = distinct_values(rng, (N, C, H, W))
    assert_close(
        be.adaptive_avg_pool2d_forward(arr(x), OH, OW),
        adaptive_pool2d_naive(x, OH, OW, "mean"),
        what="adaptive_avg_pool2d_forward",
    )
    out, indices = be.adaptive_max_pool2d_forward(arr(x), OH, OW)
    expected, expected_indices = adaptive_pool2d_naive(x, OH, OW, "max")
    assert_close(out, expected, what="adaptive_max_pool2d_forward")
    np.testing.assert_array_equal(host(indices), expected_indices)
    # both backward kernels are adjoints of their forward (for max: of the selection at fixed indices)
    g = rng.standard_normal((N, C, OH, OW))
    dx = host(be.adaptive_avg_pool2d_backward(arr(g), (N, C, H, W)))
    np.testing.assert_allclose((adaptive_pool2d_naive(x, OH, OW, "mean") * g).sum(), (x * dx).sum(), rtol=1e-10)
    dx = host(be.adaptive_max_pool2d_backward(arr(g), indices, (N, C, H, W)))
    np.testing.assert_allclose((expected * g).sum(), (x * dx).sum(), rtol=1e-10)
