"""The Numba backend's per-sample normalization kernels (``minidl/backend/_numba_norm.py``) against the NumPy
reference in ``minidl/nn/normalization_group.py``: LayerNorm, GroupNorm and InstanceNorm, forward and backward.

Skipped cleanly when Numba is not installed. float32 comparisons use atol 5e-4 / rtol 5e-3 (the kernels sum in
float64 and in another order than the reference), float64 ones are tight.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl.nn.normalization_group import (
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

from minidl.backend import _threads  # noqa: E402

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}
dtypes = st.sampled_from([np.float32, np.float64])
offsets = st.sampled_from([0.0, 100.0])  # a mean far from 0 tests the shifted one-pass variance
eps_values = st.sampled_from([1e-5, 1e-3, 0.1])
NAMES = ("out", "dx", "dgamma", "dbeta")


def run_on(name, fn, *args, **kwargs):
    with minidl.use_backend(name):
        return fn(*args, **kwargs)


def forward_and_backward(name, forward, backward, x, dout, *args):
    """(out, dx, dgamma, dbeta) and the forward's cache on backend ``name``."""
    out, cache = run_on(name, forward, x, *args)
    return (out, *run_on(name, backward, dout, cache)), cache


def compare(forward, backward, x, dout, args, dtype, what, tol=None):
    """The Numba backend (which must take the fused path: no xhat cached) against the NumPy reference."""
    ref, _ = forward_and_backward("numpy", forward, backward, x, dout, *args)
    fast, cache = forward_and_backward("numba", forward, backward, x, dout, *args)
    assert cache[0] is None, f"{what}: the Numba backend should run its kernels (x cached, not xhat)"
    for name, r, f in zip(NAMES, ref, fast, strict=True):
        assert (r is None) == (f is None), f"{what}: {name} presence"
        if r is not None:
            assert f.dtype == r.dtype and f.shape == r.shape, f"{what}: {name} {f.dtype}{f.shape} != {r.dtype}{r.shape}"
            np.testing.assert_allclose(f, r, **(tol or TOL[dtype]), err_msg=f"{what}: {name}")
    return ref, fast


def draw_params(rng, shape, dtype, has_gamma, has_beta):
    gamma = (rng.standard_normal(shape) + 1).astype(dtype) if has_gamma else None
    beta = rng.standard_normal(shape).astype(dtype) if has_beta else None
    return gamma, beta


# ---------------------------------------------------------------------------------------------------- layer norm
@given(
    leading=st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple),
    normalized_shape=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple),
    has_gamma=st.booleans(),
    has_beta=st.booleans(),
    offset=offsets,
    eps=eps_values,
    dtype=dtypes,
    seed=seeds,
)
def test_layer_norm_matches_the_reference(leading, normalized_shape, has_gamma, has_beta, offset, eps, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = leading + normalized_shape
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma, beta = draw_params(rng, normalized_shape, dtype, has_gamma, has_beta)
    what = f"layer_norm x{shape} normalized_shape={normalized_shape} gamma={has_gamma} beta={has_beta} eps={eps}"
    compare(layer_norm_forward, layer_norm_backward, x, dout, (gamma, beta, normalized_shape, eps), dtype, what)


# ---------------------------------------------------------------------------------------------------- group norm
@given(
    N=st.integers(1, 5),
    G=st.integers(1, 4),
    channels_per_group=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 6), min_size=0, max_size=2).map(tuple),
    has_gamma=st.booleans(),
    has_beta=st.booleans(),
    offset=offsets,
    eps=eps_values,
    dtype=dtypes,
    seed=seeds,
)
def test_group_norm_matches_the_reference(
    N, G, channels_per_group, spatial, has_gamma, has_beta, offset, eps, dtype, seed
):
    rng = np.random.default_rng(seed)
    C = G * channels_per_group
    shape = (N, C) + spatial
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma, beta = draw_params(rng, (C,), dtype, has_gamma, has_beta)
    what = f"group_norm x{shape} G={G} gamma={has_gamma} beta={has_beta} eps={eps}"
    compare(group_norm_forward, group_norm_backward, x, dout, (gamma, beta, G, eps), dtype, what)


