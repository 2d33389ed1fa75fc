"""The Numba backend against the NumPy reference: every kernel, forward and backward, and a whole training step.

Skipped cleanly when Numba is not installed. float32 comparisons use atol 5e-4 / rtol 5e-3 for conv-like sums (the
kernels add in another order than the reference), float64 ones are tight; pooling indices must match exactly.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl.nn.activation import relu_backward, relu_forward
from minidl.nn.conv import conv2d_backward, conv2d_forward
from minidl.nn.normalization import batch_norm_backward, batch_norm_forward
from minidl.nn.pooling import pool_output_size
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

from minidl.backend import _threads  # noqa: E402

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}
dtypes = st.sampled_from([np.float32, np.float64])


def fast_be():
    return minidl.get_backend("numba")


def ref_be():
    return minidl.get_backend("numpy")


def close(actual, expected, dtype, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, **TOL[dtype], err_msg=what)


def run_on(name, fn, *args, **kwargs):
    with minidl.use_backend(name):
        return fn(*args, **kwargs)


@st.composite
def conv_configs(draw):
    """x shape, weight shape, stride, padding, dilation with at least one output pixel."""
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 9))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 9))
    N, C, O = draw(st.integers(1, 20)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    return (N, C, H, W), (O, C, KH, KW), (SH, SW), (PH, PW), (DH, DW)


# ---------------------------------------------------------------------------------------------------- im2col
@given(config=conv_configs(), dtype=dtypes, seed=seeds)
def test_im2col_and_col2im_match_the_reference(config, dtype, seed):
    (N, C, H, W), (_, _, KH, KW), (SH, SW), (PH, PW), (DH, DW) = config
    geometry = (KH, KW, SH, SW, PH, PW, DH, DW)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    cols = fast_be().im2col(x, *geometry)
    np.testing.assert_array_equal(cols, ref_be().im2col(x, *geometry))  # a copy: exact
    c = rng.standard_normal(cols.shape).astype(dtype)
    close(fast_be().col2im(c, x.shape, *geometry), ref_be().col2im(c, x.shape, *geometry), dtype, "col2im")


# ---------------------------------------------------------------------------------------------------- conv2d
@given(config=conv_configs(), bias=st.booleans(), compute_dw=st.booleans(), dtype=dtypes, seed=seeds)
def test_fused_conv2d_matches_the_reference(config, bias, compute_dw, dtype, seed):
    x_shape, w_shape, stride, padding, dilation = config
    compare_conv2d(x_shape, w_shape, stride, padding, dilation, bias, compute_dw, dtype, seed)


def compare_conv2d(x_shape, w_shape, stride, padding, dilation, bias, compute_dw, dtype, seed):
    """Forward and every gradient of conv2d on the Numba backend (its fused kernel) against the NumPy reference."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    out, cache = run_on("numpy", conv2d_forward, x, w, b, stride, padding, dilation)
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = run_on("numpy", conv2d_backward, dout, cache, compute_dw=compute_dw)
    fast_out, fast_cache = run_on("numba", conv2d_forward, x, w, b, stride, padding, dilation)
    assert fast_cache[0] is None, "the Numba backend should take the fused path (no x_col in the cache)"
    what = f"conv2d x{x_shape} w{w_shape} stride {stride} padding {padding} dilation {dilation}"
    close(fast_out, out, dtype, f"{what}: out")
    fast_grads = run_on("numba", conv2d_backward, dout, fast_cache, compute_dw=compute_dw)
    for name, fast, ref in zip(("dx", "dw", "db"), fast_grads, grads, strict=True):
        assert (fast is None) == (ref is None), f"{what}: {name} presence"
        if ref is not None:
            close(fast, ref, dtype, f"{what}: {name}")


