"""Max, average and adaptive pooling: naive reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn.pooling import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from minidl.nn.pooling_adaptive import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
)
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.nn.naive import adaptive_pool2d_naive, avg_pool2d_naive, max_pool2d_naive
from tests.strategies import distinct_values, seeds


@st.composite
def pool_configs(draw, dilation=True):
    """Shape and hyperparameters with padding <= kernel / 2 and (by the size bounds) at least one output pixel."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    H = draw(st.integers(max(1, dil[0] * (kernel[0] - 1) + 1 - 2 * padding[0]), 7))
    W = draw(st.integers(max(1, dil[1] * (kernel[1] - 1) + 1 - 2 * padding[1]), 7))
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W),
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dil,
        ceil_mode=ceil_mode,
    )


def _stride(cfg):
    return cfg["kernel"] if cfg["stride"] is None else cfg["stride"]


# ---------------------------------------------------------------------------------------------------- max pooling
@given(cfg=pool_configs(), seed=seeds)
def test_max_pool_matches_naive_and_gradchecks(cfg, seed):
    x = distinct_values(np.random.default_rng(seed), cfg["shape"])
    hyper = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], ceil_mode=cfg["ceil_mode"])
    pool = nn.MaxPool2d(cfg["kernel"], return_indices=True, **hyper)
    out, indices = pool(arr(x))
    expected, expected_indices = max_pool2d_naive(
        x, cfg["kernel"], _stride(cfg), cfg["padding"], cfg["dilation"], cfg["ceil_mode"]
    )
    assume(np.isfinite(expected).all())  # with dilation a window can sit entirely in the padding: -inf, no gradient
    assert_close(out, expected, what=f"max_pool2d {cfg}")
    np.testing.assert_array_equal(host(indices), expected_indices)
    gradcheck.check_function(lambda x: max_pool2d_forward(x, cfg["kernel"], **hyper), max_pool2d_backward, [arr(x)])
    gradcheck.check_module(nn.MaxPool2d(cfg["kernel"], **hyper), arr(x))


MAX_CONFIGS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=1, padding=1, dilation=2),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, stride=2, ceil_mode=True),
]


@pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=str)
def test_max_pool_matches_pytorch(cfg):
    torch = torch_or_skip()
    x = distinct_values(np.random.default_rng(0), (2, 3, 7, 5))
    tx = to_torch(x, requires_grad=True)
    tout, tind = torch.nn.functional.max_pool2d(tx, return_indices=True, **cfg)
    dout = np.random.default_rng(1).standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    pool = nn.MaxPool2d(return_indices=True, **cfg)
    out, indices = pool(arr(x))
    assert_close(out, tout, what=f"max_pool2d {cfg}")
    np.testing.assert_array_equal(host(indices), tind.numpy())
    assert_close(pool.backward(arr(dout)), tx.grad, what=f"max_pool2d dx {cfg}")
    assert repr(nn.MaxPool2d(**cfg)) == repr(torch.nn.MaxPool2d(**cfg))


def test_max_pool_ties_match_pytorch():
    torch = torch_or_skip()
    x = np.round(np.random.default_rng(0).standard_normal((1, 2, 6, 6)))  # many ties
    tx = to_torch(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 3, 1, 1).sum().backward()
    pool = nn.MaxPool2d(3, 1, 1)
    out = pool(arr(x))
    assert_close(pool.backward(arr(np.ones(out.shape))), tx.grad, what="tie-breaking")


def test_max_pool_window_entirely_in_padding_gives_minus_inf_and_no_gradient():
    # dilation can put a whole window in the padding; PyTorch's forward gives -inf there too (its backward writes
    # out of bounds in this case, so only the forward is compared)
    torch = torch_or_skip()
    x = np.ones((1, 1, 3, 1))
    pool = nn.MaxPool2d((1, 2), padding=(0, 1), dilation=(1, 2))
    out = pool(arr(x))
    assert_close(out, torch.nn.functional.max_pool2d(to_torch(x), (1, 2), None, (0, 1), (1, 2)), what="all padding")
    assert_close(pool.backward(arr(np.ones(out.shape))), np.zeros(x.shape), what="all-padding windows dx")