# ---------------------------------------------------------------------------------------------------- instance norm
@given(
    N=st.integers(1, 5),
    C=st.integers(1, 6),
    spatial=st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple),
    has_gamma=st.booleans(),
    has_beta=st.booleans(),
    track=st.booleans(),
    momentum=st.sampled_from([0.0, 0.1, 1.0]),
    offset=offsets,
    dtype=dtypes,
    seed=seeds,
)
def test_instance_norm_with_input_statistics_matches_the_reference(
    N, C, spatial, has_gamma, has_beta, track, momentum, offset, dtype, seed
):
    assume(math.prod(spatial) > 1)
    rng = np.random.default_rng(seed)
    shape = (N, C) + spatial
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma, beta = draw_params(rng, (C,), dtype, has_gamma, has_beta)
    what = f"instance_norm x{shape} gamma={has_gamma} beta={has_beta} track={track} momentum={momentum}"
    running = []
    for name in ("numpy", "numba"):
        stats = (np.full(C, 0.5, dtype), np.full(C, 2.0, dtype)) if track else (None, None)
        out, cache = run_on(name, instance_norm_forward, x, gamma, beta, *stats, True, momentum, 1e-5)
        assert (cache[0] is None) == (name == "numba"), f"{what}: the Numba backend should run its kernels"
        running.append(stats)
    for r, f, stat in zip(*running, ("running_mean", "running_var"), strict=True):
        if track:
            assert f.dtype == r.dtype
            np.testing.assert_allclose(f, r, **TOL[dtype], err_msg=f"{what}: {stat}")
    args = (gamma, beta, None, None, True, momentum, 1e-5)
    compare(instance_norm_forward, instance_norm_backward, x, dout, args, dtype, what)


@given(has_affine=st.booleans(), dtype=dtypes, seed=seeds)
def test_instance_norm_with_running_statistics_keeps_the_reference_on_numba(has_affine, dtype, seed):
    # eval with tracked statistics: constant per-channel statistics, not a per-row kernel; the reference runs
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4, 5, 5)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    gamma, beta = draw_params(rng, (4,), dtype, has_affine, has_affine)
    args = (gamma, beta, rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype), False)
    ref, _ = forward_and_backward("numpy", instance_norm_forward, instance_norm_backward, x, dout, *args)
    fast, cache = forward_and_backward("numba", instance_norm_forward, instance_norm_backward, x, dout, *args)
    assert cache[0] is not None
    for name, r, f in zip(NAMES, ref, fast, strict=True):
        if r is not None:
            np.testing.assert_array_equal(f, r, err_msg=name)