@pytest.mark.parametrize("N", [0, 1, 37, 64])
def test_fused_conv2d_chunks_of_several_images_and_same_padding(N):
    # small images make chunks of several images (and a ragged last chunk);
    # 'same' with an even kernel pads asymmetrically
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, 2, 4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    out, cache = run_on("numpy", conv2d_forward, x, w, b, 1, "same")
    dout = rng.standard_normal(out.shape).astype(np.float32)
    fast_out, fast_cache = run_on("numba", conv2d_forward, x, w, b, 1, "same")
    close(fast_out, out, np.float32, "out")
    for fast, ref in zip(
        run_on("numba", conv2d_backward, dout, fast_cache), run_on("numpy", conv2d_backward, dout, cache), strict=True
    ):
        close(fast, ref, np.float32, "grad")


@pytest.mark.parametrize("O", [4, 24])
def test_fused_conv2d_backward_in_row_blocks(O):
    # a 24x24 image has 576 output pixels: with O <= 16 the backward GEMMs run in blocks of 256 rows (256, 256, 64)
    rng = np.random.default_rng(O)
    x = rng.standard_normal((3, 2, 24, 24)).astype(np.float32)
    w = rng.standard_normal((O, 2, 3, 3)).astype(np.float32)
    out, cache = run_on("numpy", conv2d_forward, x, w, None, 1, 1)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    fast_out, fast_cache = run_on("numba", conv2d_forward, x, w, None, 1, 1)
    close(fast_out, out, np.float32, "out")
    fast = run_on("numba", conv2d_backward, dout, fast_cache)[:2]
    for name, a, b in zip(("dx", "dw"), fast, run_on("numpy", conv2d_backward, dout, cache)[:2], strict=True):
        close(a, b, np.float32, name)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "padding"),
    [((24, 3, 6, 6), (4, 3, 3, 3), 1, 1), ((40, 8, 9, 7), (12, 8, 3, 3), 1, 1), ((40, 8, 6, 6), (4, 8, 1, 1), 2, 0)],
    ids=["im2row", "winograd", "pointwise"],
)
def test_fused_conv2d_results_do_not_depend_on_the_thread_count(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    results = []
    before = _threads.get_num_threads()
    try:
        for threads in (1, 3):
            _threads.set_num_threads(threads)
            out, cache = run_on("numba", conv2d_forward, x, w, None, stride, padding)
            results.append((out, *run_on("numba", conv2d_backward, np.ones_like(out), cache)[:2]))
    finally:
        _threads.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------- Winograd
@st.composite
def winograd_configs(draw):
    """3 x 3 stride-1 convolutions with enough channels for Winograd's F(2x2, 3x3); odd and even output sizes."""
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H, W = draw(st.integers(max(1, 3 - 2 * PH), 11)), draw(st.integers(max(1, 3 - 2 * PW), 11))
    N, C, O = draw(st.integers(1, 12)), draw(st.integers(8, 20)), draw(st.integers(8, 20))
    return (N, C, H, W), (O, C, 3, 3), (PH, PW)


@given(config=winograd_configs(), bias=st.booleans(), compute_dw=st.booleans(), dtype=dtypes, seed=seeds)
def test_winograd_conv2d_matches_the_reference(config, bias, compute_dw, dtype, seed):
    x_shape, w_shape, padding = config
    assert fast_be()._winograd_applies(x_shape[1], w_shape[0], 3, 3, 1, 1, *padding, 1, 1)
    compare_conv2d(x_shape, w_shape, 1, padding, 1, bias, compute_dw, dtype, seed)


def test_winograd_is_float32_accurate_and_can_be_turned_off():
    # a resnet20-sized layer: Winograd's result is within a few float32 roundings of the float64 convolution
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 32, 32))
    w = rng.standard_normal((16, 16, 3, 3)) * 0.1
    exact = run_on("numpy", conv2d_forward, x, w, None, 1, 1)[0]
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    fast = run_on("numba", conv2d_forward, x32, w32, None, 1, 1)[0]
    be = fast_be()
    try:
        be.winograd = False
        assert not be._winograd_applies(16, 16, 3, 3, 1, 1, 1, 1, 1, 1)
        im2row = run_on("numba", conv2d_forward, x32, w32, None, 1, 1)[0]
    finally:
        be.winograd = True
    scale = np.abs(exact).max()
    assert np.abs(fast - exact).max() / scale < 2e-6
    assert np.abs(im2row - exact).max() / scale < 2e-6
    # neither a 5 x 5 kernel, a stride, a dilation, padding 3 nor few channels take the Winograd path
    assert be._winograd_applies(8, 8, 3, 3, 1, 1, 0, 2, 1, 1)
    for args in [
        (8, 8, 5, 5, 1, 1, 1, 1, 1, 1),
        (8, 8, 3, 3, 2, 2, 1, 1, 1, 1),
        (8, 8, 3, 3, 1, 1, 1, 1, 2, 2),
        (8, 8, 3, 3, 1, 1, 3, 3, 1, 1),
        (3, 16, 3, 3, 1, 1, 1, 1, 1, 1),
    ]:
        assert not be._winograd_applies(*args), args