# ---------------------------------------------------------------------------------------------------- average pooling
@given(
    cfg=pool_configs(dilation=False),
    count_include_pad=st.booleans(),
    divisor_override=st.sampled_from([None, None, 2, 5]),
    seed=seeds,
)
def test_avg_pool_matches_naive_and_gradchecks(cfg, count_include_pad, divisor_override, seed):
    x = np.random.default_rng(seed).standard_normal(cfg["shape"])
    hyper = dict(
        stride=cfg["stride"],
        padding=cfg["padding"],
        ceil_mode=cfg["ceil_mode"],
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )
    out, _ = avg_pool2d_forward(arr(x), cfg["kernel"], **hyper)
    expected = avg_pool2d_naive(
        x, cfg["kernel"], _stride(cfg), cfg["padding"], cfg["ceil_mode"], count_include_pad, divisor_override
    )
    assert_close(out, expected, what=f"avg_pool2d {cfg}")
    gradcheck.check_function(lambda x: avg_pool2d_forward(x, cfg["kernel"], **hyper), avg_pool2d_backward, [arr(x)])
    gradcheck.check_module(nn.AvgPool2d(cfg["kernel"], **hyper), arr(x))


AVG_CONFIGS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, stride=1, divisor_override=3),
]


@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=str)
def test_avg_pool_matches_pytorch(cfg):
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    tx = to_torch(x, requires_grad=True)
    tout = torch.nn.functional.avg_pool2d(tx, **cfg)
    dout = np.random.default_rng(1).standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    pool = nn.AvgPool2d(**cfg)
    assert_close(pool(arr(x)), tout, what=f"avg_pool2d {cfg}")
    assert_close(pool.backward(arr(dout)), tx.grad, what=f"avg_pool2d dx {cfg}")
    assert repr(pool) == repr(torch.nn.AvgPool2d(**cfg))


# ---------------------------------------------------------------------------------------------------- adaptive pooling
@given(
    N=st.integers(1, 2),
    C=st.integers(1, 2),
    H=st.integers(1, 7),
    W=st.integers(1, 7),
    output_size=st.one_of(
        st.integers(1, 7), st.tuples(st.one_of(st.none(), st.integers(1, 7)), st.one_of(st.none(), st.integers(1, 7)))
    ),
    seed=seeds,
)
def test_adaptive_pools_match_naive_and_gradcheck(N, C, H, W, output_size, seed):
    x = distinct_values(np.random.default_rng(seed), (N, C, H, W))
    oh, ow = output_size if isinstance(output_size, tuple) else (output_size, output_size)
    oh, ow = H if oh is None else oh, W if ow is None else ow
    assert_close(nn.AdaptiveAvgPool2d(output_size)(arr(x)), adaptive_pool2d_naive(x, oh, ow, "mean"), what="avg")
    out, indices = nn.AdaptiveMaxPool2d(output_size, return_indices=True)(arr(x))
    expected, expected_indices = adaptive_pool2d_naive(x, oh, ow, "max")
    assert_close(out, expected, what="adaptive max")
    np.testing.assert_array_equal(host(indices), expected_indices)
    gradcheck.check_module(nn.AdaptiveAvgPool2d(output_size), arr(x))
    gradcheck.check_module(nn.AdaptiveMaxPool2d(output_size), arr(x))
    gradcheck.check_function(
        lambda x: adaptive_avg_pool2d_forward(x, output_size), adaptive_avg_pool2d_backward, [arr(x)]
    )
    gradcheck.check_function(
        lambda x: adaptive_max_pool2d_forward(x, output_size), adaptive_max_pool2d_backward, [arr(x)]
    )


@pytest.mark.parametrize("output_size", [1, 3, (2, 4), (None, 2), (5, 7), 9])
def test_adaptive_pools_match_pytorch(output_size):
    torch = torch_or_skip()
    x = distinct_values(np.random.default_rng(0), (2, 3, 7, 6))
    dout_rng = np.random.default_rng(1)
    for ours, theirs in (
        (nn.AdaptiveAvgPool2d(output_size), torch.nn.AdaptiveAvgPool2d(output_size)),
        (nn.AdaptiveMaxPool2d(output_size), torch.nn.AdaptiveMaxPool2d(output_size)),
    ):
        tx = to_torch(x, requires_grad=True)
        tout = theirs(tx)
        dout = dout_rng.standard_normal(tuple(tout.shape))
        tout.backward(torch.tensor(dout))
        assert_close(ours(arr(x)), tout, what=f"{ours} forward")
        assert_close(ours.backward(arr(dout)), tx.grad, what=f"{ours} dx")
        assert repr(ours) == repr(theirs)