# ---------------------------------------------------------------------------------------------------- many tasks
CASES = {
    # (forward, backward, x shape, parameter shape, extra args): big enough for several tasks of rows, partial sums
    "layer_norm(300)": (layer_norm_forward, layer_norm_backward, (700, 300), (300,), (300,)),
    "layer_norm((8, 6, 6))": (layer_norm_forward, layer_norm_backward, (64, 8, 6, 6), (8, 6, 6), ((8, 6, 6),)),
    "group_norm": (group_norm_forward, group_norm_backward, (48, 16, 9, 9), (16,), (4,)),
    "instance_norm": (instance_norm_forward, instance_norm_backward, (40, 16, 9, 9), (16,), (None, None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_big_inputs_match_and_do_not_depend_on_the_number_of_threads(case):
    forward, backward, shape, param_shape, extra = CASES[case]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    gamma, beta = draw_params(rng, param_shape, np.float32, True, True)
    _, fast = compare(forward, backward, x, dout, (gamma, beta, *extra), np.float32, case)
    threads = _threads.get_num_threads()
    try:
        for n in (1, 3):
            _threads.set_num_threads(n)
            again, _ = forward_and_backward("numba", forward, backward, x, dout, gamma, beta, *extra)
            for name, a, b in zip(NAMES, fast, again, strict=True):
                np.testing.assert_array_equal(b, a, err_msg=f"{case}: {name} with {n} threads")
    finally:
        _threads.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- edge cases
def test_statistics_are_accurate_far_from_zero():
    x = (np.random.default_rng(0).standard_normal((6, 4, 8, 8)) * 1e-2 + 1e4).astype(np.float32)
    out, mean, var, inv_std = minidl.get_backend("numba").group_norm_fused(x, None, None, 2, 1e-5)
    groups = x.astype(np.float64).reshape(12, -1)
    np.testing.assert_allclose(mean, groups.mean(axis=1), rtol=1e-7)
    np.testing.assert_allclose(var, groups.var(axis=1), rtol=1e-3)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(groups.var(axis=1) + 1e-5), rtol=1e-3)
    # out from x and the float32 mean, as the reference computes it (the mean's rounding, 1e4 * 2^-24, is not small
    # next to the spread 1e-2: the reference's float32 xhat has the same error)
    expected = (x.reshape(12, -1) - mean[:, None]) * inv_std[:, None]
    np.testing.assert_allclose(out.reshape(12, -1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("position", [0, 5])  # the first value of a row is the kernels' shift
def test_nan_and_inf_spoil_their_rows_only_as_in_the_reference(bad, position):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    x[1, 0, position % 3] = bad  # a LayerNorm row (4 rows of 18) and a GroupNorm group (2 x 3 channels)
    gamma = rng.standard_normal(6).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    for forward, backward, args in (
        (group_norm_forward, group_norm_backward, (gamma, gamma, 3)),
        (layer_norm_forward, layer_norm_backward, (None, None, (6, 3))),
    ):
        with np.errstate(invalid="ignore"):
            ref, _ = forward_and_backward("numpy", forward, backward, x, dout, *args)
            fast, _ = forward_and_backward("numba", forward, backward, x, dout, *args)
        for name, r, f in zip(NAMES, ref, fast, strict=True):
            if r is not None:
                np.testing.assert_array_equal(np.isnan(f), np.isnan(r), err_msg=f"{forward.__name__}: {name} NaNs")
                finite = np.isfinite(r)
                np.testing.assert_allclose(f[finite], r[finite], **TOL[np.float32], err_msg=name)


def test_float16_runs_in_float32_and_keeps_its_dtype():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float16)
    gamma = rng.standard_normal(4).astype(np.float16)
    dout = rng.standard_normal(x.shape).astype(np.float16)
    ref, _ = forward_and_backward(
        "numpy", group_norm_forward, group_norm_backward, x.astype(np.float32), dout.astype(np.float32), gamma, gamma, 2
    )
    fast, cache = forward_and_backward("numba", group_norm_forward, group_norm_backward, x, dout, gamma, gamma, 2)
    assert cache[0] is None
    for name, r, f in zip(NAMES, ref, fast, strict=True):
        assert f.dtype == np.float16, name
        np.testing.assert_allclose(f.astype(np.float32), r, atol=5e-2, rtol=2e-2, err_msg=name)


def test_the_reference_runs_where_the_kernels_do_not_apply():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    gamma64 = rng.standard_normal(4)  # float64 parameters: the reference's output is float64
    out, cache = run_on("numba", group_norm_forward, x, gamma64, None, 2)
    assert cache[0] is not None and out.dtype == np.float64
    empty = np.zeros((0, 4, 3), np.float32)
    out, cache = run_on("numba", layer_norm_forward, empty, None, None, 3)
    assert cache[0] is not None and out.shape == (0, 4, 3)


def test_a_backward_on_the_numpy_backend_rebuilds_xhat_from_the_fused_cache():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 6, 4, 4)).astype(np.float64)
    dout = rng.standard_normal(x.shape)
    gamma, beta = draw_params(rng, (6,), np.float64, True, True)
    for forward, backward, args in (
        (group_norm_forward, group_norm_backward, (gamma, beta, 3)),
        (instance_norm_forward, instance_norm_backward, (gamma, beta, None, None)),
        (layer_norm_forward, layer_norm_backward, (None, None, (4, 4))),
    ):
        ref, _ = forward_and_backward("numpy", forward, backward, x, dout, *args)
        _, cache = run_on("numba", forward, x, *args)
        assert cache[0] is None
        grads = run_on("numpy", backward, dout, cache)
        for name, r, f in zip(NAMES[1:], ref[1:], grads, strict=True):
            if r is not None:
                np.testing.assert_allclose(f, r, **TOL[np.float64], err_msg=f"{forward.__name__}: {name}")