def test_grouped_conv_falls_back_to_the_reference_with_numba_im2col():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    out, cache = run_on("numpy", conv2d_forward, x, w, None, 1, 1, 1, 2)
    fast_out, fast_cache = run_on("numba", conv2d_forward, x, w, None, 1, 1, 1, 2)
    assert fast_cache[0] is not None
    close(fast_out, out, np.float64, "grouped out")
    for fast, ref in zip(
        run_on("numba", conv2d_backward, out, fast_cache)[:2],
        run_on("numpy", conv2d_backward, out, cache)[:2],
        strict=True,
    ):
        close(fast, ref, np.float64, "grouped grad")


# ---------------------------------------------------------------------------------------------------- pooling
@st.composite
def pool_configs(draw, dilation=True):
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    DH, DW = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 8))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 8))
    ceil_mode = draw(st.booleans())
    OH, OW = pool_output_size(H, KH, SH, PH, DH, ceil_mode), pool_output_size(W, KW, SW, PW, DW, ceil_mode)
    assume(OH >= 1 and OW >= 1)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), H, W), (KH, KW, SH, SW, PH, PW, DH, DW), (OH, OW)


@given(config=pool_configs(), dtype=dtypes, ties=st.booleans(), nan=st.booleans(), seed=seeds)
def test_max_pool_matches_the_reference_exactly(config, dtype, ties, nan, seed):
    shape, geometry, (OH, OW) = config
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so windows hold equal maxima (the first one must win, as in the reference)
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    if nan:
        x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
    out, argmax = fast_be().max_pool2d_forward(x, *geometry, OH, OW)
    ref_out, ref_argmax = ref_be().max_pool2d_forward(x, *geometry, OH, OW)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    assert argmax.dtype == ref_argmax.dtype
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = fast_be().max_pool2d_backward(dout, argmax, shape, *geometry)
    close(dx, ref_be().max_pool2d_backward(dout, ref_argmax, shape, *geometry), dtype, "max_pool2d_backward")


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 7), (3, 1, 2, 2)])
@pytest.mark.parametrize("special", ["ties", "nan", "none"])
def test_max_pool_2x2_fast_path_matches_the_reference(shape, special):
    # (2, 2) windows with stride 2 take a kernel compiled for that window; odd sizes drop the last row/column
    rng = np.random.default_rng(sum(shape))
    x = (rng.integers(0, 2, shape) if special == "ties" else rng.standard_normal(shape)).astype(np.float32)
    if special == "nan":
        x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
    OH, OW = shape[2] // 2, shape[3] // 2
    geometry = (2, 2, 2, 2, 0, 0, 1, 1)
    out, argmax = fast_be().max_pool2d_forward(x, *geometry, OH, OW)
    ref_out, ref_argmax = ref_be().max_pool2d_forward(x, *geometry, OH, OW)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(
        fast_be().max_pool2d_backward(dout, argmax, shape, *geometry),
        ref_be().max_pool2d_backward(dout, ref_argmax, shape, *geometry),
    )