# ---------------------------------------------------------------------------------------------------- modules, errors
def test_pools_keep_float32_and_have_no_state():
    x = arr(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(1)):
        y = pool(x)
        assert y.dtype == np.float32 and pool.backward(y).dtype == np.float32
        assert len(pool.state_dict()) == 0 and not list(pool.parameters())


def test_stride_defaults_to_kernel_size():
    assert nn.MaxPool2d(3).stride == 3 and nn.AvgPool2d((2, 3)).stride == (2, 3)
    assert nn.MaxPool2d(2)(arr(np.zeros((1, 1, 6, 6), np.float32))).shape == (1, 1, 3, 3)


def test_backward_before_forward_raises():
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)):
        with pytest.raises(RuntimeError, match=rf"{type(pool).__name__}.backward\(\) was called without"):
            pool.backward(arr(np.zeros((1, 1, 1, 1), np.float32)))


def test_bad_input_gets_a_clear_error():
    good = np.zeros((1, 2, 4, 4), np.float32)
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2), nn.AdaptiveMaxPool2d(2)):
        name = type(pool).__name__
        with pytest.raises(ValueError, match=rf"{name}\(.*\): expected a 4-D \(N, C, H, W\) input, got shape \(4, 4\)"):
            pool(arr(good[0, 0]))
        with pytest.raises(TypeError, match=rf"{name}\(.*\): expected a floating-point input .* got dtype int32"):
            pool(arr(good.astype(np.int32)))
        pool(arr(good))
        with pytest.raises(ValueError, match=r"backward: the gradient has shape \(1, 2, 1, 1\) but the forward output"):
            pool.backward(arr(np.zeros((1, 2, 1, 1), np.float32)))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=5.*\): the input 4x4 is too small for kernel_size"):
        nn.MaxPool2d(5)(arr(good))
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=3.*\): the input 1x1 is too small"):
        nn.AvgPool2d(3)(arr(np.zeros((1, 1, 1, 1), np.float32)))


def test_bad_hyperparameters_get_a_clear_error():
    with pytest.raises(ValueError, match="MaxPool2d: padding should be at most half of the kernel size"):
        nn.MaxPool2d(3, padding=2)
    with pytest.raises(ValueError, match="AvgPool2d: padding should be at most half of the kernel size"):
        nn.AvgPool2d(2, padding=(0, 2))
    with pytest.raises(ValueError, match="MaxPool2d: kernel_size must be >= 1, got 0"):
        nn.MaxPool2d(0)
    with pytest.raises(TypeError, match="MaxPool2d: kernel_size must be an int or a pair of ints, got 1.5"):
        nn.MaxPool2d(1.5)
    with pytest.raises(ValueError, match="AvgPool2d: stride must be >= 1, got 0"):
        nn.AvgPool2d(2, stride=0)
    with pytest.raises(ValueError, match="MaxPool2d: dilation must be >= 1, got 0"):
        nn.MaxPool2d(2, dilation=0)
    with pytest.raises(TypeError, match="ceil_mode must be a bool, got 1"):
        nn.MaxPool2d(2, ceil_mode=1)
    with pytest.raises(ValueError, match="AvgPool2d: divisor_override must be >= 1, got 0"):
        nn.AvgPool2d(2, divisor_override=0)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d: output_size must be >= 1, got 0"):
        nn.AdaptiveAvgPool2d((0, 2))
    with pytest.raises(TypeError, match="AdaptiveMaxPool2d: output_size must be an int or a pair"):
        nn.AdaptiveMaxPool2d(None)
    with pytest.raises(ValueError, match="max_pool2d_forward: padding should be at most half"):
        max_pool2d_forward(arr(np.zeros((1, 1, 4, 4))), 2, padding=2)


def test_minidl_reexports():
    assert nn.MaxPool2d is minidl.nn.pooling.MaxPool2d and "AdaptiveMaxPool2d" in minidl.nn.pooling_adaptive.__all__
