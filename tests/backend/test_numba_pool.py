"""The Numba backend's compiled pooling loops (``minidl/backend/_numba_pool.py``) against the NumPy backend's
primitives (``NumpyBackend.max_pool2d_forward`` and friends), which the reference pairs run.

Beyond the table-wide test (``test_kernels.py``, distinct values): ties go to the first maximum and NaN propagates
exactly as in the primitives (argmax included), the 2 x 2 / stride 2 specialization, average pooling's divisors, and
adaptive average pooling's global and block bins (NaN and inf, float16, independence of the thread count).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl.backend.numpy_backend import NumpyBackend
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache
from minidl.nn.pooling import _max_pool_indices, pool_output_size
from tests.backend.test_kernels import assert_independent_of_the_thread_count
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

dtypes = st.sampled_from([np.float32, np.float64])
REFERENCE = NumpyBackend()  # the primitives the reference pairs call


def fast_be():
    return minidl.get_backend("numba")


def close(actual, expected, dtype, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == np.float32 else {"atol": 1e-12, "rtol": 1e-10}
    np.testing.assert_allclose(actual, expected, **tol, err_msg=what)


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
    return (draw(st.integers(0, 3)), draw(st.integers(1, 4)), H, W), (KH, KW, SH, SW, PH, PW, DH, DW), (OH, OW)


@given(config=pool_configs(), dtype=dtypes, ties=st.booleans(), nan=st.booleans(), seed=seeds)
def test_max_pool_loops_match_the_primitives_exactly(config, dtype, ties, nan, seed):
    shape, geometry, (OH, OW) = config
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so windows hold equal maxima (the first one must win, as in the reference)
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    if nan and x.size:
        x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
    out, argmax = fast_be()._max_pool_planes(x, *geometry, OH, OW)
    ref_out, ref_argmax = REFERENCE.max_pool2d_forward(x, *geometry, OH, OW)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    assert out.dtype == ref_out.dtype and argmax.dtype == ref_argmax.dtype
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = fast_be()._max_pool_planes_backward(dout, argmax, shape, *geometry)
    close(dx, REFERENCE.max_pool2d_backward(dout, ref_argmax, shape, *geometry), dtype, "max_pool2d backward")


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 7), (3, 1, 2, 2)])
@pytest.mark.parametrize("special", ["ties", "nan", "none"])
def test_max_pool_2x2_fast_path_matches_the_primitives(shape, special):
    # (2, 2) windows with stride 2 take a kernel compiled for that window; odd sizes drop the last row/column
    rng = np.random.default_rng(sum(shape))
    x = (rng.integers(0, 2, shape) if special == "ties" else rng.standard_normal(shape)).astype(np.float32)
    if special == "nan":
        x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
    OH, OW = shape[2] // 2, shape[3] // 2
    geometry = (2, 2, 2, 2, 0, 0, 1, 1)
    out, argmax = fast_be()._max_pool_planes(x, *geometry, OH, OW)
    ref_out, ref_argmax = REFERENCE.max_pool2d_forward(x, *geometry, OH, OW)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(  # windows do not overlap: one value per input cell, exact
        fast_be()._max_pool_planes_backward(dout, argmax, shape, *geometry),
        REFERENCE.max_pool2d_backward(dout, ref_argmax, shape, *geometry),
    )


def test_max_pool_pair_with_ties_and_nan_keeps_the_reference_indices():
    # through the pair: the kernel's cache gives PyTorch's return_indices as the reference's does
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    results = {}
    for name in ("numpy", "numba"):
        with minidl.use_backend(name):
            out, cache = F.max_pool2d_forward(x, 3, 2, 1, 1, True)
            assert isinstance(cache, KernelCache) == (name == "numba")
            dx = F.max_pool2d_backward(np.ones_like(out), cache)
            results[name] = (out, _max_pool_indices(cache), dx)
    for what, ref, fast in zip(("out", "indices", "dx"), results["numpy"], results["numba"], strict=True):
        np.testing.assert_array_equal(fast, ref, err_msg=what)


@given(
    config=pool_configs(dilation=False),
    include_pad=st.booleans(),
    divisor=st.sampled_from([0, 0, 5]),
    dtype=dtypes,
    seed=seeds,
)
def test_avg_pool_loops_match_the_primitives(config, include_pad, divisor, dtype, seed):
    shape, (KH, KW, SH, SW, PH, PW, _, _), (OH, OW) = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    args = (KH, KW, SH, SW, PH, PW)
    out = fast_be()._avg_pool_planes(x, *args, OH, OW, int(include_pad), divisor)
    expected = REFERENCE.avg_pool2d_forward(x, *args, OH, OW, int(include_pad), divisor)
    close(out, expected, dtype, "avg_pool2d forward")
    dout = rng.standard_normal(out.shape).astype(dtype)
    close(
        fast_be()._avg_pool_planes_backward(dout, shape, *args, int(include_pad), divisor),
        REFERENCE.avg_pool2d_backward(dout, shape, *args, int(include_pad), divisor),
        dtype,
        "avg_pool2d backward",
    )


def test_pooling_loops_keep_float16_and_int32_indices():
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 6)).astype(np.float16)
    pooled, argmax = fast_be()._max_pool_planes(x, 2, 2, 2, 2, 0, 0, 1, 1, 3, 3)
    assert pooled.dtype == np.float16 and argmax.dtype == np.int32
    np.testing.assert_array_equal(pooled, REFERENCE.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0, 1, 1, 3, 3)[0])
    with minidl.use_backend("numba"):
        out, cache = F.avg_pool2d_forward(x, 3, 2, 1)
        assert isinstance(cache, KernelCache) and out.dtype == np.float16
        assert F.avg_pool2d_backward(np.ones_like(out), cache).dtype == np.float16


@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), dtypes, seeds)
def test_adaptive_avg_pool_blocks_and_global_match_the_reference(N, C, H, W, bins, dtype, seed):
    # the adaptive_avg_pool2d kernel: global pooling (its own loop; these sizes run in one task), blocks (OH divides H
    # and OW divides W: the average-pool loop), other bins the reference's matrices; its backward is the reference's
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    for size in ((1, 1), (min(bins, H), min(bins + 1, W)), (H, 1)):
        with minidl.use_backend("numpy"):
            expected, _ = F.adaptive_avg_pool2d_forward(x, size)
        with minidl.use_backend("numba"):
            out, cache = F.adaptive_avg_pool2d_forward(x, size)
            dx = F.adaptive_avg_pool2d_backward(np.ones_like(out), cache)
        assert isinstance(cache, KernelCache)
        close(out, expected, dtype, f"adaptive {size} of {x.shape}")
        close(dx, REFERENCE.adaptive_avg_pool2d_backward(np.ones_like(out), x.shape), dtype, "backward")


@pytest.mark.parametrize("shape", [(3, 3, 4, 4), (128, 40, 4, 4)])  # one task; many (more than 2^16 values)
def test_global_avg_pool_keeps_nan_and_inf_and_float16(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x[0, 0, 1, 2], x[1, 1, 0, 0], x[1, 2, 3, 3] = np.nan, np.inf, -np.inf
    expected = REFERENCE.adaptive_avg_pool2d_forward(x[2:], 1, 1)
    with minidl.use_backend("numba"):
        out, _ = F.adaptive_avg_pool2d_forward(x, 1)
        half, _ = F.adaptive_avg_pool2d_forward(x[2:].astype(np.float16), 1)
    assert np.isnan(out[0, 0, 0, 0]) and out[1, 1, 0, 0] == np.inf and out[1, 2, 0, 0] == -np.inf
    close(out[2:], expected, np.float32, "finite planes")
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), expected, atol=2e-3)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((3, 3, 4, 4), 1), ((128, 40, 4, 4), 1), ((2, 3, 181, 181), 1), ((64, 20, 8, 8), (2, 4))],
    ids=["global-one-task", "global-many-planes", "global-few-big-planes", "blocks"],
)
def test_adaptive_avg_pool_does_not_depend_on_the_thread_count(monkeypatch, shape, size):
    # the adaptive_avg_pool2d kernel sums each plane (global) or block in one task, in one order: 1 and 3 threads give
    # the same bits, below and above _GLOBAL_POOL_SERIAL values (6 planes of 181 x 181: fewer planes than tasks), and
    # the global pool in one task gives the bits it gives in many
    from minidl.backend import _numba_pool

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 10 + 3
    assert_independent_of_the_thread_count("adaptive_avg_pool2d", x, size)
    if size == 1:
        results = []
        for serial in (1 << 62, 0):  # one task in the calling thread; tasks of planes
            monkeypatch.setattr(_numba_pool, "_GLOBAL_POOL_SERIAL", serial)
            with minidl.use_backend("numba"):
                results.append(F.adaptive_avg_pool2d_forward(x, size)[0])
        np.testing.assert_array_equal(results[1], results[0], err_msg=f"{shape}: one task against tasks of planes")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("shape", [(1, 3, 0, 4), (2, 3, 4, 0)])
def test_adaptive_pools_refuse_an_empty_plane_by_name(backend, shape):
    # a bin needs a value: the setup refuses H or W of 0 on every backend (the kernel divided by zero, the
    # reference's mean gave NaN); an empty batch is fine
    x = np.zeros(shape, np.float32)
    with minidl.use_backend(backend):
        for forward in (F.adaptive_avg_pool2d_forward, F.adaptive_max_pool2d_forward):
            with pytest.raises(ValueError, match=r"_forward: expected an input with non-empty H and W, got shape"):
                forward(x, 1)
        out, _ = F.adaptive_avg_pool2d_forward(np.zeros((0, 3, 4, 4), np.float32), 1)
        assert out.shape == (0, 3, 1, 1)