@given(
    config=pool_configs(dilation=False),
    include_pad=st.booleans(),
    divisor=st.sampled_from([0, 0, 5]),
    dtype=dtypes,
    seed=seeds,
)
def test_avg_pool_matches_the_reference(config, include_pad, divisor, dtype, seed):
    shape, (KH, KW, SH, SW, PH, PW, _, _), (OH, OW) = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    args = (KH, KW, SH, SW, PH, PW)
    out = fast_be().avg_pool2d_forward(x, *args, OH, OW, int(include_pad), divisor)
    close(out, ref_be().avg_pool2d_forward(x, *args, OH, OW, int(include_pad), divisor), dtype, "avg_pool2d forward")
    dout = rng.standard_normal(out.shape).astype(dtype)
    close(
        fast_be().avg_pool2d_backward(dout, shape, *args, int(include_pad), divisor),
        ref_be().avg_pool2d_backward(dout, shape, *args, int(include_pad), divisor),
        dtype,
        "avg_pool2d backward",
    )


# ---------------------------------------------------------------------------------------------------- batch norm
@given(
    shape=st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 5), (5, 1, 2, 2), (2, 6, 1, 1)]),
    training=st.booleans(),
    affine=st.booleans(),
    offset=st.sampled_from([0.0, 100.0]),
    dtype=dtypes,
    seed=seeds,
)
def test_batch_norm_kernels_match_the_layer_reference(shape, training, affine, offset, dtype, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)  # offset: a mean far from 0 tests the one-pass var
    gamma = rng.standard_normal(C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    dout = rng.standard_normal(shape).astype(dtype)
    results = []
    for name in ("numpy", "numba"):
        running_mean, running_var = np.full(C, 0.5, dtype), np.full(C, 2.0, dtype)
        out, cache = run_on(name, batch_norm_forward, x, gamma, beta, running_mean, running_var, training, 0.1, 1e-5)
        results.append((out, running_mean, running_var, *run_on(name, batch_norm_backward, dout, cache)))
    names = ("out", "running_mean", "running_var", "dx", "dgamma", "dbeta")
    tol = {"atol": 2e-3, "rtol": 5e-3} if dtype == np.float32 else {"atol": 1e-8, "rtol": 1e-7}
    for what, ref, fast in zip(names, *results, strict=True):
        assert (ref is None) == (fast is None), what
        if ref is not None:
            np.testing.assert_allclose(fast, ref, **tol, err_msg=f"batch norm {shape} training={training}: {what}")
            assert fast.dtype == ref.dtype, what


def test_batch_norm_statistics_are_accurate_far_from_zero():
    x = (np.random.default_rng(0).standard_normal((64, 2, 8, 8)) * 1e-2 + 1e4).astype(np.float32)
    out, mean, var, inv_std = fast_be().batch_norm_train(x, None, None, 1e-5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-3)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-3)


# ---------------------------------------------------------------------------------------------------- relu
@given(size=st.integers(1, 200_000), dtype=dtypes, seed=seeds)
def test_relu_kernels_match_the_reference(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(dtype)
    x[rng.integers(0, size, 4)] = [np.nan, -0.0, np.inf, 0.0]  # NaN propagates; zeros are not > 0
    out, mask = fast_be().relu_forward(x)
    ref_out, ref_mask = run_on("numpy", relu_forward, x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask.dtype == np.bool_ and out.dtype == x.dtype
    dout = rng.standard_normal(size).astype(dtype)
    np.testing.assert_array_equal(fast_be().relu_backward(dout, mask), run_on("numpy", relu_backward, dout, ref_mask))


def test_relu_functional_pair_on_numba_matches_numpy():
    x = np.random.default_rng(3).standard_normal((3, 4, 5)).astype(np.float32)
    out, cache = run_on("numba", relu_forward, x)
    ref_out, ref_cache = run_on("numpy", relu_forward, x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(cache, ref_cache)
    dx = run_on("numba", relu_backward, x, cache)
    np.testing.assert_array_equal(dx, run_on("numpy", relu_backward, x, ref_cache))


# ---------------------------------------------------------------------------------------------------- a training step
def _training_step_on_both_backends(dtype):
    """Loss, input gradient and parameter gradients of one cifar_cnn step (batch 6) on NumPy, then on Numba."""
    from minidl import nn
    from minidl.models import cifar_cnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, 6)
    with minidl.use_backend("numpy"):
        minidl.set_default_dtype(dtype)
        minidl.manual_seed(0)
        model = cifar_cnn()
    loss_fn = nn.CrossEntropyLoss()
    results = []
    for name in ("numpy", "numba"):
        with minidl.use_backend(name):
            minidl.manual_seed(1)  # the same dropout mask on both backends
            model.zero_grad()
            loss = loss_fn(model(x), y)
            dx = model.backward(loss_fn.backward())
            results.append((loss, dx, {k: p.grad.copy() for k, p in model.named_parameters()}))
    return results


def test_a_cifar_cnn_training_step_gives_the_same_loss_and_gradients_on_both_backends():
    # float64: the two backends agree to rounding everywhere, through every layer of the backward pass
    (loss, dx, grads), (fast_loss, fast_dx, fast_grads) = _training_step_on_both_backends(np.float64)
    np.testing.assert_allclose(fast_loss, loss, rtol=1e-12)
    np.testing.assert_allclose(fast_dx, dx, rtol=1e-7, atol=1e-12)
    for key, grad in grads.items():
        np.testing.assert_allclose(fast_grads[key], grad, rtol=1e-7, atol=1e-12, err_msg=key)


def test_a_float32_training_step_agrees_within_float32_tolerance():
    # float32: the forward agrees to rounding; behind a max-pool, two values of a window that differ by a rounding
    # error can swap which one is the maximum and send that window's gradient elsewhere (on either backend), so the
    # layers below the last max-pool are compared by the norm of their gradient only
    (loss, dx, grads), (fast_loss, fast_dx, fast_grads) = _training_step_on_both_backends(np.float32)
    np.testing.assert_allclose(fast_loss, loss, rtol=1e-5)
    for key in ("classifier.1.weight", "classifier.1.bias", "features.15.weight", "features.15.bias"):
        np.testing.assert_allclose(fast_grads[key], grads[key], atol=5e-4, rtol=5e-3, err_msg=key)
    for key, grad in [*grads.items(), ("dx", dx)]:
        fast = fast_dx if key == "dx" else fast_grads[key]
        relative = np.linalg.norm(fast - grad) / np.linalg.norm(grad)
        assert relative < 5e-2, f"{key}: relative difference {relative:.3g} of the gradient's norm"


def test_other_float_dtypes_run_in_float32_and_keep_their_dtype():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    out, cache = run_on("numba", conv2d_forward, x, w, None, 1, 1)
    ref_out, _ = run_on("numpy", conv2d_forward, x.astype(np.float32), w.astype(np.float32), None, 1, 1)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref_out, atol=2e-2, rtol=2e-2)
    dx, dw, _ = run_on("numba", conv2d_backward, out, cache)
    assert dx.dtype == dw.dtype == np.float16
    pooled, argmax = fast_be().max_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 1, 1, 3, 3)
    assert pooled.dtype == np.float16 and argmax.dtype == np.int32
    relu_out, mask = run_on("numba", relu_forward, x)
    assert relu_out.dtype == np.float16 and mask.dtype == np.bool_


# ---------------------------------------------------------------------------------------------------- threads
def test_parallel_for_runs_every_task_once_and_raises_task_errors():
    seen = []
    _threads.parallel_for(lambda worker, task: seen.append(task), 50)
    assert sorted(seen) == list(range(50))

    def fail(worker, task):
        if task == 7:
            raise ValueError("task 7 failed")

    with pytest.raises(ValueError, match="task 7 failed"):
        _threads.parallel_for(fail, 20)


def test_nested_parallel_for_runs_serially_as_the_same_worker():
    pairs = []

    def outer(worker, task):
        _threads.parallel_for(lambda inner_worker, inner_task: pairs.append((worker, inner_worker)), 3)

    _threads.parallel_for(outer, 8)
    assert len(pairs) == 24 and all(w == inner for w, inner in pairs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_pool_works_in_a_forked_child():
    # a DataLoader worker process is a fork: the parent's pool threads do not exist there
    before = _threads.get_num_threads()
    _threads.set_num_threads(2)
    try:
        _threads.parallel_for(lambda worker, task: None, 4)  # the parent's pool is running
        pid = os.fork()
        if pid == 0:  # the child: run a region, report by the exit status
            done = []
            _threads.parallel_for(lambda worker, task: done.append(task), 10)
            os._exit(0 if sorted(done) == list(range(10)) else 1)
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        _threads.set_num_threads(before)


def test_set_num_threads_validates_and_blas_info_reports():
    with pytest.raises(ValueError, match="positive integer"):
        _threads.set_num_threads(0)
    info = _threads.blas_info()
    assert {"library", "corename", "threads", "OPENBLAS_CORETYPE"} <= set(info)


def test_missing_numba_gives_an_install_hint(monkeypatch):
    import minidl.backend

    for module in ("numba_backend", "_numba_kernels"):  # forget the loaded modules, so the import runs again
        monkeypatch.delitem(sys.modules, f"minidl.backend.{module}", raising=False)
        monkeypatch.delattr(minidl.backend, module, raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now raises ImportError
    with pytest.raises(ImportError, match=r"pip install numba"):
        import minidl.backend.numba_backend  # noqa: F401


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "bias"),
    [((3, 2, 7, 6), (4, 2, 3, 3), True), ((5, 8, 9, 7), (12, 8, 3, 3), False), ((5, 8, 9, 7), (12, 8, 3, 3), True)],
    ids=["im2row", "winograd", "winograd-bias"],
)
def test_fused_conv2d_relu_epilogue_is_relu_of_the_output(x_shape, w_shape, bias):
    # inference fusion (minidl/nn/fusion.py): the ReLU applied in the convolution's output pass
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    geometry = (3, 3, 1, 1, 1, 1, 1, 1)
    plain = fast_be().conv2d_forward_fused(x, w, b, *geometry)
    fused = fast_be().conv2d_forward_fused(x, w, b, *geometry, relu=True)
    np.testing.assert_array_equal(fused, np.where(plain > 0, plain, 0))


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1), (3, 2)])
@pytest.mark.parametrize("N", [0, 1, 37])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_conv2d_matches_the_reference(stride, N, dtype):
    # 1 x 1 without padding: one (O, C) @ (C, OH OW) product per image (_numba_conv.ConvKernelsMixin._pointwise_conv)
    for bias, compute_dw in ((True, True), (False, False)):
        compare_conv2d((N, 6, 7, 9), (5, 6, 1, 1), stride, 0, 1, bias, compute_dw, dtype, seed=N + stride[0])


def test_pointwise_conv2d_relu_epilogue():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((40, 8, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    plain = fast_be().conv2d_forward_fused(x, w, None, 1, 1, 2, 2, 0, 0, 1, 1)
    fused = fast_be().conv2d_forward_fused(x, w, None, 1, 1, 2, 2, 0, 0, 1, 1, relu=True)
    np.testing.assert_array_equal(fused, np.where(plain > 0, plain, 0))
